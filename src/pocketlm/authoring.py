"""Authoring with KerasHub: tokenizer -> preprocessor (sequence length) -> backbone -> causal LM.

Sources, as in the recipe, for every supported family (:mod:`pocketlm.families`):
  * a preset name through ``keras_hub.models.CausalLM.from_preset`` (needs network for
    KerasHub's own presets; pocketlm's embedded presets load offline);
  * a local KerasHub preset directory;
  * a backbone config with random weights (tests, benchmarks): a
    :class:`~pocketlm.config.ModelConfig` for GPT-2, or ``{"family": ..., **backbone kwargs}``
    checked strictly against the family's KerasHub backbone (unknown or missing keys are
    errors, never silently a default).
"""

from __future__ import annotations

import inspect
import json
import os
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from .quiet import filtered_stderr, quiet_tensorflow  # noqa: E402

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
quiet_tensorflow()  # before Keras imports TensorFlow: its start-up lines stay off stderr

import keras  # noqa: E402
import keras_hub  # noqa: E402

from .config import DEFAULT_SEQUENCE_LENGTH, ModelConfig  # noqa: E402
from .errors import ConfigError, PresetError, first_line  # noqa: E402
from .families import BPE, SPM, Family, family_for_task, get_family  # noqa: E402
from .presets import check_preset  # noqa: E402
from .tokenizers import (BytePairTokenizer, SentencePieceTokenizer, SpecialTokens,  # noqa: E402
                         Tokenizer, gpt2_vocab_files)

# Written beside an embedded preset by pocketlm (KerasHub ignores it): facts about how the
# model was trained that KerasHub's config cannot say.
POCKETLM_PRESET_NOTES = "pocketlm.json"


@dataclass
class AuthoredModel:
    """A KerasHub causal LM plus what export needs to know about it."""

    causal_lm: Any  # a keras_hub.models.CausalLM of a supported family
    family: Family
    tokenizer: Any  # the same tokenizer in plain Python (pocketlm.tokenizer), for the runtime
    source: str
    backbone_config: dict[str, Any] = field(default_factory=dict)
    # KerasHub's generate prepends the tokenizer's start token to every prompt; a model
    # trained without one (pocketlm_gpt2_shakespeare) says so in its preset notes.
    add_start_token: bool = True
    start_token_id: int | None = None
    end_token_id: int = 0
    stop_token_ids: list[int] = field(default_factory=list)

    @property
    def backbone(self):
        if self.causal_lm is None:
            raise RuntimeError("the Keras model was released (AuthoredModel.release)")
        return self.causal_lm.backbone

    def release(self) -> None:
        """Drop the Keras model so its weights' memory goes back (a 1.5B model holds 6 GB);
        the tokenizer, config and tokens stay. Exporting in parts does this once the weights
        are on disk, when asked (the CLI asks: it exits afterwards)."""
        import gc

        self.causal_lm = None
        keras.backend.clear_session()
        gc.collect()

    @property
    def config(self) -> ModelConfig | None:
        """GPT-2's typed config (its hand-written fast graph needs it); None otherwise."""
        if self.family.name != "gpt2":
            return None
        return ModelConfig.from_dict({f.name: self.backbone_config[f.name]
                                      for f in fields(ModelConfig)})

    @property
    def max_positions(self) -> int | None:
        """Learned (or trained) positions, which bound the cache; None for unbounded RoPE."""
        for key in ("max_sequence_length", "max_position_embeddings"):
            if self.backbone_config.get(key):
                return int(self.backbone_config[key])
        return None

    @property
    def sequence_length(self) -> int:
        return int(self.causal_lm.preprocessor.sequence_length)


def gpt2_keras_tokenizer() -> keras_hub.models.GPT2Tokenizer:
    """KerasHub's GPT-2 tokenizer with the real vocabulary, from local files."""
    vocab, merges = gpt2_vocab_files()
    return keras_hub.models.GPT2Tokenizer(vocabulary=str(vocab), merges=str(merges))


