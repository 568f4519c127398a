"""The signed client against misbehaving peers: too slow, too big, not there."""

from __future__ import annotations

import asyncio
import time

import pytest
from aiohttp import web

from tensorage.net.client import PeerError, SignedClient
from tensorage.net.server import serve


async def start(handler) -> tuple:
    app = web.Application()
    app.router.add_route("*", "/x", handler)
    served = await serve(app, "127.0.0.1", 0)
    return served, served.port


async def test_deadline_bounds_a_slow_peer(wallet):
    async def slow(request):
        await asyncio.sleep(5)
        return web.Response(text="late")

    served, port = await start(slow)
    client = SignedClient(wallet)
    try:
        t = time.monotonic()
        with pytest.raises(PeerError) as exc:
            await client.request("GET", "127.0.0.1", port, "/x", receiver=wallet.hotkey.ss58_address,
                                 deadline=time.time() + 0.3)
        assert exc.value.kind == "timeout"
        assert time.monotonic() - t < 2.0
    finally:
        await client.close()
        await served.close()


async def test_an_oversized_answer_is_refused(wallet):
    async def huge(request):
        return web.Response(body=b"x" * (9 << 20))

    served, port = await start(huge)
    client = SignedClient(wallet)
    try:
        with pytest.raises(PeerError, match="more than"):
            await client.request("GET", "127.0.0.1", port, "/x", receiver=wallet.hotkey.ss58_address)
        ok = await client.request("GET", "127.0.0.1", port, "/x", receiver=wallet.hotkey.ss58_address,
                                  max_reply=10 << 20)
        assert len(ok.body) == 9 << 20
    finally:
        await client.close()
        await served.close()


async def test_nobody_listening_is_unreachable(wallet):
    async def ok(request):
        return web.Response()

    served, port = await start(ok)
    await served.close()
    client = SignedClient(wallet)
    try:
        with pytest.raises(PeerError) as exc:
            await client.request("GET", "127.0.0.1", port, "/x", receiver=wallet.hotkey.ss58_address)
        assert exc.value.kind == "unreachable"
    finally:
        await client.close()


async def test_an_error_answer_is_read_only_as_far_as_its_message(wallet):
    """The review's stall: an error status with megabytes of nested JSON, parsed whole on the event
    loop for its message. An error answer is read 16 KiB far, and parsed only when small."""
    from tensorage.net.client import MAX_ERROR_BODY

    junk = b"[" + b"[[1]]," * ((3 << 20) // 6) + b"[[1]]]"

    async def failing(request):
        return web.Response(status=500, body=junk, content_type="application/json")

    async def explaining(request):
        return web.json_response({"error": "busy", "message": "try again"}, status=503)

    served, port = await start(failing)
    client = SignedClient(wallet)
    try:
        reply = await client.request("GET", "127.0.0.1", port, "/x", receiver=wallet.hotkey.ss58_address,
                                     max_reply=8 << 20)
        assert reply.status == 500 and len(reply.body) == MAX_ERROR_BODY
        assert reply.error_message.startswith("[[[1]]")  # the first bytes, not a parse of the whole
        await served.close()
        served, port = await start(explaining)
        reply = await client.request("GET", "127.0.0.1", port, "/x", receiver=wallet.hotkey.ss58_address)
        assert reply.error_message == "busy: try again"
    finally:
        await client.close()
        await served.close()
