"""Running files written by Keras' own ``model.export(path, format="litert")``.

For a KerasHub causal LM that file has one signature, ``serving_default(token_ids,
padding_mask) -> logits [1, T, vocab]``, and no cache: it is the training-time forward pass.
:class:`WindowedModel` runs it by recomputing the whole window every step (quadratic, but
exact) and reading the last real row. Shapes are usually dynamic (``[-1, -1]``): the window
is then fed at its real length; a static ``[1, S]`` input is padded on the right, which a
causal model ignores for the rows before the padding.

Keras tracks the whole task, so when the preprocessor was attached (the default after
``from_preset``) the file also carries the tokenizer's hash tables, filled by a session
initializer made of Select-TF ops (FlexHashTableV2 ...) that the logits never read. No
Python LiteRT runtime can run those, so the initializer call is dropped in memory before
the interpreter sees the model, when and only when the rest of the graph is builtin.
"""

from __future__ import annotations

import mmap
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from ai_edge_litert import schema_py_generated as fb

from ..errors import ContractError, ModelFileError, RuntimeFailure
from ..flatbuf import ModelSummary, TensorInfo, read_bytes_head
from ..tokenizers import Tokenizer

TOKEN_INPUT = "token_ids"
MASK_INPUT = "padding_mask"
# When neither the input shape nor a position-embedding table gives the window: GPT-2's.
DEFAULT_WINDOW = 1024


@dataclass
class WindowedSignature:
    name: str
    output: str
    vocabulary_size: int
    has_mask: bool


def windowed_signature(summary: ModelSummary) -> WindowedSignature | None:
    """The signature of a Keras causal-LM export, if the file has one."""
    for sig in summary.signatures.values():
        ids = sig.inputs.get(TOKEN_INPUT)
        extra = set(sig.inputs) - {TOKEN_INPUT, MASK_INPUT}
        if ids is None or extra or not ids.dtype.startswith("int") or len(ids.shape) != 2:
            continue
        mask = sig.inputs.get(MASK_INPUT)
        if mask is not None and not (mask.dtype.startswith("int") or mask.dtype == "bool"):
            continue
        logits = [(n, t) for n, t in sig.outputs.items() if _is_logits(t)]
        if len(sig.outputs) != 1 or len(logits) != 1:
            continue
        name, tensor = logits[0]
        return WindowedSignature(sig.name, name, tensor.shape[-1], mask is not None)
    return None


def _is_logits(t: TensorInfo) -> bool:
    return t.dtype in ("float32", "float16") and len(t.shape) == 3 and t.shape[-1] > 1


def position_table_rows(data: bytes | mmap.mmap, vocabulary_size: int) -> int | None:
    """Rows of the learned position table (GPT-2's ``wpe``), the model's real window.

    Both embedding tables are constant [rows, hidden] tensors read by GATHER (tokens) or
    SLICE (KerasHub's PositionEmbedding); the token table has ``vocabulary_size`` rows, so
    another one as wide holds the positions. None when there is no such table (RoPE).
    """
    readers = (fb.BuiltinOperator.GATHER, fb.BuiltinOperator.SLICE,
               fb.BuiltinOperator.STRIDED_SLICE)
    model = fb.Model.GetRootAs(data, 0)
    codes = [max(model.OperatorCodes(i).BuiltinCode(),
                 model.OperatorCodes(i).DeprecatedBuiltinCode())
             for i in range(model.OperatorCodesLength())]
    tables: list[tuple[int, int]] = []
    for s in range(model.SubgraphsLength()):
        sub = model.Subgraphs(s)
        for o in range(sub.OperatorsLength()):
            op = sub.Operators(o)
            if codes[op.OpcodeIndex()] not in readers or op.InputsLength() < 1 \
                    or op.Inputs(0) < 0:
                continue
            t = sub.Tensors(int(op.Inputs(0)))
            if t.Buffer() > 0 and t.ShapeLength() == 2:
                tables.append((int(t.Shape(0)), int(t.Shape(1))))
    widths = {w for rows, w in tables if rows == vocabulary_size}
    others = [rows for rows, w in tables if w in widths and rows != vocabulary_size]
    return max(others) if others else None


