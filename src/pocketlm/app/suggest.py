"""One suggestion: generate, check it with the profanity filter as it streams, regenerate.

Runs wherever the model is (in the app, inside a worker process). It reports through
``emit(event, data)``:

* ``piece``  ``{"text"}``: text to show (only complete words that passed the filter);
* ``retry``  ``{"attempt", "max_attempts"}``: the attempt had blocked language; what was
  shown of it must be discarded, a new attempt starts;

and returns the outcome (a dict, see :func:`suggest`).
"""

from __future__ import annotations

import time
from typing import Any, Callable

from ..runtime.generation import Completion, PreparedPrompt, last_words, stream
from ..safety import ProfanityFilter, StreamGuard
from .settings import SuggestRequest

Emit = Callable[[str, dict[str, Any]], None]

FINISH_REASONS = {"end_token": "stop", "max_new_tokens": "length", "window_full": "length"}


def suggest(model, req: SuggestRequest, emit: Emit, cancelled: Callable[[], bool],
            flt: ProfanityFilter, token_delay: float = 0.0) -> dict[str, Any]:
    """Run up to ``req.max_attempts`` attempts; return the last one's outcome.

    ``finish_reason`` is "stop" or "length" (OpenAI's words), "content_filter" when every
    attempt had blocked language, or "cancelled".
    """
    attempts = req.max_attempts
    for attempt in range(1, attempts + 1):
        done = Completion(PreparedPrompt("", [], False))
        pieces = stream(model, req.prompt, req.generation(attempt), done)
        guard: StreamGuard | None = None
        shown: list[str] = []
        blocked = False
        for piece in pieces:
            if guard is None and req.profanity_filter:
                # The end of the prompt, so that "fu" + "ck" is caught across the seam.
                guard = StreamGuard(flt, prefix=last_words(done.prompt.text, 3))
            if cancelled():
                pieces.close()
                return _outcome(done, "".join(shown), "cancelled", attempt)
            out = guard.push(piece) if guard is not None else piece
            if guard is not None and guard.match is not None:
                blocked = True
                pieces.close()  # stop generating: this attempt is thrown away anyway
                break
            if out:
                shown.append(out)
                emit("piece", {"text": out})
            if token_delay:
                time.sleep(token_delay)
        if not blocked and guard is not None:
            rest = guard.finish()
            blocked = guard.match is not None
            if rest and not blocked:
                shown.append(rest)
                emit("piece", {"text": rest})
        if not blocked:
            reason = FINISH_REASONS.get(done.stop_reason, "stop")
            return _outcome(done, "".join(shown), reason, attempt)
        if attempt < attempts:
            emit("retry", {"attempt": attempt + 1, "max_attempts": attempts})
    return _outcome(done, "", "content_filter", attempts)


def _outcome(done: Completion, text: str, finish_reason: str, attempt: int) -> dict[str, Any]:
    return {"text": text, "finish_reason": finish_reason, "attempts": attempt,
            "stop_reason": done.stop_reason, "prompt_text": done.prompt.text,
            "prompt_tokens": len(done.prompt.ids), "completion_tokens": len(done.token_ids),
            "time_to_first_token": done.time_to_first_token,
            "tokens_per_second": done.tokens_per_second}
