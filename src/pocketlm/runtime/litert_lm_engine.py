"""The second engine: Google's LiteRT-LM (``pip install 'pocketlm[litert-lm]'``).

``pocketlm generate --engine litert-lm`` runs a ``.litertlm`` bundle through
``litert_lm.Engine`` on the CPU, with its own tokenizer, start token, stop tokens and sampler,
so what it prints is what an app embedding LiteRT-LM would show. Its XNNPACK weight cache
goes into pocketlm's cache folder (``POCKETLM_CACHE``), never beside the model. The Python
API gives text, not token ids; it feeds the prompt as it is (no prompt template).

LiteRT-LM is C++ and loads the bundle in this process: a corrupt or hostile bundle can crash
it. Callers that load files they did not make check them first in a child process with
:func:`pocketlm.runtime.guard.verify_in_child` (``engine="litert-lm"``), as ``pocketlm
generate`` and ``pocketlm bench`` do.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from ..config import cache_root
from ..errors import ContractError, ModelFileError, first_line
from .bundle import is_bundle, read_sections
from .kvcache import native_stderr_to, quiet_native_stderr

ENGINE = "litert-lm"


@dataclass
class Sampling:
    """LiteRT-LM's sampler settings; ``temperature == 0`` is greedy (top-k 1)."""

    temperature: float = 0.0
    top_k: int = 0  # 0: no limit
    top_p: float = 1.0
    seed: int | None = None


def engine_cache_dir(path: Path) -> Path:
    """The folder LiteRT-LM keeps this bundle's XNNPACK cache in (one per bundle path)."""
    where = hashlib.sha256(str(path.resolve()).encode()).hexdigest()[:16]
    folder = cache_root() / "litert-lm" / where
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def _import():
    try:
        import litert_lm
    except ImportError:
        raise ContractError("--engine litert-lm needs LiteRT-LM: pip install "
                            "'pocketlm[litert-lm]' (or litert-lm-api)") from None
    return litert_lm


def check_bundle(path: str | Path) -> Path:
    """``path`` if LiteRT-LM can be asked to load it: LiteRT-LM is installed and the file is a
    ``.litertlm`` bundle whose sections lie inside it (read without LiteRT-LM). Raises
    :class:`ModelFileError` for a file that is not a bundle or is truncated, and
    :class:`ContractError` when LiteRT-LM is missing (one line each)."""
    p = Path(path)
    if not is_bundle(p):
        raise ModelFileError(f"{p} is not a .litertlm bundle: LiteRT-LM runs bundles "
                             "(pocketlm convert --format litertlm writes one)")
    read_sections(p)  # a cut or garbled header: our message, not LiteRT-LM's (or its crash)
    _import()
    return p


@contextlib.contextmanager
def _native_log(into: list[str]) -> Iterator[None]:
    """Keep LiteRT-LM's native chatter on fd 2 off the terminal (unless POCKETLM_VERBOSE),
    collecting its end in ``into``: the exception LiteRT-LM raises only says "Failed to
    create LiteRT-LM engine", the log says why."""
    with tempfile.TemporaryFile() as log:
        try:
            with native_stderr_to(log.fileno()):
                yield
        finally:
            size = log.seek(0, os.SEEK_END)
            log.seek(max(0, size - (256 << 10)))
            into.append(log.read().decode("utf-8", "replace"))


_WHERE = re.compile(r"ERROR: \[[^\]]*\]")  # a source location in LiteRT-LM's status chain
_LOG_LINE = re.compile(r"^([IWEF]\d{4} |INFO: |WARNING: |VERBOSE: )")


def native_reason(log: str) -> str | None:
    """Why LiteRT-LM refused to create an engine, in one line, from its log: the status
    chain after "Failed to create engine:" without source locations (``INVALID_ARGUMENT:
    Failed to load model from buffer: Invalid flatbuffer``); None when the log has none."""
    start = log.rfind("Failed to create engine: ")
    if start < 0:
        return None
    parts: list[str] = []
    for line in log[start + len("Failed to create engine: "):].splitlines():
        if line.startswith("=== Source Location Trace") or (parts and _LOG_LINE.match(line)):
            break
        text = _WHERE.sub("", line.strip().lstrip("\u2514").strip()).strip().rstrip(":")
        if text:
            parts.append(text.strip())
    return ": ".join(parts)[:300] or None


class LiteRTLMEngine:
    """One ``.litertlm`` bundle loaded in LiteRT-LM. Raises :class:`ContractError` (one
    line) when LiteRT-LM is missing, the file is not a bundle, or LiteRT-LM refuses it."""

    kind = ENGINE

    def __init__(self, path: str | Path, num_threads: int = 2) -> None:
        self.path = check_bundle(path)
        self._lm = _import()
        if not os.environ.get("POCKETLM_VERBOSE"):
            self._lm.set_min_log_severity(self._lm.LogSeverity.ERROR)
        log: list[str] = []
        try:
            with _native_log(log):
                self._engine = self._lm.Engine(
                    str(self.path), backend=self._lm.Backend.CPU(thread_count=num_threads),
                    cache_dir=str(engine_cache_dir(self.path)))
        except (RuntimeError, ValueError) as exc:
            why = native_reason("".join(log)) or first_line(exc)
            raise ContractError(f"LiteRT-LM cannot load {self.path}: {why}") from None

    def stream(self, prompt: str, max_new_tokens: int,
               sampling: Sampling = Sampling()) -> Iterator[str]:
        """The continuation of ``prompt``, piece by piece, up to ``max_new_tokens`` tokens or
        a stop token. Raises :class:`ContractError` when LiteRT-LM fails."""
        lm = self._lm
        if sampling.temperature <= 0:
            config = lm.SamplerConfig(top_k=1, temperature=1.0, seed=sampling.seed or 0)
        else:
            # LiteRT-LM reads an unset top_k as 1 (greedy): "no limit" is the vocabulary.
            top_k = sampling.top_k or self._vocabulary_size()
            config = lm.SamplerConfig(top_k=top_k, top_p=sampling.top_p,
                                      temperature=sampling.temperature,
                                      seed=sampling.seed or 0)
        session = self._engine.create_session(apply_prompt_template=False,
                                              sampler_config=config,
                                              max_output_tokens=max_new_tokens)
        try:
            try:
                with quiet_native_stderr():
                    session.run_prefill([prompt])
            except RuntimeError as exc:
                raise ContractError(f"LiteRT-LM failed on the prompt: {first_line(exc)}"
                                    ) from None
            try:
                for response in session.run_decode_async():
                    for text in response.texts:
                        yield text
            except RuntimeError as exc:
                raise ContractError(f"LiteRT-LM failed while decoding: {first_line(exc)}"
                                    ) from None
        finally:
            session.close()  # sessions before the engine

    def _vocabulary_size(self) -> int:
        """The vocabulary of a pocketlm bundle (its metadata says); other bundles need an
        explicit top-k to sample."""
        from .loader import inspect_model

        try:
            info = inspect_model(self.path).contract
        except ModelFileError:
            info = None
        if info is None or not int(info.vocabulary_size or 0):
            raise ContractError(f"{self.path} does not say its vocabulary size: give --top-k "
                                "to sample with --engine litert-lm")
        return int(info.vocabulary_size)

    def generate(self, prompt: str, max_new_tokens: int,
                 sampling: Sampling = Sampling()) -> str:
        return "".join(self.stream(prompt, max_new_tokens, sampling))

    def close(self) -> None:
        engine, self._engine = getattr(self, "_engine", None), None
        if engine is not None:
            engine.close()

    def __enter__(self) -> LiteRTLMEngine:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
