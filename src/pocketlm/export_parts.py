"""Convert a model too big for one conversion: part by part, then stitched into one file.

One conversion holds the whole model several times over (the Keras weights, the frozen
graph, the converter's MLIR copy, the quantized copy): about 40 bytes a weight measured for
GPT-2 small, so a 1.5B model would need ~60 GB, and TensorFlow refuses a frozen graph over
2 GB anyway. Converting parts of consecutive layers (:class:`pocketlm.graph_base.Part`) holds
one part at a time; :func:`pocketlm.stitch.stitch` then joins the parts into one ordinary
contract-v2 file, weights stored after the flatbuffer so it may pass 2 GB.

Each part converts in its own process, from the weights written once to memory-mapped
``.npy`` files: TensorFlow keeps every traced function's variables alive (measured: 0.55 GB
a part of 140M weights, 1.9 GB with the converter's share), so parts converted in one
process added up past 23 GB on the Qwen 2.5 1.5B shape.

Works for families with a hand-written graph (``Family.fast_path``), whose layers pocketlm
builds one by one; KerasHub's own ``call_with_cache`` runs every layer in one call. Modes
that calibrate activations (full-int8) need the whole float model's activations per part
and are refused in parts.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Callable

import numpy as np

from .quiet import quiet_tensorflow

quiet_tensorflow()  # before TensorFlow's import: its start-up lines stay off stderr
import tensorflow as tf  # noqa: E402

from .config import ExportConfig, Quantization
from .contract import METADATA_KEY, TOKENIZER_METADATA_KEY
from .errors import ConversionError
from .graph_base import Part

if TYPE_CHECKING:  # the child processes never load Keras
    from .authoring import AuthoredModel

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


class MappedWeights(Mapping):
    """Weights saved by :func:`save_weights`, memory-mapped: a part's graph reads its own
    layers' pages and nothing else."""

    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder)
        self._index = json.loads((self.folder / "index.json").read_text())

    def __getitem__(self, key: str) -> np.ndarray:
        return np.load(self.folder / self._index[key], mmap_mode="r")

    def __iter__(self) -> Iterator[str]:
        return iter(self._index)

    def __len__(self) -> int:
        return len(self._index)


def save_weights(authored: AuthoredModel, folder: Path) -> None:
    """Every backbone weight as a float32 ``.npy`` in ``folder`` (plus ``index.json``)."""
    folder.mkdir(parents=True, exist_ok=True)
    index = {}
    for i, w in enumerate(authored.backbone.weights):
        np.save(folder / f"{i}.npy", np.asarray(w.numpy(), np.float32))
        index[w.path] = f"{i}.npy"
    (folder / "index.json").write_text(json.dumps(index))


def convert_part(job: dict) -> None:
    """Convert one part (in a child process, see :func:`export_in_parts`): build its graph
    from the memory-mapped weights, convert, quantize, write ``job["out"]``."""
    from .export import _converter, hand_written_graph, quantize_int4, signature_functions
    from .families import get_family
    from .quiet import filtered_stderr

    cfg = ExportConfig(sequence_length=job["sequence_length"],
                       prefill_lengths=tuple(job["prefill_lengths"]),
                       quantization=job["quantization"])
    part = Part(*job["part"])
    module = hand_written_graph(get_family(job["family"]), job["backbone_config"],
                                MappedWeights(Path(job["weights"])), job["seq"],
                                cfg.quantization, part)
    funcs = signature_functions(module, cfg)
    saved = Path(job["out"]).with_suffix(".saved")
    tf.saved_model.save(module, str(saved), signatures=funcs)
    try:
        with filtered_stderr():
            conv = _converter(str(saved), list(funcs), cfg, None)
            # A float part over 2 GB (Gemma 2B's 256k-row table and a layer) cannot be one
            # flatbuffer: weights go after it, as the stitched file keeps them anyway.
            conv._experimental_use_buffer_offset = job.get("float_bytes", 0) > MAX_WHOLE_BYTES
            flat = conv.convert()
    except Exception as exc:
        raise ConversionError(f"the TFLite converter failed on layers {part.first}.."
                              f"{part.last - 1}: {str(exc).strip()[:2000]}") from None
    if cfg.quantization is Quantization.INT4:
        flat = quantize_int4(flat)
    Path(job["out"]).write_bytes(flat)
    shutil.rmtree(saved, ignore_errors=True)
    print(json.dumps({"cache_shape": list(module.cache_shape), "layout": module.layout,
                      "seq": module.seq}), flush=True)


