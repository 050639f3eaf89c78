"""The completion loop shared by every kind of model: window the prompt, prefill, decode.

A model only has to provide ``tokenizer``, ``end_token_id``, ``sequence_length``,
``start(ids) -> logits`` and ``step(token) -> logits``; this module does the rest.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from typing import Iterator, Protocol

import numpy as np

from ..config import ContextUnit, GenerationConfig
from ..errors import PromptError
from ..tokenizer import BPETokenizer
from .sampling import Sampler, TokenLogprob, token_logprob
from .stops import StopMatcher

_WORD = re.compile(r"\S+")
# Text longer than this is cut before tokenizing: no model here has a window anywhere near
# it, and BPE on megabytes of text would waste seconds before the window throws it away.
MAX_PROMPT_CHARS_KEPT = 64_000


class StepModel(Protocol):
    tokenizer: BPETokenizer
    end_token_id: int
    sequence_length: int

    def start(self, ids: list[int]) -> np.ndarray: ...

    def step(self, token: int) -> np.ndarray: ...


def last_words(text: str, n: int) -> str:
    """The last ``n`` words of ``text`` (words are runs of non-space characters), with the
    original spacing and punctuation between the kept words preserved."""
    if n < 1:
        raise ValueError("n must be >= 1")
    starts = [m.start() for m in _WORD.finditer(text)]
    if len(starts) <= n:
        return text.lstrip()
    return text[starts[-n]:]


@dataclass
class PreparedPrompt:
    text: str  # the text actually fed (after the context window)
    ids: list[int]
    truncated: bool  # whether tokens were dropped to fit the model's window


def prepare_prompt(tokenizer: BPETokenizer, prompt: str | bytes, cfg: GenerationConfig,
                   sequence_length: int) -> PreparedPrompt:
    """Apply the context window and fit the prompt into the model's cache."""
    if isinstance(prompt, (bytes, bytearray)):
        try:
            prompt = bytes(prompt).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise PromptError(f"the prompt is not valid UTF-8 (byte {exc.start})") from None
    elif isinstance(prompt, str):
        # A str can still hold a lone surrogate (JSON's "\ud800" escape decodes to one), which
        # UTF-8 cannot encode: refuse it here rather than fail later inside the tokenizer.
        try:
            prompt.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise PromptError(f"the prompt is not valid Unicode (a lone surrogate at "
                              f"character {exc.start})") from None
    if not prompt or not prompt.strip():
        raise PromptError("the prompt is empty: type some text to complete")
    text = prompt
    truncated = False
    if len(text) > MAX_PROMPT_CHARS_KEPT:
        text, truncated = text[-MAX_PROMPT_CHARS_KEPT:], True
    if cfg.context_window and cfg.context_unit is ContextUnit.WORDS:
        text = last_words(text, cfg.context_window)
    ids = tokenizer.encode(text)
    if cfg.context_window and cfg.context_unit is ContextUnit.TOKENS:
        ids = ids[-cfg.context_window:]
    # Leave room for the completion, but never squeeze the prompt below half the window.
    budget = max(sequence_length - cfg.max_new_tokens, sequence_length // 2, 1)
    if len(ids) > budget:
        ids, truncated = ids[-budget:], True
    if truncated:
        # Cutting tokens can split a multi-byte character: drop its orphaned tail bytes so
        # the prompt starts on a whole character.
        while ids and tokenizer.token_bytes[ids[0]][:1] and (
                tokenizer.token_bytes[ids[0]][0] & 0xC0) == 0x80:
            ids = ids[1:]
    if not ids:
        raise PromptError("the prompt has no tokens after applying the context window")
    return PreparedPrompt(tokenizer.decode(ids), ids, truncated)


@dataclass
class Completion:
    prompt: PreparedPrompt
    text: str = ""
    token_ids: list[int] = field(default_factory=list)
    stop_reason: str = ""  # "end_token", "stop_sequence", "max_new_tokens", "window_full"
    # With ``GenerationConfig.logprobs``: one entry per generated token whose text is (at
    # least partly) in ``text``; offsets count characters of ``text``.
    logprobs: list[TokenLogprob] = field(default_factory=list)
    time_to_first_token: float = 0.0
    seconds: float = 0.0

    @property
    def tokens_per_second(self) -> float:
        """Decode speed: tokens after the first, over the time after the first."""
        n = len(self.token_ids) - 1
        dt = self.seconds - self.time_to_first_token
        return n / dt if n > 0 and dt > 0 else 0.0


def stream(model: StepModel, prompt: str | bytes, cfg: GenerationConfig,
           completion: Completion | None = None) -> Iterator[str]:
    """Yield text pieces as tokens are generated; fills ``completion`` as it goes.

    Pieces never end inside a multi-byte UTF-8 character, and never show a stop sequence
    (or text that may still turn out to start one). Raises :class:`PromptError` for a
    prompt that cannot be used or a ``logit_bias`` naming tokens the model lacks.
    """
    prepared = prepare_prompt(model.tokenizer, prompt, cfg, model.sequence_length)
    done = completion if completion is not None else Completion(prepared)
    done.prompt = prepared
    sampler = Sampler(cfg, prepared.ids)
    streamer = model.tokenizer.streamer()
    stops = StopMatcher(cfg.stop)
    t0 = time.perf_counter()
    if cfg.max_new_tokens == 0:
        done.stop_reason = "max_new_tokens"
        return
    logits = model.start(prepared.ids)
    position = len(prepared.ids)
    pieces: list[str] = []
    decoded = 0  # characters the streamer has given out (shown or held back)
    while True:
        token = sampler(logits)
        if not done.token_ids:
            done.time_to_first_token = time.perf_counter() - t0
        if cfg.stop_at_end_token and token == model.end_token_id:
            done.stop_reason = "end_token"
            break
        done.token_ids.append(token)
        if cfg.logprobs is not None:
            done.logprobs.append(token_logprob(logits, token, cfg.logprobs, decoded))
        raw = streamer.push(token)
        decoded += len(raw)
        piece = stops.push(raw)
        if piece:
            pieces.append(piece)
            yield piece
        if stops.stopped:
            done.stop_reason = "stop_sequence"
            break
        if len(done.token_ids) >= cfg.max_new_tokens:
            done.stop_reason = "max_new_tokens"
            break
        if position >= model.sequence_length:
            done.stop_reason = "window_full"
            break
        logits = model.step(token)
        position += 1
    tail = stops.push(streamer.flush()) if not stops.stopped else ""
    tail += stops.finish()
    if stops.stopped:
        done.stop_reason = "stop_sequence"
    if tail:
        pieces.append(tail)
        yield tail
    done.text = "".join(pieces)
    # Tokens wholly inside a stop sequence (or after it) are not part of the text.
    done.logprobs = [lp for lp in done.logprobs if lp.offset < len(done.text)]
    done.seconds = time.perf_counter() - t0


def prompt_logprobs(model: StepModel, ids: list[int], n: int) -> list[TokenLogprob]:
    """Log-probabilities of a prompt's tokens (the first has none) with the top ``n`` at
    each position, by feeding the prompt one token at a time. Offsets count characters of
    the decoded prompt."""
    streamer = model.tokenizer.streamer()
    out: list[TokenLogprob] = []
    offset = 0
    logits = None
    for i, token in enumerate(ids):
        if logits is None:
            out.append(TokenLogprob(int(token), None, [], 0))
        else:
            out.append(token_logprob(logits, token, n, offset))
        offset += len(streamer.push(token))
        if i + 1 < len(ids):
            logits = model.start([token]) if i == 0 else model.step(token)
    return out


def complete(model: StepModel, prompt: str | bytes, cfg: GenerationConfig) -> Completion:
    """Run a whole completion and return it with its timings."""
    done = Completion(PreparedPrompt("", [], False))
    for _ in stream(model, prompt, cfg, done):
        pass
    return done
