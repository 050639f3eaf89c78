"""The on-device side: LiteRT + numpy + a tokenizer. Never imports TensorFlow or Keras.

The names below load on first use (PEP 562), so ``import pocketlm.runtime`` (or one of its
small modules, such as ``pocketlm.runtime.sampling``) does not pull in LiteRT, flatbuffers
and the tokenizer libraries until a model is actually loaded.
"""

from __future__ import annotations

import importlib
from typing import Any

_HOMES = {"Completion": "generation", "complete": "generation", "last_words": "generation",
          "prepare_prompt": "generation", "stream": "generation",
          "Inspection": "loader", "inspect_model": "loader", "load_model": "loader",
          "load_tokenizer": "loader", "Sampler": "sampling"}

__all__ = sorted(_HOMES)


def __getattr__(name: str) -> Any:
    if name not in _HOMES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{_HOMES[name]}", __name__), name)
    globals()[name] = value  # later lookups skip this function
    return value
