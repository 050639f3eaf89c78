"""Running pocketlm's own KV-cache .tflite files with the LiteRT interpreter."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from ..config import METADATA_KEY, TOKENIZER_METADATA_KEY, ContractInfo
from ..errors import ContractError, RuntimeFailure
from ..tokenizer import BPETokenizer


def _interpreter(path: Path, num_threads: int):
    from ai_edge_litert.interpreter import Interpreter

    try:
        return Interpreter(model_path=str(path), num_threads=num_threads)
    except (ValueError, RuntimeError) as exc:
        raise ContractError(f"LiteRT cannot load {path}: {str(exc).strip().splitlines()[0]}")


def contract_from_metadata(metadata: dict[str, bytes]) -> ContractInfo | None:
    blob = metadata.get(METADATA_KEY)
    if blob is None:
        return None
    try:
        return ContractInfo.from_dict(json.loads(blob.decode("utf-8")))
    except (ValueError, TypeError) as exc:
        raise ContractError(f"the model's pocketlm metadata is corrupt: {exc}") from None


class KVCacheModel:
    """A model with ``decode``/``prefill*``/``score`` signatures and per-layer K/V caches."""

    kind = "pocketlm-kv-cache"

    def __init__(self, path: Path, info: ContractInfo, metadata: dict[str, bytes],
                 tokenizer: BPETokenizer | None = None, num_threads: int = 2) -> None:
        self.path = path
        self.info = info
        if tokenizer is None:
            blob = metadata.get(TOKENIZER_METADATA_KEY)
            if blob is None:
                raise ContractError(f"{path} carries no tokenizer; pass one with --tokenizer")
            tokenizer = BPETokenizer.from_bytes(blob)
        self.tokenizer = tokenizer
        self.end_token_id = int(info.end_token_id)
        self.sequence_length = int(info.sequence_length)
        self.interpreter = _interpreter(path, num_threads)
        sigs = self.interpreter.get_signature_list()
        missing = [n for n in info.prefill if n not in sigs]
        if missing:
            raise ContractError(f"{path} says it has signatures {missing} but does not")
        self._runners = {name: self.interpreter.get_signature_runner(name) for name in sigs}
        self._chunks = sorted(info.prefill.items(), key=lambda kv: -kv[1])  # (name, tokens)
        layers = int(info.model.get("num_layers", 0))
        self._cache_names = [f"{kv}_cache_{i}" for i in range(layers) for kv in ("k", "v")]
        details = self._runners["decode"].get_input_details()
        self._caches = {n: np.zeros(details[n]["shape"], np.float32) for n in self._cache_names}
        self._pos = 0

    # -- low level ------------------------------------------------------------------------
    def _run(self, name: str, tokens: list[int], start: int, last: int | None) -> np.ndarray:
        inputs = {"tokens": np.asarray([tokens], np.int32),
                  "input_pos": np.asarray([start], np.int32), **self._caches}
        if last is not None:
            inputs["last_index"] = np.asarray([last], np.int32)
        try:
            out = self._runners[name](**inputs)
        except (RuntimeError, ValueError) as exc:
            raise RuntimeFailure(f"the interpreter failed in {name}: {exc}") from None
        for n in self._cache_names:
            self._caches[n] = out[n]
        return out["logits"]

    def _plan(self, start: int, count: int) -> tuple[str, int]:
        """The signature for the next chunk: the smallest that covers the rest (padded if
        needed), else the largest (no padding); never one that runs past the cache end."""
        fits = [(n, t) for n, t in self._chunks if start + t <= self.sequence_length]
        covering = [f for f in fits if f[1] >= count]
        if covering:
            return min(covering, key=lambda f: f[1])
        return fits[0]

    # -- StepModel ------------------------------------------------------------------------
    def start(self, ids: list[int]) -> np.ndarray:
        """Fill the cache with ``ids`` from position 0; return the last token's logits."""
        if not ids:
            raise ValueError("start() needs at least one token")
        if len(ids) > self.sequence_length:
            raise ValueError(f"{len(ids)} tokens do not fit a {self.sequence_length}-token cache")
        for n in self._cache_names:
            self._caches[n].fill(0.0)
        pos, logits = 0, None
        while pos < len(ids):
            name, t = self._plan(pos, len(ids) - pos)
            chunk = ids[pos:pos + t]
            real = len(chunk)
            chunk = chunk + [self.end_token_id] * (t - real)  # padding is overwritten later
            logits = self._run(name, chunk, pos, real - 1)
            pos += real
        self._pos = pos
        return np.asarray(logits).reshape(-1)

    def step(self, token: int) -> np.ndarray:
        if self._pos >= self.sequence_length:
            raise ValueError("the cache is full")
        logits = self._run("decode", [int(token)], self._pos, 0)
        self._pos += 1
        return np.asarray(logits).reshape(-1)

    def score(self, ids: list[int]) -> np.ndarray:
        """Logits after every token of ``ids`` (teacher forcing), shape (len(ids), vocab)."""
        n = int(self.info.notes.get("score_tokens", 0))
        if "score" not in self._runners or n < 1:
            raise ContractError(f"{self.path} has no score signature")
        if len(ids) > self.sequence_length:
            raise ValueError(f"{len(ids)} tokens do not fit a {self.sequence_length}-token cache")
        for name in self._cache_names:
            self._caches[name].fill(0.0)
        rows = []
        pos = 0
        while pos < len(ids):
            chunk = ids[pos:pos + n]
            real = len(chunk)
            start = min(pos, self.sequence_length - n)  # last chunk may overlap earlier rows
            chunk = ids[start:start + n]
            chunk = chunk + [self.end_token_id] * (n - len(chunk))
            logits = self._run("score", chunk, start, None)[0]
            rows.append(logits[pos - start:pos - start + real])
            pos += real
        return np.concatenate(rows, axis=0)
