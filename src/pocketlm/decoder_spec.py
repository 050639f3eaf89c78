"""The math of the Llama-style KerasHub decoders, said once per family as data.

:class:`DecoderSpec` describes what :class:`pocketlm.graph_decoder.DecoderGraph` must compute
for a backbone config: head counts and sizes, the norm (RMSNorm, Gemma's ``(1 + w)``), the
MLP activation, the rotary frequencies (plain, linear scaling, Llama 3.1's smoothing), QKV
biases, QK-norm, soft-caps, post-norms and sliding windows per layer. Every value is read
from KerasHub 0.32's source of the family (``keras_hub/src/models/<family>/``), including
its quirks: Llama's ``rope_position_scaling_factor`` does nothing there (its rotary layer
overrides the frequencies without applying it), Qwen 3 always masks with
``sliding_window_size`` and its QK-norms use epsilon 1e-5 whatever the config, Gemma's RoPE
base is fixed at 10,000.

:func:`layer_weights` gives one layer's weights in one canonical form whatever the family's
Keras weight paths (Gemma stores ``(heads, D, head_dim)`` kernels, Llama ``(D, heads,
head_dim)``). numpy only: no TensorFlow, no Keras.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from .errors import UnsupportedModelError

SILU, GELU_TANH = "silu", "gelu_tanh"


@dataclass(frozen=True)
class Rope:
    """Rotary frequencies: ``theta ** (-2i / head_dim)``, divided by ``linear_factor``, then
    (when ``llama3`` = (factor, low_freq_factor, high_freq_factor, pretraining_length))
    Llama 3.1's smoothing of the long wavelengths."""

    theta: float = 10000.0
    linear_factor: float = 1.0
    llama3: tuple[float, float, float, float] | None = None

    def inverse_frequencies(self, head_dim: int) -> np.ndarray:
        """``(head_dim / 2,)`` float32, computed in float32 as KerasHub does."""
        idx = np.arange(0, head_dim, 2, dtype=np.float32) / np.float32(head_dim)
        inv = (np.float32(1.0) / np.power(np.float32(self.theta), idx)).astype(np.float32)
        if self.llama3 is None:
            return (inv / np.float32(self.linear_factor)).astype(np.float32)
        factor, low, high, length = (np.float32(x) for x in self.llama3)
        wavelen = np.float32(2 * math.pi) / inv
        inv = np.where(wavelen > length / low, inv / factor, inv)
        smooth = (length / wavelen - low) / (high - low)
        smoothed = (1 - smooth) * (inv / factor) + smooth * inv
        medium = (wavelen >= length / high) & (wavelen <= length / low)
        return np.where(medium, smoothed, inv).astype(np.float32)


@dataclass(frozen=True)
class DecoderSpec:
    """What one decoder layer stack computes (see the module docstring)."""

    family: str
    naming: str  # "llama" (transformer_layer_i/...) or "gemma" (decoder_block_i/...)
    num_layers: int
    hidden_dim: int
    num_heads: int
    num_kv_heads: int
    head_dim: int
    vocabulary_size: int
    epsilon: float
    query_scale: float  # multiplies the queries (1 / sqrt(head_dim) unless the family says)
    rope: Rope
    activation: str = SILU
    norm_offset: float = 0.0  # Gemma's RMSNorm multiplies by (1 + w)
    embedding_scale: float | None = None  # Gemma: sqrt(hidden_dim) in float32
    qkv_bias: bool = False
    qk_norm: bool = False
    qk_norm_epsilon: float = 1e-5  # Qwen 3's attention keeps its own default (see _qwen3)
    post_attention_norm: bool = False
    post_ffw_norm: bool = False
    attention_soft_cap: float | None = None
    final_soft_cap: float | None = None
    sliding_windows: tuple[int | None, ...] = ()  # per layer; None: attends to all

    @property
    def group(self) -> int:
        """Query heads per KV head."""
        return self.num_heads // self.num_kv_heads


