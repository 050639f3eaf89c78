"""``pocketlm info``: what a .tflite file is, read from its flatbuffer (no interpreter)."""

from __future__ import annotations

from typing import Any

from .contract import METADATA_KEY, TOKENIZER_METADATA_KEY
from .runtime.kvcache import KVCacheModel
from .runtime.loader import EXPECTED, Inspection, inspect_model
from .runtime.recipe import FLEX_PIP, RecipeModel, string_signature
from .runtime.windowed import WindowedModel, windowed_signature

_MIB = 2**20


def contract_of(found: Inspection) -> dict[str, str]:
    """The contract a file follows, in words: what it is, its call, and what runs it."""
    s = found.summary
    if found.kind == KVCacheModel.kind:
        v1 = found.contract is not None and found.contract.contract_version == 1
        if v1:
            call = "prefill*/decode(tokens, input_pos, last_index, k/v caches) -> logits, caches"
        else:
            call = ("prefill*(tokens, input_pos[T], k/v caches) -> caches; decode(tokens, "
                    "input_pos[1], k/v caches) -> logits [1, 1, V], caches (in place)")
        runs = "ai-edge-litert + numpy (no TensorFlow)"
        if not v1:
            runs += "; LiteRT-LM too (LiteRT-LM's contract" + (
                ")" if found.bundle else "; convert --format litertlm bundles it)")
        return {"name": "pocketlm.kv-cache", "call": call, "runs_with": runs}
    if found.kind == RecipeModel.kind:
        sig, inp, out = string_signature(s) or ("?", "?", "?")
        c = found.contract
        frozen = f", max length {c.sequence_length} frozen" if c else ""
        return {"name": "string in, string out (the recipe's Android model)",
                "call": f"{sig}({inp}: string) -> {out}: string (prompt + continuation"
                        f"{frozen}; tokenizer and decode loop in the graph)",
                "runs_with": f"a Flex-capable TensorFlow ({FLEX_PIP}), or Android with the "
                             "select-tf-ops AAR"}
    if found.kind == WindowedModel.kind:
        w = windowed_signature(s)
        assert w is not None
        runs_with = "ai-edge-litert + numpy; --tokenizer unless the file carries one"
        if any(op.startswith("CUSTOM:") for op in s.op_histogram):
            runs_with += "; its Select-TF ops only fill the preprocessor's tables and are skipped"
        return {"name": "Keras model.export(format='litert') causal LM",
                "call": f"{w.name}(token_ids{', padding_mask' if w.has_mask else ''}) -> "
                        f"{w.output}: logits [1, T, {w.vocabulary_size}] (no cache: the "
                        "window is recomputed every step)",
                "runs_with": runs_with}
    return {"name": "not a compatible language model", "call": "",
            "runs_with": f"nothing here: {EXPECTED}"}


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
        "file": str(found.bundle or found.path),
        # A .litertlm bundle is described through its TFLite model, unpacked here:
        "model_section": str(found.path) if found.bundle else None,
        "size_bytes": s.file_size,
        "kind": found.kind,
        "contract_description": contract_of(found),
        "contract": found.contract.to_dict() if found.contract else None,
        "has_tokenizer": TOKENIZER_METADATA_KEY in s.metadata,
        "signatures": sigs,
        "weights_bytes_by_dtype": s.weight_bytes_by_type,
        "op_histogram": dict(s.op_histogram.most_common()),
        "float_ops": dict(s.float_ops.most_common()),
        "select_tf_ops": sorted(op.split(":", 1)[1] for op in s.op_histogram
                                if op.startswith("CUSTOM:Flex")),
        "other_metadata_bytes": other_meta,
    }


def render_text(r: dict[str, Any]) -> str:
    lines = [f"file:      {r['file']}"]
    if r.get("model_section"):
        lines.append(f"bundle:    .litertlm; its TFLite model is described below "
                     f"(unpacked to {r['model_section']})")
    lines += [f"size:      {r['size_bytes'] / _MIB:.2f} MiB ({r['size_bytes']:,} bytes)",
              f"kind:      {r['kind']}"]
    d = r["contract_description"]
    lines.append(f"format:    {d['name']}")
    if d["call"]:
        lines.append(f"call:      {d['call']}")
    lines.append(f"runs with: {d['runs_with']}")
    c = r["contract"]
    if c:
        m = c.get("model", {})
        heads = next((m[k] for k in ("num_query_heads", "num_heads", "num_attention_heads")
                      if k in m), "?")
        lines += [f"contract:  {c['contract']} v{c['contract_version']}",
                  f"model:     {c['model_type']} {c.get('num_layers') or m.get('num_layers')} "
                  f"layers, {heads} heads, hidden {m.get('hidden_dim')}, vocabulary "
                  f"{c.get('vocabulary_size') or m.get('vocabulary_size')}",
                  f"quantized: {c['quantization']}"]
        if r["kind"] == "android-string":
            lines.append(f"max len:   {c['sequence_length']} tokens (start token, prompt and "
                         f"continuation); sampler {c['notes'].get('sampler', '?')}")
        else:
            lines += [f"window:    {c['sequence_length']} tokens; chunks "
                      + ", ".join(f"{k}={v}" for k, v in c["prefill"].items()),
                      f"cache:     {c.get('cache_layout')} {c.get('cache_shape')} per layer, K "
                      f"and V",
                      f"tokens:    start {c.get('start_token_id')} (prepended: "
                      f"{'yes' if c.get('add_start_token') else 'no'}), stop "
                      f"{c.get('stop_token_ids')}",
                      f"end token: {c['end_token_id']}; tokenizer "
                      f"{'embedded' if r['has_tokenizer'] else 'missing'} ({c['tokenizer']})"]
        chat = c.get("chat_template")
        if isinstance(chat, dict):  # files written before chat templates have none
            lines.append(f"chat:      {chat.get('name')} template, a reply ends at "
                         f"{', '.join(chat.get('stop_tokens') or ['the end token'])}")
        lines.append(f"source:    {c['source']} ({c['created_by']})")
    else:
        lines.append("contract:  none (no pocketlm metadata)")
    if r["select_tf_ops"]:
        lines.append(f"select-tf: {len(r['select_tf_ops'])} kinds of Flex op: "
                     + ", ".join(r["select_tf_ops"]))
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
