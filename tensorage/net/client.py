"""A signed HTTP client: one session, connection reuse, absolute deadlines."""

from __future__ import annotations

import asyncio
import json
import time
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, AsyncIterator, Callable, Optional

import aiohttp
import bittensor as bt

from .. import PROTOCOL_VERSION


MAX_REPLY = 8 << 20  # control answers (callers pass tighter bounds where they know what they asked)
MAX_ERROR_BODY = 16 << 10  # an error answer is read this far and no further: it only carries a message


class PeerError(Exception):
    """A peer could not be reached or did not answer in time."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind  # unreachable | timeout | too_large
        self.at = time.time()  # when it failed


@dataclass
class Reply:
    status: int
    body: bytes
    latency_ms: float
    arrived_at: float = 0.0  # unix time the last byte arrived (before anything parsed it)
    headers: Optional[dict[str, str]] = None  # the reply's headers (for a signed reply)
    nonce: str = ""          # the nonce our request was signed with (what a signed reply answers)

    def json(self) -> Any:
        return json.loads(self.body)

    @property
    def error_message(self) -> str:
        """The peer's ``{"error", "message"}``, parsed only when small (it runs on the event loop)."""
        if len(self.body) <= 4096:
            try:
                data = self.json()
                return f"{str(data.get('error'))[:60]}: {str(data.get('message'))[:300]}"
            except (ValueError, AttributeError, RecursionError):
                pass
        return self.body[:200].decode(errors="replace")


