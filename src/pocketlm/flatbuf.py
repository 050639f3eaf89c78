"""Reading and annotating .tflite flatbuffers without TensorFlow.

Uses the schema module and flatbuffer helpers that ship inside ``ai-edge-litert``. Reading
goes through the zero-copy accessors on a memory map, so inspecting a 500 MB model costs
almost nothing; adding metadata re-packs the model the same way the TF converter itself does
when it adds its conversion metadata.
"""

from __future__ import annotations

import mmap
import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from ai_edge_litert import schema_py_generated as fb

from .errors import ModelFileError
from .paths import check_model_file

_IDENTIFIER = b"TFL3"
_TYPE_NAMES = {v: k for k, v in vars(fb.TensorType).items() if not k.startswith("_")}
_OP_NAMES = {v: k for k, v in vars(fb.BuiltinOperator).items() if not k.startswith("_")}


def read_bytes(path: str | Path) -> bytes:
    """The whole file, with clear errors for a missing, empty or non-flatbuffer file."""
    p = check_model_file(path)
    try:
        data = p.read_bytes()
    except OSError as exc:
        raise ModelFileError(f"cannot read {p}: {exc.strerror}") from None
    check_identifier(data, p)
    return data


def check_identifier(data: bytes | mmap.mmap, where: str | Path = "model") -> None:
    if len(data) < 8:
        raise ModelFileError(f"{where} is not a .tflite model: the file is "
                             f"{'empty' if len(data) == 0 else 'truncated'}")
    if bytes(data[4:8]) != _IDENTIFIER:
        raise ModelFileError(f"{where} is not a .tflite model (no TFL3 flatbuffer identifier)")


@dataclass
class TensorInfo:
    name: str
    shape: list[int]
    dtype: str


@dataclass
class SignatureInfo:
    name: str
    inputs: dict[str, TensorInfo]
    outputs: dict[str, TensorInfo]


@dataclass
class ModelSummary:
    """What a .tflite file holds, read from its flatbuffer."""

    file_size: int
    description: str
    metadata: dict[str, bytes]
    signatures: dict[str, SignatureInfo]
    op_histogram: Counter = field(default_factory=Counter)
    # Ops whose inputs/outputs include float tensors: what quantization left in float.
    float_ops: Counter = field(default_factory=Counter)
    weight_bytes_by_type: dict[str, int] = field(default_factory=dict)


def _tensor(sub, index: int) -> TensorInfo:
    t = sub.Tensors(index)
    shape = [int(x) for x in t.ShapeAsNumpy()] if t.ShapeLength() else []
    return TensorInfo((t.Name() or b"").decode("utf-8", "replace"), shape,
                      _TYPE_NAMES.get(t.Type(), str(t.Type())).lower())


def _buffer_bytes(model, data, index: int) -> bytes:
    buf = model.Buffers(index)
    if buf is None:
        return b""
    if buf.Offset() > 1:  # buffer stored after the flatbuffer (large models)
        return bytes(data[buf.Offset():buf.Offset() + buf.Size()])
    if buf.DataLength() == 0:
        return b""
    return buf.DataAsNumpy().tobytes()


def _root(data):
    check_identifier(data)
    try:
        return fb.Model.GetRootAs(data, 0)
    except Exception as exc:  # a corrupt table offset raises many kinds of error
        raise ModelFileError(f"corrupt .tflite flatbuffer: {exc}") from None


def read_metadata(data: bytes | mmap.mmap) -> dict[str, bytes]:
    """Metadata entries (name -> bytes) of a model in memory."""
    model = _root(data)
    try:
        out = {}
        for i in range(model.MetadataLength()):
            m = model.Metadata(i)
            out[(m.Name() or b"").decode("utf-8", "replace")] = _buffer_bytes(model, data,
                                                                             m.Buffer())
        return out
    except ModelFileError:
        raise
    except Exception as exc:
        raise ModelFileError(f"corrupt .tflite metadata: {exc}") from None