def _drop_flex_initializer(data: bytes | mmap.mmap) -> bytes | None:
    """The model without its CALL_ONCE initializer, when only that needs Select-TF ops.

    Returns None when the model needs no change; raises ContractError when Select-TF ops
    are used outside an initializer (the logits really need them).
    """
    model = fb.Model.GetRootAs(data, 0)
    custom, call_once = set(), set()
    for i in range(model.OperatorCodesLength()):
        oc = model.OperatorCodes(i)
        code = max(oc.BuiltinCode(), oc.DeprecatedBuiltinCode())
        if code == fb.BuiltinOperator.CUSTOM:
            custom.add(i)
        elif code == fb.BuiltinOperator.CALL_ONCE:
            call_once.add(i)
    if not custom:
        return None
    init_subgraphs: set[int] = set()
    for s in range(model.SubgraphsLength()):
        sub = model.Subgraphs(s)
        for o in range(sub.OperatorsLength()):
            op = sub.Operators(o)
            table = op.BuiltinOptions()
            if op.OpcodeIndex() in call_once and table is not None:
                opts = fb.CallOnceOptions()
                opts.Init(table.Bytes, table.Pos)
                init_subgraphs.add(opts.InitSubgraphIndex())
    for s in range(model.SubgraphsLength()):
        if s in init_subgraphs:
            continue
        sub = model.Subgraphs(s)
        if any(sub.Operators(o).OpcodeIndex() in custom for o in range(sub.OperatorsLength())):
            raise ContractError("the logits graph uses Select-TF or custom ops, which no "
                                "Python LiteRT runtime can run; export with builtin ops only")
    from ai_edge_litert.tools import flatbuffer_utils

    obj = flatbuffer_utils.convert_bytearray_to_object(bytearray(data))
    for sub in obj.subgraphs:
        sub.operators = [op for op in (sub.operators or []) if op.opcodeIndex not in call_once]
    return bytes(flatbuffer_utils.convert_object_to_bytearray(obj))


class WindowedModel:
    """A cache-less causal LM: every step re-runs the window and reads its last row."""

    kind = "keras-litert"

    def __init__(self, path: Path, summary: ModelSummary, tokenizer: Tokenizer | None,
                 num_threads: int = 2) -> None:
        sig = windowed_signature(summary)
        if sig is None:
            raise ContractError(f"{path} has no token_ids -> logits signature")
        if tokenizer is None:
            raise ContractError(f"{path} is a Keras causal-LM export and carries no "
                                "tokenizer: pass --tokenizer gpt2, a KerasHub preset "
                                "directory, or VOCAB.json,MERGES.txt")
        self.path = path
        self.signature = sig
        self.tokenizer = tokenizer
        self.end_token_id = int(tokenizer.end_token_id)
        # Keras' generate prepends the tokenizer's start token: do the same.
        self.start_token_id = tokenizer.start_token_id
        read_bytes_head(path)
        try:
            with open(path, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as data:
                stripped = _drop_flex_initializer(data)
                rows = position_table_rows(data, sig.vocabulary_size)
        except ContractError as exc:
            raise ContractError(f"{path}: {exc}") from None
        except Exception as exc:  # a corrupt table offset raises many kinds of error
            raise ModelFileError(f"{path} is a corrupt .tflite flatbuffer: {exc}") from None
        self.dropped_initializer = stripped is not None
        from ai_edge_litert.interpreter import Interpreter

        try:
            # Unchanged files are loaded by path, so LiteRT can map them instead of copying.
            self._interpreter = (Interpreter(model_content=stripped, num_threads=num_threads)
                                 if stripped is not None else
                                 Interpreter(model_path=str(path), num_threads=num_threads))
        except (ValueError, RuntimeError) as exc:
            raise ContractError(f"LiteRT cannot load {path}: {str(exc).strip()[:500]}") from None
        self._runner = self._interpreter.get_signature_runner(sig.name)
        details = self._runner.get_input_details()
        self._ids_dtype = details[TOKEN_INPUT]["dtype"]
        # A dynamic length is -1 in the shape signature; a fixed one is padded up to.
        length = int(details[TOKEN_INPUT]["shape_signature"][1])
        self.static_length = length if length > 0 else None
        self.sequence_length = self.static_length or rows or DEFAULT_WINDOW
        self._mask_dtype = details[MASK_INPUT]["dtype"] if sig.has_mask else None
        self._ids: list[int] = []

    def _logits(self) -> np.ndarray:
        n = len(self._ids)
        length = self.static_length or n
        ids = np.zeros((1, length), self._ids_dtype)
        ids[0, :n] = self._ids
        inputs = {TOKEN_INPUT: ids}
        if self._mask_dtype is not None:
            mask = np.zeros((1, length), self._mask_dtype)
            mask[0, :n] = 1
            inputs[MASK_INPUT] = mask
        try:
            out = self._runner(**inputs)
        except (RuntimeError, ValueError) as exc:
            raise RuntimeFailure(f"the interpreter failed on {self.path}: {exc}") from None
        return np.asarray(out[self.signature.output])[0, n - 1].reshape(-1)

    # -- StepModel ------------------------------------------------------------------------
    def start(self, ids: list[int]) -> np.ndarray:
        if not ids:
            raise ValueError("start() needs at least one token")
        if len(ids) > self.sequence_length:
            raise ValueError(f"{len(ids)} tokens do not fit a {self.sequence_length}-token window")
        self._ids = [int(i) for i in ids]
        return self._logits()

    def step(self, token: int) -> np.ndarray:
        if len(self._ids) >= self.sequence_length:
            raise ValueError("the window is full")
        self._ids.append(int(token))
        return self._logits()
