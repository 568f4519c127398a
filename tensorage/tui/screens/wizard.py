"""Allocation wizard: path -> size -> preview -> workers -> confirm -> live progress.

Keyboard only. Every entry is checked in a thread worker (read-only: the path check and the
plan never write) and refused with its reason on screen; Esc goes back a step (from the
first step it closes the wizard). Nothing is written before the confirmation. Then the
allocation runs in the engines: the in-process miner's allocator (role miner), or a new
miner process joining the devnet (``DevnetSupervisor.add_miner``), and its progress shows live.
"""

from __future__ import annotations

import re
import time
from typing import TYPE_CHECKING, Any, Optional

from rich.console import Group
from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.screen import Screen
from textual.widgets import Footer, Input, Static

from ...errors import TensorageError
from ...render import plan_table
from ...storage.partition import share_bytes, share_range_gb
from ..format import clock, duration, size
from ..messages import AllocationFailed, AllocationStarted, NeedData, WizardChecked
from ..state import level_of
from ..widgets.disk_panel import DiskPanel, DiskView, disk_views
from .confirm import ConfirmScreen

if TYPE_CHECKING:
    from ..app import ConsoleApp

STEPS = ("path", "size", "preview", "workers", "confirm", "progress")
INPUT_STEPS = ("path", "size", "workers")


def _readable(reason: str) -> str:
    """Engine messages speak in flags; the wizard speaks in the values typed here."""
    return re.sub(r"--size_in_gb ([0-9.e+-]+)", r"\1 GB", reason)


