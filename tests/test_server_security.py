"""Security of ``pocketlm serve`` against a real server process on loopback.

Where it listens, what the model picker lets a request open, oversized and malformed
requests, cross-origin access, and what the log may show. tests/test_app_api.py already
checks (and this file does not repeat): one link out of the models directory
(``test_a_link_out_of_the_models_directory_is_not_served``), ``model: "../tiny-f16.tflite"``
(``test_bad_requests``), a 70,000-byte body, ``/static/../server.py`` and ``Host:
evil.example`` (``test_http_errors_are_json``), chunked bodies (``test_body_needs_a_length``)
and a plain completion's prompt in the log with and without ``--log-prompts``
(``test_prompts_are_not_logged_unless_asked``).
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from .app_server import Server, models_dir, open_stream, tree_rss

BODY_LIMIT = 64 * 1024  # ServerConfig.max_body_bytes


@pytest.fixture(scope="module")
def dirs(tiny_models, tmp_path_factory) -> SimpleNamespace:
    """``root/models`` (what the server may run) and, beside it, ``root/outside`` with a
    real model and a text file that no request may reach."""
    root = tmp_path_factory.mktemp("sec")
    outside = root / "outside"
    outside.mkdir()
    shutil.copy2(tiny_models["float16"], outside / "secret.tflite")  # would load and run
    (outside / "passwd").write_text("root:x:0:0::/root:/bin/sh\n")
    return SimpleNamespace(models=models_dir(tiny_models, root / "models"), outside=outside,
                           root=root)


@pytest.fixture(scope="module")
def server(dirs, tmp_path_factory):
    srv = Server.start(dirs.models, tmp_path_factory.mktemp("sec-server"))
    yield srv
    srv.stop()


# -- helpers ----------------------------------------------------------------------------------
def listening(pid: int) -> list[tuple[str, int]]:
    """The (address, port) pairs a process listens on, from /proc (TCP, IPv4 and IPv6)."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    found = []
    for table, width in (("tcp", 4), ("tcp6", 16)):
        for line in Path(f"/proc/{pid}/net/{table}").read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] != "0A" or fields[9] not in inodes:  # 0A: LISTEN
                continue
            addr_hex, port_hex = fields[1].split(":")
            raw = bytes.fromhex(addr_hex)
            # /proc prints each 32-bit word in host (little-endian) order.
            addr = b"".join(raw[i:i + 4][::-1] for i in range(0, width, 4))
            found.append((socket.inet_ntop(socket.AF_INET if width == 4 else socket.AF_INET6,
                                           addr), int(port_hex, 16)))
    return found


def raw_request(server: Server, data: bytes, timeout: float = 5.0) -> bytes:
    """Send bytes as they are and read the whole answer (the server closes after each)."""
    with socket.create_connection((server.host, server.port), timeout=timeout) as sock:
        sock.sendall(data)
        out = b""
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                return out
            out += chunk


def parse(reply: bytes) -> tuple[int, dict[str, str], Any]:
    """(status, headers with lower-case names, JSON body) of a raw HTTP/1.0 answer."""
    head, _, body = reply.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = dict(line.split(": ", 1) for line in lines[1:] if ": " in line)
    return (int(lines[0].split()[1]), {k.lower(): v for k, v in headers.items()},
            json.loads(body))


def post_json(length: int | str, body: bytes = b"") -> bytes:
    """A completion request with this Content-Length (a str goes out byte for byte)."""
    return (b"POST /v1/completions HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            b"Content-Type: application/json\r\nContent-Length: "
            + (length.encode("latin-1") if isinstance(length, str) else b"%d" % length)
            + b"\r\n\r\n" + body)


def cors_headers(headers: dict[str, str]) -> list[str]:
    return [k for k in headers if k.lower().startswith("access-control-")]


def snapshot(server: Server) -> tuple[dict[str, int], dict[str, Any]]:
    """The server's counters and its workers (model -> pid): what a loaded model changes."""
    health = server.health()
    return health["stats"], {w["model"]: w["pid"] for w in health["workers"]}


# -- where it listens ----------------------------------------------------------------------------
def test_listens_on_loopback_only_by_default(server):
    """The listening socket itself, not just the printed address: 127.0.0.1 and nothing
    else (no 0.0.0.0, no IPv6 wildcard)."""
    from pocketlm.cli import build_parser

    assert listening(server.proc.pid) == [("127.0.0.1", server.port)]
    assert build_parser().parse_args(["serve"]).host == "127.0.0.1"
    assert "warning" not in server.output()


