"""Slow and oversized clients on loopback, bounded in count and time: connections that dribble their
headers or bodies a byte at a time, bodies and headers far over the limits, many at once. The nodes
refuse the oversized ones with a clear status, and answer honest peers meanwhile: /v1/health within
a generous bound, and a window challenge before its deadline (what an honest validator needs)."""

from __future__ import annotations

import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor

from .hostile import assert_refused_clearly
from .rawhttp import encode
from .routes import ROUTES

SLOW_PER_NODE = 24     # dribbling connections per node (header and body ones)
DRIBBLE_S = 0.25       # one byte per connection this often
HOLD_S = 5.0           # how long the slow clients stay on
HEALTH_BOUND_S = 2.0   # an honest /v1/health answer under all of it (it takes ~5 ms unloaded)
BIG = 3 << 20          # over every JSON limit (1 MiB) and the gateway's


def open_slow(world, node: str, kind: str) -> socket.socket:
    """A connection that has sent part of a request and will send the rest a byte at a time."""
    n = world.nodes[node]
    s = socket.create_connection(("127.0.0.1", n.port), timeout=10)
    if kind == "headers":
        s.sendall(b"GET /v1/health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
    else:  # a validly signed request whose body never quite arrives
        method, target, who = ("POST", "/v1/challenge", "validator") if node == "miner" else \
            ("POST", "/v1/objects", "client")
        body = b"{" + b" " * 4094 + b"}"
        head = encode(method, target, b"", {**world.signed(who, method, target, body, n.hotkey),
                                            "Content-Length": str(len(body))}, length=False)
        s.sendall(head + body[:10])
    return s


def dribble(socks: list[socket.socket], stop: threading.Event, sent: list[int]) -> None:
    while not stop.wait(DRIBBLE_S):
        for s in socks:
            try:
                s.sendall(b"a")
                sent[0] += 1
            except OSError:
                pass  # the node closed it: fine


def honest_traffic(world, until: float) -> tuple[list[float], list[tuple[int, float, float]]]:
    """Health checks on both nodes and window challenges to the miner, until ``until``:
    (health latencies, (status, answered_at, deadline) per challenge)."""
    health, windows = [], []
    while time.time() < until:
        for node in world.nodes:
            reply = world.send(node, "GET", "/v1/health", timeout=HEALTH_BOUND_S * 5)
            assert reply.status == 200
            health.append(reply.seconds)
        body, deadline = world.challenge_body()
        reply = world.send("miner", "POST", "/v1/challenge", body, signer="validator", timeout=10)
        windows.append((reply.status, time.time(), deadline))
        time.sleep(0.2)
    return health, windows


def test_slow_clients_do_not_delay_honest_peers(world, tally, clean_log):
    before = {n: world.snapshot(n) for n in world.nodes}
    socks = [open_slow(world, node, kind) for node in world.nodes for kind in ("headers", "body")
             for _ in range(SLOW_PER_NODE // 2)]
    stop, sent = threading.Event(), [0]
    dribbler = threading.Thread(target=dribble, args=(socks, stop, sent), daemon=True)
    dribbler.start()
    try:
        health, windows = honest_traffic(world, time.time() + HOLD_S)
    finally:
        stop.set()
        dribbler.join(timeout=10)
        for s in socks:
            s.close()
    for node in world.nodes:
        tally.add(f"GET /v1/health ({node})", "slowloris-headers", n=SLOW_PER_NODE // 2)
        body_route = "POST /v1/challenge" if node == "miner" else "POST /v1/objects"
        tally.add(f"{body_route} ({node})", "slowloris-body", n=SLOW_PER_NODE // 2)
    assert sent[0] > len(socks)  # the slow clients really were sending all along
    assert health and max(health) < HEALTH_BOUND_S, sorted(health)[-5:]
    assert len(windows) >= 2
    for status, answered_at, deadline in windows:
        assert status == 200 and answered_at <= deadline, (status, answered_at - deadline)
    assert {n: world.snapshot(n) for n in world.nodes} == before


def oversized_requests(world) -> list[tuple[str, str, str, str, bytes, dict]]:
    """(endpoint, node, method, target, body, headers): bodies over every limit on every route that takes one,
    signed and not, a header block of 1.6 MB, and a 100 kB path."""
    out = []
    for r in ROUTES:
        for method in r.methods:
            if method in ("GET", "HEAD", "DELETE") and r.access == "public":
                continue
            target = r.target({p: ("sync" if p == "job" else "pause" if p == "action" else "ab" * 32)
                               for p in r.params}) + ("?size=16" if r.body == "stream" else "")
            endpoint = f"{method} {r.path} ({r.node})"
            out.append((endpoint, r.node, method, target, b"\x00" * BIG, {}))
            signer = r.node if r.signer == "own" else r.signer
            out.append((endpoint, r.node, method, target, b"\x00" * BIG,
                        world.signed(signer, method, target, b"\x00" * BIG, world.hotkey(r.node))))
    for node in world.nodes:
        endpoint = f"GET /v1/health ({node})"
        out.append((endpoint, node, "GET", "/v1/health", b"", {f"X-Big-{i}": "a" * 8000 for i in range(200)}))
        out.append((endpoint, node, "GET", "/v1/health?" + "a" * 100_000, b"", {}))
    return out


def test_oversized_requests_are_refused_while_honest_peers_are_answered(world, tally, clean_log):
    before = {n: world.snapshot(n) for n in world.nodes}
    requests = oversized_requests(world)

    def one(req):
        endpoint, node, method, target, body, headers = req
        try:
            reply = world.send(node, method, target, body, headers, timeout=30)
        except ConnectionError:  # closed on us mid-upload without an answer: refused, the hard way
            return endpoint, node, method, target, None
        return endpoint, node, method, target, reply

    started = time.time()
    with ThreadPoolExecutor(max_workers=6) as pool:
        futures = [pool.submit(one, r) for r in requests]
        health, windows = honest_traffic(world, time.time() + 2.0)
        results = [f.result() for f in futures]
    took = time.time() - started
    refused = 0
    for endpoint, node, method, target, reply in results:
        tally.add(endpoint, "oversized", reply.status if reply else 0)
        if reply is None:
            continue
        assert_refused_clearly(reply, method, f"{node} {method} {target[:80]} oversized")
        if reply.status >= 400:
            refused += 1
        else:  # only a public route that never reads a body may answer one
            assert target.startswith("/v1/health") or target.startswith("/v1/gateway"), (node, method, target)
    assert refused >= len(requests) - 4
    assert took < 120, took  # a bound for a hung test: each refusal is immediate
    assert health and max(health) < HEALTH_BOUND_S, sorted(health)[-5:]
    assert all(status == 200 and at <= deadline for status, at, deadline in windows)
    assert {n: world.snapshot(n) for n in world.nodes} == before
