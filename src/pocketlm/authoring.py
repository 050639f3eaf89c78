"""Authoring with KerasHub: tokenizer -> preprocessor (sequence length) -> backbone -> causal LM.

Three sources, as in the recipe:
  * a preset name through ``keras_hub.models.GPT2CausalLM.from_preset`` (needs network for
    KerasHub's own presets; pocketlm's embedded presets load offline);
  * a local KerasHub preset directory;
  * a :class:`~pocketlm.config.ModelConfig` with random weights (tests, benchmarks).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from .quiet import quiet_tensorflow  # noqa: E402

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
quiet_tensorflow()  # before Keras imports TensorFlow: its start-up lines stay off stderr

import keras  # noqa: E402
import keras_hub  # noqa: E402

from .config import DEFAULT_SEQUENCE_LENGTH, ModelConfig  # noqa: E402
from .errors import PresetError  # noqa: E402
from .presets import check_preset  # noqa: E402
from .tokenizer import BPETokenizer, gpt2_vocab_files  # noqa: E402


@dataclass
class AuthoredModel:
    """A KerasHub causal LM plus what export needs to know about it."""

    causal_lm: keras_hub.models.GPT2CausalLM
    config: ModelConfig
    tokenizer: BPETokenizer  # the same vocabulary and merges, in plain Python
    source: str

    @property
    def backbone(self) -> keras_hub.models.GPT2Backbone:
        return self.causal_lm.backbone

    @property
    def sequence_length(self) -> int:
        return int(self.causal_lm.preprocessor.sequence_length)


def gpt2_keras_tokenizer() -> keras_hub.models.GPT2Tokenizer:
    """KerasHub's GPT-2 tokenizer with the real vocabulary, from local files."""
    vocab, merges = gpt2_vocab_files()
    return keras_hub.models.GPT2Tokenizer(vocabulary=str(vocab), merges=str(merges))


def random_causal_lm(config: ModelConfig, sequence_length: int = DEFAULT_SEQUENCE_LENGTH,
                     seed: int = 0) -> AuthoredModel:
    """A GPT-2 causal LM with random weights from ``seed`` and the real GPT-2 tokenizer."""
    keras.utils.set_random_seed(seed)
    tokenizer = gpt2_keras_tokenizer()
    if config.vocabulary_size != tokenizer.vocabulary_size():
        raise PresetError(f"vocabulary_size {config.vocabulary_size} does not match the GPT-2 "
                          f"tokenizer ({tokenizer.vocabulary_size()} tokens)")
    preprocessor = keras_hub.models.GPT2CausalLMPreprocessor(
        tokenizer=tokenizer, sequence_length=sequence_length)
    backbone = keras_hub.models.GPT2Backbone(
        vocabulary_size=config.vocabulary_size, num_layers=config.num_layers,
        num_heads=config.num_heads, hidden_dim=config.hidden_dim,
        intermediate_dim=config.intermediate_dim, dropout=config.dropout,
        max_sequence_length=config.max_sequence_length)
    lm = keras_hub.models.GPT2CausalLM(backbone=backbone, preprocessor=preprocessor)
    return _wrap(lm, f"random:{seed}")


def load_causal_lm(preset: str | Path, sequence_length: int = DEFAULT_SEQUENCE_LENGTH
                   ) -> AuthoredModel:
    """Load a causal LM from a preset directory, an embedded preset, or a KerasHub preset name."""
    name = str(preset)
    kind, handle = check_preset(name)
    try:
        lm = keras_hub.models.CausalLM.from_preset(handle, sequence_length=sequence_length)
    except Exception as exc:  # keras_hub raises many kinds; all mean "cannot load this"
        hint = "" if kind == "directory" else (
            " (KerasHub presets are downloaded on first use: check the name and the network,"
            " or pass a local preset directory)")
        raise PresetError(f"cannot load preset {name!r}: {_first_line(exc)}{hint}") from exc
    if not isinstance(lm, keras_hub.models.GPT2CausalLM):
        raise PresetError(f"preset {name!r} is a {type(lm).__name__}; pocketlm exports GPT-2 "
                          "style models (GPT2CausalLM) only")
    return _wrap(lm, name)


def _wrap(lm: keras_hub.models.GPT2CausalLM, source: str) -> AuthoredModel:
    cfg = lm.backbone.get_config()
    config = ModelConfig.from_dict(cfg)
    ktok = lm.preprocessor.tokenizer
    merges = [tuple(m.split(" ")) for m in ktok.merges]
    tokenizer = BPETokenizer(dict(ktok.vocabulary), merges)  # type: ignore[arg-type]
    return AuthoredModel(causal_lm=lm, config=config, tokenizer=tokenizer, source=source)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def keras_scorer(authored: AuthoredModel):
    """``ids -> logits (len(ids), vocab)`` with the Keras float model (the reference)."""
    import numpy as np

    lm = authored.causal_lm

    def score(ids: list[int]) -> "np.ndarray":
        x = np.asarray([ids], np.int32)
        return np.asarray(lm({"token_ids": x, "padding_mask": np.ones_like(x, bool)}))[0]

    return score
