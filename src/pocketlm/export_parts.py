"""Convert a model too big for one conversion: part by part, then stitched into one file.

One conversion holds the whole model several times over (the Keras weights, the frozen
graph, the converter's MLIR copy, the quantized copy): about 40 bytes a weight measured for
GPT-2 small, so a 1.5B model would need ~60 GB, and TensorFlow refuses a frozen graph over
2 GB anyway. Converting parts of consecutive layers (:class:`pocketlm.graph_base.Part`) holds
one part at a time; :func:`pocketlm.stitch.stitch` then joins the parts into one ordinary
contract-v2 file, weights stored after the flatbuffer so it may pass 2 GB.

Works for families with a hand-written graph (``Family.fast_path``), whose layers pocketlm
builds one by one; KerasHub's own ``call_with_cache`` runs every layer in one call. Modes
that calibrate activations (full-int8) need the whole float model's activations per part
and are refused in parts.
"""

from __future__ import annotations

import gc
import math
import tempfile
import time
from pathlib import Path
from typing import Callable

import tensorflow as tf

from .authoring import AuthoredModel
from .config import ExportConfig, Quantization
from .contract import METADATA_KEY, TOKENIZER_METADATA_KEY
from .errors import ConversionError
from .graph_base import Part

Progress = Callable[[str], None]

# A part's float32 weights stay below this: TensorFlow cannot serialize a frozen graph over
# 2 GB (protobuf's limit), and the converter's peak grows with the part.
MAX_PART_BYTES = 1_200_000_000
# One conversion converts at most this many float32 bytes; above it, parts.
MAX_WHOLE_BYTES = 1_600_000_000


