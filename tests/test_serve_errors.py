"""``pocketlm serve`` when the address cannot be bound: every OS error at startup (a port in
use, a port below 1024 without the right, a host that is not this machine's, a port out of
range) is one line on stderr and a non-zero exit, never a traceback, and it comes before any
model is converted or loaded."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import REPO


def serve(*args: str, target: Path | None = None, prefix: tuple[str, ...] = (),
          env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    cmd = [*prefix, sys.executable, "-m", "pocketlm.cli", "serve"]
    cmd += [str(target)] if target is not None else []
    return subprocess.run([*cmd, *args], capture_output=True, text=True, cwd=REPO, timeout=60,
                          env={**os.environ, **(env or {})})


def assert_one_line_error(proc: subprocess.CompletedProcess) -> str:
    assert proc.returncode != 0, proc
    assert "Traceback" not in proc.stderr + proc.stdout, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("pocketlm: error: "), proc.stderr
    return lines[0]


@pytest.fixture
def taken():
    """A loopback port that another program (this test) is listening on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield sock.getsockname()[1]


def test_port_in_use(taken, tmp_path):
    line = assert_one_line_error(serve("--port", str(taken), target=tmp_path))
    assert f"port {taken} is already in use" in line and "--port" in line
    assert f"--port {taken + 1}" in line and "--port 0" in line


def test_port_in_use_is_reported_before_the_embedded_model_is_converted(taken, tmp_path):
    # No model argument: the embedded model would be converted first (a minute, needs
    # TensorFlow); the port is checked before that, so the answer is immediate.
    proc = serve("--port", str(taken), env={"POCKETLM_CACHE": str(tmp_path)})
    line = assert_one_line_error(proc)
    assert f"port {taken} is already in use" in line
    assert "preparing the embedded model" not in proc.stderr + proc.stdout
    assert not any(tmp_path.iterdir())


def test_port_in_use_on_every_address(taken, tmp_path):
    line = assert_one_line_error(serve("--host", "0.0.0.0", "--port", str(taken),
                                       target=tmp_path))
    assert f"port {taken} is already in use on 0.0.0.0" in line


def _without_bind_right() -> tuple[str, ...] | None:
    """A command prefix under which port 80 cannot be bound, or None if this machine cannot
    make one: root drops CAP_NET_BIND_SERVICE with setpriv; other users have no right anyway
    unless the kernel lets everyone bind low ports."""
    start = Path("/proc/sys/net/ipv4/ip_unprivileged_port_start")
    low_ports_free = start.exists() and int(start.read_text()) <= 80
    if low_ports_free:
        return None
    if os.geteuid() != 0:
        return ()
    if shutil.which("setpriv") is None:
        return None
    prefix = ("setpriv", "--bounding-set", "-net_bind_service")
    probe = subprocess.run([*prefix, sys.executable, "-c", "import socket; "
                            "socket.socket().bind(('127.0.0.1', 80))"], capture_output=True)
    return prefix if probe.returncode != 0 and b"PermissionError" in probe.stderr else None


def test_port_below_1024_without_the_right(tmp_path):
    prefix = _without_bind_right()
    if prefix is None:
        pytest.skip("cannot drop the right to bind port 80 here (no setpriv, or low ports "
                    "are open to everyone)")
    line = assert_one_line_error(serve("--port", "80", target=tmp_path, prefix=prefix))
    assert "permission denied" in line and ":80" in line and "below 1024" in line
    assert "--port 8765" in line


@pytest.mark.parametrize("host,expected", [
    ("nosuch.invalid", "cannot listen on host 'nosuch.invalid'"),  # no such name (RFC 2606)
    ("999.1.1.1", "cannot listen on host '999.1.1.1'"),            # not an address
    ("a..b", "cannot listen on host 'a..b'"),                     # not a host name
    ("ü..x", "cannot listen on host 'ü..x'"),                     # nor one IDNA can encode
    ("ä" * 70, "cannot listen on host"),                          # a label too long
    ("[::1]", "cannot listen on host '[::1]'"),                   # brackets belong in URLs
    ("192.0.2.1", "cannot listen on 192.0.2.1: it is not an address of this machine"),
])
def test_bad_host(host, expected, tmp_path):
    line = assert_one_line_error(serve("--host", host, "--port", "0", target=tmp_path))
    assert expected in line and "--host 127.0.0.1" in line


@pytest.mark.parametrize("port", ["70000", "-1"])
def test_port_out_of_range(port, tmp_path):
    line = assert_one_line_error(serve("--port", port, target=tmp_path))
    assert "--port" in line and "0..65535" in line and f"not {port}" in line


def test_bind_error_after_the_check(taken, tmp_path):
    """The port can be taken between the check and the server's own bind: the server says
    the same thing (a PocketLMError the CLI prints as one line)."""
    from pocketlm.app.server import serve as run_server
    from pocketlm.app.settings import ServerConfig
    from pocketlm.errors import PocketLMError

    with pytest.raises(PocketLMError, match=f"port {taken} is already in use.*--port"):
        run_server(ServerConfig(port=taken, models_dir=tmp_path), announce=lambda _l: None)
