"""What miners and validators share: wallet, chain, bus, jobs, a signed HTTP server with the
operator API, the database root's lock, and the state file other processes read (``node.json``)."""

from __future__ import annotations

import asyncio
import json
import logging
import math
import os
import time
from collections import Counter
from dataclasses import asdict
from typing import Any, Optional

import bittensor as bt
from aiohttp import web

from .. import PROTOCOL_VERSION, __version__
from ..chain.health import ChainHealth, MonitoredChain
from ..chain.port import ChainPort, Metagraph, Neuron
from ..config import Settings
from ..errors import NotRegistered, TensorageError
from ..events import ErrorEvent, EventBus, JobRan
from ..net import operator as op
from ..net.address import AxonPlan, plan_axon
from ..metrics import MetricsServer, NodeMetrics
from ..net.auth import ON_REFUSED, OPERATOR, PUBLIC, PeerDirectory, access
from ..net.errors import reject
from ..net.messages import HealthResponse
from ..net.server import Served, make_app, serve
from ..scheduler import Jobs
from ..storage.files import atomic_write
from ..storage.layout import Footprint, Layout
from ..storage.lock import NodeLock
from .snapshot import NODE_STATE_FILE, AnySnapshot, SnapshotError, parse_snapshot, read_snapshot

log = logging.getLogger(__name__)

EVENT_STREAM_QUEUE = 5000
EVENT_KEEPALIVE_S = 15.0


