"""The memory-bandwidth bound of decoding: every weight is read once per generated token.

Decoding one token multiplies a ``[1, D]`` row by every weight matrix, so on a CPU it is
bound by how fast the weights stream from memory: tokens/s <= bandwidth / bytes read per
token. :func:`decode_weight_bytes` counts the bytes ``decode`` reads (every constant its ops
take, each buffer once; an embedding GATHER reads one row, not its table).

Bandwidth: numpy's reductions read 35-46 GB/s on 2 cores here, yet LiteRT decoded the
Gemma 2B shape at 69 GB/s of weights, so numpy understates what the machine streams.
:func:`stream_bandwidth` instead times LiteRT itself on the op decoding spends its time in:
one int8 matrix-vector product (FULLY_CONNECTED, float input, per-channel int8 weights, as
dynamic-int8 files hold them) over a matrix far larger than any cache.
:func:`read_bandwidth` (numpy) stays for comparison. No TensorFlow.
"""

from __future__ import annotations

import mmap
import threading
import time
from pathlib import Path

import numpy as np
from ai_edge_litert import schema_py_generated as fb

from .contract import DECODE

_GATHER = fb.BuiltinOperator.GATHER


def decode_weight_bytes(path: str | Path) -> int:
    """Bytes of constant tensors the ``decode`` signature of ``path`` reads per token.

    ``path`` may be a ``.litertlm`` bundle: its TFLite section is read. Raises ValueError
    when the file has no ``decode`` signature."""
    from .runtime.bundle import is_bundle, tflite_path

    if is_bundle(Path(path)):
        path = tflite_path(Path(path))
    with open(path, "rb") as f:
        data = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
    try:
        return _decode_weight_bytes(data, path)
    finally:
        try:
            data.close()
        except BufferError:  # flatbuffer views still alive: the map closes when they go
            pass


def _decode_weight_bytes(data, path) -> int:
    model = fb.Model.GetRootAs(data, 0)
    sub_index = None
    for i in range(model.SignatureDefsLength()):
        sd = model.SignatureDefs(i)
        if sd.SignatureKey().decode() == DECODE:
            sub_index = sd.SubgraphIndex()
    if sub_index is None:
        raise ValueError(f"{path} has no {DECODE} signature")
    sub = model.Subgraphs(sub_index)
    codes = [max(model.OperatorCodes(i).BuiltinCode(),
                 model.OperatorCodes(i).DeprecatedBuiltinCode())
             for i in range(model.OperatorCodesLength())]
    read: dict[int, int] = {}  # buffer -> bytes read: a table a GATHER and the tied
    # LM head share is read whole by the head, one row by the GATHER
    for o in range(sub.OperatorsLength()):
        op = sub.Operators(o)
        inputs = [int(x) for x in op.InputsAsNumpy()] if op.InputsLength() else []
        for n, t in enumerate(inputs):
            if t < 0:
                continue
            b = sub.Tensors(t).Buffer()
            buf = model.Buffers(b)
            size = buf.Size() if buf.Offset() > 1 else buf.DataLength()
            if b == 0 or size == 0:
                continue
            if codes[op.OpcodeIndex()] == _GATHER and n == 0:
                shape = sub.Tensors(t).ShapeAsNumpy()
                size //= max(1, int(shape[0]))  # one row of the table
            read[b] = max(read.get(b, 0), size)
    total = sum(read.values())
    return total


