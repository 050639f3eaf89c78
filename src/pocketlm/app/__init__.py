"""The local web app and HTTP API: ``pocketlm serve``.

Layout: :mod:`.settings` (plain dataclasses) ← :mod:`.catalog` (which models exist) and
:mod:`.suggest` (one suggestion, with the profanity filter) ← :mod:`.worker` (a child
process per model that owns the interpreter) ← :mod:`.api` (OpenAI-style requests and
responses) ← :mod:`.server` (HTTP, SSE, static files). Nothing here imports TensorFlow.
"""

from .settings import ServerConfig, SuggestRequest

__all__ = ["ServerConfig", "SuggestRequest"]
