"""The main job: convert the embedded model once (cached), then complete a prompt with it."""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from . import __version__
from .config import GenerationConfig, Quantization, cache_root
from .contract import CONTRACT_VERSION
from .presets import DEFAULT_PRESET, embedded_preset_dir


def cache_dir() -> Path:
    """Where converted models are cached (the app lists this folder by default)."""
    return cache_root()


# Changed whenever an exported graph changes within a version, so cached files are rebuilt
# (2: the Llama-style families' hand-written graph, pocketlm.graph_decoder).
_GRAPH_REVISION = 2


def _fingerprint(preset: str, quant: Quantization, sequence_length: int) -> str:
    """Changes whenever the preset's files, the settings or the export code change."""
    h = hashlib.sha256(f"{preset}|{quant.value}|{sequence_length}|{__version__}|"
                       f"{CONTRACT_VERSION}|{_GRAPH_REVISION}".encode())
    folder = embedded_preset_dir(preset) or Path(preset)
    if folder.is_dir():
        for f in sorted(folder.rglob("*")):
            if f.is_file():
                h.update(f.name.encode())
                h.update(f.read_bytes())
    return h.hexdigest()[:12]


@dataclass
class DemoResult:
    model_path: Path
    converted: bool
    size_bytes: int
    load_seconds: float
    prompt: str
    completion: str
    tokens: int
    time_to_first_token: float
    tokens_per_second: float


def cached_model(preset: str = DEFAULT_PRESET, quantization: str = "dynamic-int8",
                 sequence_length: int = 256, progress: Callable[[str], None] = print,
                 refresh: bool = False) -> tuple[Path, bool]:
    """Path of the converted preset, converting it the first time. Returns (path, converted)."""
    quant = Quantization.parse(quantization)
    name = Path(preset).name if Path(preset).is_dir() else preset
    path = cache_dir() / f"{name}-{quant.value}-{_fingerprint(preset, quant, sequence_length)}.tflite"
    if path.exists() and not refresh:
        return path, False
    progress(f"first run: converting {preset} ({quant.value}); cached in {path.parent}")
    from .authoring import load_causal_lm
    from .config import ExportConfig
    from .export import export

    authored = load_causal_lm(preset, sequence_length)
    export(authored, path, ExportConfig(sequence_length=sequence_length, quantization=quant),
           progress=progress)
    return path, True


def cached_embedded_models(progress: Callable[[str], None] = print) -> Path:
    """Convert every embedded preset (once; cached) so the app can offer them all; returns
    the default model's path. Raises PocketLMError when the default cannot be converted."""
    from .presets import available_presets

    default, _ = cached_model(DEFAULT_PRESET, progress=progress)
    for name in available_presets():
        if name != DEFAULT_PRESET:
            cached_model(name, progress=progress)
    return default


def run_demo(prompt: str, gen: GenerationConfig, preset: str = DEFAULT_PRESET,
             quantization: str = "dynamic-int8", progress: Callable[[str], None] = print,
             on_piece: Callable[[str], None] | None = None) -> DemoResult:
    from .runtime import load_model, stream

    path, converted = cached_model(preset, quantization, progress=progress)
    t0 = time.perf_counter()
    model = load_model(path)
    load = time.perf_counter() - t0
    done = stream(model, prompt, gen)
    for piece in done:
        if on_piece:
            on_piece(piece)
    return DemoResult(path, converted, path.stat().st_size, load, done.prompt.text, done.text,
                      len(done.token_ids), done.time_to_first_token, done.tokens_per_second)
