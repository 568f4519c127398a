"""Command palette (ctrl+p): the operator's actions, searchable by name."""

from __future__ import annotations

from functools import partial
from typing import TYPE_CHECKING, Callable

from textual.command import DiscoveryHit, Hit, Hits, Provider

from .messages import JobCommand, NeedData
from .widgets.chrome import SCREENS

if TYPE_CHECKING:
    from .app import ConsoleApp


class ConsoleCommands(Provider):
    """Allocate / add a miner, switch screens, run, pause or resume any job."""

    def commands(self) -> list[tuple[str, Callable[[], object], str]]:
        app: "ConsoleApp" = self.app  # type: ignore[assignment]
        out: list[tuple[str, Callable[[], object], str]] = []
        caps = app.backend.caps
        if caps.allocate:
            out.append((caps.allocate_label, app.action_allocate, "open the allocation wizard"))
        if caps.client_data:
            out.append(("Store a file", self._store, "Objects screen: type a path; encrypted, coded, stored"))
            out.append(("List objects again", self._list, "ask the gateway for this client's objects"))
        for key, mode, label in SCREENS:
            out.append((f"Show {label}", partial(app.switch_mode, mode), f"screen {key}"))
        for row in app.job_rows():  # every job, in this process or in a node process
            out.append((f"Run job now: {row.key}", partial(self._command, row, "run"), "run it once, now"))
            if row.info.paused:
                out.append((f"Resume job: {row.key}", partial(self._command, row, "resume"), "back on schedule"))
            else:
                out.append((f"Pause job: {row.key}", partial(self._command, row, "pause"), "skip its runs"))
        return out

    def _store(self) -> None:
        app: "ConsoleApp" = self.app  # type: ignore[assignment]

        def open_dialog() -> None:
            app.screen.action_store()  # type: ignore[attr-defined]

        app.switch_mode("objects")
        app.call_after_refresh(open_dialog)

    def _list(self) -> None:
        self.app.post_message(NeedData(frozenset({"objects"})))

    def _command(self, row, action: str) -> None:
        self.app.post_message(JobCommand(row, action))

    async def discover(self) -> Hits:
        for text, callback, help_text in self.commands():
            if not text.startswith("Show "):
                yield DiscoveryHit(text, callback, help=help_text)

    async def search(self, query: str) -> Hits:
        matcher = self.matcher(query)
        for text, callback, help_text in self.commands():
            score = matcher.match(text)
            if score > 0:
                yield Hit(score, matcher.highlight(text), callback, help=help_text)