def _llama_rope(c: dict[str, Any]) -> Rope:
    # KerasHub's LlamaRotaryEmbedding ignores rope_position_scaling_factor (see above).
    keys = ("rope_frequency_adjustment_factor", "rope_low_freq_factor",
            "rope_high_freq_factor", "rope_pretraining_sequence_length")
    scaling = tuple(float(c[k]) for k in keys) if c.get(keys[0]) is not None else None
    return Rope(float(c.get("rope_max_wavelength", 10000)), 1.0, scaling)


def _plain_rope(c: dict[str, Any]) -> Rope:
    return Rope(float(c.get("rope_max_wavelength", 10000)),
                float(c.get("rope_scaling_factor", 1.0) or 1.0))


def _common(family: str, c: dict[str, Any], head_dim: int | None, **kw) -> DecoderSpec:
    heads, layers = int(c["num_query_heads"]), int(c["num_layers"])
    head_dim = int(head_dim or c["hidden_dim"] // heads)
    kw.setdefault("query_scale", 1.0 / math.sqrt(head_dim))
    windows = kw.pop("windows", None)
    return DecoderSpec(
        family=family, num_layers=layers, hidden_dim=int(c["hidden_dim"]), num_heads=heads,
        num_kv_heads=int(c.get("num_key_value_heads") or heads), head_dim=head_dim,
        vocabulary_size=int(c["vocabulary_size"]),
        epsilon=float(c.get("layer_norm_epsilon", 1e-6)),
        sliding_windows=tuple(windows(i) for i in range(layers)) if windows else
        (None,) * layers, **kw)


def _llama(family: str, c: dict[str, Any]) -> DecoderSpec:
    return _common(family, c, None, naming="llama", rope=_llama_rope(c))


def _mistral(family: str, c: dict[str, Any]) -> DecoderSpec:
    window = c.get("sliding_window")
    return _common(family, c, c.get("head_dim"), naming="llama", rope=_plain_rope(c),
                   windows=lambda i: int(window) if window else None)


def _qwen(family: str, c: dict[str, Any]) -> DecoderSpec:
    window = c.get("sliding_window_size") if c.get("use_sliding_window_attention") else None
    return _common(family, c, None, naming="llama", rope=_plain_rope(c), qkv_bias=True,
                   windows=lambda i: int(window) if window else None)


def _qwen3(family: str, c: dict[str, Any]) -> DecoderSpec:
    window = c.get("sliding_window_size")  # Qwen 3's attention masks whenever it is set
    # Its decoder does not pass layer_norm_epsilon to the attention, whose QK-norms keep
    # their default 1e-5.
    return _common(family, c, c.get("head_dim"), naming="llama", rope=_plain_rope(c),
                   qk_norm=True, qk_norm_epsilon=1e-5,
                   windows=lambda i: int(window) if window else None)


def _gemma(family: str, c: dict[str, Any]) -> DecoderSpec:
    heads, hidden = int(c["num_query_heads"]), int(c["hidden_dim"])
    norm = int(c["head_dim"]) if c.get("query_head_dim_normalize", True) else hidden // heads
    window = c.get("sliding_window_size") if c.get("use_sliding_window_attention") else None
    cap = lambda k: float(c[k]) if c.get(k) is not None else None  # noqa: E731
    return _common(
        family, c, c["head_dim"], naming="gemma", rope=Rope(10000.0),
        query_scale=1.0 / math.sqrt(norm), activation=GELU_TANH, norm_offset=1.0,
        embedding_scale=float(np.sqrt(np.float32(hidden))),
        post_attention_norm=bool(c.get("use_post_attention_norm")),
        post_ffw_norm=bool(c.get("use_post_ffw_norm")),
        attention_soft_cap=cap("attention_logit_soft_cap"),
        final_soft_cap=cap("final_logit_soft_cap"),
        windows=lambda i: int(window) if window and i % 2 == 0 else None)  # even layers


SPECS: dict[str, Callable[[str, dict[str, Any]], DecoderSpec]] = {
    "llama": _llama, "llama3": _llama, "mistral": _mistral, "qwen": _qwen, "qwen3": _qwen3,
    "gemma": _gemma, "gemma2": _gemma}


def decoder_spec(family: str, config: dict[str, Any]) -> DecoderSpec:
    """The spec of a ``family`` backbone with KerasHub config ``config``. Raises
    UnsupportedModelError for a family without a hand-written graph."""
    if family not in SPECS:
        raise UnsupportedModelError(f"no hand-written graph for the {family} family")
    spec = SPECS[family](family, config)
    if spec.num_heads % spec.num_kv_heads:
        raise UnsupportedModelError(f"{spec.num_heads} query heads cannot share "
                                    f"{spec.num_kv_heads} key/value heads evenly")
    return spec


# -- weights -------------------------------------------------------------------------------
def final_norm_key(spec: DecoderSpec) -> str:
    return "final_normalization/scale" if spec.naming == "gemma" else \
        "sequence_output_layernorm/scale"


def layer_weights(weights: dict[str, np.ndarray], spec: DecoderSpec, i: int
                  ) -> dict[str, np.ndarray]:
    """Layer ``i``'s weights as 2-D ``(in, out)`` kernels: ``q (D, H*Dh)``, ``k``, ``v
    (D, KV*Dh)``, ``o (H*Dh, D)``, ``gate``, ``up (D, I)``, ``down (I, D)``; norm scales
    ``(D,)`` (``norm1``, ``norm2``, optional ``post_attention``, ``post_ffw``), and when the
    family has them ``q_bias``, ``k_bias``, ``v_bias``, ``q_norm``, ``k_norm (Dh,)``."""
    d = spec.hidden_dim
    flat = lambda a: np.asarray(a).reshape(d, -1)  # noqa: E731
    if spec.naming == "gemma":
        p, a = f"decoder_block_{i}/", f"decoder_block_{i}/attention/"
        heads_first = lambda n: flat(np.transpose(weights[a + n + "/kernel"], (1, 0, 2)))  # noqa
        out = {"q": heads_first("query"), "k": heads_first("key"), "v": heads_first("value"),
               "norm1": weights[p + "pre_attention_norm/scale"],
               "norm2": weights[p + "pre_ffw_norm/scale"],
               "gate": weights[p + "ffw_gating/kernel"], "up": weights[p + "ffw_gating_2/kernel"],
               "down": weights[p + "ffw_linear/kernel"]}
        if spec.post_attention_norm:
            out["post_attention"] = weights[p + "post_attention_norm/scale"]
        if spec.post_ffw_norm:
            out["post_ffw"] = weights[p + "post_ffw_norm/scale"]
    else:
        p, a = f"transformer_layer_{i}/", f"transformer_layer_{i}/self_attention/"
        out = {n[0]: flat(weights[a + n + "/kernel"]) for n in ("query", "key", "value")}
        out.update(norm1=weights[p + "self_attention_layernorm/scale"],
                   norm2=weights[p + "feedforward_layernorm/scale"],
                   gate=weights[p + "feedforward_gate_dense/kernel"],
                   up=weights[p + "feedforward_intermediate_dense/kernel"],
                   down=weights[p + "feedforward_output_dense/kernel"])
        if spec.qkv_bias:
            out.update({n[0] + "_bias": np.asarray(weights[a + n + "/bias"]).reshape(-1)
                        for n in ("query", "key", "value")})
        if spec.qk_norm:
            out.update(q_norm=weights[a + "query_dense_layernorm/scale"],
                       k_norm=weights[a + "key_dense_layernorm/scale"])
    out["o"] = np.asarray(weights[a + "attention_output/kernel"]).reshape(-1, d)
    return out
