"""Worker for the hostile-model-file tests: builds bad variants of a good model, tries each.

Run as ``python -m tests.model_fuzz GOOD.tflite WORKDIR FIRST`` with the case list (JSON) on
stdin. For every case from FIRST on it prints ``START i`` and then one JSON result line. If a
case crashes this process, the parent sees which case was last started and restarts it after.
"""

from __future__ import annotations

import json
import random
import sys
from pathlib import Path

import numpy as np

from pocketlm.contract import METADATA_KEY, TOKENIZER_METADATA_KEY
from pocketlm.errors import PocketLMError
from pocketlm.flatbuf import finalize, read_metadata


def make_cases(n_truncate: int = 60, n_flip: int = 150, n_random: int = 40) -> list[dict]:
    cases: list[dict] = [{"kind": "empty"}]
    cases += [{"kind": "truncate", "seed": i} for i in range(n_truncate)]
    cases += [{"kind": "flip", "seed": i, "bits": [1, 8, 64][i % 3],
               "region": "head" if i % 2 else "any"} for i in range(n_flip)]
    cases += [{"kind": "random", "seed": i, "identifier": bool(i % 2)} for i in range(n_random)]
    cases += [{"kind": "metadata", "change": i} for i in range(len(_LIES))]
    cases += [{"kind": "huge_tensor", "seed": i} for i in range(10)]
    return cases


def build(case: dict, good: bytes) -> bytes:
    rng = random.Random(case.get("seed", 0))
    kind = case["kind"]
    if kind == "empty":
        return b""
    if kind == "truncate":
        return good[:rng.randrange(1, len(good))]
    if kind == "flip":
        data = bytearray(good)
        limit = min(len(data), 65536) if case["region"] == "head" else len(data)
        for _ in range(case["bits"]):
            pos = rng.randrange(limit)
            data[pos] ^= 1 << rng.randrange(8)
        return bytes(data)
    if kind == "random":
        data = bytearray(rng.randbytes(rng.choice([8, 64, 4096, 200_000])))
        if case["identifier"]:
            data[4:8] = b"TFL3"
        return bytes(data)
    if kind == "metadata":
        change = _LIES[case["change"]]
        meta = read_metadata(good)
        info = json.loads(meta[METADATA_KEY])
        entries: dict[str, bytes] = {}
        if "raw" in change:
            entries[METADATA_KEY] = change["raw"]
        elif "tokenizer" in change:
            entries[TOKENIZER_METADATA_KEY] = change["tokenizer"]
        elif "drop_tokenizer" in change:
            entries[TOKENIZER_METADATA_KEY] = b"\x00"
        else:
            for key, value in change.items():
                if key in info["model"] and key not in ("sequence_length",):
                    info["model"][key] = value
                else:
                    info[key] = value
            entries[METADATA_KEY] = json.dumps(info).encode()
        return finalize(good, entries)
    if kind == "huge_tensor":
        from ai_edge_litert.tools import flatbuffer_utils

        model = flatbuffer_utils.convert_bytearray_to_object(bytearray(good))
        sub = model.subgraphs[rng.randrange(len(model.subgraphs))]
        tensor = sub.tensors[rng.randrange(len(sub.tensors))]
        rank = max(1, len(tensor.shape) if tensor.shape is not None else 1)
        tensor.shape = np.asarray(([1 << 20, 1 << 20, 1 << 10] * 2)[:rank], np.int32)
        return bytes(flatbuffer_utils.convert_object_to_bytearray(model))
    raise ValueError(kind)


_LIES = [{"num_layers": 3}, {"num_layers": 1}, {"num_heads": 4}, {"hidden_dim": 0},
         {"vocabulary_size": 10}, {"vocabulary_size": 1 << 30}, {"num_layers": "two"},
         {"sequence_length": 99999}, {"sequence_length": 32}, {"prefill": {"prefill": 999}},
         {"prefill": {"nope": 4}}, {"contract_version": 999}, {"contract": "other.thing"},
         {"end_token_id": "x"}, {"model": None}, {"raw": b"{not json"}, {"raw": b"\xff\xfe\x00"},
         {"tokenizer": b"garbage"}, {"tokenizer": b""}, {"drop_tokenizer": True}]


def try_file(path: Path) -> dict:
    from pocketlm.runtime import load_model

    try:
        model = load_model(path)
        logits = np.asarray(model.start([1, 2, 3]))
        model.step(int(np.argmax(logits)))
        return {"outcome": "ok"}
    except PocketLMError as exc:
        return {"outcome": "error", "type": type(exc).__name__, "message": str(exc)}
    except Exception as exc:  # the tests fail on these: every error must be a clear one
        return {"outcome": "unexpected", "type": type(exc).__name__, "message": str(exc)[:500]}


def main(argv: list[str]) -> int:
    good = Path(argv[0]).read_bytes()
    work = Path(argv[1])
    first = int(argv[2])
    cases = json.loads(sys.stdin.read())
    for i in range(first, len(cases)):
        print(f"START {i}", flush=True)
        path = work / f"case-{i}.tflite"
        path.write_bytes(build(cases[i], good))
        result = try_file(path)
        path.unlink()
        print(json.dumps({"case": i, **result}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
