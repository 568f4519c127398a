"""Overview: who we are, where, the chain's view of us (or of the whole devnet), job health."""

from __future__ import annotations

from typing import Iterable, Optional

from rich.table import Table
from rich.text import Text
from textual.widget import Widget
from textual.widgets import Static

from ...chain.health import describe
from ..format import short
from ..widgets.chrome import DevnetNotice
from ..widgets.keyed_table import KeyedTable
from .base import ConsoleScreen

METAGRAPH_COLUMNS = (("uid", "uid"), ("node", "node"), ("hotkey", "hotkey"), ("stake", "stake"), ("vp", "vp"),
                     ("incentive", "incentive"), ("emission", "emission"), ("state", "state"))


def job_health(rows) -> Text:
    ok = sum(1 for r in rows if r.info.last_ok is True)
    failing = [r for r in rows if r.info.last_ok is False]
    paused = sum(1 for r in rows if r.info.paused)
    never = sum(1 for r in rows if r.info.last_ok is None)
    text = Text()
    text.append(f"✓ {ok} ok", style="green")
    text.append(" · ")
    text.append(f"✗ {len(failing)} failing", style="bold red" if failing else "dim")
    text.append(" · ")
    text.append(f"‖ {paused} paused", style="yellow" if paused else "dim")
    if never:
        text.append(f" · {never} not run yet", style="dim")
    if failing:
        r = failing[0]
        text.append(f"\n{r.source}/{r.info.id}: {r.info.last_result}", style="red")
    return text


def chain_health(views: dict, now: float) -> Optional[Text]:
    """"✓ ok" when every node reads its chain; else each node that cannot, since when, the next
    retry and the last error (nodes keep serving meanwhile). None before any node has read it."""
    known = {name: v for name, v in views.items() if v.state != "unknown"}
    if not known:
        return None
    down = {name: v for name, v in known.items() if v.state == "unreachable"}
    if not down:
        return Text("✓ ok" if len(views) == 1 else f"✓ ok on {len(known)} nodes", style="green")
    text = Text()
    for i, (name, view) in enumerate(down.items()):
        text.append("\n" if i else "")
        text.append(f"{name}: " if len(views) > 1 else "", style="bold")
        text.append(describe(view, now), style="red")
    text.append("\nnodes keep serving; chain jobs retry with backoff", style="dim")
    return text


class OverviewScreen(ConsoleScreen):
    MODE = "overview"
    HELP = ("Who this console runs (role, wallet, hotkey), the network and block, this node's uid, stake, "
            "incentive and emission, the health of every scheduled job and, on the devnet, the whole "
            "subnet's metagraph with each node process's state.")
    TOPICS = frozenset({"chain", "chain_loaded", "nodes", "jobs", "nodefiles", "errors", "names", "weights",
                        "challenges"})

    _ident_rows: list = []

    def body(self) -> Iterable[Widget]:
        if not self.console.backend.identity().secure:
            yield DevnetNotice(id="ov-notice")
        yield Static(id="ov-ident")
        yield Static("metagraph", id="ov-mg-title", classes="section")
        yield KeyedTable(METAGRAPH_COLUMNS, id="ov-metagraph")

    def request_loads(self, topics: set[str]) -> None:
        if topics & {"nodes", "resume"}:
            self.need("chain")
        if topics & {"jobs", "nodes", "resume"}:
            self.need("nodefiles")

    def redraw(self, topics: set[str]) -> None:
        app = self.console
        ident = app.backend.identity()
        mg = app.metagraph
        rows: list[tuple[str, object]] = []
        nodes = app.backend.nodes()
        roles = Text(ident.roles, style="bold yellow" if ident.link else "")
        if app.backend.caps.node_processes and nodes:
            running = sum(1 for n in nodes if n.state == "running")
            roles.append(f" · {running}/{len(nodes)} node processes running",
                         style="green" if running == len(nodes) else "yellow")
        if app.engine_state != "running":
            roles.append(f" · {app.engine_state}", style="yellow")
        rows.append(("role", roles))
        rows.append(("wallet", ident.wallet))
        net = f"{ident.network}" + (f" netuid {ident.netuid}" if ident.netuid is not None else "")
        if app.block is not None:
            net += f" · block {app.block}"
        if app.last_epoch is not None:
            net += f" · last epoch {app.last_epoch}"
        rows.append(("network", net))
        if ident.hotkey:
            me = mg.by_hotkey(ident.hotkey) if mg else None
            rows.append(("hotkey", ident.hotkey + (f" (uid {me.uid})" if me else " (not in the metagraph yet)")))
            if me is not None:
                rows.append(("chain", f"stake {me.total_stake:,.0f} · incentive {me.incentive:.3f} · "
                                      f"emission {me.emission:.2f} · axon {me.axon or '-'}"))
        if ident.db_root:
            rows.append(("db root", ident.db_root))
        summary = app.backend.summary() if app.engine_state == "running" else ""
        if summary:
            rows.append(("engine", summary))
        rows.append(("jobs", job_health(app.job_rows())))
        health = chain_health(app.chain_health(), app.backend.clock())
        if health is not None:
            rows.append(("chain link", health))
        if app.chain_error:
            rows.append(("chain", Text(app.chain_error, style="red")))
        if app.state.errors:
            rows.append(("errors", Text(f"{app.state.errors} error events (6 Logs)", style="red")))
        if rows != self._ident_rows:  # unchanged most seconds: skip the relayout
            self._ident_rows = rows
            grid = Table.grid(padding=(0, 1))
            grid.add_column(style="bold", no_wrap=True)
            grid.add_column(overflow="fold")
            for label, value in rows:
                grid.add_row(label, value)
            self.query_one("#ov-ident", Static).update(grid)
        self._metagraph(mg, nodes, ident.hotkey)

    def _metagraph(self, mg, nodes: list, my_hotkey) -> None:
        table = self.query_one("#ov-metagraph", KeyedTable)
        title = self.query_one("#ov-mg-title", Static)
        if mg is None:
            title.update("metagraph: waiting for the chain" if self.console.engine_state != "failed" else "metagraph",
                         layout=False)
            table.sync([])
            return
        title.update(f"metagraph: netuid {mg.netuid}, {len(mg.neurons)} neurons, "
                     f"{len(mg.validators)} with validator permits", layout=False)
        names = self.console.state.names
        proc = {n.node: n.state for n in nodes}
        rows = []
        for n in mg.neurons:
            name = names.get(n.hotkey, "")
            if my_hotkey and n.hotkey == my_hotkey:
                name = name or "this node"
            state = proc.get(name) or ("serving" if n.axon else "-")
            style = {"running": "green", "serving": "green", "exited": "red", "restarting": "yellow"}.get(state, "dim")
            rows.append((str(n.uid), [Text(str(n.uid), justify="right"), name, short(n.hotkey),
                                      Text(f"{n.total_stake:,.0f}", justify="right"),
                                      "✓" if n.validator_permit else "", Text(f"{n.incentive:.3f}", justify="right"),
                                      Text(f"{n.emission:.2f}", justify="right"), Text(state, style=style)]))
        table.sync(rows)
