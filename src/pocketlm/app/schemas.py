"""Pydantic models of the API's request bodies.

The completions body is checked field by field by :mod:`.request` (the model's "before"
validator delegates to it), because OpenAI's API has rules that pydantic's coercion would
bend: ``true`` is not a number, ``NaN``, ``Infinity`` and a 400-digit integer are refused
with a message naming the field, a float with no fraction is an integer, ``null`` means the
default, and every field is either applied or refused (unknown ones too). The model then
holds the checked values with their types, strictly (a value of another type is a bug).

A chat body (``/v1/chat/completions``) has a model of its own, :class:`ChatRequest`, built
the same way over :mod:`.chat_request`.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, ValidationError, model_validator

from . import chat_request, request
from .settings import SuggestRequest


class CompletionRequest(BaseModel):
    """A checked ``POST /v1/completions`` body: what to run and how to answer."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    model: str | None = None  # a model id of the catalog; None: the default model
    request: SuggestRequest  # what the worker runs (prompt, sampling, stop, logprobs, ...)
    stream: bool = False  # answer as server-sent events
    include_usage: bool = False  # stream_options.include_usage: a last chunk with the usage
    tokens_param: Literal["max_tokens", "n_predict"] = "max_tokens"  # named in its errors

    @model_validator(mode="before")
    @classmethod
    def _checked(cls, body: Any) -> dict[str, Any]:
        if isinstance(body, dict) and isinstance(body.get("request"), SuggestRequest):
            return body  # already checked (model_validate on our own dict)
        parsed = request.parse(body)  # raises RequestError (a ValueError) naming the field
        return {"model": parsed.model, "request": parsed.request, "stream": parsed.stream,
                "include_usage": parsed.include_usage, "tokens_param": parsed.tokens_param}

    @classmethod
    def from_body(cls, body: Any) -> CompletionRequest:
        """The model for a decoded JSON body. Raises :class:`request.RequestError`."""
        try:
            return cls.model_validate(body)
        except ValidationError as exc:
            errors = exc.errors()
            cause = errors[0].get("ctx", {}).get("error") if errors else None
            if isinstance(cause, request.RequestError):
                raise cause from None
            raise  # a type error in the checked values: a bug in request.py, not the client's


class ChatRequest(BaseModel):
    """A checked ``POST /v1/chat/completions`` body. ``request.prompt`` is the user message
    to answer, ``request.messages`` the conversation before it."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    model: str | None = None
    request: SuggestRequest
    stream: bool = False
    include_usage: bool = False
    tokens_param: Literal["max_tokens", "max_completion_tokens"] = "max_tokens"
    budget_given: bool = True  # False: the default budget, fitted to the model's window

    @model_validator(mode="before")
    @classmethod
    def _checked(cls, body: Any) -> dict[str, Any]:
        if isinstance(body, dict) and isinstance(body.get("request"), SuggestRequest):
            return body
        parsed = chat_request.parse(body)  # raises RequestError naming the field
        return {"model": parsed.model, "request": parsed.request, "stream": parsed.stream,
                "include_usage": parsed.include_usage, "tokens_param": parsed.tokens_param,
                "budget_given": parsed.budget_given}

    @classmethod
    def from_body(cls, body: Any) -> ChatRequest:
        """The model for a decoded JSON body. Raises :class:`request.RequestError`."""
        try:
            return cls.model_validate(body)
        except ValidationError as exc:
            errors = exc.errors()
            cause = errors[0].get("ctx", {}).get("error") if errors else None
            if isinstance(cause, request.RequestError):
                raise cause from None
            raise
