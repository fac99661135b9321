"""Generate the bundled example programme, with no download.

    python examples/make_example.py [OUT_DIR]      (default: examples/media)

Writes into OUT_DIR:
  example.mov      30 s: 320x180 test picture at 24000/1001 fps with start
                   timecode 01:00:00:00 (tmcd track), and a stereo 48 kHz
                   pcm_s24le mix of the three stems below
  speech.wav       pyannote.audio's bundled sample (two real speakers)
                   resampled to 48 kHz, panned centre, -23 LUFS
  music.wav        synthesised chords, bass and hi-hats, wide, -30 LUFS
  effects.wav      synthesised footsteps, clicks, whooshes, noise bursts and
                   room tone, several between lines, -27 LUFS
  reference.rttm   who speaks when in speech.wav (file id 'programme')

The stems are float32 stereo WAVs of exactly the mix's length; their sum is
the mix before its 24-bit rounding, so separation can be scored against
them. The balance is Divide and Remaster's (music 7 LU and effects 4 LU
under speech); the whole sits 6 dB under DnR's -17 LUFS speech so the mix is
near EBU R128's -23 LUFS and its peaks stay under -1 dBFS (the sample's
speech peaks 20 dB over its loudness). Everything is seeded: two runs write
identical files.
"""

from __future__ import annotations

import argparse
import importlib.util
import re
import subprocess
import tempfile
from pathlib import Path

import ffmpeg
import numpy as np
import soundfile as sf
from pydantic import BaseModel, ConfigDict
from scipy import signal
from scipy.io import wavfile

from dubprep.tools import find_tool

SAMPLE_RATE = 48_000
_BEAT_S = 0.625  # 96 BPM
_CHORD_S = 8 * _BEAT_S  # two bars per chord
# Am, F, C, G as MIDI notes; the lowest is the bass's root an octave up.
_CHORDS_MIDI = ((57, 60, 64, 69), (53, 57, 60, 65), (48, 55, 60, 64), (55, 59, 62, 67))
# Effect onsets (s). The sample's speech starts at 6.69 s and pauses at
# 7.12-7.55 s and 21.49-21.78 s: the clicks at 7.25 and 21.55 s sit in those
# pauses, the footsteps, whoosh and burst before 6.69 s in the open.
_FOOTSTEPS_S = (0.8, 1.35, 1.9, 2.45, 3.0, 3.55, 23.1, 23.65, 24.2)
_CLICKS_S = (5.3, 7.25, 12.6, 21.55)
_WHOOSHES_S = (4.0, 16.0, 26.4)
_BURSTS_S = (5.8, 19.5)


class ExampleParams(BaseModel):
    """What the example is made of; fixed so the example never changes."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    seed: int = 20_240_611
    speech_lufs: float = -23.0
    music_lufs: float = -30.0
    effects_lufs: float = -27.0
    frame_rate: str = "24000/1001"
    video_size: str = "320x180"
    start_timecode: str = "01:00:00:00"


def make_example(out_dir: Path, params: ExampleParams = ExampleParams()) -> Path:
    """Write the example programme and its stems into ``out_dir``; returns the .mov path."""
    out_dir.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(params.seed)
    speech = _pan(_load_speech(), 0.0)
    stems = {
        "speech": _at_loudness(speech, params.speech_lufs),
        "music": _at_loudness(_synth_music(len(speech), rng), params.music_lufs),
        "effects": _at_loudness(_synth_effects(len(speech), rng), params.effects_lufs),
    }
    for name, stem in stems.items():
        # scipy, not soundfile: libsndfile adds a PEAK chunk stamped with the
        # clock time, which would make every run's stems differ.
        wavfile.write(out_dir / f"{name}.wav", SAMPLE_RATE, stem)
    _write_reference_rttm(out_dir / "reference.rttm")
    mix = stems["speech"] + stems["music"] + stems["effects"]  # float32, as the stems are stored
    movie = out_dir / "example.mov"
    with tempfile.TemporaryDirectory() as tmp:
        mix_wav = Path(tmp) / "mix.wav"
        # Rounded to 24 bits here so the .mov holds exactly these samples.
        sf.write(mix_wav, mix, SAMPLE_RATE, subtype="PCM_24")
        _mux(mix_wav, len(mix) / SAMPLE_RATE, movie, params)
    return movie


def _sample_dir() -> Path:
    """pyannote.audio's sample folder, found without importing the package (and torch)."""
    return Path(importlib.util.find_spec("pyannote.audio").submodule_search_locations[0]) / "sample"


