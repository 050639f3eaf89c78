"""The completion loop shared by every kind of model: window the prompt, prefill, decode.

A model only has to provide ``tokenizer``, ``end_token_id``, ``sequence_length``,
``start(ids) -> logits`` and ``step(token) -> logits``; this module does the rest.
"""

from __future__ import annotations

import re
import time
import weakref
from dataclasses import dataclass, field
from typing import Iterator, Protocol

import numpy as np

from ..config import ContextUnit, GenerationConfig
from ..errors import PromptError
from ..tokenizers import Tokenizer
from .sampling import Sampler, TokenLogprob, token_logprob
from .stops import StopMatcher

_WORD = re.compile(r"\S+")
_SPACE_BEFORE_WORD = re.compile(r"\s(?=\S)")
# First guess of characters per token when cutting a long prompt before tokenizing it;
# English BPE averages about 4. The guess only sets where the search starts: a text that
# needs more characters per token is re-cut with twice as many, up to the safe bound.
_GUESS_CHARS_PER_TOKEN = 4
# Characters kept in front of the bound for the word the cut lands in.
_CUT_MARGIN_CHARS = 64
# A cap on the characters tokenized, whatever the window: callers that do not know the
# model's window pass a huge one (the app passes 2**20), and no model here needs more.
MAX_PROMPT_CHARS_KEPT = 64_000
_longest_token: "weakref.WeakKeyDictionary[object, int]" = weakref.WeakKeyDictionary()


class StepModel(Protocol):
    tokenizer: Tokenizer
    end_token_id: int
    sequence_length: int

    def start(self, ids: list[int]) -> np.ndarray: ...

    def step(self, token: int) -> np.ndarray: ...


def last_words(text: str, n: int) -> str:
    """The last ``n`` words of ``text`` (words are runs of non-space characters), with the
    original spacing and punctuation between the kept words preserved.

    Reads only the end of ``text``: the work is bounded by the length of the kept words, not
    of the whole text. Raises ValueError when ``n`` < 1.
    """
    if n < 1:
        raise ValueError("n must be >= 1")
    size = n * 16 + _CUT_MARGIN_CHARS
    while True:
        start = max(0, len(text) - size)
        tail = text[start:]
        starts = [m.start() for m in _WORD.finditer(tail)]
        if start == 0:
            return tail.lstrip() if len(starts) <= n else tail[starts[-n]:]
        # The first match may be the end of a word the cut went through: only words after
        # it are known whole, so more than n are needed.
        if len(starts) > n:
            return tail[starts[-n]:]
        size *= 2


def _longest_token_bytes(tokenizer: Tokenizer) -> int:
    """Bytes in the tokenizer's longest token: no token covers more characters than this."""
    try:
        return _longest_token[tokenizer]
    except (KeyError, TypeError):
        pass
    longest = max((len(b) for b in tokenizer.token_bytes), default=1) or 1
    try:
        _longest_token[tokenizer] = longest
    except TypeError:  # not weak-referenceable: compute it each time (50k lengths, ~2 ms)
        pass
    return longest


def _word_aligned(tail: str) -> str:
    """``tail`` from its first space that precedes a non-space, so that the cut falls between
    words and the tail tokenizes as it does inside the whole text (BPE pre-tokenizers split
    before such a space). Looks only in the first ``_CUT_MARGIN_CHARS`` characters (the margin
    the cut keeps for this), and leaves ``tail`` unchanged if there is none there."""
    m = _SPACE_BEFORE_WORD.search(tail, 0, _CUT_MARGIN_CHARS)
    return tail[m.start():] if m else tail


def last_tokens(tokenizer: Tokenizer, text: str, n: int) -> tuple[list[int], bool]:
    """The token ids of the end of ``text``: at most ``n`` of them, and whether any of the
    text was left out. Tokenizes only the end of the text.

    No token covers more characters than its bytes, so the last ``n`` tokens lie within the
    last ``n * longest_token_bytes`` characters (plus a margin for the word the cut falls
    in): that bounds the work, whatever the length of ``text`` (and it is never more than
    ``MAX_PROMPT_CHARS_KEPT``). The search starts smaller (about 4 characters a token) and
    doubles while the tokenized tail is too short, so the characters tokenized are at most
    twice the bound and usually a few times ``n``.
    """
    longest = _longest_token_bytes(tokenizer)
    bound = min(n * longest + longest + _CUT_MARGIN_CHARS, MAX_PROMPT_CHARS_KEPT)
    size = min(bound, n * _GUESS_CHARS_PER_TOKEN + _CUT_MARGIN_CHARS)
    while True:
        if size >= len(text):
            ids = tokenizer.encode(text)
            return ids[-n:], len(ids) > n
        ids = tokenizer.encode(_word_aligned(text[-size:]))
        # More than n: the first token (maybe part of a cut word) is not among those kept.
        if len(ids) > n or size >= bound:
            return ids[-n:], True
        size = min(2 * size, bound)


def _is_continuation(tokenizer: Tokenizer, token: int) -> bool:
    return tokenizer.starts_inside_character(token)


def _as_text(prompt: str | bytes) -> str:
    if isinstance(prompt, (bytes, bytearray)):
        try:
            return bytes(prompt).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise PromptError(f"the prompt is not valid UTF-8 (byte {exc.start})") from None
    if not isinstance(prompt, str):
        raise PromptError(f"the prompt must be text, not {type(prompt).__name__}")
    # A str can still hold a lone surrogate (JSON's "\ud800" escape decodes to one), which
    # UTF-8 cannot encode: refuse it here rather than fail later inside the tokenizer.
    try:
        prompt.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise PromptError(f"the prompt is not valid Unicode (a lone surrogate at "
                          f"character {exc.start})") from None
    return prompt


