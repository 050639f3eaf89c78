"""The Llama-style KerasHub decoders (Llama, Llama 3, Mistral, Qwen, Qwen 3, Gemma, Gemma 2)
with an explicit KV cache, written in plain TensorFlow like GPT-2's graph (:mod:`.graph`).

KerasHub's ``call_with_cache`` (:mod:`.graph_keras`) stacks K and V, slices them apart,
repeats the KV heads for grouped-query attention and transposes through einsums at every
layer and step; measured 3.7x slower than GPT-2's hand-written graph (docs/families.md).
This graph computes the same logits (the math of each family is data, a
:class:`~pocketlm.decoder_spec.DecoderSpec`) the way GPT-2's does:

* one K and one V cache per layer, ``[1, kv_heads, S, head_dim]`` (heads-first), updated
  with DYNAMIC_UPDATE_SLICE at ``input_pos[0]``; attention multiplies against it directly;
* grouped-query attention without repeating K/V: the queries of the ``G`` heads sharing a
  KV head are stacked as ``G * T`` rows, ``[1, kv_heads, T * G, head_dim]``;
* Q, K and V as one matmul (with Qwen's biases), RoPE applied to Q and K together from
  cos/sin computed from the positions in float (or, for full-int8, gathered from tables by
  position, clamped as GPT-2's position table), QK-norm (Qwen 3) on Q and K together; gate
  and up projections as one matmul;
* the attention scale folded into the query weights; causal and sliding-window masks from
  int32 positions (a float mask breaks full-int8); the LM head only on the rows needed.

Gemma's RoPE interleaves the two halves of Q and K after rotating; the same permutation of
both leaves every score unchanged, so it is not done (the cache is this graph's own).
"""

from __future__ import annotations

import numpy as np

from .quiet import quiet_tensorflow

quiet_tensorflow()  # before TensorFlow's import: its start-up lines stay off stderr
import tensorflow as tf  # noqa: E402
from tensorflow.compiler.tf2xla.python import xla  # noqa: E402

from .contract import LAYOUT_HEADS_FIRST, cache_shape  # noqa: E402
from .decoder_spec import GELU_TANH, decoder_spec, final_norm_key, layer_weights  # noqa: E402
from .families import Family  # noqa: E402
from .graph_base import CacheGraph, Part, attention_mask, masked_scores  # noqa: E402

_EMBEDDINGS, _HEAD = "token_embedding/embeddings", "token_embedding/reverse_embeddings"