def _load_speech() -> np.ndarray:
    """The sample's two speakers at 48 kHz; shape: (frames,)."""
    speech, rate = sf.read(_sample_dir() / "sample.wav", dtype="float64")
    return signal.resample_poly(speech, SAMPLE_RATE // rate, 1)


def _write_reference_rttm(path: Path) -> None:
    lines = (_sample_dir() / "sample.rttm").read_text().splitlines()
    path.write_text("".join(re.sub(r"^SPEAKER \S+", "SPEAKER programme", line) + "\n" for line in lines))


def _pan(mono: np.ndarray, position: float | np.ndarray) -> np.ndarray:
    """Constant-power pan, -1 left .. +1 right; mono shape: (frames,), returns (frames, 2)."""
    angle = (np.asarray(position) + 1.0) * np.pi / 4
    return np.stack([mono * np.cos(angle), mono * np.sin(angle)], axis=-1)


def _at_loudness(stereo: np.ndarray, target_lufs: float) -> np.ndarray:
    """``stereo`` scaled to ``target_lufs`` integrated loudness, as float32."""
    gain = 10 ** ((target_lufs - _loudness_lufs(stereo)) / 20)
    return (stereo * gain).astype(np.float32)


def _loudness_lufs(stereo: np.ndarray) -> float:
    """BS.1770 integrated loudness measured by ffmpeg's ebur128 filter."""
    command = (
        ffmpeg.input("pipe:", f="f64le", ar=SAMPLE_RATE, ac=2)
        # Per-frame lines at verbose level, below the default: only the summary prints
        # (framelog=quiet is unknown to ffmpeg 5.1).
        .filter("ebur128", framelog="verbose")
        .output("-", f="null")
        .global_args("-nostdin", "-hide_banner", "-nostats")
        .compile(cmd=str(find_tool("ffmpeg")))
    )
    done = subprocess.run(command, input=stereo.astype("<f8").tobytes(), capture_output=True, check=True)
    # The summary ends the log: "Integrated loudness: I: -23.0 LUFS ...".
    return float(re.findall(r"I:\s+(-?[\d.]+) LUFS", done.stderr.decode())[-1])


def _note_hz(midi: float) -> float:
    return 440.0 * 2 ** ((midi - 69) / 12)


def _tone(t: np.ndarray, hz: float, harmonics: int, rolloff: float) -> np.ndarray:
    """Sum of ``harmonics`` partials of ``hz``, partial k at ``rolloff**(k-1)``; shape of t."""
    return sum(rolloff ** (k - 1) * np.sin(2 * np.pi * hz * k * t) for k in range(1, harmonics + 1))


def _synth_music(frames: int, rng: np.random.Generator) -> np.ndarray:
    """Sustained chords, a plucked bass on every beat, hi-hats off the beat; shape: (frames, 2)."""
    music = np.zeros((frames, 2))
    _add_chords(music)
    _add_bass(music)
    _add_hats(music, rng)
    return music


def _add_chords(music: np.ndarray) -> None:
    """Each chord note panned on its own and detuned between channels, so the pad is wide."""
    release_s = 0.6
    for n, start in enumerate(np.arange(0.0, len(music) / SAMPLE_RATE, _CHORD_S)):
        first = int(start * SAMPLE_RATE)
        t = np.arange(min(int((start + _CHORD_S + release_s) * SAMPLE_RATE), len(music)) - first) / SAMPLE_RATE
        # Half-second attack, hold, then release after the chord's end.
        envelope = np.clip(t / 0.5, 0, 1) * np.clip((_CHORD_S + release_s - t) / release_s, 0, 1)
        for voice, midi in enumerate(_CHORDS_MIDI[n % len(_CHORDS_MIDI)]):
            position = -0.8 + 1.6 * voice / 3
            left = _tone(t, _note_hz(midi) * 0.998, 6, 0.55)
            right = _tone(t, _note_hz(midi) * 1.002, 6, 0.55)
            angle = (position + 1.0) * np.pi / 4
            music[first : first + len(t), 0] += 0.25 * envelope * left * np.cos(angle)
            music[first : first + len(t), 1] += 0.25 * envelope * right * np.sin(angle)


def _add_bass(music: np.ndarray) -> None:
    t = np.arange(int(0.6 * SAMPLE_RATE)) / SAMPLE_RATE
    for beat in np.arange(0.0, len(music) / SAMPLE_RATE, _BEAT_S):
        root = _CHORDS_MIDI[int(beat // _CHORD_S) % len(_CHORDS_MIDI)][0] - 12
        pluck = _tone(t, _note_hz(root), 3, 0.4) * np.exp(-t / 0.2)
        _place(music, _pan(0.5 * pluck, 0.0), beat)


def _add_hats(music: np.ndarray, rng: np.random.Generator) -> None:
    high_pass = signal.butter(4, 6000, "highpass", fs=SAMPLE_RATE, output="sos")
    t = np.arange(int(0.08 * SAMPLE_RATE)) / SAMPLE_RATE
    for beat in np.arange(_BEAT_S / 2, len(music) / SAMPLE_RATE, _BEAT_S):
        hat = signal.sosfilt(high_pass, rng.standard_normal(len(t))) * np.exp(-t / 0.015)
        _place(music, _pan(0.3 * hat, 0.4), beat)


def _place(track: np.ndarray, event: np.ndarray, start_s: float) -> None:
    """Add ``event`` (frames, 2) into ``track`` (frames, 2) from ``start_s``, cut at the end."""
    first = int(round(start_s * SAMPLE_RATE))
    length = min(len(event), len(track) - first)
    track[first : first + length] += event[:length]


def _synth_effects(frames: int, rng: np.random.Generator) -> np.ndarray:
    """Footsteps crossing left to right, clicks, whooshes and bursts over room tone; shape: (frames, 2)."""
    effects = _room_tone(frames, rng)
    for n, start in enumerate(_FOOTSTEPS_S):
        _place(effects, _pan(_footstep(rng), -0.7 + 1.4 * (n % 6) / 5), start)
    for n, start in enumerate(_CLICKS_S):
        _place(effects, _pan(_click(rng), (-0.5, 0.5)[n % 2]), start)
    for start in _WHOOSHES_S:
        _place(effects, _whoosh(rng), start)
    for start in _BURSTS_S:
        _place(effects, _burst(rng), start)
    return effects


def _room_tone(frames: int, rng: np.random.Generator) -> np.ndarray:
    """Quiet low-passed noise, different in each channel; shape: (frames, 2)."""
    low_pass = signal.butter(2, 500, "lowpass", fs=SAMPLE_RATE, output="sos")
    return 0.01 * signal.sosfilt(low_pass, rng.standard_normal((frames, 2)), axis=0)


def _footstep(rng: np.random.Generator) -> np.ndarray:
    """A heel thump: low-passed noise and an 80 Hz body, 0.25 s; shape: (frames,)."""
    t = np.arange(int(0.25 * SAMPLE_RATE)) / SAMPLE_RATE
    low_pass = signal.butter(2, 400, "lowpass", fs=SAMPLE_RATE, output="sos")
    scuff = signal.sosfilt(low_pass, rng.standard_normal(len(t))) * np.exp(-t / 0.04)
    return scuff + 0.3 * np.sin(2 * np.pi * 80 * t) * np.exp(-t / 0.06)


def _click(rng: np.random.Generator) -> np.ndarray:
    """A latch: a 1 ms noise tick and a 2.2 kHz ring, 60 ms; shape: (frames,)."""
    t = np.arange(int(0.06 * SAMPLE_RATE)) / SAMPLE_RATE
    tick = np.where(t < 0.001, rng.standard_normal(len(t)), 0.0)
    return 0.5 * tick + 0.4 * np.sin(2 * np.pi * 2200 * t) * np.exp(-t / 0.008)


def _whoosh(rng: np.random.Generator) -> np.ndarray:
    """0.9 s of noise fading from dull to bright while moving left to right; shape: (frames, 2)."""
    t = np.arange(int(0.9 * SAMPLE_RATE)) / SAMPLE_RATE
    progress = t / t[-1]
    low_pass = signal.butter(2, 1500, "lowpass", fs=SAMPLE_RATE, output="sos")
    high_pass = signal.butter(2, 4000, "highpass", fs=SAMPLE_RATE, output="sos")
    dull = signal.sosfilt(low_pass, rng.standard_normal(len(t)))
    bright = signal.sosfilt(high_pass, rng.standard_normal(len(t)))
    swell = np.sin(np.pi * progress) ** 2
    return _pan(0.5 * swell * ((1 - progress) * dull + progress * bright), -0.8 + 1.6 * progress)


def _burst(rng: np.random.Generator) -> np.ndarray:
    """A wide low-passed crash: 5 ms attack, 150 ms decay, 0.7 s; shape: (frames, 2)."""
    t = np.arange(int(0.7 * SAMPLE_RATE)) / SAMPLE_RATE
    low_pass = signal.butter(2, 2000, "lowpass", fs=SAMPLE_RATE, output="sos")
    envelope = (np.clip(t / 0.005, 0, 1) * np.exp(-t / 0.15))[:, None]  # shape: (frames, 1)
    return 0.6 * envelope * signal.sosfilt(low_pass, rng.standard_normal((len(t), 2)), axis=0)


def _video_codec() -> dict[str, str]:
    """libx264 where the ffmpeg build has it, else its built-in mpeg4 encoder."""
    encoders = subprocess.run(
        [str(find_tool("ffmpeg")), "-hide_banner", "-encoders"], capture_output=True, text=True, check=True
    ).stdout
    if re.search(r"^\s*V\S*\s+libx264\s", encoders, re.MULTILINE):
        # One thread: x264's frame threads made the picture differ between runs on a loaded machine.
        return {"vcodec": "libx264", "preset": "veryfast", "crf": "28", "threads": "1"}
    return {"vcodec": "mpeg4", "q:v": "5"}


def _mux(mix_wav: Path, duration_s: float, movie: Path, params: ExampleParams) -> None:
    """Test picture + ``mix_wav`` into ``movie`` with a start timecode (a tmcd track in .mov)."""
    picture = ffmpeg.input(
        f"testsrc2=size={params.video_size}:rate={params.frame_rate}:duration={duration_s}", f="lavfi"
    )
    (
        ffmpeg.output(
            picture, ffmpeg.input(str(mix_wav)), str(movie),
            pix_fmt="yuv420p", acodec="pcm_s24le", timecode=params.start_timecode,
            # No dates or library versions in the file, so reruns are byte-identical.
            fflags="+bitexact", **{"flags:v": "+bitexact", "flags:a": "+bitexact"}, **_video_codec(),
        )
        .global_args("-nostdin", "-v", "error")
        .overwrite_output()
        .run(cmd=str(find_tool("ffmpeg")), capture_stdout=True)
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out_dir", nargs="?", type=Path, default=Path(__file__).parent / "media")
    movie = make_example(parser.parse_args().out_dir)
    print(movie)


if __name__ == "__main__":
    main()
