"""What pocketlm needs to know about a model family, said once (no Keras, no TensorFlow).

A :class:`Family` names the KerasHub classes of a family, how its ``call_with_cache`` takes
the cache, which tokenizer kind it uses and its special tokens, and holds a tiny config for
tests (like litert-torch's one config per family with a fake config). The exporter, the
runtime, the CLI and the tests read these descriptions; none of them names a family.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..chat_template import ChatTemplate

BPE = "bpe"  # byte-level BPE: a vocabulary + merges (GPT-2 style)
SPM = "spm"  # SentencePiece: a serialized model proto

# How a family's ``call_with_cache(token_ids, cache, index)`` reads and returns its cache.
STACKED = "stacked"  # one tensor [B, layers, 2, S, kv_heads, head_dim]; cache[:, i, ...]
PER_LAYER_TUPLE = "per-layer-tuple"  # a tuple of (k, v) per layer, each [B, S, kv_heads, D]


@dataclass(frozen=True)
class Family:
    """One KerasHub decoder family.

    Attributes:
        name: pocketlm's name, stored in every converted file (``model_type``).
        title: how people write it.
        task, backbone, preprocessor, tokenizer: KerasHub class names in ``keras_hub.models``.
        tokenizer_kind: :data:`BPE` or :data:`SPM` (how the runtime tokenizes).
        special_tokens: tokens the KerasHub tokenizer class requires in the vocabulary.
        stop_tokens: extra tokens that end a reply besides the tokenizer's end token
            (Llama 3's ``<|eot_id|>``, which KerasHub's generate also stops at).
        cache: how ``call_with_cache`` takes the cache (:data:`STACKED`, ...).
        fast_path: a hand-written graph measured faster than ``call_with_cache`` exists.
        features: what the export must get right (positions, norms, attention), for people.
        tiny: a tiny backbone config (vocabulary size filled in from the test tokenizer).
        chat_template: the family's published chat format (:mod:`pocketlm.chat_template`),
            or None: such models chat with the plain transcript fallback.
        tier: "must" or "should" (how the families issue ranks it).
    """

    name: str
    title: str
    task: str
    backbone: str
    preprocessor: str
    tokenizer: str
    tokenizer_kind: str
    special_tokens: tuple[str, ...]
    tiny: dict[str, Any]
    stop_tokens: tuple[str, ...] = ()
    cache: str = STACKED
    fast_path: bool = False
    features: str = ""
    chat_template: ChatTemplate | None = None
    tier: str = "must"
    aliases: tuple[str, ...] = field(default=())


@dataclass(frozen=True)
class Refusal:
    """A KerasHub causal LM pocketlm does not convert, and why (one line for the user)."""

    task: str
    reason: str
