"""The operator API: a node's endpoints for its own operator, and the client that calls them.

A node answers these only when the request is signed by its own hotkey (``access(OPERATOR)``).
Paths and payloads are defined here once: the node's handlers route and parse with them, and
:class:`OperatorClient` (the console, ``--attach --no-tui``, ``status`` and the devnet supervisor)
builds requests with them. :class:`NodeFollower` keeps an event stream across node restarts.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from typing import AsyncIterator, Awaitable, Callable, Literal, Optional
from urllib.parse import urlencode

import bittensor as bt
from pydantic import BaseModel, ConfigDict, field_validator

from .. import PROTOCOL_VERSION, checks
from ..engines.snapshot import AnySnapshot, SnapshotError, parse_snapshot
from ..errors import ConfigError, TensorageError
from ..events import Event
from .client import PeerError, SignedClient

log = logging.getLogger(__name__)

STATE_PATH = "/v1/state"
EVENTS_PATH = "/v1/events"
JOB_ROUTE = "/v1/jobs/{job}/{action}"
SHARE_PATH = "/v1/share"
JobAction = Literal["run", "pause", "resume"]
JOB_ACTIONS: tuple[str, ...] = ("run", "pause", "resume")


def job_path(job: str, action: str) -> str:
    return JOB_ROUTE.format(job=job, action=action)


def events_path(since: Optional[float] = None) -> str:
    """The event stream; ``since`` (unix time) skips the history a reader already has."""
    return EVENTS_PATH + (f"?{urlencode({'since': repr(since)})}" if since is not None else "")


# --- payloads ------------------------------------------------------------------------------


class _Payload(BaseModel):
    model_config = ConfigDict(extra="forbid")

    protocol: int = PROTOCOL_VERSION


class ShareRequest(_Payload):
    """A new disk share for a running miner. ``remove_plots`` says a person agreed to lose plots:
    a share that would remove some is refused without it."""

    size_in_gb: float
    workers: Optional[int] = None
    remove_plots: bool = False

    # checks raise ConfigError, which pydantic would let through (a 500 for a mistyped share):
    # as a ValueError it is a validation error, and the caller gets a 400 with the check's message
    @field_validator("size_in_gb")
    @classmethod
    def _size(cls, value: float) -> float:
        try:
            return checks.size_in_gb(value)
        except ConfigError as exc:
            raise ValueError(str(exc)) from None

    @field_validator("workers")
    @classmethod
    def _workers(cls, value: Optional[int]) -> Optional[int]:
        try:
            return None if value is None else checks.workers(value)
        except ConfigError as exc:
            raise ValueError(str(exc)) from None


class ShareReply(_Payload):
    size_in_gb: float
    workers: Optional[int] = None
    plots_to_make: int = 0
    plots_to_remove: int = 0
    started: bool = True


class JobReply(_Payload):
    job: str
    action: str
    changed: bool  # False: nothing to do (resuming a job that is not paused)
    message: str


# --- client ----------------------------------------------------------------------------------


class NodeUnreachable(TensorageError):
    """The node did not answer (not running, another port, a network problem)."""


class NodeRefused(TensorageError):
    """The node answered with an error; the message is its own, and says what to do."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code = status, code


@dataclass(frozen=True)
class NodeAddress:
    host: str
    port: int

    @classmethod
    def parse(cls, endpoint: str) -> "NodeAddress":
        host, _, port = endpoint.rpartition(":")
        try:
            return cls(host.strip("[]") or "127.0.0.1", int(port))
        except ValueError:
            raise NodeUnreachable(f"{endpoint!r} is not host:port") from None

    def __str__(self) -> str:
        return f"{self.host}:{self.port}"


