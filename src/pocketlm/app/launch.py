"""From ``pocketlm serve [MODEL or MODELS_DIR]`` to a :class:`ServerConfig`.

* no argument: the embedded default model, converted once and cached (the conversion, which
  needs TensorFlow, runs in a child process so the server itself never imports it); the
  cache directory is the models directory;
* a ``.tflite`` file or a ``.litertlm`` bundle: that model, its directory is the models
  directory;
* a directory: its first compatible model (by name) is the default.

The address is checked first (:func:`check_bind`), before any model is converted, so a port in
use or a host that is not this machine's costs the user one line and no wait.
"""

from __future__ import annotations

import errno
import socket
import subprocess
import sys
from pathlib import Path
from typing import Callable

from ..errors import ContractError, ModelFileError, PocketLMError
from .catalog import MODEL_SUFFIXES, ModelCatalog
from .settings import ServerConfig

# Every embedded model is converted (once, then cached) so the model picker offers them all.
_CONVERT = ("import sys; from pocketlm.demo import cached_embedded_models; "
            "print(cached_embedded_models(lambda m: print(m, file=sys.stderr, flush=True)))")


def _codes(*names: str) -> set[int]:
    # Windows sockets report WSA codes (10048 for "in use"), which errno also names there.
    return {getattr(errno, n) for n in names if hasattr(errno, n)}


def bind_error(host: str, port: int, exc: OSError) -> str:
    """One line for an OS error from binding ``host:port``: what happened and what to do."""
    shown = f"[{host}]" if ":" in host else host or "every address"
    where = f"{shown}:{port}"
    code = exc.errno
    if isinstance(exc, socket.gaierror):
        return (f"cannot listen on host {host!r}: it is not an address or a name this machine "
                f"can resolve ({exc.strerror}); use an address of this machine, e.g. --host "
                "127.0.0.1 (this machine only)")
    if code in _codes("EADDRINUSE", "WSAEADDRINUSE"):
        other = port + 1 if 0 < port < 65535 else 8766
        return (f"port {port} is already in use on {shown} (another program, or another "
                f"`pocketlm serve`?): stop it, or pick another port with --port, e.g. "
                f"--port {other} (--port 0 takes any free port)")
    if code in _codes("EACCES", "EPERM", "WSAEACCES"):
        low = " (ports below 1024 need administrator rights)" if 0 < port < 1024 else ""
        return (f"permission denied to listen on {where}{low}: pick another port with "
                "--port, e.g. --port 8765")
    if code in _codes("EADDRNOTAVAIL", "EAFNOSUPPORT", "WSAEADDRNOTAVAIL", "WSAEAFNOSUPPORT"):
        return (f"cannot listen on {host}: it is not an address of this machine "
                f"({exc.strerror}); use one that is, e.g. --host 127.0.0.1 (this machine only)")
    return f"cannot listen on {where}: {exc.strerror or exc}"


def check_bind(host: str, port: int) -> None:
    """Raise PocketLMError (one line, see :func:`bind_error`) if ``host:port`` cannot be bound.

    A probe: the socket is closed again at once; the server binds for real later (and reports
    the same way if the address was taken meanwhile). Port 0 is always free.
    """
    try:
        # The same family and address as the server's bind (server.make_server).
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        with socket.socket(family, socket.SOCK_STREAM) as sock:
            # As the HTTP server does: a port left in TIME_WAIT by a stopped server is free.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((host, port))
    except OSError as exc:
        raise PocketLMError(bind_error(host, port, exc)) from None
    except (UnicodeError, TypeError):  # a name IDNA cannot encode ("ü..x"): "encoding failed"
        raise PocketLMError(f"cannot listen on host {host!r}: not a valid host name; use an "
                            "address of this machine, e.g. --host 127.0.0.1") from None


def _read_words(path: str | None) -> list[str]:
    if not path:
        return []
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise PocketLMError(f"cannot read the word list {path}: {exc}") from None
    return [w.strip() for w in text.splitlines() if w.strip() and not w.startswith("#")]


def embedded_default(progress: Callable[[str], None]) -> tuple[Path | None, str]:
    """(path of the converted embedded model, "") or (None, why there is none)."""
    from ..demo import cache_dir
    from ..presets import DEFAULT_PRESET, embedded_preset_dir

    if embedded_preset_dir(DEFAULT_PRESET) is None:
        return None, (f"the embedded model {DEFAULT_PRESET} is not in this install: give a "
                      f"model, e.g. `pocketlm serve model.tflite`, or put one in {cache_dir()}")
    progress(f"preparing the embedded models, {DEFAULT_PRESET} first (converted once, then "
             "cached)")
    proc = subprocess.run([sys.executable, "-c", _CONVERT], stdout=subprocess.PIPE,
                          stderr=None, text=True)
    lines = proc.stdout.strip().splitlines()
    if proc.returncode != 0 or not lines:
        return None, (f"the embedded model {DEFAULT_PRESET} could not be converted (see the "
                      "messages above; the conversion needs `pip install pocketlm[convert]`)")
    return Path(lines[-1]), ""


def build_config(args, progress: Callable[[str], None]) -> ServerConfig:
    """The server settings for parsed ``serve`` arguments. Raises PocketLMError."""
    if not 0 <= args.port <= 65535:
        raise PocketLMError(f"--port {args.port} is not a port: use 1 to 65535 (0 = any free)")
    check_bind(args.host, args.port)
    target = Path(args.model) if args.model else None
    models_dir = Path(args.models_dir) if args.models_dir else None
    default: str | None = None
    reason = ""
    if target is None:
        path, reason = embedded_default(progress)
        if path is not None:
            models_dir = models_dir or path.parent
            if path.parent.resolve() == models_dir.resolve():
                default = path.name
        if models_dir is None:
            from ..demo import cache_dir
            models_dir = cache_dir()
    elif target.is_dir():
        models_dir = models_dir or target
    elif target.is_file():
        if target.suffix not in MODEL_SUFFIXES:
            raise ModelFileError(f"{target} is not a .tflite file or a .litertlm bundle")
        models_dir = models_dir or target.parent
        if target.resolve().parent != models_dir.resolve():
            raise PocketLMError(f"{target} is not in the models directory {models_dir}")
        default = target.name
    else:
        raise ModelFileError(f"model file not found: {target}")
    catalog = ModelCatalog(models_dir)
    entries = catalog.scan()
    if default is not None:
        entry = catalog.get(default)
        if entry is not None and not entry.compatible:
            raise ContractError(f"{target or default} is not a compatible language model: "
                                f"{entry.reason}")
    else:
        first = next((e for e in entries if e.compatible), None)
        if first is not None:
            default, reason = first.id, ""
        elif not reason:
            reason = (f"no compatible .tflite or .litertlm model in {models_dir}: convert "
                      f"one there with `pocketlm convert ... -o {models_dir}/model.tflite`")
    try:
        return ServerConfig(host=args.host, port=args.port, models_dir=models_dir,
                            default_model=default, no_model_reason=reason,
                            queue_size=args.queue_size, log_prompts=args.log_prompts,
                            threads=args.threads, token_delay=args.token_delay,
                            block_words=_read_words(args.block_words),
                            allow_words=_read_words(args.allow_words))
    except ValueError as exc:
        raise PocketLMError(str(exc)) from None
