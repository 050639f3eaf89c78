"""Presets shipped inside the package: KerasHub preset directories that load offline.

This module is plain data and paths (no Keras), so the runtime and the CLI can list the
presets without importing the conversion stack.
"""

from __future__ import annotations

from pathlib import Path

_HERE = Path(__file__).resolve().parent

# Preset name -> directory name under this package.
EMBEDDED_PRESETS: dict[str, str] = {
    "pocketlm_gpt2_shakespeare": "pocketlm_gpt2_shakespeare",
    # A small Llama (RoPE, GQA, RMSNorm, SwiGLU) with a SentencePiece tokenizer trained here.
    "pocketlm_llama_shakespeare": "pocketlm_llama_shakespeare",
}
DEFAULT_PRESET = "pocketlm_gpt2_shakespeare"


def embedded_preset_dir(name: str) -> Path | None:
    """The directory of an embedded preset, or None if ``name`` is not one (or is missing)."""
    folder = EMBEDDED_PRESETS.get(name)
    if folder is None:
        return None
    path = _HERE / folder
    return path if (path / "config.json").is_file() else None


def available_presets() -> list[str]:
    return [name for name in EMBEDDED_PRESETS if embedded_preset_dir(name) is not None]
