"""The subnet side of the S3 server: one client connection to a validator gateway, found as
`tensorage store` finds it, found again when the gateway stops answering."""

from __future__ import annotations

import asyncio
import logging
from typing import Awaitable, Callable, Optional, TypeVar

from ..client.errors import GatewayError
from ..config import Settings

log = logging.getLogger(__name__)
T = TypeVar("T")
RECONNECT_ON = ("unreachable", "timeout")


class Remote:
    def __init__(self, settings: Settings, key: bytes, connect: Optional[Callable] = None) -> None:
        from ..client.connect import connect_client

        self.settings, self.key = settings, key
        self._connect = connect or connect_client
        self._client = None
        self._lock = asyncio.Lock()

    async def client(self):
        async with self._lock:
            if self._client is None:
                self._client = await self._connect(self.settings, self.key)
            return self._client

    async def call(self, op: Callable[[object], Awaitable[T]]) -> T:
        client = await self.client()
        try:
            return await op(client)
        except GatewayError as exc:
            if exc.status == 0 and exc.code in RECONNECT_ON and self._client is client:
                self._client = None  # the next request looks for a gateway again
            raise

    async def close(self) -> None:
        if self._client is not None:
            await self._client.close()
            self._client = None