def _can_bind(host: str) -> bool:
    try:
        with socket.socket() as s:
            s.bind((host, 0))
        return True
    except OSError:
        return False


def test_the_host_flag_moves_it(dirs, tmp_path):
    """``--host`` binds elsewhere (another loopback address here, so that the test opens
    nothing to the network), and the server answers at the address it prints."""
    if not _can_bind("127.0.0.2"):
        pytest.skip("127.0.0.2 is not a loopback address on this machine")
    srv = Server.start(dirs.models, tmp_path, "--host", "127.0.0.2")
    try:
        assert srv.host == "127.0.0.2"
        assert listening(srv.proc.pid) == [("127.0.0.2", srv.port)]
        assert srv.get("/health")[0] == 200  # Host: 127.0.0.2 is loopback, not rebinding
        status, body = srv.post({"prompt": "The ship", "max_tokens": 2})
        assert status == 200, body
        assert "warning" not in srv.output()  # still this machine only
    finally:
        srv.stop()


@pytest.mark.parametrize("host, loopback", [
    ("127.0.0.1", True), ("127.0.0.2", True), ("localhost", True), ("::1", True),
    ("0.0.0.0", False), ("::", False), ("192.168.1.20", False), ("example.com", False),
])
def test_which_hosts_count_as_this_machine_only(host, loopback):
    from pocketlm.app.settings import ServerConfig

    assert ServerConfig(host=host).loopback is loopback


def test_a_non_loopback_host_is_announced_with_a_warning(monkeypatch):
    """Without binding anything: ``serve`` runs on a stand-in server that stops at once."""
    from pocketlm.app import server as srv
    from pocketlm.app.settings import ServerConfig

    class StandIn:
        server_address = ("0.0.0.0", 8765)

        def serve_forever(self, poll_interval: float) -> None:
            raise KeyboardInterrupt

        def server_close(self) -> None:
            pass

    closed = []
    app = SimpleNamespace(pool=SimpleNamespace(close=lambda: closed.append(True)))
    monkeypatch.setattr(srv, "make_server", lambda cfg: (StandIn(), app))
    monkeypatch.setattr(srv.signal, "signal", lambda *a: None)  # keep pytest's handlers
    lines: list[str] = []
    srv.serve(ServerConfig(host="0.0.0.0"), announce=lines.append)
    assert any("warning" in line and "no authentication" in line for line in lines)
    assert closed == [True]


# -- the model picker: only file names a scan found, inside the models directory ----------------
TRAVERSALS = [
    "../outside/secret.tflite",  # relative, to a real model beside the models directory
    "{outside}/secret.tflite",  # absolute, same model
    "{models}/tiny-f16.tflite",  # absolute, even to a model that is inside
    "/etc/passwd",
    "{outside}/passwd",
    "%2e%2e%2foutside%2fsecret.tflite",  # URL-encoded (JSON strings are never decoded)
    "..%2foutside%2fsecret.tflite",
    "%252e%252e%252foutside%252fsecret.tflite",  # double-encoded
    "..\\outside\\secret.tflite",
    "....//outside/secret.tflite",
    "broken.tflite/../tiny-f16.tflite",
    "./tiny-f16.tflite",
    "tiny-f16.tflite/",
    "tiny-f16.tflite\x00",  # NUL bytes: C would stop reading the name there
    "tiny-f16.tflite\x00.txt",
    "\x00../outside/secret.tflite",
    "\uff0e\uff0e\uff0foutside\uff0fsecret.tflite",  # full-width dots and slashes
    "..\u2215outside\u2215secret.tflite",  # DIVISION SLASH
    "~/secret.tflite",
    "file://{outside}/secret.tflite",
    ".", "..",
    "x" * 5000 + ".tflite",  # longer than a file name may be
]


@pytest.mark.parametrize("name", TRAVERSALS, ids=lambda n: repr(n[:40]))
def test_the_picker_opens_nothing_a_name_points_to(server, dirs, name):
    name = name.format(outside=dirs.outside, models=dirs.models)
    before = snapshot(server)
    t0 = time.monotonic()
    status, err = server.post({"prompt": "hello there", "max_tokens": 2, "model": name})
    assert status == 404, err  # a real model that loaded would answer 200
    assert err["error"]["type"] == "model_not_found" and err["error"]["param"] == "model"
    assert time.monotonic() - t0 < 2.0
    assert snapshot(server) == before  # no worker started, nothing counted


