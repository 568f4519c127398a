"""Is this node's chain answering? Every chain call a node makes reports here.

A node keeps serving when its chain errors or stalls (miners answer from what they hold, the
validator's jobs retry with backoff), so the operator needs to see that it is running blind:
"ok", or "unreachable since T" with the last error and when the next retry is. Calls arrive from
worker threads (engines use ``asyncio.to_thread``), hence the lock.

Only an unreachable chain (:class:`ChainUnreachable`, a stall included) marks it down: a refusal
(not registered, a rate limit) or a block that is not made yet is the chain answering.
"""

from __future__ import annotations

import itertools
import threading
import time
from dataclasses import asdict, dataclass
from typing import Any, Callable, Literal, Optional

from ..errors import BlockNotYet, ChainError, ChainStalled, ChainUnreachable

HealthState = Literal["unknown", "ok", "unreachable"]

# A chain read without an answer for this long is taken for a stall: later calls fail at once
# instead of queueing behind it (a devnet read takes milliseconds, a finney read a second or two;
# the backend gives up on a read at 20-45 s).
SUSPECT_STALL_S = 10.0

# The port's methods: each call is timed and its outcome recorded.
READ_METHODS = frozenset({"block", "block_hash", "block_timestamp", "block_time", "metagraph"})
PORT_METHODS = READ_METHODS | {"serve", "set_weights"}


@dataclass
class ChainHealthView:
    """What the snapshot, ``status`` and the console show."""

    state: HealthState = "unknown"
    since: Optional[float] = None       # unix time the state began
    last_ok_at: Optional[float] = None
    last_error: str = ""
    last_error_at: Optional[float] = None
    failures: int = 0                   # chain calls failed since the last one that worked
    recoveries: int = 0                 # times it came back after being unreachable
    next_retry: Optional[float] = None  # the soonest retry of a job backing off (filled in by the node)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class ChainHealth:
    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._view = ChainHealthView()

    def ok(self) -> None:
        with self._lock:
            v = self._view
            now = self._clock()
            if v.state != "ok":
                v.recoveries += v.state == "unreachable"
                v.state, v.since = "ok", now
            v.last_ok_at, v.failures = now, 0

    def failed(self, exc: BaseException) -> None:
        """Record a failed call: an unreachable chain marks it down, a refusal only notes the error."""
        with self._lock:
            v = self._view
            now = self._clock()
            v.last_error, v.last_error_at = f"{type(exc).__name__}: {exc}"[:300], now
            if isinstance(exc, ChainUnreachable):
                v.failures += 1
                if v.state != "unreachable":
                    v.state, v.since = "unreachable", now

    @property
    def state(self) -> HealthState:
        return self._view.state

    @property
    def recoveries(self) -> int:
        return self._view.recoveries

    def view(self, next_retry: Optional[float] = None) -> ChainHealthView:
        with self._lock:
            return ChainHealthView(**{**asdict(self._view), "next_retry": next_retry})


def describe(view: Any, now: Optional[float] = None) -> str:
    """One line for a person: "chain ok" or "chain unreachable for 2m 10s, retry in 8s: <error>".
    ``view`` is a ChainHealthView or the snapshot's model of it (same fields)."""
    now = time.time() if now is None else now
    if view is None or view.state == "unknown":
        return "chain not read yet"
    if view.state == "ok":
        return "chain ok"
    since = f" for {_span(now - view.since)}" if view.since else ""
    retry = f", retry in {_span(max(0.0, view.next_retry - now))}" if view.next_retry else ""
    return f"chain unreachable{since}{retry}: {view.last_error}"


def _span(seconds: float) -> str:
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m {seconds % 60:02d}s"
    return f"{seconds // 3600}h {seconds % 3600 // 60:02d}m"


class MonitoredChain:
    """A chain port that reports each call's outcome to a :class:`ChainHealth`, and does not let
    callers pile up behind a chain that does not answer. Anything that is not a port method (the
    devnet's own helpers) passes through untouched.

    Engines call the port from asyncio's default thread pool (a handful of threads), which also
    runs their file and shard work. Every chain call is bounded (tens of seconds on a real
    network), but a stalled chain would still hold one thread per caller for that long: a window's
    challenges from many validators would take them all and the miner would stop serving shards.
    So a read fails at once, without touching the chain, when another read has had no answer for
    :attr:`suspect_s`, or when the chain is known unreachable and one read is already probing it.
    Writes are left alone: they legitimately wait for a block or two, and are rare.
    """

    suspect_s = SUSPECT_STALL_S

    def __init__(self, chain: Any, health: ChainHealth) -> None:
        self.inner = chain
        self.health = health
        self._lock = threading.Lock()
        self._inflight: dict[int, float] = {}  # call token -> time.monotonic() it started
        self._tokens = itertools.count()

    def _enter(self, name: str) -> int:
        now = time.monotonic()
        with self._lock:
            oldest = min(self._inflight.values(), default=None)
            if oldest is not None and now - oldest > self.suspect_s:
                raise ChainStalled(f"{name}: not asked, a chain call has had no answer for {now - oldest:.0f}s; "
                                   f"retrying with backoff once it ends")
            if oldest is not None and self.health.state == "unreachable":
                view = self.health.view()
                raise ChainUnreachable(f"{name}: not asked, the chain is unreachable ({view.last_error}) and a call "
                                       f"is already probing it")
            token = next(self._tokens)
            self._inflight[token] = now
            return token

    def _exit(self, token: int) -> None:
        with self._lock:
            self._inflight.pop(token, None)

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self.inner, name)
        if name not in PORT_METHODS or not callable(attr):
            return attr

        gated = name in READ_METHODS

        def call(*args: Any, **kwargs: Any) -> Any:
            token = self._enter(name) if gated else None  # may fail fast: nothing learnt, health unchanged
            try:
                result = attr(*args, **kwargs)
            except ChainUnreachable as exc:
                self.health.failed(exc)
                raise
            except BlockNotYet:  # the chain answered: that block is not made yet (routine)
                self.health.ok()
                raise
            except ChainError as exc:  # the chain answered with a refusal: reachable, error noted
                self.health.ok()
                self.health.failed(exc)
                raise
            finally:
                if token is not None:
                    self._exit(token)
            self.health.ok()
            return result

        call.__name__ = name
        return call
