"""Join models converted part by part into one ``.tflite``, with the weights after the
flatbuffer so the file can pass 2 GB.

A model too big for one conversion is converted as parts of consecutive layers
(:mod:`pocketlm.graph_base`): every part has the same signatures (``decode``, the prefills,
``score``); a part after the first takes ``hidden_states`` where the first takes ``tokens``,
and a part before the last returns ``hidden_states``. Stitching builds, per signature, one
subgraph that runs the parts' operators in order, with each part's ``hidden_states`` input
bound to the previous part's ``hidden_states`` output and the shared inputs (``input_pos``)
bound once. The result is an ordinary contract-v2 file: pocketlm's runtime and LiteRT-LM run
it unchanged, and it never shows ``hidden_states``.

Weights: a flatbuffer cannot pass 2 GB, so, as the TFLite converter does for big models,
every weight buffer is stored after the flatbuffer and found through ``Buffer.offset`` /
``Buffer.size`` (absolute file offsets, :file:`tensorflow/compiler/mlir/lite/schema/
schema.fbs`), 64-byte aligned so a memory map hands XNNPACK aligned weights. Identical
buffers (a table the converter stored once per signature, or in two parts) are stored once,
as :func:`pocketlm.flatbuf.finalize` does. Plain Python and numpy: no TensorFlow.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import flatbuffers
import numpy as np
from ai_edge_litert import schema_py_generated as fb
from ai_edge_litert.tools import flatbuffer_utils

from .contract import HIDDEN, INPUT_POS, LOGITS, TOKENS
from .errors import ConversionError
from .flatbuf import buffer_key, buffer_readings
from .paths import atomic_write

ALIGNMENT = 64  # bytes; XNNPACK and mmap both like aligned weights
_PLACEHOLDER = 2  # any offset > 1 marks an external buffer; it is patched after a first pack
# Ops whose options name other subgraphs: their indices would need remapping (never in
# pocketlm's graphs, so they are refused rather than half-supported).
_SUBGRAPH_OPTIONS = {fb.BuiltinOptions.IfOptions, fb.BuiltinOptions.WhileOptions,
                     fb.BuiltinOptions.CallOnceOptions}


@dataclass
class _Weights:
    """The data region being written: unique buffers, in order, in a temporary file."""

    file: object
    size: int = 0
    index_of: dict[bytes, int] = field(default_factory=dict)  # content key -> buffer index
    buffers: list[fb.BufferT] = field(default_factory=list)  # the stitched model's buffers

    def add(self, data: np.ndarray, key: bytes) -> int:
        """The stitched buffer index holding ``data`` (written once per distinct key)."""
        if key in self.index_of:
            return self.index_of[key]
        pad = (-self.size) % ALIGNMENT
        self.file.write(b"\0" * pad)
        self.size += pad
        buf = fb.BufferT()
        buf.offset, buf.size = self.size, int(data.nbytes)  # region-relative for now
        self.file.write(memoryview(np.ascontiguousarray(data)).cast("B"))
        self.size += int(data.nbytes)
        self.buffers.append(buf)
        self.index_of[key] = len(self.buffers) - 1
        return len(self.buffers) - 1


def _load(data: bytes) -> fb.ModelT:
    model = flatbuffer_utils.convert_bytearray_to_object(bytearray(data))
    for buf in model.buffers or []:
        if buf.offset and buf.offset > 1:  # a part that already keeps weights outside
            buf.data = np.frombuffer(data, np.uint8, int(buf.size), int(buf.offset))
            buf.offset, buf.size = 0, 0
    return model


def _signatures(model: fb.ModelT, where: str) -> dict[str, fb.SignatureDefT]:
    sigs = {sd.signatureKey.decode(): sd for sd in model.signatureDefs or []}
    used = {sd.subgraphIndex for sd in sigs.values()}
    if len(used) != len(model.subgraphs or []):
        raise ConversionError(f"{where} has subgraphs outside its signatures (control flow);"
                              " it cannot be stitched")
    return sigs


def stitch(parts: list[Path], out: Path, metadata: dict[str, bytes],
           progress: Callable[[str], None] = lambda _m: None) -> int:
    """Join the part files ``parts`` (first to last) into ``out``; returns its size in bytes.

    ``metadata`` entries (name -> bytes) are stored inline, after the first part's own
    (``min_runtime_version``, the converter's). The file is written beside ``out`` and renamed
    into place, so a failure (a full disk: ConversionError) leaves no half-written model.
    Raises ConversionError for parts whose signatures disagree or that use control flow.
    """
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, region_path = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".weights",
                                       dir=out.parent)
    try:
        with os.fdopen(fd, "wb") as region:
            weights = _Weights(region)
            weights.buffers.append(fb.BufferT())  # buffer 0: the empty sentinel
            model = _join(parts, weights, progress)
        _write(model, weights, Path(region_path), out, metadata)
        return out.stat().st_size
    except OSError as exc:
        raise ConversionError(f"cannot write {out}: {exc.strerror or exc}") from None
    finally:
        try:
            os.unlink(region_path)
        except OSError:
            pass


def _join(parts: list[Path], weights: _Weights, progress) -> fb.ModelT:
    opcodes: list[fb.OperatorCodeT] = []
    opcode_index: dict[tuple, int] = {}
    joined: dict[str, dict] = {}  # signature key -> its subgraph under construction
    first: dict | None = None  # the first part's version, description and metadata
    order: list[str] = []
    for p, path in enumerate(parts):
        progress(f"stitching part {p + 1}/{len(parts)}")
        model = _load(Path(path).read_bytes())
        sigs = _signatures(model, str(path))
        if first is None:
            order = list(sigs)
            first = {"version": model.version, "description": model.description,
                     "metadata": [(m.name, bytes(np.asarray(model.buffers[m.buffer].data,
                                                            np.uint8)))
                                  for m in model.metadata or []]}
            joined = {k: {"sub": fb.SubGraphT(), "inputs": {}, "outputs": {}, "hidden": None}
                      for k in order}
            for state in joined.values():
                state["sub"].tensors, state["sub"].operators = [], []
        if set(sigs) != set(order):
            raise ConversionError(f"part {p + 1} has signatures {sorted(sigs)}, part 1 has "
                                  f"{sorted(order)}")
        readings = buffer_readings(model)
        buffer_map: dict[int, int] = {0: 0}

        def stitched_buffer(index: int) -> int:
            if index not in buffer_map:
                data = model.buffers[index].data
                if data is None or len(data) == 0:
                    buffer_map[index] = 0
                else:
                    arr = np.asarray(data, np.uint8)
                    buffer_map[index] = weights.add(arr, buffer_key(
                        arr, readings.get(index, set())))
            return buffer_map[index]

        codes = []
        for code in model.operatorCodes or []:
            key = (code.deprecatedBuiltinCode, code.builtinCode, code.customCode, code.version)
            if key not in opcode_index:
                opcode_index[key] = len(opcodes)
                opcodes.append(code)
            codes.append(opcode_index[key])
        last = p == len(parts) - 1
        for key in order:
            _append(joined[key], model, sigs[key], codes, stitched_buffer, p == 0, last)
    assert first is not None
    stitched = fb.ModelT()
    stitched.version = first["version"]
    stitched.description = first["description"]
    stitched.operatorCodes = opcodes
    stitched.subgraphs, stitched.signatureDefs = [], []
    for i, key in enumerate(order):
        state = joined[key]
        sub = state["sub"]
        sub.name = key.encode()
        ins = sorted(state["inputs"].items(), key=_canonical)
        outs = sorted(state["outputs"].items(), key=_canonical)
        sub.inputs, sub.outputs = [t for _, t in ins], [t for _, t in outs]
        stitched.subgraphs.append(sub)
        sd = fb.SignatureDefT()
        sd.signatureKey, sd.subgraphIndex = key.encode(), i
        sd.inputs = [_tensor_map(n, t) for n, t in ins]
        sd.outputs = [_tensor_map(n, t) for n, t in outs]
        stitched.signatureDefs.append(sd)
    stitched.buffers = weights.buffers
    # The first part's own metadata (min_runtime_version, conversion metadata), inline.
    stitched.metadata = []
    for name, blob in first["metadata"]:
        buf = fb.BufferT()
        buf.data = np.frombuffer(blob, np.uint8)
        stitched.buffers.append(buf)
        meta = fb.MetadataT()
        meta.name, meta.buffer = name, len(stitched.buffers) - 1
        stitched.metadata.append(meta)
    return stitched


def _canonical(item: tuple[str, int]) -> tuple:
    """Signature order people read: tokens, input_pos, caches by layer (K before V), then
    logits; anything else by name."""
    name = item[0]
    head = {TOKENS: 0, INPUT_POS: 1}
    if name in head:
        return (head[name], 0, "")
    kind, _, layer = name.rpartition("_")
    if kind in ("k_cache", "v_cache") and layer.isdigit():
        return (2, int(layer), kind)
    return (3 if name == LOGITS else 4, 0, name)


def _tensor_map(name: str, index: int) -> fb.TensorMapT:
    tm = fb.TensorMapT()
    tm.name, tm.tensorIndex = name.encode(), index
    return tm


def _append(state: dict, model: fb.ModelT, sd: fb.SignatureDefT, codes: list[int],
            stitched_buffer, first: bool, last: bool) -> None:
    """Copy one part's subgraph for one signature into the stitched subgraph ``state``."""
    sub = model.subgraphs[sd.subgraphIndex]
    out_sub: fb.SubGraphT = state["sub"]
    ins = {tm.name.decode(): tm.tensorIndex for tm in sd.inputs or []}
    outs = {tm.name.decode(): tm.tensorIndex for tm in sd.outputs or []}
    where = f"signature {sd.signatureKey.decode()!r}"
    if (HIDDEN in ins) == first:
        raise ConversionError(f"{where}: only parts after the first take {HIDDEN}")
    if (HIDDEN in outs) == last:
        raise ConversionError(f"{where}: only parts before the last return {HIDDEN}")
    bound: dict[int, int] = {}  # this part's tensor index -> stitched index, for inputs
    if not first:
        bound[ins[HIDDEN]] = state["hidden"]
    if INPUT_POS in ins and INPUT_POS in state["inputs"]:
        bound[ins[INPUT_POS]] = state["inputs"][INPUT_POS]
    index: dict[int, int] = {}
    for i, tensor in enumerate(sub.tensors or []):
        if i in bound:
            index[i] = bound[i]
            continue
        tensor.buffer = stitched_buffer(tensor.buffer)
        out_sub.tensors.append(tensor)
        index[i] = len(out_sub.tensors) - 1
    remap = lambda xs: [index[x] if x >= 0 else x for x in (xs if xs is not None else [])]  # noqa: E731
    for op in sub.operators or []:
        if op.builtinOptionsType in _SUBGRAPH_OPTIONS:
            raise ConversionError(f"{where} uses control flow; it cannot be stitched")
        op.opcodeIndex = codes[op.opcodeIndex]
        op.inputs, op.outputs = remap(op.inputs), remap(op.outputs)
        if op.intermediates is not None:
            op.intermediates = remap(op.intermediates)
        out_sub.operators.append(op)
    for name, i in ins.items():
        if name != HIDDEN and name not in state["inputs"]:
            state["inputs"][name] = index[i]
    for name, i in outs.items():
        if name == HIDDEN:
            state["hidden"] = index[i]
        else:
            state["outputs"][name] = index[i]


def _pack(model: fb.ModelT) -> bytes:
    builder = flatbuffers.Builder(1 << 20)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


def _write(model: fb.ModelT, weights: _Weights, region: Path, out: Path,
           metadata: dict[str, bytes]) -> None:
    for name, blob in metadata.items():
        buf = fb.BufferT()
        buf.data = np.frombuffer(blob, dtype=np.uint8)
        model.buffers.append(buf)
        meta = fb.MetadataT()
        meta.name, meta.buffer = name.encode(), len(model.buffers) - 1
        model.metadata.append(meta)
    # The weights (no inline data, a size): metadata and the empty sentinel stay inline.
    external = [b for b in model.buffers if b.data is None and b.size]
    relative = [b.offset for b in external]
    for b in external:  # a first pack only measures the flatbuffer: offsets are fixed-width
        b.offset = _PLACEHOLDER
    head_size = len(_pack(model))
    start = head_size + (-head_size) % ALIGNMENT
    for b, rel in zip(external, relative):
        b.offset = start + rel
    head = _pack(model)
    if len(head) != head_size:
        raise ConversionError("internal error: the flatbuffer changed size between packs")

    def write(f) -> None:
        with open(region, "rb") as src:
            f.write(head)
            f.write(b"\0" * (start - head_size))
            while chunk := src.read(64 << 20):
                f.write(chunk)

    atomic_write(out, write)