@pytest.mark.parametrize("value", [1, True, ["tiny-f16.tflite"], {"path": "/etc/passwd"}])
def test_a_model_that_is_not_a_string_is_refused(server, value):
    status, err = server.post({"prompt": "hello there", "max_tokens": 2, "model": value})
    assert status == 400 and err["error"]["type"] == "invalid_request_error"
    assert "model must be a string" in err["error"]["message"]


@pytest.mark.parametrize("path", [
    "/static/%2e%2e/server.py", "/static/..%2f..%2fcatalog.py", "/static//etc/passwd",
    "//etc/passwd", "/static/app.js/../../server.py", "/api/models/../../../etc/passwd",
])
def test_url_paths_reach_no_file(server, path):
    status, _, data = server.request("GET", path)
    assert status == 404 and json.loads(data)["error"]["type"] == "not_found"


def _links(models: Path, outside: Path) -> dict[str, Any]:
    """Tricks inside the models directory: name -> how to make it."""
    return {
        "rel.tflite": lambda p: p.symlink_to(Path("..") / outside.name / "secret.tflite"),
        "hop.tflite": lambda p: (p.symlink_to(models / "hop2"),  # a chain of links
                                 (models / "hop2").symlink_to(outside / "secret.tflite")),
        "dir.tflite": lambda p: p.symlink_to(outside, target_is_directory=True),
        "zero.tflite": lambda p: p.symlink_to("/dev/zero"),  # endless: reading would hang
        "pipe.tflite": lambda p: os.mkfifo(p),  # opening it would block forever
        "loop-a.tflite": lambda p: (p.symlink_to(models / "loop-b.tflite"),
                                    (models / "loop-b.tflite").symlink_to(p)),
    }


def test_links_and_special_files_in_the_models_directory(server, dirs):
    models = dirs.models
    tricks = _links(models, dirs.outside)
    originals = set(models.iterdir())
    try:
        for name, make in tricks.items():
            make(models / name)
        (models / "alias.tflite").symlink_to("tiny-f16.tflite")  # inside: allowed
        before = snapshot(server)
        t0 = time.monotonic()
        status, picker = server.get("/api/models")  # the scan must not hang or fail
        assert status == 200 and time.monotonic() - t0 < 5
        listed = {m["id"] for m in picker["models"]}
        assert not listed & set(tricks) and "loop-b.tflite" not in listed
        assert "alias.tflite" in listed  # links are resolved, not banned
        for name in [*tricks, "loop-b.tflite"]:
            status, err = server.post({"prompt": "hello there", "max_tokens": 2,
                                       "model": name})
            assert status == 404 and err["error"]["type"] == "model_not_found", (name, err)
        assert snapshot(server) == before
        status, body = server.post({"prompt": "hello there", "max_tokens": 2,
                                    "model": "alias.tflite"})
        assert status == 200 and body["model"] == "alias.tflite"
    finally:
        for path in set(models.iterdir()) - originals:
            path.unlink()
        server.get("/api/models")  # forget them


def test_a_model_swapped_for_a_link_after_the_scan_is_not_opened(server, dirs):
    """A file the picker listed is replaced by a link out of the directory (same size,
    same time stamp) before any worker loaded it: the request must not follow the link."""
    swap = dirs.models / "swap.tflite"
    shutil.copy2(dirs.outside / "secret.tflite", swap)
    try:
        listed = {m["id"] for m in server.get("/api/models")[1]["models"]}
        assert "swap.tflite" in listed
        swap.unlink()
        swap.symlink_to(dirs.outside / "secret.tflite")
        before = snapshot(server)
        status, err = server.post({"prompt": "hello there", "max_tokens": 2,
                                   "model": "swap.tflite"})
        assert status == 404 and err["error"]["type"] == "model_not_found", err
        assert "swap.tflite" not in snapshot(server)[1]
        assert snapshot(server) == before
    finally:
        swap.unlink(missing_ok=True)
        server.get("/api/models")