class DecoderGraph(CacheGraph):
    """The exportable graph of ``part`` (the whole model by default) of a Llama-style model.

    Args:
        weights: the backbone's weights by Keras path (:func:`pocketlm.graph.backbone_weights`);
            only the part's own are copied into ``tf.Variable``s (and nothing is freed).
        config: the backbone's KerasHub config (``backbone.get_config()``).
        family: the model's family (one of :data:`pocketlm.decoder_spec.SPECS`).
        sequence_length: cache rows S.
        int8_embedding: look tokens up in an int8 copy of the table with one scale per row.
        relative_mask: fill masked scores relative to the row's minimum (full-int8).
        rope_table: gather RoPE's cos/sin from ``(S, head_dim / 2)`` tables by position
            (full-int8: float positions would be quantized to 256 levels), instead of
            computing them from the positions in float (other modes: the dynamic-range
            quantizer would turn a table into int8, and float16 would round it).
        part: layers ``[first, last)`` (:class:`pocketlm.graph_base.Part`).

    Raises UnsupportedModelError for a family without a spec, KeyError for missing weights.
    """

    layout = LAYOUT_HEADS_FIRST

    def __init__(self, weights: dict[str, np.ndarray], config: dict, family: Family,
                 sequence_length: int, int8_embedding: bool = False,
                 relative_mask: bool = False, rope_table: bool = False,
                 part: Part | None = None) -> None:
        super().__init__(name=f"pocketlm_{family.name}")
        self.spec = s = decoder_spec(family.name, config)
        self.seq = int(sequence_length)
        self.part = part or Part.whole(s.num_layers)
        if self.part.num_layers != s.num_layers:
            raise ValueError(f"a part of a {self.part.num_layers}-layer model, but the model "
                             f"has {s.num_layers} layers")
        self.hidden_dim = s.hidden_dim
        self.cache_shape = tuple(cache_shape(LAYOUT_HEADS_FIRST, self.seq, s.num_kv_heads,
                                             s.head_dim))
        self.int8_embedding, self.relative_mask = int8_embedding, relative_mask
        const = lambda a: tf.Variable(np.asarray(a, np.float32), trainable=False)  # noqa: E731
        self.tied = _HEAD not in weights
        has_embedding, has_head = self.part.has_embedding, self.part.has_head
        if (has_embedding and not int8_embedding) or (has_head and self.tied):
            self.embeddings = const(weights[_EMBEDDINGS])  # (V, D); the tied LM head too
        if has_embedding and int8_embedding:
            # As GPT-2's graph: an int8 table with a scale per row, so no quantizer leaves
            # the float table in the file just for the GATHER.
            table = np.asarray(weights[_EMBEDDINGS], np.float32)
            scale = np.maximum(np.abs(table).max(axis=1, keepdims=True), 1e-12) / 127.0
            self.embeddings_q = tf.Variable(np.round(table / scale).astype(np.int8),
                                            trainable=False)
            self.embeddings_scale = const(scale)
        if has_head and not self.tied:
            # (V, D), multiplied transposed as the tied table: FULLY_CONNECTED's own layout,
            # so the converter folds no transpose (it kept one copy per signature).
            self.head_kernel = const(np.transpose(weights[_HEAD]))
        if has_head:
            self.final_norm = const(self._norm_scale(weights[final_norm_key(s)]))
        inverse = s.rope.inverse_frequencies(s.head_dim)  # (Dh / 2,) float32
        self.rope_table = rope_table
        if rope_table:  # cos/sin of every cache position, (S, Dh / 2), as KerasHub's float32
            angles = (np.arange(self.seq, dtype=np.float32)[:, None] * inverse[None, :])
            self.cos, self.sin = const(np.cos(angles)), const(np.sin(angles))
        else:
            self.inverse_frequencies = const(inverse)  # < 1024 values: never quantized
        self.layers = [self._layer(layer_weights(weights, s, i)) for i in self.part.layers]

    def _norm_scale(self, w) -> np.ndarray:
        return np.asarray(w, np.float32) + np.float32(self.spec.norm_offset)

    def _layer(self, w: dict[str, np.ndarray]) -> dict[str, tf.Variable]:
        """One layer's variables: fused, pre-scaled and pre-offset in numpy."""
        s = self.spec
        const = lambda a: tf.Variable(np.asarray(a, np.float32), trainable=False)  # noqa: E731
        # The attention scale multiplies the queries (RoPE is linear); after QK-norm it goes
        # into the query norm's scale, since the norm would undo it in the weights.
        q_scale = 1.0 if s.qk_norm else s.query_scale
        layer = {"qkv": const(np.concatenate([w["q"] * q_scale, w["k"], w["v"]], axis=1)),
                 "o": const(w["o"]),
                 "norm1": const(self._norm_scale(w["norm1"])),
                 "norm2": const(self._norm_scale(w["norm2"])),
                 "gate_up": const(np.concatenate([w["gate"], w["up"]], axis=1)),
                 "down": const(w["down"])}
        if s.qkv_bias:
            layer["qkv_bias"] = const(np.concatenate([w["q_bias"] * q_scale, w["k_bias"],
                                                      w["v_bias"]]))
        if s.qk_norm:  # one (heads + kv_heads, Dh) scale table for Q and K normed together
            layer["qk_norm"] = const(np.concatenate([
                np.tile(np.asarray(w["q_norm"]) * s.query_scale, (s.num_heads, 1)),
                np.tile(np.asarray(w["k_norm"]), (s.num_kv_heads, 1))]))
        for name in ("post_attention", "post_ffw"):
            if name in w:
                layer[name] = const(self._norm_scale(w[name]))
        return layer

    # -- pieces ---------------------------------------------------------------------------
    def _rms_norm(self, x, scale, epsilon: float | None = None):
        variance = tf.reduce_mean(tf.square(x), axis=-1, keepdims=True)
        eps = self.spec.epsilon if epsilon is None else epsilon
        return x * tf.math.rsqrt(variance + eps) * scale

    @staticmethod
    def _rope(x, cos, sin):  # x (T, N, Dh), cos/sin (T, 1, Dh/2): KerasHub's rotate-half
        x1, x2 = tf.split(x, 2, axis=-1)
        return tf.concat([x1 * cos - x2 * sin, x2 * cos + x1 * sin], axis=-1)

    def _attention(self, x, layer, k_cache, v_cache, input_pos, cos, sin, mask):
        s, t = self.spec, tf.shape(x)[0]
        h, kv, dh, g = s.num_heads, s.num_kv_heads, s.head_dim, s.group
        qkv = tf.matmul(x, layer["qkv"])  # (T, (H + 2 KV) Dh)
        if s.qkv_bias:
            qkv = qkv + layer["qkv_bias"]
        qk = tf.reshape(qkv[:, :(h + kv) * dh], [t, h + kv, dh])
        v = tf.reshape(qkv[:, (h + kv) * dh:], [t, kv, dh])
        if s.qk_norm:
            qk = self._rms_norm(qk, layer["qk_norm"], s.qk_norm_epsilon)
        qk = self._rope(qk, cos, sin)
        q, k = qk[:, :h], qk[:, h:]
        zero = tf.zeros([], tf.int32)
        start = tf.stack([zero, zero, input_pos[0], zero])
        k_cache = xla.dynamic_update_slice(k_cache, tf.transpose(k, [1, 0, 2])[None], start)
        v_cache = xla.dynamic_update_slice(v_cache, tf.transpose(v, [1, 0, 2])[None], start)
        # Query head kv * G + g reads KV head kv (KerasHub repeats each KV head G times):
        # its rows are t * G + g of the KV head's block.
        q = tf.transpose(tf.reshape(q, [t, kv, g * dh]), [1, 0, 2])
        q = tf.reshape(q, [1, kv, t * g, dh])
        scores = tf.matmul(q, k_cache, transpose_b=True)  # (1, KV, T G, S)
        if s.attention_soft_cap is not None:
            scores = tf.tanh(scores / s.attention_soft_cap) * s.attention_soft_cap
        scores = masked_scores(scores, mask, self.relative_mask)
        out = tf.matmul(tf.nn.softmax(scores, axis=-1), v_cache)  # (1, KV, T G, Dh)
        out = tf.transpose(tf.reshape(out, [kv, t, g * dh]), [1, 0, 2])
        return tf.matmul(tf.reshape(out, [t, h * dh]), layer["o"]), k_cache, v_cache

    def _mlp(self, x, layer):
        gate, up = tf.split(tf.matmul(x, layer["gate_up"]), 2, axis=-1)
        if self.spec.activation == GELU_TANH:
            gate = tf.nn.gelu(gate, approximate=True)
        else:
            gate = tf.nn.silu(gate)
        return tf.matmul(gate * up, layer["down"])

    def _rope_angles(self, positions):
        """cos and sin of each row's rotary angles, each ``(T, 1, Dh / 2)``."""
        if self.rope_table:
            # Padding rows of a chunk near the cache end lie past the table (LiteRT refuses
            # an out-of-range GATHER): clamp them; they are masked and overwritten later.
            clamped = tf.minimum(positions, self.seq - 1)
            return (tf.gather(self.cos, clamped)[:, None, :],
                    tf.gather(self.sin, clamped)[:, None, :])
        # As KerasHub: float32 positions times float32 inverse frequencies.
        angles = tf.cast(positions, tf.float32)[:, None] * self.inverse_frequencies[None, :]
        return tf.cos(angles)[:, None, :], tf.sin(angles)[:, None, :]

    def _masks(self, positions) -> dict:
        """Masks of the allowed (query row, cache row) pairs, ``(1, 1, T G, S)``, per window
        size (:func:`~pocketlm.graph_base.attention_mask`)."""
        g = self.spec.group
        rows = tf.reshape(tf.tile(positions[:, None], [1, g]), [-1])[:, None]  # (T G, 1)
        keys = tf.range(self.seq, dtype=tf.int32)[None, :]
        causal = keys <= rows
        masks = {None: causal[None, None]}
        for w in set(self.spec.sliding_windows) - {None}:
            # A window as long as the cache hides nothing: no op for it.
            masks[w] = masks[None] if w >= self.seq else \
                tf.logical_and(causal, keys > rows - w)[None, None]
        return {w: attention_mask(m, self.relative_mask) for w, m in masks.items()}

    def forward(self, first, input_pos, caches):
        """Hidden states (T, D) of ``first`` (tokens [1, T], or the previous part's hidden
        states [T, D]) placed at ``input_pos``, and the part's new caches. The last part's
        hidden states are not normed yet: :meth:`head` applies the final norm."""
        s = self.spec
        t = tf.shape(first)[1] if self.part.has_embedding else tf.shape(first)[0]
        positions = input_pos[0] + tf.range(t, dtype=tf.int32)  # (T,)
        x = self._embed(first[0]) if self.part.has_embedding else first
        cos, sin = self._rope_angles(positions)
        masks = self._masks(positions)
        new_caches = []
        for i, layer in enumerate(self.layers):
            a, k, v = self._attention(self._rms_norm(x, layer["norm1"]), layer, caches[2 * i],
                                      caches[2 * i + 1], input_pos, cos, sin,
                                      masks[s.sliding_windows[self.part.first + i]])
            if "post_attention" in layer:
                a = self._rms_norm(a, layer["post_attention"])
            x = x + a
            m = self._mlp(self._rms_norm(x, layer["norm2"]), layer)
            if "post_ffw" in layer:
                m = self._rms_norm(m, layer["post_ffw"])
            x = x + m
            new_caches += [k, v]
        # The final norm is left to head(), after the rows are picked: decode norms one row,
        # and the converter folds its scale into the head's weights alike in every signature
        # (a norm before decode's row slice left a second copy of the head in the file).
        return x, new_caches

    def _embed(self, ids):  # (T,) -> (T, D)
        if self.int8_embedding:
            x = tf.cast(tf.gather(self.embeddings_q, ids), tf.float32)
            x = x * tf.gather(self.embeddings_scale, ids)
        else:
            x = tf.gather(self.embeddings, ids)
        if self.spec.embedding_scale is not None:  # Gemma: sqrt(hidden) in float32
            x = x * self.spec.embedding_scale
        return x

    def head(self, h):  # (N, D) -> (N, V): the final norm, then a plain FULLY_CONNECTED
        h = self._rms_norm(h, self.final_norm)
        if self.tied:
            logits = tf.matmul(h, self.embeddings, transpose_b=True)
        else:
            logits = tf.matmul(h, self.head_kernel, transpose_b=True)
        cap = self.spec.final_soft_cap
        return logits if cap is None else tf.tanh(logits / cap) * cap
