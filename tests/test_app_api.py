"""The HTTP API against a real ``pocketlm serve`` process: OpenAI-style completions (plain
and streamed), models, health, errors with fitting status codes, the profanity filter,
the context window, a bounded queue, cancellation, a crashing worker, privacy and safety."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from .app_server import Server, models_dir, open_stream, served, text_of, wait_for
from .conftest import REPO

PROMPT = "Once upon a time there was a quiet village by the sea, and"
GREEDY = {"prompt": PROMPT, "max_tokens": 12, "temperature": 0}


@pytest.fixture(scope="module")
def mdir(tiny_models, tmp_path_factory):
    return models_dir(tiny_models, tmp_path_factory.mktemp("app-models"))


@pytest.fixture(scope="module")
def server(mdir, tmp_path_factory):
    yield from served(mdir, tmp_path_factory)


@pytest.fixture(scope="module")
def slow(mdir, tmp_path_factory):
    """A server whose generation is slowed down, with no queue: one request at a time."""
    srv = Server.start(mdir, tmp_path_factory.mktemp("slow"), "--queue-size", "0",
                       "--token-delay", "0.04")
    yield srv
    srv.stop()


def _words(text: str) -> list[str]:
    """Whole words of a completion (not the first piece: it may continue the prompt's last
    word, and the filter matches whole words)."""
    return [w for w in text.split()[1:] if w.isalpha() and len(w) >= 4]


# -- models and health ------------------------------------------------------------------------
def test_health_and_models(server, mdir):
    status, health = server.get("/health")
    assert status == 200 and health["status"] == "ok"
    assert health["default_model"] == "tiny-f16.tflite"  # first compatible by name
    status, models = server.get("/v1/models")
    assert status == 200 and models["object"] == "list"
    ids = [m["id"] for m in models["data"]]
    assert ids == ["tiny-f16.tflite", "tiny-int8.tflite"]  # broken.tflite is not listed
    card = models["data"][1]
    assert card["object"] == "model" and card["pocketlm"]["quantization"] == "dynamic-int8"
    assert card["pocketlm"]["contract"] == "pocketlm.kv-cache v2"
    assert card["pocketlm"]["size_bytes"] == os.path.getsize(mdir / ids[1])
    status, picker = server.get("/api/models")
    broken = [m for m in picker["models"] if m["id"] == "broken.tflite"]
    assert broken and broken[0]["compatible"] is False and "not a .tflite" in broken[0]["reason"]


# -- completions ------------------------------------------------------------------------------
def test_completion_matches_the_runtime(server, mdir):
    """The server's greedy completion is exactly what the runtime produces in-process."""
    from pocketlm.config import GenerationConfig
    from pocketlm.runtime import complete, load_model

    status, body = server.post({**GREEDY, "profanity_filter": False})
    assert status == 200, body
    assert body["object"] == "text_completion" and body["model"] == "tiny-f16.tflite"
    choice = body["choices"][0]
    local = complete(load_model(mdir / "tiny-f16.tflite"), PROMPT,
                     GenerationConfig(max_new_tokens=12))
    assert choice["text"] == local.text and choice["text"]
    assert choice["finish_reason"] == "length"
    usage = body["usage"]
    assert usage["completion_tokens"] == 12 == len(local.token_ids)
    assert usage["prompt_tokens"] == len(local.prompt.ids)
    assert usage["total_tokens"] == usage["prompt_tokens"] + 12
    assert body["pocketlm"]["prompt_used"] == PROMPT


def test_stream_sends_the_same_text_as_events(server):
    status, plain = server.post(GREEDY)
    status2, events = server.stream(GREEDY)
    assert status == status2 == 200
    assert events[-1] == "[DONE]"
    start, final = events[0], events[-2]
    assert start["pocketlm"]["event"] == "start"
    assert start["pocketlm"]["prompt_used"] == PROMPT
    assert final["choices"][0]["finish_reason"] == "length"
    assert final["usage"]["completion_tokens"] == 12
    assert final["pocketlm"]["time_to_first_token"] > 0
    assert final["pocketlm"]["tokens_per_second"] > 0
    pieces = [e["choices"][0]["text"] for e in events[1:-2]]
    assert len(pieces) >= 2 and all(pieces)  # streamed in several pieces
    assert "".join(pieces) == plain["choices"][0]["text"]


