"""The OpenAI-compatible completions API: validate a request, shape responses and errors.

Pure functions over dicts; the HTTP side lives in :mod:`.server`. Extensions to OpenAI's
request (all optional): ``top_k``, ``context_window``, ``context_unit`` ("words" or
"tokens"), ``profanity_filter`` (default true). Extensions to the response live under a
``pocketlm`` key, which OpenAI clients ignore.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from typing import Any

from ..errors import PocketLMError, PromptError
from ..runtime.generation import PreparedPrompt, prepare_prompt
from ..safety import ProfanityFilter
from .catalog import ModelCatalog, ModelEntry
from .settings import ServerConfig, SuggestRequest

MAX_TOKENS_LIMIT = 4096


class ApiError(Exception):
    """An error the client can act on, sent as ``{"error": {...}}`` with ``status``."""

    def __init__(self, status: int, kind: str, message: str, param: str | None = None,
                 headers: dict[str, str] | None = None, **extra: Any) -> None:
        super().__init__(message)
        self.status, self.kind, self.message, self.param = status, kind, message, param
        self.headers = headers or {}
        self.extra = extra

    def body(self) -> dict[str, Any]:
        return {"error": {"message": self.message, "type": self.kind, "param": self.param,
                          "code": self.kind, **self.extra}}


def bad_request(message: str, param: str | None = None) -> ApiError:
    return ApiError(400, "invalid_request_error", message, param)


@dataclass
class Plan:
    """A validated completion request, ready for a worker."""

    entry: ModelEntry
    request: SuggestRequest
    stream: bool
    prepared: PreparedPrompt
    id: str
    created: int


# -- validation ----------------------------------------------------------------------------
def _number(body: dict, name: str, default: float, lo: float, hi: float,
            lo_open: bool = False) -> float:
    value = body.get(name, default)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise bad_request(f"{name} must be a number", name)
    if value > hi or value < lo or (lo_open and value == lo):
        bounds = f"{'(' if lo_open else '['}{lo}, {hi}]"
        raise bad_request(f"{name} must be in {bounds}, not {value}", name)
    return float(value)


def _integer(body: dict, name: str, default: int | None, lo: int, hi: int) -> int | None:
    value = body.get(name, default)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int):
        raise bad_request(f"{name} must be an integer", name)
    if not lo <= value <= hi:
        raise bad_request(f"{name} must be between {lo} and {hi}, not {value}", name)
    return value


def _prompt(body: dict) -> str:
    prompt = body.get("prompt")
    if isinstance(prompt, list) and len(prompt) == 1 and isinstance(prompt[0], str):
        prompt = prompt[0]  # OpenAI accepts a list of prompts; one is all we serve
    if not isinstance(prompt, str):
        raise bad_request("prompt must be a string (one prompt per request)", "prompt")
    return prompt


def parse_request(body: Any) -> tuple[str | None, SuggestRequest, bool]:
    """(model id or None, the request, whether to stream). Raises :class:`ApiError`."""
    if not isinstance(body, dict):
        raise bad_request("the body must be a JSON object")
    for name, neutral in (("n", 1), ("best_of", 1), ("echo", False), ("logprobs", None),
                          ("suffix", None), ("stop", None)):
        if body.get(name, neutral) not in (neutral, None):
            raise bad_request(f"{name}={body[name]!r} is not supported by pocketlm", name)
    model = body.get("model")
    if model is not None and not isinstance(model, str):
        raise bad_request("model must be a string", "model")
    stream = body.get("stream", False)
    if not isinstance(stream, bool):
        raise bad_request("stream must be true or false", "stream")
    unit = body.get("context_unit", "words")
    if unit not in ("words", "tokens"):
        raise bad_request("context_unit must be 'words' or 'tokens'", "context_unit")
    flt = body.get("profanity_filter", True)
    if not isinstance(flt, bool):
        raise bad_request("profanity_filter must be true or false", "profanity_filter")
    seed = _integer(body, "seed", None, -(2**63), 2**63 - 1)
    req = SuggestRequest(
        prompt=_prompt(body),
        max_new_tokens=int(_integer(body, "max_tokens", 16, 1, MAX_TOKENS_LIMIT) or 16),
        temperature=_number(body, "temperature", 1.0, 0.0, 2.0),
        top_p=_number(body, "top_p", 1.0, 0.0, 1.0, lo_open=True),
        top_k=int(_integer(body, "top_k", 0, 0, 100_000) or 0),
        seed=None if seed is None else seed % 2**32,  # numpy seeds are 32-bit
        context_window=_integer(body, "context_window", None, 1, 100_000),
        context_unit=unit, profanity_filter=flt)
    return model, req, stream


def resolve_model(model_id: str | None, catalog: ModelCatalog,
                  config: ServerConfig) -> ModelEntry:
    """The entry a request names (or the default one), or the error to send."""
    wanted = model_id or config.default_model
    if wanted is None:
        raise ApiError(503, "no_model", config.no_model_reason or no_model_message(config))
    entry = catalog.get(wanted)
    if entry is None:
        if model_id is None:
            raise ApiError(503, "no_model", f"the default model {wanted} is gone from the "
                           "models directory: pick another one")
        raise ApiError(404, "model_not_found", f"no model named {model_id!r} in the models "
                       "directory (GET /v1/models lists them)", "model")
    if not entry.compatible:
        raise ApiError(400, "model_not_compatible",
                       f"{entry.id} is not a model pocketlm can run: {entry.reason}", "model")
    return entry


def no_model_message(config: ServerConfig) -> str:
    where = config.models_dir or "a models directory"
    return (f"no model to run: put a converted model in {where} (pocketlm convert ... -o "
            f"{where}/model.tflite) or start the server with `pocketlm serve MODEL.tflite`")


def plan_completion(body: Any, catalog: ModelCatalog, config: ServerConfig,
                    flt: ProfanityFilter) -> Plan:
    """Validate everything that can be checked before the model runs: the request, the
    model, the prompt after the context window, and the prompt's language."""
    model_id, req, stream = parse_request(body)
    entry = resolve_model(model_id, catalog, config)
    window = entry.contract.sequence_length if entry.contract else 0
    if window and req.max_new_tokens >= window:
        raise bad_request(f"max_tokens must be below the model's window of {window} tokens",
                          "max_tokens")
    try:
        prepared = prepare_prompt(catalog.tokenizer(entry), req.prompt, req.generation(),
                                  window or 1 << 20)
    except PromptError as exc:
        raise bad_request(str(exc), "prompt") from None
    except PocketLMError as exc:
        raise ApiError(400, "model_not_compatible", str(exc), "model") from None
    if req.profanity_filter:
        matches = flt.find(prepared.text)
        if matches:
            words = ", ".join(f"\u201c{m.text}\u201d" for m in matches[:3])
            raise ApiError(422, "content_filter",
                           f"the prompt contains language the profanity filter blocks "
                           f"({words}): edit it, or switch the filter off",
                           "prompt", blocked=[m.text for m in matches])
    return Plan(entry, req, stream, prepared, f"cmpl-{uuid.uuid4().hex[:24]}",
                int(time.time()))


