"""The HTTP server: the web page, the OpenAI-compatible API and server-sent events.

The standard library's ThreadingHTTPServer is enough here: one local user, a handful of
requests, and generation itself happens in worker processes (:mod:`.worker`). HTTP/1.0
responses (the connection closes after each) keep streaming simple: an SSE body just ends.

Safety: binds to 127.0.0.1 unless told otherwise; on loopback it also checks the Host header
(a web page elsewhere cannot reach the API through DNS rebinding) and answers no CORS
preflight, so other sites cannot post JSON to it; bodies are size-limited; prompts are not
logged unless ``log_prompts`` is set.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import re
import select
import signal
import socket
import sys
import threading
from dataclasses import asdict
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from typing import Any, Callable

from .. import __version__
from ..safety import ProfanityFilter
from . import api
from .catalog import ModelCatalog
from .settings import ServerConfig
from .worker import Busy, ClientGone, WorkerError, WorkerPool

STATIC_TYPES = {".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8",
                ".css": "text/css; charset=utf-8", ".svg": "image/svg+xml",
                ".png": "image/png"}
_STATIC_PATH = re.compile(r"^/static/([a-z0-9_-]+\.(?:js|css|svg|png))$")
SECURITY_HEADERS = {
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; "
                               "connect-src 'self'; frame-ancestors 'none'",
}
LOOPBACK_NAMES = {"127.0.0.1", "localhost", "[::1]", "::1"}
# What the log shows instead of control characters (the standard library's own table, which
# this module's log_message replaces, is private and missing before Python 3.11.1).
_CONTROL_CHARS = str.maketrans({c: f"\\x{c:02x}" for c in (*range(0x20), *range(0x7f, 0xa0))})
_CONTROL_CHARS[ord("\\")] = "\\\\"


class App:
    """Everything the request handlers share."""

    def __init__(self, config: ServerConfig) -> None:
        self.config = config
        self.catalog = ModelCatalog(config.models_dir)
        self.catalog.scan()
        self.pool = WorkerPool(config)
        self.filter = ProfanityFilter(extra_words=config.block_words, allow=config.allow_words)

    def static(self, name: str) -> bytes | None:
        ref = resources.files("pocketlm.app") / "static" / name
        return ref.read_bytes() if ref.is_file() else None


class Handler(BaseHTTPRequestHandler):
    server_version = f"pocketlm/{__version__}"
    sys_version = ""
    timeout = 60  # seconds a socket may stall (slow or stuck clients do not hold a thread)
    app: App  # set on the subclass that make_server builds

    # -- routing --------------------------------------------------------------------------
    def do_GET(self) -> None:  # noqa: N802 (the stdlib's naming)
        self._dispatch(self._get)

    def do_HEAD(self) -> None:  # noqa: N802
        self._dispatch(self._get)

    def do_POST(self) -> None:  # noqa: N802
        self._dispatch(self._post)

    def _method_not_allowed(self) -> None:
        self._dispatch(lambda path: self._error(api.ApiError(
            405, "method_not_allowed", f"{self.command} is not allowed here")))

    do_PUT = do_DELETE = do_PATCH = do_OPTIONS = _method_not_allowed

    def _dispatch(self, route: Callable[[str], None]) -> None:
        path = self.path.split("?", 1)[0]
        try:
            if not self._host_allowed():
                raise api.ApiError(421, "misdirected_request",
                                   "this server answers only to localhost and loopback "
                                   "addresses such as 127.0.0.1")
            route(path)
        except api.ApiError as exc:
            self._error(exc)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client left
        except Exception as exc:  # noqa: BLE001 - a bug: answer 500 and keep serving
            self.log_error("internal error: %s: %s", type(exc).__name__, exc)
            with contextlib.suppress(OSError):
                self._error(api.ApiError(500, "internal_error", "internal server error"))

    def _get(self, path: str) -> None:
        if path in ("/", "/index.html"):
            return self._static("index.html")
        if path == "/health":
            return self._json(200, self._health())
        if path == "/v1/models":
            default = self.app.config.default_model
            data = [api.model_card(e, default) for e in self.app.catalog.scan() if e.compatible]
            return self._json(200, {"object": "list", "data": data})
        if path == "/api/models":
            return self._json(200, self._models())
        m = _STATIC_PATH.match(path)
        if m:
            return self._static(m.group(1))
        raise api.ApiError(404, "not_found", f"nothing at {path}")

    def _post(self, path: str) -> None:
        if path != "/v1/completions":
            raise api.ApiError(404, "not_found", f"nothing at {path}")
        body = self._read_json()
        try:
            plan = api.plan_completion(body, self.app.catalog, self.app.config,
                                       self.app.filter)
        except api.ApiError as exc:
            if exc.kind == "content_filter":
                self.app.pool.count("rejected_prompts")
            raise
        if self.app.config.log_prompts:
            self.log_message("prompt for %s: %r", plan.entry.id, plan.prepared.text[:200])
        self._complete(plan)

    # -- completions ----------------------------------------------------------------------
    def _complete(self, plan: api.Plan) -> None:
        pool = self.app.pool
        try:
            with pool.acquire(plan.entry, self.client_gone) as worker:
                try:
                    worker.ensure_started()
                except WorkerError as exc:
                    pool.count("failed")
                    raise _worker_error(exc) from None
                if plan.stream:
                    self._stream(plan, worker)
                else:
                    self._collect(plan, worker)
        except Busy:
            raise api.ApiError(503, "server_busy", f"the model {plan.entry.id} is busy with "
                               "other requests: try again in a moment",
                               headers={"Retry-After": "1"}) from None
        except ClientGone:
            pool.count("cancelled")

    def _collect(self, plan: api.Plan, worker) -> None:
        outcome = None
        try:
            with contextlib.closing(worker.run(plan.request, self.client_gone)) as events:
                for kind, data in events:
                    if kind == "done":
                        outcome = data
                    elif kind == "error":
                        raise _event_error(data)
                    elif kind == "cancelled":
                        raise ClientGone()
        except WorkerError as exc:
            self.app.pool.count("failed")
            raise _worker_error(exc) from None
        self.app.pool.count("completed")
        assert outcome is not None
        self._json(200, api.completion_body(plan, outcome))

    def _stream(self, plan: api.Plan, worker) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream; charset=utf-8")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("X-Accel-Buffering", "no")
        self.end_headers()
        try:
            self._event(api.start_chunk(plan))
            with contextlib.closing(worker.run(plan.request, self.client_gone)) as events:
                for kind, data in events:
                    if kind == "piece":
                        self._event(api.chunk(plan, data["text"], None, data.get("logprobs")))
                    elif kind == "retry":
                        self._event(api.chunk(plan, event="retry", **data))
                    elif kind == "done":
                        self.app.pool.count("completed")
                        self._event(api.final_chunk(plan, data))
                        if plan.include_usage:
                            self._event(api.usage_chunk(plan, data))
                    elif kind == "error":
                        self._event(_event_error(data).body())
                    elif kind == "cancelled":
                        raise ClientGone()
        except WorkerError as exc:
            self.app.pool.count("failed")
            self._event(_worker_error(exc).body())
        except (BrokenPipeError, ConnectionResetError):
            raise ClientGone() from None
        self._write(b"data: [DONE]\n\n")

    # -- client -----------------------------------------------------------------------------
    def client_gone(self) -> bool:
        """Whether the client closed its connection (it sends nothing after its request,
        so a readable socket means end of file or a reset)."""
        try:
            readable, _, _ = select.select([self.connection], [], [], 0)
            return bool(readable) and self.connection.recv(1, socket.MSG_PEEK) == b""
        except (OSError, ValueError):
            return True

    def _host_allowed(self) -> bool:
        if not self.app.config.loopback:
            return True
        host = (self.headers.get("Host") or "").strip().lower()
        name = host.rsplit(":", 1)[0] if not host.endswith("]") else host
        if name in LOOPBACK_NAMES:
            return True
        # Any loopback address written as a number (the server may be bound to 127.0.0.2):
        # DNS rebinding needs a host *name*, and names other than localhost stay refused.
        try:
            return ipaddress.ip_address(name.strip("[]")).is_loopback
        except ValueError:
            return False

    def _read_json(self) -> Any:
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            raise api.ApiError(411, "length_required", "send a Content-Length (no chunked "
                               "bodies)")
        length = self.headers.get("Content-Length")
        # ASCII digits only: str.isdigit() also takes "²" or "١٠", which int() then
        # refuses (a 500) or reads as a number the client did not write.
        if length is None or not (length.isascii() and length.isdigit()):
            raise api.ApiError(411, "length_required", "send a Content-Length")
        limit = self.app.config.max_body_bytes
        if int(length) > limit:
            self.close_connection = True
            raise api.ApiError(413, "request_too_large",
                               f"the request body is over {limit} bytes")
        ctype = (self.headers.get("Content-Type") or "").split(";")[0].strip().lower()
        if ctype != "application/json":
            raise api.ApiError(415, "unsupported_media_type",
                               "send the body as JSON (Content-Type: application/json)")
        raw = self.rfile.read(int(length))
        try:
            return json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, ValueError) as exc:
            raise api.bad_request(f"the body is not valid JSON: {exc}") from None
        except RecursionError:  # [[[[...]]]]: a 64 KiB body can nest deeper than Python
            raise api.bad_request("the body is nested too deeply") from None

    # -- responses --------------------------------------------------------------------------
    def _health(self) -> dict[str, Any]:
        cfg = self.app.config
        return {"status": "ok", "version": __version__, "default_model": cfg.default_model,
                "workers": self.app.pool.describe(), "stats": asdict(self.app.pool.stats),
                "queue_size": cfg.queue_size}

    def _models(self) -> dict[str, Any]:
        cfg = self.app.config
        entries = self.app.catalog.scan()
        reason = ""
        if cfg.default_model is None or not any(e.compatible for e in entries):
            reason = cfg.no_model_reason or api.no_model_message(cfg)
        return {"models": [e.describe() for e in entries], "default": cfg.default_model,
                "models_dir": str(cfg.models_dir) if cfg.models_dir else None,
                "no_model": reason}

    def _static(self, name: str) -> None:
        data = self.app.static(name)
        if data is None:
            raise api.ApiError(404, "not_found", f"no file {name}")
        ext = name[name.rfind("."):]
        self._send(200, data, STATIC_TYPES.get(ext, "application/octet-stream"),
                   {"Cache-Control": "no-cache", **SECURITY_HEADERS})

    def _json(self, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
        data = json.dumps(body, ensure_ascii=False).encode("utf-8")
        self._send(status, data, "application/json; charset=utf-8", headers or {})

    def _error(self, exc: api.ApiError) -> None:
        self._json(exc.status, exc.body(), exc.headers)

    def _send(self, status: int, data: bytes, ctype: str, headers: dict[str, str]) -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data)))
        self.send_header("X-Content-Type-Options", "nosniff")
        for k, v in headers.items():
            self.send_header(k, v)
        self.end_headers()
        if self.command != "HEAD":
            self._write(data)

    def _event(self, body: dict[str, Any]) -> None:
        self._write(b"data: " + json.dumps(body, ensure_ascii=False).encode("utf-8") + b"\n\n")

    def _write(self, data: bytes) -> None:
        self.wfile.write(data)
        self.wfile.flush()

    def send_error(self, code: int, message: str | None = None,
                   explain: str | None = None) -> None:
        """The standard library's own refusals (a malformed request line, a path or headers
        too long, too many headers, an unknown method) as JSON errors, like every other
        answer, instead of its HTML page."""
        self.close_connection = True
        if len(getattr(self, "requestline", "").split()) != 2:
            # Only a two-word request line is real HTTP/0.9 (an answer without a status
            # line); a bad version or a garbled line still gets a status line.
            self.request_version = "HTTP/1.0"
        self.log_error("code %d, message %s", code, message)
        try:
            phrase = HTTPStatus(code).phrase
        except ValueError:
            phrase = "error"
        kind = "invalid_request_error" if code == 400 else \
            re.sub(r"[^a-z0-9]+", "_", phrase.lower()).strip("_")
        with contextlib.suppress(OSError):
            self._error(api.ApiError(code, kind, message or phrase,
                                     headers={"Connection": "close"}))

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (stdlib name)
        # The request line holds a method and a path, never a prompt (prompts travel in
        # POST bodies), so the default access log is safe to keep. Control characters are
        # escaped as the standard library does (a raw ESC in a path must not drive the
        # terminal that shows the log).
        line = (format % args).translate(_CONTROL_CHARS)
        sys.stderr.write(f"{self.address_string()} {line}\n")


def _worker_error(exc: WorkerError) -> api.ApiError:
    status = 400 if exc.kind == "model_not_compatible" else 500
    return api.ApiError(status, exc.kind, str(exc))


def _event_error(data: dict[str, Any]) -> api.ApiError:
    kind = data.get("type", "model_failed")
    status = 400 if kind == "invalid_request_error" else 500
    return api.ApiError(status, kind, data.get("message", "the model failed"))


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    allow_reuse_port = False  # never share a port with another server (Python 3.14 defaults on)
    # The listen backlog: socketserver's default of 5 makes the kernel reset connections
    # when a burst arrives at once (a page reloading, a script firing requests); a larger
    # backlog lets them wait to be accepted, and the bounded queue then answers 503.
    request_queue_size = 256


class _Server6(_Server):
    address_family = socket.AF_INET6


def make_server(config: ServerConfig) -> tuple[ThreadingHTTPServer, App]:
    app = App(config)
    handler = type("BoundHandler", (Handler,), {"app": app})
    cls = _Server6 if ":" in config.host else _Server
    return cls((config.host, config.port), handler), app


def _interrupt(*_: Any) -> None:
    raise KeyboardInterrupt  # SIGTERM stops the server like Ctrl-C: workers are stopped too


def _announce(line: str) -> None:
    print(line, flush=True)


def serve(config: ServerConfig, announce: Callable[[str], None] = _announce) -> None:
    """Run until interrupted (Ctrl-C or SIGTERM). Raises PocketLMError (one line) when the
    address cannot be bound: a port in use, a port the user may not open, a bad host."""
    try:
        httpd, app = make_server(config)
    except OSError as exc:
        from ..errors import PocketLMError
        from .launch import bind_error
        raise PocketLMError(bind_error(config.host, config.port, exc)) from None
    host, port = httpd.server_address[:2]
    shown = f"[{host}]" if ":" in str(host) else host
    announce(f"pocketlm app: http://{shown}:{port}/")
    announce(f"  models: {config.models_dir or '(none)'}; default: "
             f"{config.default_model or '(none: ' + (config.no_model_reason or 'no model') + ')'}")
    if not config.loopback:
        announce(f"  warning: listening on {host}, not loopback: anyone who can reach it can "
                 "use the app (there is no authentication)")
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _interrupt)
    try:
        httpd.serve_forever(poll_interval=0.25)
    except KeyboardInterrupt:
        pass
    finally:
        httpd.server_close()
        app.pool.close()