def test_stream_headers(server):
    conn = server.connect()
    conn.request("POST", "/v1/completions", json.dumps({**GREEDY, "stream": True}),
                 {"Content-Type": "application/json"})
    resp = conn.getresponse()
    assert resp.getheader("Content-Type").startswith("text/event-stream")
    assert resp.read().rstrip().endswith(b"data: [DONE]")
    conn.close()


def test_seed_makes_sampling_reproducible(server):
    body = {"prompt": PROMPT, "max_tokens": 10, "temperature": 1.0, "top_k": 50,
            "profanity_filter": False}
    a = server.post({**body, "seed": 7})[1]["choices"][0]["text"]
    b = server.post({**body, "seed": 7})[1]["choices"][0]["text"]
    c = server.post({**body, "seed": 8})[1]["choices"][0]["text"]
    assert a == b and a != c


@pytest.mark.parametrize("window", [1, 5, 12])
def test_context_window_in_words(server, window):
    prompt = "The  old sailor,   tired and wet, sat down; then he told   us a long tale " \
             "of storms, of whales and of a ship that never came home again."
    status, body = server.post({"prompt": prompt, "max_tokens": 2, "context_window": window,
                                "context_unit": "words"})
    assert status == 200, body
    used = body["pocketlm"]["prompt_used"]
    assert used.split() == prompt.split()[-window:]
    assert prompt.endswith(used)  # spacing and punctuation kept as typed


def test_context_window_in_tokens(server):
    status, body = server.post({"prompt": PROMPT, "max_tokens": 2, "context_window": 4,
                                "context_unit": "tokens"})
    assert status == 200 and body["usage"]["prompt_tokens"] == 4
    assert PROMPT.endswith(body["pocketlm"]["prompt_used"])


def test_models_can_be_chosen_per_request(server):
    for model in ("tiny-int8.tflite", "tiny-f16.tflite"):
        status, body = server.post({**GREEDY, "model": model})
        assert status == 200 and body["model"] == model
    workers = {w["model"] for w in server.health()["workers"]}
    assert workers == {"tiny-int8.tflite", "tiny-f16.tflite"}


# -- errors ------------------------------------------------------------------------------------
@pytest.mark.parametrize("body, status, kind, words", [
    ({"max_tokens": 5}, 400, "invalid_request_error", "prompt must be a string"),
    ({"prompt": "   "}, 400, "invalid_request_error", "the prompt is empty"),
    ({"prompt": "hi", "temperature": -1}, 400, "invalid_request_error", "temperature"),
    ({"prompt": "hi", "top_p": 0}, 400, "invalid_request_error", "top_p"),
    ({"prompt": "hi", "max_tokens": "ten"}, 400, "invalid_request_error", "max_tokens"),
    ({"prompt": "hi", "max_tokens": 64}, 400, "invalid_request_error", "window of 64"),
    ({"prompt": "hi", "n": 2}, 400, "invalid_request_error", "not supported"),
    ({"prompt": "hi", "context_unit": "lines"}, 400, "invalid_request_error", "context_unit"),
    ({"prompt": "hi", "model": "nope.tflite"}, 404, "model_not_found", "nope.tflite"),
    ({"prompt": "hi", "model": "../tiny-f16.tflite"}, 404, "model_not_found", "no model"),
    ({"prompt": "hi", "model": "broken.tflite"}, 400, "model_not_compatible", "not a .tflite"),
    (["a list"], 400, "invalid_request_error", "JSON object"),
])
def test_bad_requests(server, body, status, kind, words):
    got, err = server.post(body)
    assert got == status, err
    assert err["error"]["type"] == kind and words in err["error"]["message"]


