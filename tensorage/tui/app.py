"""`tensorage-console`: one Textual app over the engines, on the engines' own event loop.

Data flow (docs/design.md, "Console"):
  engine -> EventBus -> EventPump (coalescing) -> EngineEvents message -> ConsoleState.ingest
  -> the visible screen redraws the topics that changed; file and chain reads run in thread
  workers that answer with typed messages. Screens ask the app for reads (NeedData) and commands
  (JobCommand) with messages; the app calls its source (tui/sources), which calls the engines or
  the node's operator API. There are no polling timers: when nothing happens, nothing is redrawn.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import signal
from typing import Any, Optional

from textual import work
from textual.app import App
from textual.binding import Binding
from textual.worker import Worker, WorkerState

from ..engines.snapshot import AnySnapshot
from ..errors import TensorageError
from ..events import ClientTransfer
from .commands import ConsoleCommands
from .messages import (ChainLoaded, DisksLoaded, EngineEvents, EnginesFailed, EnginesStarted, JobCommand, NeedData,
                       NodeFilesLoaded, ObjectCommand, ObjectsLoaded)
from .pump import EventPump
from .screens.base import ConsoleScreen
from .screens.challenges import ChallengesScreen
from .screens.disk import DiskScreen
from .screens.help import HelpScreen
from .screens.jobs import JobsScreen
from .screens.logs import LogsScreen
from .screens.objects import ObjectsScreen
from .screens.overview import OverviewScreen
from .screens.weights import WeightsScreen
from .screens.wizard import WizardScreen
from .sources import DiskInfo, JobRow, Source
from .state import ConsoleState

log = logging.getLogger(__name__)

ALL_TOPICS = frozenset({"logs", "challenges", "weights", "disk", "disk_files", "jobs", "chain", "nodes", "errors",
                        "objects", "transfers", "shards"})


class ConsoleApp(App[int]):
    CSS_PATH = "app.tcss"
    TITLE = "tensorage"
    MODES = {
        "overview": OverviewScreen,
        "disk": DiskScreen,
        "challenges": ChallengesScreen,
        "weights": WeightsScreen,
        "jobs": JobsScreen,
        "logs": LogsScreen,
        "objects": ObjectsScreen,
    }
    DEFAULT_MODE = "overview"
    COMMANDS = App.COMMANDS | {ConsoleCommands}
    BINDINGS = [
        Binding("1", "app.switch_mode('overview')", "Overview", show=False),
        Binding("2", "app.switch_mode('disk')", "Disk", show=False),
        Binding("3", "app.switch_mode('challenges')", "Challenges", show=False),
        Binding("4", "app.switch_mode('weights')", "Weights", show=False),
        Binding("5", "app.switch_mode('jobs')", "Jobs", show=False),
        Binding("6", "app.switch_mode('logs')", "Logs", show=False),
        Binding("7", "app.switch_mode('objects')", "Objects", show=False),
        Binding("a", "allocate", "Allocate"),
        Binding("question_mark", "help", "Help", key_display="?"),
        Binding("f1", "help", "Help", show=False),  # also while typing in a box, where ? is a character
        Binding("q", "quit", "Quit"),
        Binding("ctrl+c", "quit", "Quit", show=False, priority=True),
    ]

    def __init__(self, backend: Source, *, start_engines: bool = True, state: Optional[ConsoleState] = None,
                 replay: bool = True, handle_signals: bool = False, freeze_heap: bool = False) -> None:
        super().__init__()
        self.handle_signals = handle_signals
        self.freeze_heap = freeze_heap
        self.terminal_gone = False
        self.backend = backend
        self.state = state or ConsoleState()
        self.pump = EventPump(self)
        self.start_engines = start_engines
        self.replay = replay
        self.engine_state = "starting" if start_engines else "running"
        self.engine_detail = ""
        self.metagraph: Any = None
        self.block: Optional[int] = None
        self.last_epoch: Optional[int] = None
        self.chain_error = ""
        self.snapshots: dict[str, AnySnapshot] = {}  # node name -> its state file (sources with node_files)
        self.disk_infos: dict[str, DiskInfo] = {}
        self.objects: Any = None  # client.session.Objects: the client's objects as the gateway last listed them
        self.objects_error = ""  # why the last listing failed ("" when it worked)
        self._objects_loading = False
        self._objects_dirty = False
        self._transfers_started: set[str] = set()  # ids of the stores and retrieves started from this console
        self.exit_message = ""
        self.redraws = 0  # screen refreshes driven by events (tests, benchmark)

    # -- lifecycle ------------------------------------------------------------------------------
    def on_mount(self) -> None:
        self.theme = "textual-dark"
        if self.handle_signals:  # SIGTERM (pm2, systemd) and SIGHUP (a closed tmux pane): stop like q does
            asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, self._signalled)
            signal.signal(signal.SIGHUP, self._hangup)
        self.pump.attach(self.backend.bus, replay=self.replay)
        if self.start_engines:
            self.run_worker(self._start_engines(), name="start", group="engines", exclusive=True,
                            exit_on_error=False)
        self.load_chain()

    async def _start_engines(self) -> None:
        try:
            detail = await self.backend.start()
        except TensorageError as exc:
            self.post_message(EnginesFailed(str(exc), exc.exit_code))
            return
        except Exception as exc:  # a bug or an environment problem: say what it was, stop cleanly
            log.exception("engines failed to start")
            self.post_message(EnginesFailed(f"{type(exc).__name__}: {exc}", 1))
            return
        self.post_message(EnginesStarted(detail))

    def on_engines_started(self, message: EnginesStarted) -> None:
        if self.engine_state == "starting":
            self.engine_state = "running"
        if self.freeze_heap:
            # Everything loaded so far (Textual, bittensor, the engines) lives as long as the console:
            # keep it out of the cyclic collector's full passes, which otherwise stall a keypress.
            gc.collect()
            gc.freeze()
        self.engine_detail = message.detail
        self.load_chain()
        self.screen.refresh_bindings()  # a source knows what it can do once its node answered (attach)
        self.refresh_screen(ALL_TOPICS)

    def on_engines_failed(self, message: EnginesFailed) -> None:
        self.engine_state = "failed"
        self.exit_message = message.error
        self._stop_and_exit(message.exit_code)

    def _signalled(self) -> None:
        if self.engine_state not in ("stopping", "stopped"):
            self._stop_and_exit(0)

    def _hangup(self, signum, frame) -> None:
        """The terminal is gone: stop the engines, then leave without restoring a screen that no
        longer exists (Textual would block writing to it)."""
        self.terminal_gone = True
        devnull = os.open(os.devnull, os.O_RDWR)  # Textual's writes now succeed, into nothing
        for fd in (0, 1, 2):
            os.dup2(devnull, fd)
        if self.engine_state == "stopped":
            os._exit(0)
        asyncio.get_event_loop().call_soon_threadsafe(self._signalled)

    async def on_unmount(self) -> None:
        """However the app ends (tests leave without q): the client's connection is closed
        (closing twice is harmless; q closes it with the engines)."""
        if self.backend.client is not None:
            await self.backend.client.close()

    async def action_quit(self) -> None:
        if self.engine_state in ("stopping", "stopped"):
            return
        self._stop_and_exit(0)

    def _stop_and_exit(self, code: int) -> None:
        self.engine_state = "stopping"
        self.notify("stopping engines…", timeout=30)
        self.refresh_screen({"nodes"})
        self.workers.cancel_group(self, "engines")
        self.run_worker(self._stop_engines(code), name="stop", group="lifecycle", exclusive=True,
                        exit_on_error=False)

    async def _stop_engines(self, code: int) -> None:
        try:
            if self.backend.client is not None:
                await self.backend.client.close()  # stops transfers in flight (nothing half-written stays)
            if self.start_engines:
                await self.backend.stop()
        except Exception as exc:  # still exit: the children die with us (PDEATHSIG)
            log.exception("engines did not stop cleanly")
            self.exit_message = self.exit_message or f"engines did not stop cleanly: {exc}"
            code = code or 1
        finally:
            self.pump.detach()
            self.engine_state = "stopped"
        if self.terminal_gone:  # engines are stopped and their files closed: nothing is half written
            logging.shutdown()
            os._exit(code)
        self.exit(code, return_code=code)

    # -- events in --------------------------------------------------------------------------------
    def on_engine_events(self, message: EngineEvents) -> None:
        events = self.pump.take(message)
        topics = self.state.ingest(events)
        if "transfers" in topics:
            self._transfers_ended(events)
        if "chain" in topics:
            self.load_chain()  # the header's block follows the chain on every screen
        if topics:
            self.refresh_screen(topics)

    def on_need_data(self, message: NeedData) -> None:
        if "chain" in message.what:
            self.load_chain()
        if "nodefiles" in message.what and self.backend.caps.node_files:
            self.load_node_files()
        if "disks" in message.what:
            self.load_disks()
        if "objects" in message.what:
            self.load_objects()

    def refresh_screen(self, topics) -> None:
        """Redraw the screen in view: the top one, or the one under a dialog (help, a job's result,
        the palette, a prompt), which stays visible behind it with its header's block."""
        screen = next((s for s in reversed(self.screen_stack) if isinstance(s, (ConsoleScreen, WizardScreen))), None)
        if screen is not None and screen.is_mounted:
            self.redraws += 1
            screen.refresh_view(set(topics))

    # -- reads in threads ---------------------------------------------------------------------------
    @work(thread=True, exclusive=True, exit_on_error=False, group="chain")
    def load_chain(self) -> None:
        names = None
        if self.backend.names_dirty or not self.state.names:
            names = self.backend.load_names()
        try:
            mg, block, epoch = self.backend.load_chain()
            error = ""
        except TensorageError as exc:
            mg, block, epoch, error = None, None, None, str(exc)
        self.post_message(ChainLoaded(mg, block, epoch, names if names is not None else {}, error))

    def on_chain_loaded(self, message: ChainLoaded) -> None:
        if message.metagraph is not None:
            self.metagraph = message.metagraph
        if message.block is not None:
            self.block = message.block
        if message.last_epoch is not None:
            self.last_epoch = message.last_epoch
        self.chain_error = message.error
        if message.names and message.names != self.state.names:
            self.state.names = dict(message.names)
            self.refresh_screen({"names", "chain_loaded"})
        else:
            self.refresh_screen({"chain_loaded"})

    @work(thread=True, exclusive=True, exit_on_error=False, group="nodefiles")
    def load_node_files(self) -> None:
        self.post_message(NodeFilesLoaded(self.backend.load_node_files()))

    def on_node_files_loaded(self, message: NodeFilesLoaded) -> None:
        self.snapshots = message.snapshots
        self.refresh_screen({"nodefiles"})

    @work(thread=True, exclusive=True, exit_on_error=False, group="disks")
    def load_disks(self) -> None:
        self.post_message(DisksLoaded(self.backend.load_disks()))

    def on_disks_loaded(self, message: DisksLoaded) -> None:
        self.disk_infos = message.disks
        self.refresh_screen({"disk_loaded"})

    def load_objects(self) -> None:
        """List the client's objects on its gateway (an async worker: the client is aiohttp on this
        loop). One listing at a time; asks during one make one more after it."""
        if self.backend.client is None or not self.backend.caps.client_data:
            return
        if self._objects_loading:
            self._objects_dirty = True
            return
        self._objects_loading = True
        self.run_worker(self._load_objects(), name="list objects", group="objects", exit_on_error=False)

    async def _load_objects(self) -> None:
        client = self.backend.client
        try:
            while True:
                self._objects_dirty = False
                try:
                    listing, error = await client.list(), ""
                except TensorageError as exc:
                    listing, error = None, str(exc)
                self.post_message(ObjectsLoaded(listing, error))
                if not self._objects_dirty:
                    return
        finally:
            self._objects_loading = False

    def on_objects_loaded(self, message: ObjectsLoaded) -> None:
        if message.listing is not None:
            self.objects = message.listing
        self.objects_error = message.error
        self.refresh_screen({"objects_loaded"})

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        """One place for worker errors (Harlequin): say it, keep running."""
        if event.state == WorkerState.ERROR and event.worker.error is not None:
            err = event.worker.error
            text = str(err) if isinstance(err, TensorageError) else f"{type(err).__name__}: {err}"
            self.notify(text, title=event.worker.name or "error", severity="error", timeout=8)

    # -- commands ---------------------------------------------------------------------------------
    def job_rows(self) -> list[JobRow]:
        return self.backend.jobs(self.snapshots)

    def chain_health(self) -> dict[str, Any]:
        """Node name -> its view of the chain (ok / unreachable since T, last error, next retry)."""
        return self.backend.chain_health(self.snapshots)

    def on_job_command(self, message: JobCommand) -> None:
        self.run_worker(self._job_command(message.row, message.action), group="jobs", exit_on_error=False)

    async def _job_command(self, row: JobRow, action: str) -> None:
        try:
            text = await self.backend.control(row, action)
        except TensorageError as exc:
            self.notify(str(exc), severity="error", timeout=8)
            return
        self.notify(text, timeout=3)
        if self.backend.caps.node_files:
            self.load_node_files()  # the node rewrites its state file after a command
        self.refresh_screen({"jobs"})

    def on_object_command(self, message: ObjectCommand) -> None:
        self.run_worker(self._object_command(message), group="object-commands", exit_on_error=False)

    async def _object_command(self, message: ObjectCommand) -> None:
        client = self.backend.client
        if client is None:
            self.notify("this console has no client wallet: use `tensorage store`", severity="warning")
            return
        try:
            if message.action == "store":
                self._transfers_started.add(client.start_store(message.path))
                self.notify(f"storing {message.path.name}…", timeout=3)
            elif message.action == "retrieve":
                self._transfers_started.add(client.start_retrieve(message.object_id, message.path))
                self.notify(f"retrieving into {message.path}…", timeout=3)
            elif message.action == "remove":
                await client.remove(message.object_id)
                self.notify(f"removed {message.object_id[:12]}…", timeout=4)
                self.load_objects()
        except TensorageError as exc:
            self.notify(str(exc), title=f"{message.action} failed", severity="error", timeout=10)

    def _transfers_ended(self, events) -> None:
        """Say when a store or retrieve started here ends (the Objects screen shows it too)."""
        for e in events:
            if not isinstance(e, ClientTransfer) or e.state == "running" or e.transfer not in self._transfers_started:
                continue
            self._transfers_started.discard(e.transfer)
            if e.state == "done":
                what = f"stored {e.name} as {e.object_id}" if e.op == "store" else f"retrieved {e.name}"
                self.notify(what, title=f"{e.op} done", timeout=6)
            else:
                self.notify(e.detail, title=f"{e.op} {e.name} failed", severity="error", timeout=12)

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "allocate":
            # False hides the key (None would only dim it)
            return self.backend.caps.allocate and not isinstance(self.screen, WizardScreen)
        return True

    def action_allocate(self) -> None:
        if not self.backend.caps.allocate:
            self.notify("this console runs a validator: there is no disk to allocate", severity="warning")
            return
        if isinstance(self.screen, WizardScreen):
            return
        self.push_screen(WizardScreen())

    def action_help(self) -> None:
        if isinstance(self.screen, HelpScreen):
            return
        screen = self.screen
        self.push_screen(HelpScreen(screen))