# -- responses -----------------------------------------------------------------------------
def _usage(outcome: dict[str, Any]) -> dict[str, int]:
    p, c = outcome.get("prompt_tokens", 0), outcome.get("completion_tokens", 0)
    return {"prompt_tokens": p, "completion_tokens": c, "total_tokens": p + c}


def _extras(outcome: dict[str, Any]) -> dict[str, Any]:
    keys = ("attempts", "stop_reason", "time_to_first_token", "tokens_per_second")
    return {k: outcome[k] for k in keys if k in outcome}


def completion_body(plan: Plan, outcome: dict[str, Any]) -> dict[str, Any]:
    return {"id": plan.id, "object": "text_completion", "created": plan.created,
            "model": plan.entry.id,
            "choices": [{"text": outcome["text"], "index": 0, "logprobs": None,
                         "finish_reason": outcome["finish_reason"]}],
            "usage": _usage(outcome),
            "pocketlm": {"prompt_used": plan.prepared.text,
                         "prompt_truncated": plan.prepared.truncated, **_extras(outcome)}}


def chunk(plan: Plan, text: str = "", finish_reason: str | None = None,
          **pocketlm: Any) -> dict[str, Any]:
    out: dict[str, Any] = {"id": plan.id, "object": "text_completion",
                           "created": plan.created, "model": plan.entry.id,
                           "choices": [{"text": text, "index": 0, "logprobs": None,
                                        "finish_reason": finish_reason}]}
    if pocketlm:
        out["pocketlm"] = pocketlm
    return out


def start_chunk(plan: Plan) -> dict[str, Any]:
    return chunk(plan, event="start", prompt_used=plan.prepared.text,
                 prompt_tokens=len(plan.prepared.ids), prompt_truncated=plan.prepared.truncated)


def final_chunk(plan: Plan, outcome: dict[str, Any]) -> dict[str, Any]:
    body = chunk(plan, "", outcome["finish_reason"], event="done", **_extras(outcome))
    body["usage"] = _usage(outcome)
    return body


def model_card(entry: ModelEntry, default: str | None) -> dict[str, Any]:
    """An entry of ``GET /v1/models`` (OpenAI's shape plus pocketlm's details)."""
    return {"id": entry.id, "object": "model", "created": int(entry.mtime),
            "owned_by": "local", "pocketlm": {**entry.describe(),
                                              "default": entry.id == default}}
