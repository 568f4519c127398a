"""Build one plot in a child process and stream its progress.

chiapos prints progress on the C++ stdout and holds the GIL, so each plot is a
child process (``python -m tensorage.proofs.plot_child``): its stdout is a pipe the
parent reads line by line ("Progress update: 0.42"), killing it cancels the plot,
and it dies with its parent. Its temp files live in ``tmp/<seed>/`` so a half-made
plot is removed with one directory.

The child (:mod:`tensorage.proofs.plot_child`) prints one JSON line at the end: the
plot's size and, unless verification is disabled, how many sample proofs it checked.

chiapos never fails a write or read that comes up short (a full disk, an I/O error): it prints
"Only wrote ... Retrying in five minutes." and sleeps, forever. The parent stops such a child at
the first of those lines and fails the plot with what chiapos said, so a full disk ends the plot
(and frees its temp files) instead of hanging the allocator with its lock held.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from ..errors import PlotError

from ..procutil import child_env
from .plot_child import RESULT_PREFIX

STALLED = ("Only wrote ", "Only read ", "Could not open ", "Retrying in ")  # chiapos then sleeps and retries


@dataclass(frozen=True)
class PlotJob:
    tmp_root: Path
    final_dir: Path
    filename: str
    k: int
    plot_id: bytes
    threads: int
    verify: bool

    @property
    def tmp_dir(self) -> Path:
        return self.tmp_root / self.filename.removesuffix(".plot")

    @property
    def final_path(self) -> Path:
        return self.final_dir / self.filename


@dataclass(frozen=True)
class PlotResult:
    path: Path
    bytes: int
    seconds: float
    proofs_checked: int  # 0 when verification was disabled
    verified: bool


async def run_plot(job: PlotJob, on_progress: Callable[[float], None] = lambda f: None) -> PlotResult:
    """Run one plotting child; cancelling this coroutine kills it and removes its temp files."""
    job.tmp_dir.mkdir(parents=True, exist_ok=True)
    argv = [sys.executable, "-m", "tensorage.proofs.plot_child", "--tmp", str(job.tmp_dir), "--final", str(job.final_dir),
            "--filename", job.filename, "--k", str(job.k), "--id", job.plot_id.hex(), "--threads", str(job.threads)]
    if job.verify:
        argv.append("--verify")
    started = time.monotonic()
    proc = await asyncio.create_subprocess_exec(
        *argv, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
        env=child_env(),
    )
    tail: list[str] = []
    result: dict = {}
    try:
        assert proc.stdout is not None
        async for raw in proc.stdout:
            line = raw.decode(errors="replace").strip()
            if line.startswith("Progress update:"):
                with contextlib.suppress(ValueError):
                    on_progress(min(1.0, float(line.split(":", 1)[1])))
            elif line.startswith(RESULT_PREFIX):
                result = json.loads(line[len(RESULT_PREFIX):])
            elif line:
                tail = (tail + [line])[-12:]
                if any(mark in line for mark in STALLED):
                    raise PlotStalled(stalled_message(job, line))
        rc = await proc.wait()
    except BaseException:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        with contextlib.suppress(Exception):
            await asyncio.shield(proc.wait())
        remove_partial(job)
        raise
    shutil.rmtree(job.tmp_dir, ignore_errors=True)
    if rc != 0 or "bytes" not in result:
        if job.final_path.exists() and "error" in result:
            job.final_path.unlink()
        reason = result.get("error") or (" | ".join(tail[-3:]) if tail else f"exit code {rc}")
        raise PlotError(f"plotting k={job.k} {job.filename} failed: {reason}")
    on_progress(1.0)
    return PlotResult(path=job.final_path, bytes=int(result["bytes"]), seconds=time.monotonic() - started,
                      proofs_checked=int(result.get("proofs", 0)), verified=job.verify)


class PlotStalled(PlotError):
    """chiapos could not write or read its files and went to sleep to retry: the plot is stopped."""


def stalled_message(job: PlotJob, line: str) -> str:
    try:
        free = shutil.disk_usage(job.tmp_root).free
    except OSError:
        free = -1
    said = line.split(". Retrying")[0][:300]
    if 0 <= free < 1 << 20:
        return (f"plotting k={job.k} {job.filename} stopped: the disk is full ({free} bytes free; chiapos: {said}); "
                f"free some disk space or lower --size_in_gb, then run again")
    return (f"plotting k={job.k} {job.filename} stopped: chiapos could not write or read its files ({said}); "
            f"check the disk, then run again")


def remove_partial(job: PlotJob) -> None:
    shutil.rmtree(job.tmp_dir, ignore_errors=True)


