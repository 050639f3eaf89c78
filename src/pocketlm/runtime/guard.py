"""Load untrusted model files in a child process first, so a native crash cannot take us down.

LiteRT and LiteRT-LM are C++: a corrupt or hostile file that passes their checks can still
abort or segfault the process that loads it. :func:`verify_in_child` loads the file with the
engine the caller will use (pocketlm's runtime, or LiteRT-LM for ``--engine litert-lm``) and
runs one step in a child process; only if that child comes back clean does the caller load
it itself. Files that passed are remembered per engine (keyed by path, size and mtime), so
the cost is paid once per file.

Run as ``python -m pocketlm.runtime.guard MODEL [--engine litert-lm]`` it is that child.
"""

from __future__ import annotations

import hashlib
import json
import signal
import subprocess
import sys
from pathlib import Path

from ..config import cache_root
from ..errors import ContractError, ModelFileError, PocketLMError, first_line
from ..paths import check_model_file

_OK = "POCKETLM-GUARD-OK"
_ERR = "POCKETLM-GUARD-ERROR"
# engine -> (what a crash took down, seconds the child may take by default). LiteRT-LM packs
# the weights for XNNPACK while it loads (its cache makes the caller's load fast after).
ENGINES = {"pocketlm": ("the LiteRT interpreter", 120.0), "litert-lm": ("LiteRT-LM", 300.0)}
PROBE_PROMPT = "Hello"  # the litert-lm child generates one token after it


def _verified_dir() -> Path:
    return cache_root() / "verified"


def _key(path: Path, engine: str = "pocketlm") -> str:
    st = path.stat()
    # pocketlm's own key has no engine part, so files verified before engines existed count.
    tag = "" if engine == "pocketlm" else f"|{engine}"
    return hashlib.sha256(f"{path.resolve()}|{st.st_size}|{st.st_mtime_ns}{tag}".encode()
                          ).hexdigest()


def verify_in_child(path: str | Path, tokenizer: str | None = None,
                    timeout: float | None = None, remember: bool = True,
                    engine: str = "pocketlm") -> None:
    """Raise a clear one-line :class:`PocketLMError` unless a child process can load ``path``
    with ``engine`` (``"pocketlm"``: :func:`~pocketlm.runtime.loader.load_model`, then one
    prefill and one decode; ``"litert-lm"``: :class:`~pocketlm.runtime.litert_lm_engine.
    LiteRTLMEngine`, then one generated token) within ``timeout`` seconds (default: 120 for
    pocketlm, 300 for LiteRT-LM, which packs weights while loading). A crash of the child (a
    signal) or a timeout becomes a :class:`ModelFileError`; a refusal keeps its class
    (:class:`ContractError` for a file the engine does not run)."""
    if engine not in ENGINES:
        raise ValueError(f"unknown engine {engine!r}: one of {', '.join(ENGINES)}")
    what, default_timeout = ENGINES[engine]
    timeout = default_timeout if timeout is None else timeout
    p = check_model_file(path)
    marker = _verified_dir() / _key(p, engine)
    if remember and marker.exists():
        return
    cmd = [sys.executable, "-m", "pocketlm.runtime.guard", str(p), "--engine", engine]
    if tokenizer:
        cmd += ["--tokenizer", tokenizer]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise ModelFileError(f"{p}: loading it in {what} did not finish in {timeout:.0f}s "
                             "(a hang, or a file too big for this machine)") from None
    if proc.returncode < 0:
        try:
            name = signal.Signals(-proc.returncode).name
        except ValueError:
            name = f"signal {-proc.returncode}"
        raise ModelFileError(f"{p} crashed {what} ({name}) while loading; "
                             "the file is corrupt or not supported")
    for line in proc.stdout.splitlines():
        if line.startswith(_ERR):
            info = json.loads(line[len(_ERR):])
            cls = {"ContractError": ContractError, "ModelFileError": ModelFileError}.get(
                info["type"], PocketLMError)
            raise cls(first_line(info["message"]))
    if _OK not in proc.stdout:
        tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        raise ModelFileError(f"{p} could not be loaded (exit {proc.returncode}: {tail})")
    if remember:
        try:
            marker.parent.mkdir(parents=True, exist_ok=True)
            marker.write_text(str(p.resolve()))
        except OSError:
            pass  # a read-only cache only costs the check again next time


def _child(argv: list[str]) -> int:
    import argparse

    import numpy as np

    from .loader import load_model

    parser = argparse.ArgumentParser()
    parser.add_argument("model")
    parser.add_argument("--tokenizer")
    parser.add_argument("--engine", choices=list(ENGINES), default="pocketlm")
    args = parser.parse_args(argv)
    try:
        if args.engine == "litert-lm":
            _probe_litert_lm(args.model)
            print(_OK, flush=True)
            return 0
        model = load_model(args.model, tokenizer=args.tokenizer)
        if hasattr(model, "start"):  # token-level models: run one prefill and one decode
            logits = np.asarray(model.start([model.end_token_id]))
            if not np.isfinite(logits).all():
                raise ModelFileError(f"{args.model} produces non-finite logits")
            model.step(int(np.argmax(logits)))
    except PocketLMError as exc:
        print(_ERR + json.dumps({"type": type(exc).__name__, "message": str(exc)}), flush=True)
        return 0
    except Exception as exc:  # anything else from LiteRT: the file is not usable
        why = first_line(exc, 300)
        print(_ERR + json.dumps({"type": "ModelFileError",
                                 "message": f"{args.model} could not be run: {why}"}),
              flush=True)
        return 0
    print(_OK, flush=True)
    return 0


def _probe_litert_lm(path: str) -> None:
    """Load ``path`` in LiteRT-LM and generate one token (the child's work)."""
    from .litert_lm_engine import LiteRTLMEngine

    with LiteRTLMEngine(path, num_threads=1) as engine:
        engine.generate(PROBE_PROMPT, 1)


if __name__ == "__main__":
    sys.exit(_child(sys.argv[1:]))