class Node:
    role = "node"

    def __init__(self, settings: Settings, wallet: bt.Wallet, chain: ChainPort, bus: Optional[EventBus] = None,
                 source: Optional[str] = None) -> None:
        self.settings = settings
        self.profile = settings.profile
        self.wallet = wallet
        self.hotkey = wallet.hotkey.ss58_address
        # Every chain call reports to the node's chain health (status, the console); the jobs that
        # fail on the chain back off (scheduler.py) and all retry at once when it answers again.
        self.chain_health = ChainHealth()
        self.chain = MonitoredChain(chain, self.chain_health)  # type: ignore[assignment]
        self._recoveries_seen = 0
        self.bus = bus or EventBus()
        self.source = source or self.role
        self.layout = Layout(settings.db_root)
        self.axon: AxonPlan = plan_axon(settings)  # refuses an unreachable address before anything starts
        self.lock = NodeLock(self.layout)
        self.footprint = Footprint.of(self.layout)  # before subclasses create their files
        self.published: Optional[tuple[str, int]] = None
        self.jobs = Jobs(self.bus, self.source)
        self.directory = PeerDirectory(self._load_metagraph)
        self.served: Optional[Served] = None
        self.requests_refused: Counter[tuple[str, str]] = Counter()  # (route, error code) -> requests refused
        self.metrics: Optional[NodeMetrics] = None  # --metrics.port: built when the node starts serving
        self.metrics_server: Optional[MetricsServer] = None
        self._metrics_unsubscribe: list = []
        self.started_at = time.time()
        self.uid: Optional[int] = None
        self._stop = asyncio.Event()
        self._stopped = False
        self._state_writer: Optional[asyncio.Task] = None
        self._state_dirty = False
        self._unsubscribe = self.bus.subscribe(self._on_event)

    # chain --------------------------------------------------------------------------------
    async def _load_metagraph(self) -> Metagraph:
        return await asyncio.to_thread(self.chain.metagraph)

    @property
    def metagraph(self) -> Optional[Metagraph]:
        return self.directory.metagraph

    async def sync_metagraph(self) -> Metagraph:
        mg = await self.directory.refresh()
        me = mg.by_hotkey(self.hotkey)
        self.uid = me.uid if me else None
        if me is not None and self.published is not None:
            await self.check_published(me)
        return mg

    async def check_published(self, me: Neuron) -> None:
        """The chain must point validators at this process. A second copy that published its own
        address and stopped, a lost write or a reset leaves them calling a dead port: publish ours
        again, unless another live node with this hotkey answers there (two nodes would take turns
        overwriting each other; the operator has to stop one)."""
        want = self.published
        assert want is not None
        if me.endpoint == want:
            return
        shown = me.axon or "no address"
        if me.endpoint is not None and await self._another_node_at(*me.endpoint):
            self.bus.publish(ErrorEvent(
                message=f"another node with this hotkey answers at {shown}, where the chain points, while this one "
                        f"serves {want[0]}:{want[1]}: stop one of them (they would keep replacing each other's "
                        f"address)", source=self.source))
            return
        try:
            await asyncio.to_thread(self.chain.serve, self.wallet, *want)
        except TensorageError as exc:
            self.bus.publish(ErrorEvent(message=f"the chain shows {shown} for this node, not {want[0]}:{want[1]}; "
                                                f"publishing it again failed: {exc}", source=self.source))
            return
        self.bus.log(f"the chain showed {shown} for this node instead of {want[0]}:{want[1]}: published it again",
                     severity="warning", source=self.source)

    async def _another_node_at(self, host: str, port: int) -> bool:
        """Does a node other than this process answer as this hotkey at host:port?"""
        client = op.OperatorClient(self.wallet, op.NodeAddress(host, port))
        try:
            snap = await client.state()
        except TensorageError:
            return False
        finally:
            await client.close()
        return not (snap.pid == os.getpid() and snap.started_at == self.started_at)

    def me(self) -> Optional[Neuron]:
        return self.metagraph.by_hotkey(self.hotkey) if self.metagraph else None

    async def require_registered(self) -> Neuron:
        mg = await self.sync_metagraph()
        me = mg.by_hotkey(self.hotkey)
        if me is None:
            hint = ("run `tensorage devnet init`" if self.settings.network == "devnet"
                    else f"register it with `btcli subnets register --netuid {mg.netuid} --wallet "
                         f"{self.settings.wallet.name} --wallet-hotkey {self.settings.wallet.hotkey} --network "
                         f"{self.settings.network}`")
            raise NotRegistered(f"hotkey {self.hotkey} is not registered on netuid {mg.netuid}: {hint}")
        return me

    # http ---------------------------------------------------------------------------------
    def build_app(self) -> web.Application:
        app = make_app(self.hotkey, self.directory, self.settings.resolved_netuid)
        app[ON_REFUSED] = self._note_refused
        app.router.add_get("/v1/health", self.health)
        app.router.add_get(op.EVENTS_PATH, self.handle_events)
        app.router.add_get(op.STATE_PATH, self.handle_state)
        app.router.add_post(op.JOB_ROUTE, self.handle_job)
        self.add_routes(app)
        return app

    def add_routes(self, app: web.Application) -> None:
        """Subclasses add their endpoints."""

    def _note_refused(self, route: str, code: str) -> None:
        self.requests_refused[(route, code)] += 1

    @access(PUBLIC)
    async def health(self, request: web.Request) -> web.Response:
        body = HealthResponse(version=__version__, hotkey=self.hotkey, role=self.role, plots=self.plot_count(),
                              uptime_s=time.time() - self.started_at)
        return web.json_response(body.model_dump())

    def plot_count(self) -> int:
        return 0

    # operator endpoints: a console attached to this running node ----------------------------
    @access(OPERATOR)
    async def handle_events(self, request: web.Request) -> web.StreamResponse:
        """NDJSON: the recent history (after ``?since=``, unix time, when given), then every event
        as it happens. A reader that falls behind loses the oldest lines; the engine never waits."""
        try:
            since = float(request.query["since"]) if "since" in request.query else None
        except ValueError:
            since = math.nan
        if since is not None and not math.isfinite(since):  # NaN or inf: a stream no event could ever pass
            reject(400, "bad_request", "since must be a unix time, e.g. since=1700000000.5")
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[str] = asyncio.Queue(maxsize=EVENT_STREAM_QUEUE)

        def put(line: str) -> None:
            if queue.full():
                queue.get_nowait()
            queue.put_nowait(line)

        def push(event) -> None:
            if since is None or event.ts > since:
                loop.call_soon_threadsafe(put, event.to_json())

        response = web.StreamResponse(headers={"Content-Type": "application/x-ndjson"})
        await response.prepare(request)
        unsubscribe = self.bus.subscribe(push, replay=True)
        try:
            while not self._stopped:
                try:
                    line = await asyncio.wait_for(queue.get(), timeout=EVENT_KEEPALIVE_S)
                except TimeoutError:
                    line = ""  # keep-alive: finds a reader that went away
                await response.write((line + "\n").encode())
        except (ConnectionResetError, asyncio.CancelledError):
            pass
        finally:
            unsubscribe()
        return response

    @access(OPERATOR)
    async def handle_state(self, request: web.Request) -> web.Response:
        return web.Response(body=self.typed_snapshot().model_dump_json(), content_type="application/json")

    @access(OPERATOR)
    async def handle_job(self, request: web.Request) -> web.Response:
        job, action = request.match_info["job"], request.match_info["action"]
        commands = {"run": self.jobs.run_now, "pause": self.jobs.pause, "resume": self.jobs.resume}
        if action not in commands:
            reject(404, "unknown_action", f"{action!r} is not a job action: use {', '.join(op.JOB_ACTIONS)}")
        try:
            changed, message = commands[action](job)
        except (KeyError, LookupError):
            reject(404, "unknown_job", f"no job {job!r} here: see GET {op.STATE_PATH} for this node's jobs")
        if changed:
            await self.flush_state()  # node.json shows it before we answer (the devnet console reads it)
        reply = op.JobReply(job=job, action=action, changed=changed, message=message)
        return web.Response(body=reply.model_dump_json(), content_type="application/json")

    async def start_server(self) -> Served:
        self.served = await serve(self.build_app(), self.axon.bind_ip, self.axon.bind_port)
        ip, port = self.published = self.axon.published(self.served.port)
        await asyncio.to_thread(self.chain.serve, self.wallet, ip, port)
        self.bus.log(f"{self.role} serving on {self.axon.bind_ip}:{self.served.port} (published {ip}:{port})",
                     source=self.source)
        await self.start_metrics()
        return self.served

    async def start_metrics(self) -> None:
        """Serve Prometheus metrics on --metrics.port (config.Settings.metrics_port says when)."""
        port = self.settings.metrics_port
        if port is None or self.metrics_server is not None:
            return
        from ..metrics import metrics_for

        self.metrics, subscribers = metrics_for(self)
        self.metrics_server = MetricsServer(self.metrics, self.settings.metrics.host, port)
        self._metrics_unsubscribe = [self.bus.subscribe(s) for s in subscribers]
        await self.metrics_server.start()
        self.bus.log(f"metrics on http://{self.metrics_endpoint}/metrics", source=self.source)

    @property
    def metrics_endpoint(self) -> Optional[str]:
        """host:port of the metrics, as a process on this machine reaches it."""
        if self.metrics_server is None or not self.metrics_server.listening:
            return None
        host = self.metrics_server.host
        return f"{'127.0.0.1' if host in ('0.0.0.0', '::', '') else host}:{self.metrics_server.port}"

    # lifecycle ----------------------------------------------------------------------------
    async def start(self) -> None:
        raise NotImplementedError

    async def launch(self) -> None:
        """Start as the only node on this database root. Refused (NodeLocked, nothing touched) when
        another process holds the root; a start that fails otherwise removes what it created."""
        await asyncio.to_thread(self.lock.acquire, self.role)
        try:
            await self.start()
        except BaseException:
            await self._abandon()
            raise
        await self.flush_state()  # started: node.json says so (status, an attached console, the supervisor)

    async def _abandon(self) -> None:
        try:
            await self.stop()
        except Exception:  # already failing: the original error is the one to report
            pass
        self.lock.release()
        self.footprint.remove_new()

    async def stop(self) -> None:
        self._stopped = True
        await self.flush_state()  # jobs as they were, marked stopped
        self.jobs.shutdown()
        if self.served is not None:
            await self.served.close()
            self.served = None
        if self.metrics_server is not None:
            await self.metrics_server.close()
            for unsubscribe in self._metrics_unsubscribe:
                unsubscribe()
        self._unsubscribe()

    async def shutdown(self) -> None:
        """Stop, then let the next node have the root."""
        try:
            await self.stop()
        finally:
            self.lock.release()

    def request_stop(self) -> None:
        self._stop.set()

    async def run_until_stopped(self) -> None:
        await self.launch()
        try:
            await self._stop.wait()
        finally:
            await self.shutdown()

    # state for other processes -------------------------------------------------------------
    def _on_event(self, event) -> None:
        if isinstance(event, JobRan):
            recoveries = self.chain_health.recoveries
            if recoveries != self._recoveries_seen:  # it came back: don't wait out the backoff
                self._recoveries_seen = recoveries
                kicked = self.jobs.retry_backed_off()
                if kicked:
                    self.bus.log(f"the chain answers again: retrying {', '.join(kicked)} now", source=self.source)
            self.write_state()

    def chain_view(self) -> dict[str, Any]:
        """The chain's health as the snapshot carries it, with the soonest backed-off retry."""
        return self.chain_health.view(self.jobs.next_retry()).as_dict()

    def snapshot(self) -> dict[str, Any]:
        """Plain data; subclasses add their part. :meth:`typed_snapshot` validates it."""
        return {
            "role": self.role,
            "source": self.source,
            "state": "stopped" if self._stopped else ("running" if self.served else "starting"),
            "hotkey": self.hotkey,
            "uid": self.uid,
            "network": self.settings.network,
            "netuid": self.settings.resolved_netuid,
            "wallet": f"{self.settings.wallet.name}/{self.settings.wallet.hotkey}",
            "db_root_path": str(self.layout.root),
            "size_in_gb": self.settings.size_in_gb,
            "pid": os.getpid(),
            "protocol": PROTOCOL_VERSION,
            "endpoint": self.axon.local_endpoint(self.served.port) if self.served else None,
            "published": f"{self.published[0]}:{self.published[1]}" if self.published else None,
            "metrics": self.metrics_endpoint,
            "started_at": self.started_at,
            "updated_at": time.time(),
            "jobs": [asdict(j) for j in self.jobs.state()],
            "chain": self.chain_view(),
        }

    def typed_snapshot(self) -> AnySnapshot:
        return parse_snapshot(self.snapshot())

    def write_state(self) -> None:
        """Refresh node.json off the event loop (a write and two fsyncs per job run would stall it);
        one write at a time, and the newest state wins. Without a running loop, write now."""
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            self._write_state_file(self._state_bytes())
            return
        if self._state_writer is not None and not self._state_writer.done():
            self._state_dirty = True
            return
        self._state_writer = loop.create_task(self._write_state_soon())

    async def _write_state_soon(self) -> None:
        while True:
            self._state_dirty = False
            await self._write_snapshot(self.snapshot())
            if not self._state_dirty:
                return

    async def flush_state(self) -> None:
        """Wait for pending writes, then write the state as it is now."""
        if self._state_writer is not None:
            await asyncio.gather(self._state_writer, return_exceptions=True)
        await self._write_snapshot(self.snapshot())

    async def _write_snapshot(self, snap: dict[str, Any]) -> None:
        """The state is read on the loop (a plain dict); checking it against the schema and
        encoding it happen in the writer's thread: at a thousand miners they take tens of ms."""
        await asyncio.to_thread(lambda: self._write_state_file(self._state_bytes(snap)))

    def _state_bytes(self, snap: Optional[dict[str, Any]] = None) -> bytes:
        snap = self.snapshot() if snap is None else snap
        try:
            return parse_snapshot(snap).model_dump_json().encode()
        except SnapshotError as exc:  # a bug in a snapshot must not stop the node: say it, write it as is
            log.error("node.json does not follow the snapshot schema: %s", exc)
            return json.dumps(snap, default=str).encode()

    def _write_state_file(self, data: bytes) -> None:
        try:
            atomic_write(self.layout.index / NODE_STATE_FILE, data)
        except OSError:
            pass  # status is best effort; the engine keeps running


def read_node_state(layout: Layout) -> Optional[AnySnapshot]:
    """The typed state a node left in ``layout`` (None when there is none)."""
    return read_snapshot(layout)
