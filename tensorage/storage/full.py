"""A full device, recognised whichever layer noticed it.

SQLite reports a full disk as ``database or disk is full`` and rolls the transaction back itself;
peewee's own rollback then fails with ``cannot rollback - no transaction is active``, which hides
the cause (the issue: that was a reallocation's whole result). Files report ``ENOSPC``.
"""

from __future__ import annotations

import errno
from pathlib import Path
from typing import Optional

from ..errors import DiskFull

SQLITE_FULL = "database or disk is full"


def _chain(exc: BaseException):
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        yield exc
        exc = exc.__cause__ or exc.__context__  # type: ignore[assignment]


def is_disk_full(exc: BaseException) -> bool:
    """Whether ``exc`` (or what it was raised while handling) is a full device."""
    for e in _chain(exc):
        if isinstance(e, DiskFull):
            return True
        if isinstance(e, OSError) and e.errno in (errno.ENOSPC, errno.EDQUOT):
            return True
        if SQLITE_FULL in str(e):
            return True
    return False


def disk_full(exc: BaseException, root: Path, doing: str) -> Optional[DiskFull]:
    """An operator's error for ``exc`` when it is a full device under ``root``, else None."""
    if isinstance(exc, DiskFull):
        return exc
    if not is_disk_full(exc):
        return None
    return DiskFull(f"the disk under {root} is full, so {doing} could not be written; nothing was changed "
                    f"and no plot was lost: free some space on it (or lower --size_in_gb) and the next run retries")