# -- oversized and malformed requests ------------------------------------------------------------
@pytest.mark.parametrize("length", [BODY_LIMIT + 1, 10**7, 10**10, 2**64])
def test_an_oversized_body_is_refused_without_reading_it(server, length):
    """Only the headers are sent: a server that waited for the body would stall until our
    5 s timeout (its own is 60 s), so a prompt 413 proves it did not read it."""
    t0 = time.monotonic()
    status, headers, err = parse(raw_request(server, post_json(length)))
    assert status == 413 and err["error"]["type"] == "request_too_large"
    assert headers["content-type"].startswith("application/json")
    assert time.monotonic() - t0 < 2.0


def test_a_body_at_the_limit_is_read(server):
    # Padded in "user" (accepted, no effect): unknown fields are refused.
    pad = BODY_LIMIT - len(json.dumps({"prompt": "The ship", "max_tokens": 2, "user": ""}))
    body = json.dumps({"prompt": "The ship", "max_tokens": 2, "user": "y" * pad}).encode()
    assert len(body) == BODY_LIMIT
    status, _, answer = parse(raw_request(server, post_json(len(body), body)))
    assert status == 200 and answer["choices"][0]["text"]


def test_a_client_that_keeps_sending_is_cut_off(server):
    """50 MB announced and pushed: the server answers and closes; the sender is stopped
    long before 50 MB got through, and the server's memory does not notice."""
    rss0 = tree_rss(server.proc.pid)
    total = 50 * 2**20
    sent = 0
    reply = b""
    block = b"x" * 65536
    closed = False
    with socket.create_connection((server.host, server.port), timeout=5) as sock:
        sock.sendall(post_json(total))
        try:
            while sent < total:  # bounded: 800 blocks at most, each within the timeout
                sent += sock.send(block)
        except (BrokenPipeError, ConnectionResetError):
            closed = True  # the server closed without reading the rest
        try:
            reply = sock.recv(4096)
            closed = closed or reply.startswith(b"HTTP/1.0 413")
        except ConnectionResetError:
            closed = True
    # (A socket.timeout above would mean the server neither read nor closed: a failure.)
    assert closed and sent < total, (sent, reply[:100])
    assert server.get("/health")[0] == 200
    assert tree_rss(server.proc.pid) - rss0 < 16 * 2**20


@pytest.mark.parametrize("length", ["\xb2", "1\xb9", "-1", "1e3", "0x10", "", "10, 10"])
def test_a_content_length_that_is_not_a_number_is_refused(server, length):
    """Superscript digits pass str.isdigit() but not int(): they used to give a 500."""
    status, _, err = parse(raw_request(server, post_json(length, b"{}")))
    assert status == 411 and err["error"]["type"] == "length_required"


