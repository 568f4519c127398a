"""A second event loop, in its own thread, for a node's requests to many peers at once.

A validator signs and sends a request to every miner each window and each sync: at a
thousand miners that is most of a second of Python per burst. Run on the node's own loop,
it would delay everything else that loop serves (its health check, the operator's console,
other miners' answers being timed). On this loop the burst only shares the interpreter,
which hands the node's loop a turn every few milliseconds. A window's signatures are not made
here but in batches by the signing process (net/signer.py): they were 28 % of the time this
thread held the GIL at 1,024 miners.
"""

from __future__ import annotations

import asyncio
import threading
from typing import Any, Coroutine, Optional, TypeVar

T = TypeVar("T")


class PeerLoop:
    def __init__(self, name: str = "peers") -> None:
        self.name = name
        self._loop: Optional[asyncio.AbstractEventLoop] = None
        self._thread: Optional[threading.Thread] = None

    def _start(self) -> asyncio.AbstractEventLoop:
        if self._loop is None:
            loop = asyncio.new_event_loop()
            ready = threading.Event()

            def run() -> None:
                asyncio.set_event_loop(loop)
                loop.call_soon(ready.set)
                loop.run_forever()

            self._thread = threading.Thread(target=run, name=self.name, daemon=True)
            self._thread.start()
            ready.wait()
            self._loop = loop
        return self._loop

    async def call(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run ``coro`` on the peer loop and wait for it here; cancelling the wait cancels it."""
        return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(coro, self._start()))

    def close(self) -> None:
        loop, self._loop = self._loop, None
        if loop is None:
            return
        loop.call_soon_threadsafe(loop.stop)
        if self._thread is not None:
            self._thread.join(timeout=5)
        loop.close()
