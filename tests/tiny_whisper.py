"""A tiny, randomly initialised Whisper model in faster-whisper's folder layout, built here.

The folder holds what a converted Whisper model holds (``model.bin``,
``config.json`` and ``vocabulary.json`` written by CTranslate2's own
converter from a ``WhisperSpec``, and a ``tokenizer.json``), with the real
architecture and the multilingual vocabulary's layout (51,865 tokens: 50,257
text tokens, the special, language and timestamp tokens at Whisper's ids),
but two layers of width 64 and random weights: what it writes means
nothing, the loading, decoding, language detection and word alignment are
faster-whisper's own. Nothing is downloaded.

The text tokens are byte-level BPE: the 256 byte symbols, then pseudo-words
(' kato', ' lume.', ...) so that what the model says splits into words and
sentences as real speech would.
"""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import numpy as np
from ctranslate2.converters.converter import Converter
from ctranslate2.specs import common_spec, whisper_spec
from faster_whisper.tokenizer import _LANGUAGE_CODES
from tokenizers import Tokenizer, decoders, models, pre_tokenizers

TEXT_TOKENS = 50_257  # Whisper's GPT-2 vocabulary, <|endoftext|> is the next id
TIMESTAMP_TOKENS = 1_501  # <|0.00|> .. <|30.00|>
N_MELS = 80
AUDIO_CTX = 1_500  # encoder positions: 30 s at 50 per second
TEXT_CTX = 448
WIDTH = 64
HEADS = 2
LAYERS = 2
FFN = 128
LOGIT_SCALE = 60.0
END_POSITION = 10  # prompt (3 tokens), a timestamp, then about six words
CROSS_SCALE = 4.0  # how much the audio moves the decoder's choices
_SYLLABLES = ("ka", "to", "lu", "me", "ri", "sa", "no", "vi", "de", "po")


def special_tokens() -> list[str]:
    """Whisper's multilingual special tokens in id order, from <|endoftext|> (id 50257) on."""
    languages = [f"<|{code}|>" for code in _LANGUAGE_CODES if code != "yue"]  # 99: large-v3 added yue
    control = ["<|translate|>", "<|transcribe|>", "<|startoflm|>", "<|startofprev|>", "<|nocaptions|>",
               "<|notimestamps|>"]
    timestamps = [f"<|{i * 0.02:.2f}|>" for i in range(TIMESTAMP_TOKENS)]
    return ["<|endoftext|>", "<|startoftranscript|>", *languages, *control, *timestamps]


def text_tokens() -> list[str]:
    """50,257 byte-level BPE symbols: the 256 bytes, then pseudo-words with and without a leading space."""
    alphabet = pre_tokenizers.ByteLevel.alphabet()
    byte_symbols = sorted(alphabet, key=lambda symbol: (len(symbol.encode()), symbol))
    space = "Ġ"  # the byte-level symbol of ' '
    words = ("".join(parts) for n in (1, 2, 3, 4, 5) for parts in itertools.product(_SYLLABLES, repeat=n))
    fillers = (f"{space}{word}{end}" for word in words for end in ("", ".", ",", "?"))
    tokens = byte_symbols + list(itertools.islice(fillers, TEXT_TOKENS - len(byte_symbols)))  # all 3+ symbols long
    # CTranslate2 takes a model for multilingual when its vocabulary holds the empty token, as
    # Whisper's multilingual one does at the last text id.
    return tokens[: TEXT_TOKENS - 1] + [""]


def write_tokenizer(path: Path, vocabulary: list[str]) -> None:
    """A Hugging Face tokenizer.json: byte-level BPE over ``vocabulary``'s text tokens, the rest special."""
    text = vocabulary[:TEXT_TOKENS]
    bpe = models.BPE(vocab={token: index for index, token in enumerate(text)}, merges=[])
    tokenizer = Tokenizer(bpe)
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    tokenizer.add_special_tokens(vocabulary[TEXT_TOKENS:])
    tokenizer.save(str(path))


