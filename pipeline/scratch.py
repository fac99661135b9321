"""A temporary folder of dubprep's own for libraries that litter TMPDIR.

Some model libraries write into the temporary folder as they are imported
and never remove what they wrote (lightning makes ``torchinductor_root``,
onnxruntime a ``.ses`` session file). On a render node running hundreds of
reels that is debris left in TMPDIR by every job. Importing them inside
:func:`private_tempdir` sends it to a folder removed right after.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def private_tempdir() -> Iterator[None]:
    """TMPDIR (the variable and :mod:`tempfile`'s own default) points to a fresh folder, removed on exit."""
    saved_variable = os.environ.get("TMPDIR")
    saved_default = tempfile.tempdir
    with tempfile.TemporaryDirectory(prefix="dubprep-scratch-") as scratch:
        os.environ["TMPDIR"] = scratch
        tempfile.tempdir = scratch
        try:
            yield
        finally:
            tempfile.tempdir = saved_default
            if saved_variable is None:
                del os.environ["TMPDIR"]
            else:
                os.environ["TMPDIR"] = saved_variable
