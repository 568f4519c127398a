"""Build one plot in a child process and stream its progress.

chiapos prints progress on the C++ stdout and holds the GIL, so each plot is a
child process (``python -m tensorage.proofs.plotter``): its stdout is a pipe the
parent reads line by line ("Progress update: 0.42"), killing it cancels the plot,
and it dies with its parent. Its temp files live in ``tmp/<seed>/`` so a half-made
plot is removed with one directory.

The child prints one JSON line at the end: the plot's size and, unless verification
is disabled, how many sample proofs it checked.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import signal
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

from ..errors import PlotError

RESULT_PREFIX = "TENSORAGE-RESULT "
VERIFY_TARGET_PROOFS = 3
VERIFY_MAX_CHALLENGES = 48


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


def verify_plot(path: Path, plot_id: bytes, k: int) -> int:
    """Sample-challenge a fresh plot; returns valid proofs found or raises PlotError.

    Asks derived challenges until a few proofs came back (P(no proof in 48 challenges)
    ~ e^-42 for an honest plot) and checks each with the stateless verifier.
    """
    from . import chia
    from .challenges import derive

    header_id, header_k = chia.plot_header(path)
    if header_id != plot_id or header_k != k:
        raise PlotError(f"{path.name}: header says k={header_k} id={header_id.hex()[:12]}, expected k={k} "
                        f"id={plot_id.hex()[:12]}; the plot belongs to another hotkey or is corrupt — remove it")
    prover = chia.open_prover(path)
    found = 0
    for j in range(VERIFY_MAX_CHALLENGES):
        challenge = derive(b"tensorage/verify", plot_id, j)
        for proof in chia.full_proofs(prover, challenge):
            if not chia.verify(plot_id, k, challenge, proof):
                raise PlotError(f"{path.name}: the plot returned an invalid proof; it is corrupt — it will be replotted")
            found += 1
        if found >= VERIFY_TARGET_PROOFS:
            return found
    if found == 0:
        raise PlotError(f"{path.name}: no proof in {VERIFY_MAX_CHALLENGES} challenges; the plot is corrupt")
    return found


def _die_with_parent() -> None:
    """Linux: get SIGKILL when the parent dies, so a killed allocator leaves no plotter behind."""
    with contextlib.suppress(Exception):
        import ctypes

        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
        if os.getppid() == 1:
            os._exit(1)


def main(argv: Optional[list[str]] = None) -> int:
    _die_with_parent()
    p = argparse.ArgumentParser(prog="python -m tensorage.proofs.plotter")
    p.add_argument("--tmp", required=True, type=Path)
    p.add_argument("--final", required=True, type=Path)
    p.add_argument("--filename", required=True)
    p.add_argument("--k", required=True, type=int)
    p.add_argument("--id", required=True)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--verify", action="store_true")
    a = p.parse_args(argv)
    from . import chia

    plot_id = bytes.fromhex(a.id)
    started = time.monotonic()
    a.tmp.mkdir(parents=True, exist_ok=True)
    chia.create_plot(a.tmp, a.final, a.filename, a.k, plot_id, a.threads)
    seconds = time.monotonic() - started
    final = a.final / a.filename
    proofs = 0
    if a.verify:
        try:
            proofs = verify_plot(final, plot_id, a.k)
        except PlotError as exc:
            sys.stdout.write(RESULT_PREFIX + json.dumps({"error": str(exc)}) + "\n")
            sys.stdout.flush()
            return 3
    sys.stdout.write(RESULT_PREFIX + json.dumps({"bytes": final.stat().st_size, "seconds": seconds,
                                                 "proofs": proofs}) + "\n")
    sys.stdout.flush()
    return 0


async def run_plot(job: PlotJob, on_progress: Callable[[float], None] = lambda f: None) -> PlotResult:
    """Run one plotting child; cancelling this coroutine kills it and removes its temp files."""
    job.tmp_dir.mkdir(parents=True, exist_ok=True)
    argv = [sys.executable, "-m", "tensorage.proofs.plotter", "--tmp", str(job.tmp_dir), "--final", str(job.final_dir),
            "--filename", job.filename, "--k", str(job.k), "--id", job.plot_id.hex(), "--threads", str(job.threads)]
    if job.verify:
        argv.append("--verify")
    started = time.monotonic()
    proc = await asyncio.create_subprocess_exec(
        *argv, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
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


def remove_partial(job: PlotJob) -> None:
    shutil.rmtree(job.tmp_dir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