@pytest.mark.parametrize("method, path, body, headers, status", [
    ("POST", "/v1/completions", b"{not json", {"Content-Type": "application/json"}, 400),
    ("POST", "/v1/completions", b'{"prompt": "hi"}', {"Content-Type": "text/plain"}, 415),
    ("POST", "/v1/completions", b"x" * 70_000, {"Content-Type": "application/json"}, 413),
    ("POST", "/v1/nothing", b"{}", {"Content-Type": "application/json"}, 404),
    ("PUT", "/v1/completions", b"{}", {"Content-Type": "application/json"}, 405),
    ("GET", "/static/../server.py", None, {}, 404),
    ("GET", "/static/nothing.js", None, {}, 404),
    ("GET", "/health", None, {"Host": "evil.example:80"}, 421),
])
def test_http_errors_are_json(server, method, path, body, headers, status):
    got, _, data = server.request(method, path, body, headers)
    assert got == status
    assert json.loads(data)["error"]["type"]


def test_body_needs_a_length(server):
    import socket

    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                     b"Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
                     b"2\r\n{}\r\n0\r\n\r\n")
        reply = sock.recv(4096)
    # (uvicorn answers in HTTP/1.1, http.server did in HTTP/1.0: the status is what counts.)
    assert reply.startswith((b"HTTP/1.1 411 ", b"HTTP/1.0 411 "))


# -- the profanity filter ----------------------------------------------------------------------
@pytest.mark.parametrize("prompt", ["What the f*ck is that ship", "you are a sh1t sailor"])
def test_prompt_with_bad_language_is_rejected(server, prompt):
    before = server.health()["stats"]["rejected_prompts"]
    status, err = server.post({"prompt": prompt, "max_tokens": 3})
    assert status == 422 and err["error"]["type"] == "content_filter"
    assert err["error"]["blocked"] and err["error"]["blocked"][0] in prompt
    assert server.health()["stats"]["rejected_prompts"] == before + 1
    status, _ = server.post({"prompt": prompt, "max_tokens": 3, "profanity_filter": False})
    assert status == 200  # the user switched the filter off


def test_bad_language_outside_the_window_is_not_sent_so_not_rejected(server):
    prompt = "Damn this f*cking weather, said the captain. Then the sun came out over Scunthorpe"
    assert server.post({"prompt": prompt, "max_tokens": 3})[0] == 422
    status, body = server.post({"prompt": prompt, "max_tokens": 3, "context_window": 8})
    assert status == 200 and "f*cking" not in body["pocketlm"]["prompt_used"]


def _attempt_texts(server, seed: int, n: int = 4) -> list[str]:
    """What attempts 1..n of a greedy request with ``seed`` generate without the filter
    (attempt 1 greedy, later ones sampled with seed+k: see SuggestRequest.generation)."""
    from pocketlm.app.settings import RETRY_TEMPERATURE, RETRY_TOP_K

    texts = [server.post({**GREEDY, "seed": seed, "profanity_filter": False})[1]]
    for k in range(1, n):
        texts.append(server.post({**GREEDY, "seed": seed + k, "temperature": RETRY_TEMPERATURE,
                                  "top_k": RETRY_TOP_K, "profanity_filter": False})[1])
    return [t["choices"][0]["text"] for t in texts]


def _blocking_server(mdir, tmp, words):
    path = tmp / "block.txt"
    path.write_text("\n".join(words) + "\n")
    return Server.start(mdir, tmp, "--block-words", str(path))


