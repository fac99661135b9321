"""What the extract stage learns about the programme, shared by later stages.

Written by ``extract`` as ``media.json`` beside ``mix.flac``; every later
stage reads it to know the channel layout, the programme length and the
picture's start timecode and frame rate.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

# The separated stems, each in the programme's layout: dialogue, music and
# effects (M&E), music, effects. DX + ME and DX + MX + FX re-sum to the mix.
# separate stores DX and MX; ME and FX are computed from them (dubprep.stems).
STEMS = ("DX", "ME", "MX", "FX")

# Channel names in the order ffmpeg decodes them, which is also the
# WAVE_FORMAT_EXTENSIBLE order; 5.1 is L R C LFE Ls Rs whether ffmpeg calls
# the surrounds "back" (5.1) or "side" (5.1(side)).
LAYOUT_CHANNELS: dict[str, tuple[str, ...]] = {
    "mono": ("M",),
    "stereo": ("L", "R"),
    "5.1": ("L", "R", "C", "LFE", "Ls", "Rs"),
    "7.1": ("L", "R", "C", "LFE", "Lrs", "Rrs", "Lss", "Rss"),
}


@dataclass(frozen=True)
class MediaInfo:
    """The programme as extracted: ``frames`` samples at ``sample_rate`` Hz.

    ``start_timecode`` is the picture's first frame (e.g. '01:00:00:00', ';'
    before the frames for drop-frame) or None when the source carries none;
    ``frame_rate`` is a fraction string such as '24000/1001' or None for an
    audio-only source.
    """

    source: str
    audio_stream: int
    codec: str
    layout: str
    channels: int
    sample_rate: int
    frames: int
    source_sample_rate: int
    start_offset_s: float
    start_timecode: str | None
    frame_rate: str | None

    @property
    def duration_s(self) -> float:
        return self.frames / self.sample_rate

    @property
    def channel_names(self) -> tuple[str, ...]:
        return LAYOUT_CHANNELS[self.layout]

    def save(self, path: Path) -> None:
        path.write_text(json.dumps(asdict(self), indent=2) + "\n")

    @classmethod
    def load(cls, path: Path) -> MediaInfo:
        return cls(**json.loads(path.read_text()))
