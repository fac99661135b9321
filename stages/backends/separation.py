"""The separation backend contract, and the registry of separation backends.

The separate stage picks the signals a model hears (the searched channels,
or a stereo mix's mid and side), cuts them into the groups the backend asks
for, opens one stream per group and writes the stems: DX from the streams'
dialogue, ME = mix - DX, MX from their music (or from the backend's music
splitter run on every channel of the ME) and FX = ME - MX. A backend only
separates; it never sees files, channel layouts or the other stems.

A backend is a :class:`SeparationBackend` subclass in a module of its own,
listed in :data:`SEPARATORS` (the README's developer section has a whole
one in ten lines). A stream (:class:`SeparationStream`) takes float32
blocks (frames, channels) of its group and returns, per stem, (k, channels)
arrays of the samples now complete (every stem the same k; a stem left out
has none yet): the backend's ``stems``, and any other it has (effects),
which the stage leaves aside since FX = ME - MX. ``flush`` returns the
rest. Concatenated, a stream's outputs are sample-aligned with its input
and exactly as long. A backend may open another's streams through the
registry and build on them (e.g. refine DeepFilterNet3's dialogue).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import ClassVar, Protocol

import numpy as np
from pydantic import BaseModel

from dubprep.params import NoParams
from dubprep.registry import Registry

DIALOGUE, MUSIC, EFFECTS = "dialogue", "music", "effects"

Grouping = Callable[[tuple[int, ...], tuple[str, ...]], tuple[tuple[int, ...], ...]]
"""Which signals (by index) a backend hears together, from their indices and names."""

# Left/right partners heard as a stereo pair (names of dubprep.media.LAYOUT_CHANNELS).
STEREO_PAIRS = (("L", "R"), ("Ls", "Rs"), ("Lrs", "Rrs"), ("Lss", "Rss"))


def each_alone(signals: tuple[int, ...], names: tuple[str, ...]) -> tuple[tuple[int, ...], ...]:
    """Every signal in a stream of its own."""
    return tuple((signal,) for signal in signals)


def all_together(signals: tuple[int, ...], names: tuple[str, ...]) -> tuple[tuple[int, ...], ...]:
    """Every signal in one stream (a mono model that batches them)."""
    return (signals,)


def stereo_pairs(signals: tuple[int, ...], names: tuple[str, ...]) -> tuple[tuple[int, ...], ...]:
    """Left/right partners that are both heard as (left, right) pairs, every other signal alone."""
    index = {name: signal for signal, name in zip(signals, names)}
    pairs = [(index[left], index[right]) for left, right in STEREO_PAIRS if left in index and right in index]
    paired = {signal for pair in pairs for signal in pair}
    return (*pairs, *((signal,) for signal in signals if signal not in paired))


class SeparationStream(ABC):
    """One group of signals streamed through a backend (see the module's docstring)."""

    @abstractmethod
    def process(self, block: np.ndarray) -> dict[str, np.ndarray]:
        """Feed ``block`` (frames, channels); the stems now complete, (k, channels) each."""

    def flush(self) -> dict[str, np.ndarray]:
        """The stems of the frames still held at the end (none by default)."""
        return {}

    def close(self) -> None:
        """Free what the stream holds outside Python (nothing by default)."""


class ChannelSplitter(Protocol):
    """Music of one mono channel of the M&E: (frames,) blocks in, (k,) music out, sample-aligned."""

    def process(self, block: np.ndarray) -> np.ndarray: ...

    def flush(self) -> np.ndarray: ...

    def close(self) -> None: ...


class NoMusic:
    """The music splitter of a backend that tells no music apart: the whole M&E is effects."""

    def process(self, block: np.ndarray) -> np.ndarray:
        return np.zeros_like(block)

    def flush(self) -> np.ndarray:
        return np.zeros(0, dtype=np.float32)

    def close(self) -> None:
        """Nothing to free."""


class SeparationBackend(ABC):
    """A separation model behind the stage; subclasses implement :meth:`open`.

    ``Params``: the backend's own parameters (keys of the project's
    ``separate`` section besides the stage's). ``stems``: what its streams
    give, dialogue and optionally music. ``music_splitter``: for a backend
    that gives no music, what splits each channel of the ME (by default
    nothing: MX silent, FX = ME). ``grouping``:
    which signals one stream hears. ``mid_side``: whether a stereo mix may
    be heard as mid and side. ``parallel``: whether its streams run in
    threads side by side (native code that releases the GIL).
    """

    Params: ClassVar[type[BaseModel]] = NoParams
    stems: ClassVar[tuple[str, ...]] = (DIALOGUE,)
    music_splitter: ClassVar[Callable[[], ChannelSplitter]] = NoMusic
    grouping: ClassVar[Grouping] = staticmethod(each_alone)
    mid_side: ClassVar[bool] = True
    parallel: ClassVar[bool] = False

    def code_modules(self, params: BaseModel) -> tuple[str, ...]:
        """Modules whose code defines this backend's result (their imports inside dubprep count too)."""
        return (type(self).__module__,)

    def weights_checksum(self, params: BaseModel) -> str:
        """Checksum of the weights :meth:`open` will load ('' when none); ModelError if they are unusable."""
        return ""

    @abstractmethod
    def open(self, params: BaseModel, channels: list[int], device: str) -> list[SeparationStream]:
        """One stream per group, group i having ``channels[i]`` channels, with models on ``device``."""


SEPARATORS: Registry[SeparationBackend] = Registry(
    "separation",
    {
        "dfn3-spatial": "dubprep.stages.backends.dfn3_spatial:Dfn3Spatial",
        "dfn3": "dubprep.stages.backends.dfn3:Dfn3",
        "bandit": "dubprep.stages.backends.bandit:Bandit",
        "cinesep": "dubprep.stages.backends.cinesep:CineSep",
    },
)
