"""One suggestion: generate, check it with the profanity filter as it streams, regenerate.

Runs wherever the model is (in the app, inside a worker process). It reports through
``emit(event, data)``:

* ``piece``  ``{"text", "logprobs"?}``: text to show (only complete words that passed the
  filter), with the log-probabilities of its tokens when asked for;
* ``retry``  ``{"attempt", "max_attempts"}`` (only with ``retry_events``): the attempt had
  blocked language; what was shown of it must be discarded, a new attempt starts.

Without ``retry_events`` an attempt's text is held back until the whole attempt passed the
filter, so a client that knows nothing of ``retry`` never receives withdrawn text. Returns
the outcome (a dict, see :func:`suggest`).
"""

from __future__ import annotations

import time
from typing import Any, Callable

from ..runtime.generation import (Completion, last_words, prepare_prompt,
                                  prompt_logprobs, stream)
from ..runtime.sampling import TokenLogprob
from ..safety import ProfanityFilter, StreamGuard
from .settings import SuggestRequest

Emit = Callable[[str, dict[str, Any]], None]

FINISH_REASONS = {"end_token": "stop", "stop_sequence": "stop", "max_new_tokens": "length",
                  "window_full": "length"}


def suggest(model, req: SuggestRequest, emit: Emit, cancelled: Callable[[], bool],
            flt: ProfanityFilter, token_delay: float = 0.0,
            chat: Callable[[], Any] | None = None) -> dict[str, Any]:
    """Run up to ``req.max_attempts`` attempts; return the last one's outcome.

    A chat request (``req.messages`` set) runs in the :class:`ChatSession` ``chat()``
    returns (the worker keeps one per model, so its cache serves the next request of the
    same conversation); the outcome then holds the session's cache figures.

    ``finish_reason`` is "stop" (end token or a stop sequence) or "length" (OpenAI's
    words), "content_filter" when every attempt had blocked language, or "cancelled".
    With ``echo`` the outcome's text starts with the prompt (as the model saw it).
    """
    if req.messages is None:
        chat = None  # a plain completion: no session figures in its outcome
    live = req.retry_events or not req.profanity_filter
    want_lp = req.logprobs is not None
    tok = model.tokenizer
    echo, echo_lp = "", []
    if req.echo:
        prepared = prepare_prompt(tok, req.prompt, req.generation(), model.sequence_length)
        echo = prepared.text
        if want_lp:
            echo_lp = [_lp(tok, e, 0) for e in prompt_logprobs(model, prepared.ids,
                                                                 req.logprobs or 0)]
        emit("piece", {"text": echo, **({"logprobs": echo_lp} if want_lp else {})})
    attempts = req.max_attempts
    for attempt in range(1, attempts + 1):
        if req.messages is not None:
            session = chat()
            session.set_conversation(req.messages)  # each attempt answers the same history
            done = session.send(req.prompt, req.generation(attempt))
        else:
            done = stream(model, req.prompt, req.generation(attempt))
        pieces = iter(done)
        guard: StreamGuard | None = None
        shown: list[str] = []
        held: list[dict[str, Any]] = []  # checked pieces not sent yet (not ``live``)
        lp_sent, chars = 0, 0
        blocked = False

        def show(text: str) -> None:
            nonlocal lp_sent, chars
            shown.append(text)
            chars += len(text)
            event: dict[str, Any] = {"text": text}
            if want_lp:
                upto = lp_sent
                while upto < len(done.logprobs) and done.logprobs[upto].offset < chars:
                    upto += 1
                base = len(done.prompt.text)
                event["logprobs"] = [_lp(tok, e, base) for e in done.logprobs[lp_sent:upto]]
                lp_sent = upto
            if live:
                emit("piece", event)
            else:
                held.append(event)

        for piece in pieces:
            if guard is None and req.profanity_filter:
                # The end of the prompt, so that "fu" + "ck" is caught across the seam.
                guard = StreamGuard(flt, prefix=last_words(done.prompt.text, 3))
            if cancelled():
                pieces.close()
                return _outcome(done, echo + "".join(shown), "cancelled", attempt, chat)
            out = guard.push(piece) if guard is not None else piece
            if guard is not None and guard.match is not None:
                blocked = True
                pieces.close()  # stop generating: this attempt is thrown away anyway
                break
            if out:
                show(out)
            if token_delay:
                time.sleep(token_delay)
        if not blocked and guard is not None:
            rest = guard.finish()
            blocked = guard.match is not None
            if rest and not blocked:
                show(rest)
        if not blocked:
            for event in held:
                emit("piece", event)
            reason = FINISH_REASONS.get(done.stop_reason, "stop")
            out = _outcome(done, echo + "".join(shown), reason, attempt, chat)
            if want_lp:
                base = len(done.prompt.text)
                out["logprobs"] = echo_lp + [_lp(tok, e, base) for e in done.logprobs]
            return out
        if attempt < attempts and req.retry_events:
            emit("retry", {"attempt": attempt + 1, "max_attempts": attempts})
    out = _outcome(done, echo, "content_filter", attempts, chat)
    if want_lp:
        out["logprobs"] = echo_lp
    return out


def token_text(tokenizer, token_id: int) -> str:
    """A token as text; a token holding part of a UTF-8 character is shown as its bytes
    (``bytes:\\xe2\\x80``), as OpenAI does."""
    raw = tokenizer.token_bytes[token_id]
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return "bytes:" + "".join(f"\\x{b:02x}" for b in raw)


def _lp(tokenizer, entry: TokenLogprob, base: int) -> dict[str, Any]:
    return {"token": token_text(tokenizer, entry.token_id), "logprob": entry.logprob,
            "top": {token_text(tokenizer, i): lp for i, lp in entry.top},
            "offset": base + entry.offset}


def _outcome(done: Completion, text: str, finish_reason: str, attempt: int,
             chat: Callable[[], Any] | None = None) -> dict[str, Any]:
    out = _plain_outcome(done, text, finish_reason, attempt)
    if chat is None:
        return out
    turn = chat().last_turn  # the chat prompt: start token and template included
    out.update(prompt_tokens=turn.prompt_tokens, reused_tokens=turn.reused_tokens,
               prefilled_tokens=turn.prefilled_tokens, dropped_turns=turn.dropped_turns)
    return out


def _plain_outcome(done: Completion, text: str, finish_reason: str,
                   attempt: int) -> dict[str, Any]:
    return {"text": text, "finish_reason": finish_reason, "attempts": attempt,
            "stop_reason": done.stop_reason, "prompt_text": done.prompt.text,
            "prompt_tokens": len(done.prompt.ids), "completion_tokens": len(done.token_ids),
            "time_to_first_token": done.time_to_first_token,
            "tokens_per_second": done.tokens_per_second}