def _run_part(job: dict, folder: Path) -> dict:
    """Run :func:`convert_part` in a fresh process, so all of its memory (TensorFlow keeps
    every traced graph's variables alive) goes back when the part is done."""
    spec = folder / f"job-{job['part'][0]:03d}.json"
    spec.write_text(json.dumps(job))
    # The child imports this very pocketlm (a source checkout or a worktree too).
    paths = [str(Path(__file__).resolve().parents[1]), os.environ.get("PYTHONPATH", "")]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in paths if p)}
    proc = subprocess.run([sys.executable, "-m", "pocketlm.export_parts", str(spec)],
                          capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        lines = [ln for ln in proc.stderr.strip().splitlines() if ln.strip()]
        why = lines[-1] if lines else f"exit status {proc.returncode}"
        if proc.returncode < 0 or proc.returncode == 137:
            why = (f"it was killed (signal {-proc.returncode if proc.returncode < 0 else 9});"
                   " out of memory? Try more --parts")
        raise ConversionError(f"converting layers {job['part'][0]}..{job['part'][1] - 1} "
                              f"failed: {why}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def export_in_parts(authored: AuthoredModel, out: Path, cfg: ExportConfig,
                    parts: list[Part], progress: Progress, release_model: bool = False):
    """Convert ``parts`` one by one (each in its own process, from memory-mapped weights)
    and stitch them into ``out``; an ExportResult."""
    from .export import ExportResult, _jsonable, cache_length, contract_info
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
    sizes = {p: part_weights(authored, p) for p in parts}
    total = sum(sizes.values())
    done = 0
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=f".{out.name}.parts-", dir=out.parent) as tmp:
        folder = Path(tmp)
        progress("      writing the weights to memory-mapped files")
        save_weights(authored, folder / "weights")
        if release_model:
            authored.release()
        paths, shape = [], {}
        for i, part in enumerate(parts):
            progress(f"      part {i + 1}/{len(parts)}: layers {part.first}..{part.last - 1}"
                     f"{' + embedding' if part.has_embedding else ''}"
                     f"{' + head' if part.has_head else ''}")
            path = folder / f"part-{part.first:03d}-{part.last:03d}.tflite"
            shape = _run_part({
                "family": authored.family.name,
                "backbone_config": _jsonable(authored.backbone_config),
                "weights": str(folder / "weights"), "part": [part.first, part.last,
                                                              part.num_layers],
                "seq": cache_length(authored, cfg.sequence_length),
                "sequence_length": cfg.sequence_length,
                "prefill_lengths": list(cfg.prefill_lengths),
                "quantization": cfg.quantization.value, "out": str(path),
                "float_bytes": 4 * sizes[part]}, folder)
            paths.append(path)
            done += sizes[part]
            spent = time.time() - t0
            left = spent * (total - done) / max(done, 1)
            progress(f"      part {i + 1}/{len(parts)} done ({path.stat().st_size / 2**20:.0f}"
                     f" MiB) after {_duration(spent)}; about {_duration(left)} left")
        shutil.rmtree(folder / "weights", ignore_errors=True)
        whole = _WholeView(shape, parts)
        info = contract_info(authored, whole, cfg)
        info.notes["parts"] = len(parts)
        progress(f"[4/4] stitching {len(parts)} parts into {out}")
        size = stitch(paths, out, {
            METADATA_KEY: json.dumps(info.to_dict()).encode("utf-8"),
            TOKENIZER_METADATA_KEY: authored.tokenizer.to_bytes()})
    return ExportResult(out, size, cfg.quantization, info.prefill, time.time() - t0)


class _WholeView:
    """What contract_info reads from a graph (seq, layout, cache shape, layers), for the
    stitched whole model, as the last part's process reported it."""

    def __init__(self, shape: dict, parts: list[Part]) -> None:
        self.seq, self.layout = int(shape["seq"]), str(shape["layout"])
        self.cache_shape = tuple(shape["cache_shape"])
        self.num_layers = parts[-1].num_layers


def main(argv: list[str] | None = None) -> int:
    """Child process entry: ``python -m pocketlm.export_parts JOB.json``."""
    args = sys.argv[1:] if argv is None else argv
    try:
        convert_part(json.loads(Path(args[0]).read_text()))
    except ConversionError as exc:
        print(f"error: {exc}", file=sys.stderr, flush=True)
        return 1
    return 0


def _duration(seconds: float) -> str:
    seconds = max(0, int(math.ceil(seconds)))
    return f"{seconds // 60} min {seconds % 60:02d} s" if seconds >= 60 else f"{seconds} s"


if __name__ == "__main__":
    sys.exit(main())
