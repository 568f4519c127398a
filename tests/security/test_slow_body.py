"""Bug found by the slow-client suite: the auth middleware read a signed route's body with no time
bound, before checking anything. A stranger (unsigned) could open connections that send a body a
byte at a time, or never finish it, and each held a handler and up to 1 MiB of buffer for as long
as it liked. A body that takes longer than the signature's freshness window would be refused as
stale anyway, so now the read is bounded by that window: 408, and the connection is freed."""

from __future__ import annotations

import socket
import time

import pytest

import tensorage.net.auth as auth

from .rawhttp import encode, read_response

BOUND_S = 1.0  # the test's read bound (the node's is auth.BODY_READ_S, the freshness window)


@pytest.mark.parametrize("signed", [False, True], ids=["unsigned", "signed"])
@pytest.mark.parametrize("node, target, who", [("miner", "/v1/challenge", "validator"),
                                               ("validator", "/v1/objects", "client")])
def test_a_body_that_never_finishes_is_cut_off(world, tally, clean_log, monkeypatch, node, target, who, signed):
    monkeypatch.setattr(auth, "BODY_READ_S", BOUND_S)
    before = {n: world.snapshot(n) for n in world.nodes}
    n = world.nodes[node]
    body = b"{" + b" " * 1000 + b"}"
    headers = world.signed(who, "POST", target, body, n.hotkey) if signed else {}
    started = time.monotonic()
    with socket.create_connection(("127.0.0.1", n.port), timeout=BOUND_S + 10) as s:
        s.sendall(encode("POST", target, b"", {**headers, "Content-Length": str(len(body))}, length=False)
                  + body[:100])
        reply = read_response(s)  # the node answers on its own: we never send the rest
    took = time.monotonic() - started
    tally.add(f"POST {target} ({node})", "unfinished-body", reply.status)
    assert reply.status == 408 and reply.error == "too_slow", reply.body[:200]
    assert BOUND_S * 0.9 <= took < BOUND_S + 8, took
    assert {x: world.snapshot(x) for x in world.nodes} == before


def test_the_bound_is_the_signatures_freshness_window():
    """Nothing honest is cut: a body slower than this would fail its signature's freshness check."""
    assert auth.BODY_READ_S >= auth.MAX_AGE_S + auth.ALLOWED_SKEW_S
