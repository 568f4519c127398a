"""The devnet's fault switch: make its chain error or stall, for tests and for an operator to try.

``tensorage devnet fault error|stall|off [--seconds N]`` writes the switch into the devnet's file,
so every node process sharing the devnet sees it within :data:`FAULT_CACHE_S`. While it is on,
the nodes' chain calls fail the way a real endpoint's do: ``error`` raises
:class:`ChainUnreachable` at once (a refused connection, an RPC error); ``stall`` holds each call
for ``stall_s`` (the real backend's per-call bound, chain/bounded.py) and then raises
:class:`ChainStalled`, or answers normally if the switch went off meanwhile.

Only the nodes' connections (``chain.connect``) obey it: the supervisor, the console and
``tensorage devnet fault off`` itself keep reading the chain, or nobody could turn it off.
"""

from __future__ import annotations

import functools
import json
import threading
import time
from dataclasses import asdict, dataclass
from typing import Any, Callable, Literal, Optional, TypeVar

from ..errors import ChainStalled, ChainUnreachable, ConfigError

FAULT_KEY = "fault"
FAULT_CACHE_S = 0.25  # how stale a process's view of the switch may be
DEFAULT_STALL_S = 5.0
STALL_POLL_S = 0.1
FaultMode = Literal["error", "stall"]
MODES = ("error", "stall", "off")

F = TypeVar("F", bound=Callable[..., Any])


@dataclass(frozen=True)
class Fault:
    mode: FaultMode
    until: Optional[float] = None  # unix time it turns itself off; None: until turned off
    stall_s: float = DEFAULT_STALL_S
    set_at: float = 0.0

    def active(self, now: float) -> bool:
        return self.until is None or now < self.until

    def describe(self, now: Optional[float] = None) -> str:
        now = time.time() if now is None else now
        what = "every chain call errors" if self.mode == "error" else f"every chain call stalls {self.stall_s:g}s"
        left = f" for {self.until - now:.0f}s more" if self.until is not None else " until `tensorage devnet fault off`"
        return f"{what}{left}"


def set_fault(chain: Any, mode: str, seconds: Optional[float] = None, stall_s: float = DEFAULT_STALL_S) -> Optional[Fault]:
    """Turn the switch of the devnet ``chain`` (a :class:`~tensorage.chain.devnet.Devnet`) on or off."""
    if mode not in MODES:
        raise ConfigError(f"unknown fault {mode!r}: use one of {', '.join(MODES)}")
    if seconds is not None and seconds <= 0:
        raise ConfigError("--seconds must be positive (leave it out for a fault that lasts until `off`)")
    if stall_s <= 0:
        raise ConfigError("--stall-seconds must be positive")
    with chain.db.atomic("IMMEDIATE"):
        if mode == "off":
            chain.Meta.delete().where(chain.Meta.key == FAULT_KEY).execute()
            return None
        now = time.time()
        fault = Fault(mode=mode, until=now + seconds if seconds else None, stall_s=stall_s, set_at=now)  # type: ignore[arg-type]
        chain.Meta.replace(key=FAULT_KEY, value=json.dumps(asdict(fault))).execute()
        return fault


def read_fault(chain: Any) -> Optional[Fault]:
    """The switch as the devnet file holds it now (None: off, expired or unreadable)."""
    row = chain.Meta.get_or_none(chain.Meta.key == FAULT_KEY)
    if row is None:
        return None
    try:
        fault = Fault(**json.loads(row.value))
    except (ValueError, TypeError):
        return None
    return fault if fault.active(time.time()) else None


class FaultReader:
    """A process's cached view of the switch (one SQLite read per :data:`FAULT_CACHE_S`)."""

    def __init__(self, chain: Any) -> None:
        self.chain = chain
        self._lock = threading.Lock()
        self._fault: Optional[Fault] = None
        self._read_at = float("-inf")

    def current(self) -> Optional[Fault]:
        now = time.monotonic()
        with self._lock:
            if now - self._read_at < FAULT_CACHE_S:
                fault = self._fault
                return fault if fault is not None and fault.active(time.time()) else None
        fault = read_fault(self.chain)
        with self._lock:
            self._fault, self._read_at = fault, time.monotonic()
        return fault

    def check(self, what: str) -> None:
        """Raise as the switch says, or return when it is off."""
        fault = self.current()
        if fault is None:
            return
        if fault.mode == "error":
            raise ChainUnreachable(f"{what} on the devnet failed: the devnet's fault switch makes the chain error "
                                   f"({fault.describe()}); `tensorage devnet fault off` ends it")
        end = time.monotonic() + fault.stall_s
        while time.monotonic() < end:
            time.sleep(STALL_POLL_S)
            if self.current() is None:
                return  # the chain is back: this call goes through, late
        raise ChainStalled(f"{what} on the devnet got no answer within {fault.stall_s:g}s: the devnet's fault "
                           f"switch makes the chain stall ({fault.describe()}); `tensorage devnet fault off` ends it")


def faultable(method: F) -> F:
    """A devnet port method that obeys the fault switch when the devnet object was opened for a
    node (``faults_apply``)."""

    @functools.wraps(method)
    def call(self: Any, *args: Any, **kwargs: Any) -> Any:
        if getattr(self, "faults_apply", False):
            reader = self.__dict__.get("_fault_reader")
            if reader is None:
                reader = self.__dict__.setdefault("_fault_reader", FaultReader(self))
            reader.check(method.__name__)
        return method(self, *args, **kwargs)

    return call  # type: ignore[return-value]
