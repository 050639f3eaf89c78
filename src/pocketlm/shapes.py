"""Published model shapes, to build with random weights where no model hub is reachable.

``pocketlm convert --random qwen2.5-1.5b`` builds a KerasHub backbone of that shape from a
fixed seed: what converting, sizing and timing a model of that class costs, without its
weights. Sources: each model's published config (Hugging Face ``config.json`` of
Qwen/Qwen2.5-1.5B-Instruct; KerasHub's ``gemma_2b_en`` preset, whose ``intermediate_dim`` is
twice Hugging Face's because KerasHub halves it inside the gated MLP). The vocabulary is the
model's; the tokenizer is a small one trained here, as published models also have embedding
rows past their tokenizer's last id.
"""

from __future__ import annotations

from typing import Any

SHAPES: dict[str, dict[str, Any]] = {
    "qwen2.5-1.5b": {"family": "qwen", "vocabulary_size": 151_936, "num_layers": 28,
                     "num_query_heads": 12, "num_key_value_heads": 2, "hidden_dim": 1536,
                     "intermediate_dim": 8960, "rope_max_wavelength": 1_000_000,
                     "layer_norm_epsilon": 1e-6, "tie_word_embeddings": True},
    "gemma-2b": {"family": "gemma", "vocabulary_size": 256_000, "num_layers": 18,
                 "num_query_heads": 8, "num_key_value_heads": 1, "hidden_dim": 2048,
                 "intermediate_dim": 32_768, "head_dim": 256, "layer_norm_epsilon": 1e-6,
                 "dropout": 0.0},
}
