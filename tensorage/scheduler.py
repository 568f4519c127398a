"""APScheduler wiring: every periodic job has an id, a next run, a last result.

Jobs run on the event loop (``AsyncIOScheduler``) with ``max_instances=1`` and
coalescing, so a slow proof round never stacks. Heavy work inside a job goes to
process pools. The console reads :meth:`Jobs.state` and calls run_now/pause/resume.

A job that fails on a :class:`ChainError` (the chain errored, stalled or refused) is not left to its
fixed period, which is either far too long (weights every 10 minutes) or a tight loop (a round every
window): its next run moves to 2 s, 4 s, 8 s ... after the failure, capped at a minute, and the
first run that works puts it back on its period. :meth:`Jobs.retry_backed_off` runs them all at once
when the chain is back. APScheduler still drives every run; nothing sleeps in a loop.
"""

from __future__ import annotations

import asyncio
import logging
import time
import traceback
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Awaitable, Callable, Optional

from apscheduler.schedulers.asyncio import AsyncIOScheduler

from .errors import BlockNotYet, ChainError
from .events import ErrorEvent, EventBus, JobRan

log = logging.getLogger(__name__)

JobFunc = Callable[[], Awaitable[Any]]

BACKOFF_FIRST_S = 2.0
BACKOFF_MAX_S = 60.0  # a validator notices a chain that is back within a minute (two 36 s windows)


def backoff_delay(failures: int, first: float = BACKOFF_FIRST_S, cap: float = BACKOFF_MAX_S) -> float:
    """Seconds before retrying after ``failures`` chain failures in a row: first, 2x, 4x ... capped."""
    return min(cap, first * 2 ** max(0, failures - 1))


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
    chain_failures: int = 0  # runs in a row that failed on the chain (0: on its period)
    retry_at: Optional[float] = None  # unix time of the backed-off retry, while backing off
    failures: int = 0  # runs that failed, since the node started
    last_ok_at: Optional[float] = None  # unix time the last run that worked ended


@dataclass
class _JobStats:
    seconds: float
    runs: int = 0
    last_ok: Optional[bool] = None
    last_result: str = ""
    last_duration_s: Optional[float] = None
    last_run_at: Optional[float] = None
    running: bool = False
    chain_failures: int = 0
    retry_at: Optional[float] = None
    failures: int = 0
    last_ok_at: Optional[float] = None


