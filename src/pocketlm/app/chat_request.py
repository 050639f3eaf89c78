"""Validate the body of ``POST /v1/chat/completions``: every field of OpenAI's chat request
is applied or refused with a 400 that names it (unknown fields too); numbers are checked as
for ``/v1/completions`` (:mod:`.request`: finite, in range). docs/app.md has the table.

Messages: roles ``system`` (first only), ``user`` and ``assistant`` taking turns, ending
with a user message; content a string or a list of ``{"type": "text", "text": ...}`` parts.
The worker runs the history with a :class:`~pocketlm.runtime.chat.ChatSession`
(``set_conversation(history)``, then ``send(last user message)``), so the request carries
the history apart from the message to answer.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..config import SEED_RANGE
from .request import (MAX_TOKENS_LIMIT, RequestError, _only, _present, _show, boolean,
                      common_fields, integer, logit_bias, number, stop_sequences)
from .settings import SuggestRequest

OPENAI_FIELDS = ("model", "messages", "max_tokens", "max_completion_tokens", "temperature",
                 "top_p", "n", "stream", "stream_options", "stop", "presence_penalty",
                 "frequency_penalty", "logit_bias", "seed", "user", "logprobs",
                 "top_logprobs", "response_format")
POCKETLM_FIELDS = ("top_k", "min_p", "repeat_penalty", "repeat_last_n", "profanity_filter")
KNOWN_FIELDS = frozenset(OPENAI_FIELDS + POCKETLM_FIELDS)
# OpenAI chat fields pocketlm cannot honour: refused with a message of their own.
UNSUPPORTED = {
    "tools": "its models do not call tools", "tool_choice": "its models do not call tools",
    "parallel_tool_calls": "its models do not call tools",
    "functions": "its models do not call functions",
    "function_call": "its models do not call functions",
    "audio": "its models read and write text only",
    "modalities": "its models read and write text only",
    "prediction": "predicted outputs are not implemented",
    "reasoning_effort": "its models do not reason apart from the reply",
    "web_search_options": "it does not search the web",
    "service_tier": "it has one tier", "store": "it stores nothing",
    "metadata": "it stores nothing", "verbosity": "its models have no verbosity setting",
}
ROLES = ("system", "user", "assistant")
MESSAGE_KEYS = frozenset(("role", "content"))
# Without max_tokens: this many, at most half the model's window (OpenAI's default is "up to
# the window", which here would leave no room for the conversation).
DEFAULT_MAX_TOKENS = 256


@dataclass
class ParsedChat:
    model: str | None
    request: SuggestRequest  # prompt: the last user message; messages: the history before it
    stream: bool
    include_usage: bool
    tokens_param: str = "max_tokens"
    budget_given: bool = True  # False: the planner sets the default for the model's window


def _content(i: int, content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list) and content:
        texts = []
        for part in content:
            kind = part.get("type") if isinstance(part, dict) else None
            if kind != "text":
                what = f"{kind!r} parts" if isinstance(kind, str) else "parts other than text"
                raise RequestError(f"messages[{i}].content: {what} are not supported by "
                                   "pocketlm (its models read text only)", "messages")
            if set(part) - {"type", "text"} or not isinstance(part.get("text"), str):
                raise RequestError(f"messages[{i}].content: a text part is "
                                   "{\"type\": \"text\", \"text\": \"...\"}", "messages")
            texts.append(part["text"])
        return "".join(texts)
    raise RequestError(f"messages[{i}].content must be a string or a list of text parts",
                       "messages")


def messages(body: dict) -> list[dict[str, str]]:
    """The messages as ``{"role", "content"}`` dicts with text content, in a valid order."""
    raw = body.get("messages")
    if not isinstance(raw, list) or not raw:
        raise RequestError("messages must be a non-empty list of {\"role\", \"content\"} "
                           "objects", "messages")
    out = []
    for i, m in enumerate(raw):
        if not isinstance(m, dict):
            raise RequestError(f"messages[{i}] must be an object", "messages")
        role = m.get("role")
        if role not in ROLES:
            raise RequestError(f"messages[{i}]: the role {_show(role)} is not supported by "
                               "pocketlm (system, user and assistant are)", "messages")
        extra = sorted(set(m) - MESSAGE_KEYS)
        if extra:
            raise RequestError(f"messages[{i}]: the field {_show(extra[0])} is not supported "
                               "by pocketlm (a message is its role and content)", "messages")
        out.append({"role": role, "content": _content(i, m.get("content"))})
    first = 1 if out[0]["role"] == "system" else 0
    for i in range(first, len(out)):
        want = "user" if (i - first) % 2 == 0 else "assistant"
        if out[i]["role"] != want:
            raise RequestError(f"messages[{i}]: expected a {want} message, not "
                               f"{out[i]['role']} (after an optional system message, user "
                               "and assistant take turns)", "messages")
    if out[-1]["role"] != "user":
        raise RequestError("the last message must be a user message (the one to answer)",
                           "messages")
    if not out[-1]["content"].strip():
        raise RequestError(f"messages[{len(out) - 1}]: the message is empty", "messages")
    return out


def _max_tokens(body: dict) -> tuple[int, str]:
    mt = integer(body, "max_tokens", None, 1, MAX_TOKENS_LIMIT)
    mct = integer(body, "max_completion_tokens", None, 1, MAX_TOKENS_LIMIT)
    if mt is not None and mct is not None and mt != mct:
        raise RequestError(f"max_tokens ({mt}) and max_completion_tokens ({mct}) disagree: "
                           "give one", "max_completion_tokens")
    if mct is not None:
        return mct, "max_completion_tokens"
    return (mt if mt is not None else DEFAULT_MAX_TOKENS), "max_tokens"


def parse(body: Any) -> ParsedChat:
    """Check every field of a chat request body. Raises :class:`RequestError`."""
    if not isinstance(body, dict):
        raise RequestError("the body must be a JSON object")
    for name in sorted(body):
        if name in UNSUPPORTED and body[name] is not None:
            raise RequestError(f"{name} is not supported by pocketlm ({UNSUPPORTED[name]})",
                               name)
    unknown = sorted(set(body) - KNOWN_FIELDS - set(UNSUPPORTED))
    if unknown:
        raise RequestError(f"unknown field {_show(unknown[0])}: pocketlm does not support it "
                           "(docs/app.md lists the fields)", unknown[0])
    _only(body, "n", 1, "it makes one reply per request")
    if _present(body, "logprobs") and body["logprobs"] is not False:
        raise RequestError(f"logprobs={_show(body['logprobs'])} is not supported by pocketlm "
                           "(chat replies carry no log-probabilities; /v1/completions has "
                           "them)", "logprobs")
    if _present(body, "top_logprobs"):
        raise RequestError("top_logprobs is not supported by pocketlm (chat replies carry no "
                           "log-probabilities; /v1/completions has them)", "top_logprobs")
    fmt = body.get("response_format")
    if fmt is not None and fmt != {"type": "text"}:
        raise RequestError(f"response_format={_show(fmt)} is not supported by pocketlm "
                           "(only {\"type\": \"text\"}: it cannot constrain output to JSON)",
                           "response_format")
    model, stream, include_usage = common_fields(body)
    msgs = messages(body)
    budget, tokens_param = _max_tokens(body)
    seed = integer(body, "seed", None, *SEED_RANGE)
    req = SuggestRequest(
        prompt=msgs[-1]["content"], messages=msgs[:-1], max_new_tokens=budget,
        temperature=number(body, "temperature", 1.0, 0.0, 2.0),
        top_p=number(body, "top_p", 1.0, 0.0, 1.0, lo_open=True),
        top_k=int(integer(body, "top_k", 0, 0, 100_000) or 0),
        seed=None if seed is None else seed % 2**32,
        profanity_filter=boolean(body, "profanity_filter", True),
        frequency_penalty=number(body, "frequency_penalty", 0.0, -2.0, 2.0),
        presence_penalty=number(body, "presence_penalty", 0.0, -2.0, 2.0),
        repeat_penalty=number(body, "repeat_penalty", 1.0, 0.0, 10.0, lo_open=True),
        repeat_last_n=int(integer(body, "repeat_last_n", 64, -1, 100_000) or 0),
        min_p=number(body, "min_p", 0.0, 0.0, 1.0),
        logit_bias=logit_bias(body), stop=stop_sequences(body))
    given = _present(body, "max_tokens") or _present(body, "max_completion_tokens")
    return ParsedChat(model, req, stream, include_usage, tokens_param, given)
