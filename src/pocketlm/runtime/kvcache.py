"""Running pocketlm's own KV-cache .tflite files with LiteRT.

Speed comes from not moving the cache. With the CompiledModel API the caches live in LiteRT
tensor buffers that never cross into Python: a decode step copies a few ints in and the
logits out. (Copying an 18 MB cache in and out through set_tensor/get_tensor cost 3-5 ms a
step on GPT-2 small: ../shared/notes.) Contract-v2 files bind one buffer per cache as input
AND output, as LiteRT-LM does, so DYNAMIC_UPDATE_SLICE updates it in place; v1 files (and
``POCKETLM_CACHE_BUFFERS=2``, kept to measure the difference) read one set of buffers and
write another, the two swapping roles after each call. docs/benchmarks.md has the numbers.
"""

from __future__ import annotations

import atexit
import contextlib
import hashlib
import io
import json
import os
import sys
from pathlib import Path
from typing import Iterator

import numpy as np

from ..config import Quantization, cache_root
from ..contract import (DECODE, INPUT_POS, LAST_INDEX, LOGITS, METADATA_KEY, SCORE,
                        TOKENIZER_METADATA_KEY, TOKENS, ContractInfo, cache_names)
from ..errors import ContractError, RuntimeFailure, first_line
from ..tokenizers import Tokenizer, tokenizer_from_bytes
from .contract_check import validate_contract

def contract_from_metadata(metadata: dict[str, bytes]) -> ContractInfo | None:
    blob = metadata.get(METADATA_KEY)
    if blob is None:
        return None
    try:
        return ContractInfo.from_dict(json.loads(blob.decode("utf-8")))
    except (ValueError, TypeError) as exc:
        raise ContractError(f"the model's pocketlm metadata is corrupt: {exc}") from None


@contextlib.contextmanager
def native_stderr_to(fd: int) -> Iterator[None]:
    """Point fd 2 (where LiteRT's C++ logs) and ``sys.stderr`` at ``fd`` for the block,
    unless POCKETLM_VERBOSE is set. Errors still arrive as Python exceptions."""
    if os.environ.get("POCKETLM_VERBOSE"):
        yield
        return
    sys.stderr.flush()
    saved = os.dup(2)
    python_stderr = sys.stderr
    try:
        os.dup2(fd, 2)
        sys.stderr = io.StringIO()  # some of the chatter is routed through sys.stderr
        yield
    finally:
        sys.stderr = python_stderr
        os.dup2(saved, 2)
        os.close(saved)