class OperatorClient:
    """Signed calls to one node with its own wallet (the operator's)."""

    def __init__(self, wallet: bt.Wallet, address: NodeAddress, client: Optional[SignedClient] = None) -> None:
        self.wallet = wallet
        self.hotkey = wallet.hotkey.ss58_address
        self.address = address
        self._owns_client = client is None
        self.client = client or SignedClient(wallet, connections=8)

    async def _call(self, method: str, path: str, body: bytes = b"", timeout: float = 10.0) -> bytes:
        a = self.address
        try:
            reply = await self.client.request(method, a.host, a.port, path, receiver=self.hotkey, body=body,
                                              timeout=timeout)
        except PeerError as exc:
            raise NodeUnreachable(f"the node at {a} is not answering ({exc}): is it running?") from None
        if reply.status >= 300:
            try:
                data = reply.json()
                code, message = str(data.get("error")), str(data.get("message"))
            except (ValueError, AttributeError):
                code, message = "error", reply.body[:200].decode(errors="replace")
            raise NodeRefused(reply.status, code, message)
        return reply.body

    async def state(self) -> AnySnapshot:
        body = await self._call("GET", STATE_PATH, timeout=5.0)
        try:
            snap = parse_snapshot(body)
        except SnapshotError as exc:
            raise NodeRefused(200, "bad_state", f"the node at {self.address} sent {exc}") from None
        if snap.hotkey != self.hotkey:
            raise NodeRefused(200, "wrong_node", f"the node at {self.address} runs hotkey {snap.hotkey}: attach "
                                                 f"with its wallet")
        return snap

    async def job(self, job: str, action: str) -> JobReply:
        return JobReply.model_validate_json(await self._call("POST", job_path(job, action)))

    async def set_share(self, size_in_gb: float, workers: Optional[int] = None,
                        remove_plots: bool = False) -> ShareReply:
        checks.size_in_gb(size_in_gb)  # a mistyped share is the operator's ConfigError here, before any request
        if workers is not None:
            checks.workers(workers)
        req = ShareRequest(size_in_gb=size_in_gb, workers=workers, remove_plots=remove_plots)
        return ShareReply.model_validate_json(await self._call("POST", SHARE_PATH, req.model_dump_json().encode()))

    async def events(self, since: Optional[float] = None, idle_timeout: float = 60.0) -> AsyncIterator[Event]:
        """The node's events (its recent history after ``since``, then live) until the stream ends;
        ends with NodeUnreachable when the node goes away."""
        a = self.address
        try:
            async for raw in self.client.lines("GET", a.host, a.port, events_path(since), receiver=self.hotkey,
                                               idle_timeout=idle_timeout):
                event = Event.from_json(raw.decode(errors="replace")) if raw.strip() else None
                if event is not None:
                    yield event
        except PeerError as exc:
            raise NodeUnreachable(f"lost the node at {a} ({exc})") from None
        raise NodeUnreachable(f"the node at {a} closed its event stream")

    async def close(self) -> None:
        if self._owns_client:
            await self.client.close()


# --- following a node across restarts -----------------------------------------------------------

BACKOFF_S = (0.5, 1.0, 2.0, 3.0, 5.0)


@dataclass
class Link:
    """Where the follower stands: what the console shows about its node."""

    state: Literal["connecting", "connected", "lost"] = "connecting"
    address: Optional[NodeAddress] = None
    pid: Optional[int] = None
    attempts: int = 0
    reason: str = ""
    since: float = 0.0  # when this state began


Locator = Callable[[], Awaitable[list[NodeAddress]]]


class NodeFollower:
    """Follow one node's events for as long as it lives, and find it again when it restarts.

    ``locate`` returns where the node may be now (its state file first, then the chain); each is
    asked for its state, and the first that answers with our hotkey is followed. Retries back off
    to 5 s. ``on_event`` gets every event once (a reconnect to the same process skips what was
    already seen); ``on_link`` gets every change of :class:`Link`, ``on_state`` every fresh snapshot.
    """

    def __init__(self, wallet: bt.Wallet, locate: Locator, on_event: Callable[[Event], None],
                 on_link: Callable[[Link], None], on_state: Callable[[AnySnapshot], None],
                 backoff: tuple[float, ...] = BACKOFF_S) -> None:
        self.wallet = wallet
        self.locate = locate
        self.on_event, self.on_link, self.on_state = on_event, on_link, on_state
        self.backoff = backoff
        self.link = Link()
        self.client = SignedClient(wallet, connections=8)
        self.operator: Optional[OperatorClient] = None
        self._last_ts: dict[int, float] = {}  # pid -> newest event seen from that process

    def _set(self, **changes) -> None:
        for k, v in changes.items():
            setattr(self.link, k, v)
        self.link.since = time.time()
        self.on_link(self.link)

    async def connect(self) -> AnySnapshot:
        """One pass over the candidates; raises NodeUnreachable (or NodeRefused) when none answers."""
        errors: list[str] = []
        for address in await self.locate():
            operator = OperatorClient(self.wallet, address, self.client)
            try:
                snap = await operator.state()
            except NodeUnreachable as exc:
                errors.append(str(exc))
                continue
            self.operator = operator
            self.on_state(snap)  # first: whoever reacts to the link reads the node's snapshot
            self._set(state="connected", address=address, pid=snap.pid, attempts=0, reason="")
            return snap
        raise NodeUnreachable("; ".join(errors) or "no address to try: the node has not published one yet")

    async def refresh(self) -> Optional[AnySnapshot]:
        if self.operator is None:
            return None
        snap = await self.operator.state()
        self.on_state(snap)
        return snap

    async def run(self) -> None:
        """Stream, reconnect, repeat, until cancelled."""
        while True:
            if self.link.state != "connected":
                try:
                    await self.connect()
                except (NodeUnreachable, NodeRefused) as exc:
                    delay = self.backoff[min(self.link.attempts, len(self.backoff) - 1)]
                    self._set(state="lost" if self.link.address else "connecting", attempts=self.link.attempts + 1,
                              reason=str(exc))
                    await asyncio.sleep(delay)
                    continue
            assert self.operator is not None
            pid = self.link.pid or 0
            try:
                async for event in self.operator.events(since=self._last_ts.get(pid)):
                    self._last_ts[pid] = max(self._last_ts.get(pid, 0.0), event.ts)
                    self.on_event(event)
            except NodeUnreachable as exc:
                self._set(state="lost", reason=str(exc), attempts=0)

    async def close(self) -> None:
        await self.client.close()

