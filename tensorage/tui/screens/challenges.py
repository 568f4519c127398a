"""Challenges: every challenge as it is judged (or answered), pass rates per peer, trends."""

from __future__ import annotations

from typing import Iterable

from rich.text import Text
from textual.containers import Horizontal, Vertical
from textual.widget import Widget
from textual.widgets import Static

from ..format import clock, pct, result_text, size, spark
from ..state import ChallengeRow
from ..widgets.keyed_table import KeyedTable
from ..widgets.lazy_table import Column, LazyTable
from .base import ConsoleScreen

PEER_COLUMNS = (("peer", "peer"), ("n", "n"), ("pass", "pass"), ("proven", "proven"), ("chunks", "chunk"),
                ("latency", "ms"), ("last", "last"))
SPARK_WIDTH = 26  # the trends give the peers table room for its columns at 80 columns
# "chunks": chunks of certified client shards right/asked in the window
ROW_COLUMNS = (Column("time", 8), Column("by", 11), Column("peer", 9), Column("plots", 5, "right"),
               Column("proofs", 9, "right"), Column("chunks", 6, "right"), Column("result", 11),
               Column("ms", 5, "right"), Column("detail", 0))


class ChallengesScreen(ConsoleScreen):
    MODE = "challenges"
    HELP = ("Recent challenges, newest first: who asked (by), who answered (peer), plots sampled, proofs "
            "returned/expected, chunks of certified client shards right/asked in the same window (one wrong or "
            "missing chunk fails the window), the verdict and the latency. Above: pass rate, proven ratio and "
            "shard chunks right per peer, and the pass rate (rolling, last 10) and latency of the last 120 "
            "challenges. A miner sees the challenges it answered. The table renders only visible rows, so it "
            "stays fast at any length.")
    KEYS = (("↑/↓ PgUp/PgDn", "move in the table"), ("Home/End", "newest / oldest"), ("tab", "peers ↔ challenges"))
    TOPICS = frozenset({"challenges", "names"})

    def body(self) -> Iterable[Widget]:
        with Horizontal(id="chal-top"):
            yield KeyedTable(PEER_COLUMNS, id="chal-peers", cursor=False)
            with Vertical(id="chal-trends"):
                yield Static("pass rate", id="chal-pass-label", classes="spark-label")
                yield Static("", id="chal-pass", classes="spark")
                yield Static("latency", id="chal-lat-label", classes="spark-label")
                yield Static("", id="chal-lat", classes="spark")
        yield LazyTable(ROW_COLUMNS, self.render_row, empty="no challenges yet: validators start a round every "
                                                             "--seconds_per_round", id="chal-table")
        yield Static(" ", id="chal-detail")

    @property
    def served_view(self) -> bool:
        return self.console.backend.caps.answers_challenges

    def on_mount(self) -> None:
        state = self.console.state
        self.query_one(LazyTable).set_rows(state.served if self.served_view else state.results)
        self.query_one(LazyTable).focus()

    def render_row(self, r: ChallengeRow) -> list:
        state = self.console.state
        peer = state.name(r.peer_hotkey, r.uid) if not self.served_view else state.name(r.peer_hotkey)
        proofs = f"{r.returned}/{r.expected:.1f}" if r.expected is not None else str(r.returned)
        return [clock(r.ts), r.source, peer, str(r.plots), proofs, self._chunks(r), result_text(r.result),
                f"{r.latency_ms:.0f}", Text(r.detail, style="dim")]

    @staticmethod
    def _chunks(r: ChallengeRow) -> Text:
        if not r.chunks_asked:
            return Text("-", style="dim")
        return Text(f"{r.chunks_right}/{r.chunks_asked}", style="green" if r.chunks_right == r.chunks_asked
                    else "bold red")

    def redraw(self, topics: set[str]) -> None:
        state = self.console.state
        table = self.query_one(LazyTable)
        if "names" in topics:  # a name learned: rows already drawn show it
            table.render_epoch += 1
            table.invalidate()
        table.rows_changed()
        peers = state.served_peers if self.served_view else state.peers
        rows = []
        for key, p in sorted(peers.items(), key=lambda kv: (kv[1].uid is None, kv[1].uid or 0, kv[0])):
            label = state.name(key) if self.served_view else state.name(key, p.uid)
            rate = p.pass_rate
            rate_text = Text(pct(rate), style="green" if rate and rate >= 0.9 else "yellow" if rate else "red")
            proven = "-" if self.served_view else pct(p.proven_ratio)
            chunks = Text(pct(p.chunk_rate), style="" if p.chunk_rate in (None, 1.0) else "bold red")
            rows.append((key, [label, str(p.n), rate_text, proven, chunks,
                               f"{p.mean_latency_ms:.0f}" if p.mean_latency_ms is not None else "-",
                               result_text(p.last_result)]))
        self.query_one("#chal-peers", KeyedTable).sync(rows)
        width = SPARK_WIDTH
        lines: dict[str, object] = {}
        if not self.served_view and state.pass_series:
            passes = list(state.pass_series)[-width:]
            lat = list(state.latency_series)[-width:]
            lines["#chal-pass"] = spark(passes, width, 0.0, 1.0, "green")
            lines["#chal-pass-label"] = f"pass rate {pct(passes[-1])} (low {pct(min(passes))})"
        elif self.served_view and state.served:
            lat = [r.latency_ms for r in state.served.items[-width:]]
            lines["#chal-pass-label"] = f"{len(state.served)} challenges answered"
        else:
            lat = []
        if lat:
            lines["#chal-lat"] = spark(lat, width, 0.0, None, "cyan")
            lines["#chal-lat-label"] = f"latency {lat[-1]:.0f} ms (max {max(lat):.0f})"
        for selector, content in lines.items():
            self.query_one(selector, Static).update(content, layout=False)  # fixed one-line widgets
        self._detail(table.current())

    def on_lazy_table_cursor_moved(self, message: LazyTable.CursorMoved) -> None:
        self._detail(message.row)

    def _detail(self, row) -> None:
        if row is None:
            return
        state = self.console.state
        text = Text(f"{clock(row.ts)} {row.source} → {state.name(row.peer_hotkey, row.uid)} ({row.peer_hotkey[:12]}…): ",
                    no_wrap=True, overflow="ellipsis")
        text.append_text(result_text(row.result))
        if row.chunks_asked:
            text.append(f" · shard chunks {row.chunks_right}/{row.chunks_asked}",
                        style="" if row.chunks_right == row.chunks_asked else "red")
        if row.client_bytes:
            text.append(f" · client shards {size(row.client_bytes)}")
        if row.detail:
            text.append(f" — {row.detail}")
        self.query_one("#chal-detail", Static).update(text, layout=False)  # one fixed line: no relayout