@contextlib.contextmanager
def quiet_native_stderr() -> Iterator[None]:
    """Silence LiteRT's native INFO/WARNING chatter on fd 2 (plugin discovery, accelerator
    registry), unless POCKETLM_VERBOSE is set."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        with native_stderr_to(devnull):
            yield
    finally:
        os.close(devnull)


_ENVIRONMENT = None


def weight_cache_path(model_path: Path) -> str:
    """Where XNNPACK keeps this model's packed weights ("" disables the cache).

    With the cache, XNNPACK packs the weights once and every signature (and every later load)
    maps the same packed copy: on GPT-2 small int8 it took peak RSS from ~760 MB to ~300 MB
    and load from ~1 s to ~0.25 s. One folder per model path; the file name carries the
    model's size and mtime, and older versions in the folder are removed.
    """
    if os.environ.get("POCKETLM_WEIGHT_CACHE", "1") == "0":
        return ""
    st = model_path.stat()
    where = hashlib.sha256(str(model_path.resolve()).encode()).hexdigest()[:16]
    folder = cache_root() / "xnnpack" / where
    name = f"{model_path.stem[:40]}-{st.st_size}-{st.st_mtime_ns}.xnnpack"
    try:
        folder.mkdir(parents=True, exist_ok=True)
        for old in folder.glob("*.xnnpack"):
            if old.name != name:
                old.unlink(missing_ok=True)  # packed weights of an older version of the file
        if not os.access(folder, os.W_OK):
            return ""
    except OSError:
        return ""  # a read-only home: run without the cache
    return str(folder / name)


def _compiled_model(path: Path, num_threads: int, weight_cache: str):
    from ai_edge_litert.compiled_model import CompiledModel
    from ai_edge_litert.cpu_options import CpuOptions
    from ai_edge_litert.environment import Environment
    from ai_edge_litert.hardware_accelerator import HardwareAccelerator
    from ai_edge_litert.options import Options

    global _ENVIRONMENT
    # XNNPACK's flags stay LiteRT's defaults: LiteRT-LM's choice (defaults plus
    # ENABLE_LATEST_OPERATORS, 0x40) and three other sets measured no different here
    # (docs/benchmarks.md); POCKETLM_XNNPACK_FLAGS overrides them for such measurements.
    flags = os.environ.get("POCKETLM_XNNPACK_FLAGS")
    cpu = CpuOptions(num_threads=num_threads, xnnpack_weight_cache_path=weight_cache,
                     xnnpack_flags=int(flags, 0) if flags else None)
    options = Options(hardware_accelerators=HardwareAccelerator.CPU, cpu_options=cpu)
    try:
        if _ENVIRONMENT is None:
            # One environment per process; CPU only, so no vendor NPU plugins to probe.
            # (Plugin paths point at this package's folder, which holds no plugins.)
            import ai_edge_litert
            here = os.path.dirname(os.path.abspath(__file__))
            _ENVIRONMENT = Environment.create(
                runtime_path=os.path.dirname(ai_edge_litert.__file__),
                compiler_plugin_path=here, dispatch_library_path=here)
            if not os.environ.get("POCKETLM_VERBOSE"):
                # LiteRT logs again when its objects are destroyed at interpreter exit.
                atexit.register(lambda: os.dup2(os.open(os.devnull, os.O_WRONLY), 2))
        return CompiledModel.from_file(str(path), environment=_ENVIRONMENT, options=options)
    except (ValueError, RuntimeError) as exc:
        raise ContractError(f"LiteRT cannot load {path}: {first_line(exc)}")


class _Signature:
    """One signature with its LiteRT buffers bound for both cache directions (the same set
    twice when the cache is updated in place)."""

    def __init__(self, model, name: str, caches: tuple[dict, dict]) -> None:
        details = model.get_input_tensor_details(name)
        out_details = model.get_output_tensor_details(name)
        self.name = name
        self.has_logits = LOGITS in out_details
        self.logits_shape = tuple(int(x) for x in out_details[LOGITS]["shape"]) \
            if self.has_logits else ()
        self.logits_count = int(np.prod(self.logits_shape)) if self.has_logits else 0
        self.has_last_index = LAST_INDEX in details
        self.positions = int(details[INPUT_POS]["shape"][0])  # 1 (v1) or T (v2)
        self.tokens = model.create_input_buffer_by_name(name, TOKENS)
        self.input_pos = model.create_input_buffer_by_name(name, INPUT_POS)
        small = {TOKENS: self.tokens, INPUT_POS: self.input_pos}
        if self.has_last_index:
            self.last_index = model.create_input_buffer_by_name(name, LAST_INDEX)
            small[LAST_INDEX] = self.last_index
        head = {LOGITS: model.create_output_buffer_by_name(name, LOGITS)} \
            if self.has_logits else {}
        self.logits = head.get(LOGITS)
        a, b = caches
        # Direction 0 reads set A and writes set B; direction 1 the other way round.
        self.inputs = ({**small, **a}, {**small, **b})
        self.outputs = ({**head, **b}, {**head, **a})


class KVCacheModel:
    """A model with ``decode``/``prefill*``/``score`` signatures and per-layer K/V caches."""

    kind = "pocketlm-kv-cache"

    def __init__(self, path: Path, info: ContractInfo, metadata: dict[str, bytes],
                 tokenizer: Tokenizer | None = None, num_threads: int = 2) -> None:
        self.path = path
        self.info = info
        if tokenizer is None:
            blob = metadata.get(TOKENIZER_METADATA_KEY)
            if blob is None:
                raise ContractError(f"{path} carries no tokenizer; pass one with --tokenizer")
            tokenizer = tokenizer_from_bytes(blob)
        validate_contract(path, info)
        if tokenizer.vocabulary_size > int(info.vocabulary_size):
            raise ContractError(f"the tokenizer has {tokenizer.vocabulary_size} tokens but "
                                f"{path} only {info.vocabulary_size}")
        self.tokenizer = tokenizer
        self.end_token_id = int(info.end_token_id)
        self.stop_token_ids = frozenset(int(t) for t in info.stop_token_ids)
        self.start_token_id = info.start_token_id if info.add_start_token else None
        self.sequence_length = int(info.sequence_length)
        try:
            self.quantization = Quantization.parse(info.quantization)
        except ValueError:
            raise ContractError(f"{path}: unknown quantization {info.quantization!r}") from None
        cache = weight_cache_path(path) if self.quantization.xnnpack_weight_cache else ""
        try:
            with quiet_native_stderr():  # LiteRT sets up its accelerators here, chattily
                try:
                    self._setup(path, info, num_threads, cache)
                except (RuntimeError, ValueError):
                    if not cache:
                        raise
                    # A damaged packed-weights file (say, from a killed process) must not
                    # make a good model unusable: drop it and load without the cache.
                    Path(cache).unlink(missing_ok=True)
                    self._setup(path, info, num_threads, "")
        except (RuntimeError, ValueError) as exc:
            lines = [x.strip("└ ") for x in str(exc).strip().splitlines() if x.strip()]
            raise ContractError(f"LiteRT cannot prepare {path}: {lines[-1] if lines else exc}"
                                ) from None
        self._chunks = sorted(info.prefill.items(), key=lambda kv: -kv[1])  # (name, tokens)
        self._direction = 0  # which cache set holds the current cache
        self._pos = 0
        self._sequence = 0  # counts refills from position 0 (start, score)

    def _setup(self, path: Path, info: ContractInfo, num_threads: int, cache: str) -> None:
        self._model = _compiled_model(path, num_threads, cache)
        sigs = self._model.get_signature_list()
        missing = [n for n in info.prefill if n not in sigs]
        if missing:
            raise ContractError(f"{path} says it has signatures {missing} but does not")
        self._cache_names = cache_names(int(info.num_layers))
        # v2 names each cache's input and output alike, so one buffer can serve both (the
        # update happens in place, as in LiteRT-LM); v1 files swap two sets.
        self.in_place = info.contract_version >= 2 and os.environ.get(
            "POCKETLM_CACHE_BUFFERS", "1") != "2"
        caches = tuple({n: self._model.create_input_buffer_by_name(DECODE, n)
                        for n in self._cache_names} for _ in range(1 if self.in_place else 2))
        if self.in_place:
            caches = (caches[0], caches[0])
        # New buffers hold whatever was in memory; a NaN there would survive the mask
        # (0 * NaN in probs @ V), so both sets start zeroed, once.
        shape = self._model.get_input_tensor_details(DECODE)[self._cache_names[0]]["shape"]
        self._zeros = np.zeros(shape, np.float32)
        self._cache_sets = caches
        for cache_set in caches[:1] if self.in_place else caches:
            self._clear(cache_set)
        self._sigs = {name: _Signature(self._model, name, caches)
                      for name in sigs if name in info.prefill or name == SCORE}
        # Warm up now: XNNPACK packs the weights on the first run, which belongs to loading,
        # not to the first token; and a file that cannot run fails here, not mid-answer.
        decode = self._sigs[DECODE]
        decode.tokens.write(np.zeros([1, 1], np.int32))  # new buffers hold garbage
        decode.input_pos.write(np.zeros([1], np.int32))
        if decode.has_last_index:
            decode.last_index.write(np.zeros([1], np.int32))
        self._model.run_by_name(DECODE, decode.inputs[0], decode.outputs[0])

    def _clear(self, cache_set: dict) -> None:
        for buf in cache_set.values():
            buf.write(self._zeros)

    def _fresh_cache(self) -> None:
        """Start a sequence. In float and dynamic modes the mask gives stale positions exactly
        zero weight, so nothing needs clearing; with full-int8 the masked scores are only
        clamped, stale values would leak in, and each sequence starts from zeros."""
        if self.quantization.quantizes_attention_scores:
            self._clear(self._cache_sets[self._direction])

    # -- low level ------------------------------------------------------------------------
    def _run(self, name: str, tokens: list[int], start: int,
             last: int | None) -> np.ndarray | None:
        """Run signature ``name`` on ``tokens`` placed from ``start``; its logits, if any."""
        sig = self._sigs[name]
        sig.tokens.write(np.asarray(tokens, np.int32))
        sig.input_pos.write(np.arange(start, start + sig.positions, dtype=np.int32))
        if sig.has_last_index:
            sig.last_index.write(np.asarray([0 if last is None else last], np.int32))
        d = self._direction
        try:
            self._model.run_by_name(name, sig.inputs[d], sig.outputs[d])
        except (RuntimeError, ValueError) as exc:
            raise RuntimeFailure(f"the interpreter failed in {name}: {exc}") from None
        self._direction = 1 - d
        if not sig.has_logits:
            return None
        return sig.logits.read(sig.logits_count, np.float32).reshape(sig.logits_shape)

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
        """Fill the cache with ``ids`` from position 0; return the last token's logits.

        Old cache contents are harmless (see :meth:`_fresh_cache`): the causal mask hides
        every position after the one being written, and each is overwritten before it is read.
        """
        if not ids:
            raise ValueError("start() needs at least one token")
        if len(ids) > self.sequence_length:
            raise ValueError(f"{len(ids)} tokens do not fit a {self.sequence_length}-token cache")
        self._fresh_cache()
        self._sequence += 1
        return self._fill(ids, 0)

    @property
    def position(self) -> int:
        """Tokens in the cache: where the next prefill or decode step writes."""
        return self._pos

    @property
    def sequence(self) -> int:
        """Changes whenever the cache is refilled from position 0 (:meth:`start`,
        :meth:`score`): a chat session that finds it unchanged knows its tokens are still
        the cache's, whoever else holds the model."""
        return self._sequence

    def extend(self, ids: list[int], start: int | None = None) -> np.ndarray:
        """Prefill ``ids`` at positions ``start..`` (default: :attr:`position`), keeping the
        cache before ``start``; return the last token's logits, shape (vocab,).

        The chat session's cache reuse: a new turn prefills only what follows the part of
        the conversation already in the cache. Positions from ``start`` on are forgotten
        (the causal mask hides them until they are overwritten, as in :meth:`start`).
        Raises ValueError for no ids, ``start`` outside ``0..position``, or too many ids.
        """
        at = self._pos if start is None else int(start)
        if not ids:
            raise ValueError("extend() needs at least one token")
        if not 0 <= at <= self._pos:
            raise ValueError(f"extend() can start at 0..{self._pos}, not {at}")
        if at == 0:
            return self.start(ids)
        if at + len(ids) > self.sequence_length:
            raise ValueError(f"{at + len(ids)} tokens do not fit a {self.sequence_length}-token "
                             "cache")
        return self._fill(ids, at)

    def _fill(self, ids: list[int], at: int) -> np.ndarray:
        """Write ``ids`` into the cache from position ``at``; the last token's logits."""
        if self.info.contract_version >= 2:
            # As LiteRT-LM does: the prefills fill the cache with all but the last token
            # (they return no logits); decode runs the last one and gives its logits.
            self._prefill(ids[:-1], at)
            return self.step(ids[-1])
        pos, logits = at, None  # version 1: every chunk returns its last real row's logits
        while pos < at + len(ids):
            name, t = self._plan(pos, at + len(ids) - pos)
            chunk = ids[pos - at:pos - at + t]
            real = len(chunk)
            chunk = chunk + [self.end_token_id] * (t - real)  # padding is overwritten later
            logits = self._run(name, chunk, pos, real - 1)
            pos += real
        self._pos = pos
        return np.asarray(logits).reshape(-1)

    def _prefill(self, ids: list[int], start: int = 0) -> None:
        """Write ``ids`` into the cache from position ``start`` (v2 prefills: no logits).
        An ``extend(ids)`` on v2 is ``_prefill(ids[:-1], self._pos)`` then ``step(ids[-1])``."""
        pos, done = start, 0
        while done < len(ids):
            name, t = self._plan(pos, len(ids) - done)
            chunk = ids[done:done + t]
            real = len(chunk)
            # Padding rows lie after the real ones: masked, and overwritten before read.
            self._run(name, chunk + [self.end_token_id] * (t - real), pos, None)
            pos += real
            done += real
        self._pos = pos

    def step(self, token: int) -> np.ndarray:
        if self._pos >= self.sequence_length:
            raise ValueError("the cache is full")
        logits = self._run(DECODE, [int(token)], self._pos, 0)
        self._pos += 1
        return np.asarray(logits).reshape(-1)

    def score(self, ids: list[int]) -> np.ndarray:
        """Logits after every token of ``ids`` (teacher forcing), shape (len(ids), vocab)."""
        n = int(self.info.notes.get("score_tokens", 0))
        if SCORE not in self._sigs or n < 1:
            raise ContractError(f"{self.path} has no score signature")
        if len(ids) > self.sequence_length:
            raise ValueError(f"{len(ids)} tokens do not fit a {self.sequence_length}-token cache")
        self._fresh_cache()
        self._sequence += 1
        rows = []
        pos = 0
        while pos < len(ids):
            real = len(ids[pos:pos + n])
            start = min(pos, self.sequence_length - n)  # last chunk may redo earlier rows
            chunk = ids[start:start + n]
            chunk = chunk + [self.end_token_id] * (n - len(chunk))
            logits = self._run(SCORE, chunk, start, None)[0]
            rows.append(logits[pos - start:pos - start + real])
            pos += real
        return np.concatenate(rows, axis=0)