class SignedClient:
    def __init__(self, wallet: bt.Wallet, connections: int = 256) -> None:
        self.wallet = wallet
        # Resolved once: http_auth.sign(wallet) builds a new signer per call, which reads and parses
        # the hotkey file every time (~1 ms, 30x the signature itself); this one loads it once.
        self._signer = bt.resolve_signer(wallet, role="hotkey")
        self._connections = connections
        self._session: Optional[aiohttp.ClientSession] = None

    @property
    def signer(self):
        """The hotkey signer (certificates are signed with it too)."""
        return self._signer

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            connector = aiohttp.TCPConnector(limit=self._connections, limit_per_host=8, ttl_dns_cache=300,
                                             keepalive_timeout=60)
            self._session = aiohttp.ClientSession(connector=connector)
        return self._session

    async def request(self, method: str, host: str, port: int, path: str, receiver: str, *,
                      body: bytes = b"", deadline: Optional[float] = None, timeout: float = 10.0,
                      content_type: str = "application/json", max_reply: int = MAX_REPLY,
                      headers: Optional[dict[str, str]] = None,
                      sink: Optional[Callable[[bytes], None]] = None,
                      signed: Optional[dict[str, str]] = None) -> Reply:
        """Sign and send; ``deadline`` (unix time) bounds the whole exchange, ``max_reply`` the answer
        (a peer cannot make us buffer more than that). With ``sink``, a successful answer's bytes go to
        it as they arrive and ``Reply.body`` is empty (an error answer is still read into the body), so
        many large answers at once are never all held in memory. ``signed``: auth headers already made
        for exactly this method, path, body and receiver (net/signer.py signs a window's in a batch)."""
        remaining = timeout if deadline is None else deadline - time.time()
        if remaining <= 0:
            raise PeerError("timeout", "deadline passed before sending")
        extra = headers or {}
        headers = dict(signed) if signed is not None else \
            bt.http_auth.sign(self._signer, method=method, path=path, body=body, receiver_ss58=receiver)
        headers["X-Tensorage-Protocol"] = str(PROTOCOL_VERSION)
        headers.update(extra)
        if body:
            headers["Content-Type"] = content_type
        started = time.perf_counter()
        try:
            async with asyncio.timeout(remaining):
                async with self.session.request(method, f"http://{host}:{port}{path}", data=body or None,
                                                headers=headers) as resp:
                    failed = resp.status >= 400
                    if not failed and resp.content_length is not None and resp.content_length > max_reply:
                        raise PeerError("too_large", f"answer of {resp.content_length} bytes, more than the "
                                                     f"{max_reply} asked for: refused unread")
                    chunks, size = [], 0
                    async for chunk in resp.content.iter_chunked(1 << 16):
                        size += len(chunk)
                        if failed and size >= MAX_ERROR_BODY:  # keep the start of the message, drop the rest
                            chunks.append(chunk[:len(chunk) - (size - MAX_ERROR_BODY)])
                            break
                        if size > max_reply:
                            raise PeerError("too_large", f"answer of over {max_reply} bytes, more than was asked "
                                                         f"for: refused")
                        if sink is not None and not failed:
                            sink(chunk)
                        else:
                            chunks.append(chunk)
                    data = b"".join(chunks)
                    arrived = time.time()
                    reply_headers = dict(resp.headers)
        except TimeoutError:
            raise PeerError("timeout", f"no answer within {remaining:.2f}s") from None
        except (aiohttp.ClientError, OSError) as exc:
            raise PeerError("unreachable", f"{type(exc).__name__}: {exc}") from None
        return Reply(status=resp.status, body=data, latency_ms=(time.perf_counter() - started) * 1000,
                     arrived_at=arrived, headers=reply_headers, nonce=headers.get("X-Bittensor-Nonce", ""))

    def _signed_empty(self, method: str, path: str, receiver: str) -> dict[str, str]:
        headers = bt.http_auth.sign(self._signer, method=method, path=path, body=b"", receiver_ss58=receiver)
        headers["X-Tensorage-Protocol"] = str(PROTOCOL_VERSION)
        return headers

    async def put_stream(self, host: str, port: int, path: str, receiver: str, body: Any, size: int, *,
                         idle_timeout: float = 60.0, max_reply: int = MAX_REPLY,
                         headers: Optional[dict[str, str]] = None) -> Reply:
        """PUT a streamed body of exactly ``size`` bytes (an async iterator of bytes, or a file object
        aiohttp reads in its executor). Signed over an empty body: ``path`` must bind the stream
        (see ``net.auth.access(streamed=True)``). The peer may answer before the body is sent."""
        extra = headers or {}
        headers = self._signed_empty("PUT", path, receiver)
        headers.update(extra)
        headers["Content-Length"] = str(size)
        headers["Content-Type"] = "application/octet-stream"
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=10.0, sock_read=idle_timeout)
        started = time.perf_counter()
        try:
            async with self.session.put(f"http://{host}:{port}{path}", data=body, headers=headers,
                                        timeout=timeout) as resp:
                data = await resp.content.read(max_reply + 1)
                if len(data) > max_reply:
                    raise PeerError("unreachable", f"answer larger than {max_reply} bytes: refused")
        except TimeoutError:
            raise PeerError("timeout", f"no progress from {host}:{port} for {idle_timeout:.0f}s") from None
        except (aiohttp.ClientError, OSError) as exc:
            raise PeerError("unreachable", f"{type(exc).__name__}: {exc}") from None
        return Reply(status=resp.status, body=data, latency_ms=(time.perf_counter() - started) * 1000)

    @asynccontextmanager
    async def get_stream(self, host: str, port: int, path: str, receiver: str, *, method: str = "GET",
                         idle_timeout: float = 60.0) -> AsyncIterator[aiohttp.ClientResponse]:
        """A signed request whose (large) answer the caller reads from ``response.content``, bounding
        it by what it asked for. Connection failures and silences become PeerError."""
        headers = self._signed_empty(method, path, receiver)
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=10.0, sock_read=idle_timeout)
        try:
            async with self.session.request(method, f"http://{host}:{port}{path}", headers=headers,
                                            timeout=timeout) as resp:
                yield resp
        except TimeoutError:
            raise PeerError("timeout", f"no data from {host}:{port} for {idle_timeout:.0f}s") from None
        except (aiohttp.ClientError, OSError) as exc:
            raise PeerError("unreachable", f"{type(exc).__name__}: {exc}") from None

    async def lines(self, method: str, host: str, port: int, path: str, receiver: str,
                    idle_timeout: float = 60.0) -> AsyncIterator[bytes]:
        """A long-lived signed request whose answer is read line by line (an event stream).
        Ends with PeerError when the peer goes quiet for ``idle_timeout`` or goes away."""
        headers = bt.http_auth.sign(self._signer, method=method, path=path, body=b"", receiver_ss58=receiver)
        headers["X-Tensorage-Protocol"] = str(PROTOCOL_VERSION)
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=10.0, sock_read=idle_timeout)
        try:
            async with self.session.request(method, f"http://{host}:{port}{path}", headers=headers,
                                            timeout=timeout) as resp:
                if resp.status != 200:
                    reply = Reply(status=resp.status, body=await resp.read(), latency_ms=0.0)
                    raise PeerError("unreachable", f"{path} answered {resp.status} {reply.error_message}")
                async for line in resp.content:
                    yield line
        except TimeoutError:
            raise PeerError("timeout", f"no data from {host}:{port} for {idle_timeout:.0f}s") from None
        except (aiohttp.ClientError, OSError) as exc:
            raise PeerError("unreachable", f"{type(exc).__name__}: {exc}") from None

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
