"""HTTP/1.1 over a bare socket: a hostile peer sends whatever bytes it likes (a path with NUL or
``%2e%2e``, headers no client library would emit, a body that disagrees with its length), and the
test reads back what the node answered."""

from __future__ import annotations

import json
import socket
import time
from dataclasses import dataclass, field
from typing import Any, Optional, Union

Text = Union[str, bytes]


@dataclass
class Response:
    status: int
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    seconds: float = 0.0

    def json(self) -> Any:
        return json.loads(self.body)

    @property
    def error(self) -> Optional[str]:
        try:
            data = self.json()
        except ValueError:
            return None
        return data.get("error") if isinstance(data, dict) else None

    @property
    def message(self) -> str:
        try:
            data = self.json()
        except ValueError:
            return ""
        return str(data.get("message", "")) if isinstance(data, dict) else ""


def _b(value: Text) -> bytes:
    return value if isinstance(value, bytes) else value.encode("utf-8", "surrogateescape")


def encode(method: Text, target: Text, body: bytes, headers: dict[Text, Text], length: bool = True) -> bytes:
    lines = [_b(method) + b" " + _b(target) + b" HTTP/1.1", b"Host: 127.0.0.1", b"Connection: close"]
    lower = {(_b(k)).lower() for k in headers}
    if length and b"content-length" not in lower and b"transfer-encoding" not in lower:
        lines.append(b"Content-Length: " + str(len(body)).encode())
    lines += [_b(k) + b": " + _b(v) for k, v in headers.items()]
    return b"\r\n".join(lines) + b"\r\n\r\n" + body


def request(host: str, port: int, method: Text, target: Text, body: bytes = b"",
            headers: Optional[dict[Text, Text]] = None, timeout: float = 30.0, max_body: int = 1 << 20,
            whole: bool = False) -> Response:
    """Send one request and read the answer (up to ``max_body`` bytes of it; a stream that has no
    length, such as the event stream, only up to its headers unless ``whole``)."""
    started = time.perf_counter()
    with socket.create_connection((host, port), timeout=timeout) as s:
        try:
            s.sendall(encode(method, target, body, headers or {}))
        except (BrokenPipeError, ConnectionResetError):
            pass  # the node answered and closed before the body was all sent: read what it said
        return read_response(s, max_body, started, whole)


def read_response(s: socket.socket, max_body: int = 1 << 20, started: Optional[float] = None,
                  whole: bool = False) -> Response:
    started = time.perf_counter() if started is None else started
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = _recv(s)
        if not chunk:
            raise ConnectionError(f"the node closed the connection without an answer (got {data[:200]!r})")
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    status = int(status_line.split(" ")[1])
    headers = {}
    for line in header_lines:
        k, _, v = line.partition(":")
        headers[k.strip().lower()] = v.strip()
    if status == 200 and "content-length" not in headers and not whole:
        return Response(status, headers, b"", time.perf_counter() - started)  # a stream (events): it started
    if "content-length" in headers:
        want = int(headers["content-length"])
        while len(rest) < min(want, max_body):
            chunk = _recv(s)
            if not chunk:
                break
            rest += chunk
        body = rest[:want]
    else:
        while len(rest) < max_body:
            chunk = _recv(s)
            if not chunk:
                break
            rest += chunk
        body = _dechunk(rest) if headers.get("transfer-encoding", "").lower() == "chunked" else rest
    return Response(status, headers, body, time.perf_counter() - started)


def _recv(s: socket.socket) -> bytes:
    try:
        return s.recv(1 << 16)
    except ConnectionResetError:
        return b""


def _dechunk(data: bytes) -> bytes:
    out = b""
    while data:
        size_line, _, data = data.partition(b"\r\n")
        try:
            size = int(size_line.split(b";")[0], 16)
        except ValueError:
            break
        if size == 0:
            break
        out, data = out + data[:size], data[size + 2:]
    return out
