"""Bug found by the slow-client suite: a peer that sends part of a body and hangs up made the
auth middleware log "handler failed" at ERROR with a traceback, and try to answer 500, for any
stranger (the body is read before the signature is checked). Now it is one INFO line saying the
client went away; the node goes on and nothing changes."""

from __future__ import annotations

import logging
import socket
import time

import pytest

from .rawhttp import encode


def wait_for_record(caplog, start: int, timeout: float = 15.0) -> logging.LogRecord:
    """The node's own record of the hang-up (it handles it on its own loop, after we closed)."""
    ends = time.monotonic() + timeout
    while time.monotonic() < ends:
        for r in caplog.records[start:]:
            if r.name == "tensorage.net.auth" and ("went away" in r.getMessage() or r.levelno >= logging.ERROR):
                return r
        time.sleep(0.05)
    raise AssertionError("the node never noticed the hang-up")


@pytest.mark.parametrize("signed", [False, True], ids=["unsigned", "signed"])
@pytest.mark.parametrize("node, target, who", [("miner", "/v1/challenge", "validator"),
                                               ("validator", "/v1/objects", "client")])
def test_a_peer_that_hangs_up_mid_body_is_one_quiet_line(world, tally, caplog, node, target, who, signed):
    before = {n: world.snapshot(n) for n in world.nodes}
    n = world.nodes[node]
    body = b"{" + b" " * 1000 + b"}"
    headers = world.signed(who, "POST", target, body, n.hotkey) if signed else {}
    with caplog.at_level(logging.INFO, logger="tensorage.net.auth"):
        start = len(caplog.records)
        with socket.create_connection(("127.0.0.1", n.port), timeout=10) as s:
            s.sendall(encode("POST", target, b"", {**headers, "Content-Length": str(len(body))}, length=False)
                      + body[:100])
        record = wait_for_record(caplog, start)
    tally.add(f"POST {target} ({node})", "hang-up-mid-body")
    assert record.levelno == logging.INFO and record.exc_info is None, record.getMessage()
    assert world.send(node, "GET", "/v1/health").status == 200
    assert {x: world.snapshot(x) for x in world.nodes} == before
