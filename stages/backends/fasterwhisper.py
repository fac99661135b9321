"""Speech recognition with faster-whisper: Whisper models in CTranslate2's format, with word times.

A model is a registered name (``whisper-large-v3``: the files of
Systran/faster-whisper-large-v3 in ``<models dir>/whisper-large-v3/``), a
folder holding a converted model (``model.bin``, ``config.json``,
``tokenizer.json``, a ``vocabulary.json`` or ``.txt``, and for large-v3 and
its kin ``preprocessor_config.json``), or a Hugging Face id, fetched by
faster-whisper only because the project names one (the token, if the
repository needs one, from ``HF_TOKEN``). A folder missing ``tokenizer.json``
is refused: faster-whisper would otherwise fetch a tokenizer from the hub.

Weights run int8 on the CPU and float16 on CUDA, as faster-whisper
recommends. Decoding is faster-whisper's own (beam search, temperature
fallback on repetitive or unlikely text, Whisper's timestamp rules), with
CTranslate2's random seed fixed so that a fallback to sampling gives the
same words on every run. Word times come from the cross-attention
alignment faster-whisper computes.

Cache key: a folder's files (names and sha256); for a Hugging Face id, only
the id (as for pyannote pipelines: use a folder for reproducible deliveries).
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dubprep import models
from dubprep.errors import ModelError
from dubprep.transcript import Word

SAMPLE_RATE = 16_000
WINDOW_SAMPLES = 30 * SAMPLE_RATE  # Whisper hears 30 s at a time
REQUIRED = ("model.bin", "config.json", "tokenizer.json")
VOCABULARIES = ("vocabulary.json", "vocabulary.txt")
HUB_ID = re.compile(r"[\w.-]+/[\w.-]+")
_SEED = 0


def language_codes() -> tuple[str, ...]:
    """The language codes Whisper knows ('en', 'fr', 'zh', 'haw', ...), as faster-whisper lists them."""
    from faster_whisper.tokenizer import _LANGUAGE_CODES

    return tuple(_LANGUAGE_CODES)


def locate(reference: str, models_dir: Path | None) -> Path | str:
    """A model reference as a folder (registered name or folder path) or a Hugging Face id (a string)."""
    if reference in models.registry():
        return models.locate(reference, models_dir)
    folder = Path(reference).expanduser()
    if folder.is_dir() or not HUB_ID.fullmatch(reference):
        return folder
    return reference


def check(reference: str, models_dir: Path | None) -> None:
    """ModelError (one line) when a model folder lacks a file faster-whisper needs; a hub id passes."""
    where = locate(reference, models_dir)
    if isinstance(where, str):
        return
    entry = models.registry().get(where.name)  # a folder named like a registered model is that model
    if entry is not None:
        models.require_files(entry, where)
        return
    if not where.is_dir():
        raise ModelError(
            f"transcribe.model: {where}: no such folder; give a registered name (dubprep models list), "
            "a folder holding a faster-whisper model, or a Hugging Face id such as Systran/faster-whisper-small"
        )
    missing = [name for name in REQUIRED if not (where / name).is_file()]
    if not any((where / name).is_file() for name in VOCABULARIES):
        missing.append(" or ".join(VOCABULARIES))
    if missing:
        raise ModelError(
            f"{where}: not a faster-whisper model folder: {', '.join(missing)} missing; copy every file of the "
            "converted model (ct2-transformers-converter ... --copy_files tokenizer.json preprocessor_config.json)"
        )


def checksum(reference: str, models_dir: Path | None) -> str:
    """sha256 over a model folder's files (names and contents), or of a hub id."""
    where = locate(reference, models_dir)
    digest = hashlib.sha256()
    if isinstance(where, str):
        digest.update(f"huggingface:{where}".encode())
        return digest.hexdigest()
    check(reference, models_dir)
    for path in sorted(p for p in where.iterdir() if p.is_file() and not p.name.startswith(".")):
        digest.update(path.name.encode() + b"\0" + models.sha256_file(path).encode())
    return digest.hexdigest()


def languages(reference: str) -> tuple[str, ...]:
    """The only languages a registered model was trained on (.en and distil models: English); () for any."""
    entry = models.registry().get(Path(reference).name)
    return entry.languages if entry is not None else ()


@dataclass
class FasterWhisper:
    """A loaded model: ``multilingual`` is False for English-only vocabularies (.en models)."""

    model: object  # faster_whisper.WhisperModel
    beam_size: int

    @property
    def multilingual(self) -> bool:
        return bool(self.model.model.is_multilingual)

    def language_probabilities(self, audio: np.ndarray) -> dict[str, float]:
        """Each language's probability for ``audio`` (mono 16 kHz, its first 30 s)."""
        _, _, probabilities = self.model.detect_language(audio[:WINDOW_SAMPLES], language_detection_segments=1)
        return {code: float(p) for code, p in probabilities}

    def transcribe(self, audio: np.ndarray, language: str | None) -> list[Word]:
        """The words in ``audio`` (mono 16 kHz float32), times in seconds from its first sample."""
        import ctranslate2

        ctranslate2.set_random_seed(_SEED)
        segments, _ = self.model.transcribe(
            audio, language=language, task="transcribe", beam_size=self.beam_size, word_timestamps=True,
            condition_on_previous_text=False, vad_filter=False,
        )
        length_s = len(audio) / SAMPLE_RATE
        return [
            Word(w.word, min(float(w.start), length_s), min(float(w.end), length_s), float(w.probability))
            for segment in segments for w in (segment.words or ())
        ]


def load(reference: str, models_dir: Path | None, device: str, beam_size: int, log: logging.Logger) -> FasterWhisper:
    """The model on ``device`` ('cpu' or 'cuda:N'); ModelError (one line) when it cannot be loaded."""
    from faster_whisper import WhisperModel

    check(reference, models_dir)
    where = locate(reference, models_dir)
    kind, _, index = device.partition(":")
    compute_type = "float16" if kind == "cuda" else "int8"
    source = str(where) if isinstance(where, Path) else _fetch(where)
    try:
        model = WhisperModel(
            source, device=kind, device_index=int(index or 0), compute_type=compute_type,
            cpu_threads=len(os.sched_getaffinity(0)),
        )
    except Exception as err:  # anything CTranslate2 or tokenizers raise on a user's folder is that folder's problem
        raise ModelError(
            f"{source}: faster-whisper could not load this model ({type(err).__name__}: {err}); a file is corrupt "
            f"or not a Whisper model in CTranslate2's format: copy the model folder again"
        ) from None
    log.info("transcribe: %s on %s (%s)", source, device, compute_type)
    return FasterWhisper(model, beam_size)


def _fetch(hub_id: str) -> str:
    """A Hugging Face model's local snapshot, downloaded because the project names its id."""
    from faster_whisper.utils import download_model

    try:
        return download_model(hub_id, use_auth_token=os.environ.get("HF_TOKEN"))
    except Exception as err:  # huggingface_hub's HTTP, offline and not-found errors have no common base
        raise ModelError(
            f"transcribe.model: could not fetch '{hub_id}' from Hugging Face ({type(err).__name__}); check the id "
            "and the network, or put the model's files in a folder and give that folder"
        ) from None
