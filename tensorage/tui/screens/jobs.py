"""Jobs: the scheduled jobs (next run, last result, duration) with run now / pause / resume,
and on the devnet the node processes the supervisor runs."""

from __future__ import annotations

from pathlib import Path
from typing import Iterable, Optional

from rich.text import Text
from textual.binding import Binding
from textual.widget import Widget
from textual.widgets import Static

from ..format import clock, duration
from ..messages import JobCommand
from ..sources import JobRow
from ..widgets.keyed_table import KeyedTable
from .base import ConsoleScreen
from .detail import DetailScreen

JOB_COLUMNS = (("source", "source"), ("job", "job"), ("every", "every"), ("next", "next"), ("runs", "runs"),
               ("last", "last run"), ("result", "result"))
NODE_COLUMNS = (("node", "node"), ("role", "role"), ("state", "state"), ("pid", "pid"), ("restarts", "restarts"),
                ("log", "log"))
RESULT_WIDTH = 60  # at most: enter shows a result whole


def state_text(info) -> Text:
    if info.running:
        return Text("running", style="cyan")
    if info.last_ok is None:
        return Text("-", style="dim")
    took = f" {info.last_duration_s:.2f}s" if info.last_duration_s is not None else ""
    if not info.last_ok and getattr(info, "chain_failures", 0):  # the chain failed it: backing off, next = retry
        return Text(f"retry #{info.chain_failures}" + took, style="bold yellow")
    return Text("ok" + took, style="green") if info.last_ok else Text("FAILED" + took, style="bold red")


class JobsScreen(ConsoleScreen):
    MODE = "jobs"
    HELP = ("Every scheduled job (APScheduler): how often it runs, when it runs next, how many times it ran, "
            "its last result and how long it took. Any job can be run now, paused and resumed, whether it runs "
            "in this process or in a node process (through the node's operator API); on the devnet the node "
            "processes themselves are listed below.")
    KEYS = (("↑/↓", "choose a job"), ("enter", "the job's whole last result"), ("r", "run the job now"),
            ("p", "pause it"), ("u", "resume it"), ("tab", "jobs ↔ node processes (↑/↓ scroll them)"))
    TOPICS = frozenset({"jobs", "nodes", "nodefiles"})
    BINDINGS = [
        Binding("r", "job('run')", "Run now"),
        Binding("p", "job('pause')", "Pause"),
        Binding("u", "job('resume')", "Resume"),
    ]

    def body(self) -> Iterable[Widget]:
        yield KeyedTable(JOB_COLUMNS, id="jobs-table")
        yield Static(id="jobs-hint", classes="hint")
        yield Static("node processes", id="nodes-title", classes="section")
        yield KeyedTable(NODE_COLUMNS, id="nodes-table", cursor=False)

    def on_mount(self) -> None:
        self.query_one("#jobs-table").focus()
        if not self.console.backend.caps.node_processes:
            self.query_one("#nodes-title").display = False
            self.query_one("#nodes-table").display = False

    def request_loads(self, topics: set[str]) -> None:
        if topics & {"jobs", "nodes", "resume"}:
            self.need("nodefiles")

    def rows(self) -> list[JobRow]:
        return self.console.job_rows()

    def selected(self) -> Optional[JobRow]:
        key = self.query_one("#jobs-table", KeyedTable).selected_key()
        return next((r for r in self.rows() if r.key == key), None)

    def redraw(self, topics: set[str]) -> None:
        now = self.console.backend.clock()
        cells = []
        for r in self.rows():
            i = r.info
            # a clock time, not "in 5s": screens redraw on events, not on a timer, so a countdown would go stale
            nxt = Text("paused", style="yellow") if i.paused else Text(
                "due" if i.next_run is not None and i.next_run <= now else clock(i.next_run))
            cells.append((r.key, [Text(r.source), i.id, duration(i.seconds), nxt, str(i.runs), state_text(i)],
                          (i.last_result or "").replace("\n", " ")))
        # the result gets what the other columns (2 cells of padding each), the margins and the
        # scrollbar leave, so the table never scrolls sideways (that would cut it and hide a row)
        fixed = sum(max([len(label)] + [len(str(c[1][n])) for c in cells]) + 2
                    for n, (_, label) in enumerate(JOB_COLUMNS[:-1]))
        room = max(10, min(RESULT_WIDTH, self.size.width - fixed - 2 - 2 - 1))
        out = []
        for key, row, result in cells:
            if len(result) > room:
                result = result[: room - 1] + "…"
            out.append((key, row + [result]))
        self.query_one("#jobs-table", KeyedTable).sync(out)
        row = self.selected()
        hint = Text()
        if row is not None:
            hint.append(f"{row.key}: ", style="bold")
            if row.info.last_run_at:
                hint.append(f"ran {clock(row.info.last_run_at)}: {row.info.last_result or 'no result'}. ")
            hint.append("enter: whole result · r run now · p pause · u resume", style="dim")
        self.query_one("#jobs-hint", Static).update(hint, layout=False)
        if self.console.backend.caps.node_processes:
            nodes = []
            for n in self.console.backend.nodes():
                style = {"running": "green", "exited": "red", "restarting": "yellow"}.get(n.state, "dim")
                nodes.append((n.node, [n.node, n.role, Text(n.state, style=style), str(n.pid or "-"),
                                       str(n.restarts), Path(n.log).name if n.log else ""]))
            self.query_one("#nodes-table", KeyedTable).sync(nodes)

    def on_data_table_row_selected(self, event) -> None:
        if event.data_table.id == "jobs-table":  # enter on a job: its whole last result
            self.action_detail()

    def on_data_table_row_highlighted(self, event) -> None:
        if event.data_table.id == "jobs-table":
            self.redraw({"jobs"})

    def action_job(self, action: str) -> None:
        row = self.selected()
        if row is None:
            self.notify("no job selected", severity="warning")
            return
        self.post_message(JobCommand(row, action))

    def action_detail(self) -> None:
        row = self.selected()
        if row is None:
            return
        i = row.info
        body = Text()
        body.append(f"every {duration(i.seconds)} · runs {i.runs} · ")
        body.append("paused" if i.paused else f"next {clock(i.next_run)}")
        if i.last_run_at:
            body.append(f"\nlast run {clock(i.last_run_at)}")
            if i.last_duration_s is not None:
                body.append(f", took {i.last_duration_s:.2f}s")
            body.append(" · ")
            body.append_text(state_text(i))
        body.append("\n\n")
        body.append(i.last_result or "no result yet")
        self.app.push_screen(DetailScreen(row.key, body))
