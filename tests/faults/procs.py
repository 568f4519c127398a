"""kill -9 of real node processes, and waiting until every child they started is gone too (a
plotting child dies with its parent; a restart must not race it)."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil


def children(pid: int) -> list[psutil.Process]:
    try:
        return psutil.Process(pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return []


def kill9(proc: subprocess.Popen, timeout: float = 30) -> None:
    """SIGKILL the process (only it: its children must die on their own, as they would in the field),
    then wait until they have."""
    kids = children(proc.pid)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=timeout)
    gone, alive = psutil.wait_procs(kids, timeout=timeout)
    assert not alive, f"children of a killed {proc.args[:4]} outlived it: {alive}"


def has_child_running(proc: subprocess.Popen, marker: str) -> bool:
    for child in children(proc.pid):
        try:
            if any(marker in part for part in child.cmdline()):
                return True
        except psutil.NoSuchProcess:
            continue
    return False


def tensorage_proc(args: list[str], log: Path, env: dict | None = None) -> subprocess.Popen:
    with open(log, "ab") as out:
        return subprocess.Popen([sys.executable, "-m", "tensorage", *args], stdout=out, stderr=subprocess.STDOUT,
                                env={**os.environ, "COLUMNS": "200", **(env or {})})


def wait_until(predicate, timeout: float, what: str, every: float = 0.05):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")


def reap(*procs: subprocess.Popen) -> None:
    """After a failed test: kill what it left running (and their children) so nothing outlives it."""
    for proc in procs:
        if proc is not None and proc.poll() is None:
            kids = children(proc.pid)
            proc.kill()
            proc.wait(timeout=30)
            for kid in kids:
                with contextlib.suppress(psutil.NoSuchProcess):
                    kid.kill()