class Jobs:
    def __init__(self, bus: EventBus, source: str = "", backoff_first_s: float = BACKOFF_FIRST_S,
                 backoff_max_s: float = BACKOFF_MAX_S) -> None:
        self.bus = bus
        self.source = source
        self.backoff_first_s = backoff_first_s
        self.backoff_max_s = backoff_max_s
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
                if stats.chain_failures:
                    self.bus.log(f"job {job_id} works again after {stats.chain_failures} chain failure(s): back on "
                                 f"its {stats.seconds:g}s period", source=self.source)
                stats.chain_failures, stats.retry_at = 0, None
                stats.last_ok_at = time.time()
            except asyncio.CancelledError:
                stats.last_ok, stats.last_result = False, "cancelled"
                task = asyncio.current_task()
                if task is not None and task.cancelling():
                    raise  # this run itself is being cancelled (shutdown)
                # work it waited on was cancelled (an engine stopping its allocation): an ending, not a crash
            except ChainError as exc:
                stats.last_ok, stats.last_result = False, f"{type(exc).__name__}: {exc}"
                log.debug("job %s failed on the chain", job_id, exc_info=True)
                self._back_off(job_id, stats, exc)
            except Exception as exc:  # a job's failure is reported, never fatal
                stats.last_ok, stats.last_result = False, f"{type(exc).__name__}: {exc}"
                # the traceback travels with the event: the headless log shows it once, at every level
                self.bus.publish(ErrorEvent(message=f"job {job_id} failed: {exc}",
                                            traceback=traceback.format_exc(), source=self.source))
            finally:
                stats.running = False
                stats.runs += 1
                stats.failures += stats.last_ok is False and stats.last_result != "cancelled"
                stats.last_duration_s = time.monotonic() - started
                self.bus.publish(JobRan(job_id=job_id, ok=bool(stats.last_ok), duration_s=stats.last_duration_s,
                                        result=stats.last_result, source=self.source))

        return run

    def _back_off(self, job_id: str, stats: _JobStats, exc: ChainError) -> None:
        """Move the next run to the backoff delay (a paused job stays paused). BlockNotYet is the
        chain answering "not yet", not a failure to back off from."""
        if isinstance(exc, BlockNotYet):
            self.bus.publish(ErrorEvent(message=f"job {job_id} failed: {exc}", source=self.source))
            return
        stats.chain_failures += 1
        delay = backoff_delay(stats.chain_failures, self.backoff_first_s, self.backoff_max_s)
        job = self.scheduler.get_job(job_id)
        stats.retry_at = None
        if job is not None and job.next_run_time is not None:  # a paused job stays paused: no retry to show
            stats.retry_at = time.time() + delay
            job.modify(next_run_time=datetime.fromtimestamp(stats.retry_at, job.next_run_time.tzinfo))
        self.bus.publish(ErrorEvent(message=f"job {job_id} failed on the chain (attempt {stats.chain_failures}), "
                                            f"retrying in {delay:g}s: {exc}", source=self.source))

    def backing_off(self) -> list[str]:
        """The jobs waiting out a chain backoff."""
        return [j for j, st in self._stats.items() if st.chain_failures]

    def next_retry(self) -> Optional[float]:
        """The soonest backed-off retry (unix time), or None when no job is backing off."""
        return min((st.retry_at for st in self._stats.values() if st.chain_failures and st.retry_at), default=None)

    def retry_backed_off(self) -> list[str]:
        """The chain answers again: run every backed-off job now instead of at its retry time."""
        kicked = []
        for job_id in self.backing_off():
            job = self.scheduler.get_job(job_id)
            if job is not None and job.next_run_time is not None and not self._stats[job_id].running:
                job.modify(next_run_time=datetime.now(job.next_run_time.tzinfo))
                kicked.append(job_id)
        return kicked

    def start(self) -> None:
        if not self.scheduler.running:
            self.scheduler.start()

    def shutdown(self) -> None:
        if self.scheduler.running:
            self.scheduler.shutdown(wait=False)

    def _job(self, job_id: str):
        job = self.scheduler.get_job(job_id)
        if job is None or job_id not in self._stats:
            raise KeyError(job_id)
        return job

    def run_now(self, job_id: str) -> tuple[bool, str]:
        """Run a job once now; a paused job runs once and stays paused. (changed, what happened)."""
        job = self._job(job_id)
        if self._stats[job_id].running:
            return False, f"{job_id} is running already"
        if job.next_run_time is None:  # paused: run once, stay paused
            asyncio.get_running_loop().create_task(self._runner(job_id)())
            return True, f"{job_id}: running once now (stays paused)"
        job.modify(next_run_time=datetime.now(job.next_run_time.tzinfo))
        return True, f"{job_id}: running now"

    def has(self, job_id: str) -> bool:
        return job_id in self._funcs

    def reschedule(self, job_id: str, at: float) -> None:
        """Move a job's next run to unix time ``at`` (its period then counts from there)."""
        job = self.scheduler.get_job(job_id)
        if job is not None and job.next_run_time is not None:  # a paused job stays paused
            job.modify(next_run_time=datetime.fromtimestamp(at, job.next_run_time.tzinfo))

    def pause(self, job_id: str) -> tuple[bool, str]:
        job = self._job(job_id)
        if job.next_run_time is None:
            return False, f"{job_id} is paused already"
        self.scheduler.pause_job(job_id)
        return True, f"{job_id}: paused"

    def resume(self, job_id: str) -> tuple[bool, str]:
        job = self._job(job_id)
        if job.next_run_time is not None:
            return False, f"{job_id} is not paused: nothing to resume"
        self.scheduler.resume_job(job_id)
        return True, f"{job_id}: resumed"

    def state(self) -> list[JobInfo]:
        out = []
        for job in self.scheduler.get_jobs():
            st = self._stats.get(job.id)
            if st is None:
                continue
            nrt = job.next_run_time
            out.append(JobInfo(id=job.id, seconds=st.seconds, next_run=nrt.timestamp() if nrt else None,
                               paused=nrt is None, runs=st.runs, last_ok=st.last_ok, last_result=st.last_result,
                               last_duration_s=st.last_duration_s, last_run_at=st.last_run_at, running=st.running,
                               chain_failures=st.chain_failures, retry_at=st.retry_at, failures=st.failures,
                               last_ok_at=st.last_ok_at))
        return sorted(out, key=lambda j: j.id)
