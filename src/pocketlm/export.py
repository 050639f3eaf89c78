"""Convert an authored KerasHub causal LM into one self-describing KV-cache .tflite.

The file follows contract v2 (:mod:`pocketlm.contract`, LiteRT-LM's own): a ``decode``
signature (one token -> logits), one or more ``prefill`` signatures (a chunk of prompt
tokens -> caches) and a ``score`` signature (every position's logits, for evaluation). They
share their weights. Only builtin ops are allowed. The model config, the tokenizer, the end
token, the quantization and the contract version travel in the flatbuffer's metadata.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
import warnings
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Callable, Iterator

import numpy as np

from .quiet import quiet_tensorflow

quiet_tensorflow()  # before TensorFlow's import: its start-up lines stay off stderr
import tensorflow as tf  # noqa: E402

from . import __version__
from .authoring import AuthoredModel
from .config import ExportConfig, ModelConfig, Quantization
from .contract import (DECODE, INPUT_POS, METADATA_KEY, PREFILL, SCORE, TOKENIZER_METADATA_KEY,
                       TOKENS, ContractInfo, cache_names, max_num_tokens)
from .errors import ConversionError
from .flatbuf import finalize, tensor_names
from .graph import KVCacheGPT2, backbone_weights
from .graph_base import CacheGraph, Part
from .graph_decoder import DecoderGraph
from .graph_keras import KerasCacheGraph
from .paths import atomic_write
from .quiet import filtered_stderr
from .sensitivity import (SUSPECT_RMSE_OVER_SCALE, LayerError, float_nodes,
                          nodes_in_every_signature, sensitivity)
from .textdata import SAMPLE_TEXT

Progress = Callable[[str], None]


@dataclass
class ExportResult:
    path: Path
    size_bytes: int
    quantization: Quantization
    signatures: dict[str, int]
    seconds: float


Graph = CacheGraph


def cache_length(authored: AuthoredModel, sequence_length: int) -> int:
    """Cache rows: the requested length, capped by the model's learned positions."""
    limit = authored.max_positions
    return min(sequence_length, limit) if limit else sequence_length


def build_module(authored: AuthoredModel, sequence_length: int,
                 quantization: Quantization = Quantization.NONE,
                 part: Part | None = None) -> Graph:
    """The exportable graph (of ``part``, default the whole model): the family's hand-written
    fast path where one exists (GPT-2's :mod:`pocketlm.graph`, the Llama-style families'
    :mod:`pocketlm.graph_decoder`), else the family's own ``call_with_cache``
    (:mod:`pocketlm.graph_keras`, whole models only)."""
    seq = cache_length(authored, sequence_length)
    if authored.family.fast_path:
        return hand_written_graph(authored.family, authored.backbone_config,
                                  backbone_weights(authored.backbone), seq, quantization, part)
    if part is not None and part != Part.whole(int(authored.backbone.num_layers)):
        raise ConversionError(f"{authored.family.title} converts only whole")
    return KerasCacheGraph(authored.causal_lm, authored.family, seq)


def hand_written_graph(family, backbone_config: dict, weights, seq: int,
                       quantization: Quantization, part: Part | None = None) -> Graph:
    """The hand-written graph of a ``fast_path`` family from its weights (a mapping of Keras
    weight paths to arrays, e.g. memory-mapped: see :mod:`pocketlm.export_parts`)."""
    options = dict(int8_embedding=quantization.quantized_embedding_table,
                   relative_mask=quantization.quantizes_attention_scores, part=part)
    if family.name == "gpt2":
        config = ModelConfig.from_dict({f.name: backbone_config[f.name]
                                        for f in fields(ModelConfig)})
        return KVCacheGPT2(weights, config, seq, **options)
    return DecoderGraph(weights, backbone_config, family, seq,
                        rope_table=quantization.needs_calibration, **options)


def signature_functions(module: Graph, cfg: ExportConfig) -> dict[str, object]:
    """Signature name -> concrete function."""
    funcs = {DECODE: module.step_function(1, logits=True).get_concrete_function()}
    for name, n in cfg.prefill_signatures().items():
        funcs[name] = module.step_function(n, logits=False).get_concrete_function()
    funcs[SCORE] = module.score_function(cfg.prefill_lengths[0]).get_concrete_function()
    return funcs


