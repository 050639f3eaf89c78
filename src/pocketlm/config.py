"""Settings shared by every stage: model shape, export contract, quantization, sampling.

This module sits at the bottom of the import graph: it imports nothing heavy, so both the
authoring/export side (Keras, TensorFlow) and the runtime side (LiteRT only) can use it.
"""

from __future__ import annotations

import enum
import math
import os
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

# The .tflite contract lives in .contract; these names are re-exported for old imports.
from .contract import (CONTRACT_NAME, CONTRACT_VERSION, METADATA_KEY,  # noqa: E402,F401
                       TOKENIZER_METADATA_KEY, ContractInfo)

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
    INT4 = "int4"  # int4 channelwise weights (ai-edge-quantizer), activations dynamic

    # -- what each mode implies, in one place (export, runtime and preflight ask these) --
    @property
    def needs_calibration(self) -> bool:
        """Activations are quantized too, so the converter needs representative inputs."""
        return self is Quantization.FULL_INT8

    @property
    def quantizes_attention_scores(self) -> bool:
        """Masked attention scores pass through int8: a -1e9 mask fill would set a scale so
        coarse that every real score rounds alike (perplexity +991% measured), so the graph
        fills 16 below the row minimum instead, and stale cache rows are not exactly hidden:
        each sequence must start from a zeroed cache."""
        return self is Quantization.FULL_INT8

    @property
    def xnnpack_weight_cache(self) -> bool:
        """Whether LiteRT may use XNNPACK's packed-weights cache. With it, a full-int8 file's
        top-1 agreement with the float model fell from 0.41 to 0.20 (tiny model), so not."""
        return self is not Quantization.FULL_INT8

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
                Quantization.INT4: 1.0}[self]

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
                   "4bit": cls.INT4, "dynamic-int4": cls.INT4}
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
    layer_norm_epsilon: float = 1e-5

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

    def __post_init__(self) -> None:
        object.__setattr__(self, "quantization", Quantization.parse(self.quantization))
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


@dataclass
class GenerationConfig:
    """Sampling and stopping settings for one completion."""

    max_new_tokens: int = 100
    temperature: float = 0.0  # 0 means greedy
    top_k: int = 0  # 0 means no top-k cut
    top_p: float = 1.0
    seed: int | None = None
    stop_at_end_token: bool = True
    # Keep only the last ``context_window`` units of the prompt (None keeps all that fits).
    context_window: int | None = None
    context_unit: ContextUnit = ContextUnit.TOKENS

    def __post_init__(self) -> None:
        self.context_unit = ContextUnit(self.context_unit)
        if self.max_new_tokens < 0:
            raise ValueError("max_new_tokens must be >= 0")
        # NaN passes every comparison and infinity turns logits into NaN: both are refused.
        if not (math.isfinite(self.temperature) and self.temperature >= 0):
            raise ValueError("temperature must be a finite number >= 0")
        if self.top_k < 0:
            raise ValueError("top_k must be >= 0")
        if not 0.0 < self.top_p <= 1.0:
            raise ValueError("top_p must be in (0, 1]")
        if self.seed is not None and self.seed < 0:
            raise ValueError("seed must be >= 0")
        if self.context_window is not None and self.context_window < 1:
            raise ValueError("context_window must be >= 1")