def summarize(path: str | Path) -> ModelSummary:
    """Signatures, metadata, op histogram and weight bytes, from a memory map of the file."""
    p = Path(path)
    read_bytes_head(p)
    with open(p, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as data:
        try:
            return _summarize(data, os.path.getsize(p))
        except ModelFileError:
            raise
        except Exception as exc:
            raise ModelFileError(f"{p} is a corrupt .tflite flatbuffer: {exc}") from None


def read_bytes_head(p: Path) -> None:
    """Existence and identifier checks without reading the whole file."""
    check_model_file(p)
    try:
        with open(p, "rb") as f:
            head = f.read(8)
    except OSError as exc:
        raise ModelFileError(f"cannot read {p}: {exc.strerror}") from None
    check_identifier(head, p)


def tensor_names(data: bytes) -> list[str]:
    """The names of every tensor in every subgraph (signature) of a model."""
    model = _root(data)
    names = []
    for s in range(model.SubgraphsLength()):
        sub = model.Subgraphs(s)
        names += [(sub.Tensors(i).Name() or b"").decode("utf-8", "replace")
                  for i in range(sub.TensorsLength())]
    return names


def _summarize(data, size: int) -> ModelSummary:
    model = _root(data)
    metadata = read_metadata(data)
    ops, float_ops, weights = Counter(), Counter(), Counter()
    codes = []
    for i in range(model.OperatorCodesLength()):
        oc = model.OperatorCodes(i)
        code = max(oc.BuiltinCode(), oc.DeprecatedBuiltinCode())
        name = _OP_NAMES.get(code, str(code))
        if code == fb.BuiltinOperator.CUSTOM:
            name = "CUSTOM:" + (oc.CustomCode() or b"").decode("utf-8", "replace")
        codes.append(name)
    seen_buffers: set[int] = set()
    for s in range(model.SubgraphsLength()):
        sub = model.Subgraphs(s)
        for o in range(sub.OperatorsLength()):
            op = sub.Operators(o)
            name = codes[op.OpcodeIndex()]
            ops[name] += 1
            idx = [int(x) for x in (list(op.InputsAsNumpy()) if op.InputsLength() else [])
                   + (list(op.OutputsAsNumpy()) if op.OutputsLength() else []) if x >= 0]
            if any(sub.Tensors(i).Type() in (fb.TensorType.FLOAT32, fb.TensorType.FLOAT16)
                   for i in idx):
                float_ops[name] += 1
        for t in range(sub.TensorsLength()):
            tensor = sub.Tensors(t)
            b = tensor.Buffer()
            if b > 0 and b not in seen_buffers:
                seen_buffers.add(b)
                buf = model.Buffers(b)
                n = buf.Size() if buf.Offset() > 1 else buf.DataLength()
                if n:
                    weights[_TYPE_NAMES.get(tensor.Type(), "?").lower()] += n
    signatures = {}
    for i in range(model.SignatureDefsLength()):
        sd = model.SignatureDefs(i)
        sub = model.Subgraphs(sd.SubgraphIndex())
        ins = {}
        for j in range(sd.InputsLength()):
            tm = sd.Inputs(j)
            ins[tm.Name().decode()] = _tensor(sub, tm.TensorIndex())
        outs = {}
        for j in range(sd.OutputsLength()):
            tm = sd.Outputs(j)
            outs[tm.Name().decode()] = _tensor(sub, tm.TensorIndex())
        key = sd.SignatureKey().decode()
        signatures[key] = SignatureInfo(key, ins, outs)
    desc = (model.Description() or b"").decode("utf-8", "replace")
    return ModelSummary(size, desc, metadata, signatures, ops, float_ops, dict(weights))


def buffer_readings(model) -> dict[int, set]:
    """Buffer index -> the ways tensors read it (type, scales, zero points, axis).

    Two buffers may be merged only when their bytes AND readings match: XNNPACK's weight
    cache keys packed weights by buffer, so two readings of one buffer would get one packing.
    """
    readings: dict[int, set] = {}
    for sub in model.subgraphs or []:
        for tensor in sub.tensors or []:
            q = tensor.quantization
            reading = (tensor.type,
                       None if q is None or q.scale is None else np.asarray(q.scale).tobytes(),
                       None if q is None or q.zeroPoint is None
                       else np.asarray(q.zeroPoint).tobytes(),
                       None if q is None else q.quantizedDimension)
            readings.setdefault(tensor.buffer, set()).add(reading)
    return readings


def buffer_key(data, readings: set) -> bytes:
    """What makes two buffers interchangeable: their bytes and how tensors read them
    (:func:`buffer_readings`), as one digest."""
    import hashlib

    h = hashlib.sha256(np.asarray(data).tobytes())
    h.update(repr(sorted(readings, key=repr)).encode())
    return h.digest()


def finalize(model_bytes: bytes, entries: dict[str, bytes]) -> bytes:
    """A copy of the model with identical weight buffers shared and metadata entries added.

    The converter quantizes each signature's subgraph on its own, so the same table (the
    embedding, say) can be stored once per signature; pointing every tensor at one copy of
    identical bytes is safe because constant buffers are read-only.
    """
    from ai_edge_litert.tools import flatbuffer_utils

    model = flatbuffer_utils.convert_bytearray_to_object(bytearray(model_bytes))
    model.metadata = list(model.metadata or [])
    model.buffers = list(model.buffers or [])
    for buf in model.buffers:
        # Some tools (ai-edge-quantizer) store weights after the flatbuffer and point at them
        # by offset; a re-pack would drop that tail, so bring the bytes inline first.
        if buf.offset and buf.offset > 1:
            buf.data = np.frombuffer(model_bytes, np.uint8, int(buf.size), int(buf.offset))
            buf.offset, buf.size = 0, 0
    # Buffers are shared only when their bytes AND the way every tensor reads them (type,
    # quantization scales and zero points) match: XNNPACK's weight cache keys packed
    # weights by buffer, so two readings of one buffer would get one packing.
    readings = buffer_readings(model)
    first: dict[bytes, int] = {}
    remap: dict[int, int] = {}
    for i, buf in enumerate(model.buffers):
        if i == 0 or buf.data is None or len(buf.data) < 1024:
            continue
        key = buffer_key(buf.data, readings.get(i, set()))
        if key in first:
            remap[i] = first[key]
            buf.data = None
        else:
            first[key] = i
    for sub in model.subgraphs or []:
        for tensor in sub.tensors or []:
            tensor.buffer = remap.get(tensor.buffer, tensor.buffer)
    for name, blob in entries.items():
        buf = fb.BufferT()
        buf.data = np.frombuffer(blob, dtype=np.uint8)
        existing = [m for m in model.metadata if m.name.decode() == name]
        if existing:
            model.buffers[existing[0].buffer] = buf
            continue
        model.buffers.append(buf)
        meta = fb.MetadataT()
        meta.name = name.encode()
        meta.buffer = len(model.buffers) - 1
        model.metadata.append(meta)
    return bytes(flatbuffer_utils.convert_object_to_bytearray(model))