def weight_counts(authored: AuthoredModel) -> tuple[int, int]:
    """(embedding weights, weights of one layer): what each part holds, for planning.
    Layers of one model are alike; an untied head is counted with the layers (close enough
    for a plan)."""
    backbone = authored.backbone
    total = int(backbone.count_params())
    embedding = int(backbone.token_embedding.count_params())
    layers = int(backbone.num_layers)
    return embedding, max(1, (total - embedding) // layers)


def part_weights(authored: AuthoredModel, part: Part) -> int:
    """Weights a part's conversion holds: its layers, plus the embedding table if it has the
    embedding and again if it has the (tied or untied, same-sized) LM head."""
    embedding, per_layer = weight_counts(authored)
    return ((part.last - part.first) * per_layer
            + embedding * (int(part.has_embedding) + int(part.has_head)))


def plan_parts(authored: AuthoredModel, cfg: ExportConfig) -> list[Part]:
    """The parts to convert: ``cfg.parts`` of them, or when 0 the fewest that keep each
    part's float32 weights under :data:`MAX_PART_BYTES` (one part for small models)."""
    layers = int(authored.backbone.num_layers)
    if cfg.parts:
        if cfg.parts > layers:
            raise ConversionError(f"--parts {cfg.parts}: the model has only {layers} layers")
        return _even(layers, cfg.parts)
    embedding, per_layer = weight_counts(authored)
    total = embedding + per_layer * layers
    if total * 4 <= MAX_WHOLE_BYTES:
        return [Part.whole(layers)]
    # The first part also holds the embedding table and the last the LM head (the tied
    # table again): they get the layers that fit beside the table (at least one); the
    # layers between are spread evenly over the fewest parts that fit the budget.
    budget = MAX_PART_BYTES // 4
    edge = max(1, (budget - embedding) // per_layer)
    if 2 * edge >= layers:
        return _even(layers, 2)
    inner = layers - 2 * edge
    count = max(1, math.ceil(inner / max(1, budget // per_layer)))
    cuts = [edge + round(k * inner / count) for k in range(count + 1)]
    bounds = [0, *cuts, layers]
    return [Part(a, b, layers) for a, b in zip(bounds[:-1], bounds[1:])]


def _even(layers: int, count: int) -> list[Part]:
    bounds = [round(i * layers / count) for i in range(count + 1)]
    return [Part(a, b, layers) for a, b in zip(bounds[:-1], bounds[1:])]


def convert_part(authored: AuthoredModel, cfg: ExportConfig, part: Part, folder: Path
                 ) -> tuple[Path, object]:
    """Convert one part to ``folder/part-<first>-<last>.tflite``; (path, its graph)."""
    from .export import _converter, build_module, quantize_int4, signature_functions

    module = build_module(authored, cfg.sequence_length, cfg.quantization, part=part)
    funcs = signature_functions(module, cfg)
    saved = folder / f"saved-{part.first}"
    tf.saved_model.save(module, str(saved), signatures=funcs)
    from .quiet import filtered_stderr

    try:
        with filtered_stderr():
            flat = _converter(str(saved), list(funcs), cfg, None).convert()
    except Exception as exc:
        raise ConversionError(f"the TFLite converter failed on layers {part.first}.."
                              f"{part.last - 1}: {str(exc).strip()[:2000]}") from None
    if cfg.quantization is Quantization.INT4:
        flat = quantize_int4(flat)
    path = folder / f"part-{part.first:03d}-{part.last:03d}.tflite"
    path.write_bytes(flat)
    _remove_tree(saved)
    return path, module


def _remove_tree(path: Path) -> None:
    import shutil

    shutil.rmtree(path, ignore_errors=True)


def export_in_parts(authored: AuthoredModel, out: Path, cfg: ExportConfig,
                    parts: list[Part], progress: Progress):
    """Convert ``parts`` one by one and stitch them into ``out``; an ExportResult."""
    from .export import ExportResult, contract_info
    from .stitch import stitch

    if cfg.quantization.needs_calibration:
        raise ConversionError(f"{cfg.quantization.value} calibrates on the whole model's "
                              f"activations; a model converted in {len(parts)} parts supports "
                              "dynamic-int8, float16, int4 and none")
    if not authored.family.fast_path:
        raise ConversionError(f"{authored.family.title} converts only whole (KerasHub's "
                              "call_with_cache runs every layer at once); it is too big for "
                              "one conversion on this machine")
    t0 = time.time()
    weights_of = lambda p: part_weights(authored, p)  # noqa: E731
    total = sum(weights_of(p) for p in parts)
    done = 0
    module = None
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=f".{out.name}.parts-", dir=out.parent) as tmp:
        paths = []
        for i, part in enumerate(parts):
            progress(f"      part {i + 1}/{len(parts)}: layers {part.first}..{part.last - 1}"
                     f"{' + embedding' if part.has_embedding else ''}"
                     f"{' + head' if part.has_head else ''}")
            path, module = convert_part(authored, cfg, part, Path(tmp))
            paths.append(path)
            done += weights_of(part)
            spent = time.time() - t0
            left = spent * (total - done) / max(done, 1)
            progress(f"      part {i + 1}/{len(parts)} done ({path.stat().st_size / 2**20:.0f}"
                     f" MiB) after {_duration(spent)}; about {_duration(left)} left")
            if i < len(parts) - 1:
                del module
                module = None
                gc.collect()
        # The last part's graph knows the whole model's cache shape and layer count.
        whole = _WholeView(module, parts)
        info = contract_info(authored, whole, cfg)
        info.notes["parts"] = len(parts)
        import json

        progress(f"[4/4] stitching {len(parts)} parts into {out}")
        size = stitch(paths, out, {
            METADATA_KEY: json.dumps(info.to_dict()).encode("utf-8"),
            TOKENIZER_METADATA_KEY: authored.tokenizer.to_bytes()}, progress=lambda _m: None)
    return ExportResult(out, size, cfg.quantization, info.prefill, time.time() - t0)


class _WholeView:
    """What contract_info reads from a graph (seq, layout, cache shape, layers), for the
    stitched whole model."""

    def __init__(self, module, parts: list[Part]) -> None:
        self.seq, self.layout = module.seq, module.layout
        self.cache_shape = module.cache_shape
        self.num_layers = parts[-1].num_layers


def _duration(seconds: float) -> str:
    seconds = max(0, int(math.ceil(seconds)))
    return f"{seconds // 60} min {seconds % 60:02d} s" if seconds >= 60 else f"{seconds} s"
