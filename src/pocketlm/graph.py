"""GPT-2 with an explicit KV cache, written in plain TensorFlow for conversion to LiteRT.

KerasHub's ``call_with_cache`` keeps one 6-D cache ``[B, L, 2, S, H, Dh]``; LiteRT refuses
6-D slices and splitting K from V costs most of a decode step (../shared/notes). So this
module re-states the same math with the backbone's weights and the layout the runtime wants:
one K and one V tensor per layer, each ``[1, H, S, Dh]``, updated in place with
DYNAMIC_UPDATE_SLICE. Every signature is the same function at a different token count
(contract v2, LiteRT-LM's; see :mod:`pocketlm.contract`):

    decode(tokens[1, 1], input_pos[1], k_0, v_0, ...) -> logits[1, 1, V], k_0, v_0, ...
    prefill(tokens[1, T], input_pos[T], k_0, v_0, ...) -> k_0, v_0, ...

``input_pos[0]`` is where the chunk starts in the cache. Prefills return no logits (the last
prompt token goes through decode), so the LM head runs once per generated token.
``score`` returns the logits of every row (for evaluation).
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping

import numpy as np

from .quiet import quiet_tensorflow

quiet_tensorflow()  # before TensorFlow's import: its start-up lines stay off stderr
import tensorflow as tf  # noqa: E402
from tensorflow.compiler.tf2xla.python import xla

from .config import ModelConfig
from .contract import LAYOUT_HEADS_FIRST, cache_shape
from .graph_base import CacheGraph, Part, attention_mask, masked_scores



class BackboneWeights(Mapping):
    """The backbone's weights by their Keras path (``transformer_layer_0/...``), each read
    into numpy (float32) only when asked for: a graph of a part of a 1.5B model must not copy
    the other parts' 6 GB."""

    def __init__(self, backbone) -> None:
        self._vars = {w.path: w for w in backbone.weights}

    def __getitem__(self, key: str) -> np.ndarray:
        return np.asarray(self._vars[key].numpy(), np.float32)

    def __iter__(self) -> Iterator[str]:
        return iter(self._vars)

    def __len__(self) -> int:
        return len(self._vars)


def backbone_weights(backbone) -> BackboneWeights:
    """The backbone's weights by their Keras path, read lazily (:class:`BackboneWeights`)."""
    return BackboneWeights(backbone)


