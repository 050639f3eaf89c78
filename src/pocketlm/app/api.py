"""The OpenAI-compatible completions API: validate a request, shape responses and errors.

Pure functions over dicts; the HTTP side lives in :mod:`.server`, the request's fields are
checked in :mod:`.request`. Extensions to the response live under a ``pocketlm`` key,
which OpenAI clients ignore.
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
from . import request
from .schemas import CompletionRequest
from .settings import ServerConfig, SuggestRequest


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
    include_usage: bool = False
    chat: bool = False  # /v1/chat/completions (responses shaped by .chat_api)


# -- validation ----------------------------------------------------------------------------
def parse_request(body: Any) -> CompletionRequest:
    """Every field of the body checked (see :mod:`.request`). Raises :class:`ApiError`."""
    try:
        return CompletionRequest.from_body(body)
    except request.RequestError as exc:
        raise bad_request(str(exc), exc.param) from None


def resolve_model(model_id: str | None, catalog: ModelCatalog,
                  config: ServerConfig) -> ModelEntry:
    """The entry a request names (or the default one), or the error to send."""
    wanted = model_id or config.default_model
    if wanted is None:
        raise ApiError(503, "no_model", config.no_model_reason or no_model_message(config))
    entry = catalog.find(wanted)  # a bare name too, as llama.cpp-style clients send
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
            f"{where}/model.tflite, or model.litertlm) or start the server with `pocketlm "
            "serve MODEL.tflite` (or a .litertlm bundle)")


def plan_completion(body: Any, catalog: ModelCatalog, config: ServerConfig,
                    flt: ProfanityFilter) -> Plan:
    """Validate everything that can be checked before the model runs: the request, the
    model, the prompt after the context window, and the prompt's language."""
    parsed = parse_request(body)
    req = parsed.request
    entry = resolve_model(parsed.model, catalog, config)
    window = entry.contract.sequence_length if entry.contract else 0
    if window and req.max_new_tokens >= window:
        name = parsed.tokens_param
        raise bad_request(f"{name} must be below the model's window of {window} tokens", name)
    try:
        tokenizer = catalog.tokenizer(entry)
        vocab = int((entry.contract.model if entry.contract else {}).get(
            "vocabulary_size") or tokenizer.vocabulary_size)
        bad = sorted(i for i in req.logit_bias if i >= vocab)
        if bad:
            raise bad_request(f"logit_bias names token ids the model does not have "
                              f"({', '.join(map(str, bad[:5]))}; its ids are 0 to {vocab - 1})",
                              "logit_bias")
        prepared = prepare_prompt(tokenizer, req.prompt, req.generation(),
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
    return Plan(entry, req, parsed.stream, prepared, f"cmpl-{uuid.uuid4().hex[:24]}",
                int(time.time()), parsed.include_usage)


# -- responses -----------------------------------------------------------------------------
def _usage(outcome: dict[str, Any]) -> dict[str, int]:
    p, c = outcome.get("prompt_tokens", 0), outcome.get("completion_tokens", 0)
    return {"prompt_tokens": p, "completion_tokens": c, "total_tokens": p + c}


def _extras(outcome: dict[str, Any]) -> dict[str, Any]:
    keys = ("attempts", "stop_reason", "time_to_first_token", "tokens_per_second")
    return {k: outcome[k] for k in keys if k in outcome}


def logprobs_body(entries: list[dict[str, Any]] | None) -> dict[str, Any] | None:
    """OpenAI's ``logprobs`` object from the worker's per-token entries (None: not asked)."""
    if entries is None:
        return None
    return {"tokens": [e["token"] for e in entries],
            "token_logprobs": [e["logprob"] for e in entries],
            # A prompt's first token has no distribution to rank (OpenAI sends null too).
            "top_logprobs": [None if e["logprob"] is None else e["top"] for e in entries],
            "text_offset": [e["offset"] for e in entries]}


def completion_body(plan: Plan, outcome: dict[str, Any]) -> dict[str, Any]:
    return {"id": plan.id, "object": "text_completion", "created": plan.created,
            "model": plan.entry.id,
            "choices": [{"text": outcome["text"], "index": 0,
                         "logprobs": logprobs_body(outcome.get("logprobs")),
                         "finish_reason": outcome["finish_reason"]}],
            "usage": _usage(outcome),
            "pocketlm": {"prompt_used": plan.prepared.text,
                         "prompt_truncated": plan.prepared.truncated, **_extras(outcome)}}


def chunk(plan: Plan, text: str = "", finish_reason: str | None = None,
          logprobs: list[dict[str, Any]] | None = None, **pocketlm: Any) -> dict[str, Any]:
    if logprobs is None and plan.request.logprobs is not None:
        logprobs = []  # asked for: every chunk carries the object, empty when no tokens
    out: dict[str, Any] = {"id": plan.id, "object": "text_completion",
                           "created": plan.created, "model": plan.entry.id,
                           "choices": [{"text": text, "index": 0,
                                        "logprobs": logprobs_body(logprobs),
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


def usage_chunk(plan: Plan, outcome: dict[str, Any]) -> dict[str, Any]:
    """``stream_options.include_usage``: a last chunk with no choices and the usage."""
    return {"id": plan.id, "object": "text_completion", "created": plan.created,
            "model": plan.entry.id, "choices": [], "usage": _usage(outcome)}


def model_card(entry: ModelEntry, default: str | None) -> dict[str, Any]:
    """An entry of ``GET /v1/models`` (OpenAI's shape plus pocketlm's details)."""
    return {"id": entry.id, "object": "model", "created": int(entry.mtime),
            "owned_by": "local", "pocketlm": {**entry.describe(),
                                              "default": entry.id == default}}