def _calibration_samples(module: Graph, authored: AuthoredModel, cfg: ExportConfig,
                         funcs: dict[str, object]) -> list[tuple[str, dict[str, np.ndarray]]]:
    """Real inputs for every signature, with caches filled by running the float graph.

    Each sample sits at a random place in the cache, with the text before it prefilled, so
    the calibrated ranges cover every position a sequence reaches: with chunks only at the
    start, rotary positions were quantized to 0..66 and saturated after that (Llama)."""
    text = cfg.calibration_text or SAMPLE_TEXT
    ids = authored.tokenizer.encode(text)
    if len(ids) < 8:
        raise ConversionError("the calibration text is too short (fewer than 8 tokens)")
    seq = module.seq
    keys = cache_names(module.num_layers)
    rng = np.random.default_rng(0)
    samples: list[tuple[str, dict[str, np.ndarray]]] = []
    names = [n for n in funcs if n != DECODE]
    fill = max(cfg.prefill_lengths)  # the chunk that fills the cache before a sample

    def run(name: str, tokens: list[int], pos: int, caches: list[np.ndarray]
            ) -> tuple[dict[str, np.ndarray], list[np.ndarray]]:
        """Run signature ``name`` in float: (its inputs, the updated caches)."""
        inputs = {TOKENS: np.asarray([tokens], np.int32),
                  INPUT_POS: np.arange(pos, pos + len(tokens), dtype=np.int32),
                  **dict(zip(keys, caches))}
        out = funcs[name](**{k: tf.constant(v) for k, v in inputs.items()})
        return inputs, [out[k].numpy() for k in keys]

    def text_at(offset: int, count: int) -> list[int]:
        return [ids[(offset + i) % len(ids)] for i in range(count)]

    for s in range(cfg.calibration_samples):
        name = names[s % len(names)]
        n = {**cfg.prefill_signatures(), SCORE: cfg.prefill_lengths[0]}[name]
        offset = int(rng.integers(0, len(ids)))
        pos = fill * int(rng.integers(0, (seq - n) // fill + 1))  # where the sample starts
        caches = module.empty_caches()
        for start in range(0, pos, fill):  # the text before the sample, in the cache
            _, caches = run(PREFILL, text_at(offset + start, fill), start, caches)
        inputs, caches = run(name, text_at(offset + pos, n), pos, caches)
        samples.append((name, inputs))
        # Decode a few tokens after the chunk: decode sees filled caches and later positions.
        for i, tok in enumerate(text_at(offset + pos + n, 3)):
            if pos + n + i >= seq:
                break
            inputs, caches = run(DECODE, [tok], pos + n + i, caches)
            samples.append((DECODE, inputs))
    return samples


def _converter(saved_model: str, names: list[str], cfg: ExportConfig,
               samples: list | None) -> tf.lite.TFLiteConverter:
    conv = tf.lite.TFLiteConverter.from_saved_model(saved_model, signature_keys=names)
    conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    q = cfg.quantization
    if q is Quantization.DYNAMIC_INT8:
        conv.optimizations = [tf.lite.Optimize.DEFAULT]
    elif q is Quantization.FLOAT16:
        conv.optimizations = [tf.lite.Optimize.DEFAULT]
        conv.target_spec.supported_types = [tf.float16]
    elif q.needs_calibration:
        conv.optimizations = [tf.lite.Optimize.DEFAULT]

        def representative() -> Iterator[tuple[str, dict[str, np.ndarray]]]:
            yield from samples or []

        conv.representative_dataset = representative
        # Int8 kernels where they exist; ops without an int8 kernel (the cache update and
        # attention against the float cache) stay float, and `pocketlm info` lists them.
        conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8,
                                          tf.lite.OpsSet.TFLITE_BUILTINS]
    return conv


# Ops full-int8 keeps in float, because int8 breaks them (all measured here):
#  * DIV aborts when its divisor rounds to the zero point (RMSNorm's 1 / sqrt(mean square)
#    in Gemma 2, on a quiet token);
#  * comparisons of positions (KerasHub's causal masks compare float aranges): int8 inputs
#    of different scales abort the process (SIGABRT) at the first decode (Llama);
#  * SELECT fills masked attention scores with a huge negative number: in int8 that sets a
#    scale so coarse that every real score rounds alike (GPT-2: perplexity +991%).
# They are a handful of small ops per layer; the matmuls stay int8.
FLOAT_OPS_IN_FULL_INT8 = ("DIV", "EQUAL", "NOT_EQUAL", "GREATER", "GREATER_EQUAL", "LESS",
                          "LESS_EQUAL", "SELECT", "SELECT_V2")


def _selectively_quantized(conv: tf.lite.TFLiteConverter, samples: list | None,
                           float_nodes: tuple[str, ...] = ()) -> bytes:
    """Full-int8 conversion that leaves :data:`FLOAT_OPS_IN_FULL_INT8` (and the named
    ``float_nodes``) in float, through TF's QuantizationDebugger (selective quantization)."""
    options = tf.lite.experimental.QuantizationDebugOptions(
        denylisted_ops=list(FLOAT_OPS_IN_FULL_INT8), denylisted_nodes=list(float_nodes))
    with warnings.catch_warnings():  # it runs TF's deprecated tf.lite.Interpreter
        warnings.simplefilter("ignore", UserWarning)
        debugger = tf.lite.experimental.QuantizationDebugger(
            converter=conv, debug_dataset=lambda: iter(samples or []), debug_options=options)
        return bytes(debugger.get_nondebug_quantized_model())


def layer_sensitivity(module: Graph, funcs: dict, cfg: ExportConfig,
                      samples: list | None) -> list[LayerError]:
    """The per-layer int8 error report of ``module`` (see :mod:`pocketlm.sensitivity`)."""
    full = ExportConfig(sequence_length=cfg.sequence_length,
                        prefill_lengths=cfg.prefill_lengths, quantization=Quantization.FULL_INT8)

    def converter_for(saved_model: str, names: list[str]) -> tf.lite.TFLiteConverter:
        mine = [(n, inputs) for n, inputs in samples or [] if n in names]
        return _converter(saved_model, names, full, mine)

    with filtered_stderr():
        try:
            return sensitivity(module, funcs, samples or [], converter_for,
                               FLOAT_OPS_IN_FULL_INT8)
        except Exception as exc:
            raise ConversionError(f"the per-layer analysis failed: {str(exc).strip()[:1000]}")


def quantize_int4(float_model: bytes) -> bytes:
    """Channelwise int4 weights for the FULLY_CONNECTED ops, activations quantized on the fly
    by the kernel (dynamic), so XNNPACK runs them as int4 GEMMs. Needs ai-edge-quantizer."""
    try:
        from ai_edge_quantizer import qtyping, quantizer
    except ImportError:
        raise ConversionError("int4 needs ai-edge-quantizer: pip install "
                              "'pocketlm[convert]' (or ai-edge-quantizer)") from None
    q = quantizer.Quantizer(float_model)
    q.add_dynamic_config(".*", qtyping.TFLOperationName.FULLY_CONNECTED, 4,
                         qtyping.QuantGranularity.CHANNELWISE)
    try:
        with filtered_stderr():  # its progress bars ignore enable_progress_report
            return bytes(q.quantize(enable_progress_report=False).quantized_model)
    except Exception as exc:
        raise ConversionError(f"int4 quantization failed: {str(exc).strip()[:1000]}") from None


def available_memory_bytes() -> int | None:
    """MemAvailable from /proc/meminfo (None where it cannot be read)."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


@dataclass
class Requirements:
    """What a conversion will need: disk (bytes), memory on top of the loaded model (bytes),
    and how many parts it converts in."""

    disk_bytes: int
    memory_bytes: int
    parts: int


# A part converts in its own process (pocketlm.export_parts): TensorFlow and the converter
# (about 1 GiB), plus about 24 bytes a weight of the part. Measured on the Qwen 2.5 1.5B
# shape: its first part (the embedding table and one layer, 280M weights) peaked at 7.5 GiB.
PART_PROCESS_BYTES = 1 << 30
PART_BYTES_PER_WEIGHT = 24


def preflight(authored: AuthoredModel, cfg: ExportConfig, out: Path,
              parts: list[Part] | None = None, release_model: bool = False) -> Requirements:
    """Refuse early, with numbers, when disk or memory is clearly too small; else return
    the estimate (ConversionError otherwise).

    Converting GPT-2 small took about 5 GB of RAM (8.5 GB with int8 calibration) for 124M
    weights on this machine, i.e. about 40 (70) bytes a weight; the file is about
    4 / 2 / 1.3 / 2 bytes a weight by mode. Checking first beats failing after minutes.
    """
    import shutil

    parts = parts or [Part.whole(int(authored.backbone.num_layers))]
    params = authored.backbone.count_params()
    need_disk = int(params * cfg.quantization.file_bytes_per_weight * 1.1) + (8 << 20)
    if len(parts) > 1:  # the parts wait on disk until they are stitched
        need_disk *= 2
    folder = out.parent if out.parent.exists() else Path.cwd()
    free = shutil.disk_usage(folder).free
    if free < need_disk:
        raise ConversionError(f"not enough disk space in {folder}: the .tflite needs about "
                              f"{need_disk / 2**20:.0f} MiB, {free / 2**20:.0f} MiB are free")
    # The model is already in memory; a conversion holds one part at a time on top of it.
    from .export_parts import part_weights

    biggest = max(part_weights(authored, p) for p in parts)
    avail = available_memory_bytes()
    if len(parts) == 1:
        need_mem = biggest * cfg.quantization.conversion_bytes_per_weight
    else:
        need_mem = PART_PROCESS_BYTES + biggest * PART_BYTES_PER_WEIGHT
        if release_model and avail is not None:
            avail += params * 4  # the Keras model's float32 weights go back first

    what = (f"{params / 1e6:.0f}M weights" if len(parts) == 1 else
            f"{params / 1e6:.0f}M weights in {len(parts)} parts of up to {biggest / 1e6:.0f}M")
    if avail is not None and avail < need_mem and not os.environ.get("POCKETLM_IGNORE_MEMORY"):
        raise ConversionError(
            f"not enough memory to convert {what} ({cfg.quantization.value}):"
            f" about {need_mem / 2**30:.1f} GiB needed, {avail / 2**30:.1f} GiB available "
            "(close other programs, or set POCKETLM_IGNORE_MEMORY=1 to try anyway)")
    return Requirements(need_disk, need_mem, len(parts))


def export(authored: AuthoredModel, out_path: str | Path, cfg: ExportConfig | None = None,
           progress: Progress = print, release_model: bool = False) -> ExportResult:
    """Convert ``authored`` to ``out_path`` (written atomically: temp file, then rename).

    ``release_model``: a model converted in parts may drop its Keras model once its weights
    are on disk (:meth:`AuthoredModel.release`), leaving the memory to the conversion; the
    authored model cannot be converted again afterwards."""
    cfg = cfg or ExportConfig()
    out = Path(out_path)
    t0 = time.time()
    from .export_parts import export_in_parts, plan_parts

    parts = plan_parts(authored, cfg)
    need = preflight(authored, cfg, out, parts, release_model)
    seq = cache_length(authored, cfg.sequence_length)
    if seq < cfg.sequence_length:
        progress(f"note: the model has {seq} positions; the cache is limited to that")
    layers = authored.backbone_config.get("num_layers", "?")
    if len(parts) > 1:
        progress(f"[1/4] converting {layers} layers ({authored.family.title}, cache {seq}) in "
                 f"{len(parts)} parts: about {need.memory_bytes / 2**30:.1f} GiB of memory "
                 f"and {need.disk_bytes / 2**30:.1f} GiB of disk")
        return export_in_parts(authored, out, cfg, parts, progress, release_model)
    progress(f"[1/4] building the KV-cache graph ({authored.family.title}, {layers} layers, "
             f"cache {seq}): about {need.memory_bytes / 2**30:.1f} GiB of memory and "
             f"{need.disk_bytes / 2**30:.2f} GiB of disk")
    module = build_module(authored, cfg.sequence_length, cfg.quantization)
    funcs = signature_functions(module, cfg)
    samples = None
    if cfg.quantization.needs_calibration:
        progress(f"[2/4] calibrating on {cfg.calibration_samples} samples")
        samples = _calibration_samples(module, authored, cfg, funcs)
    else:
        progress("[2/4] no calibration needed")
    kept: tuple[str, ...] = ()
    if cfg.quantization is Quantization.FULL_INT8_MIXED:
        progress("      measuring each layer's int8 error (decode signature)")
        errors = layer_sensitivity(module, funcs, cfg, samples)
        kept = float_nodes(errors)
        progress(f"      {len(kept)} of {len(errors)} layers stay float (rmse above "
                 f"{SUSPECT_RMSE_OVER_SCALE} int8 steps)")
    progress(f"[3/4] converting with quantization {cfg.quantization.value}")
    with tempfile.TemporaryDirectory(prefix="pocketlm-export-") as tmp:
        tf.saved_model.save(module, tmp, signatures=funcs)
        try:
            if kept:  # the decode analysis's layers, under their names in every signature
                plain = ExportConfig(sequence_length=cfg.sequence_length,
                                     prefill_lengths=cfg.prefill_lengths, quantization="none")
                with filtered_stderr():
                    names = tensor_names(_converter(tmp, list(funcs), plain, None).convert())
                kept = nodes_in_every_signature(kept, names)
            conv = _converter(tmp, list(funcs), cfg, samples)
            with filtered_stderr():  # the converter's harmless native log lines
                flat = (_selectively_quantized(conv, samples, kept)
                        if cfg.quantization.needs_calibration else conv.convert())
        except Exception as exc:
            raise ConversionError(f"the TFLite converter failed: {str(exc).strip()[:2000]}")
    if cfg.quantization is Quantization.INT4:  # the one mode done after conversion
        progress("      int4 weights for every FULLY_CONNECTED (ai-edge-quantizer)")
        flat = quantize_int4(flat)
    info = contract_info(authored, module, cfg)
    flat = finalize(flat, {
        METADATA_KEY: json.dumps(info.to_dict()).encode("utf-8"),
        TOKENIZER_METADATA_KEY: authored.tokenizer.to_bytes(),
    })
    progress(f"[4/4] writing {out}")
    write_atomically(out, flat)
    return ExportResult(out, len(flat), cfg.quantization, info.prefill, time.time() - t0)


def contract_info(authored: AuthoredModel, module: Graph, cfg: ExportConfig) -> ContractInfo:
    """What the file will say about itself (see :mod:`pocketlm.contract`)."""
    return ContractInfo(
        model_type=authored.family.name, model=_jsonable(authored.backbone_config),
        sequence_length=module.seq, prefill={DECODE: 1, **cfg.prefill_signatures()},
        quantization=cfg.quantization.value, end_token_id=authored.end_token_id,
        start_token_id=authored.start_token_id, add_start_token=authored.add_start_token,
        stop_token_ids=list(authored.stop_token_ids), num_layers=module.num_layers,
        max_num_tokens=max_num_tokens(module.seq, cfg.prefill_signatures()),
        cache_layout=module.layout, cache_shape=list(module.cache_shape),
        vocabulary_size=int(authored.backbone_config["vocabulary_size"]),
        tokenizer=authored.tokenizer.kind, source=authored.source,
        chat_template=(authored.family.chat_template.to_dict()
                       if authored.family.chat_template else None),
        created_by=f"pocketlm {__version__}, tensorflow {tf.__version__}",
        notes={"score_tokens": cfg.prefill_lengths[0]})


def _jsonable(config: dict) -> dict:
    """The backbone config with anything JSON cannot hold written as its repr."""
    return json.loads(json.dumps(config, default=repr))


def write_atomically(path: Path, data: bytes) -> None:
    """Write to a temp file beside ``path`` and rename, so no half-written file is left."""
    try:
        atomic_write(path, lambda f: f.write(data))
    except OSError as exc:
        raise ConversionError(f"cannot write {path}: {exc.strerror or exc}") from None
