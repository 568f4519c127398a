"""Parse and verify what miners send, in worker processes, never on the event loop.

chiapos' verifier and ``json.loads`` hold the GIL, so a thread would still stall the
validator's loop (its health endpoint, other miners' answers arriving). Each item is
checked on its own inside the worker: a hostile answer or listing can only fail itself,
and its cost is bounded by the size the caller allowed it before it got here.

Memory does not grow with the miners followed nor with the answers of a window:

* a checked listing is written to a file by the worker (:mod:`tensorage.proofs.listing_spool`)
  and comes back as a reference; the validator reads entries from it by index;
* an answer can be streamed to a spool file as it arrives (:meth:`VerifyPool.answer_sink`) and
  checked at once (:meth:`VerifyPool.submit`): the worker reads the file, so no copy of it is
  buffered in the validator or pickled to the worker, whatever the number of miners.

Failures are kept apart. What a miner sent that is wrong is a refusal (``ListingCheck.error``,
``AnswerCheck.error``). A failure of the verifier itself (a worker that died, a timeout, a bug:
any exception) is a :class:`VerifierFault`: for a listing it is raised, never turned into a
refusal (the miner keeps the listings it had; the sync says why); for answers it fails only the
answers the failing work held, each saying so, after the rest of its batch is checked again one
by one, so one answer that crashes a worker cannot take a window's other miners with it.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import logging
import os
import secrets
import threading
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Union

from .. import PROTOCOL_VERSION
from ..errors import TensorageError
from ..procutil import child_pool
from . import listing_spool
from .answers import AnswerCheck, AnswerSpec, check_answer
from .listing import Listing, ListingError, ListingReader
from .plots import hotkey_public_key

log = logging.getLogger(__name__)

WORK_TIMEOUT_S = 120.0
ANSWERS_PER_TASK = 32
WORKER_NICENESS = 5


class VerifierFault(TensorageError):
    """The validator's verifier failed (a worker died, timed out, or hit a bug): nothing is known about
    what the miner sent, so it is neither refused nor credited. Look at the validator's log for the
    cause; the item is checked again at the next sync or window."""


@dataclass
class ListingCheck:
    listing: Optional[ListingReader] = None
    error: Optional[str] = None     # refused whole: the reason, for the operator
    refused: str = ""               # entries that cannot count (k out of range)
    credited_bytes: int = 0


LISTING_KEYS = {"protocol", "hotkey", "digest", "plots", "shards"}


def check_listing(raw: bytes, hotkey: str, min_k: int, max_k: int, max_plots: int,
                  max_shards: int = 0, spool: Optional[str] = None) -> ListingCheck:
    """A miner's ``GET /v1/plots`` answer: envelope, hotkey, canonical entries, every
    certificate's signature (for this miner), digest. With ``spool``, an accepted listing is written
    there and returned as a :class:`~tensorage.proofs.listing_spool.SpooledListing` (a reference)."""
    try:
        body = json.loads(raw)
    except (ValueError, RecursionError) as exc:
        return ListingCheck(error=f"plot list is not JSON ({str(exc)[:80]})")
    if not isinstance(body, dict) or set(body) != LISTING_KEYS:
        return ListingCheck(error=f"plot list must be an object with exactly {', '.join(sorted(LISTING_KEYS))}")
    if body["protocol"] != PROTOCOL_VERSION:
        return ListingCheck(error=f"miner speaks protocol {body['protocol']!r}, this validator {PROTOCOL_VERSION}: "
                                  f"upgrade the older side")
    if body["hotkey"] != hotkey:
        return ListingCheck(error=f"miner says it is {str(body['hotkey'])[:60]!r}, the chain says {hotkey}")
    if not all(isinstance(body[key], str) for key in ("plots", "shards", "digest")):
        return ListingCheck(error="plots and shards must be base64 strings and digest a hex string")
    digest = body["digest"]
    try:
        listing = Listing.from_b64(body["plots"], max_plots, body["shards"], max_shards)
    except ListingError as exc:
        return ListingCheck(error=str(exc))
    del body, raw  # the worker keeps one copy of the entries, not three
    if digest != listing.digest_hex:
        return ListingCheck(error="the listing's digest does not match its entries")
    miner_key = hotkey_public_key(hotkey)
    forged = next((c for c in listing.iter_certificates() if not c.valid_for(miner_key)), None)
    if forged is not None:
        return ListingCheck(error=f"the certificate of shard {forged.shard_hex[:16]}… is not signed by its gateway "
                                  f"for this miner")
    refused, credited = listing.out_of_range(min_k, max_k), listing.credited_bytes(min_k, max_k)
    return ListingCheck(listing=listing_spool.write(spool, listing) if spool else listing, refused=refused,
                        credited_bytes=credited)


def _could_not_check(spec: AnswerSpec, why: str) -> AnswerCheck:
    return AnswerCheck(valid=[0] * len(spec.plots), error=why, chunks=[False] * len(spec.chunks), fault=True)


def check_answers(batch: list[tuple[bytes, AnswerSpec]]) -> list[AnswerCheck]:
    out = []
    for raw, spec in batch:
        try:
            out.append(check_answer(raw, spec))
        except Exception as exc:  # a checker bug must not take the batch's other miners with it
            log.exception("verifier bug on the answer of %s", spec.hotkey)
            out.append(_could_not_check(spec, f"the validator could not check this answer ({type(exc).__name__}: "
                                              f"{str(exc)[:120]}): not counted; see the validator's log"))
    return out


def check_answer_file(path: str, spec: AnswerSpec) -> AnswerCheck:
    """An answer the validator streamed to a file as it arrived: read here, in the worker (the
    validator never holds it whole nor pickles it)."""
    with open(path, "rb") as f:
        raw = f.read()
    return check_answers([(raw, spec)])[0]


def check_answer_bytes(raw: bytes, spec: AnswerSpec) -> AnswerCheck:
    return check_answers([(raw, spec)])[0]


def _warm() -> int:
    """Run once in each new worker, so the first window it checks does not pay for loading chiapos
    (imported for its side effect: the module loads the native verifier) or the sr25519 code."""
    from . import chia  # noqa: F401

    hotkey_public_key("5GrwvaEF5zXb26Fz9rcQpDWS57CtERHpNehXCPcNoHGKutQY")
    return os.getpid()


class AnswerSink:
    """Where one answer's bytes go as they arrive: a spool file, so a window's answers are never held
    in the validator's memory (a miner may send up to its answer's bound; 256 miners may at once).
    If the spool cannot be written (a full disk), the answer is kept in memory instead: the
    validator's disk is never the miner's failure."""

    def __init__(self, root: Path) -> None:
        root.mkdir(parents=True, exist_ok=True)
        self.path = root / f"answer-{secrets.token_hex(8)}.json"
        self._file = open(self.path, "wb")
        self.size = 0
        self.memory: Optional[bytearray] = None  # the answer, when the spool failed

    def write(self, chunk: bytes) -> None:
        self.size += len(chunk)
        if self.memory is None:
            try:
                self._file.write(chunk)
                return
            except OSError as exc:
                log.error("answer spool %s cannot be written (%s): this answer is kept in memory", self.path, exc)
                self.memory = bytearray(self._spilled())
        self.memory += chunk

    def _spilled(self) -> bytes:
        """What reached the file before it failed."""
        try:
            self._file.close()
        except OSError:
            pass
        try:
            with open(self.path, "rb") as f:
                return f.read()
        except OSError:
            return b""

    def close(self) -> str:
        if self.memory is None:
            try:
                self._file.close()
            except OSError as exc:  # the last bytes could not be flushed
                log.error("answer spool %s cannot be written (%s): this answer is kept in memory", self.path, exc)
                self.memory = bytearray()
        return str(self.path)

    def discard(self) -> None:
        try:
            self._file.close()
        except OSError:
            pass
        _unlink(str(self.path))


def _unlink(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


class AnswerInFlight:
    """An answer handed to the verifier as soon as it arrived (its check runs while other miners'
    answers still arrive). :meth:`VerifyPool.answers` takes it in place of the answer's bytes and
    waits for its check instead of sending it again."""

    def __init__(self, future: "concurrent.futures.Future[AnswerCheck]", path: str, size: int,
                 pool: Optional[ProcessPoolExecutor] = None, raw: Optional[bytes] = None) -> None:
        self.future = future
        self.path = path
        self.size = size
        self.pool = pool  # the pool it was submitted to (to replace it if it broke, and only it)
        self.raw = raw    # the answer itself when the spool could not hold it

    def __len__(self) -> int:
        return self.size


Answer = Union[bytes, AnswerInFlight]


class VerifyPool:
    """The validator's verifier: worker processes, and (with ``spool``) the directory its listings and
    in-flight answers live in, so neither is held in the validator's memory."""

    def __init__(self, workers: Optional[int] = None, spool: Optional[Path] = None) -> None:
        self.workers = workers or max(1, min(4, (os.cpu_count() or 2) - 1))
        self.spool = spool  # listings and answers in files under it (None: in memory, as tests use it)
        self._pool: Optional[ProcessPoolExecutor] = None
        self._lock = threading.Lock()  # answers are submitted from the peer loop's thread too
        self.faults = 0  # verifier failures seen (a bug or a dead worker), for the operator and tests
        self.in_flight = 0  # listings and answers submitted and not checked yet (the verifier's queue, for metrics)

    @property
    def pool(self) -> ProcessPoolExecutor:
        with self._lock:
            if self._pool is None:
                # Answers are checked while others still arrive: the validator's loops, which read them
                # against the window's deadline, go first when the CPU is short.
                self._pool = child_pool(self.workers, niceness=WORKER_NICENESS)
            return self._pool

    @property
    def listing_dir(self) -> Optional[Path]:
        return None if self.spool is None else self.spool / "listings"

    @property
    def answer_dir(self) -> Optional[Path]:
        return None if self.spool is None else self.spool / "answers"

    def _broken(self, pool: Optional[ProcessPoolExecutor]) -> None:
        """A dead worker: the next call starts a fresh pool (unless another call already did)."""
        with self._lock:
            if pool is not None and self._pool is pool:
                self._pool = None
        if pool is not None:
            pool.shutdown(wait=False, cancel_futures=True)

    async def _run(self, func, *args):
        loop = asyncio.get_running_loop()
        pool = self.pool
        self._queued(1)
        try:
            return await asyncio.wait_for(loop.run_in_executor(pool, func, *args), WORK_TIMEOUT_S)
        except BrokenProcessPool:
            self._broken(pool)
            raise
        finally:
            self._queued(-1)

    def _queued(self, change: int) -> None:
        with self._lock:
            self.in_flight += change

    async def warm(self) -> None:
        """Start the workers and pay their imports (chiapos, the ss58 decoder) before a round does."""
        loop = asyncio.get_running_loop()
        await asyncio.gather(*(loop.run_in_executor(self.pool, _warm) for _ in range(self.workers)))

    def _fault(self, what: str, exc: BaseException) -> str:
        self.faults += 1
        why = f"{type(exc).__name__}: {str(exc)[:200]}" if str(exc) else type(exc).__name__
        log.error("verifier fault on %s: %s", what, why, exc_info=not isinstance(exc, (BrokenProcessPool,
                                                                                        TimeoutError)))
        return why

    # listings ------------------------------------------------------------------------------
    async def listing(self, raw: bytes, hotkey: str, min_k: int, max_k: int, max_plots: int,
                      max_shards: int = 0) -> ListingCheck:
        """The listing checked: accepted (spooled when this pool has a spool) or refused with the
        miner's fault. Raises :class:`VerifierFault` when the verifier itself failed (a pool broken by
        another item is tried once more on a fresh one): a bug never becomes a refusal."""
        spool = None if self.listing_dir is None else str(self.listing_dir)
        for attempt in (1, 2):
            try:
                check = await self._run(check_listing, raw, hotkey, min_k, max_k, max_plots, max_shards, spool)
                break
            except BrokenProcessPool as exc:
                if attempt == 2:
                    raise VerifierFault(f"the verifier died twice checking the plot list of {hotkey} "
                                        f"({self._fault('a listing', exc)}): it is checked again at the next sync; "
                                        f"the validator's log says more") from exc
            except Exception as exc:  # a timeout or a bug: the verifier's failure, never the miner's
                raise VerifierFault(f"the verifier could not check the plot list of {hotkey} "
                                    f"({self._fault('a listing', exc)}): not refused, checked again at the next "
                                    f"sync; the validator's log says more") from exc
        if isinstance(check.listing, listing_spool.SpooledListing):
            check.listing.own()  # from now on the file lives as long as this object
        return check

    # answers -------------------------------------------------------------------------------
    def answer_sink(self) -> Optional[AnswerSink]:
        """A file to stream one answer into as it arrives (None without a spool, or when the spool
        cannot be written: the answer is then read into memory as before)."""
        if self.answer_dir is None:
            return None
        try:
            return AnswerSink(self.answer_dir)
        except OSError as exc:
            log.error("answer spool %s cannot be written (%s): answers are kept in memory", self.answer_dir, exc)
            return None

    def submit(self, sink: AnswerSink, spec: AnswerSpec) -> AnswerInFlight:
        """Start checking a streamed answer now (callable from any thread or loop)."""
        path = sink.close()
        raw = None if sink.memory is None else bytes(sink.memory)
        if raw is not None:
            _unlink(path)
        pool = None
        try:
            pool = self.pool
            future = (pool.submit(check_answer_file, path, spec) if raw is None else
                      pool.submit(check_answer_bytes, raw, spec))
            self._queued(1)
            future.add_done_callback(lambda _: self._queued(-1))
        except Exception as exc:  # a pool shut down under us: the check fails now and is retried alone later
            future = concurrent.futures.Future()
            future.set_exception(exc)
        return AnswerInFlight(future, path, sink.size, pool, raw)

    async def answers(self, items: list[tuple[Answer, AnswerSpec]]) -> list[AnswerCheck]:
        """Check many answers, in batches spread over the workers; one result per item, in order.

        Items already in flight (:class:`AnswerInFlight`) are waited for. Work that fails (any
        exception but a timeout) has its answers checked again one at a time, after the rest, so
        an answer that breaks a worker fails alone and says why; its batch-mates are credited."""
        out: list[Optional[AnswerCheck]] = [None] * len(items)
        retry: list[int] = []
        loop = asyncio.get_running_loop()
        raw = [i for i, (body, _) in enumerate(items) if not isinstance(body, AnswerInFlight)]
        batches = [raw[i:i + ANSWERS_PER_TASK] for i in range(0, len(raw), ANSWERS_PER_TASK)]

        async def batch(idx: list[int]) -> None:
            try:
                checks = await self._run(check_answers, [items[i] for i in idx])
            except TimeoutError as exc:
                why = self._fault(f"{len(idx)} answers", exc)
                for i in idx:
                    out[i] = _could_not_check(items[i][1], f"the validator could not check this answer in "
                                                           f"{WORK_TIMEOUT_S:.0f}s ({why}): not counted")
                return
            except Exception as exc:
                self._fault(f"a batch of {len(idx)} answers (each is checked again alone)", exc)
                retry.extend(idx)
                return
            for i, check in zip(idx, checks):
                out[i] = check

        async def in_flight(i: int) -> None:
            handle = items[i][0]
            assert isinstance(handle, AnswerInFlight)
            try:
                out[i] = await asyncio.wait_for(asyncio.wrap_future(handle.future, loop=loop), WORK_TIMEOUT_S)
            except TimeoutError as exc:
                out[i] = _could_not_check(items[i][1], f"the validator could not check this answer in "
                                                       f"{WORK_TIMEOUT_S:.0f}s ({self._fault('an answer', exc)}): "
                                                       f"not counted")
            except asyncio.CancelledError:
                if not handle.future.cancelled():
                    raise  # this round itself is being cancelled
                retry.append(i)  # its pool was shut down under it (another answer broke it): checked again alone
            except Exception as exc:
                if isinstance(exc, BrokenProcessPool):
                    self._broken(handle.pool)
                self._fault("an answer in flight (checked again alone)", exc)
                retry.append(i)

        try:
            await asyncio.gather(*(batch(b) for b in batches),
                                 *(in_flight(i) for i, (body, _) in enumerate(items) if isinstance(body, AnswerInFlight)))
            for i in sorted(retry):  # one at a time: whatever fails now failed on its own
                out[i] = await self._alone(*items[i])
        finally:
            for body, _ in items:
                if isinstance(body, AnswerInFlight):
                    _unlink(body.path)
        return [check if check is not None else _could_not_check(spec, "not checked") for check, (_, spec)
                in zip(out, items)]

    async def _alone(self, body: Answer, spec: AnswerSpec) -> AnswerCheck:
        try:
            if isinstance(body, AnswerInFlight):
                if body.raw is not None:
                    return await self._run(check_answer_bytes, body.raw, spec)
                return await self._run(check_answer_file, body.path, spec)
            return (await self._run(check_answers, [(body, spec)]))[0]
        except Exception as exc:
            why = self._fault(f"the answer of {spec.hotkey}", exc)
            return _could_not_check(spec, f"the validator's verifier failed on this answer ({why}): not counted; "
                                          f"the validator's log says more")

    def sweep(self, min_age_s: float = listing_spool.SWEEP_AGE_S) -> int:
        """Remove spool files nothing in this process holds any more (a crash's leftovers): listing
        files no live listing owns, and answer files older than ``min_age_s`` (a window's are removed
        once checked). Returns files removed."""
        if self.spool is None:
            return 0
        return listing_spool.sweep(self.listing_dir, min_age_s) + listing_spool.remove_old(self.answer_dir, min_age_s)

    def close(self) -> None:
        with self._lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=False, cancel_futures=True)
