"""A signing service: a child process that holds the hotkey and signs a window's requests in batches.

A validator signs a request to every miner each window, each bound to its receiver (the
``bittensor.http_auth`` signature covers the receiver's hotkey and a fresh nonce, so one signature
cannot serve two miners nor be replayed). At 1,024 miners that is 30 ms of CPU holding the GIL
(``http_auth.sign`` also resolves the signer and checks its protocol on every call), and on a busy
machine the thread holding it is descheduled too: py-spy counted it as 28 % of the time the peer
thread held the GIL, which the node's own loop waits for. In a child process the batch costs the
node 2.3 ms of CPU (``benchmarks/bench_signing.py``): one pickled batch each way.

A signer that dies (killed, out of memory) is started again and the batch signed again, with an
error in the log; if the new one fails too, the batch is signed in this process, so a window is
never lost to the signer. :attr:`SigningService.restarts` counts the restarts.

A batch is signed when the window starts and every request is sent before the window's deadline,
well inside the receivers' freshness bound (``net.auth.MAX_AGE_S``). A request sent again (a miner
that answered 425) is signed anew, in the node, with a fresh nonce.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from concurrent.futures import ProcessPoolExecutor
from typing import Any, NamedTuple, Optional

import bittensor as bt

from ..procutil import child_pool

log = logging.getLogger(__name__)

SIGN_TIMEOUT_S = 30.0


class SignItem(NamedTuple):
    """One request to sign: what ``bittensor.http_auth.sign`` binds."""

    method: str
    path: str
    body: bytes
    receiver: str


_SIGNER: Any = None  # the child's signer, resolved once from the wallet


def _load(name: str, hotkey: str, path: str) -> None:
    """In the child: the key is read from the wallet's own file (a loaded keypair does not pickle)."""
    global _SIGNER
    _SIGNER = bt.resolve_signer(bt.Wallet(name=name, hotkey=hotkey, path=path), role="hotkey")


def sign_batch(signer: Any, items: list[SignItem]) -> list[dict[str, str]]:
    """The headers for each item, in order (each with its own nonce)."""
    return [bt.http_auth.sign(signer, method=m, path=p, body=b, receiver_ss58=r) for m, p, b, r in items]


def _child_sign(items: list[SignItem]) -> list[dict[str, str]]:
    return sign_batch(_SIGNER, items)


def _child_pid() -> int:
    import os

    return os.getpid()


class SigningService:
    """Signs batches in one child process (spawned, dies with this one), started on first use."""

    def __init__(self, wallet: bt.Wallet, signer: Any = None) -> None:
        self.wallet = wallet
        self._local = signer  # for the fallback; resolved when first needed
        self._pool: Optional[ProcessPoolExecutor] = None
        self._lock = threading.Lock()  # batches come from the peer loop's thread
        self.restarts = 0
        self.fallbacks = 0  # batches signed in this process because the signer could not

    def _executor(self) -> ProcessPoolExecutor:
        with self._lock:
            if self._pool is None:
                pool = child_pool(1)
                try:
                    pool.submit(_load, self.wallet.name, self.wallet.hotkey_str, self.wallet.path) \
                        .result(timeout=SIGN_TIMEOUT_S)
                except BaseException:
                    pool.shutdown(wait=False, cancel_futures=True)
                    raise
                self._pool = pool
            return self._pool

    def _discard(self, pool: ProcessPoolExecutor) -> None:
        with self._lock:
            if self._pool is pool:
                self._pool = None
        pool.shutdown(wait=False, cancel_futures=True)

    async def pid(self) -> int:
        """The signer's process id (it is started if it is not running)."""
        loop = asyncio.get_running_loop()
        pool = await loop.run_in_executor(None, self._executor)
        return await asyncio.wrap_future(pool.submit(_child_pid))

    async def warm(self) -> None:
        """Start the child and load the key before a window needs it."""
        await self.pid()

    async def sign(self, items: list[SignItem]) -> list[dict[str, str]]:
        """Headers for every item. Never loses the batch: a dead signer is replaced once, then the
        batch is signed here (both said in the log)."""
        if not items:
            return []
        loop = asyncio.get_running_loop()
        for attempt in (1, 2):
            pool = None
            try:
                pool = await loop.run_in_executor(None, self._executor)
                return await asyncio.wait_for(asyncio.wrap_future(pool.submit(_child_sign, items)), SIGN_TIMEOUT_S)
            except Exception as exc:  # died, hung, or could not start: never the window's loss
                if pool is not None:
                    self._discard(pool)
                self.restarts += 1
                log.error("the request signer process failed (%s: %s); %s", type(exc).__name__, exc or "died",
                          "starting a new one" if attempt == 1 else "signing this batch in the node itself")
        self.fallbacks += 1
        if self._local is None:
            self._local = bt.resolve_signer(self.wallet, role="hotkey")
        return sign_batch(self._local, items)

    def close(self) -> None:
        with self._lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)
