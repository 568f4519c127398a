"""A path typed in a box over the current screen (``ModalScreen[Optional[Path]]``).

Enter checks the path with the caller's check (blocking: it runs in a thread worker); a refusal
shows its reason under the box and keeps what was typed, so nothing is lost. Esc cancels.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.message import Message
from textual.screen import ModalScreen
from textual.widgets import Input, Static

from ...errors import TensorageError


class PathPrompt(ModalScreen[Optional[Path]]):
    BINDINGS = [Binding("escape", "cancel", "Cancel", key_display="esc")]

    @dataclass
    class Checked(Message):
        text: str
        path: Optional[Path]
        reason: str = ""

    def __init__(self, title: str, prompt: str, value: str, check: Callable[[str], Path]) -> None:
        super().__init__()
        self.title_text = title
        self.prompt = prompt
        self.value = value
        self.check = check
        self.refusals: list[str] = []  # every reason shown (tests read it)
        self.checking = False

    def compose(self) -> ComposeResult:
        with Vertical(id="prompt-box"):
            yield Static(Text(self.title_text, style="bold"), id="prompt-title")
            yield Static(self.prompt, id="prompt-text")
            yield Input(self.value, id="prompt-input")
            yield Static("", id="prompt-error")
            yield Static(Text.assemble(("enter", "bold"), " ok   ", ("esc", "bold"), " cancel   ",
                                       ("ctrl+u", "bold"), " clear"), id="prompt-keys")

    def on_mount(self) -> None:
        box = self.query_one(Input)
        box.cursor_blink = False  # steady in tmux captures
        box.focus()
        box.cursor_position = len(box.value)

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        if self.checking:
            return
        self.checking = True
        self.query_one("#prompt-error", Static).update(Text("checking…", style="dim"))
        self._check(event.value)

    @work(thread=True, exclusive=True, exit_on_error=False, group="prompt")
    def _check(self, text: str) -> None:
        try:
            path = self.check(text)
        except TensorageError as exc:
            self.post_message(self.Checked(text, None, str(exc)))
            return
        except OSError as exc:
            self.post_message(self.Checked(text, None, f"{text.strip()}: {exc.strerror or exc}"))
            return
        self.post_message(self.Checked(text, path))

    def on_path_prompt_checked(self, message: "PathPrompt.Checked") -> None:
        self.checking = False
        if message.path is not None:
            self.dismiss(message.path)
            return
        self.refusals.append(message.reason)
        self.query_one("#prompt-error", Static).update(Text(f"✗ {message.reason}", style="bold red"))
        self.query_one(Input).focus()

    def on_input_changed(self, event: Input.Changed) -> None:
        if not self.checking:
            self.query_one("#prompt-error", Static).update("")

    def action_cancel(self) -> None:
        self.dismiss(None)