def check_backbone_config(family: Family, config: dict[str, Any]) -> dict[str, Any]:
    """``config`` checked against the family's KerasHub backbone arguments: unknown keys and
    missing required keys raise ConfigError naming them."""
    cls = getattr(keras_hub.models, family.backbone)
    params = inspect.signature(cls.__init__).parameters
    allowed = {n for n, p in params.items() if n != "self" and p.kind not in
               (p.VAR_KEYWORD, p.VAR_POSITIONAL)} - {"dtype"}
    required = {n for n in allowed if params[n].default is inspect.Parameter.empty}
    unknown = sorted(set(config) - allowed)
    if unknown:
        raise ConfigError(f"{family.title} config: unknown key(s) {', '.join(unknown)}; "
                          f"{family.backbone} takes {', '.join(sorted(allowed))}")
    missing = sorted(required - set(config))
    if missing:
        raise ConfigError(f"{family.title} config: missing key(s) {', '.join(missing)}")
    return dict(config)


def random_causal_lm(config: ModelConfig | dict[str, Any],
                     sequence_length: int = DEFAULT_SEQUENCE_LENGTH, seed: int = 0,
                     keras_tokenizer=None) -> AuthoredModel:
    """A causal LM with random weights from ``seed``.

    ``config`` is a GPT-2 :class:`ModelConfig` (the real GPT-2 tokenizer is used), or a dict
    ``{"family": name, **backbone kwargs}`` with ``keras_tokenizer`` a KerasHub tokenizer of
    that family. Raises ConfigError for a bad config.
    """
    if isinstance(config, ModelConfig):
        data: dict[str, Any] = {"family": "gpt2", **config.to_dict()}
    else:
        data = dict(config)
    if "family" not in data:
        raise ConfigError("the model config needs a \"family\" key (see `pocketlm families`)")
    family = get_family(str(data.pop("family")))
    kwargs = check_backbone_config(family, data)
    if keras_tokenizer is None:
        if family.name != "gpt2":
            raise ConfigError(f"a random {family.title} model needs a tokenizer of its family")
        keras_tokenizer = gpt2_keras_tokenizer()
    vocab = int(keras_tokenizer.vocabulary_size())
    # More rows than tokens is how published models come (Qwen 2.5: 151,936 rows for 151,665
    # tokens); fewer would let the tokenizer emit ids the embedding has no row for.
    if int(kwargs["vocabulary_size"]) < vocab:
        raise ConfigError(f"vocabulary_size {kwargs['vocabulary_size']} is smaller than the "
                          f"tokenizer ({vocab} tokens)")
    keras.utils.set_random_seed(seed)
    backbone = getattr(keras_hub.models, family.backbone)(**kwargs, dtype="float32")
    preprocessor = getattr(keras_hub.models, family.preprocessor)(
        tokenizer=keras_tokenizer, sequence_length=sequence_length)
    lm = getattr(keras_hub.models, family.task)(backbone=backbone, preprocessor=preprocessor)
    return _wrap(lm, f"random:{seed}")


def load_causal_lm(preset: str | Path, sequence_length: int = DEFAULT_SEQUENCE_LENGTH
                   ) -> AuthoredModel:
    """Load a causal LM from a preset directory, an embedded preset, or a KerasHub preset name.

    Raises PresetError (unknown, unreadable) or UnsupportedModelError (a family pocketlm does
    not convert, with the reason).
    """
    name = str(preset)
    kind, handle = check_preset(name)
    notes: dict[str, Any] = {}
    if kind in ("directory", "embedded"):
        notes = _preset_notes(Path(handle))
        _refuse_early(Path(handle))
    try:
        # float32: the converter and the runtime work in float32; bfloat16 presets are widened.
        with filtered_stderr():  # SentencePiece's info lines on loading its model
            lm = keras_hub.models.CausalLM.from_preset(handle, sequence_length=sequence_length,
                                                       dtype="float32")
    except Exception as exc:  # keras_hub raises many kinds; all mean "cannot load this"
        hint = "" if kind == "directory" else (
            " (KerasHub presets are downloaded on first use: check the name and the network,"
            " or pass a local preset directory)")
        raise PresetError(f"cannot load preset {name!r}: {first_line(exc)}{hint}") from exc
    return _wrap(lm, name, notes)