class KVCacheGPT2(CacheGraph):
    """The exportable graph (of ``part``, the whole model by default). Weights are copied
    into raw ``tf.Variable``s so they freeze; a part copies only its own."""

    layout = LAYOUT_HEADS_FIRST

    def __init__(self, weights: dict[str, np.ndarray], config: ModelConfig,
                 sequence_length: int, int8_embedding: bool = False,
                 relative_mask: bool = False, part: Part | None = None) -> None:
        super().__init__(name="pocketlm_gpt2")
        self.config = config
        self.seq = sequence_length
        c = config
        self.part = part or Part.whole(c.num_layers)
        self.hidden_dim = c.hidden_dim
        self.cache_shape = tuple(cache_shape(LAYOUT_HEADS_FIRST, sequence_length, c.num_heads,
                                             c.head_dim))
        var = lambda key: tf.Variable(weights[key], trainable=False)  # noqa: E731
        self.int8_embedding = int8_embedding
        self.relative_mask = relative_mask
        if self.part.has_embedding or self.part.has_head:
            self.wte = var("token_embedding/embeddings")  # (V, D): also the tied LM head
        if int8_embedding and self.part.has_embedding:
            # The lookup reads an int8 copy with one scale per row, quantized here by hand:
            # quantizers that only handle FULLY_CONNECTED (int4) would otherwise leave the
            # whole float32 table in the file just for the GATHER.
            table = weights["token_embedding/embeddings"]
            scale = np.maximum(np.abs(table).max(axis=1, keepdims=True), 1e-12) / 127.0
            self.wte_q = tf.Variable(np.round(table / scale).astype(np.int8), trainable=False)
            self.wte_scale = tf.Variable(scale.astype(np.float32), trainable=False)
        if self.part.has_embedding:
            self.wpe = tf.Variable(weights["position_embedding/embeddings"][:sequence_length],
                                   trainable=False)  # (S, D)
        self.layers = []
        for i in self.part.layers:
            p = f"transformer_layer_{i}/"
            a = p + "self_attention/"
            d = c.hidden_dim
            # Q, K and V as one (D, 3D) matmul: one FULLY_CONNECTED op instead of three.
            qkv_w = np.concatenate([weights[a + n + "/kernel"].reshape(d, d)
                                    for n in ("query", "key", "value")], axis=1)
            qkv_b = np.concatenate([weights[a + n + "/bias"].reshape(d)
                                    for n in ("query", "key", "value")])
            self.layers.append({
                "ln1_g": var(p + "self_attention_layer_norm/gamma"),
                "ln1_b": var(p + "self_attention_layer_norm/beta"),
                "qkv_w": tf.Variable(qkv_w, trainable=False),
                "qkv_b": tf.Variable(qkv_b, trainable=False),
                "out_w": tf.Variable(weights[a + "attention_output/kernel"].reshape(d, d),
                                     trainable=False),
                "out_b": var(a + "attention_output/bias"),
                "ln2_g": var(p + "feedforward_layer_norm/gamma"),
                "ln2_b": var(p + "feedforward_layer_norm/beta"),
                "fc_w": var(p + "feedforward_intermediate_dense/kernel"),
                "fc_b": var(p + "feedforward_intermediate_dense/bias"),
                "proj_w": var(p + "feedforward_output_dense/kernel"),
                "proj_b": var(p + "feedforward_output_dense/bias"),
            })
        if self.part.has_head:
            self.lnf_g = var("layer_norm/gamma")
            self.lnf_b = var("layer_norm/beta")

    # -- pieces ---------------------------------------------------------------------------
    def _layer_norm(self, x, g, b):
        mean, variance = tf.nn.moments(x, axes=[-1], keepdims=True)
        return (x - mean) * tf.math.rsqrt(variance + self.config.layer_norm_epsilon) * g + b

    @staticmethod
    def _dense(x, w, b):  # x: (T, in) -> (T, out); 2-D keeps it a plain FULLY_CONNECTED
        return tf.matmul(x, w) + b

    def _attention(self, x, layer, k_cache, v_cache, input_pos, mask):
        c, t = self.config, tf.shape(x)[0]
        h, dh = c.num_heads, c.head_dim
        qkv = self._dense(x, layer["qkv_w"], layer["qkv_b"])  # (T, 3D)
        qkv = tf.transpose(tf.reshape(qkv, [t, 3, h, dh]), [1, 2, 0, 3])  # (3, H, T, Dh)
        q, k, v = qkv[0:1], qkv[1:2], qkv[2:3]  # each (1, H, T, Dh)
        zero = tf.zeros([], tf.int32)
        start = tf.stack([zero, zero, input_pos[0], zero])
        k_cache = xla.dynamic_update_slice(k_cache, k, start)  # (1, H, S, Dh)
        v_cache = xla.dynamic_update_slice(v_cache, v, start)
        scores = tf.matmul(q, k_cache, transpose_b=True) * (1.0 / math.sqrt(dh))  # (1,H,T,S)
        scores = masked_scores(scores, mask, self.relative_mask)
        probs = tf.nn.softmax(scores, axis=-1)
        out = tf.matmul(probs, v_cache)  # (1, H, T, Dh)
        out = tf.reshape(tf.transpose(out, [0, 2, 1, 3]), [t, c.hidden_dim])
        return self._dense(out, layer["out_w"], layer["out_b"]), k_cache, v_cache

    def forward(self, first, input_pos, caches):
        """Hidden states (T, D) of ``first`` (tokens [1, T], or the previous part's hidden
        states [T, D]) placed at ``input_pos``, and the part's new caches."""
        t = tf.shape(first)[1] if self.part.has_embedding else tf.shape(first)[0]
        positions = input_pos[0] + tf.range(t, dtype=tf.int32)  # (T,)
        if self.part.has_embedding:
            # Padding rows of a chunk near the cache end may lie past the position table
            # (LiteRT refuses an out-of-range GATHER): clamp them; they are masked and
            # overwritten later.
            x = self._embed(first[0]) + tf.gather(self.wpe,
                                                  tf.minimum(positions, self.seq - 1))
        else:
            x = first
        # Causal mask from int32 positions (a float mask breaks full-int8 quantization).
        allowed = tf.range(self.seq, dtype=tf.int32)[None, :] <= positions[:, None]  # (T, S)
        mask = attention_mask(allowed[None, None], self.relative_mask)  # (1, 1, T, S)
        new_caches = []
        for i, layer in enumerate(self.layers):
            a, k, v = self._attention(self._layer_norm(x, layer["ln1_g"], layer["ln1_b"]),
                                      layer, caches[2 * i], caches[2 * i + 1], input_pos,
                                      mask)
            x = x + a
            m = self._layer_norm(x, layer["ln2_g"], layer["ln2_b"])
            m = tf.nn.gelu(self._dense(m, layer["fc_w"], layer["fc_b"]), approximate=True)
            x = x + self._dense(m, layer["proj_w"], layer["proj_b"])
            new_caches += [k, v]
        if not self.part.has_head:
            return x, new_caches
        return self._layer_norm(x, self.lnf_g, self.lnf_b), new_caches

    def _embed(self, ids):  # (T,) -> (T, D)
        if not self.int8_embedding:
            return tf.gather(self.wte, ids)
        rows = tf.cast(tf.gather(self.wte_q, ids), tf.float32)
        return rows * tf.gather(self.wte_scale, ids)

    def head(self, h):  # (N, D) -> (N, V), with the tied embedding as FULLY_CONNECTED weights
        return tf.matmul(h, self.wte, transpose_b=True)