def test_a_suggestion_with_bad_language_is_regenerated(server, mdir, tmp_path):
    seed = 11
    first, second = _attempt_texts(server, seed, 2)
    blocked = next(w for w in _words(first) if w.lower() not in second.lower()
                   and w.lower() not in PROMPT.lower())
    srv = _blocking_server(mdir, tmp_path, [blocked])
    try:
        # The page's way: attempts stream as they are checked, a retry event withdraws one.
        status, events = srv.stream({**GREEDY, "seed": seed, "retry_events": True})
        assert status == 200
        retries = [e for e in events if isinstance(e, dict)
                   and (e.get("pocketlm") or {}).get("event") == "retry"]
        assert [r["pocketlm"]["attempt"] for r in retries] == [2]
        shown = "".join(e["choices"][0]["text"] for e in events[:events.index(retries[0])]
                        if isinstance(e, dict) and "choices" in e)
        assert blocked not in shown  # the bad word never reached the client
        assert text_of(events) == second
        assert events[-2]["pocketlm"]["attempts"] == 2
        status, body = srv.post({**GREEDY, "seed": seed})  # and without streaming
        assert body["choices"][0]["text"] == second
    finally:
        srv.stop()


def test_no_suggestion_after_three_regenerations(server, mdir, tmp_path):
    seed = 23
    texts = _attempt_texts(server, seed, 4)
    blocked = [next(w for w in _words(t) if w.lower() not in PROMPT.lower()) for t in texts]
    srv = _blocking_server(mdir, tmp_path, blocked)
    try:
        status, events = srv.stream({**GREEDY, "seed": seed, "retry_events": True})
        retries = [e["pocketlm"]["attempt"] for e in events if isinstance(e, dict)
                   and (e.get("pocketlm") or {}).get("event") == "retry"]
        assert retries == [2, 3, 4]
        final = events[-2]
        assert final["choices"][0]["finish_reason"] == "content_filter"
        assert text_of(events) == "" and final["pocketlm"]["attempts"] == 4
        status, events = srv.stream({**GREEDY, "seed": seed})  # a standard client
        sent = [e["choices"][0]["text"] for e in events if isinstance(e, dict)
                and e.get("choices")]
        assert "".join(sent) == "" and events[-2]["choices"][0]["finish_reason"] == \
            "content_filter"  # nothing was sent, so nothing had to be withdrawn
        status, body = srv.post({**GREEDY, "seed": seed, "profanity_filter": False})
        assert body["choices"][0]["text"] == texts[0]  # the filter is the only reason
    finally:
        srv.stop()


# -- queue, cancellation, crashes ---------------------------------------------------------------
LONG = {"prompt": PROMPT, "max_tokens": 40, "temperature": 0, "profanity_filter": False}


def test_a_full_queue_answers_503(slow):
    with open_stream(slow, LONG) as (status, events):
        assert status == 200
        next(events), next(events)  # the start event and a first piece: it is running
        got, headers, data = slow.request("POST", "/v1/completions", json.dumps(GREEDY).encode(),
                                          {"Content-Type": "application/json"})
        assert got == 503 and headers.get("Retry-After") == "1"
        assert json.loads(data)["error"]["type"] == "server_busy"
        rest = list(events)
    assert rest[-1] == "[DONE]"
    assert slow.post(GREEDY)[0] == 200  # free again


def test_generation_stops_when_the_client_goes_away(slow):
    before = slow.health()["stats"]
    t0 = time.monotonic()
    stream = open_stream(slow, LONG)
    with stream as (status, events):
        next(events), next(events)
    # 40 tokens at 0.04 s would take 1.6 s more; the worker must be free well before that.
    assert wait_for(lambda: slow.health()["stats"]["cancelled"] == before["cancelled"] + 1, 5)
    status, body = slow.post({**GREEDY, "max_tokens": 2})
    assert status == 200
    assert time.monotonic() - t0 < 1.5
    assert slow.health()["stats"]["completed"] == before["completed"] + 1


def test_a_crashed_worker_fails_the_request_and_restarts(slow):
    with open_stream(slow, LONG) as (status, events):
        next(events), next(events)
        worker = next(w for w in slow.health()["workers"] if w["busy"])
        os.kill(worker["pid"], signal.SIGKILL)
        rest = list(events)
    errors = [e["error"] for e in rest if isinstance(e, dict) and "error" in e]
    assert errors and errors[0]["type"] == "model_failed"
    assert "died" in errors[0]["message"] and rest[-1] == "[DONE]"
    status, body = slow.post(GREEDY)
    assert status == 200 and body["choices"][0]["text"]
    after = next(w for w in slow.health()["workers"] if w["model"] == worker["model"])
    assert after["pid"] != worker["pid"] and after["restarts"] == 1


