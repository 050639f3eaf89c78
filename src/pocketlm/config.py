"""Settings shared by every stage: model shape, export settings, quantization, sampling.
(The .tflite contract itself is :mod:`pocketlm.contract`.)

This module sits at the bottom of the import graph: it imports nothing heavy, so both the
authoring/export side (Keras, TensorFlow) and the runtime side (LiteRT only) can use it.
"""

from __future__ import annotations

import enum
import math
import os
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, ClassVar

DEFAULT_SEQUENCE_LENGTH = 256


def cache_root() -> Path:
    """pocketlm's cache folder: $POCKETLM_CACHE, else $XDG_CACHE_HOME/pocketlm or
    ~/.cache/pocketlm. Converted models, XNNPACK packed weights and verified-file marks."""
    root = os.environ.get("POCKETLM_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "pocketlm")
    return Path(root)


class Quantization(str, enum.Enum):
    """Quantization modes, mapped to converter recipes in :mod:`pocketlm.export`."""

    NONE = "none"  # float32 weights and activations
    DYNAMIC_INT8 = "dynamic-int8"  # int8 weights, float activations (Optimize.DEFAULT)
    FLOAT16 = "float16"  # float16 weights, widened to float32 at load on CPUs
    FULL_INT8 = "full-int8"  # int8 weights and activations, calibrated
    # full-int8, with the layers the per-layer sensitivity report finds worst kept in float
    FULL_INT8_MIXED = "full-int8-mixed"
    INT4 = "int4"  # int4 channelwise weights (ai-edge-quantizer), activations dynamic

    # -- what each mode implies, in one place (export, runtime and preflight ask these) --
    @property
    def needs_calibration(self) -> bool:
        """Activations are quantized too, so the converter needs representative inputs."""
        return self in (Quantization.FULL_INT8, Quantization.FULL_INT8_MIXED)

    @property
    def quantizes_attention_scores(self) -> bool:
        """Masked attention scores pass through int8: a -1e9 mask fill would set a scale so
        coarse that every real score rounds alike (perplexity +991% measured), so the graph
        fills 16 below the row minimum instead, and stale cache rows are not exactly hidden:
        each sequence must start from a zeroed cache."""
        return self.needs_calibration

    @property
    def xnnpack_weight_cache(self) -> bool:
        """Whether LiteRT may use XNNPACK's packed-weights cache. With it, a full-int8 file's
        top-1 agreement with the float model fell from 0.41 to 0.20 (tiny model), so not."""
        return not self.needs_calibration

    @property
    def quantized_embedding_table(self) -> bool:
        """int4 quantizes only FULLY_CONNECTED ops; the GATHER table would stay float32, so
        the graph reads a hand-quantized int8 copy (one scale per row) instead."""
        return self is Quantization.INT4

    @property
    def file_bytes_per_weight(self) -> float:
        """About how many bytes of .tflite one weight costs (measured on GPT-2 small)."""
        return {Quantization.NONE: 4.0, Quantization.FLOAT16: 2.0,
                Quantization.DYNAMIC_INT8: 1.3, Quantization.FULL_INT8: 2.0,
                Quantization.FULL_INT8_MIXED: 2.0, Quantization.INT4: 1.0}[self]

    @property
    def conversion_bytes_per_weight(self) -> int:
        """Peak RAM while converting, per weight: GPT-2 small took about 5 GB (8.5 GB with
        int8 calibration) for 124M weights here."""
        return 70 if self.needs_calibration else 40

    @classmethod
    def parse(cls, value: str | Quantization) -> Quantization:
        if isinstance(value, Quantization):
            return value
        aliases = {"float32": cls.NONE, "fp32": cls.NONE, "int8": cls.DYNAMIC_INT8,
                   "dynamic": cls.DYNAMIC_INT8, "fp16": cls.FLOAT16, "int8-full": cls.FULL_INT8,
                   "4bit": cls.INT4, "dynamic-int4": cls.INT4, "mixed": cls.FULL_INT8_MIXED}
        key = value.strip().lower()
        if key in aliases:
            return aliases[key]
        try:
            return cls(key)
        except ValueError:
            names = ", ".join(m.value for m in cls)
            raise ValueError(f"unknown quantization {value!r}; choose one of: {names}") from None


@dataclass(frozen=True)
class ModelConfig:
    """Shape of a GPT-2 style decoder (the arguments of keras_hub's GPT2Backbone)."""

    vocabulary_size: int = 50257
    num_layers: int = 12
    num_heads: int = 12
    hidden_dim: int = 768
    intermediate_dim: int = 3072
    max_sequence_length: int = 1024  # number of learned position embeddings
    dropout: float = 0.1
    # Not an argument of GPT2Backbone, which fixes it at 1e-5: a constant, not a field.
    layer_norm_epsilon: ClassVar[float] = 1e-5

    @property
    def head_dim(self) -> int:
        return self.hidden_dim // self.num_heads

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelConfig:
        """Strict: an unknown or missing key is an error (never silently a GPT-2 default)."""
        return strict_from_dict(cls, data, "GPT-2 model config")

    @classmethod
    def tiny(cls, vocabulary_size: int = 50257) -> ModelConfig:
        """A model small enough to convert in seconds, for tests."""
        return cls(vocabulary_size=vocabulary_size, num_layers=2, num_heads=2, hidden_dim=32,
                   intermediate_dim=64, max_sequence_length=128, dropout=0.0)


@dataclass(frozen=True)
class ExportConfig:
    """How a model is exported to a KV-cache .tflite."""

    # Cache length: the most tokens (prompt + generated) one sequence can hold.
    sequence_length: int = DEFAULT_SEQUENCE_LENGTH
    # Token counts of the prefill signatures. The largest is named ``prefill``; smaller
    # ones ``prefill_<n>``, so that a short prompt is not padded to the largest chunk.
    prefill_lengths: tuple[int, ...] = (64, 16)
    quantization: Quantization = Quantization.DYNAMIC_INT8
    # Text used to calibrate full-int8 activations; None means a built-in sample.
    calibration_text: str | None = None
    calibration_samples: int = 32
    # Convert in this many parts of consecutive layers, stitched into one file (see
    # pocketlm.export_parts); 0 picks 1 unless the model is too big for one conversion.
    parts: int = 0

    def __post_init__(self) -> None:
        object.__setattr__(self, "quantization", Quantization.parse(self.quantization))
        if int(self.parts) < 0:
            raise ValueError("parts must be 0 (automatic) or a positive count")
        lengths = tuple(sorted({int(n) for n in self.prefill_lengths}, reverse=True))
        if not lengths or lengths[-1] < 1:
            raise ValueError("prefill_lengths must hold positive token counts")
        if lengths[0] > self.sequence_length:
            raise ValueError("a prefill length cannot exceed the sequence length")
        object.__setattr__(self, "prefill_lengths", lengths)

    def prefill_signatures(self) -> dict[str, int]:
        """Signature name -> number of tokens it consumes."""
        names = {}
        for i, n in enumerate(self.prefill_lengths):
            names["prefill" if i == 0 else f"prefill_{n}"] = n
        return names


def strict_from_dict(cls: type, data: Any, what: str) -> Any:
    """Build dataclass ``cls`` from ``data``; unknown and missing keys raise ValueError.

    Every field must be given, defaults included: a config file that leaves a key out
    would otherwise silently get a default meant for another model.
    """
    if not isinstance(data, dict):
        raise ValueError(f"{what} must be a JSON object, not {type(data).__name__}")
    names = {f.name for f in fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise ValueError(f"{what}: unknown key(s) {', '.join(unknown)}; "
                         f"expected {', '.join(sorted(names))}")
    missing = [n for n in sorted(names) if n not in data]
    if missing:
        raise ValueError(f"{what}: missing key(s) {', '.join(missing)}")
    try:
        return cls(**data)
    except TypeError as exc:
        raise ValueError(f"{what}: {exc}") from None


class ContextUnit(str, enum.Enum):
    TOKENS = "tokens"
    WORDS = "words"


def format_bound(x: float) -> str:
    """A range bound as people write it: 0 and 1, not 0.0 and 1.0."""
    return str(int(x)) if float(x).is_integer() else str(x)


def _finite(name: str, value: Any, lo: float, hi: float, lo_open: bool = False,
            integer: bool = False) -> None:
    """Raise ValueError unless ``value`` is a real number (not a bool) in [lo, hi] (or
    (lo, hi] with ``lo_open``): NaN and infinity fail every comparison, so they are refused
    by name rather than slipping through ``<`` checks."""
    kinds = (int,) if integer else (int, float)
    shown = repr(value) if len(repr(value)) <= 40 else repr(value)[:37] + "..."
    if isinstance(value, bool) or not isinstance(value, kinds):
        raise ValueError(f"{name} must be {'an integer' if integer else 'a number'}, "
                         f"not {shown}")
    if isinstance(value, float) and not math.isfinite(value):  # (ints are; huge ones overflow)
        raise ValueError(f"{name} must be a finite number, not {shown}")
    if value > hi or value < lo or (lo_open and value == lo):
        bounds = f"{'(' if lo_open else '['}{format_bound(lo)}, {format_bound(hi)}]"
        raise ValueError(f"{name} must be in {bounds}, not {shown}")


MAX_STOP_SEQUENCES = 4
# Past this a softmax at any temperature is uniform to float precision: a bigger value is a
# mistake, not a setting.
MAX_TEMPERATURE = 1e6
MAX_LOGPROBS = 5
SEED_RANGE = (-(2**63), 2**63 - 1)


@dataclass
class GenerationConfig:
    """Sampling and stopping settings for one completion.

    Logit adjustments happen before greedy choice or sampling, in this order: ``logit_bias``
    (added), ``repeat_penalty`` (llama.cpp/CTRL: over the last ``repeat_last_n`` tokens of
    prompt and completion, positive logits divided, negative ones multiplied),
    ``frequency_penalty`` and ``presence_penalty`` (OpenAI: over the generated tokens,
    ``logit -= count * frequency_penalty + (count > 0) * presence_penalty``). Then
    temperature, top-k, min-p (keep tokens with ``p >= min_p * p_max``) and top-p.
    Raises ValueError for any value out of range, NaN or infinite.
    """

    max_new_tokens: int = 100
    temperature: float = 0.0  # 0 means greedy
    top_k: int = 0  # 0 means no top-k cut
    top_p: float = 1.0
    seed: int | None = None
    stop_at_end_token: bool = True
    # Keep only the last ``context_window`` units of the prompt (None keeps all that fits).
    context_window: int | None = None
    context_unit: ContextUnit = ContextUnit.TOKENS
    frequency_penalty: float = 0.0  # [-2, 2]
    presence_penalty: float = 0.0  # [-2, 2]
    repeat_penalty: float = 1.0  # (0, 10]; 1 means off
    repeat_last_n: int = 64  # tokens repeat_penalty looks back over; 0 off, -1 all
    min_p: float = 0.0  # [0, 1]; 0 means off
    logit_bias: dict[int, float] = field(default_factory=dict)  # token id -> [-100, 100]
    # Stop sequences: generation ends before the first one (it is not part of the text).
    stop: tuple[str, ...] = ()
    # Record the log-probability of each chosen token and of the top ``logprobs`` tokens.
    logprobs: int | None = None

    def __post_init__(self) -> None:
        self.context_unit = ContextUnit(self.context_unit)
        _finite("max_new_tokens", self.max_new_tokens, 0, 1 << 31, integer=True)
        _finite("temperature", self.temperature, 0.0, MAX_TEMPERATURE)
        _finite("top_k", self.top_k, 0, 1 << 31, integer=True)
        _finite("top_p", self.top_p, 0.0, 1.0, lo_open=True)
        if self.seed is not None:
            _finite("seed", self.seed, *SEED_RANGE, integer=True)
        if self.context_window is not None:
            _finite("context_window", self.context_window, 1, 1 << 31, integer=True)
        _finite("frequency_penalty", self.frequency_penalty, -2.0, 2.0)
        _finite("presence_penalty", self.presence_penalty, -2.0, 2.0)
        _finite("repeat_penalty", self.repeat_penalty, 0.0, 10.0, lo_open=True)
        _finite("repeat_last_n", self.repeat_last_n, -1, 1 << 31, integer=True)
        _finite("min_p", self.min_p, 0.0, 1.0)
        bias = {}
        for key, value in dict(self.logit_bias).items():
            _finite("a logit_bias token id", key, 0, 1 << 31, integer=True)
            _finite(f"logit_bias[{key}]", value, -100.0, 100.0)
            bias[int(key)] = float(value)
        self.logit_bias = bias
        stop = (self.stop,) if isinstance(self.stop, str) else tuple(self.stop)
        if len(stop) > MAX_STOP_SEQUENCES:
            raise ValueError(f"at most {MAX_STOP_SEQUENCES} stop sequences, not {len(stop)}")
        if any(not isinstance(s, str) or not s for s in stop):
            raise ValueError("stop sequences must be non-empty strings")
        self.stop = stop
        if self.logprobs is not None:
            _finite("logprobs", self.logprobs, 0, MAX_LOGPROBS, integer=True)

    @property
    def adjusts_logits(self) -> bool:
        """Whether any penalty or bias changes the logits before sampling."""
        return bool(self.logit_bias or self.frequency_penalty or self.presence_penalty
                    or (self.repeat_penalty != 1.0 and self.repeat_last_n != 0))

