"""Streaming Broadcast WAV (EBU Tech 3285) writer, upgraded to RF64 (EBU Tech 3306) when large.

Studios receive 48 kHz PCM WAV with a ``bext`` chunk whose TimeReference
places the file on the timeline. soundfile cannot write ``bext`` and ffmpeg
never computes TimeReference, so this module writes the container itself,
block by block: memory use is one block, whatever the programme length.

File layout::

    RIFF <size> WAVE
      JUNK (28 bytes)   room for a ds64 chunk, so the file can become RF64 in place
      fmt  (40 bytes)   WAVE_FORMAT_EXTENSIBLE with the layout's dwChannelMask
      fact (4 bytes)    frames; IEEE float only (the WAVE spec wants it for non-PCM)
      bext (602 + n)    version 1: UMID and the loudness fields zero
      data

Sizes are unknown until the last block, so ``close`` seeks back and patches
them. If the file then exceeds what a 32-bit RIFF size can hold, ``close``
rewrites the header as RF64: 'RF64', the JUNK chunk becomes ``ds64`` with the
64-bit sizes, and the 32-bit fields hold 0xFFFFFFFF.
"""

from __future__ import annotations

import struct
import unicodedata
from datetime import datetime
from pathlib import Path
from types import TracebackType
from typing import BinaryIO, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator

from dubprep import __version__
from dubprep.audio_io import SAMPLE_RATE
from dubprep.errors import DubprepError
from dubprep.media import LAYOUT_CHANNELS

# Largest RIFF chunk size a 32-bit field holds; a module constant so tests can
# exercise the RF64 upgrade without writing 4 GiB.
RIFF_MAX_BYTES = 0xFFFF_FFFF

SampleFormat = Literal["PCM_16", "PCM_24", "FLOAT"]
Layout = Literal["mono", "stereo", "5.1", "7.1"]

# dwChannelMask speaker bits: FL 0x1, FR 0x2, FC 0x4, LFE 0x8, BL 0x10, BR 0x20,
# SL 0x200, SR 0x400. These are ffmpeg's 'mono', 'stereo', '5.1' and '7.1'.
CHANNEL_MASKS: dict[str, int] = {"mono": 0x4, "stereo": 0x3, "5.1": 0x3F, "7.1": 0x63F}

_BITS = {"PCM_16": 16, "PCM_24": 24, "FLOAT": 32}
_GUID_TAIL = b"\x00\x00\x10\x00\x80\x00\x00\xaa\x00\x38\x9b\x71"  # KSDATAFORMAT_SUBTYPE_* after the tag
_FORMAT_TAG = {"PCM_16": 1, "PCM_24": 1, "FLOAT": 3}  # WAVE_FORMAT_PCM, WAVE_FORMAT_IEEE_FLOAT
_WAVE_FORMAT_EXTENSIBLE = 0xFFFE
_DS64_BYTES = 28  # riffSize, dataSize, sampleCount (64-bit each), tableLength 0
_UNKNOWN_32 = 0xFFFF_FFFF  # RF64: "look in ds64"
_BEXT_VERSION = 1  # version 2 would claim loudness values; we measure none here


class BwfError(DubprepError):
    """A BWF file could not be written as asked; the message names the file."""


def _ascii(text: str, field: str, limit_bytes: int) -> str:
    """``text`` as ASCII (bext is ASCII: accents are dropped, 'Amélie' -> 'Amelie'), at most ``limit_bytes``."""
    plain = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode("ascii")
    if len(plain) > limit_bytes:
        raise ValueError(f"bext {field} is {len(plain)} characters; EBU Tech 3285 allows {limit_bytes}")
    return plain


