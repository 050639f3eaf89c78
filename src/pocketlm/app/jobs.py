"""Run a planned completion in a model worker and answer it, plain or as server-sent events.

The worker API (:mod:`.worker`) blocks: waiting for a place in the model's queue, starting
the worker process, reading its pipe. All of that runs on a thread of its own per admitted
request (a daemon thread: a job stuck on a dying worker never holds up the server's exit;
the bounded queue bounds how many there are), never on the event loop's thread. The thread
hands its events to the loop through an asyncio queue.

A client that hangs up sets ``gone`` (a disconnect listener on the loop, or the stream's
cancellation), which the thread's ``client_gone()`` sees: the job leaves the queue, or the
worker is told to cancel. A server that stops sets ``App.stopping`` with the same effect.

Streams use sse-starlette's :class:`EventSourceResponse` with ``\\n`` line ends, the framing
OpenAI's clients parse (``data: {json}`` then a blank line, ``data: [DONE]`` last).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
from typing import Any, AsyncIterator

from sse_starlette import EventSourceResponse
from starlette.requests import Request
from starlette.responses import Response

from . import api
from .worker import TERMINAL, Busy, ClientGone, WorkerError

PING_S = 15  # an SSE comment now and then keeps proxies from closing a slow stream


def worker_error(exc: WorkerError) -> api.ApiError:
    status = 400 if exc.kind == "model_not_compatible" else 500
    return api.ApiError(status, exc.kind, str(exc))


def event_error(data: dict[str, Any]) -> api.ApiError:
    kind = data.get("type", "model_failed")
    status = 400 if kind == "invalid_request_error" else 500
    return api.ApiError(status, kind, data.get("message", "the model failed"))


class Job:
    """One request's run in a worker, on its own thread; events come out of :meth:`next`.

    Events: ``("ready", None)`` once the worker is ours and started, then the worker's own
    (``piece``, ``retry``, ``done``, ``error``, ``cancelled``), or instead of them one of
    ``("busy", None)``, ``("failed", ApiError)``, ``("gone", None)``; ``("end", None)`` last.
    The pool's counters are kept here, once per request.
    """

    def __init__(self, app: Any, plan: api.Plan) -> None:
        self.app, self.plan = app, plan
        self.gone = threading.Event()
        self._loop = asyncio.get_running_loop()
        self._queue: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()
        self._thread = threading.Thread(target=self._run, daemon=True,
                                        name=f"pocketlm-job:{plan.id}")

    def start(self) -> None:
        self._thread.start()

    async def next(self) -> tuple[str, Any]:
        return await self._queue.get()

    def client_gone(self) -> bool:
        return self.gone.is_set() or self.app.stopping.is_set()

    def _put(self, kind: str, data: Any = None) -> None:
        with contextlib.suppress(RuntimeError):  # the loop closed: the server is stopping
            self._loop.call_soon_threadsafe(self._queue.put_nowait, (kind, data))

    def _run(self) -> None:
        pool = self.app.pool
        try:
            with pool.acquire(self.plan.entry, self.client_gone) as worker:
                worker.ensure_started()
                self._put("ready")
                with contextlib.closing(worker.run(self.plan.request,
                                                   self.client_gone)) as events:
                    for kind, data in events:
                        if kind == "done":
                            pool.count("completed")
                        elif kind == "cancelled":
                            pool.count("cancelled")
                        self._put(kind, data)
                        if self.gone.is_set() and kind not in TERMINAL:
                            # Nobody reads on. worker.run looks at client_gone() only when
                            # the pipe is quiet, which a fast stream never is: stop here
                            # (closing the generator cancels the job in the worker).
                            raise ClientGone()
        except Busy:
            self._put("busy")
        except ClientGone:
            pool.count("cancelled")
            self._put("gone")
        except WorkerError as exc:
            pool.count("failed")
            self._put("failed", worker_error(exc))
        except Exception as exc:  # noqa: BLE001 - a bug: the request gets a 500
            self._put("failed", api.ApiError(500, "internal_error",
                                             f"internal error: {type(exc).__name__}"))
        finally:
            self._put("end")


async def _listen_for_disconnect(request: Request, gone: threading.Event) -> None:
    """Set ``gone`` when the client hangs up (the body is read by now, so the next message
    is the disconnect, or it comes once the response is complete)."""
    while True:
        message = await request.receive()
        if message["type"] == "http.disconnect":
            gone.set()
            return


async def respond(request: Request, app: Any, plan: api.Plan) -> Response:
    """The response to a planned completion: 200 (JSON or a stream), or the error to send
    (503 with Retry-After when the model's queue is full). Raises :class:`api.ApiError`."""
    job = Job(app, plan)
    listener = asyncio.create_task(_listen_for_disconnect(request, job.gone))
    job.start()
    handed_over = False
    try:
        kind, data = await job.next()  # the queue's verdict first: it decides the status
        if kind == "busy":
            raise api.ApiError(503, "server_busy", f"the model {plan.entry.id} is busy with "
                               "other requests: try again in a moment",
                               headers={"Retry-After": "1"})
        if kind == "failed":
            raise data
        if kind != "ready":  # gone: the client left while waiting (nobody reads this)
            return _gone(app)
        if plan.stream:
            handed_over = True
            return EventSourceResponse(_events(job, listener), ping=PING_S, sep="\n",
                                       headers={"Cache-Control": "no-cache"})
        return await _collect(job)
    finally:
        if not handed_over:
            job.gone.set()  # (a no-op for a finished job; stops one whose answer failed)
            listener.cancel()


async def _collect(job: Job) -> Response:
    outcome = None
    error: api.ApiError | None = None
    while True:
        kind, data = await job.next()
        if kind == "done":
            outcome = data
        elif kind == "error":
            error = event_error(data)
        elif kind == "failed":
            error = data
        elif kind == "end":
            break
    if error is not None:
        raise error
    if outcome is None:  # cancelled: the client is gone and reads nothing
        return _gone(job.app)
    return _json(200, _shapes(job.plan).completion_body(job.plan, outcome))


def _shapes(plan: api.Plan) -> Any:
    """The module that shapes this request's answers (completions or chat)."""
    if plan.chat:
        from . import chat_api
        return chat_api
    return api


def _gone(app: Any) -> Response:
    if app.stopping.is_set():
        return _json(503, api.ApiError(503, "server_stopping", "the server is stopping").body())
    return Response(status_code=499)  # nginx's "client closed request": sent to nobody


def _json(status: int, body: Any) -> Response:
    return Response(json.dumps(body, ensure_ascii=False).encode("utf-8"), status,
                    media_type="application/json; charset=utf-8")


def _data(body: dict[str, Any]) -> dict[str, str]:
    return {"data": json.dumps(body, ensure_ascii=False)}


async def _events(job: Job, listener: asyncio.Task) -> AsyncIterator[dict[str, str]]:
    """The stream's events. If the client leaves, sse-starlette cancels this generator:
    ``finally`` marks the job gone and its thread cancels the work in the worker."""
    plan = job.plan
    shapes = _shapes(plan)
    try:
        yield _data(shapes.start_chunk(plan))
        while True:
            kind, data = await job.next()
            if kind == "piece":
                yield _data(shapes.chunk(plan, data["text"], None, data.get("logprobs")))
            elif kind == "retry":
                yield _data(shapes.chunk(plan, event="retry", **data))
            elif kind == "done":
                yield _data(shapes.final_chunk(plan, data))
                if plan.include_usage:
                    yield _data(shapes.usage_chunk(plan, data))
            elif kind == "error":
                yield _data(event_error(data).body())
            elif kind == "failed":
                yield _data(data.body())
            elif kind in ("cancelled", "gone"):
                return  # the client is gone (or the server stops): no [DONE]
            elif kind == "end":
                break
        yield {"data": "[DONE]"}
    finally:
        job.gone.set()
        listener.cancel()
