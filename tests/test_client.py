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
