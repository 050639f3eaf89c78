"""``POST /v1/chat/completions``: plan a chat request and shape its responses (OpenAI's
``chat.completion`` and ``chat.completion.chunk`` objects).

The same functions as :mod:`.api` has for completions (:func:`completion_body`,
:func:`start_chunk`, :func:`chunk`, :func:`final_chunk`, :func:`usage_chunk`), so that
:mod:`.jobs` answers either kind. Extensions live under a ``pocketlm`` key: the cache's
work (``reused_tokens``: prompt tokens already in the worker's cache; ``prefilled_tokens``:
the rest; ``dropped_turns``: old turns dropped to fit the window), attempts and timings.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import replace
from typing import Any

from ..errors import PocketLMError
from ..runtime.generation import PreparedPrompt
from ..safety import ProfanityFilter
from . import request
from .api import ApiError, Plan, bad_request, resolve_model
from .catalog import ModelCatalog
from .schemas import ChatRequest
from .settings import ServerConfig

_EXTRAS = ("attempts", "stop_reason", "time_to_first_token", "tokens_per_second",
           "reused_tokens", "prefilled_tokens", "dropped_turns")


def plan_chat(body: Any, catalog: ModelCatalog, config: ServerConfig,
              flt: ProfanityFilter) -> Plan:
    """Validate everything that can be checked before the model runs: the fields, the
    messages, the model, the token budget and every user message's language. Raises
    :class:`.api.ApiError`."""
    try:
        parsed = ChatRequest.from_body(body)
    except request.RequestError as exc:
        raise bad_request(str(exc), exc.param) from None
    req = parsed.request
    entry = resolve_model(parsed.model, catalog, config)
    window = entry.contract.sequence_length if entry.contract else 0
    if window and not parsed.budget_given:
        req = replace(req, max_new_tokens=max(1, min(req.max_new_tokens, window // 2)))
    if window and req.max_new_tokens >= window:
        name = parsed.tokens_param
        raise bad_request(f"{name} must be below the model's window of {window} tokens", name)
    try:
        tokenizer = catalog.tokenizer(entry)
        vocab = int((entry.contract.model if entry.contract else {}).get(
            "vocabulary_size") or tokenizer.vocabulary_size)
    except PocketLMError as exc:
        raise ApiError(400, "model_not_compatible", str(exc), "model") from None
    bad = sorted(i for i in req.logit_bias if i >= vocab)
    if bad:
        raise bad_request(f"logit_bias names token ids the model does not have "
                          f"({', '.join(map(str, bad[:5]))}; its ids are 0 to {vocab - 1})",
                          "logit_bias")
    history = [*(req.messages or []), {"role": "user", "content": req.prompt}]
    if req.profanity_filter:
        for i, m in enumerate(history):
            matches = flt.find(m["content"]) if m["role"] == "user" else []
            if matches:
                words = ", ".join(f"\u201c{x.text}\u201d" for x in matches[:3])
                raise ApiError(422, "content_filter",
                               f"messages[{i}] contains language the profanity filter blocks "
                               f"({words}): edit it, or switch the filter off", "messages",
                               blocked=[x.text for x in matches])
    # The rendered prompt is known only in the worker (the model file holds its template).
    prepared = PreparedPrompt(req.prompt, [], False)
    return Plan(entry, req, parsed.stream, prepared, f"chatcmpl-{uuid.uuid4().hex[:24]}",
                int(time.time()), parsed.include_usage, chat=True)


def _usage(outcome: dict[str, Any]) -> dict[str, int]:
    p, c = outcome.get("prompt_tokens", 0), outcome.get("completion_tokens", 0)
    return {"prompt_tokens": p, "completion_tokens": c, "total_tokens": p + c}


def _extras(outcome: dict[str, Any]) -> dict[str, Any]:
    return {k: outcome[k] for k in _EXTRAS if k in outcome}


def _head(plan: Plan, kind: str) -> dict[str, Any]:
    return {"id": plan.id, "object": kind, "created": plan.created, "model": plan.entry.id,
            "system_fingerprint": None}


def completion_body(plan: Plan, outcome: dict[str, Any]) -> dict[str, Any]:
    return {**_head(plan, "chat.completion"),
            "choices": [{"index": 0, "message": {"role": "assistant",
                                                 "content": outcome["text"], "refusal": None},
                         "logprobs": None, "finish_reason": outcome["finish_reason"]}],
            "usage": _usage(outcome),
            "pocketlm": {"prompt_used": outcome.get("prompt_text", ""), **_extras(outcome)}}


def chunk(plan: Plan, text: str | None = None, finish_reason: str | None = None,
          logprobs: Any = None, *, delta: dict[str, Any] | None = None,
          **pocketlm: Any) -> dict[str, Any]:
    out = {**_head(plan, "chat.completion.chunk"),
           "choices": [{"index": 0, "delta": delta if delta is not None else (
               {"content": text} if text else {}),
               "logprobs": None, "finish_reason": finish_reason}]}
    if plan.include_usage:
        out["usage"] = None  # OpenAI: every chunk but the last has a null usage
    if pocketlm:
        out["pocketlm"] = pocketlm
    return out


def start_chunk(plan: Plan) -> dict[str, Any]:
    return chunk(plan, delta={"role": "assistant", "content": ""}, event="start")


def final_chunk(plan: Plan, outcome: dict[str, Any]) -> dict[str, Any]:
    return chunk(plan, None, outcome["finish_reason"], event="done",
                 prompt_tokens=outcome.get("prompt_tokens", 0),
                 completion_tokens=outcome.get("completion_tokens", 0), **_extras(outcome))


def usage_chunk(plan: Plan, outcome: dict[str, Any]) -> dict[str, Any]:
    """``stream_options.include_usage``: a last chunk with no choices and the usage."""
    return {**_head(plan, "chat.completion.chunk"), "choices": [], "usage": _usage(outcome)}
