"""Child-process hygiene (kept light: plotting children import it)."""

from __future__ import annotations

import contextlib
import os
import signal

PARENT_ENV = "TENSORAGE_PARENT_PID"


def die_with_parent(parent_pid: int | None = None) -> None:
    """Linux: get SIGKILL when the parent dies, so a killed supervisor leaves no orphans.

    ``parent_pid`` (or the environment's TENSORAGE_PARENT_PID) is the parent we expect:
    if it is already gone when this runs, exit at once.
    """
    with contextlib.suppress(Exception):
        import ctypes

        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
        expected = parent_pid or int(os.environ.get(PARENT_ENV) or 0)
        if expected and os.getppid() != expected:  # the parent died before prctl took effect
            os._exit(1)


def child_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """Environment for a child that should die with this process."""
    return {**os.environ, PARENT_ENV: str(os.getpid()), **(extra or {})}