class BextMetadata(BaseModel):
    """What the ``bext`` chunk says about the file.

    ``time_reference_samples`` is the first sample's position in samples since
    midnight at the file's sample rate (see ``dubprep.timecode.timecode_to_samples``).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    description: str = ""
    originator: str = "dubprep"
    originator_reference: str = ""
    origination: datetime
    time_reference_samples: int = Field(default=0, ge=0, lt=2**64)

    @field_validator("description")
    @classmethod
    def _description_ascii(cls, value: str) -> str:
        return _ascii(value, "Description", 256)

    @field_validator("originator", "originator_reference")
    @classmethod
    def _short_ascii(cls, value: str, info: ValidationInfo) -> str:
        return _ascii(value, info.field_name, 32)


def _chunk(ident: bytes, payload: bytes) -> bytes:
    """A RIFF chunk: id, 32-bit size, payload, pad byte when the size is odd."""
    return ident + struct.pack("<I", len(payload)) + payload + b"\0" * (len(payload) % 2)


def _fmt_payload(channels: int, mask: int, sample_format: SampleFormat, sample_rate: int) -> bytes:
    """WAVE_FORMAT_EXTENSIBLE fmt chunk payload (40 bytes)."""
    bits = _BITS[sample_format]
    block_align = channels * bits // 8
    subformat = struct.pack("<I", _FORMAT_TAG[sample_format]) + _GUID_TAIL
    return struct.pack(
        "<HHIIHHHHI16s", _WAVE_FORMAT_EXTENSIBLE, channels, sample_rate, sample_rate * block_align,
        block_align, bits, 22, bits, mask, subformat,
    )


def _bext_payload(bext: BextMetadata, sample_format: SampleFormat, sample_rate: int) -> bytes:
    """bext chunk payload: 602 fixed bytes, then one EBU R98 coding-history line."""
    history = f"A=PCM,F={sample_rate},W={_BITS[sample_format]},T=dubprep {__version__}\r\n"
    return struct.pack(
        "<256s32s32s10s8sQH64s5h180s", bext.description.encode("ascii"), bext.originator.encode("ascii"),
        bext.originator_reference.encode("ascii"), bext.origination.strftime("%Y-%m-%d").encode("ascii"),
        bext.origination.strftime("%H-%M-%S").encode("ascii"), bext.time_reference_samples, _BEXT_VERSION,
        b"", 0, 0, 0, 0, 0, b"",
    ) + history.encode("ascii")


class BwfWriter:
    """Writes float blocks into a Broadcast WAV file; use :func:`open_bwf`."""

    def __init__(
        self, path: Path, layout: Layout, sample_format: SampleFormat, bext: BextMetadata, sample_rate: int
    ) -> None:
        if layout not in CHANNEL_MASKS or sample_format not in _BITS:
            raise BwfError(
                f"{path}: cannot write layout '{layout}' as {sample_format}; use a layout in "
                f"{sorted(CHANNEL_MASKS)} and a sample format in {sorted(_BITS)}"
            )
        self.path = path
        self.channels = len(LAYOUT_CHANNELS[layout])
        self.sample_format = sample_format
        self.frames_written = 0
        self.clipped_samples = 0
        self._data_bytes = 0
        self._fact_offset: int | None = None
        self._data_size_offset = 0
        self._file: BinaryIO | None = path.open("wb")
        self._write_header(layout, bext, sample_rate)

    def _write_header(self, layout: Layout, bext: BextMetadata, sample_rate: int) -> None:
        assert self._file is not None
        fmt = _fmt_payload(self.channels, CHANNEL_MASKS[layout], self.sample_format, sample_rate)
        self._file.write(b"RIFF\0\0\0\0WAVE" + _chunk(b"JUNK", bytes(_DS64_BYTES)) + _chunk(b"fmt ", fmt))
        if self.sample_format == "FLOAT":
            self._fact_offset = self._file.tell() + 8
            self._file.write(_chunk(b"fact", bytes(4)))
        self._file.write(_chunk(b"bext", _bext_payload(bext, self.sample_format, sample_rate)))
        self._data_size_offset = self._file.tell() + 4
        self._file.write(b"data\0\0\0\0")

    def write(self, block: np.ndarray) -> None:
        """Append ``block``, float samples nominally in [-1, 1]; shape: (frames, channels).

        For PCM, samples beyond ±1 are clipped to full scale and counted in
        ``clipped_samples``; FLOAT stores them as they are.
        """
        if self._file is None:
            raise BwfError(f"{self.path}: write after close; open the file again to write more")
        if block.ndim != 2 or block.shape[1] != self.channels or not np.issubdtype(block.dtype, np.floating):
            raise BwfError(
                f"{self.path}: block of {block.dtype} with shape {block.shape}; "
                f"expected floats of shape (frames, {self.channels})"
            )
        if not np.isfinite(block).all():
            raise BwfError(f"{self.path}: block has NaN or infinite samples; fix the stage that produced them")
        encoded = self._encode_float(block) if self.sample_format == "FLOAT" else self._encode_pcm(block)
        self._file.write(encoded)
        self.frames_written += len(block)
        self._data_bytes += len(encoded)

    @staticmethod
    def _encode_float(block: np.ndarray) -> bytes:
        return block.astype("<f4", copy=False).tobytes()

    def _encode_pcm(self, block: np.ndarray) -> bytes:
        """Interleaved little-endian integers; full scale is 2**(bits-1), as soundfile and ffmpeg read it."""
        full_scale = 2.0 ** (_BITS[self.sample_format] - 1)
        self.clipped_samples += int(np.count_nonzero(np.abs(block) > 1.0))
        # float32 holds every 24-bit integer exactly, and scaling by a power of two is exact.
        scaled = np.rint(block.astype(np.float32, copy=False) * np.float32(full_scale))
        ints = np.clip(scaled, -full_scale, full_scale - 1).astype("<i4")
        if self.sample_format == "PCM_16":
            return ints.astype("<i2").tobytes()
        # Drop the high byte of each little-endian int32.
        return ints.reshape(-1, 1).view(np.uint8)[:, :3].tobytes()  # shape: (frames * channels, 4)

    def close(self) -> None:
        """Pad the data chunk, patch every size, and become RF64 if the file outgrew RIFF."""
        if self._file is None:
            return
        file, self._file = self._file, None
        with file:
            file.write(b"\0" * (self._data_bytes % 2))
            riff_bytes = file.tell() - 8
            if riff_bytes > RIFF_MAX_BYTES:
                self._patch_rf64(file, riff_bytes)
            else:
                self._patch_riff(file, riff_bytes)

    def _patch_riff(self, file: BinaryIO, riff_bytes: int) -> None:
        self._patch(file, 4, struct.pack("<I", riff_bytes))
        self._patch(file, self._data_size_offset, struct.pack("<I", self._data_bytes))
        if self._fact_offset is not None:
            self._patch(file, self._fact_offset, struct.pack("<I", self.frames_written))

    def _patch_rf64(self, file: BinaryIO, riff_bytes: int) -> None:
        unknown = struct.pack("<I", _UNKNOWN_32)
        self._patch(file, 0, b"RF64" + unknown + b"WAVE")
        ds64 = struct.pack("<QQQI", riff_bytes, self._data_bytes, self.frames_written, 0)
        self._patch(file, 12, b"ds64" + struct.pack("<I", _DS64_BYTES) + ds64)
        self._patch(file, self._data_size_offset, unknown)
        if self._fact_offset is not None:
            self._patch(file, self._fact_offset, unknown)

    @staticmethod
    def _patch(file: BinaryIO, offset: int, payload: bytes) -> None:
        file.seek(offset)
        file.write(payload)

    def __enter__(self) -> BwfWriter:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


def open_bwf(
    path: Path,
    layout: Layout,
    sample_format: SampleFormat,
    bext: BextMetadata,
    sample_rate: int = SAMPLE_RATE,
) -> BwfWriter:
    """Create ``path`` as a Broadcast WAV of ``layout`` ('mono', 'stereo', '5.1' L R C LFE Ls Rs, '7.1').

    ``sample_format`` is 'PCM_24' (deliveries), 'PCM_16' or 'FLOAT' (32-bit
    IEEE). Write float blocks of shape (frames, channels) with ``write``;
    ``close`` (or leaving a ``with`` block) finishes the file.
    """
    return BwfWriter(path, layout, sample_format, bext, sample_rate)
