"""Per-layer sensitivity to full-integer quantization, and the layers a mixed model keeps float.

TensorFlow's QuantizationDebugger runs the float and the int8 model side by side on the
calibration inputs and records, for every quantized op, how far its int8 output is from the
float one. The figure that ranks layers is ``rmse / scale``: the error in units of the int8
step (about 0.29 for a uniform rounding error); TF's selective-quantization guide treats
values above 0.7 as suspect (https://www.tensorflow.org/lite/performance/quantization_debugger).
On the embedded Llama the RMSNorm ``RSQRT``s scored 300 to 960 and the attention matmuls 20 to
40: they are what full-int8 breaks there.

The analysis runs on the ``decode`` signature, the one generation spends its time in; the
nodes it names are kept in float in every signature (names are shared between them).
"""

from __future__ import annotations

import csv
import io
import re
import tempfile
import warnings
from dataclasses import asdict, dataclass
from typing import Callable

import numpy as np
import tensorflow as tf

from .contract import DECODE

# Layers whose rmse / scale exceeds this stay float in the mixed mode (TF's guide: 0.7).
SUSPECT_RMSE_OVER_SCALE = 0.7


@dataclass
class LayerError:
    """One quantized op's error on the calibration inputs."""

    op: str  # TFLite op name, e.g. "FULLY_CONNECTED"
    tensor: str  # its output tensor's name (the node name a denylist takes)
    rmse_over_scale: float  # root-mean-square error in units of the int8 step
    max_abs_error: float
    scale: float

    def to_dict(self) -> dict:
        return asdict(self)


def layer_errors(saved_model: str, converter: tf.lite.TFLiteConverter,
                 samples: list[tuple[str, dict[str, np.ndarray]]],
                 float_ops: tuple[str, ...]) -> list[LayerError]:
    """Every quantized op of the decode signature, worst first.

    ``converter`` is a full-int8 converter for ``saved_model``'s decode signature alone;
    ``samples`` are calibration inputs (only decode ones are used); ``float_ops`` are the op
    kinds kept float anyway."""
    decode = [inputs for name, inputs in samples if name == DECODE]
    if not decode:
        raise ValueError("no decode samples to measure the layers with")
    order = _input_order(saved_model, list(decode[0]))
    options = tf.lite.experimental.QuantizationDebugOptions(denylisted_ops=list(float_ops))
    with warnings.catch_warnings():  # the debugger runs TF's deprecated tf.lite.Interpreter
        warnings.simplefilter("ignore", UserWarning)
        debugger = tf.lite.experimental.QuantizationDebugger(
            converter=converter, debug_options=options,
            debug_dataset=lambda: iter([[inputs[k] for k in order] for inputs in decode]))
        debugger.run()
    out = io.StringIO()
    debugger.layer_statistics_dump(out)
    rows = []
    for r in csv.DictReader(io.StringIO(out.getvalue())):
        scale = float(r["scale"] or 0)
        mse = float(r["mean_squared_error"] or 0)
        rows.append(LayerError(r["op_name"], r["tensor_name"],
                               mse ** 0.5 / scale if scale else 0.0,
                               float(r["max_abs_error"] or 0), scale))
    return sorted(rows, key=lambda e: -e.rmse_over_scale)


def _input_order(saved_model: str, names: list[str]) -> list[str]:
    """The decode inputs in the order the debugger feeds them (the float model's input
    tensors, which TFLite lists in its own order, named ``decode_<input>:0``)."""
    from ai_edge_litert.interpreter import Interpreter

    conv = tf.lite.TFLiteConverter.from_saved_model(saved_model, signature_keys=[DECODE])
    details = Interpreter(model_content=conv.convert()).get_input_details()
    order = []
    for d in details:
        tensor = d["name"].split(":")[0]
        match = [n for n in names if tensor == f"{DECODE}_{n}" or tensor == n]
        if len(match) != 1:
            raise ValueError(f"cannot match the model input {d['name']!r} to a signature input")
        order.append(match[0])
    return order


def float_nodes(errors: list[LayerError], threshold: float = SUSPECT_RMSE_OVER_SCALE
                ) -> tuple[str, ...]:
    """The layers a mixed model keeps in float: every one above ``threshold``."""
    return tuple(e.tensor for e in errors if e.rmse_over_scale > threshold)


def _normalized(name: str) -> str:
    """A node's name without what differs between signatures: each signature traces the
    model again, so Keras may name a layer ``transformer_layer_2_1`` in one and
    ``transformer_layer_2_3`` in another, and the converter appends a number to the op's
    own name (``Rsqrt`` in one subgraph, ``Rsqrt3`` in another; ``MatMul_1``, ``MatMul_13``)."""
    *scopes, op = name.split("/")
    return "/".join([re.sub(r"_\d+$", "", part) for part in scopes]
                    + [re.sub(r"[_\d]+$", "", op)])


def nodes_in_every_signature(kept: tuple[str, ...], names: list[str]) -> tuple[str, ...]:
    """The tensors of a multi-signature model (``names``: all of them, fused names joined by
    ';') that are the ``kept`` decode layers in any signature. Matching drops the per-trace
    suffixes, so it errs towards keeping more in float, never fewer."""
    wanted = {_normalized(k) for k in kept}
    return tuple(n for n in dict.fromkeys(names)
                 if any(_normalized(part) in wanted for part in n.split(";")))


def report_markdown(errors: list[LayerError], kept: tuple[str, ...], top: int = 30) -> str:
    """The report as a markdown table: the ``top`` worst layers, which stay float."""
    lines = ["| rank | op | layer (output tensor) | rmse / int8 step | max abs error | "
             "mixed mode |", "|---:|---|---|---:|---:|---|"]
    for i, e in enumerate(errors[:top], 1):
        lines.append(f"| {i} | {e.op} | `{e.tensor}` | {e.rmse_over_scale:.3f} | "
                     f"{e.max_abs_error:.4g} | {'float' if e.tensor in kept else 'int8'} |")
    lines.append("")
    lines.append(f"{len(kept)} of {len(errors)} quantized layers have rmse / step above "
                 f"{SUSPECT_RMSE_OVER_SCALE} and stay float in `full-int8-mixed`.")
    return "\n".join(lines) + "\n"


def sensitivity(module, funcs: dict, samples: list, converter_for: Callable,
                float_ops: tuple[str, ...]) -> list[LayerError]:
    """:func:`layer_errors` for an exportable ``module`` (its decode signature)."""
    decode = {DECODE: funcs[DECODE]}
    with tempfile.TemporaryDirectory(prefix="pocketlm-sensitivity-") as tmp:
        tf.saved_model.save(module, tmp, signatures=decode)
        return layer_errors(tmp, converter_for(tmp, [DECODE]), samples, float_ops)