# -- privacy, TensorFlow, the command line ---------------------------------------------------------
def test_prompts_are_not_logged_unless_asked(server, mdir, tmp_path):
    marker = "Zanzibarquux lighthouse"
    assert server.post({"prompt": marker, "max_tokens": 2})[0] == 200
    assert "POST /v1/completions" in server.output() and marker not in server.output()
    srv = Server.start(mdir, tmp_path, "--log-prompts")
    try:
        assert srv.post({"prompt": marker, "max_tokens": 2})[0] == 200
        assert wait_for(lambda: marker in srv.output(), 5)
    finally:
        srv.stop()


def test_the_server_and_its_workers_never_import_tensorflow(mdir, tmp_path):
    """Heavy packages are replaced by stubs that leave a mark if anything imports them."""
    stubs = tmp_path / "stubs"
    marks = tmp_path / "imported"
    for name in ("tensorflow", "keras", "keras_hub", "tf_keras", "tensorflow_text"):
        (stubs / name).mkdir(parents=True)
        (stubs / name / "__init__.py").write_text(textwrap.dedent(f"""
            import os
            open({str(marks)!r} + "-{name}-" + str(os.getpid()), "w").close()
            raise ImportError("blocked by the test: {name}")
        """))
    env = {"PYTHONPATH": os.pathsep.join([str(stubs), str(REPO / "src")])}
    srv = Server.start(mdir / "tiny-int8.tflite", tmp_path / "srv", env=env)
    try:
        status, body = srv.post(GREEDY)
        assert status == 200 and body["choices"][0]["text"]
        assert srv.health()["workers"][0]["pid"]
    finally:
        srv.stop()
    assert not list(tmp_path.glob("imported-*")), "something imported a heavy package"


def test_serve_refuses_a_missing_or_incompatible_model(mdir, tmp_path):
    for target, message in ((tmp_path / "missing.tflite", "model file not found"),
                            (mdir / "broken.tflite", "not a compatible language model")):
        proc = subprocess.run([sys.executable, "-m", "pocketlm.cli", "serve", str(target),
                               "--port", "0"], capture_output=True, text=True, timeout=60)
        assert proc.returncode == 2 and message in proc.stderr
        assert "Traceback" not in proc.stderr


def test_no_model_is_an_error_the_user_can_act_on(tmp_path):
    empty = tmp_path / "models"
    empty.mkdir()
    srv = Server.start(empty, tmp_path / "srv")
    try:
        assert "127.0.0.1" in srv.output()  # loopback by default
        status, err = srv.post({"prompt": "hello there", "max_tokens": 2})
        assert status == 503 and err["error"]["type"] == "no_model"
        assert "pocketlm convert" in err["error"]["message"]
        assert srv.get("/api/models")[1]["no_model"]
    finally:
        srv.stop()


