"""Load untrusted model files in a child process first, so a native crash cannot take us down.

LiteRT is C++: a corrupt or hostile flatbuffer that passes its checks can still abort or
segfault the process that loads it. :func:`verify_in_child` loads the file and runs one
step in a child process; only if that child comes back clean does the caller load it
itself. Files that passed are remembered (keyed by path, size and mtime), so the cost is
paid once per file.

Run as ``python -m pocketlm.runtime.guard MODEL`` it is that child.
"""

from __future__ import annotations

import hashlib
import json
import signal
import subprocess
import sys
from pathlib import Path

from ..config import cache_root
from ..errors import ContractError, ModelFileError, PocketLMError
from ..paths import check_model_file

_OK = "POCKETLM-GUARD-OK"
_ERR = "POCKETLM-GUARD-ERROR"


def _verified_dir() -> Path:
    return cache_root() / "verified"


def _key(path: Path) -> str:
    st = path.stat()
    return hashlib.sha256(f"{path.resolve()}|{st.st_size}|{st.st_mtime_ns}".encode()).hexdigest()


def verify_in_child(path: str | Path, tokenizer: str | None = None, timeout: float = 120.0,
                    remember: bool = True) -> None:
    """Raise a clear :class:`PocketLMError` unless a child process can load ``path`` and run
    one step with it. A crash of the child (a signal) becomes a :class:`ModelFileError`."""
    p = check_model_file(path)
    marker = _verified_dir() / _key(p)
    if remember and marker.exists():
        return
    cmd = [sys.executable, "-m", "pocketlm.runtime.guard", str(p)]
    if tokenizer:
        cmd += ["--tokenizer", tokenizer]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise ModelFileError(f"{p}: loading it did not finish in {timeout:.0f}s") from None
    if proc.returncode < 0:
        name = signal.Signals(-proc.returncode).name
        raise ModelFileError(f"{p} crashed the LiteRT interpreter ({name}) while loading; "
                             "the file is corrupt or not supported")
    for line in proc.stdout.splitlines():
        if line.startswith(_ERR):
            info = json.loads(line[len(_ERR):])
            cls = {"ContractError": ContractError, "ModelFileError": ModelFileError}.get(
                info["type"], PocketLMError)
            raise cls(info["message"])
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
    args = parser.parse_args(argv)
    try:
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
        print(_ERR + json.dumps({"type": "ModelFileError",
                                 "message": f"{args.model} could not be run: "
                                            f"{str(exc).strip().splitlines()[0][:300]}"}),
              flush=True)
        return 0
    print(_OK, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(_child(sys.argv[1:]))
