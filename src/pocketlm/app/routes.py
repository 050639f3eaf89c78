"""The ASGI application (Starlette): the web page, the OpenAI-compatible API and its events.

One module for the routes: an endpoint (``/v1/completions``, ``/v1/chat/completions``) is a
handler and a line in :func:`build_app`: read the body with :func:`read_json`, plan it off the event
loop, and answer with :func:`.jobs.respond`, which runs the job in a worker and returns the
plain or streamed response.

Everything every request goes through lives in :class:`Guard` (pure ASGI, outermost): the
Host check against DNS rebinding, methods this server does not know (501), the headers every
answer carries (``Connection: close``, ``nosniff``; no CORS header, ever), the access log
(method and path only: prompts travel in bodies and are never logged) and a JSON 500 for a
bug instead of a traceback page.
"""

from __future__ import annotations

import ipaddress
import json
import re
import sys
from dataclasses import asdict
from typing import Any

import anyio
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.routing import Route

from .. import __version__
from . import api, chat_api
from .jobs import respond

STATIC_TYPES = {".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8",
                ".css": "text/css; charset=utf-8", ".svg": "image/svg+xml",
                ".png": "image/png"}
_STATIC_NAME = re.compile(r"^[a-z0-9_-]+\.(?:js|css|svg|png)$")
SECURITY_HEADERS = {
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; "
                               "connect-src 'self'; frame-ancestors 'none'",
}
LOOPBACK_NAMES = {"127.0.0.1", "localhost", "[::1]", "::1"}
KNOWN_METHODS = {"GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"}
BODY_TIMEOUT_S = 60  # a client that stalls mid-body is cut off (as http.server's timeout did)
# What the log shows instead of control characters (a raw ESC in a path must not drive the
# terminal that shows the log).
_CONTROL_CHARS = str.maketrans({c: f"\\x{c:02x}" for c in (*range(0x20), *range(0x7f, 0xa0))})
_CONTROL_CHARS[ord("\\")] = "\\\\"


def log(line: str) -> None:
    """One line on stderr, control characters escaped."""
    sys.stderr.write(line.translate(_CONTROL_CHARS) + "\n")
    sys.stderr.flush()


def json_response(status: int, body: Any, headers: dict[str, str] | None = None) -> Response:
    data = json.dumps(body, ensure_ascii=False).encode("utf-8")
    return Response(data, status, headers, media_type="application/json; charset=utf-8")


def error_response(exc: api.ApiError) -> Response:
    return json_response(exc.status, exc.body(), exc.headers)


# -- what every request goes through ---------------------------------------------------------
def host_allowed(host: str) -> bool:
    """Whether a Host header names this machine: a loopback name or address (DNS rebinding
    needs a host *name*, and names other than localhost stay refused)."""
    host = host.strip().lower()
    name = host.rsplit(":", 1)[0] if not host.endswith("]") else host
    if name in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(name.strip("[]")).is_loopback
    except ValueError:
        return False


def _canonical(name: bytes) -> bytes:
    """``content-type`` -> ``Content-Type``."""
    return b"-".join(part[:1].upper() + part[1:] for part in name.lower().split(b"-"))


