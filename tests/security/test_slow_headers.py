"""A peer that dribbles its headers a byte at a time is cut off once its connection has been open
for the node's idle bound without finishing a request (net/server.py IDLE_CONNECTION_S, 75 s; here
a 1 s bound on a server built the same way, so the test is quick). Meanwhile the node answers others
(test_slow_clients.py)."""

from __future__ import annotations

import asyncio
import socket
import time

from tensorage.net.auth import PeerDirectory
from tensorage.net.server import IDLE_CONNECTION_S, make_app, serve


async def test_a_connection_that_never_finishes_its_headers_is_closed(tally):
    async def load():
        raise RuntimeError("no chain here")

    app = make_app("5GrwvaEF5zXb26Fz9rcQpDWS57CtERHpNehXCPcNoHGKutQY", PeerDirectory(load), 7)
    served = await serve(app, idle_s=1.0)

    def dribble() -> tuple[float, bool]:
        started = time.monotonic()
        with socket.create_connection(("127.0.0.1", served.port), timeout=5) as s:
            s.sendall(b"GET /v1/health HTTP/1.1\r\nHost: x\r\nX-Slow: ")
            while time.monotonic() - started < 10:
                try:
                    s.sendall(b"a")
                    s.settimeout(0.2)
                    if s.recv(1) == b"":
                        return time.monotonic() - started, True
                except socket.timeout:
                    continue
                except OSError:
                    return time.monotonic() - started, True
        return time.monotonic() - started, False

    try:
        took, closed = await asyncio.to_thread(dribble)
    finally:
        await served.close()
    tally.add("(slow headers, any route)", "slowloris-headers-bound")
    assert closed and 0.9 <= took < 5, (closed, took)
    assert 30 <= IDLE_CONNECTION_S <= 120  # honest peers' pooled connections idle a while between windows