class _RandomWhisper(Converter):
    """CTranslate2's converter, fed a WhisperSpec with random weights instead of a checkpoint."""

    def __init__(self, seed: int):
        self.rng = np.random.default_rng(seed)

    def _load(self) -> whisper_spec.WhisperSpec:
        spec = whisper_spec.WhisperSpec(LAYERS, HEADS, LAYERS, HEADS)
        encoder, decoder = spec.encoder, spec.decoder
        self._conv(encoder.conv1, N_MELS)
        self._conv(encoder.conv2, WIDTH)
        encoder.position_encodings.encodings = self._random(AUDIO_CTX, WIDTH)
        self._norm(encoder.layer_norm)
        for layer in encoder.layer:
            self._attention(layer.self_attention, fused=(3 * WIDTH,))
            self._ffn(layer.ffn)
        vocabulary = text_tokens() + special_tokens()
        ids = {token: index for index, token in enumerate(vocabulary)}
        decoder.embeddings.weight = self._random(len(vocabulary), WIDTH, scale=WIDTH**0.5)
        decoder.projection.weight, ending = self._projection(len(vocabulary), ids["<|endoftext|>"])
        decoder.position_encodings.encodings = self._positions(ending)
        self._norm(decoder.layer_norm)
        for layer in decoder.layer:
            self._attention(layer.self_attention, fused=(3 * WIDTH,))
            self._attention(layer.attention, fused=(WIDTH, 2 * WIDTH), out_scale=CROSS_SCALE)
            self._ffn(layer.ffn)
        spec.register_vocabulary(vocabulary)
        spec.config.suppress_ids = []
        spec.config.suppress_ids_begin = [ids["Ġ"], ids["<|endoftext|>"]]
        spec.config.lang_ids = sorted(ids[f"<|{c}|>"] for c in _LANGUAGE_CODES if f"<|{c}|>" in ids)
        spec.config.alignment_heads = [[layer, head] for layer in range(LAYERS // 2, LAYERS) for head in range(HEADS)]
        return spec

    def _projection(self, tokens: int, end_id: int) -> tuple[np.ndarray, np.ndarray]:
        """Output projection, and the direction that selects <|endoftext|>.

        Logits spread wide (per-token standard deviation LOGIT_SCALE), so the
        model is sure of each token and faster-whisper never falls back to
        sampling; <|endoftext|>'s row is a unit direction times the typical
        row norm, so it wins only where the decoder's state points that way.
        """
        weight = self._random(tokens, WIDTH, scale=LOGIT_SCALE / WIDTH**0.5)
        ending = self.rng.standard_normal(WIDTH)
        ending -= ending.mean()  # the final layer norm removes the mean
        ending /= np.linalg.norm(ending)
        weight[end_id] = ending * np.linalg.norm(weight, axis=1).mean()
        return weight, ending.astype(np.float32)

    def _positions(self, ending: np.ndarray) -> np.ndarray:
        """Decoder positions: random up to END_POSITION, then dominated by the <|endoftext|> direction."""
        positions = self._random(TEXT_CTX, WIDTH)
        positions[END_POSITION:] = 200.0 * ending
        return positions

    def _random(self, *shape: int, scale: float = 0.5) -> np.ndarray:
        return (self.rng.standard_normal(shape) * scale / np.sqrt(shape[-1])).astype(np.float32)

    def _conv(self, conv: common_spec.Conv1DSpec, in_channels: int) -> None:
        conv.weight = self._random(WIDTH, in_channels, 3)
        conv.bias = np.zeros(WIDTH, np.float32)

    def _norm(self, norm: common_spec.LayerNormSpec) -> None:
        norm.gamma = np.ones(WIDTH, np.float32)
        norm.beta = np.zeros(WIDTH, np.float32)

    def _linear(self, linear: common_spec.LinearSpec, out_features: int, in_features: int, scale: float = 0.5) -> None:
        linear.weight = self._random(out_features, in_features, scale=scale)
        linear.bias = np.zeros(out_features, np.float32)

    def _attention(self, attention, fused: tuple[int, ...], out_scale: float = 0.5) -> None:
        """Query/key/value projections as CTranslate2 fuses them (``fused`` output sizes), then the output one."""
        self._norm(attention.layer_norm)
        for linear, out_features in zip(attention.linear, fused):
            self._linear(linear, out_features, WIDTH)
        self._linear(attention.linear[-1], WIDTH, WIDTH, out_scale)

    def _ffn(self, ffn) -> None:
        self._norm(ffn.layer_norm)
        self._linear(ffn.linear_0, FFN, WIDTH)
        self._linear(ffn.linear_1, WIDTH, FFN)


def build_tiny_whisper(folder: Path, seed: int = 0) -> Path:
    """Write the tiny model into ``folder`` (created; must not exist) and return it."""
    _RandomWhisper(seed).convert(str(folder), quantization="float16")
    vocabulary = json.loads((folder / "vocabulary.json").read_text(encoding="utf-8"))
    write_tokenizer(folder / "tokenizer.json", vocabulary)
    return folder
