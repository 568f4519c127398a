"""A miner's disk share, stored with the node (``index/share.json``) so a restart keeps it.

Which wins, the flag or the stored share? The most recent decision. The stored share records the
``--size_in_gb`` / ``--workers`` the node was started with when it was set. On the next start:

* no flag, or the same flag as then (a supervisor restarting with its unchanged command line):
  the stored share wins. A share set from the console survives pm2 or systemd restarts.
* a flag different from the one recorded: the operator changed it on purpose since; the flag
  wins and is stored as the new decision.

``tensorage allocate`` and the console's wizard store what they set. ``status`` and the console
show where the share came from (:class:`~tensorage.engines.snapshot.ShareState`).
"""

from __future__ import annotations

import time
from typing import Literal, Optional

from pydantic import BaseModel, ConfigDict, ValidationError

from ..config import Settings, with_defaults
from .files import atomic_write
from .layout import Layout

SHARE_FILE = "share.json"
SetBy = Literal["console", "allocate", "flag"]


class ShareState(BaseModel):
    """The share a miner runs with and where it came from: the flag, the share stored with the node,
    or the default (what `status` and the console show)."""

    model_config = ConfigDict(extra="ignore")

    size_in_gb: float
    workers: Optional[int] = None
    source: Literal["flag", "stored", "default"] = "default"
    detail: str = ""


class StoredShare(BaseModel):
    size_in_gb: float
    workers: Optional[int] = None
    set_by: SetBy
    set_at: float
    # The flags in effect when it was stored (None: not given); a start with other flags overrides it.
    flag_size_in_gb: Optional[float] = None
    flag_workers: Optional[int] = None


def flags_of(settings: Settings) -> tuple[Optional[float], Optional[int]]:
    """The --size_in_gb and --workers actually given (not defaults)."""
    given = settings.model_fields_set
    return (settings.size_in_gb if "size_in_gb" in given else None,
            settings.workers if "workers" in given else None)


def load(layout: Layout) -> Optional[StoredShare]:
    try:
        return StoredShare.model_validate_json((layout.index / SHARE_FILE).read_bytes())
    except (OSError, ValidationError, ValueError):
        return None


def save(layout: Layout, share: StoredShare) -> None:
    atomic_write(layout.index / SHARE_FILE, share.model_dump_json(indent=2).encode())


def store(layout: Layout, size_in_gb: float, workers: Optional[int], set_by: SetBy,
          flags: tuple[Optional[float], Optional[int]]) -> StoredShare:
    """Store a share, recording the flags the node was started with (see the module's rule)."""
    share = StoredShare(size_in_gb=size_in_gb, workers=workers, set_by=set_by, set_at=time.time(),
                        flag_size_in_gb=flags[0], flag_workers=flags[1])
    save(layout, share)
    return share


def _when(ts: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(ts))


def describe(share: StoredShare) -> str:
    by = {"console": "set from the console", "allocate": "set by `tensorage allocate`",
          "flag": "given as --size_in_gb"}[share.set_by]
    return f"{by} on {_when(share.set_at)}"


def resolve(settings: Settings, layout: Layout) -> tuple[Settings, ShareState, bool]:
    """The settings a miner runs with, where its share came from, and whether the flags are a new
    decision to store (see the module's rule)."""
    size_flag, workers_flag = flags_of(settings)
    stored = load(layout)
    if stored is None:
        source = "flag" if size_flag is not None else "default"
        detail = f"--size_in_gb {settings.size_in_gb:g}" if size_flag is not None else "the default share"
        return settings, ShareState(size_in_gb=settings.size_in_gb, workers=settings.workers, source=source,
                                    detail=detail), size_flag is not None
    update: dict = {}
    size_changed = size_flag is not None and size_flag != stored.flag_size_in_gb
    workers_changed = workers_flag is not None and workers_flag != stored.flag_workers
    if not size_changed:
        update["size_in_gb"] = stored.size_in_gb
    if not workers_changed and stored.workers is not None:
        update["workers"] = stored.workers
    resolved = with_defaults(settings, update)  # the stored share is not a typed flag either
    if size_changed:
        state = ShareState(size_in_gb=resolved.size_in_gb, workers=resolved.workers, source="flag",
                           detail=f"--size_in_gb {size_flag:g}, changed since the stored {stored.size_in_gb:g} GB "
                                  f"({describe(stored)})")
    else:
        replaced = (f"; --size_in_gb {size_flag:g} is the flag it replaced"
                    if size_flag is not None and size_flag != stored.size_in_gb else "")
        state = ShareState(size_in_gb=resolved.size_in_gb, workers=resolved.workers, source="stored",
                           detail=f"{describe(stored)}{replaced}")
    return resolved, state, size_changed or workers_changed
