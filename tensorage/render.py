"""Rich renderables for the command line (the console has its own widgets)."""

from __future__ import annotations

import contextlib
import time
from typing import Any, Iterator, Optional

from rich.console import Console, Group
from rich.markup import escape
from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeRemainingColumn
from rich.table import Table

from .chain.port import Metagraph
from .config import GB, Settings
from .events import AllocationDone, ErrorEvent, Event, EventBus, PlotDone, PlotProgress
from .storage.partition import PartitionPlan


def gb(n: float) -> str:
    return f"{n / GB:.3f} GB" if n < 10 * GB else f"{n / GB:.1f} GB"


def plan_table(plan: PartitionPlan, settings: Settings, hotkey: str, cpus: int) -> Table:
    where = " ".join(str(r) for r in settings.db_roots)
    t = Table(title=f"partition of {where} ({settings.network})", show_header=False, box=None)
    t.add_column(style="bold")
    t.add_column()
    t.add_row("hotkey", hotkey)
    t.add_row("share", f"{gb(plan.size_bytes)} of {gb(plan.device_free)} free on the device "
                       f"(margin {gb(plan.margin_bytes)})")
    t.add_row("plots", f"{gb(plan.plot_bytes)}: {plan.describe_plots()}")
    t.add_row("  to make", f"{len(plan.add)} ({', '.join('k%d' % k for k in plan.add[:8])}"
                           f"{'…' if len(plan.add) > 8 else ''})" if plan.add else "0")
    if plan.remove:
        t.add_row("  to remove", f"{len(plan.remove)} (clients need the room)")
    for d in plan.disks if len(plan.disks) > 1 else []:
        t.add_row(f"  on {d.root}", f"share {gb(d.size_bytes)}: {d.describe_plots()}"
                                    f"{f', {len(d.add)} to make' if d.add else ''}")
    t.add_row("client reserve", f"{gb(plan.reserve_bytes)} ({gb(plan.shard_bytes)} stored)")
    t.add_row("temp while plotting", gb(plan.temp_bytes))
    t.add_row("unallocated", gb(plan.free_bytes - (plan.reserve_bytes - plan.shard_bytes)) if
              plan.free_bytes > plan.reserve_bytes - plan.shard_bytes else gb(0))
    if plan.add:
        secs = plan.plot_seconds(settings.workers, cpus)
        t.add_row("time to plot", f"≈{_duration(secs)} with {settings.workers} worker(s)")
    return t


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f}s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


@contextlib.contextmanager
def allocation_progress(bus: EventBus, console: Console) -> Iterator[None]:
    """A rich progress display driven by allocator events."""
    progress = Progress(TextColumn("{task.description}"), BarColumn(), TaskProgressColumn(),
                        TextColumn("{task.fields[info]}"), TimeRemainingColumn(), console=console, transient=False)
    overall: Optional[int] = None
    per_plot: dict[str, int] = {}

    def on_event(event: Event) -> None:
        nonlocal overall
        if isinstance(event, PlotProgress):
            if overall is None:
                overall = progress.add_task("plots", total=event.total, info="")
            rate = f"{event.rate_per_hour:.0f}/h" if event.rate_per_hour else ""
            eta = f"ETA {event.eta_s:.0f}s" if event.eta_s is not None else ""
            progress.update(overall, completed=event.done, total=event.total, info=f"{rate} {eta}".strip())
            if event.seed not in per_plot:
                per_plot[event.seed] = progress.add_task(f"  k{event.k} {event.seed[:8]}", total=1.0, info="")
            progress.update(per_plot[event.seed], completed=event.fraction)
        elif isinstance(event, PlotDone):
            task = per_plot.pop(event.seed, None)
            if task is not None:
                progress.remove_task(task)
            if overall is not None:
                progress.update(overall, completed=event.done, total=event.total)
            progress.console.print(f"[green]✓[/] {event.summary()}")
        elif isinstance(event, ErrorEvent):
            progress.console.print(f"[red]✗[/] {event.message}")
        elif isinstance(event, AllocationDone) and overall is not None:
            progress.update(overall, completed=event.plots)

    unsubscribe = bus.subscribe(on_event)
    with progress:
        try:
            yield
        finally:
            unsubscribe()


