"""The local web app and HTTP API: ``pocketlm serve``.

Layout: :mod:`.settings` (plain dataclasses) ← :mod:`.catalog` (which models exist) and
:mod:`.suggest` (one suggestion, with the profanity filter) ← :mod:`.worker` (a child
process per model that owns the interpreter) ← :mod:`.api` (OpenAI-style requests and
responses; :mod:`.request` and :mod:`.schemas` check the body) ← :mod:`.jobs` (a request's
run in a worker, off the event loop) ← :mod:`.routes` (the Starlette app) ← :mod:`.server`
(uvicorn, with :mod:`.protocol`'s checks of the request head). Nothing here imports
TensorFlow.
"""

from .settings import ServerConfig, SuggestRequest

__all__ = ["ServerConfig", "SuggestRequest"]
