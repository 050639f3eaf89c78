"""Worker processes: each owns one model's interpreter; the server talks to it over a pipe.

Why a process: LiteRT interpreters are not thread-safe, and a native crash inside one would
take the whole server down. A worker runs one job at a time (:class:`WorkerPool` serializes
and bounds the queue); if it dies, the request in flight fails with "model failed" and the
next request starts a fresh worker.

Messages, parent -> child: ``("job", id, request_dict)``, ``("cancel", id)``, ``("stop",)``.
Child -> parent: ``("ready", 0, info)`` or ``("failed", 0, error)`` once at start, then per
job ``("piece"|"retry", id, data)`` and one of ``("done"|"error"|"cancelled", id, data)``.
"""

from __future__ import annotations

import contextlib
import multiprocessing as mp
import os
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator

from .catalog import ModelEntry
from .settings import ServerConfig, SuggestRequest

TERMINAL = ("done", "error", "cancelled")
CANCEL_GRACE_S = 5.0  # a worker that ignores a cancel this long is killed


class WorkerError(Exception):
    """A worker could not load its model or died; ``kind`` is the API error type."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind


class Busy(Exception):
    """The model's queue is full."""


class ClientGone(Exception):
    """The client went away while its request waited or ran."""


# -- the child side ------------------------------------------------------------------------
def _child_main(conn, path: str, threads: int, block: list[str], allow: list[str],
                token_delay: float) -> None:
    """Entry point of a worker process. Imports only the runtime (never TensorFlow)."""
    import signal

    # Ctrl-C in a terminal reaches the whole process group: the server stops its workers
    # itself, so a worker ignores it rather than dying with a traceback mid-job.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    from ..errors import ContractError, PocketLMError
    from ..runtime import load_model
    from ..safety import ProfanityFilter
    from .suggest import suggest

    try:
        model = load_model(path, num_threads=threads)
    except ContractError as exc:
        conn.send(("failed", 0, {"type": "model_not_compatible", "message": str(exc)}))
        return
    except Exception as exc:  # noqa: BLE001 - reported to the user, who can act on it
        conn.send(("failed", 0, {"type": "model_failed",
                                 "message": f"the model failed to load: {exc}"}))
        return
    flt = ProfanityFilter(extra_words=block, allow=allow)
    sessions: list[Any] = []

    def chat() -> Any:
        """The worker's one chat session (made on first use): its cache serves the next
        request of the same conversation."""
        if not sessions:
            from ..runtime.chat import ChatSession
            sessions.append(ChatSession(model))
        return sessions[0]

    conn.send(("ready", 0, {"pid": os.getpid()}))
    while True:
        try:
            msg = conn.recv()
        except (EOFError, OSError):
            return  # the server is gone
        if msg[0] == "stop":
            return
        if msg[0] != "job":
            continue  # a late cancel for a job that already finished
        job_id, req = msg[1], SuggestRequest.from_dict(msg[2])

        def cancelled(job_id: int = job_id) -> bool:
            while conn.poll():
                m = conn.recv()  # EOFError here ends the worker: the server is gone
                if m[0] == "stop":
                    raise SystemExit(0)
                if m[0] == "cancel" and m[1] == job_id:
                    return True
            return False

        def emit(event: str, data: dict[str, Any], job_id: int = job_id) -> None:
            conn.send((event, job_id, data))

        try:
            result = suggest(model, req, emit, cancelled, flt, token_delay, chat)
        except (EOFError, OSError):
            return
        except PocketLMError as exc:
            conn.send(("error", job_id, {"type": "invalid_request_error", "message": str(exc)}))
            continue
        except Exception as exc:  # noqa: BLE001
            conn.send(("error", job_id, {"type": "model_failed",
                                         "message": f"the model failed: {exc}"}))
            continue
        kind = "cancelled" if result["finish_reason"] == "cancelled" else "done"
        conn.send((kind, job_id, result))


