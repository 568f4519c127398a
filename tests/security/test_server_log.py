"""What a stranger can put in a node's log. Bug found by the fuzzer: a request aiohttp's parser
cannot read (a NUL in a header, a bad request line) was logged at ERROR with a full traceback,
so anyone could fill an operator's log and console with tracebacks, and real handler failures
drowned in them. Now such a request is one line at INFO, and still a 400."""

from __future__ import annotations

import logging

import pytest

MALFORMED = [
    b"GET /v1/health HTTP/1.1\r\nHost: x\r\nX-Bittensor-Crypto: \x00\r\n\r\n",
    b"GET /v1/health HTTP/1.1\r\nHost: x\r\nIf-None-Match: \x06\x1e\r\n\r\n",
    b"GET /v1/hea lth HTTP/1.1\r\nHost: x\r\n\r\n",
    b"POST /v1/challenge HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello",
    b"POST /v1/challenge HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
    b"GET /v1/health HTTP/9.9\r\nHost: x\r\n\r\n",
    b"GET /v1/health HTTP/1.1\r\nHost: x\r\n" + b"X-Long: " + b"a" * 20000 + b"\r\n\r\n",
]


@pytest.mark.parametrize("raw", MALFORMED, ids=range(len(MALFORMED)))
@pytest.mark.parametrize("node", ["miner", "validator"])
def test_a_malformed_request_is_a_400_and_one_quiet_log_line(world, tally, node, raw):
    import socket

    from .rawhttp import read_response

    start = len(world.errors.records)
    with socket.create_connection(("127.0.0.1", world.nodes[node].port), timeout=10) as s:
        s.sendall(raw)
        reply = read_response(s)
    tally.add(f"(unparseable request) ({node})", "malformed", reply.status)
    assert 400 <= reply.status < 500
    assert world.errors.records[start:] == []
    assert world.send(node, "GET", "/v1/health").status == 200  # and the node goes on


def test_a_real_handler_failure_is_still_an_error_with_its_traceback(world, caplog):
    """Control: the quiet line is only for what a client sent wrong."""
    from tensorage.net.server import PeerLogger

    logger = PeerLogger(logging.getLogger("aiohttp.server"))
    with caplog.at_level(logging.INFO, logger="aiohttp.server"):
        try:
            raise RuntimeError("boom")
        except RuntimeError as exc:
            logger.exception("Error handling request from %s", "127.0.0.1", exc_info=exc)
    (record,) = [r for r in caplog.records if r.name == "aiohttp.server"]
    assert record.levelno == logging.ERROR and record.exc_info is not None
