"""One node per database root: an exclusive ``flock`` on ``index/node.lock`` for the node's lifetime.

The kernel drops the lock when the process exits, however it exits (a crash, SIGKILL, a reboot), so
there is no stale lock to clean up, and a second copy started by mistake (pm2 twice, a shell next to
a supervisor) is refused before it touches anything, with the running one's pid. The file itself only
says who holds it (pid, role); it is never removed. ``status`` probes it to tell a running node from a
crashed one.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import time
from dataclasses import dataclass
from typing import Optional

from ..errors import NodeLocked
from .layout import Layout

LOCK_FILE = "node.lock"
# A probe (status, the console) holds a shared lock for microseconds: retry that long, never longer.
ACQUIRE_TRIES = 20
ACQUIRE_PAUSE_S = 0.025


@dataclass(frozen=True)
class Holder:
    pid: Optional[int]
    role: str


class NodeLock:
    def __init__(self, layout: Layout) -> None:
        self.layout = layout
        self.path = layout.index / LOCK_FILE
        self._fd: Optional[int] = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def acquire(self, role: str) -> None:
        """Take the lock for ``role`` or raise NodeLocked naming the holder. Creates ``index/``."""
        if self._fd is not None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        for _ in range(ACQUIRE_TRIES):
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                time.sleep(ACQUIRE_PAUSE_S)
        else:
            os.close(fd)
            raise NodeLocked(self._refusal(role, read_holder(self.path)))
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps({"pid": os.getpid(), "role": role, "since": time.time()}).encode(), 0)
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            with contextlib.suppress(OSError):
                fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

    def _refusal(self, role: str, holder: Holder) -> str:
        return refusal(self.layout, role, holder)


def refusal(layout: Layout, role: str, holder: Holder) -> str:
    """What to tell a ``role`` that finds the root held: who holds it, and what to do instead."""
    root = layout.root
    who = f"a running {holder.role}" + (f" (pid {holder.pid})" if holder.pid else "")
    if role == "allocate":
        todo = (f"change a running miner's share with `tensorage-console --attach --db_root_path {root}`, "
                f"or stop it first")
    else:
        todo = (f"stop it first{f' (kill {holder.pid}, pm2 stop, systemctl stop)' if holder.pid else ''}, "
                f"follow it with `tensorage-console --attach --db_root_path {root}`, or give this {role} its "
                f"own --db_root_path")
    return f"{root} is in use by {who}: one database root serves one node; {todo}"


def refuse_if_held(layout: Layout, role: str) -> None:
    """Read-only: raise NodeLocked now if another process holds the root (before opening anything)."""
    held = holder(layout)
    if held is not None:
        raise NodeLocked(refusal(layout, role, held))


def read_holder(path) -> Holder:
    try:
        data = json.loads(open(path).read() or "{}")
        return Holder(pid=int(data["pid"]) if data.get("pid") else None, role=str(data.get("role") or "node"))
    except (OSError, ValueError, TypeError, KeyError):
        return Holder(pid=None, role="node")


def holder(layout: Layout) -> Optional[Holder]:
    """Who holds the root's lock right now, or None when no node runs there. Read-only."""
    path = layout.index / LOCK_FILE
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return read_holder(path)
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)
