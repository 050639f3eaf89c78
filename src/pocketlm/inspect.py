"""``pocketlm info``: what a .tflite file is, read from its flatbuffer (no interpreter)."""

from __future__ import annotations

from typing import Any

from .config import METADATA_KEY, TOKENIZER_METADATA_KEY
from .runtime.loader import inspect_model

_MIB = 2**20


def describe(path: str) -> dict[str, Any]:
    found = inspect_model(path)
    s = found.summary
    sigs = {name: {"inputs": {n: {"shape": t.shape, "dtype": t.dtype} for n, t in sig.inputs.items()},
                   "outputs": {n: {"shape": t.shape, "dtype": t.dtype}
                               for n, t in sig.outputs.items()}}
            for name, sig in s.signatures.items()}
    other_meta = {k: len(v) for k, v in s.metadata.items()
                  if k not in (METADATA_KEY, TOKENIZER_METADATA_KEY)}
    return {
        "file": str(found.path),
        "size_bytes": s.file_size,
        "kind": found.kind,
        "contract": found.contract.to_dict() if found.contract else None,
        "has_tokenizer": TOKENIZER_METADATA_KEY in s.metadata,
        "signatures": sigs,
        "weights_bytes_by_dtype": s.weight_bytes_by_type,
        "op_histogram": dict(s.op_histogram.most_common()),
        "float_ops": dict(s.float_ops.most_common()),
        "other_metadata_bytes": other_meta,
    }


def render_text(r: dict[str, Any]) -> str:
    lines = [f"file:      {r['file']}",
             f"size:      {r['size_bytes'] / _MIB:.2f} MiB ({r['size_bytes']:,} bytes)",
             f"kind:      {r['kind']}"]
    c = r["contract"]
    if c:
        m = c.get("model", {})
        lines += [f"contract:  {c['contract']} v{c['contract_version']}",
                  f"model:     {c['model_type']} {m.get('num_layers')} layers, "
                  f"{m.get('num_heads')} heads, hidden {m.get('hidden_dim')}, "
                  f"vocabulary {m.get('vocabulary_size')}",
                  f"quantized: {c['quantization']}",
                  f"window:    {c['sequence_length']} tokens; chunks "
                  + ", ".join(f"{k}={v}" for k, v in c["prefill"].items()),
                  f"end token: {c['end_token_id']}; tokenizer "
                  f"{'embedded' if r['has_tokenizer'] else 'missing'} ({c['tokenizer']})",
                  f"source:    {c['source']} ({c['created_by']})"]
    else:
        lines.append("contract:  none (no pocketlm metadata)")
    lines.append("signatures:")
    for name, sig in r["signatures"].items():
        ins = ", ".join(f"{n}{v['shape']}:{v['dtype']}" for n, v in sig["inputs"].items())
        outs = ", ".join(f"{n}{v['shape']}:{v['dtype']}" for n, v in sig["outputs"].items())
        lines.append(f"  {name}({ins})\n      -> {outs}")
    lines.append("weights:   " + ", ".join(f"{k} {v / _MIB:.2f} MiB"
                                           for k, v in r["weights_bytes_by_dtype"].items()))
    total = sum(r["op_histogram"].values())
    lines.append(f"ops ({total} in all signatures):")
    for op, n in r["op_histogram"].items():
        fl = r["float_ops"].get(op, 0)
        lines.append(f"  {op:<28}{n:>5}" + (f"   float: {fl}" if fl else ""))
    return "\n".join(lines)
