"""The ``.tflite`` contract shared by the exporter and the runtime (``pocketlm.kv-cache``).

One place says what a pocketlm KV-cache file holds, so the TensorFlow side that writes it and
the LiteRT side that reads it cannot drift apart. Plain Python: no TensorFlow, no Keras.

Version 2 (written since LiteRT-LM support) is LiteRT-LM's own contract, so one file runs
in pocketlm's runtime and in Google's LiteRT-LM engine unchanged. Signatures (one set of
weights):

    decode      tokens [1, 1], input_pos [1]         -> logits [1, 1, V], caches
    prefill     tokens [1, T_max], input_pos [T_max] -> caches (no logits)
    prefill_<T> tokens [1, T], input_pos [T]         -> caches (smaller chunks)
    score       tokens [1, T_max], input_pos [T_max] -> logits [1, T_max, V], caches

``input_pos`` holds one position per token (the graph reads only the first: a chunk is
written contiguously from there; LiteRT-LM fills unused rows with 0). Per layer
``k_cache_<i>`` and ``v_cache_<i>`` float32 of :attr:`ContractInfo.cache_shape` are inputs
AND outputs under the same names, so a runtime may bind one buffer to both and update the
cache in place. A prompt is run as LiteRT-LM runs it: every token but the last through the
prefills, the last through ``decode``, whose logits give the first new token. The cache has
``max_num_tokens + T_max - 1`` rows, so a padded chunk that starts at any usable position
fits; LiteRT-LM is told ``max_num_tokens`` (pocketlm's runtime never pads past the cache end
and uses every row). ``score`` is pocketlm's (evaluation); LiteRT-LM ignores it.

Version 1 (still read): ``input_pos [1]``, an extra ``last_index [1]`` input (the padded
chunk row whose logits are returned), logits ``[1, V]`` from decode and every prefill.

Two cache layouts exist:

* ``[1, heads, S, head_dim]`` ("heads-first"): the hand-written graphs, whose attention
  multiplies against the cache without a transpose (GPT-2's; the Llama-style families' of
  :mod:`pocketlm.graph_decoder`, with ``kv_heads`` heads);
* ``[1, 1, S, kv_heads * head_dim]`` ("flat", v2): every other family, KerasHub's own
  ``call_with_cache`` layout with the heads folded into the last axis (a reshape in the
  graph), because LiteRT-LM reads the cache length from axis 2;
* ``[1, S, kv_heads, head_dim]`` ("keras"): the same families in v1 files.

The flatbuffer metadata carries :data:`METADATA_KEY` (JSON of :class:`ContractInfo`) and
:data:`TOKENIZER_METADATA_KEY` (the tokenizer, see :mod:`pocketlm.tokenizer`).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any

CONTRACT_NAME = "pocketlm.kv-cache"
# Bumped whenever signature names, tensor names, layouts or the metadata schema change in a
# way an older runtime could misread. Fields added since version 1 (family, cache_shape,
# start/stop tokens) are optional: a version-1 file without them is a GPT-2 file.
CONTRACT_VERSION = 2
# Versions this pocketlm still reads (v1: last_index input, rank-2 logits, see above).
READABLE_VERSIONS = (1, 2)
METADATA_KEY = "pocketlm.contract"
TOKENIZER_METADATA_KEY = "pocketlm.tokenizer"

DECODE = "decode"
PREFILL = "prefill"
SCORE = "score"
TOKENS, INPUT_POS, LAST_INDEX, LOGITS = "tokens", "input_pos", "last_index", "logits"
# Between the parts of a model converted in parts (:mod:`pocketlm.graph_base`): the hidden
# states [T, D] float32 one part returns and the next takes. Never in a finished file.
HIDDEN = "hidden_states"

LAYOUT_HEADS_FIRST = "heads-first"  # [1, heads, S, head_dim] (kv_heads for grouped queries)
LAYOUT_KERAS = "keras"  # [1, S, kv_heads, head_dim] (v1 files only)
# v2's layout for every family but GPT-2: KerasHub's [1, S, kv_heads, head_dim] with the
# heads folded into the last axis, so the sequence is axis 2, where LiteRT-LM reads the
# cache length (it read kv_heads from KerasHub's layout); a reshape, not a transpose, away.
LAYOUT_FLAT = "flat"  # [1, 1, S, kv_heads * head_dim]
CACHE_LAYOUTS = {LAYOUT_HEADS_FIRST: "[1, heads, sequence_length, head_dim]",
                 LAYOUT_KERAS: "[1, sequence_length, kv_heads, head_dim]",
                 LAYOUT_FLAT: "[1, 1, sequence_length, kv_heads * head_dim]"}


def cache_names(num_layers: int) -> list[str]:
    """``["k_cache_0", "v_cache_0", "k_cache_1", ...]``: the order of cache inputs/outputs."""
    return cache_name_pairs(range(num_layers))


def cache_name_pairs(layers: range) -> list[str]:
    """The cache names of ``layers`` (global layer numbers), K before V per layer."""
    return [f"{kv}_cache_{i}" for i in layers for kv in ("k", "v")]


def input_pos_shape(version: int, tokens: int) -> list[int]:
    """Shape of ``input_pos`` for a signature of ``tokens`` tokens: ``[T]`` since v2."""
    return [1] if version < 2 else [tokens]


def max_num_tokens(sequence_length: int, prefill: dict[str, int]) -> int:
    """Tokens LiteRT-LM may put in a cache of ``sequence_length`` rows: it pads a late prompt
    chunk to the signature's full length, so the largest chunk minus one row stays free."""
    return max(1, int(sequence_length) - max(prefill.values(), default=1) + 1)


