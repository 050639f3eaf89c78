"""Export in the recipe's Android format: one .tflite, prompt string in, string out.

The official Android example loads such a file and calls ``Interpreter.run(String,
ByteBuffer)``: signature ``serving_default``, input ``prompt`` (scalar string), output
``output_0`` (scalar string: the prompt and its continuation), max length frozen at
conversion. The recipe converts ``gpt2_lm.generate`` directly; with keras-hub 0.32 that does
not trace (its post-processing calls ``convert_to_numpy`` on symbolic tensors), Keras 3
weights passed that way are silently left out, and keras-hub's 6-D cache ends in a 6-D
STRIDED_SLICE that no runtime accepts. So this module writes the same contract by hand:

* KerasHub's own tokenizer (tf-text ops) tokenizes and detokenizes inside the graph;
* the decode loop is a ``tf.while_loop`` over :class:`pocketlm.graph.KVCacheGPT2`, whose
  weights are raw ``tf.Variable``s (they freeze) and whose caches are 4-D per layer;
* generation follows ``GPT2CausalLM.generate`` with the greedy sampler: a start token is
  prepended, the prompt keeps its first ``max_length - 1`` tokens, decoding stops at the end
  token or at ``max_length`` tokens, and special tokens are stripped from the output;
* the converter gets the recipe's settings (builtins plus Select-TF ops, custom ops allowed,
  ``UnsortedSegmentJoin`` and ``UpperBound`` as user Select-TF ops).

After conversion the file is checked: it must hold at least the backbone's weight bytes, no
variable ops, and no tensor above rank 5.
"""

from __future__ import annotations

import json
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .quiet import quiet_tensorflow

quiet_tensorflow()  # before TensorFlow's import: its start-up lines stay off stderr
import tensorflow as tf  # noqa: E402
from ai_edge_litert import schema_py_generated as fb

from . import __version__
from .authoring import AuthoredModel
from .config import Quantization
from .contract import METADATA_KEY, TOKENIZER_METADATA_KEY, ContractInfo
from .errors import ConversionError
from .export import ExportResult, Progress, write_atomically
from .flatbuf import finalize, summarize
from .graph import KVCacheGPT2, backbone_weights
from .runtime.recipe import (ANDROID_CONTRACT_NAME, ANDROID_CONTRACT_VERSION, RECIPE_INPUT,
                             RECIPE_SIGNATURE)

DEFAULT_MAX_LENGTH = 100  # the recipe's frozen max_length
# The recipe shows float32 and dynamic-range int8 (Optimize.DEFAULT); float16 converts the
# same way. Full int8 needs calibration by running the graph, and the calibrator cannot run
# the tokenizer's Select-TF ops.
SUPPORTED = (Quantization.NONE, Quantization.DYNAMIC_INT8, Quantization.FLOAT16)
# Bytes per backbone parameter the file must hold at least, per mode.
_MIN_BYTES_PER_PARAM = {Quantization.NONE: 4, Quantization.DYNAMIC_INT8: 1,
                        Quantization.FLOAT16: 2}
_WEIGHT_TYPES = ("float32", "float16", "int8")
VERIFY_PROMPT = "I'm enjoying a"


@dataclass
class AndroidExportResult(ExportResult):
    max_length: int = DEFAULT_MAX_LENGTH
    parameters: int = 0
    weight_bytes: int = 0  # float32 + float16 + int8 constant bytes found in the file
    matches_keras: bool | None = None  # the graph's output vs Keras greedy generate()