def read_bandwidth(threads: int = 2, mib: int = 1024, repeats: int = 5) -> float:
    """Memory read bandwidth in GB/s (10^9 bytes): ``threads`` threads each take the maximum
    of their share of a ``mib`` MiB int64 array (numpy releases the GIL; a max is the
    cheapest reduction per byte, so memory, not arithmetic, bounds it: a float32 sum read
    40 GB/s where this reads 46 on 2 cores here); best of ``repeats``."""
    a = np.ones(mib * 2**20 // 8, np.int64)
    chunks = np.array_split(a, max(1, threads))
    best = 0.0
    for _ in range(repeats):
        workers = [threading.Thread(target=np.maximum.reduce, args=(c,)) for c in chunks]
        t0 = time.perf_counter()
        for w in workers:
            w.start()
        for w in workers:
            w.join()
        best = max(best, a.nbytes / (time.perf_counter() - t0) / 1e9)
    return best


def resident_split() -> dict[str, float]:
    """This process's resident memory now, MiB: ``rss_file_mb`` (pages of mapped files: a
    memory-mapped model and XNNPACK's packed-weights cache) and ``rss_anon_mb`` (private
    memory: copies). Empty where /proc is missing (not Linux)."""
    out: dict[str, float] = {}
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            key, _, value = line.partition(":")
            if key in ("RssFile", "RssAnon"):
                out[f"rss_{key[3:].lower()}_mb"] = int(value.split()[0]) / 1024.0
    except (OSError, ValueError, IndexError):
        return {}
    return out


def _probe_model(rows: int, cols: int) -> bytes:
    """A .tflite with one FULLY_CONNECTED: float32 [1, cols] x int8 [rows, cols] (per-row
    scales, the converter's dynamic-range layout) -> float32 [1, rows]."""
    import flatbuffers

    def tensor(shape, dtype, buffer, name, quant=None):
        t = fb.TensorT()
        t.shape, t.type, t.buffer, t.name, t.quantization = shape, dtype, buffer, name, quant
        return t

    quant = fb.QuantizationParametersT()
    quant.scale = np.full(rows, 1e-3, np.float32).tolist()
    quant.zeroPoint = [0] * rows
    quant.quantizedDimension = 0
    weights = fb.BufferT()
    weights.data = np.random.default_rng(0).integers(-127, 128, rows * cols, np.int8
                                                     ).view(np.uint8)
    sub = fb.SubGraphT()
    sub.tensors = [tensor([1, cols], fb.TensorType.FLOAT32, 0, b"x"),
                   tensor([rows, cols], fb.TensorType.INT8, 1, b"w", quant),
                   tensor([1, rows], fb.TensorType.FLOAT32, 0, b"y")]
    options = fb.FullyConnectedOptionsT()
    options.asymmetricQuantizeInputs = True
    op = fb.OperatorT()
    op.opcodeIndex, op.inputs, op.outputs = 0, [0, 1, -1], [2]
    op.builtinOptionsType = fb.BuiltinOptions.FullyConnectedOptions
    op.builtinOptions = options
    sub.operators, sub.inputs, sub.outputs = [op], [0], [2]
    code = fb.OperatorCodeT()
    code.builtinCode = code.deprecatedBuiltinCode = fb.BuiltinOperator.FULLY_CONNECTED
    code.version = 12
    model = fb.ModelT()
    model.version, model.operatorCodes, model.subgraphs = 3, [code], [sub]
    model.buffers = [fb.BufferT(), weights]
    builder = flatbuffers.Builder(rows * cols + 4096)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


def stream_bandwidth(threads: int = 2, mib: int = 1024, repeats: int = 20) -> float:
    """GB/s (10^9 bytes) at which LiteRT (XNNPACK) streams int8 weights through one
    matrix-vector product of a ``mib`` MiB matrix, ``threads`` threads: the bandwidth a
    decode step can use. Best of ``repeats`` after two warm-up calls."""
    import tempfile

    from ai_edge_litert.interpreter import Interpreter

    cols = 4096
    rows = mib * 2**20 // cols
    with tempfile.NamedTemporaryFile(suffix=".tflite") as f:
        f.write(_probe_model(rows, cols))
        f.flush()
        interp = Interpreter(model_path=f.name, num_threads=threads)
        interp.allocate_tensors()
        x = interp.get_input_details()[0]["index"]
        interp.set_tensor(x, np.ones((1, cols), np.float32))
        for _ in range(2):
            interp.invoke()
        best = 0.0
        for _ in range(repeats):
            t0 = time.perf_counter()
            interp.invoke()
            best = max(best, rows * cols / (time.perf_counter() - t0) / 1e9)
        return best


def probe_in_child(threads: int) -> float | None:
    """:func:`stream_bandwidth` measured in a fresh process (so a benchmark's own peak RSS
    never includes the probe's 1 GiB), or None if it failed."""
    import subprocess
    import sys

    proc = subprocess.run([sys.executable, "-m", "pocketlm.roofline", str(threads)],
                          capture_output=True, text=True)
    try:
        return float(proc.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        return None


if __name__ == "__main__":
    import sys

    print(stream_bandwidth(int(sys.argv[1]) if len(sys.argv) > 1 else 2), flush=True)
