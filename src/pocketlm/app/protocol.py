"""uvicorn's h11 protocol with pocketlm's answers to malformed requests.

uvicorn answers every request h11 cannot parse with a plain-text 400. The app's promise is a
JSON error with a fitting status for every answer, so this subclass checks the request head
itself before h11 sees it, with the limits Python's http.server had (a request line or a
header line over 64 KiB, more than 100 headers, an HTTP version other than 1.0 or 1.1, a
Content-Length that is not one run of ASCII digits) and answers h11's own refusals (an
illegal request line, a missing Host) as JSON too. Each answer closes the connection.

Why before h11: h11 accepts ``Content-Length: 10, 10`` (it keeps one value) and a complete
head of any size; a server that then waits for a body the client never sends, or hands a
70 KB path to the router, is what these checks prevent.
"""

from __future__ import annotations

import json
import re
from http import HTTPStatus
from typing import Any

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

MAX_LINE = 65536  # bytes in the request line or one header line (http.server's _MAXLINE)
MAX_HEADERS = 100  # header lines (http.server's _MAXHEADERS)
# h11 refuses an incomplete head over this size (431, or 414 below when it is the line).
MAX_HEAD = 2 * MAX_LINE
# Seconds a connection may take to send its request head (http.server's socket timeout was
# 60 s too): a client that opens connections and stalls does not keep them forever.
HEAD_TIMEOUT_S = 60.0
_VERSION = re.compile(rb" HTTP/(\d+\.\d+)$")
_DIGITS = re.compile(rb"^[0-9]+$")


def error_bytes(status: int, message: str, kind: str | None = None) -> bytes:
    """A complete HTTP response: ``{"error": {...}}`` with ``status``; closes the connection."""
    phrase = HTTPStatus(status).phrase
    kind = kind or ("invalid_request_error" if status == 400 else
                    re.sub(r"[^a-z0-9]+", "_", phrase.lower()).strip("_"))
    body = json.dumps({"error": {"message": message, "type": kind, "param": None,
                                 "code": kind}}).encode()
    head = (f"HTTP/1.1 {status} {phrase}\r\ncontent-type: application/json; charset=utf-8\r\n"
            f"content-length: {len(body)}\r\nx-content-type-options: nosniff\r\n"
            "connection: close\r\n\r\n")
    return head.encode("latin-1") + body


def check_head(head: bytes) -> tuple[int, str, str | None] | None:
    """(status, message, error type) for a complete request head (without its final blank
    line) that must be refused before parsing, or None."""
    lines = head.split(b"\n")
    first = lines[0].rstrip(b"\r")
    if len(first) > MAX_LINE:
        return 414, "the request line is too long", None
    m = _VERSION.search(first)
    if m and m.group(1) not in (b"1.0", b"1.1"):
        return 505, f"HTTP version {m.group(1).decode()} is not supported (use 1.1)", None
    fields = [line.rstrip(b"\r") for line in lines[1:]]
    if len(fields) > MAX_HEADERS:
        return 431, f"more than {MAX_HEADERS} header lines", None
    if any(len(f) > MAX_LINE for f in fields):
        return 431, "a header line is too long", None
    lengths = [f.split(b":", 1)[1].strip() for f in fields
               if f.split(b":", 1)[0].strip().lower() == b"content-length" and b":" in f]
    # One value of plain ASCII digits ("1e3", "-1", "0x10", "10, 10" and "²" are not).
    if lengths and (len(lengths) > 1 or not _DIGITS.match(lengths[0])):
        return 411, "send one Content-Length of ASCII digits", "length_required"
    return None


def legal_target(data: bytes) -> bytes:
    """``data`` with its request line's target percent-encoded where h11 would refuse it
    (control characters, bytes over 0x7e): http.server took such paths (a 404, and an
    escaped line in the log), h11 answers 400. Only a line of three words is touched."""
    end = data.find(b"\n")
    line = data[:end].rstrip(b"\r")
    parts = line.split(b" ")
    if len(parts) != 3 or all(0x21 <= c <= 0x7E for c in parts[1]):
        return data
    target = b"".join(bytes([c]) if 0x21 <= c <= 0x7E else b"%%%02X" % c for c in parts[1])
    return b" ".join((parts[0], target, parts[2])) + data[len(line):]


class GuardedH11Protocol(H11Protocol):
    """One request per connection (every answer says ``Connection: close``), so one head to
    check per connection."""

    loopback = True  # set by :func:`protocol_class`

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._head = bytearray()
        self._head_checked = False
        self._h11_error: h11.RemoteProtocolError | None = None
        next_event = self.conn.next_event

        def tracked() -> Any:  # keeps the reason uvicorn drops before send_400_response
            try:
                return next_event()
            except h11.RemoteProtocolError as exc:
                self._h11_error = exc
                raise

        self.conn.next_event = tracked  # type: ignore[method-assign]
        self._head_timer: Any = None

    def connection_made(self, transport: Any) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._head_timer = self.loop.call_later(HEAD_TIMEOUT_S, self._head_timeout)

    def connection_lost(self, exc: Exception | None) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
        super().connection_lost(exc)

    def _head_timeout(self) -> None:
        if not self._head_checked:
            self._head_checked = True
            self._refuse(408, "the request head did not arrive in time", "request_timeout")

    def data_received(self, data: bytes) -> None:
        if self._head_checked:
            return super().data_received(data)
        # h11 sees nothing until the head is complete: it is checked (and its request
        # target made legal) first.
        self._head += data
        end = self._head.find(b"\r\n\r\n")
        end = end if end >= 0 else self._head.find(b"\n\n")
        if end < 0:
            if len(self._head) > MAX_HEAD:
                self._head_checked = True
                line_done = self._head.find(b"\n") >= 0
                self._refuse(431 if line_done else 414, "the request head is too long", None)
            return
        self._head_checked = True
        self._head_timer.cancel()
        buffered, self._head = bytes(self._head), bytearray()
        refusal = check_head(buffered[:end])
        if refusal is not None:
            self._refuse(*refusal)
            return
        super().data_received(legal_target(buffered))

    def send_400_response(self, msg: str) -> None:
        exc, status, kind = self._h11_error, 400, None
        text = str(exc) if exc is not None else msg
        if exc is not None and "Host" in text and self.loopback:
            status, kind = 421, "misdirected_request"
            text = ("this server answers only to localhost and loopback addresses such as "
                    "127.0.0.1 (send a Host header)")
        elif exc is not None and exc.error_status_hint in (413, 414, 431):
            status = exc.error_status_hint
        self._refuse(status, f"malformed request: {text}", kind)

    def _refuse(self, status: int, message: str, kind: str | None) -> None:
        self.logger.warning("refused a malformed request: %d %s", status, message)
        if not self.transport.is_closing():
            self.transport.write(error_bytes(status, message, kind))
            self.transport.close()


def protocol_class(loopback: bool) -> type[GuardedH11Protocol]:
    """The protocol for uvicorn's ``http`` setting (a missing Host is a 421 on loopback, as
    any other name that is not this machine's)."""
    return type("GuardedH11Protocol", (GuardedH11Protocol,), {"loopback": loopback})