@pytest.mark.parametrize("request_bytes, status", [
    (b"GET /" + b"a" * 70_000 + b" HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n", 414),
    (b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Big: " + b"a" * 70_000 + b"\r\n\r\n", 431),
    (b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n"
     + b"".join(b"X-%d: a\r\n" % i for i in range(120)) + b"\r\n", 431),
    (b"GET /health HTTP/9.9\r\nHost: 127.0.0.1\r\n\r\n", 505),
    (b"GET /health HTTP/1.1 extra\r\nHost: 127.0.0.1\r\n\r\n", 400),
    (b"BREW /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n", 501),
], ids=["long-path", "long-header", "many-headers", "bad-version", "bad-line", "bad-method"])
def test_malformed_requests_get_json_errors(server, request_bytes, status):
    got, headers, err = parse(raw_request(server, request_bytes))
    assert got == status and err["error"]["type"] and err["error"]["message"]
    assert headers["content-type"].startswith("application/json")
    assert server.get("/health")[0] == 200


@pytest.mark.parametrize("body, status", [
    (b'{"prompt": "lone \\ud800 high surrogate", "max_tokens": 2}', 400),
    (b'{"prompt": "\\udc00", "max_tokens": 2, "stream": true}', 400),
    (b'{"prompt": "bytes \xff\xfe that are not UTF-8", "max_tokens": 2}', 400),
    (b'{"prompt": "a NUL \\u0000 and a pair \\ud83d\\ude00", "max_tokens": 2}', 200),
], ids=["lone-high-surrogate", "lone-low-surrogate-stream", "not-utf8", "nul-and-pair"])
def test_prompts_that_are_not_text_are_refused(server, body, status):
    """JSON can smuggle lone surrogates ("\\ud800") into a string: a clear 400 about the
    prompt, not a 500 from deep inside the tokenizer (as it was)."""
    got, _, data = server.request("POST", "/v1/completions", body,
                                  {"Content-Type": "application/json"})
    answer = json.loads(data)
    assert got == status, answer
    if status == 400:
        assert answer["error"]["type"] == "invalid_request_error"
        assert "valid" in answer["error"]["message"]


# -- other web pages ------------------------------------------------------------------------------
ORIGINS = ["http://evil.example", "null", "http://127.0.0.1.evil.example"]


@pytest.mark.parametrize("origin", ORIGINS)
@pytest.mark.parametrize("method, path", [("GET", "/health"), ("GET", "/v1/models"),
                                          ("GET", "/api/models"), ("GET", "/"),
                                          ("POST", "/v1/completions")])
def test_no_cross_origin_access(server, origin, method, path):
    """No Access-Control-* header: a browser keeps the answer from the other page."""
    body = json.dumps({"prompt": "The ship", "max_tokens": 2}).encode() \
        if method == "POST" else None
    status, headers, _ = server.request(method, path, body,
                                        {"Origin": origin, "Content-Type": "application/json"})
    assert status == 200 and not cors_headers(headers)


@pytest.mark.parametrize("origin", ORIGINS)
def test_no_preflight_is_granted(server, origin):
    status, headers, data = server.request("OPTIONS", "/v1/completions", None, {
        "Origin": origin, "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "content-type"})
    assert status == 405 and not cors_headers(headers)
    assert json.loads(data)["error"]["type"] == "method_not_allowed"


@pytest.mark.parametrize("ctype", ["text/plain", "application/x-www-form-urlencoded",
                                   "multipart/form-data; boundary=x"])
def test_a_form_from_another_page_generates_nothing(server, ctype):
    """The content types a page may post without a preflight are refused before anything
    runs (415), so a cross-site form cannot make the model work either."""
    before = snapshot(server)
    status, headers, data = server.request(
        "POST", "/v1/completions", json.dumps({"prompt": "The ship"}).encode(),
        {"Origin": "http://evil.example", "Content-Type": ctype})
    assert status == 415 and not cors_headers(headers)
    assert json.loads(data)["error"]["type"] == "unsupported_media_type"
    assert snapshot(server) == before


@pytest.mark.parametrize("host, status", [
    ("localhost.evil.example", 421), ("127.0.0.1.nip.io", 421),
    ("127.0.0.1.evil.example:{port}", 421), ("evil.example:{port}", 421), ("", 421),
    ("localhost:{port}", 200), ("LOCALHOST", 200), ("127.0.0.1:{port}", 200),
    ("[::1]:{port}", 200), ("127.0.0.2:{port}", 200),
])
def test_host_names_other_than_this_machine_are_refused(server, host, status):
    """DNS rebinding: another site's name that resolves to 127.0.0.1 is refused; this
    machine's names and loopback addresses are not."""
    host = host.format(port=server.port)
    reply = raw_request(server, b"GET /health HTTP/1.1\r\n"
                        + (b"Host: " + host.encode() + b"\r\n" if host else b"") + b"\r\n")
    assert parse(reply)[0] == status


# -- the log ----------------------------------------------------------------------------------
def test_prompts_stay_out_of_the_log_on_every_path(server):
    """A marker prompt on each way a request can go, then the whole log is searched."""
    marks = [f"Quokkamark{i}zz" for i in range(9)]
    assert server.post({"prompt": f"The {marks[0]} ship", "max_tokens": 2})[0] == 200
    status, events = server.stream({"prompt": f"The {marks[1]} ship", "max_tokens": 2})
    assert status == 200 and events[-1] == "[DONE]"
    with open_stream(server, {"prompt": f"The {marks[2]} ship", "max_tokens": 40}) as (_, ev):
        next(ev)  # then hang up
    assert server.post({"prompt": f"{marks[3]} sh1t", "max_tokens": 2})[0] == 422
    assert server.post({"prompt": marks[4], "max_tokens": 0})[0] == 400
    assert server.post({"prompt": marks[5], "model": "nope.tflite"})[0] == 404
    status, _, _ = server.request("POST", "/v1/completions",
                                  f'{{"prompt": "{marks[6]}'.encode(),
                                  {"Content-Type": "application/json"})
    assert status == 400  # not JSON: the error quotes a position, not the text
    assert server.post({"prompt": f"{marks[7]} " + "x" * BODY_LIMIT})[0] == 413
    assert server.post({"prompt": "\x00", "model": marks[8]})[0] == 404
    time.sleep(0.3)  # the hung-up stream's cancellation is logged after it ends
    log = server.output()
    assert "POST /v1/completions" in log  # the log works; only prompts are left out
    assert not [m for m in marks if m in log]


def test_control_characters_in_a_request_line_are_escaped_in_the_log(server):
    reply = raw_request(server, b"GET /\x1b[31mred\x07 HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
    assert parse(reply)[0] == 404
    log = server.output()
    assert "\\x1b[31mred\\x07" in log and "\x1b" not in log and "\x07" not in log



# -- the request head on uvicorn (pocketlm.app.protocol checks it before h11) --------------------
def _send_in_pieces(server: Server, pieces: list[bytes], timeout: float = 5.0) -> bytes:
    with socket.create_connection((server.host, server.port), timeout=timeout) as sock:
        for piece in pieces:
            sock.sendall(piece)
            time.sleep(0.1)  # separate TCP segments: the server sees the head in parts
        out = b""
        while chunk := sock.recv(65536):
            out += chunk
        return out


def test_a_head_that_arrives_in_pieces_is_served(server):
    reply = _send_in_pieces(server, [b"GET /hea", b"lth HTTP/1.1\r\nHo", b"st: 127.0.0.1\r\n",
                                     b"\r\n"])
    status, _, body = parse(reply)
    assert status == 200 and body["status"] == "ok"


@pytest.mark.parametrize("length", ["10, 10", "2, 2", "\xb2"])
def test_a_bad_content_length_in_pieces_is_refused(server, length):
    """h11 itself reads ``10, 10`` as 10 (and would then wait for 10 bytes): refused before."""
    data = post_json(length, b"{}")
    cut = data.index(b"Content-Length") + 17
    status, _, err = parse(_send_in_pieces(server, [data[:cut], data[cut:]]))
    assert status == 411 and err["error"]["type"] == "length_required"


def test_two_content_lengths_are_refused(server):
    data = post_json(2, b"{}").replace(b"\r\n\r\n", b"\r\nContent-Length: 2\r\n\r\n", 1)
    status, _, err = parse(raw_request(server, data))
    assert status == 411 and err["error"]["type"] == "length_required"


@pytest.mark.parametrize("path, shown", [
    (b"/\xc3\xbc", "/\u00fc"),  # UTF-8, which h11 refuses in a request target
    (b"/a\x7fb", "/a\\x7fb"),  # DEL
    (b"/n\x00ul", "/n\\x00ul"),
    (b"/tab\there", "/tab\\x09here"),
])
def test_paths_h11_would_refuse_are_a_404_and_logged_escaped(server, path, shown):
    reply = raw_request(server, b"GET " + path + b" HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
    status, headers, err = parse(reply)
    assert status == 404 and err["error"]["type"] == "not_found"
    assert headers["content-type"].startswith("application/json")
    log = server.output()
    assert f'"GET {shown} HTTP/1.1" 404' in log
    assert not any(c in log for c in "\x00\x7f\t")


def test_a_head_that_never_ends_is_cut_off(monkeypatch, tmp_path):
    """A client that opens a connection and stalls mid-head gets 408 and a closed connection
    (http.server's socket timeout did this; uvicorn alone waits forever). In process, with
    the timeout shortened."""
    import threading

    from pocketlm.app import protocol, server as srv
    from pocketlm.app.settings import ServerConfig

    monkeypatch.setattr(protocol, "HEAD_TIMEOUT_S", 0.5)
    httpd, app = srv.make_server(ServerConfig(port=0, models_dir=tmp_path))
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        host, port = httpd.server_address[:2]
        with socket.create_connection((host, port), timeout=5) as sock:
            sock.sendall(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n")  # no blank line
            t0 = time.monotonic()
            reply = b""
            while chunk := sock.recv(65536):
                reply += chunk
        status, _, err = parse(reply)
        assert status == 408 and err["error"]["type"] == "request_timeout"
        assert 0.4 < time.monotonic() - t0 < 3
    finally:
        httpd.shutdown()
        thread.join(10)
        httpd.server_close()
        app.pool.close()
    assert not thread.is_alive()
