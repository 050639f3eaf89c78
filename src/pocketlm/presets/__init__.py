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


def _keras_hub_presets() -> dict[str, str]:
    import json
    return dict(json.loads((_HERE / "keras_hub.json").read_text(encoding="utf-8")))


# KerasHub's causal LM presets -> task class (``keras_hub.models.CausalLM.presets``; written
# by scripts/make_keras_hub_presets.py, and a test keeps the two equal), so that a name is
# checked, and an unsupported family refused, in milliseconds without importing Keras.
KERAS_HUB_PRESETS: dict[str, str] = _keras_hub_presets()


def check_preset(name: str | Path) -> tuple[str, str]:
    """How a preset name resolves, before anything is loaded: ``(kind, handle)`` with kind
    one of "directory" (a local KerasHub preset directory), "embedded", "url" (kaggle://,
    hf://...: KerasHub resolves it) or "keras-hub" (downloaded on first use); handle is what
    ``from_preset`` takes. Raises PresetError for a missing directory, a directory without
    config.json, or an unknown name (the message lists the known ones)."""
    from ..errors import PresetError

    text = str(name)
    path = Path(text).expanduser()
    if path.exists():
        if not (path / "config.json").is_file():
            raise PresetError(f"{path} is not a KerasHub preset directory (no config.json)")
        return "directory", str(path.resolve())
    embedded = embedded_preset_dir(text)
    if embedded is not None:
        return "embedded", str(embedded)
    if "://" in text:
        return "url", text
    if text in KERAS_HUB_PRESETS:
        from ..families import family_for_task
        family_for_task(KERAS_HUB_PRESETS[text], {})  # refuses an unsupported family now
        return "keras-hub", text
    if "/" in text or text.startswith("."):
        raise PresetError(f"preset directory {text} does not exist")
    raise PresetError(f"unknown preset {text!r}; try one of: "
                      f"{', '.join(available_presets())}, a KerasHub preset name "
                      "(`pocketlm families --presets` lists them), or a local KerasHub preset "
                      "directory")


# Position embeddings of KerasHub's GPT-2 presets (all 1024, as OpenAI's GPT-2).
_KERAS_HUB_GPT2_POSITIONS = 1024


def preset_positions(name: str | Path) -> int | None:
    """The most tokens a preset's model can place (``max_sequence_length``: its position
    embeddings), read from its config.json without Keras; None when unknown (a URL handle,
    an unreadable config). Raises PresetError as :func:`check_preset`."""
    import json

    kind, handle = check_preset(name)
    if kind == "keras-hub":
        gpt2 = KERAS_HUB_PRESETS[str(name)] == "GPT2CausalLM"
        return _KERAS_HUB_GPT2_POSITIONS if gpt2 else None
    if kind in ("directory", "embedded"):
        try:
            config = json.loads((Path(handle) / "config.json").read_text())["config"]
            for key in ("max_sequence_length", "max_position_embeddings"):
                if config.get(key):
                    return int(config[key])
            return None  # rotary positions: no fixed limit
        except (OSError, ValueError, KeyError, TypeError):
            return None
    return None


def check_positions(name: str | Path, length: int, option: str) -> None:
    """Raise PresetError unless ``length`` tokens fit the preset's position embeddings."""
    from ..errors import PresetError

    positions = preset_positions(name)
    if positions is not None and length > positions:
        raise PresetError(f"{option} {length} is more than the {positions} positions of "
                          f"{name} (its max_sequence_length)")
