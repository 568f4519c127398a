"""The console's Textual messages: engine events coming in, worker answers, engine lifecycle.

Every message is a small dataclass; workers that read files or the chain in a thread answer
with one of these instead of touching widgets.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional

from textual.message import Message

from ..chain.port import Metagraph
from ..events import Event


@dataclass
class EngineEvents(Message):
    """Engine events from the bus, in arrival order.

    The pump appends to ``events`` until the app takes the batch, so a burst arriving
    while the app is busy becomes one message (coalescing), never a flooded queue.
    """

    events: list[Event] = field(default_factory=list)


@dataclass
class EnginesStarted(Message):
    detail: str = ""


@dataclass
class EnginesFailed(Message):
    error: str
    exit_code: int = 2


@dataclass
class ChainLoaded(Message):
    """The metagraph and clock, read in a thread."""

    metagraph: Optional[Metagraph]
    block: Optional[int]
    last_epoch: Optional[int]
    names: dict[str, str]
    error: str = ""


@dataclass
class NodeFilesLoaded(Message):
    """Node processes' state files (devnet): node name -> snapshot dict."""

    snapshots: dict[str, dict[str, Any]]


@dataclass
class DisksLoaded(Message):
    """Per-miner disk state read from its database root (plots index, device space)."""

    disks: dict[str, Any]


@dataclass
class WizardChecked(Message):
    """The answer of a wizard step's check (run in a thread): ok with a value, or the reason."""

    step: str
    ok: bool
    value: Any = None
    reason: str = ""
    final: bool = True  # False for live previews while typing


@dataclass
class AllocationStarted(Message):
    source: str
    detail: str = ""


@dataclass
class AllocationFailed(Message):
    reason: str


# --- from screens to the app: screens ask, the app reads and commands ---------------------------


@dataclass
class NeedData(Message):
    """A screen needs fresh reads: any of "chain", "nodefiles", "disks", "objects" (done in workers)."""

    what: frozenset[str]


@dataclass
class JobCommand(Message):
    """Run, pause or resume a job (the Jobs screen's keys, the command palette)."""

    row: Any  # sources.JobRow
    action: str


@dataclass
class ObjectsLoaded(Message):
    """The client's objects as its gateway listed them (``listing``: a ``client.session.Objects``),
    or why they could not be listed."""

    listing: Any = None
    error: str = ""


@dataclass
class ObjectCommand(Message):
    """Store a file, retrieve an object to a file, or remove an object (the Objects screen's keys,
    the command palette). Paths were checked in the screen's dialog."""

    action: str  # store | retrieve | remove
    path: Any = None  # Path: the file to store, or where a retrieved object goes
    object_id: str = ""
