"""Validate the body of ``POST /v1/completions``: every field of OpenAI's legacy completions
request is applied or refused with a 400 that names it, and so is every extension pocketlm
knows (llama.cpp's ``n_predict``, ``repeat_penalty``, ``repeat_last_n``, ``min_p``; its own
``top_k``, ``context_window``, ``context_unit``, ``profanity_filter``, ``retry_events``).
Unknown fields are refused too: a field that is silently ignored looks applied.

Numbers must be finite and in range (Python's json reads ``NaN`` and ``Infinity``).
docs/app.md has the table of fields.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any

from ..config import MAX_LOGPROBS, MAX_STOP_SEQUENCES, SEED_RANGE, format_bound
from .settings import SuggestRequest

MAX_TOKENS_LIMIT = 4096
MAX_STOP_CHARS = 500
OPENAI_FIELDS = ("model", "prompt", "suffix", "max_tokens", "temperature", "top_p", "n",
                 "stream", "stream_options", "logprobs", "echo", "stop", "presence_penalty",
                 "frequency_penalty", "best_of", "logit_bias", "seed", "user")
LLAMA_CPP_FIELDS = ("n_predict", "repeat_penalty", "repeat_last_n", "min_p")
POCKETLM_FIELDS = ("top_k", "context_window", "context_unit", "profanity_filter",
                   "retry_events")
KNOWN_FIELDS = frozenset(OPENAI_FIELDS + LLAMA_CPP_FIELDS + POCKETLM_FIELDS)
_TOKEN_ID = re.compile(r"^[0-9]{1,9}$")


class RequestError(ValueError):
    """A field the client must fix; ``param`` names it."""

    def __init__(self, message: str, param: str | None = None) -> None:
        super().__init__(message)
        self.param = param


@dataclass
class ParsedRequest:
    model: str | None
    request: SuggestRequest
    stream: bool
    include_usage: bool  # stream_options.include_usage: a last chunk with only usage
    tokens_param: str = "max_tokens"  # the field that set the token budget (for errors)


def _present(body: dict, name: str) -> bool:
    return body.get(name) is not None  # null means "the default", as OpenAI reads it


def number(body: dict, name: str, default: float, lo: float, hi: float,
           lo_open: bool = False) -> float:
    """A finite number in [lo, hi] ((lo, hi] with ``lo_open``), or ``default`` if absent."""
    if not _present(body, name):
        return default
    value = body[name]
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise RequestError(f"{name} must be a number, not {_show(value)}", name)
    if isinstance(value, float) and not math.isfinite(value):
        raise RequestError(f"{name} must be a finite number, not {value}", name)
    if value > hi or value < lo or (lo_open and value == lo):
        bounds = f"{'(' if lo_open else '['}{format_bound(lo)}, {format_bound(hi)}]"
        raise RequestError(f"{name} must be in {bounds}, not {_show(value)}", name)
    return float(value)


def integer(body: dict, name: str, default: int | None, lo: int, hi: int) -> int | None:
    """An integer in [lo, hi] (a float with no fraction counts), or ``default``."""
    if not _present(body, name):
        return default
    value = body[name]
    if isinstance(value, float) and math.isfinite(value) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise RequestError(f"{name} must be an integer, not {_show(value)}", name)
    if not lo <= value <= hi:
        raise RequestError(f"{name} must be between {lo} and {hi}, not {_show(value)}", name)
    return value


def boolean(body: dict, name: str, default: bool) -> bool:
    if not _present(body, name):
        return default
    if not isinstance(body[name], bool):
        raise RequestError(f"{name} must be true or false, not {_show(body[name])}", name)
    return body[name]


def _show(value: Any) -> str:
    text = repr(value) if not isinstance(value, int) or abs(value) < 10**30 else \
        f"an integer of {len(str(abs(value)))} digits"
    return text if len(text) <= 60 else text[:57] + "..."


def _only(body: dict, name: str, allowed: Any, why: str) -> None:
    """A field pocketlm supports only at its neutral value."""
    if (_present(body, name) and body[name] != allowed) or isinstance(body.get(name), bool):
        raise RequestError(f"{name}={_show(body[name])} is not supported by pocketlm ({why})",
                           name)


def prompt_text(body: dict) -> str:
    prompt = body.get("prompt")
    if isinstance(prompt, list):
        if len(prompt) == 1 and isinstance(prompt[0], str):
            return prompt[0]  # OpenAI's list of prompts, with the one prompt we serve
        if prompt and all(isinstance(t, int) and not isinstance(t, bool) for t in prompt):
            raise RequestError("prompt as token ids is not supported by pocketlm: send the "
                               "text", "prompt")
        if len(prompt) > 1 and all(isinstance(p, str) for p in prompt):
            raise RequestError(f"prompt holds {len(prompt)} prompts: pocketlm completes one "
                               "prompt per request", "prompt")
    if not isinstance(prompt, str):
        raise RequestError("prompt must be a string (one prompt per request)", "prompt")
    return prompt


def stop_sequences(body: dict) -> list[str]:
    stop = body.get("stop")
    if stop is None:
        return []
    items = [stop] if isinstance(stop, str) else stop
    if not isinstance(items, list) or not all(isinstance(s, str) for s in items):
        raise RequestError("stop must be a string or a list of strings", "stop")
    if len(items) > MAX_STOP_SEQUENCES:
        raise RequestError(f"stop holds {len(items)} sequences: at most "
                           f"{MAX_STOP_SEQUENCES}", "stop")
    if any(not s for s in items):
        raise RequestError("stop sequences must not be empty strings", "stop")
    if any(len(s) > MAX_STOP_CHARS for s in items):
        raise RequestError(f"a stop sequence is over {MAX_STOP_CHARS} characters", "stop")
    return list(items)


def logit_bias(body: dict) -> dict[int, float]:
    """{token id: bias}; ids are checked against the model later (it knows its vocabulary)."""
    raw = body.get("logit_bias")
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise RequestError("logit_bias must be an object mapping token ids (as strings) to "
                           "numbers in [-100, 100]", "logit_bias")
    out: dict[int, float] = {}
    for key, value in raw.items():
        if not _TOKEN_ID.match(key):
            raise RequestError(f"logit_bias keys must be token ids such as \"50256\", not "
                               f"{_show(key)}", "logit_bias")
        try:
            if value is None:
                raise RequestError("null")
            out[int(key)] = number({key: value}, key, 0.0, -100.0, 100.0)
        except RequestError:
            raise RequestError(f"logit_bias[{key!r}] must be a finite number in [-100, 100], "
                               f"not {_show(value)}", "logit_bias") from None
    return out


def max_tokens(body: dict, echo: bool) -> int:
    lo = 0 if echo else 1  # max_tokens 0 makes sense only to echo (and score) the prompt
    mt = integer(body, "max_tokens", None, lo, MAX_TOKENS_LIMIT)
    if _present(body, "n_predict") and body["n_predict"] == -1:
        raise RequestError("n_predict=-1 (no limit) is not supported by pocketlm: give a "
                           "number of tokens", "n_predict")
    np_ = integer(body, "n_predict", None, lo, MAX_TOKENS_LIMIT)
    if mt is not None and np_ is not None and mt != np_:
        raise RequestError(f"max_tokens ({mt}) and n_predict ({np_}) disagree: give one",
                           "n_predict")
    return mt if mt is not None else np_ if np_ is not None else 16


def common_fields(body: dict) -> tuple[str | None, bool, bool]:
    """The fields both endpoints check alike: ``model`` and ``user`` (strings if given),
    ``stream`` and ``stream_options``; returns (model, stream, include_usage). Raises
    RequestError naming the field."""
    model = body.get("model")
    if model is not None and not isinstance(model, str):
        raise RequestError("model must be a string", "model")
    if _present(body, "user") and not isinstance(body["user"], str):
        raise RequestError("user must be a string", "user")
    stream = boolean(body, "stream", False)
    include_usage = False
    options = body.get("stream_options")
    if options is not None:
        if not stream:
            raise RequestError("stream_options is only allowed with \"stream\": true",
                               "stream_options")
        if not isinstance(options, dict) or set(options) - {"include_usage"}:
            raise RequestError("stream_options must be {\"include_usage\": true or false}",
                               "stream_options")
        include_usage = boolean(options, "include_usage", False)
    return model, stream, include_usage


def parse(body: Any) -> ParsedRequest:
    """Check every field of a request body. Raises :class:`RequestError`."""
    if not isinstance(body, dict):
        raise RequestError("the body must be a JSON object")
    unknown = sorted(set(body) - KNOWN_FIELDS)
    if unknown:
        names = ", ".join(_show(n) for n in unknown[:5])
        many = len(unknown) > 1
        raise RequestError(f"unknown field{'s' if many else ''} {names}: pocketlm does not "
                           f"support {'them' if many else 'it'} (docs/app.md lists the "
                           "fields)", unknown[0])
    _only(body, "n", 1, "it makes one completion per request")
    _only(body, "best_of", 1, "it makes one completion per request")
    if _present(body, "suffix") and body["suffix"] != "":
        raise RequestError("suffix is not supported by pocketlm (its models only continue "
                           "text)", "suffix")
    model, stream, include_usage = common_fields(body)
    unit = "words" if body.get("context_unit") is None else body["context_unit"]
    if unit not in ("words", "tokens"):
        raise RequestError("context_unit must be 'words' or 'tokens'", "context_unit")
    echo = boolean(body, "echo", False)
    seed = integer(body, "seed", None, *SEED_RANGE)
    req = SuggestRequest(
        prompt=prompt_text(body),
        max_new_tokens=max_tokens(body, echo),
        temperature=number(body, "temperature", 1.0, 0.0, 2.0),
        top_p=number(body, "top_p", 1.0, 0.0, 1.0, lo_open=True),
        top_k=int(integer(body, "top_k", 0, 0, 100_000) or 0),
        seed=None if seed is None else seed % 2**32,  # retries add to it; numpy takes it
        context_window=integer(body, "context_window", None, 1, 100_000),
        context_unit=unit, profanity_filter=boolean(body, "profanity_filter", True),
        frequency_penalty=number(body, "frequency_penalty", 0.0, -2.0, 2.0),
        presence_penalty=number(body, "presence_penalty", 0.0, -2.0, 2.0),
        repeat_penalty=number(body, "repeat_penalty", 1.0, 0.0, 10.0, lo_open=True),
        repeat_last_n=int(integer(body, "repeat_last_n", 64, -1, 100_000) or 0),
        min_p=number(body, "min_p", 0.0, 0.0, 1.0),
        logit_bias=logit_bias(body), stop=stop_sequences(body),
        logprobs=integer(body, "logprobs", None, 0, MAX_LOGPROBS),
        echo=echo, retry_events=boolean(body, "retry_events", False))
    tokens_param = "n_predict" if _present(body, "n_predict") and not _present(
        body, "max_tokens") else "max_tokens"
    return ParsedRequest(model, req, stream, include_usage, tokens_param)
