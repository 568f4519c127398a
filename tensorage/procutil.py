"""Child-process hygiene (kept light: plotting children import it)."""

from __future__ import annotations

import contextlib
import os
import signal

PARENT_ENV = "TENSORAGE_PARENT_PID"


def die_with_parent() -> None:
    """Linux: get SIGKILL when the parent dies, so a killed supervisor leaves no orphans."""
    with contextlib.suppress(Exception):
        import ctypes

        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
        parent = os.environ.get(PARENT_ENV)
        if parent and os.getppid() != int(parent):  # the parent died before prctl took effect
            os._exit(1)


def child_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """Environment for a child that should die with this process."""
    return {**os.environ, PARENT_ENV: str(os.getpid()), **(extra or {})}