def prefill_signature_names(lengths: tuple[int, ...]) -> dict[str, int]:
    """Signature name -> chunk length. The largest chunk is ``prefill``; smaller ones are
    ``prefill_<n>``, so a short prompt is not padded to the largest chunk."""
    ordered = sorted(set(lengths), reverse=True)
    return {PREFILL if i == 0 else f"{PREFILL}_{n}": n for i, n in enumerate(ordered)}


def cache_shape(layout: str, sequence_length: int, kv_heads: int, head_dim: int) -> list[int]:
    """The shape of one K (or V) cache tensor in ``layout``."""
    if layout == LAYOUT_HEADS_FIRST:
        return [1, kv_heads, sequence_length, head_dim]
    if layout == LAYOUT_KERAS:
        return [1, sequence_length, kv_heads, head_dim]
    if layout == LAYOUT_FLAT:
        return [1, 1, sequence_length, kv_heads * head_dim]
    raise ValueError(f"unknown cache layout {layout!r}")


@dataclass
class ContractInfo:
    """What a pocketlm ``.tflite`` says about itself (JSON under :data:`METADATA_KEY`).

    ``model`` is the backbone's config as KerasHub gives it (``backbone.get_config()``), kept
    for people and tools; the runtime reads only the typed fields below it.
    """

    contract: str = CONTRACT_NAME
    contract_version: int = CONTRACT_VERSION
    model_type: str = "gpt2"  # the family name (see ``pocketlm families``)
    model: dict[str, Any] = field(default_factory=dict)
    sequence_length: int = 256  # cache rows: prompt + generated tokens of one sequence
    prefill: dict[str, int] = field(default_factory=dict)  # signature -> tokens it consumes
    quantization: str = "none"
    end_token_id: int = 50256
    # Since families: the tokens KerasHub's generate would use. ``start_token_id`` is
    # prepended to every prompt when ``add_start_token`` (KerasHub's generate_preprocess
    # always does, except for models trained without one, which say so).
    start_token_id: int | None = None
    add_start_token: bool = False
    stop_token_ids: list[int] = field(default_factory=list)
    num_layers: int = 0
    cache_layout: str = LAYOUT_HEADS_FIRST
    cache_shape: list[int] = field(default_factory=list)
    vocabulary_size: int = 0
    # Since v2: tokens LiteRT-LM may hold (cache rows - largest prefill chunk + 1).
    max_num_tokens: int = 0
    tokenizer: str = "gpt2-bpe"  # kind of the tokenizer stored under TOKENIZER_METADATA_KEY
    # Since chat: the family's chat template as JSON (:class:`pocketlm.chat_template.
    # ChatTemplate`); None in older files and for families without one (the runtime then
    # uses the family's template if it knows the family, else the plain fallback).
    chat_template: dict[str, Any] | None = None
    source: str = ""
    created_by: str = ""
    notes: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        # Version-1 files written before families carry only the GPT-2 config in ``model``:
        # derive the typed fields from it, so old files keep loading.
        m = self.model if isinstance(self.model, dict) else {}
        if not self.num_layers and "num_layers" in m:
            self.num_layers = _int(m.get("num_layers"))
        if not self.vocabulary_size and "vocabulary_size" in m:
            self.vocabulary_size = _int(m.get("vocabulary_size"))
        if not self.cache_shape and self.cache_layout in (LAYOUT_HEADS_FIRST, CACHE_LAYOUTS[
                LAYOUT_HEADS_FIRST]) and {"num_heads", "hidden_dim"} <= set(m):
            heads = _int(m.get("num_heads"))
            if heads > 0:
                self.cache_layout = LAYOUT_HEADS_FIRST
                self.cache_shape = cache_shape(LAYOUT_HEADS_FIRST, _int(self.sequence_length),
                                               heads, _int(m.get("hidden_dim")) // heads)
        if not self.max_num_tokens and isinstance(self.prefill, dict):
            try:
                self.max_num_tokens = max_num_tokens(
                    self.sequence_length, {k: int(v) for k, v in self.prefill.items()})
            except (TypeError, ValueError):
                pass  # validate_contract refuses such metadata with one line
        if not self.stop_token_ids and isinstance(self.end_token_id, int):
            self.stop_token_ids = [self.end_token_id]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ContractInfo:
        """Read the metadata JSON. Unknown keys are ignored on purpose: a newer pocketlm may
        add fields an older one can skip (a change it could misread bumps the version)."""
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})

    def signature_tokens(self) -> dict[str, int]:
        """Every generation signature (``decode`` and the prefills) -> tokens it consumes."""
        return {**self.prefill, DECODE: 1}


def _int(value: Any) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return 0