class Guard:
    """Pure ASGI middleware around the whole app (see the module docstring)."""

    def __init__(self, app: Any, loopback: bool) -> None:
        self.app, self.loopback = app, loopback

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        state = {"status": 0}

        async def send_with_headers(message: dict) -> None:
            if message["type"] == "http.response.start":
                state["status"] = message["status"]
                # One request per connection, as before: an answer ends with the connection,
                # so an idle keep-alive connection holds nothing, and a stream simply ends.
                # Names in their usual case (Starlette sends them in lower case; names are
                # case-insensitive, but scripts that read a plain dict of them are not).
                headers = [(_canonical(k), v) for k, v in message.get("headers", [])
                           if k.lower() not in (b"connection", b"server")]
                headers += [(b"Connection", b"close"), (b"X-Content-Type-Options", b"nosniff"),
                            (b"Server", f"pocketlm/{__version__}".encode())]
                message = {**message, "headers": headers}
            await send(message)

        try:
            refusal = self._refusal(scope)
            app = error_response(refusal) if refusal else self.app
            await app(scope, receive, send_with_headers)
        except Exception as exc:  # noqa: BLE001 - a bug: answer 500 and keep serving
            log(f"internal error: {type(exc).__name__}: {exc}")
            if not state["status"]:
                await error_response(api.ApiError(500, "internal_error", "internal server "
                                                   "error"))(scope, receive, send_with_headers)
        finally:
            client = scope.get("client") or ("-", 0)
            # The decoded path: control characters a client sent (legal_target encoded
            # them) show escaped, as http.server showed them.
            path = scope["path"] + ("?" if scope.get("query_string") else "") \
                + scope.get("query_string", b"").decode("latin-1")
            log(f'{client[0]} - "{scope["method"]} {path} HTTP/{scope["http_version"]}" '
                f'{state["status"] or "-"}')

    def _refusal(self, scope: dict) -> api.ApiError | None:
        if scope["method"] not in KNOWN_METHODS:
            return api.ApiError(501, "not_implemented", f"unsupported method {scope['method']}")
        if self.loopback:
            host = next((v.decode("latin-1") for k, v in scope["headers"] if k == b"host"), "")
            if not host_allowed(host):
                return api.ApiError(421, "misdirected_request",
                                    "this server answers only to localhost and loopback "
                                    "addresses such as 127.0.0.1")
        return None


# -- request bodies -----------------------------------------------------------------------------
async def read_json(request: Request, limit: int) -> Any:
    """The body as JSON, checked as the old server did: a Content-Length (no chunked bodies),
    at most ``limit`` bytes (413 before reading a byte of a larger one), JSON content type.
    Raises :class:`api.ApiError`."""
    if "chunked" in request.headers.get("transfer-encoding", "").lower():
        raise api.ApiError(411, "length_required", "send a Content-Length (no chunked bodies)")
    length = request.headers.get("content-length")
    if length is None or not (length.isascii() and length.isdigit()):
        raise api.ApiError(411, "length_required", "send a Content-Length")
    if int(length) > limit:
        raise api.ApiError(413, "request_too_large", f"the request body is over {limit} bytes")
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype != "application/json":
        raise api.ApiError(415, "unsupported_media_type",
                           "send the body as JSON (Content-Type: application/json)")
    try:
        with anyio.move_on_after(BODY_TIMEOUT_S) as scope:
            raw = await request.body()  # the protocol stops at Content-Length bytes
    except ClientDisconnect:  # it left mid-body: nobody reads an answer
        raise api.ApiError(499, "client_closed_request", "the client went away") from None
    if scope.cancel_called:
        raise api.ApiError(408, "request_timeout", "the body did not arrive in time")
    try:
        return json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise api.bad_request(f"the body is not valid JSON: {exc}") from None
    except RecursionError:  # [[[[...]]]]: a 64 KiB body can nest deeper than Python
        raise api.bad_request("the body is nested too deeply") from None


# -- handlers ---------------------------------------------------------------------------------
def _plan(app: Any, body: Any, chat: bool = False) -> api.Plan:
    """Everything checked before a worker runs (on a thread: tokenizing a long prompt takes
    a while, and the pool's counters share a lock with code that may wait on a worker)."""
    planner = chat_api.plan_chat if chat else api.plan_completion
    try:
        return planner(body, app.catalog, app.config, app.filter)
    except api.ApiError as exc:
        if exc.kind == "content_filter":
            app.pool.count("rejected_prompts")
        raise


async def completions(request: Request) -> Response:
    app = request.app.state.pocketlm
    body = await read_json(request, app.config.max_body_bytes)
    plan = await anyio.to_thread.run_sync(_plan, app, body)
    if app.config.log_prompts:
        log(f"prompt for {plan.entry.id}: {plan.prepared.text[:200]!r}")
    return await respond(request, app, plan)