class StringGenerator(tf.Module):
    """``generate(prompt) -> prompt + continuation``, greedy, as one traceable function."""

    def __init__(self, authored: AuthoredModel, max_length: int) -> None:
        super().__init__(name="pocketlm_string_generator")
        self.lm = KVCacheGPT2(backbone_weights(authored.backbone), authored.config, max_length)
        self.tokenizer = authored.causal_lm.preprocessor.tokenizer  # tf-text ops, in-graph
        self.max_length = max_length
        self.end_id = int(authored.tokenizer.end_token_id)  # also GPT-2's start and pad

    def _next_token(self, hidden_row):  # (1, D) -> () greedy pick
        logits = tf.matmul(hidden_row, self.lm.wte, transpose_b=True)  # (1, V), tied head
        return tf.argmax(logits[0], output_type=tf.int32)

    @tf.function(input_signature=[tf.TensorSpec([], tf.string, name=RECIPE_INPUT)])
    def generate(self, prompt):
        length, end = self.max_length, self.end_id
        ids = tf.cast(self.tokenizer(prompt), tf.int32)  # (n,)
        ids = tf.concat([[end], ids], axis=0)[:length]  # start token; keep the beginning
        p = tf.shape(ids)[0]
        tokens = tf.concat([ids, tf.fill([length - p], end)], axis=0)  # (L,)
        c = self.lm.config
        caches = [tf.zeros([1, c.num_heads, length, c.head_dim]) for _ in range(2 * c.num_layers)]
        hidden, caches = self.lm.forward(ids[None], tf.zeros([1], tf.int32), caches)
        first = self._next_token(hidden[p - 1:p])

        def cond(i, token, done, tokens, *caches):
            return tf.logical_and(i < length, tf.logical_not(done))

        def body(i, token, done, tokens, *caches):
            tokens = tf.tensor_scatter_nd_update(tokens, [[i]], [token])
            # Computing the next token after the end token is wasted but harmless; it keeps
            # the loop free of a conditional.
            h, new = self.lm.forward(tf.reshape(token, [1, 1]), tf.reshape(i, [1]),
                                     list(caches))
            return (i + 1, self._next_token(h), tf.equal(token, end), tokens, *new)

        out = tf.while_loop(cond, body, (p, first, tf.constant(False), tokens, *caches))
        filled, tokens = out[0], out[3]
        kept = tokens[1:filled]
        kept = tf.boolean_mask(kept, tf.not_equal(kept, end))  # strip special tokens
        return self.tokenizer.detokenize(kept)


def _converter(module: StringGenerator, quantization: Quantization):
    fn = module.generate.get_concrete_function()
    # The module tracks the raw tf.Variables, so they are frozen into the file.
    conv = tf.lite.TFLiteConverter.from_concrete_functions([fn], module)
    conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS,
                                      tf.lite.OpsSet.SELECT_TF_OPS]
    conv.allow_custom_ops = True
    conv.target_spec.experimental_select_user_tf_ops = ["UnsortedSegmentJoin", "UpperBound"]
    conv._experimental_guarantee_all_funcs_one_use = True  # as the recipe sets it
    if quantization is not Quantization.NONE:
        conv.optimizations = [tf.lite.Optimize.DEFAULT]
    if quantization is Quantization.FLOAT16:
        conv.target_spec.supported_types = [tf.float16]
    return conv


def check_file(flat: bytes, parameters: int, quantization: Quantization) -> int:
    """Raise ConversionError unless ``flat`` holds its weights and only rank <= 5 tensors.

    Returns the weight bytes found.
    """
    with tempfile.NamedTemporaryFile(suffix=".tflite") as f:
        f.write(flat)
        f.flush()
        summary = summarize(f.name)
    held = sum(summary.weight_bytes_by_type.get(t, 0) for t in _WEIGHT_TYPES)
    needed = parameters * _MIN_BYTES_PER_PARAM[quantization]
    if held < 0.9 * needed:
        raise ConversionError(f"the converted file holds {held:,} weight bytes, fewer than "
                              f"the {parameters:,} parameters need ({needed:,}): the weights "
                              "were left out")
    variable_ops = [op for op in summary.op_histogram
                    if "VarHandle" in op or "ReadVariable" in op or op == "VAR_HANDLE"]
    if variable_ops:
        raise ConversionError(f"the converted file reads weights from variables "
                              f"({', '.join(variable_ops)}): they would be uninitialised")
    rank, where = max_rank(flat)
    if rank > 5:
        raise ConversionError(f"the converted file has a rank-{rank} tensor ({where}); LiteRT "
                              "kernels stop at rank 5 (StridedSlice refuses 6-D)")
    return held


def max_rank(flat: bytes) -> tuple[int, str]:
    """The highest tensor rank in any subgraph, and the name of one such tensor."""
    model = fb.Model.GetRootAs(flat, 0)
    best, name = 0, ""
    for s in range(model.SubgraphsLength()):
        sub = model.Subgraphs(s)
        for t in range(sub.TensorsLength()):
            tensor = sub.Tensors(t)
            if tensor.ShapeLength() > best:
                best, name = tensor.ShapeLength(), (tensor.Name() or b"").decode(errors="replace")
    return best, name