def _preset_notes(folder: Path) -> dict[str, Any]:
    notes = folder / POCKETLM_PRESET_NOTES
    if not notes.is_file():
        return {}
    try:
        return dict(json.loads(notes.read_text(encoding="utf-8")))
    except (OSError, ValueError, TypeError) as exc:
        raise PresetError(f"{notes} is not valid JSON: {exc}") from None


def _refuse_early(folder: Path) -> None:
    """Refuse an unsupported family from its config.json, before loading any weights."""
    try:
        task = json.loads((folder / "task.json").read_text(encoding="utf-8"))
        backbone = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return  # not there or unreadable: from_preset says what is wrong
    if isinstance(task, dict) and isinstance(task.get("class_name"), str):
        family_for_task(task["class_name"], backbone.get("config") or {})


def _wrap(lm, source: str, notes: dict[str, Any] | None = None) -> AuthoredModel:
    notes = notes or {}
    cfg = {k: v for k, v in lm.backbone.get_config().items()
           if k not in ("name", "trainable", "dtype")}
    family = family_for_task(type(lm).__name__, cfg)
    ktok = lm.preprocessor.tokenizer
    tokenizer = runtime_tokenizer(ktok, family)
    start = getattr(ktok, "start_token_id", None)
    end = getattr(ktok, "end_token_id", None)
    return AuthoredModel(
        causal_lm=lm, family=family, tokenizer=tokenizer, source=source, backbone_config=cfg,
        add_start_token=bool(notes.get("add_start_token", start is not None)),
        start_token_id=None if start is None else int(start),
        end_token_id=int(end if end is not None else 0),
        stop_token_ids=list(tokenizer.stop_token_ids))


def runtime_tokenizer(ktok, family: Family) -> Tokenizer:
    """The plain-Python tokenizer the runtime uses, with the same ids as KerasHub's ``ktok``.

    Byte-level BPE families carry their vocabulary and merges; SentencePiece families their
    model proto. Special tokens are KerasHub's (start, end, pad and the rest), plus the
    family's extra stop tokens where the vocabulary has them.
    """
    vocab = _vocabulary(ktok)
    named = [getattr(ktok, "special_tokens", None) or [], family.special_tokens]
    other = tuple(dict.fromkeys(t for group in named for t in group if t in vocab))
    specials = SpecialTokens(
        start=getattr(ktok, "start_token", None), end=getattr(ktok, "end_token", None),
        pad=getattr(ktok, "pad_token", None),
        stop=tuple(t for t in (*family.stop_tokens, getattr(ktok, "end_token2", None))
                   if t and t in vocab),
        other=other)
    if family.tokenizer_kind == BPE:
        merges = [m for m in ktok.merges if not m.startswith("#version")]
        return BytePairTokenizer({str(k): int(v) for k, v in dict(ktok.vocabulary).items()},
                                 merges, specials)
    if family.tokenizer_kind == SPM:
        return SentencePieceTokenizer(bytes(ktok.proto), specials)
    raise ConfigError(f"unknown tokenizer kind {family.tokenizer_kind!r}")


def _vocabulary(ktok) -> set[str]:
    try:
        return set(ktok.get_vocabulary())
    except Exception:  # tokenizers without a vocabulary list
        return set()


def keras_scorer(authored: AuthoredModel):
    """``ids -> logits (len(ids), vocab)`` with the Keras float model (the reference)."""
    import numpy as np

    lm = authored.causal_lm

    def score(ids: list[int]) -> "np.ndarray":
        x = np.asarray([ids], np.int32)
        return np.asarray(lm({"token_ids": x, "padding_mask": np.ones_like(x, bool)}))[0]

    return score


__all__ = ["AuthoredModel", "check_backbone_config", "gpt2_keras_tokenizer",
           "keras_scorer", "load_causal_lm", "random_causal_lm"]