async def chat_completions(request: Request) -> Response:
    app = request.app.state.pocketlm
    body = await read_json(request, app.config.max_body_bytes)
    plan = await anyio.to_thread.run_sync(_plan, app, body, True)
    if app.config.log_prompts:
        log(f"chat message for {plan.entry.id}: {plan.request.prompt[:200]!r}")
    return await respond(request, app, plan)


def _health(app: Any) -> dict[str, Any]:
    cfg = app.config
    return {"status": "ok", "version": __version__, "default_model": cfg.default_model,
            "workers": app.pool.describe(), "stats": asdict(app.pool.stats),
            "queue_size": cfg.queue_size}


async def health(request: Request) -> Response:
    # On a thread: the pool's lock can be held while a replaced worker stops (seconds).
    return json_response(200, await anyio.to_thread.run_sync(_health,
                                                             request.app.state.pocketlm))


async def openai_models(request: Request) -> Response:
    app = request.app.state.pocketlm
    default = app.config.default_model
    entries = await anyio.to_thread.run_sync(app.catalog.scan)  # stats files: off the loop
    data = [api.model_card(e, default) for e in entries if e.compatible]
    return json_response(200, {"object": "list", "data": data})


async def picker_models(request: Request) -> Response:
    app = request.app.state.pocketlm
    cfg = app.config
    entries = await anyio.to_thread.run_sync(app.catalog.scan)
    reason = ""
    if cfg.default_model is None or not any(e.compatible for e in entries):
        reason = cfg.no_model_reason or api.no_model_message(cfg)
    return json_response(200, {"models": [e.describe() for e in entries],
                               "default": cfg.default_model,
                               "models_dir": str(cfg.models_dir) if cfg.models_dir else None,
                               "no_model": reason})


def _static(app: Any, name: str) -> Response:
    data = app.static(name) if name == "index.html" or _STATIC_NAME.match(name) else None
    if data is None:
        raise api.ApiError(404, "not_found", f"no file {name}")
    ctype = STATIC_TYPES.get(name[name.rfind("."):], "application/octet-stream")
    return Response(data, 200, {"Cache-Control": "no-cache", **SECURITY_HEADERS},
                    media_type=ctype)


async def page(request: Request) -> Response:
    return _static(request.app.state.pocketlm, "index.html")


async def static_file(request: Request) -> Response:
    return _static(request.app.state.pocketlm, request.path_params["name"])


# -- errors -------------------------------------------------------------------------------------
async def _api_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, api.ApiError)
    return error_response(exc)


async def _http_error(request: Request, exc: Exception) -> Response:
    """Starlette's own refusals (no route, a method the route does not take) as JSON."""
    assert isinstance(exc, HTTPException)
    if exc.status_code == 405:
        err = api.ApiError(405, "method_not_allowed",
                           f"{request.method} is not allowed here")
    elif exc.status_code == 404:
        err = api.ApiError(404, "not_found", f"nothing at {request.url.path}")
    else:
        err = api.ApiError(exc.status_code, "http_error", str(exc.detail))
    return error_response(err)


async def _bug(request: Request, exc: Exception) -> Response:
    """A bug: a JSON 500 (Starlette re-raises it after this answer; :class:`Guard` logs it
    as one line)."""
    return error_response(api.ApiError(500, "internal_error", "internal server error"))


def build_app(state: Any) -> Guard:
    """The ASGI app for an :class:`.server.App` (its shared state)."""
    routes = [
        Route("/", page, methods=["GET"]),
        Route("/index.html", page, methods=["GET"]),
        Route("/health", health, methods=["GET"]),
        Route("/v1/models", openai_models, methods=["GET"]),
        Route("/api/models", picker_models, methods=["GET"]),
        Route("/static/{name}", static_file, methods=["GET"]),
        Route("/v1/completions", completions, methods=["POST"]),
        Route("/v1/chat/completions", chat_completions, methods=["POST"]),
    ]
    app = Starlette(routes=routes, exception_handlers={api.ApiError: _api_error,
                                                       HTTPException: _http_error,
                                                       Exception: _bug})
    app.state.pocketlm = state
    return Guard(app, state.config.loopback)