def status_table(status: dict[str, Any]) -> Table:
    """`tensorage status` for any role, running or stopped: every field is optional (a validator has
    no share or partition, a stopped node no jobs), so nothing here may assume one is there."""
    t = Table(show_header=False, box=None)
    t.add_column(style="bold")
    t.add_column(overflow="fold")  # a long path wraps, never ends in "…"
    role = status.get("role") or "miner"
    t.add_row("role", role)
    t.add_row("process", _process(status.get("process")))
    for key in ("network", "netuid", "block", "hotkey", "uid", "db_root_path"):
        t.add_row(key, escape(str(status.get(key))))
    p = status.get("plots") or {}
    if role == "miner" or p.get("planned"):
        t.add_row("plots", f"{p.get('done', 0)} done / {p.get('planned', 0)} planned, {p.get('verified', 0)} "
                           f"verified, {gb(p.get('bytes', 0))}")
    share = status.get("share")  # a miner's; a validator has none
    if share:
        t.add_row("share", escape(f"{share.get('size_in_gb', 0):g} GB, from {share.get('source', '?')}: "
                                  f"{share.get('detail', '')}".rstrip(": ")))
    part = status.get("partition")
    if part:
        t.add_row("partition", f"share {gb(part.get('size_bytes', 0))}: plots {gb(part.get('plot_bytes', 0))}, "
                               f"reserve {gb(part.get('reserve_bytes', 0))}, free {gb(part.get('free_bytes', 0))}")
    disks = status.get("disks") or []
    for d in disks if len(disks) > 1 or any(d.get("state") != "ok" for d in disks) else []:
        share_part = f"share {gb(d['share_bytes'])}, " if d.get("share_bytes") else ""  # known while it runs
        what = (f"ok, {share_part}{d.get('plots', 0)} plots, {gb(d.get('device_free', 0))} free"
                if d.get("state") == "ok" else f"[red]lost[/]: {escape(str(d.get('reason', '')))}")
        t.add_row(f"disk {escape(str(d.get('path', '?')))}", what)
    v = status.get("validator")
    if v:
        w = v.get("weights")
        t.add_row("validator", escape(v.get("note") or f"{len(v.get('miners') or {})} miners scored, weights "
                                      + (f"set at block {w.get('block')}" if w else "not set yet")))
    if status.get("disk_full"):
        t.add_row("disk", f"[red]{escape(status['disk_full'])}[/]")
    if status.get("allocator_error"):
        t.add_row("allocation", f"[red]{escape(status['allocator_error'])}[/]")
    for job in status.get("jobs") or []:
        if job.get("last_ok") is False:
            t.add_row(f"job {escape(str(job.get('id')))}", f"[red]failed[/]: {escape(str(job.get('last_result')))}")
    if status.get("chain_error"):
        t.add_row("chain", f"[red]{escape(status['chain_error'])}[/]")
    health = status.get("chain_health")
    if health and (status.get("process") or {}).get("state") == "running":
        from .chain.health import describe
        from .engines.snapshot import ChainHealthState

        view = ChainHealthState.model_validate(health)
        style = {"ok": "green", "unreachable": "red"}.get(view.state, "dim")
        t.add_row("node's chain", f"[{style}]{escape(describe(view))}[/]")
    if status.get("metrics") and (status.get("process") or {}).get("state") == "running":
        t.add_row("metrics", f"http://{status['metrics']}/metrics")
    return t


def devnet_status_table(report: dict[str, Any]) -> Group:
    """`tensorage status` on the devnet without --wallet.name: the chain, then one row per node."""
    head = (f"devnet at {escape(str(report.get('devnet_root')))}: netuid {report.get('netuid')}, block "
            f"{report.get('block')}, last epoch {report.get('last_epoch')}")
    t = Table(box=None, pad_edge=False, padding=(0, 1), header_style="bold underline")
    for col in ("node", "uid", "role", "process", "plots", "share", "problems"):
        t.add_column(col, overflow="fold")
    for name, node in (report.get("nodes") or {}).items():
        p = node.get("plots") or {}
        share = node.get("share") or {}
        never_ran = "does not exist" in str(node.get("error", ""))  # its root is made when it first starts
        problems = [node["error"]] if node.get("error") and not never_ran else []
        problems += [f"{j.get('id')}: {j.get('last_result')}" for j in node.get("jobs") or [] if j.get("last_ok") is False]
        problems += [node["disk_full"]] if node.get("disk_full") else []
        t.add_row(escape(name), str(node.get("uid") if node.get("uid") is not None else "-"), node.get("role", "?"),
                  "never started" if never_ran else _process(node.get("process")).split(" at ")[0],
                  f"{p.get('done', 0)}/{p.get('planned', 0)}" if node.get("role") == "miner" else "-",
                  f"{share.get('size_in_gb', 0):g} GB ({share.get('source', '?')})" if share else "-",
                  f"[red]{escape('; '.join(problems))}[/]" if problems else "")
    parts: list[Any] = [head, t]
    if report.get("fault"):
        parts.append(f"[yellow]fault switch on: {escape(report['fault'])}[/]")
    parts.append("`tensorage devnet show` for the metagraph, `--json` for everything")
    return Group(*parts)


def _process(process: Optional[dict[str, Any]]) -> str:
    if not process:
        return "not started"
    state = process.get("state", "?")
    if state == "running":
        where = f" at {process['endpoint']}" if process.get("endpoint") else ""
        return f"running (pid {process.get('pid')}){where}"
    if state == "dead":
        return f"[red]dead[/] (pid {process.get('pid')} stopped without saying so: see its log)"
    return escape(str(state))


def metagraph_table(mg: Metagraph, names: dict[str, str], last_epoch: Optional[int] = None,
                    width: int = 120) -> Group:
    """The metagraph; under 100 columns the endpoint and dividends are left out."""
    wide = width >= 100
    t = Table(title=f"netuid {mg.netuid} at block {mg.block}"
                    + (f" (last epoch {last_epoch})" if last_epoch is not None else ""),
              box=None, pad_edge=False, padding=(0, 1), header_style="bold underline")
    cols = [("uid", "right"), ("node", "left"), ("hotkey", "left"), ("stake", "right"), ("vp", "center")]
    cols += [("axon", "left")] if wide else []
    cols += [("trust", "right"), ("cons", "right"), ("incent", "right")]
    cols += [("divs", "right")] if wide else []
    cols += [("emit", "right"), ("upd", "right")]
    for col, justify in cols:
        t.add_column(col, justify=justify, no_wrap=True)  # type: ignore[arg-type]
    for n in mg.neurons:
        row = [str(n.uid), names.get(n.hotkey, ""), n.hotkey[:8], f"{n.total_stake:.0f}",
               "✓" if n.validator_permit else ""]
        row += [n.axon or "-"] if wide else []
        row += [f"{n.trust:.3f}", f"{n.consensus:.3f}", f"{n.incentive:.3f}"]
        row += [f"{n.dividends:.3f}"] if wide else []
        row += [f"{n.emission:.2f}", str(n.last_update)]
        t.add_row(*row)
    return Group(t, f"as of {time.strftime('%X')}")
