"""Weights: scores and weights per miner, when they were set, and the chain's consensus."""

from __future__ import annotations

from typing import Iterable, Optional

from rich.text import Text
from textual.widget import Widget
from textual.widgets import Static

from ...engines.snapshot import ValidatorSnapshot
from ..format import clock, pct, size
from ..widgets.keyed_table import KeyedTable
from .base import ConsoleScreen


def _w(x: Optional[float]) -> str:
    return "-" if x is None else f"{x:.3f}"


def _short_validator(name: str) -> str:
    return name.replace("validator-", "v") if name.startswith("validator-") else name[:8]


class WeightsScreen(ConsoleScreen):
    MODE = "weights"
    HELP = ("Per miner: the proven ratio and score each validator keeps, the weight each validator last set "
            "on chain (devnet: every validator's last WeightsSet), and the chain's consensus incentive and "
            "emission from the last epoch, so our weight can be read next to the network's.")
    KEYS = (("↑/↓", "move"),)
    TOPICS = frozenset({"weights", "chain", "chain_loaded", "nodefiles", "names"})

    def body(self) -> Iterable[Widget]:
        yield Static(id="weights-head")
        yield KeyedTable((("uid", "uid"),), id="weights-table")
        yield Static(id="weights-note", classes="note")

    def request_loads(self, topics: set[str]) -> None:
        if topics & {"weights", "resume"}:
            self.need("chain", "nodefiles")

    def validators(self) -> list[str]:
        app = self.console
        names = set(app.backend.validator_names())
        if app.backend.caps.many_validators:
            names |= {s for s in app.state.weights if s.startswith("validator")}
            names |= {s for s, snap in app.snapshots.items() if isinstance(snap, ValidatorSnapshot)}
        return sorted(names)

    def redraw(self, topics: set[str]) -> None:
        app = self.console
        caps = app.backend.caps
        validators = self.validators()
        rows = app.backend.weight_rows(app.metagraph, app.state.weights, app.snapshots)
        table = self.query_one("#weights-table", KeyedTable)
        columns = [("uid", "uid"), ("miner", "miner")]
        if caps.judges:
            columns += [("proven", "proven"), ("score", "score")]
            columns += [(f"w:{v}", _short_validator(v) if caps.many_validators else "weight") for v in validators]
        columns += [("incentive", "incentive"), ("consensus", "consensus"), ("emission", "emission")]
        table.set_columns(columns)
        out = []
        for r in sorted(rows, key=lambda r: r.uid):
            name = r.name or app.state.name(r.hotkey, r.uid)
            cells: list = [str(r.uid), name]
            if caps.judges:
                ratios = [x for x in r.ratio.values() if x is not None]
                scores = [x for x in r.score.values() if x is not None]
                cells += [pct(sum(ratios) / len(ratios)) if ratios else "-",
                          size(sum(scores) / len(scores)) if scores else "-"]
                cells += [_w(r.weight.get(v)) for v in validators]
            inc = Text(_w(r.incentive), style="bold green" if r.incentive else "dim")
            cells += [inc, _w(r.consensus), "-" if r.emission is None else f"{r.emission:.2f}"]
            out.append((str(r.uid), cells))
        table.sync(out)
        self.query_one("#weights-head", Static).update(self._head(validators))
        note = ("proven: proofs returned / expected (validators' average) · score: proven plot bytes and certified "
                "client bytes (x2, under each gateway's stake bound) × latency factor · weight: what each validator "
                "last set · incentive, consensus, emission: the chain after its last epoch")
        if not caps.judges:
            note = "a miner sees the chain's incentive; validators' scores and weights stay with them"
        self.query_one("#weights-note", Static).update(Text(note, style="dim"))

    def _head(self, validators: list[str]) -> Text:
        app = self.console
        text = Text()
        caps = app.backend.caps
        own = app.backend.own_snapshot()
        if isinstance(own, ValidatorSnapshot):
            block = own.last_weights_block
            text.append("last set " + (f"at block {block}" if block is not None else "never (waiting for scores)"),
                        style="bold")
            text.append(f" · every {app.backend.settings.weights_interval}s")
        elif caps.many_validators:
            if not validators:
                text.append("no validator yet", style="dim")
            for i, v in enumerate(validators):
                ev = app.state.weights.get(v)
                failed = app.state.weights_failed.get(v)
                if i:
                    text.append(" · ")
                text.append(_short_validator(v), style="bold")
                if ev is not None:
                    text.append(f" set at block {ev.block} ({clock(ev.ts)})")
                else:
                    text.append(" not set yet", style="dim")
                if failed is not None and (ev is None or failed.ts > ev.ts):
                    text.append(f" last try failed: {failed.message}", style="red")
        else:
            me = app.metagraph.by_hotkey(app.backend.identity().hotkey) if app.metagraph else None
            text.append(f"this miner: uid {me.uid}, incentive {me.incentive:.3f}" if me else "not in the metagraph yet")
        if app.last_epoch is not None:
            text.append(f" · last epoch at block {app.last_epoch}")
        return text
