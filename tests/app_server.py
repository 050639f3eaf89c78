"""Helpers for the app tests: a real ``pocketlm serve`` process on a free loopback port, and
small HTTP/SSE clients built on the standard library."""

from __future__ import annotations

import http.client
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

from .conftest import REPO

_URL = re.compile(r"pocketlm app: http://(127(?:\.\d+){3}):(\d+)/")  # any loopback IPv4


def models_dir(tiny_models: dict[str, Path], root: Path) -> Path:
    """A models directory: two tiny models (copies, not links) and a broken file."""
    root.mkdir(parents=True, exist_ok=True)
    shutil.copy(tiny_models["float16"], root / "tiny-f16.tflite")
    shutil.copy(tiny_models["dynamic-int8"], root / "tiny-int8.tflite")
    (root / "broken.tflite").write_bytes(b"this is not a flatbuffer")
    return root


@dataclass
class Server:
    """A running ``pocketlm serve``; stdout and stderr go to files the tests can read."""

    proc: subprocess.Popen
    port: int
    log: Path
    host: str = "127.0.0.1"
    stopped: bool = field(default=False)

    # -- lifecycle ----------------------------------------------------------------------------
    @classmethod
    def start(cls, target: Path | str | None, tmp: Path, *args: str,
              env: dict[str, str] | None = None, timeout: float = 90) -> Server:
        tmp.mkdir(parents=True, exist_ok=True)
        log = tmp / "server.log"
        cmd = [sys.executable, "-m", "pocketlm.cli", "serve"]
        cmd += [str(target)] if target is not None else []
        cmd += ["--port", "0", *args]
        full_env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
        with open(log, "wb") as out:
            proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, cwd=REPO,
                                    env=full_env)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            m = _URL.search(log.read_text(errors="replace"))
            if m:
                server = cls(proc, int(m.group(2)), log, host=m.group(1))
                try:
                    server.wait_healthy()
                except RuntimeError:
                    server.stop()  # leave no server behind when the test fails here
                    raise
                return server
            if proc.poll() is not None:
                raise RuntimeError(f"the server exited ({proc.returncode}):\n"
                                   + log.read_text(errors="replace")[-3000:])
            time.sleep(0.05)
        proc.kill()
        raise RuntimeError("the server did not start:\n" + log.read_text(errors="replace"))

    def wait_healthy(self, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if self.get("/health")[0] == 200:
                    return
            except OSError:
                pass
            time.sleep(0.05)
        raise RuntimeError("no /health answer")

    def stop(self) -> int:
        if not self.stopped:
            self.stopped = True
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        return self.proc.returncode

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}/"

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    # -- HTTP ---------------------------------------------------------------------------------
    def connect(self, timeout: float = 60) -> http.client.HTTPConnection:
        return http.client.HTTPConnection(self.host, self.port, timeout=timeout)

    def request(self, method: str, path: str, body: bytes | None = None,
                headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
        conn = self.connect()
        try:
            conn.request(method, path, body=body, headers=headers or {})
            resp = conn.getresponse()
            return resp.status, dict(resp.getheaders()), resp.read()
        finally:
            conn.close()

    def get(self, path: str) -> tuple[int, Any]:
        status, _, data = self.request("GET", path)
        return status, json.loads(data) if data.startswith(b"{") else data

    def post(self, body: Any, path: str = "/v1/completions") -> tuple[int, Any]:
        status, _, data = self.request("POST", path, json.dumps(body).encode(),
                                       {"Content-Type": "application/json"})
        return status, json.loads(data)

    def health(self) -> dict[str, Any]:
        return self.get("/health")[1]

    def stream(self, body: dict[str, Any]) -> tuple[int, list[Any]]:
        """POST with stream=true; every SSE data payload (JSON, or the string "[DONE]")."""
        events: list[Any] = []
        with open_stream(self, body) as (status, it):
            events = list(it)
        return status, events


class open_stream:  # noqa: N801 - used like a function in ``with``
    """``with open_stream(server, body) as (status, events):`` reads SSE events lazily, so a
    test can stop reading (and close the connection) whenever it wants."""

    def __init__(self, server: Server, body: dict[str, Any]) -> None:
        self.conn = server.connect()
        self.conn.request("POST", "/v1/completions", json.dumps({**body, "stream": True}),
                          {"Content-Type": "application/json"})
        self.resp = self.conn.getresponse()

    def __enter__(self) -> tuple[int, Iterator[Any]]:
        return self.resp.status, self._events()

    def _events(self) -> Iterator[Any]:
        if self.resp.status != 200:
            yield json.loads(self.resp.read())
            return
        for raw in self.resp:
            line = raw.decode("utf-8").rstrip("\n")
            if not line.startswith("data: "):
                continue
            data = line[6:]
            yield data if data == "[DONE]" else json.loads(data)

    def close(self) -> None:
        # Shut the socket down for real: the server must see the client leave.
        sock = self.conn.sock
        if sock is not None:
            try:
                sock.shutdown(2)
            except OSError:
                pass
        self.resp.close()
        self.conn.close()

    def __exit__(self, *exc: Any) -> None:
        self.close()


def text_of(events: list[Any]) -> str:
    """The suggestion a client would show: text since the last retry event, and nothing if
    the stream ends with finish_reason "content_filter" (no suggestion)."""
    out: list[str] = []
    for ev in events:
        if not isinstance(ev, dict) or "choices" not in ev:
            continue
        if (ev.get("pocketlm") or {}).get("event") == "retry":
            out.clear()
        if ev["choices"][0]["finish_reason"] == "content_filter":
            return ""
        out.append(ev["choices"][0]["text"])
    return "".join(out)


def wait_for(predicate, timeout: float = 10, interval: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return False


def _children(pid: int) -> list[int]:
    try:
        tasks = Path(f"/proc/{pid}/task").iterdir()
        return [int(c) for t in tasks for c in (t / "children").read_text().split()]
    except OSError:
        return []


def tree_rss(pid: int) -> int:
    """Resident memory (bytes) of a process and all its descendants (a server and its model
    workers), from /proc (Linux)."""
    total, todo, seen = 0, [pid], set()
    while todo and len(seen) < 64:  # bounded: a handful of workers and helpers at most
        p = todo.pop()
        if p in seen:
            continue
        seen.add(p)
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1]) * 1024
        except OSError:
            continue  # exited meanwhile
        todo += _children(p)
    return total


def served(target, tmp_path_factory, *args: str):
    """Body of a module-scoped ``server`` fixture: ``yield from served(mdir, tmp_path_factory)``
    starts ``pocketlm serve target *args`` and stops it when the module is done."""
    srv = Server.start(target, tmp_path_factory.mktemp("server"), *args)
    try:
        yield srv
    finally:
        srv.stop()


def openai_client(server: Server):
    """The official openai client pointed at ``server`` (no retries, 60 s timeout)."""
    import openai

    return openai.OpenAI(base_url=f"http://{server.host}:{server.port}/v1", api_key="none",
                         max_retries=0, timeout=60)