# -- the parent side -----------------------------------------------------------------------
class Worker:
    """The parent's handle on one worker process (restarted on demand if it died)."""

    def __init__(self, entry: ModelEntry, config: ServerConfig) -> None:
        self.entry = entry
        self.config = config
        self.proc: Any = None
        self.conn: Any = None
        self.restarts = -1  # the first start is not a restart
        self._job = 0

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None and self.proc.is_alive() else None

    def ensure_started(self) -> None:
        if self.proc is not None and self.proc.is_alive():
            return
        self.kill()
        ctx = mp.get_context("spawn")  # no fork: the server has threads and sockets
        parent, child = ctx.Pipe()
        self.proc = ctx.Process(target=_child_main, name=f"pocketlm-worker:{self.entry.id}",
                                args=(child, str(self.entry.path), self.config.threads,
                                      self.config.block_words, self.config.allow_words,
                                      self.config.token_delay), daemon=True)
        self.proc.start()
        child.close()
        self.conn = parent
        self.restarts += 1
        deadline = time.monotonic() + self.config.worker_start_timeout
        while not parent.poll(0.1):
            if not self.proc.is_alive() or time.monotonic() > deadline:
                self.kill()
                raise WorkerError("model_failed", f"the model {self.entry.id} failed to load "
                                  "(its worker process exited)")
        try:
            kind, _, data = parent.recv()
        except (EOFError, OSError):
            self.kill()
            raise WorkerError("model_failed", f"the model {self.entry.id} failed to load")
        if kind != "ready":
            self.kill()
            raise WorkerError(data.get("type", "model_failed"), data.get("message", ""))

    def run(self, req: SuggestRequest,
            client_gone: Callable[[], bool]) -> Iterator[tuple[str, dict[str, Any]]]:
        """Send a job and yield its events until the terminal one. If the consumer stops
        early (its client went away) or ``client_gone()`` turns true, the job is cancelled."""
        self.ensure_started()
        self._job += 1
        job = self._job
        finished = False
        try:
            self.conn.send(("job", job, req.to_dict()))
            cancel_at: float | None = None
            while True:
                if self.conn.poll(0.05):
                    try:
                        kind, jid, data = self.conn.recv()
                    except (EOFError, OSError):
                        raise self._died() from None
                    if jid != job:
                        continue
                    finished = kind in TERMINAL
                    yield kind, data
                    if finished:
                        return
                    continue
                if not self.proc.is_alive():
                    raise self._died()
                if cancel_at is None and client_gone():
                    self.conn.send(("cancel", job))
                    cancel_at = time.monotonic()
                elif cancel_at is not None and time.monotonic() - cancel_at > CANCEL_GRACE_S:
                    self.kill()
                    finished = True
                    raise ClientGone()
        finally:
            if not finished:
                self._cancel_and_drain(job)

    def stop(self) -> None:
        if self.proc is not None and self.proc.is_alive():
            with contextlib.suppress(OSError):
                self.conn.send(("stop",))
            self.proc.join(2)
        self.kill()

    def kill(self) -> None:
        if self.proc is not None and self.proc.is_alive():
            self.proc.kill()
            self.proc.join(5)
        if self.conn is not None:
            self.conn.close()
        self.proc = self.conn = None

    # -- internals ------------------------------------------------------------------------
    def _died(self) -> WorkerError:
        code = self.proc.exitcode if self.proc is not None else None
        self.kill()
        return WorkerError("model_failed", f"the model {self.entry.id} failed: its worker "
                           f"process died (exit code {code}); it restarts with the next "
                           "request")

    def _cancel_and_drain(self, job: int) -> None:
        """Cancel a job whose consumer left, and wait (briefly) until the worker is free."""
        if self.conn is None or self.proc is None or not self.proc.is_alive():
            return
        try:
            self.conn.send(("cancel", job))
            deadline = time.monotonic() + CANCEL_GRACE_S
            while time.monotonic() < deadline:
                if self.conn.poll(0.05):
                    kind, jid, _ = self.conn.recv()
                    if jid == job and kind in TERMINAL:
                        return
            self.kill()  # it did not stop: a fresh worker is cheaper than a stuck one
        except (EOFError, OSError):
            self.kill()


@dataclass
class Slot:
    worker: Worker
    lock: threading.Lock = field(default_factory=threading.Lock)
    pending: int = 0  # requests running or waiting on this model
    last_used: float = 0.0


@dataclass
class Stats:
    completed: int = 0
    cancelled: int = 0
    rejected_busy: int = 0
    rejected_prompts: int = 0
    failed: int = 0


class WorkerPool:
    """One worker per model in use (at most ``max_loaded_models``), each with a bounded
    queue: a request beyond ``1 + queue_size`` on one model is refused (:class:`Busy`)."""

    def __init__(self, config: ServerConfig) -> None:
        self.config = config
        self.stats = Stats()
        self._slots: OrderedDict[str, Slot] = OrderedDict()
        self._lock = threading.Lock()

    @contextlib.contextmanager
    def acquire(self, entry: ModelEntry, client_gone: Callable[[], bool]) -> Iterator[Worker]:
        with self._lock:
            slot = self._slots.get(entry.id)
            if slot is None or slot.worker.entry.path != entry.path \
                    or slot.worker.entry.mtime != entry.mtime:
                if slot is not None and slot.pending == 0:
                    slot.worker.stop()  # the file changed: load it again
                slot = self._slots[entry.id] = Slot(Worker(entry, self.config))
            self._slots.move_to_end(entry.id)
            if slot.pending >= 1 + self.config.queue_size:
                self.stats.rejected_busy += 1  # (lock held)
                raise Busy()
            slot.pending += 1
            self._evict()
        try:
            while not slot.lock.acquire(timeout=0.1):
                if client_gone():
                    raise ClientGone()
            try:
                slot.last_used = time.monotonic()
                yield slot.worker
            finally:
                slot.lock.release()
        finally:
            with self._lock:
                slot.pending -= 1
                retired = slot.pending == 0 and self._slots.get(entry.id) is not slot
            if retired:
                slot.worker.stop()  # replaced while it ran (its file changed)

    def count(self, name: str) -> None:
        with self._lock:
            setattr(self.stats, name, getattr(self.stats, name) + 1)

    def describe(self) -> list[dict[str, Any]]:
        with self._lock:
            return [{"model": mid, "pid": s.worker.pid, "pending": s.pending,
                     "busy": s.lock.locked(), "restarts": max(s.worker.restarts, 0)}
                    for mid, s in self._slots.items()]

    def close(self) -> None:
        with self._lock:
            slots = list(self._slots.values())
            self._slots.clear()
        for slot in slots:
            slot.worker.stop()

    def _evict(self) -> None:
        """Stop the least recently used idle workers beyond the limit (lock held)."""
        idle = [mid for mid, s in self._slots.items() if s.pending == 0]
        while len(self._slots) > self.config.max_loaded_models and idle:
            self._slots.pop(idle.pop(0)).worker.stop()
