"""The memory-bandwidth bound of decoding: every weight is read once per generated token.

Decoding one token multiplies a ``[1, D]`` row by every weight matrix, so on a CPU it is
bound by how fast the weights stream from memory: tokens/s <= bandwidth / bytes read per
token. :func:`decode_weight_bytes` counts the bytes ``decode`` reads (every constant its ops
take, each buffer once; an embedding GATHER reads one row, not its table) and
:func:`read_bandwidth` measures this machine's read bandwidth with numpy. No TensorFlow.
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

    Raises ValueError when the file has no ``decode`` signature."""
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
    counted: set[int] = set()
    total = 0
    for o in range(sub.OperatorsLength()):
        op = sub.Operators(o)
        inputs = [int(x) for x in op.InputsAsNumpy()] if op.InputsLength() else []
        for n, t in enumerate(inputs):
            if t < 0:
                continue
            b = sub.Tensors(t).Buffer()
            buf = model.Buffers(b)
            size = buf.Size() if buf.Offset() > 1 else buf.DataLength()
            if b == 0 or size == 0 or b in counted:
                continue
            counted.add(b)
            if codes[op.OpcodeIndex()] == _GATHER and n == 0:
                shape = sub.Tensors(t).ShapeAsNumpy()
                size //= max(1, int(shape[0]))  # one row of the table
            total += size
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