@dataclass
class PreparedPrompt:
    text: str  # the text actually fed (after the context window)
    ids: list[int]
    truncated: bool  # whether tokens were dropped to fit the model's window
    windowed: bool = False  # whether the context window left out part of the prompt
    # Prepended to ``ids`` when fed (KerasHub's generate does so for models with one).
    start_token_id: int | None = None

    @property
    def fed_ids(self) -> list[int]:
        """What the model is given: the start token (if any), then the prompt's tokens."""
        return ([self.start_token_id] if self.start_token_id is not None else []) + self.ids


def prepare_prompt(tokenizer: Tokenizer, prompt: str | bytes, cfg: GenerationConfig,
                   sequence_length: int) -> PreparedPrompt:
    """Apply the context window and fit the prompt into the model's cache.

    ``prompt``: text, or UTF-8 bytes. The kept part is the end of the prompt: at most
    ``cfg.context_window`` words or tokens, and at most ``max(sequence_length -
    max_new_tokens, sequence_length // 2)`` tokens, so the completion has room. Every cut
    starts on a whole character. The work is bounded by the kept window, not by the length
    of the prompt: only its end is tokenized (see :func:`last_tokens`).

    Raises PromptError for an empty prompt, bytes that are not UTF-8, a lone surrogate, or
    a window that keeps no whole character.
    """
    text = _as_text(prompt)
    if not text or not text.strip():
        raise PromptError("the prompt is empty: type some text to complete")
    windowed = False
    window_tokens = None
    if cfg.context_window and cfg.context_unit is ContextUnit.WORDS:
        kept = last_words(text, cfg.context_window)
        windowed = len(kept) < len(text.lstrip())
        text = kept
    elif cfg.context_window:
        window_tokens = cfg.context_window
    # Leave room for the completion, but never squeeze the prompt below half the window.
    budget = max(sequence_length - cfg.max_new_tokens, sequence_length // 2, 1)
    limit = min(budget, window_tokens) if window_tokens else budget
    ids, dropped = last_tokens(tokenizer, text, limit)
    by_window = dropped and window_tokens is not None and window_tokens <= budget
    truncated = dropped and not by_window
    windowed = windowed or by_window
    # A cut between tokens can split a multi-byte character (an emoji is 2-3 byte tokens):
    # drop the orphaned tail bytes, so that the prompt starts on a whole character.
    first = 0
    while first < len(ids) and _is_continuation(tokenizer, ids[first]):
        first += 1
    if ids and first == len(ids):
        raise PromptError(f"the context window ({limit} tokens) holds no whole character of "
                          "the prompt's end: make it larger")
    ids = ids[first:]
    if not ids:
        raise PromptError("the prompt has no tokens after applying the context window")
    return PreparedPrompt(tokenizer.decode(ids), ids, truncated, windowed)


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

    # The generation itself, run by iterating this object (once).
    _pieces: Iterator[str] | None = field(default=None, repr=False, compare=False)

    def __iter__(self) -> Iterator[str]:
        """The text pieces, as the tokens are generated. A second iteration yields nothing:
        the completion has been generated (read ``text``, ``token_ids`` and the timings)."""
        pieces, self._pieces = self._pieces, None
        return pieces if pieces is not None else iter(())

    @property
    def tokens_per_second(self) -> float:
        """Decode speed: tokens after the first, over the time after the first."""
        n = len(self.token_ids) - 1
        dt = self.seconds - self.time_to_first_token
        return n / dt if n > 0 and dt > 0 else 0.0


def stream(model: StepModel, prompt: str | bytes, cfg: GenerationConfig) -> Completion:
    """Start a completion: the prompt is prepared now, the tokens as the result is iterated.

    Iterating the returned :class:`Completion` yields text pieces that never end inside a
    multi-byte UTF-8 character and never show a stop sequence (or text that may still turn
    out to start one); afterwards it holds the text, token ids, stop reason and timings.
    Raises :class:`PromptError` at once for a prompt that cannot be used, and while
    iterating for a ``logit_bias`` naming tokens the model lacks.
    """
    # KerasHub's generate prepends the tokenizer's start token (when the model was trained
    # with one); the model file says which token, so completions match the Keras model's.
    start = getattr(model, "start_token_id", None)
    prepared = prepare_prompt(model.tokenizer, prompt, cfg,
                              model.sequence_length - (start is not None))
    prepared.start_token_id = None if start is None else int(start)
    done = Completion(prepared)
    sampler = Sampler(cfg, prepared.fed_ids)
    done._pieces = _generate(model, cfg, done, sampler)
    return done


def _generate(model: StepModel, cfg: GenerationConfig, done: Completion,
              sampler: Sampler) -> Iterator[str]:
    """The decode loop behind :func:`stream`: fills ``done`` as it yields pieces."""
    prepared = done.prompt
    stop_ids = getattr(model, "stop_token_ids", None) or frozenset([model.end_token_id])
    streamer = model.tokenizer.streamer(continuation=True)  # the completion follows the prompt
    stops = StopMatcher(cfg.stop)
    t0 = time.perf_counter()
    if cfg.max_new_tokens == 0:
        done.stop_reason = "max_new_tokens"
        return
    logits = model.start(prepared.fed_ids)
    position = len(prepared.fed_ids)
    pieces: list[str] = []
    decoded = 0  # characters the streamer has given out (shown or held back)
    while True:
        token = sampler(logits)
        if not done.token_ids:
            done.time_to_first_token = time.perf_counter() - t0
        if cfg.stop_at_end_token and token in stop_ids:
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
    done = stream(model, prompt, cfg)
    for _ in done:
        pass
    return done
