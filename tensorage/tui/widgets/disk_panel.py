"""One miner's disk: the partition and planned / plotted / verified / proven bars."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional

from rich.console import Group
from rich.text import Text
from textual.widgets import Static

from ...engines.snapshot import MinerSnapshot
from ..format import bar, duration, pct, size, stacked_bar
from ..sources import DiskInfo
from ..state import ConsoleState, DiskLive, PeerStats

LABEL = 10


@dataclass
class DiskView:
    """Everything known about one miner's disk, merged from files, events and the engine."""

    name: str
    info: Optional[DiskInfo] = None  # from the plot index (thread read)
    live: Optional[DiskLive] = None  # from events
    engine: Optional[dict[str, Any]] = None  # in-process allocator status
    peer: Optional[PeerStats] = None  # validators' verdicts on this miner
    served: Optional[int] = None  # challenges answered (miner role)
    uid: Optional[int] = None
    snap: Optional[MinerSnapshot] = None  # the miner's own snapshot (its shard store's counts)

    @property
    def shards(self) -> Optional[int]:
        return self.snap.shards if self.snap is not None else None

    @property
    def shard_bytes(self) -> int:
        return self.snap.shard_bytes if self.snap is not None else 0

    @property
    def disks(self) -> list:
        """The miner's disks when it has several or one is lost (one healthy disk: nothing to add)."""
        disks = self.snap.disks if self.snap is not None else []
        return disks if len(disks) > 1 or any(d.state != "ok" for d in disks) else []

    @property
    def share(self) -> int:
        if len(self.disks) > 1:  # each disk's allocator plans its part: the share is their sum
            return sum(d.share_bytes for d in self.disks)
        if self.live and self.live.plan:
            return self.live.plan.size_bytes
        return self.info.size_bytes if self.info else 0

    @property
    def planned(self) -> int:
        if self.engine is not None:
            return self.engine["planned"]
        if self.info and self.info.planned:
            return self.info.planned
        return self.live.total if self.live else 0

    @property
    def done(self) -> int:
        if self.engine is not None:
            return self.engine["done"]
        counts = [self.info.done if self.info else 0, self.live.done if self.live else 0]
        return max(counts)

    @property
    def verified(self) -> int:
        if self.engine is not None:
            return self.engine["verified"]
        return self.info.verified if self.info else 0

    @property
    def plot_bytes(self) -> int:
        if self.engine is not None:
            return self.engine["plot_bytes"]
        return self.info.plot_bytes if self.info else 0

    @property
    def planned_bytes(self) -> int:
        if self.live and self.live.plan and not self.disks:  # several disks: one plan each, not summed here
            return self.live.plan.plot_bytes
        if self.planned and self.done:
            return int(self.plot_bytes / self.done * self.planned)
        return self.plot_bytes

    @property
    def proven_ratio(self) -> Optional[float]:
        return self.peer.proven_ratio if self.peer else None

    @property
    def rate_per_hour(self) -> float:
        if self.engine is not None:
            return self.engine["rate_per_hour"]
        return self.live.rate_per_hour if self.live else 0.0

    @property
    def eta_s(self) -> Optional[float]:
        if self.engine is not None:
            return self.engine["eta_s"]
        return self.live.eta_s if self.live and self.live.running else None

    @property
    def running(self) -> list[tuple[str, int, float]]:
        if self.engine is not None:
            return [(seed, k, f) for seed, (k, f) in self.engine["running"].items()]
        if not self.live:
            return []
        return [(p.seed, p.k, p.fraction) for p in self.live.running.values()]

    @property
    def busy(self) -> bool:
        if self.engine is not None:
            return bool(self.engine["busy"])
        return bool(self.live and self.live.running)


def disk_views(state: ConsoleState, source, metagraph, disk_infos: dict[str, DiskInfo],
               snapshots: Optional[dict[str, Any]] = None) -> list[DiskView]:
    """Every miner the console knows, merged from its plot index, its events, its engine, its
    snapshot (node processes' state files: ``snapshots``) and the validators' verdicts: one view
    for the Disk screen and the wizard's progress alike."""
    engine = source.disk_live()
    names = set(disk_infos) | set(engine) | {m.name for m in source.miners()}
    names |= {s for s in state.disks if s.startswith("miner")}
    by_name = {v: k for k, v in state.names.items()}
    views = []
    for name in sorted(names):
        v = DiskView(name=name, info=disk_infos.get(name), live=state.disks.get(name), engine=engine.get(name))
        snap = (v.engine or {}).get("snapshot") or (snapshots or {}).get(name)
        v.snap = snap if isinstance(snap, MinerSnapshot) else None
        hotkey = by_name.get(name)
        if source.caps.answers_challenges:  # this console's own miner: what it answered
            hotkey = source.identity().hotkey
            v.served = (v.engine or {}).get("served", 0)
        if hotkey:
            v.peer = state.peers.get(hotkey)
            if metagraph is not None and metagraph.by_hotkey(hotkey):
                v.uid = metagraph.by_hotkey(hotkey).uid
        views.append(v)
    return views