def test_sigterm_stops_the_server_and_its_workers(mdir, tmp_path):
    srv = Server.start(mdir, tmp_path)
    assert srv.post(GREEDY)[0] == 200
    pid = srv.health()["workers"][0]["pid"]
    assert srv.stop() == 0
    assert wait_for(lambda: not _alive(pid), 10)


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_a_stop_in_the_middle_of_answers_is_clean(mdir, tmp_path, sig):
    """Ctrl-C (SIGINT) or SIGTERM while a stream runs and a plain request waits for it:
    exit code 0, the stream just ends, the waiting request gets an answer or a closed
    connection (never a 500), nothing in the log but the usual lines (the old server
    printed ``OSError: [Errno 9] Bad file descriptor`` and answered 500 on SIGINT)."""
    import threading

    srv = Server.start(mdir, tmp_path, "--token-delay", "0.05")
    answers: list[int] = []

    def plain() -> None:
        try:
            answers.append(srv.post({**GREEDY, "max_tokens": 30})[0])
        except (OSError, ValueError):
            answers.append(0)  # the connection closed: no answer, which is fine

    try:
        with open_stream(srv, LONG) as (status, events):
            assert status == 200
            next(events), next(events)  # it runs
            waiting = threading.Thread(target=plain, daemon=True)
            waiting.start()
            time.sleep(0.3)  # queued behind the stream
            pid = srv.health()["workers"][0]["pid"]
            t0 = time.monotonic()
            srv.proc.send_signal(sig)
            rest = list(events)  # ends by itself
        srv.stopped = True
        assert srv.proc.wait(15) == 0
        assert time.monotonic() - t0 < 10
        waiting.join(10)
        assert answers and answers[0] in (0, 200, 503), answers
        assert rest[-1:] != ["[DONE]"] and len(rest) < 40  # cut short, not run to its end
        assert wait_for(lambda: not _alive(pid), 10)
        log = srv.output()
        for bad in ("Traceback", "Bad file descriptor", "internal error", '" 500',
                    "Exception"):
            assert bad not in log, log[-2000:]
    finally:
        srv.stop()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie still answers; it is gone for our purposes.
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ")[1][0] != "Z"
    except OSError:
        return False


def test_page_and_static_files(server):
    status, headers, page = server.request("GET", "/")
    assert status == 200 and b"Tap to begin typing your story..." in page
    assert "default-src 'self'" in headers["Content-Security-Policy"]
    status, headers, js = server.request("GET", "/static/app.js")
    assert status == 200 and headers["Content-Type"].startswith("text/javascript")
    assert b"/v1/completions" in js


def test_a_link_out_of_the_models_directory_is_not_served(server, mdir, tiny_models):
    link = mdir / "outside.tflite"
    link.symlink_to(tiny_models["float16"])  # a real model, but outside the folder
    try:
        listed = [m["id"] for m in server.get("/api/models")[1]["models"]]
        assert "outside.tflite" not in listed and "tiny-f16.tflite" in listed
        status, err = server.post({"prompt": "hello there", "model": "outside.tflite"})
        assert status == 404 and err["error"]["type"] == "model_not_found"
    finally:
        link.unlink()


# -- which model `pocketlm serve` picks (in-process: no conversion) --------------------------
def _serve_args(model, **kw):
    from pocketlm.cli import build_parser

    argv = ["serve"] + ([str(model)] if model else [])
    args = build_parser().parse_args(argv)
    for k, v in kw.items():
        setattr(args, k, v)
    return args


def test_serve_defaults_to_the_embedded_model(monkeypatch, mdir):
    from pocketlm.app import launch

    monkeypatch.setattr(launch, "embedded_default",
                        lambda progress: (mdir / "tiny-int8.tflite", ""))
    cfg = launch.build_config(_serve_args(None), lambda m: None)
    assert cfg.default_model == "tiny-int8.tflite" and cfg.models_dir == mdir.resolve()
    assert cfg.host == "127.0.0.1" and cfg.port == 8765 and not cfg.log_prompts

    monkeypatch.setattr(launch, "embedded_default",
                        lambda progress: (None, "the embedded model is not here"))
    cfg = launch.build_config(_serve_args(None, models_dir=str(mdir / "nowhere")),
                              lambda m: None)
    assert cfg.default_model is None and cfg.no_model_reason == "the embedded model is not here"


def test_serve_picks_a_file_or_the_first_model_of_a_folder(mdir):
    from pocketlm.app.launch import build_config

    assert build_config(_serve_args(mdir), print).default_model == "tiny-f16.tflite"
    cfg = build_config(_serve_args(mdir / "tiny-int8.tflite"), print)
    assert cfg.default_model == "tiny-int8.tflite" and cfg.models_dir == mdir.resolve()
