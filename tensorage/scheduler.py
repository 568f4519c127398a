"""APScheduler wiring: every periodic job has an id, a next run, a last result.

Jobs run on the event loop (``AsyncIOScheduler``) with ``max_instances=1`` and
coalescing, so a slow proof round never stacks. Heavy work inside a job goes to
process pools. The console reads :meth:`Jobs.state` and calls run_now/pause/resume.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Awaitable, Callable, Optional

from apscheduler.schedulers.asyncio import AsyncIOScheduler

from .events import ErrorEvent, EventBus, JobRan

log = logging.getLogger(__name__)

JobFunc = Callable[[], Awaitable[Any]]


@dataclass
class JobInfo:
    id: str
    seconds: float
    next_run: Optional[float]  # unix time; None when paused
    paused: bool
    runs: int
    last_ok: Optional[bool]
    last_result: str
    last_duration_s: Optional[float]
    last_run_at: Optional[float]
    running: bool


@dataclass
class _JobStats:
    seconds: float
    runs: int = 0
    last_ok: Optional[bool] = None
    last_result: str = ""
    last_duration_s: Optional[float] = None
    last_run_at: Optional[float] = None
    running: bool = False


class Jobs:
    def __init__(self, bus: EventBus, source: str = "") -> None:
        self.bus = bus
        self.source = source
        self.scheduler = AsyncIOScheduler(job_defaults={"max_instances": 1, "coalesce": True,
                                                        "misfire_grace_time": None})
        self._stats: dict[str, _JobStats] = {}
        self._funcs: dict[str, JobFunc] = {}

    def add(self, job_id: str, func: JobFunc, seconds: float, first_in: Optional[float] = 0.0) -> None:
        """Run ``func`` every ``seconds``; the first run ``first_in`` seconds from now (None: after one period)."""
        self._stats[job_id] = _JobStats(seconds=seconds)
        self._funcs[job_id] = func
        first = datetime.now() + timedelta(seconds=seconds if first_in is None else first_in)
        self.scheduler.add_job(self._runner(job_id), "interval", seconds=seconds, id=job_id, name=job_id,
                               next_run_time=first)

    def _runner(self, job_id: str) -> Callable[[], Awaitable[None]]:
        async def run() -> None:
            stats = self._stats[job_id]
            stats.running = True
            started = time.monotonic()
            stats.last_run_at = time.time()
            try:
                result = await self._funcs[job_id]()
                stats.last_ok, stats.last_result = True, "" if result is None else str(result)
            except asyncio.CancelledError:
                stats.last_ok, stats.last_result = False, "cancelled"
                raise
            except Exception as exc:  # a job's failure is reported, never fatal
                stats.last_ok, stats.last_result = False, f"{type(exc).__name__}: {exc}"
                log.debug("job %s failed", job_id, exc_info=True)
                self.bus.publish(ErrorEvent(message=f"job {job_id} failed: {exc}", source=self.source))
            finally:
                stats.running = False
                stats.runs += 1
                stats.last_duration_s = time.monotonic() - started
                self.bus.publish(JobRan(job_id=job_id, ok=bool(stats.last_ok), duration_s=stats.last_duration_s,
                                        result=stats.last_result, source=self.source))

        return run

    def start(self) -> None:
        if not self.scheduler.running:
            self.scheduler.start()

    def shutdown(self) -> None:
        if self.scheduler.running:
            self.scheduler.shutdown(wait=False)

    def run_now(self, job_id: str) -> None:
        job = self.scheduler.get_job(job_id)
        if job is None:
            raise KeyError(job_id)
        if job.next_run_time is None:  # paused: run once, stay paused
            asyncio.get_running_loop().create_task(self._runner(job_id)())
        else:
            job.modify(next_run_time=datetime.now(job.next_run_time.tzinfo))

    def has(self, job_id: str) -> bool:
        return job_id in self._funcs

    def reschedule(self, job_id: str, at: float) -> None:
        """Move a job's next run to unix time ``at`` (its period then counts from there)."""
        job = self.scheduler.get_job(job_id)
        if job is not None and job.next_run_time is not None:  # a paused job stays paused
            job.modify(next_run_time=datetime.fromtimestamp(at, job.next_run_time.tzinfo))

    def pause(self, job_id: str) -> None:
        self.scheduler.pause_job(job_id)

    def resume(self, job_id: str) -> None:
        self.scheduler.resume_job(job_id)

    def state(self) -> list[JobInfo]:
        out = []
        for job in self.scheduler.get_jobs():
            st = self._stats.get(job.id)
            if st is None:
                continue
            nrt = job.next_run_time
            out.append(JobInfo(id=job.id, seconds=st.seconds, next_run=nrt.timestamp() if nrt else None,
                               paused=nrt is None, runs=st.runs, last_ok=st.last_ok, last_result=st.last_result,
                               last_duration_s=st.last_duration_s, last_run_at=st.last_run_at, running=st.running))
        return sorted(out, key=lambda j: j.id)
