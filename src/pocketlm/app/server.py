"""The HTTP server: uvicorn serving the Starlette app of :mod:`.routes` on a socket bound here.

Generation happens in worker processes (:mod:`.worker`); the event loop only moves bytes,
and every blocking step (the queue, a worker's pipe, tokenizing a prompt) runs on threads
(:mod:`.jobs`, :mod:`.routes`).

Safety: binds to 127.0.0.1 unless told otherwise; on loopback it also checks the Host header
(a web page elsewhere cannot reach the API through DNS rebinding) and answers no CORS
preflight, so other sites cannot post JSON to it; bodies are size-limited; malformed requests
get JSON errors (:mod:`.protocol`); prompts are not logged unless ``log_prompts`` is set.
"""

from __future__ import annotations

import logging
import signal
import socket
import threading
from importlib import resources
from typing import Any, Callable

import uvicorn

from ..safety import ProfanityFilter
from .catalog import ModelCatalog
from .protocol import MAX_HEAD, protocol_class
from .routes import build_app
from .settings import ServerConfig
from .worker import WorkerPool

# The listen backlog: a burst of connections at once (a page reloading, a script firing
# requests) waits to be accepted instead of being reset; the bounded queue then answers 503.
BACKLOG = 256
# Seconds a stop waits for answers in flight (streams end sooner: stopping cancels them).
GRACEFUL_STOP_S = 5


class App:
    """Everything the request handlers share."""

    def __init__(self, config: ServerConfig) -> None:
        self.config = config
        self.catalog = ModelCatalog(config.models_dir)
        self.catalog.scan()
        self.pool = WorkerPool(config)
        self.filter = ProfanityFilter(extra_words=config.block_words, allow=config.allow_words)
        self.stopping = threading.Event()  # set on Ctrl-C/SIGTERM: jobs in flight cancel

    def static(self, name: str) -> bytes | None:
        ref = resources.files("pocketlm.app") / "static" / name
        return ref.read_bytes() if ref.is_file() else None


class _Uvicorn(uvicorn.Server):
    def __init__(self, config: uvicorn.Config, app: App) -> None:
        super().__init__(config)
        self.app = app

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        # uvicorn waits for answers in flight before it stops; streams and queued requests
        # would make that wait long, so they are told to end now. Not before the listening
        # socket is closed: a page whose stream ends asks /health whether the server is gone.
        for server in self.servers:
            server.close()
        self.app.stopping.set()
        await super().shutdown(sockets)


class Server:
    """uvicorn on a socket bound here (so that a bind error is the caller's to report, and
    ``server_address`` is known before serving). The names follow socketserver's."""

    def __init__(self, sock: socket.socket, app: App) -> None:
        self.socket = sock
        self.server_address = sock.getsockname()
        config = uvicorn.Config(
            build_app(app), http=protocol_class(app.config.loopback), lifespan="off",
            log_config=None, access_log=False,  # routes.Guard logs (escaped, no prompts)
            server_header=False, backlog=BACKLOG, timeout_graceful_shutdown=GRACEFUL_STOP_S,
            h11_max_incomplete_event_size=MAX_HEAD, ws="none")
        self._uvicorn = _Uvicorn(config, app)

    def serve_forever(self, poll_interval: float = 0.25) -> None:
        """Serve until Ctrl-C or SIGTERM; uvicorn stops gracefully, then raises
        KeyboardInterrupt (SIGINT, or SIGTERM through :func:`_interrupt`) here."""
        self._uvicorn.run(sockets=[self.socket])

    def shutdown(self) -> None:
        """Ask :meth:`serve_forever`, running on another thread, to stop (it returns once
        the answers in flight are done)."""
        self._uvicorn.should_exit = True

    def server_close(self) -> None:
        self.socket.close()


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        # A port left in TIME_WAIT by a stopped server is free; SO_REUSEPORT is never set,
        # so no other server can share the port.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(BACKLOG)
    except BaseException:
        sock.close()
        raise
    return sock


def make_server(config: ServerConfig) -> tuple[Server, App]:
    """Raises OSError when the address cannot be bound."""
    sock = _bind(config.host, config.port)
    try:
        app = App(config)
        return Server(sock, app), app
    except BaseException:
        sock.close()
        raise


def _interrupt(*_: Any) -> None:
    raise KeyboardInterrupt  # SIGTERM stops the server like Ctrl-C: workers are stopped too


def _announce(line: str) -> None:
    print(line, flush=True)


def serve(config: ServerConfig, announce: Callable[[str], None] = _announce) -> None:
    """Run until interrupted (Ctrl-C or SIGTERM). Raises PocketLMError (one line) when the
    address cannot be bound: a port in use, a port the user may not open, a bad host."""
    # uvicorn's warnings (a malformed request it refused) as plain lines; its info
    # messages repeat what is announced here.
    logging.getLogger("uvicorn.error").setLevel(logging.WARNING)
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