def keras_greedy_text(authored: AuthoredModel, prompt: str, max_length: int) -> str:
    """``GPT2CausalLM.generate`` with the greedy sampler, restoring the model's sampler."""
    import keras_hub

    lm = authored.causal_lm
    saved = lm.sampler, lm.generate_function
    lm.sampler, lm.generate_function = keras_hub.samplers.GreedySampler(), None
    try:
        out = lm.generate(prompt, max_length=max_length)
    finally:
        lm.sampler, lm.generate_function = saved
    return out if isinstance(out, str) else np.asarray(out).reshape(-1)[0].decode("utf-8")


def export_android(authored: AuthoredModel, out_path: str | Path,
                   max_length: int = DEFAULT_MAX_LENGTH,
                   quantization: Quantization | str = Quantization.DYNAMIC_INT8,
                   progress: Progress = print, verify: bool = True) -> AndroidExportResult:
    """Write ``out_path`` in the recipe's string-in, string-out format (atomically)."""
    t0 = time.time()
    quant = Quantization.parse(quantization)
    if quant not in SUPPORTED:
        raise ConversionError(
            f"the android format supports {', '.join(q.value for q in SUPPORTED)}, not "
            f"{quant.value}: full-int8 calibration would have to run the in-graph tokenizer's "
            "Select-TF ops, which the converter's calibrator cannot")
    if authored.config is None:
        raise ConversionError(f"the android format is the recipe's GPT-2 model; "
                              f"{authored.family.title} converts to the kv-cache format")
    if authored.causal_lm.preprocessor is None:
        raise ConversionError("the android format puts the tokenizer in the graph: the model "
                              "needs its preprocessor")
    if not 2 <= max_length <= authored.config.max_sequence_length:
        raise ConversionError(f"max length must be between 2 and the model's "
                              f"{authored.config.max_sequence_length} positions")
    out = Path(out_path)
    progress(f"[1/4] building the string-in, string-out graph (max length {max_length})")
    module = StringGenerator(authored, max_length)
    parameters = int(sum(np.prod(v.shape) for v in module.lm.variables))
    matches = None
    if verify:
        progress("[2/4] checking the graph against Keras generate() (greedy)")
        got = module.generate(tf.constant(VERIFY_PROMPT)).numpy().decode("utf-8", "replace")
        want = keras_greedy_text(authored, VERIFY_PROMPT, max_length)
        matches = got == want
        if not matches:
            progress(f"warning: the graph gives {got!r} but Keras generate() gives {want!r}")
    else:
        progress("[2/4] not checking against Keras generate()")
    progress(f"[3/4] converting with builtins + Select-TF ops, quantization {quant.value}")
    try:
        flat = _converter(module, quant).convert()
    except Exception as exc:  # the converter raises many kinds; all mean "cannot convert"
        raise ConversionError(f"the TFLite converter failed: {str(exc).strip()[:2000]}")
    held = check_file(flat, parameters, quant)
    info = ContractInfo(
        contract=ANDROID_CONTRACT_NAME, contract_version=ANDROID_CONTRACT_VERSION,
        model=authored.config.to_dict(), sequence_length=max_length, prefill={},
        quantization=quant.value, end_token_id=authored.tokenizer.end_token_id,
        cache_layout="inside the graph (per-layer K and V in a while loop)",
        source=authored.source, created_by=f"pocketlm {__version__}, tensorflow {tf.__version__}",
        notes={"signature": RECIPE_SIGNATURE, "input": RECIPE_INPUT, "output": "output_0",
               "sampler": "greedy", "max_length": max_length, "start_token": "prepended",
               "needs": "Select-TF ops (Flex delegate)"})
    # Metadata is ignored by the Android interpreter; it lets `pocketlm info` name the file.
    flat = finalize(flat, {METADATA_KEY: json.dumps(info.to_dict()).encode("utf-8"),
                           TOKENIZER_METADATA_KEY: authored.tokenizer.to_bytes()})
    progress(f"[4/4] writing {out} ({held / 2**20:.1f} MiB of weights for "
             f"{parameters:,} parameters)")
    write_atomically(out, flat)
    return AndroidExportResult(out, len(flat), quant, {RECIPE_SIGNATURE: max_length},
                               time.time() - t0, max_length, parameters, held, matches)