def disk_lines(disks: list, width: int) -> list[Text]:
    """``disks`` row(s): path, state (with the reason when lost), share, plots, free space."""
    lines = []
    path_w = max(8, min(24, max(len(d.path) for d in disks)))
    for i, d in enumerate(disks):
        body = Text(_short(d.path, path_w).ljust(path_w) + " ")
        if d.state == "ok":
            body.append("ok ", style="green")
            body.append(f"{size(d.share_bytes)} · {d.plots} plot{'' if d.plots == 1 else 's'} · "
                        f"{size(d.device_free)} free")
        else:
            body.append("lost ", style="bold red")
            body.append(d.reason, style="red")
        body.truncate(max(10, width - LABEL - 2), overflow="ellipsis")
        lines.append(_row("disks" if i == 0 else "", body))
    return lines


def _short(path: str, width: int) -> str:
    """A path cut from the left (its end names the disk)."""
    return path if len(path) <= width else "…" + path[-(width - 1):]


def _row(label: str, body: Text) -> Text:
    line = Text(label.ljust(LABEL), style="bold")
    line.append_text(body)
    return line


class DiskPanel(Static):
    DEFAULT_CSS = """
    DiskPanel { height: auto; padding: 0 1; }
    """

    def show(self, v: Optional[DiskView], width: int) -> None:
        if v is None:
            self.update(Text("no miner yet: press a to allocate a disk share", style="dim"))
            return
        w = max(10, min(40, width - LABEL - 42))
        lines: list[Text] = []
        head = Text(v.name, style="bold")
        if v.uid is not None:
            head.append(f"  uid {v.uid}")
        if v.info:
            more = f" +{len(v.disks) - 1} disk{'s' if len(v.disks) > 2 else ''}" if len(v.disks) > 1 else ""
            head.append(f"  share {size(v.share)} at {v.info.db_root}{more}", style="dim")
        lines.append(head)
        share = v.share or 1
        lines.append(_row("planned", bar(v.planned_bytes / share if v.share else None, w, "blue")
                          + Text(f" {v.planned} plots · {size(v.planned_bytes)} of {size(v.share)}")))
        lines.append(_row("plotted", bar(v.done / v.planned if v.planned else None, w, "cyan")
                          + Text(f" {v.done}/{v.planned} · {size(v.plot_bytes)}")))
        lines.append(_row("verified", bar(v.verified / v.planned if v.planned else None, w, "green")
                          + Text(f" {v.verified}/{v.planned}")))
        if v.served is not None:
            lines.append(_row("proven", bar(None, w) + Text(f" verdicts stay with validators; "
                                                           f"{v.served} answered", style="dim")))
        else:
            ratio = v.proven_ratio
            frac = ratio * v.verified / v.planned if ratio is not None and v.planned else None
            note = (f" {pct(ratio)} of expected proofs ({len(v.peer.recent)} challenges)"
                    if ratio is not None and v.peer else " no challenge judged yet")
            lines.append(_row("proven", bar(frac, w, "magenta") + Text(note)))
        if v.snap is not None:
            s = v.snap
            note = Text(f" {s.shards} shard{'' if s.shards == 1 else 's'} · {size(s.shard_bytes)}", no_wrap=True,
                        overflow="ellipsis")
            validators = sum(1 for c in s.shards_by_validator.values() if c.shards)
            if validators > 1:
                note.append(f" for {validators} validators")
            note.append(f" · {s.shards_certified} certified", style="dim")
            note.truncate(max(10, width - LABEL - w - 2), overflow="ellipsis")
            lines.append(_row("shards", bar(s.shard_bytes / v.share if v.share else None, w, "yellow") + note))
        plan = v.live.plan if v.live else None
        if v.disks:  # one line per disk instead of the one disk's partition
            lines.extend(disk_lines(v.disks, width))
        elif plan is not None:
            temp = plan.temp_bytes if v.busy else 0
            free = max(0, plan.size_bytes - plan.plot_bytes - plan.reserve_bytes - temp)
            parts = [(plan.plot_bytes, "blue"), (plan.reserve_bytes, "yellow"), (temp, "red"), (free, "bright_black")]
            lines.append(_row("partition", stacked_bar(parts, w)))
            legend = Text(" " * LABEL)
            legend.append("■ plots ", style="blue")
            legend.append(size(plan.plot_bytes))
            legend.append("  ■ reserve ", style="yellow")
            legend.append(size(plan.reserve_bytes))
            legend.append("  ■ temp ", style="red")
            legend.append(size(temp))  # only while plotting: the parts add up to the share
            legend.append("  ■ free ", style="bright_black")
            legend.append(size(free))
            lines.append(legend)
        running = v.running
        if running:
            body = Text(" · ".join(f"k{k} {seed[:8]} {f:.0%}" for seed, k, f in running[:3]))
            if len(running) > 3:
                body.append(f" +{len(running) - 3}")
            lines.append(_row("plotting", body))
        rate = Text(f"{v.rate_per_hour:.0f} plots/h" if v.rate_per_hour else "-")
        rate.append(f" · ETA {duration(v.eta_s)}" if v.eta_s is not None else (" · idle" if not v.busy else ""))
        lines.append(_row("rate", rate))
        if v.info:
            dev = Text(f"{size(v.info.device_free)} free of {size(v.info.device_total)}")
            if v.info.error:
                dev.append(f"  {v.info.error}", style="red")
            lines.append(_row("device", dev))
        if v.engine and v.engine.get("last_error"):
            lines.append(_row("error", Text(v.engine["last_error"], style="red")))
        self.update(Group(*lines))
