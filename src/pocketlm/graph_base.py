"""What every exportable KV-cache graph shares: its signatures, and how a graph is cut into
parts of consecutive layers.

A graph computes ``embed -> block 0 .. block L-1 -> final norm -> LM head``. A *part* is a
slice of that chain: layers ``[first, last)``, with the embedding if it starts at layer 0
and the head if it ends at the last layer. Converting a big model part by part keeps the
converter's memory (and TensorFlow's 2 GB protobuf limit) to one part's weights; the parts
are then joined into one file (:mod:`pocketlm.stitch`) through the ``hidden_states`` tensor
each non-final part returns and the next one takes (see :data:`pocketlm.contract.HIDDEN`).

Signatures of a part (contract v2, :mod:`pocketlm.contract`; T tokens, D hidden size):

    inputs:  tokens [1, T] int32 (first part) | hidden_states [T, D] float32 (others),
             input_pos [T] int32, k_cache_i / v_cache_i for the part's layers i
    outputs: the same caches, plus logits [1, 1, V] (decode of the last part),
             logits [1, T, V] (score of the last part), or hidden_states [T, D] (others)

A whole model is the one part that has every layer.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import tensorflow as tf

from .contract import HIDDEN, INPUT_POS, LOGITS, TOKENS, cache_name_pairs


NEG_INF = -1e9  # a masked score: e^-1e9 is exactly 0 after softmax in float32


def attention_mask(allowed, relative: bool):
    """What :func:`masked_scores` adds or selects with, from ``allowed`` (bool, any shape
    that broadcasts against the scores).

    Float and dynamic modes get an additive mask (0 or :data:`NEG_INF`), built once per
    call and added to each layer's scores: XNNPACK runs the ADD, whereas a SELECT_V2 per
    layer falls back to LiteRT's own kernel and splits XNNPACK's graph at every layer
    (docs/benchmarks.md measures it). ``relative`` (full-int8) keeps ``allowed``."""
    return allowed if relative else tf.where(allowed, 0.0, NEG_INF)


def masked_scores(scores, mask, relative: bool):
    """Attention scores with the disallowed cache rows masked out (``mask`` from
    :func:`attention_mask`).

    Full-int8 (``relative``) quantizes the masked scores too: a -1e9 fill would make the
    int8 scale so coarse that every real score rounds to the same value, so disallowed rows
    get a fill 16 below the row's smallest score (weight < e^-16), a tight range."""
    if not relative:
        return scores + mask
    floor = tf.reduce_min(scores, axis=-1, keepdims=True) - 16.0
    return tf.where(mask, scores, floor)


@dataclass(frozen=True)
class Part:
    """Layers ``[first, last)`` of a model with ``num_layers`` layers."""

    first: int
    last: int
    num_layers: int

    @classmethod
    def whole(cls, num_layers: int) -> Part:
        return cls(0, num_layers, num_layers)

    @property
    def has_embedding(self) -> bool:
        return self.first == 0

    @property
    def has_head(self) -> bool:
        return self.last == self.num_layers

    @property
    def layers(self) -> range:
        return range(self.first, self.last)

    def __post_init__(self) -> None:
        if not 0 <= self.first < self.last <= self.num_layers:
            raise ValueError(f"no layers [{self.first}, {self.last}) in a model of "
                             f"{self.num_layers} layers")


def split_layers(num_layers: int, parts: int) -> list[Part]:
    """``parts`` parts of consecutive layers, as even as possible (earlier ones larger)."""
    parts = max(1, min(int(parts), num_layers))
    bounds = np.linspace(0, num_layers, parts + 1).round().astype(int)
    return [Part(int(a), int(b), num_layers) for a, b in zip(bounds[:-1], bounds[1:])]


class CacheGraph(tf.Module):
    """Base of the exportable graphs. Subclasses set ``seq``, ``cache_shape``, ``hidden_dim``
    and ``part``, and implement :meth:`forward` (first input, input_pos, caches) ->
    (hidden ``(T, D)``, new caches) and :meth:`head` ``(N, D) -> (N, V)``; ``forward``
    applies the final norm when the part has the head."""

    part: Part
    seq: int
    hidden_dim: int
    cache_shape: tuple[int, ...]

    @property
    def num_layers(self) -> int:
        """Layers of the whole model (cache names count from the model's first layer)."""
        return self.part.num_layers

    def cache_names(self) -> list[str]:
        return cache_name_pairs(self.part.layers)

    def forward(self, first, input_pos, caches):  # pragma: no cover - abstract
        raise NotImplementedError

    def head(self, hidden):  # pragma: no cover - abstract
        raise NotImplementedError

    def specs(self, tokens: int) -> list[tf.TensorSpec]:
        first = (tf.TensorSpec([1, tokens], tf.int32, name=TOKENS) if self.part.has_embedding
                 else tf.TensorSpec([tokens, self.hidden_dim], tf.float32, name=HIDDEN))
        return [first, tf.TensorSpec([tokens], tf.int32, name=INPUT_POS)] + [
            tf.TensorSpec(self.cache_shape, tf.float32, name=n) for n in self.cache_names()]

    def _outputs(self, hidden, new, rows: str | None) -> dict:
        out = dict(zip(self.cache_names(), new))
        if not self.part.has_head:
            out[HIDDEN] = hidden
        elif rows == "last":
            out[LOGITS] = self.head(hidden[-1:])[None]  # (1, 1, V)
        elif rows == "all":
            out[LOGITS] = self.head(hidden)[None]  # (1, T, V)
        return out

    def step_function(self, tokens: int, logits: bool):
        """tf.function for a signature of ``tokens`` tokens; with ``logits`` (decode) the
        last part also returns the logits of the last row, ``[1, 1, V]``."""

        def step(first, input_pos, *caches):
            hidden, new = self.forward(first, input_pos, list(caches))
            return self._outputs(hidden, new, "last" if logits else None)

        return tf.function(step, input_signature=self.specs(tokens))

    def score_function(self, tokens: int):
        """tf.function returning the logits of every position (teacher-forced evaluation)."""

        def score(first, input_pos, *caches):
            hidden, new = self.forward(first, input_pos, list(caches))
            return self._outputs(hidden, new, "all")

        return tf.function(score, input_signature=self.specs(tokens))

    def empty_caches(self) -> list[np.ndarray]:
        return [np.zeros(self.cache_shape, np.float32) for _ in self.cache_names()]
