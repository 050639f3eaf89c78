"""Any KerasHub decoder family with an explicit KV cache, through its own ``call_with_cache``.

Rather than re-state each family's math (rotary variants, ALiBi, soft-caps, sliding windows,
QK-norm, mixtures of experts), this graph calls the family's own
``causal_lm.call_with_cache(token_ids, cache, cache_update_index)`` at fixed shapes, so a
converted model computes exactly what KerasHub computes. What it changes is the cache's
interface: one K and one V tensor per layer, ``[1, 1, S, kv_heads * head_dim]`` (KerasHub's
layout with the heads folded, reshaped in the graph; see :mod:`pocketlm.contract`), because
LiteRT refuses the 6-D slices of KerasHub's stacked ``[1, layers, 2, S, kv_heads, head_dim]``
cache (../shared/notes/litert-facts.md).

* Input side: ``call_with_cache`` reads layer ``i`` as ``cache[:, i, ...]`` (or ``cache[i]``
  for per-layer tuples); a :class:`_CacheView` answers that with the layer's own tensors, so
  the stacked 6-D cache is never built.
* Output side: the updated stacked cache is unstacked back into per-layer K and V.
* Logits: only ``decode`` returns logits, of its one row (contract v2); prefills return the
  caches only, so the LM head ops ``call_with_cache`` builds for them are pruned.

Measured against the hand-written GPT-2 graph (:mod:`pocketlm.graph`), which stays the
GPT-2 fast path: see docs/families.md.
"""

from __future__ import annotations

import inspect
import warnings

import numpy as np
import tensorflow as tf

from .contract import LAYOUT_FLAT, cache_shape
from .families import PER_LAYER_TUPLE, Family
from .graph_base import CacheGraph, Part


class _CacheView:
    """Stands in for KerasHub's stacked cache: ``view[:, i, ...]`` is layer ``i``'s
    ``[1, 2, S, H, D]`` cache, ``view[i]`` its ``(k, v)`` pair (per-layer-tuple families)."""

    def __init__(self, layers: list[tuple[tf.Tensor, tf.Tensor]], tuple_form: bool) -> None:
        self._layers = layers
        self._tuple = tuple_form

    def __getitem__(self, index):
        if self._tuple:
            return self._layers[int(index)]
        if (isinstance(index, tuple) and len(index) == 3 and index[0] == slice(None)
                and index[2] is Ellipsis):
            k, v = self._layers[int(index[1])]
            return tf.stack([k, v], axis=1)  # (1, 2, S, H, D)
        raise TypeError(f"unexpected cache access {index!r}: pocketlm's cache view supports "
                        "cache[:, i, ...] and cache[i]")


class KerasCacheGraph(CacheGraph):
    """The exportable graph of any supported family (``family.fast_path`` families may use a
    faster hand-written one). ``causal_lm`` must be float32. Always the whole model: KerasHub
    runs its layers inside one ``call_with_cache`` (only hand-written graphs convert in
    parts)."""

    layout = LAYOUT_FLAT

    def __init__(self, causal_lm, family: Family, sequence_length: int) -> None:
        super().__init__(name=f"pocketlm_{family.name}")
        self.family = family
        self.seq = int(sequence_length)
        # A task object of the same class on the same backbone, without the preprocessor: a
        # tracked preprocessor drags its tokenizer's hash tables (Select-TF ops) into the file.
        self._lm = type(causal_lm)(backbone=causal_lm.backbone, preprocessor=None)
        # Track the raw tf.Variables: Keras 3 variables are not frozen otherwise and the file
        # would load, then fail on an uninitialised variable (../shared/notes).
        self._variables = [w.value for w in causal_lm.weights]
        self.part = Part.whole(int(causal_lm.backbone.num_layers))
        self.hidden_dim = int(getattr(causal_lm.backbone, "hidden_dim", 0))
        kv_heads, head_dim = self._probe_cache()
        self.kv_heads, self.head_dim = kv_heads, head_dim
        # A tuple: a list attribute would become a tracked ListWrapper.
        self.cache_shape = tuple(cache_shape(LAYOUT_FLAT, self.seq, kv_heads, head_dim))
        self._keras_shape = (1, self.seq, kv_heads, head_dim)  # what call_with_cache uses

    def _probe_cache(self) -> tuple[int, int]:
        """(kv_heads, head_dim) of one layer's cache, from the family's own ``_build_cache``
        on a single token (cheap, and true even where head_dim is not hidden / heads)."""
        build = self._lm._build_cache
        extra = [p for p in inspect.signature(build).parameters if p != "token_ids"]
        with warnings.catch_warnings():
            # One token: Keras warns that a softmax over a length-1 axis is always 1. True,
            # and harmless for a shape probe.
            warnings.simplefilter("ignore", UserWarning)
            out = build(np.zeros((1, 1), np.int32), *([None] * len(extra)))
        cache = out[1]
        if self.family.cache == PER_LAYER_TUPLE:
            shape = tuple(cache[0][0].shape)  # (1, 1, H, D)
            return int(shape[2]), int(shape[3])
        shape = tuple(cache.shape)  # (1, L, 2, 1, H, D)
        return int(shape[4]), int(shape[5])

    # -- the computation ------------------------------------------------------------------
    def forward(self, tokens, input_pos, caches):
        """Hidden states ``(T, D)`` of ``tokens`` placed at ``input_pos``, and the new
        per-layer caches (k_0, v_0, k_1, ...)."""
        unfold = lambda c: tf.reshape(c, self._keras_shape)  # noqa: E731
        layers = [(unfold(caches[2 * i]), unfold(caches[2 * i + 1]))
                  for i in range(self.num_layers)]
        tuple_form = self.family.cache == PER_LAYER_TUPLE
        _, hidden, new = self._lm.call_with_cache(tokens, _CacheView(layers, tuple_form),
                                                   input_pos[0])
        out = []
        if tuple_form:
            for k, v in new:
                out += [k, v]
        else:
            # Unstack (not new[:, i, 0]): LiteRT's STRIDED_SLICE stops at 5-D.
            for layer in tf.unstack(new, axis=1):  # each (1, 2, S, H, D)
                k, v = tf.unstack(layer, axis=1)
                out += [k, v]
        return hidden[0], [tf.reshape(c, self.cache_shape) for c in out]

    def head(self, hidden):
        """``(N, D) -> (N, V)``: the family's LM head (tied or not, soft-capped or not)."""
        return self._lm.backbone.token_embedding(hidden, reverse=True)