class WizardScreen(Screen):
    TITLE_TEXT = "Allocation wizard"
    HELP = ("Allocate a disk share step by step. Each entry is checked (read-only) and refused with the reason "
            "if it cannot work; nothing is written before you confirm.")
    KEYS = (("enter", "check this step and go on"), ("esc", "back one step (closes the wizard from the first)"))
    BINDINGS = [
        Binding("escape", "back", "Back"),
        Binding("enter", "next", "Next"),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.step = "path"
        self.path_check: Any = None
        self.size_gb: Optional[float] = None
        self.plan: Any = None
        self.n_workers: Optional[int] = None
        self.follow: Optional[str] = None
        self.started_at: Optional[float] = None
        self.values: dict[str, str] = {}
        self.refusals: list[str] = []  # every refusal shown (tests read it)

    @property
    def console(self) -> "ConsoleApp":
        return self.app  # type: ignore[return-value]

    def compose(self) -> ComposeResult:
        yield Static(id="wiz-title")
        yield Static(id="wiz-steps")
        yield Static(id="wiz-prompt")
        yield Input(id="wiz-input")
        yield Static(id="wiz-error")
        yield Static(id="wiz-info")
        yield DiskPanel(id="wiz-progress")
        yield Footer(show_command_palette=False)

    def on_mount(self) -> None:
        backend = self.console.backend
        title = "Add a miner to the devnet" if backend.caps.adds_miners else "Allocate this miner's disk share"
        self.query_one("#wiz-title", Static).update(Text(title, style="bold"))
        self.values = {"path": backend.default_path(), "size": "", "workers": str(backend.default_workers())}
        if self.app.is_headless:  # tests and snapshots: a steady cursor
            self.query_one("#wiz-input", Input).cursor_blink = False
        self.show_step("path")

    # -- steps -----------------------------------------------------------------------------------
    def show_step(self, step: str) -> None:
        self.step = step
        box = self.query_one("#wiz-input", Input)
        steps = Text()
        for i, s in enumerate(STEPS):
            if i:
                steps.append(" › ", style="dim")
            steps.append(s, style="bold reverse" if s == step else ("" if STEPS.index(s) < STEPS.index(step) else "dim"))
        self.query_one("#wiz-steps", Static).update(steps)
        self.set_error("")
        self.query_one("#wiz-progress").display = step == "progress"
        box.display = step in INPUT_STEPS
        if step in INPUT_STEPS:
            box.value = self.values.get(step, "")
            box.cursor_position = len(box.value)
            box.focus()
        else:
            self.set_focus(None)
        self.query_one("#wiz-prompt", Static).update(self.prompt())
        self.query_one("#wiz-info", Static).update(self.info())
        if step in ("size", "workers") and box.value:
            self.check_step(step, box.value, final=False)
        self.refresh_bindings()

    def prompt(self) -> Text:
        backend = self.console.backend
        p = self.console.backend.profile
        keys = Text("\nenter: check and continue · esc: back", style="dim")
        if self.step == "path":
            where = ("the new miner's database root (plots, shards, index)" if backend.caps.adds_miners
                     else "this miner's database root")
            return Text(f"Path: {where}. It must exist or be creatable, and be writable.") + keys
        if self.step == "size":
            return Text(f"Size in GB: the share of the disk for tensorage (plots of k={p.min_k}…{p.max_k} on "
                        f"{p.name}, plus a client reserve).") + keys
        if self.step == "preview":
            return Text("Preview of the partition (nothing is written yet). Enter: choose workers · Esc: change the size")
        if self.step == "workers":
            return Text(f"Workers: plots built at once (this machine has {backend.cpus} CPUs).") + keys
        if self.step == "progress":
            return Text("Allocating. Esc or Enter closes the wizard; plotting goes on (2 Disk shows it).")
        return Text("")

    def info(self) -> Any:
        if self.step == "path":
            return Text("The check is read-only: nothing is created before you confirm.", style="dim")
        if self.step == "size" and self.path_check is not None:
            c = self.path_check
            lo, hi = share_range_gb(c.min_share, c.max_share)  # what the refusals say too
            return Text(f"fits here: {lo:.3f} GB to {hi:.3f} GB "
                        f"({size(c.device_free)} free of {size(c.device_total)} on the device, minus a safety margin)")
        if self.step == "preview" and self.plan is not None:
            return self.plan_view(self.console.backend.default_workers())
        if self.step == "workers" and self.plan is not None:
            return Text(f"≈{duration(self.plan.plot_seconds(self.workers_guess(), self.console.backend.cpus))} "
                        f"to plot with {self.workers_guess()} worker(s)")
        if self.step == "progress":
            return self.progress_view()
        return Text("")

    def workers_guess(self) -> int:
        try:
            return self.console.backend.parse_workers(self.values.get("workers", ""))
        except TensorageError:
            return self.console.backend.default_workers()

    def plan_view(self, workers: int) -> Any:
        backend = self.console.backend
        settings = backend.settings.model_copy(update={"db_root_path": str(self.path_check.path), "workers": workers})
        hotkey = backend.identity().hotkey or "a new wallet, created at confirmation"
        return plan_table(self.plan, settings, hotkey, backend.cpus)

    def set_error(self, reason: str) -> None:
        err = self.query_one("#wiz-error", Static)
        if reason:
            self.refusals.append(reason)
            err.update(Text(f"✗ {reason}", style="bold red"))
        else:
            err.update("")

    # -- checks in a thread --------------------------------------------------------------------------
    @work(thread=True, exclusive=True, exit_on_error=False, group="wizard")
    def check_step(self, step: str, text: str, final: bool = True) -> None:
        backend = self.console.backend
        try:
            if step == "path":
                value: Any = backend.check_path(text)
            elif step == "size":
                gb = backend.parse_size(text)
                value = (gb, backend.plan(self.path_check.path, share_bytes(gb)))
            elif step == "workers":
                value = backend.parse_workers(text)
            else:
                return
        except TensorageError as exc:
            self.post_message(WizardChecked(step, False, reason=_readable(str(exc)), final=final))
            return
        except OSError as exc:
            self.post_message(WizardChecked(step, False, reason=f"{text}: {exc.strerror or exc}", final=final))
            return
        self.post_message(WizardChecked(step, True, value, final=final))

    def on_wizard_checked(self, message: WizardChecked) -> None:
        if message.step != self.step:
            return  # an answer for a step we already left
        info = self.query_one("#wiz-info", Static)
        if not message.final:
            if message.step == "size":
                if message.ok:
                    gb, plan = message.value
                    text = Text.assemble(self.info(), "\n", (f"→ {gb:g} GB: plots {plan.describe_plots()} "
                                                              f"({size(plan.plot_bytes)}), client reserve "
                                                              f"{size(plan.reserve_bytes)}", "green"))
                else:
                    text = Text.assemble(self.info(), "\n", (f"→ {message.reason}", "yellow"))
                info.update(text)
            elif message.step == "workers" and message.ok and self.plan is not None:
                secs = self.plan.plot_seconds(message.value, self.console.backend.cpus)
                info.update(Text(f"≈{duration(secs)} to plot {self.plan.describe_plots()} with {message.value} "
                                 f"worker(s) on {self.console.backend.cpus} CPUs"))
            elif message.step == "workers" and not message.ok:
                info.update(Text(f"→ {message.reason}", style="yellow"))
            return
        if not message.ok:
            self.set_error(message.reason)
            info.update(self.info())
            return
        if message.step == "path":
            self.path_check = message.value
            self.values["path"] = str(self.path_check.path)
            if not self.values.get("size"):
                self.values["size"] = self.suggest_size()
            self.show_step("size")
        elif message.step == "size":
            self.size_gb, self.plan = message.value
            self.show_step("preview")
        elif message.step == "workers":
            self.n_workers = message.value
            self.confirm()

    def suggest_size(self) -> str:
        current = self.console.backend.suggested_size_gb()
        fits = share_range_gb(self.path_check.min_share, self.path_check.max_share)[1]
        return f"{min(current, fits):g}"

    # -- keys ---------------------------------------------------------------------------------------
    def on_input_changed(self, event: Input.Changed) -> None:
        if self.step in INPUT_STEPS:
            self.values[self.step] = event.value
            if self.step in ("size", "workers"):
                self.check_step(self.step, event.value, final=False)

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        if self.step in INPUT_STEPS:
            self.values[self.step] = event.value
            self.set_error("")
            self.check_step(self.step, event.value, final=True)

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "next":
            return self.step in ("preview", "progress")  # hidden, not dimmed, elsewhere
        return True

    def action_next(self) -> None:
        if self.step == "preview":
            self.show_step("workers")
        elif self.step == "progress":
            self.dismiss()
            self.app.switch_mode("disk")

    def action_back(self) -> None:
        if self.step in ("path", "progress"):
            self.dismiss()
            return
        previous = {"size": "path", "preview": "size", "workers": "preview", "confirm": "workers"}[self.step]
        self.show_step(previous)

    # -- confirm and run ------------------------------------------------------------------------------
    def confirm(self) -> None:
        backend = self.console.backend
        plan = self.plan
        warning = ""
        if backend.caps.adds_miners:
            question = f"Add a miner with {self.size_gb:g} GB at {self.path_check.path}?"
            detail = (f"A new wallet is created and registered on the devnet, and a miner process starts: it plots "
                      f"{plan.describe_plots()} ({size(plan.plot_bytes)}) with {self.n_workers} worker(s), then "
                      f"serves challenges.")
        else:
            question = f"Allocate {self.size_gb:g} GB at {self.path_check.path}?"
            changes = f"{len(plan.add)} plots to make" + (f", {len(plan.remove)} to remove" if plan.remove else "")
            detail = (f"The running miner plots {plan.describe_plots()} ({size(plan.plot_bytes)}; {changes}) with "
                      f"{self.n_workers} worker(s) and keeps this share across restarts. A kill at any point is "
                      f"safe: half-made plots restart.")
            if plan.remove:
                warning = (f"This removes {len(plan.remove)} plot(s) now: {plan.remove_reason}. Their proofs are "
                           f"lost until they are plotted again.")
        self.step = "confirm"
        self.show_step_marker()
        self.app.push_screen(ConfirmScreen(question, detail, warning), self.on_confirm)

    def show_step_marker(self) -> None:
        steps = Text()
        for i, s in enumerate(STEPS):
            if i:
                steps.append(" › ", style="dim")
            steps.append(s, style="bold reverse" if s == self.step else "")
        self.query_one("#wiz-steps", Static).update(steps)

    def on_confirm(self, yes: Optional[bool]) -> None:
        if not yes:
            self.show_step("workers")
            return
        self.started_at = time.time()
        self.run_worker(self.allocate(), name="allocate", group="allocate", exclusive=True, exit_on_error=False)

    async def allocate(self) -> None:
        try:
            source = await self.console.backend.allocate(self.path_check.path, self.size_gb, self.n_workers,
                                                         remove_plots=bool(self.plan.remove))
        except TensorageError as exc:
            self.post_message(AllocationFailed(_readable(str(exc))))
            return
        except Exception as exc:
            self.post_message(AllocationFailed(f"{type(exc).__name__}: {exc}"))
            return
        self.post_message(AllocationStarted(source))

    def on_allocation_started(self, message: AllocationStarted) -> None:
        self.follow = message.source
        self.show_step("progress")
        self.post_message(NeedData(frozenset({"disks"})))

    def on_allocation_failed(self, message: AllocationFailed) -> None:
        self.show_step("workers")
        self.set_error(message.reason)

    # -- live progress ---------------------------------------------------------------------------------
    def refresh_view(self, topics: set[str]) -> None:
        if self.step != "progress":
            return
        if topics & {"disk_files"}:
            self.post_message(NeedData(frozenset({"disks"})))
        if topics & {"disk", "disk_loaded", "logs", "nodes", "challenges", "names"}:
            self.query_one("#wiz-info", Static).update(self.progress_view())

    def progress_view(self) -> Any:
        app = self.console
        src = self.follow or "?"
        live = app.state.disks.get(src)
        views = disk_views(app.state, app.backend, app.metagraph, app.disk_infos)
        view = next((v for v in views if v.name == src), DiskView(name=src, live=live))
        self.query_one("#wiz-progress", DiskPanel).show(view, self.size.width)
        head = Text()
        finished = live.finished if live else None
        if finished is not None and self.started_at and finished.ts >= self.started_at - 1:
            head.append(f"✓ {src}: allocation complete, {finished.plots} plots ({finished.verified} verified) in "
                        f"{duration(finished.seconds)}", style="bold green")
        elif live is None or (live.updated and self.started_at and live.updated < self.started_at - 1):
            state = app.state.nodes.get(src)
            head.append(f"{src}: {state.state if state else 'starting'}, waiting for its plan…", style="yellow")
        else:
            head.append(f"{src}: plotting {live.done}/{live.total}", style="bold")
            if live.eta_s is not None:
                head.append(f", ETA {duration(live.eta_s)}")
        tail = [e for e in app.state.logs.items[-300:] if e.source == src and level_of(e) != "debug"][-4:]
        lines = [head] + [Text(f"{clock(e.ts)} {e.summary()}", style="red" if level_of(e) == "error" else "dim")
                          for e in tail]
        return Group(*lines)
