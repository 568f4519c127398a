"""A time bound on every chain RPC of bittensor 11, through the SDK's own seam.

bittensor 11 has no per-call timeout: ``SyncClient`` blocks on its private loop without one, and
the transport waits up to 60 s per response and retries (or forever with ``retry_forever``). A
stalled endpoint would then hold a job, and the thread it runs in, for minutes. ``Client`` takes a
``substrate=`` (the documented way to swap the chain-access backend), so we hand it the SDK's own
``RpcSubstrate`` wrapped in :class:`BoundedSubstrate`: every coroutine of it runs under
``asyncio.wait_for``, which cancels the RPC cleanly on the SDK's loop (no thread is left waiting).

A high-level call (``subnets.metagraph``, ``execute``) makes several RPCs. Each is bounded, and
the whole call too: the backend sets :attr:`BoundedSubstrate.call_deadline` before each port call
(each calling thread has its own client, hence its own substrate, so the deadline is that call's
alone) and every RPC gets what is left of it. Writes wait for inclusion in a block (one or two
12 s blocks on finney, then finalization), so they get longer bounds than reads.
"""

from __future__ import annotations

import asyncio
import inspect
import time
from typing import Any, Optional

import bittensor as bt
from bittensor import settings as bt_settings

READ_TIMEOUT_S = 20.0    # one read RPC
WRITE_TIMEOUT_S = 90.0   # one submit-and-watch RPC
READ_CALL_S = 45.0       # a whole read (the metagraph is a few RPCs; connecting is one more)
WRITE_CALL_S = 180.0     # a whole write (plan, preflight, sign, submit, watch)
# Substrate coroutines that submit or watch an extrinsic (they wait for a block).
WRITE_METHODS = frozenset({"submit", "submit_signed", "submit_signature", "submit_multisig", "find_extrinsic"})


class ChainCallTimeout(TimeoutError):
    """One chain RPC got no answer within its bound (the backend turns it into ChainStalled)."""

    def __init__(self, method: str, seconds: float) -> None:
        super().__init__(f"no answer to {method} within {seconds:g}s")
        self.method = method
        self.seconds = seconds


class BoundedSubstrate:
    """Wraps a ``bt.Substrate``: each coroutine method under a deadline; everything else passes through."""

    _OWN = frozenset({"_inner", "read_s", "write_s", "call_deadline"})

    def __init__(self, inner: Any, read_s: float = READ_TIMEOUT_S, write_s: float = WRITE_TIMEOUT_S) -> None:
        object.__setattr__(self, "_inner", inner)
        object.__setattr__(self, "read_s", read_s)
        object.__setattr__(self, "write_s", write_s)
        object.__setattr__(self, "call_deadline", None)  # time.monotonic() by which the current port call ends

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._inner, name)
        if not inspect.iscoroutinefunction(attr):
            return attr  # plain methods, properties and async generators (subscriptions) pass through
        per_rpc = self.write_s if name in WRITE_METHODS else self.read_s

        async def bounded(*args: Any, **kwargs: Any) -> Any:
            deadline: Optional[float] = self.call_deadline
            seconds = per_rpc if deadline is None else min(per_rpc, deadline - time.monotonic())
            if seconds <= 0:
                raise ChainCallTimeout(name, 0.0)
            try:
                return await asyncio.wait_for(attr(*args, **kwargs), seconds)
            except asyncio.TimeoutError:
                raise ChainCallTimeout(name, seconds) from None

        bounded.__name__ = name
        return bounded

    def __setattr__(self, name: str, value: Any) -> None:
        if name in self._OWN:
            object.__setattr__(self, name, value)
        else:
            setattr(self._inner, name, value)  # Client.connect installs token_symbols on the substrate


def rpc_substrate(network: str) -> Any:
    """The ``RpcSubstrate`` that ``bt.Client(network)`` would build, with the same endpoint pools."""
    label, endpoint = bt_settings.resolve_endpoint(network)
    return bt.RpcSubstrate(
        endpoint,
        fallback_endpoints=[u for u in bt_settings.default_fallback_endpoints(label) if u != endpoint],
        archive_endpoints=bt_settings.default_archive_endpoints(label),
    )


def bounded_client(network: str, read_s: float = READ_TIMEOUT_S, write_s: float = WRITE_TIMEOUT_S) -> bt.SyncClient:
    """A ``bt.SyncClient`` whose every RPC has a bound. Cold: nothing connects until the first call.
    Its substrate is kept as ``client.tensorage_bound`` so the backend can set each call's deadline."""
    substrate = BoundedSubstrate(rpc_substrate(network), read_s, write_s)
    client = bt.SyncClient(network, substrate=substrate)
    client.tensorage_bound = substrate  # type: ignore[attr-defined]
    return client
