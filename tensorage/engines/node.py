"""What miners and validators share: wallet, chain, bus, jobs, a signed HTTP server,
and a small state file other processes (status --json, the devnet runner) can read."""

from __future__ import annotations

import asyncio
import json
import os
import time
from dataclasses import asdict
from typing import Any, Optional

import bittensor as bt
from aiohttp import web

from .. import PROTOCOL_VERSION, __version__
from ..chain.port import ChainPort, Metagraph, Neuron
from ..config import Settings
from ..errors import NotRegistered
from ..events import EventBus, JobRan
from ..net.auth import OPERATOR, PUBLIC, PeerDirectory, access
from ..net.errors import reject
from ..net.messages import HealthResponse
from ..net.server import Served, make_app, serve
from ..scheduler import Jobs
from ..net.address import AxonPlan, plan_axon
from ..storage.files import atomic_write
from ..storage.layout import Footprint, Layout
from ..storage.lock import NodeLock

NODE_STATE_FILE = "node.json"
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
        self.chain = chain
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
        self.started_at = time.time()
        self.uid: Optional[int] = None
        self._stop = asyncio.Event()
        self._stopped = False
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
        return mg

    def me(self) -> Optional[Neuron]:
        return self.metagraph.by_hotkey(self.hotkey) if self.metagraph else None

    async def require_registered(self) -> Neuron:
        mg = await self.sync_metagraph()
        me = mg.by_hotkey(self.hotkey)
        if me is None:
            hint = ("run `tensorage devnet init`" if self.settings.network == "devnet"
                    else f"register it with `btcli subnets register --netuid {mg.netuid}`")
            raise NotRegistered(f"hotkey {self.hotkey} is not registered on netuid {mg.netuid}: {hint}")
        return me

    # http ---------------------------------------------------------------------------------
    def build_app(self) -> web.Application:
        app = make_app(self.hotkey, self.directory, self.settings.resolved_netuid)
        app.router.add_get("/v1/health", self.health)
        app.router.add_get("/v1/events", self.handle_events)
        app.router.add_get("/v1/state", self.handle_state)
        app.router.add_post("/v1/jobs/{job}/{action}", self.handle_job)
        self.add_routes(app)
        return app

    def add_routes(self, app: web.Application) -> None:
        """Subclasses add their endpoints."""

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
        """NDJSON: the recent history, then every event as it happens. A reader that falls
        behind loses the oldest lines; the engine never waits for it."""
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[str] = asyncio.Queue(maxsize=EVENT_STREAM_QUEUE)

        def put(line: str) -> None:
            if queue.full():
                queue.get_nowait()
            queue.put_nowait(line)

        def push(event) -> None:
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
        return web.json_response(json.loads(json.dumps(self.snapshot(), default=str)))

    @access(OPERATOR)
    async def handle_job(self, request: web.Request) -> web.Response:
        job, action = request.match_info["job"], request.match_info["action"]
        commands = {"run": self.jobs.run_now, "pause": self.jobs.pause, "resume": self.jobs.resume}
        if action not in commands:
            reject(404, "unknown_action", f"{action!r} is not a job action: use run, pause or resume")
        try:
            commands[action](job)
        except (KeyError, LookupError):
            reject(404, "unknown_job", f"no job {job!r} here: see GET /v1/state for this node's jobs")
        return web.json_response({"job": job, "action": action, "ok": True})

    async def start_server(self) -> Served:
        self.served = await serve(self.build_app(), self.axon.bind_ip, self.axon.bind_port)
        ip, port = self.published = self.axon.published(self.served.port)
        await asyncio.to_thread(self.chain.serve, self.wallet, ip, port)
        self.bus.log(f"{self.role} serving on {self.axon.bind_ip}:{self.served.port} (published {ip}:{port})",
                     source=self.source)
        return self.served

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

    async def _abandon(self) -> None:
        try:
            await self.stop()
        except Exception:  # already failing: the original error is the one to report
            pass
        self.lock.release()
        self.footprint.remove_new()

    async def stop(self) -> None:
        self._stopped = True
        self.write_state()  # jobs as they were, marked stopped
        self.jobs.shutdown()
        if self.served is not None:
            await self.served.close()
            self.served = None
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
            self.write_state()

    def snapshot(self) -> dict[str, Any]:
        return {
            "role": self.role,
            "source": self.source,
            "state": "stopped" if self._stopped else "running",
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
            "started_at": self.started_at,
            "updated_at": time.time(),
            "jobs": [asdict(j) for j in self.jobs.state()],
        }

    def write_state(self) -> None:
        try:
            atomic_write(self.layout.index / NODE_STATE_FILE, json.dumps(self.snapshot(), default=str).encode())
        except OSError:
            pass  # status is best effort; the engine keeps running


def read_node_state(layout: Layout) -> Optional[dict[str, Any]]:
    try:
        return json.loads((layout.index / NODE_STATE_FILE).read_text())
    except (OSError, ValueError):
        return None
