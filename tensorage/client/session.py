"""A client's objects for a program that stays up (the console): one wallet, one key file and one
gateway connection (found as `tensorage store` finds them, :mod:`.connect`) reused across
operations. Stores and retrieves run as tasks on the caller's event loop and report on the bus as
:class:`~tensorage.events.ClientTransfer` events (start, progress a few times a second, end), so a
console renders them like any engine's events; errors are the client's own, operator-actionable
messages. Nothing here draws or blocks the loop: file checks are plain functions callers run in
a thread, and the client does its byte work in threads.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Awaitable, Callable, Optional, TypeVar

from ..chain.port import Neuron
from ..config import Settings
from ..errors import TensorageError
from ..events import ClientTransfer, EventBus, LogEvent
from ..net.objects import DEFAULT_K, DEFAULT_N, is_object_id
from .connect import client_settings, connect_client, key_path
from .errors import ClientError, GatewayError, KeyFileError, OutputError

log = logging.getLogger(__name__)

SOURCE = "client"
PROGRESS_EVERY_S = 0.5  # at most this often a running transfer reports its bytes
RECONNECT_ON = ("unreachable", "timeout")  # the gateway did not answer: look for it again next time

T = TypeVar("T")


@dataclass(frozen=True)
class Objects:
    """One listing of the client's objects on its gateway."""

    objects: list  # api.Listed
    used_bytes: int
    quota_bytes: int
    gateway: Neuron
    sealed: bool  # no key file yet: names and plain sizes stay sealed


# --- what a person types, checked before anything starts (blocking: run in a thread) ---------


def _absolute(text: str) -> Path:
    path = Path(text).expanduser()
    return path if path.is_absolute() else Path.cwd() / path


def input_file(text: str) -> Path:
    """A file to store: it exists, is a regular file and can be read."""
    text = text.strip()
    if not text:
        raise ClientError("no file given: type the path of a file to store")
    path = _absolute(text)
    if not path.exists():
        raise ClientError(f"{path} does not exist: check the path (a relative path starts at {Path.cwd()})")
    if not path.is_file():
        raise ClientError(f"{path} is not a regular file: store files, not directories or devices")
    try:
        with open(path, "rb"):
            pass
    except OSError as exc:
        raise ClientError(f"cannot read {path} ({exc.strerror or exc}): check its owner and permissions") from None
    return path


def output_file(text: str, name: str) -> Path:
    """Where a retrieved object goes: ``name`` in the current directory by default, ``name`` inside
    a directory given, never over an existing file, in a directory that can be written."""
    name = os.path.basename(name) or "object"
    text = text.strip()
    path = _absolute(text) if text else Path.cwd() / name
    if text.endswith(("/", os.sep)) and not path.is_dir():
        raise OutputError(f"{path} is not a directory: create it, or type a file name")
    if path.is_dir():
        path = path / name
    if path.exists() or path.is_symlink():
        raise OutputError(f"{path} already exists: choose another name (nothing is overwritten)")
    parent = path.parent
    if not parent.is_dir():
        raise OutputError(f"{parent} does not exist: create it or choose another directory")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise OutputError(f"cannot write in {parent}: choose another directory")
    return path


def s3_location(listed) -> Optional[tuple[str, str]]:
    """(bucket, key) of an object stored through `tensorage s3` (sealed with it), else None."""
    s3 = (listed.meta or {}).get("s3") if getattr(listed, "meta", None) else None
    if isinstance(s3, dict) and isinstance(s3.get("b"), str) and isinstance(s3.get("k"), str):
        return s3["b"], s3["k"]
    return None


def by_bucket(objects: list) -> list:
    """Objects grouped by S3 bucket (then key); files stored with `tensorage store` first, in the
    gateway's order."""
    return sorted(objects, key=lambda o: s3_location(o) or ("", ""))


def display_name(listed) -> Optional[str]:
    """``bucket/key`` for an object stored through S3, else its file name (None: sealed elsewhere)."""
    where = s3_location(listed)
    return f"{where[0]}/{where[1]}" if where else listed.name


def default_name(listed) -> str:
    """The name a retrieved object gets by default: its stored name, else its id."""
    return os.path.basename(listed.name or "") or listed.id


# --- the session ------------------------------------------------------------------------------


class ClientSession:
    def __init__(self, settings: Settings, bus: EventBus, *, key_file: Optional[Path] = None, k: int = DEFAULT_K,
                 n: int = DEFAULT_N, source: str = SOURCE) -> None:
        self.settings = client_settings(settings)
        self.key_file = key_path(self.settings, key_file)
        self.bus = bus
        self.k, self.n = k, n
        self.source = source
        self._client = None  # api.ObjectClient, bound to the gateway found last
        self._users: dict[int, int] = {}  # id(client) -> operations using it now
        self._retired: list = []  # clients replaced while operations still used them
        self._key = b""
        self._lock: Optional[asyncio.Lock] = None
        self._tasks: dict[str, asyncio.Task] = {}
        self._ids = itertools.count(1)
        self._closed = False

    @property
    def wallet_name(self) -> str:
        return self.settings.wallet.name

    @property
    def gateway(self) -> Optional[Neuron]:
        return self._client.gateway if self._client is not None else None

    # the connection ---------------------------------------------------------------------------
    async def _connection(self):
        if self._closed:
            raise ClientError("the client session is closed")
        if self._lock is None:
            self._lock = asyncio.Lock()
        async with self._lock:
            if self._client is None:
                if not self._key:
                    self._key = await asyncio.to_thread(self._existing_key)
                self._client = await connect_client(self.settings, self._key)
            self._client.key = self._key
            return self._client

    def _existing_key(self) -> bytes:
        """The key if there is one; without it names stay sealed (ids and sizes still list)."""
        from .keyfile import load_key

        try:
            return load_key(self.key_file).key
        except KeyFileError:
            return b""

    async def _retire(self, client) -> None:
        """Stop using ``client`` for new operations; close it once no operation uses it (a listing
        that timed out must not cut off an upload on the same connection)."""
        if self._client is client:
            self._client = None
        if self._users.get(id(client)):
            if client not in self._retired:
                self._retired.append(client)
        else:
            await client.close()

    async def _call(self, op: Callable[[object], Awaitable[T]]) -> T:
        client = await self._connection()
        self._users[id(client)] = self._users.get(id(client), 0) + 1
        try:
            return await op(client)
        except GatewayError as exc:
            if exc.status == 0 and exc.code in RECONNECT_ON:
                await self._retire(client)  # the gateway moved or stopped: find one again next time
            raise
        finally:
            left = self._users[id(client)] - 1
            if left:
                self._users[id(client)] = left
            else:
                del self._users[id(client)]
                if client in self._retired:
                    self._retired.remove(client)
                    await client.close()

    # reading ---------------------------------------------------------------------------------
    async def list(self) -> Objects:
        """The client's objects on its gateway (raises TensorageError: no gateway, refused, ...)."""
        objects, used, quota = await self._call(lambda c: c.list())
        return Objects(objects=objects, used_bytes=used, quota_bytes=quota, gateway=self.gateway,  # type: ignore
                       sealed=not self._key)

    # commands: each returns at once; its ClientTransfer events tell the rest -------------------
    def start_store(self, path: Path) -> str:
        return self._start("store", Path(path).name, self._store, Path(path))

    def start_retrieve(self, object_id: str, out: Path) -> str:
        if not is_object_id(object_id):
            raise ClientError(f"{object_id!r} is not an object id (32 hex characters)")
        return self._start("retrieve", str(out), self._retrieve, object_id, Path(out))

    async def remove(self, object_id: str) -> None:
        await self._call(lambda c: c.remove(object_id))
        self.bus.publish(LogEvent(message=f"removed object {object_id}: the gateway deletes its shards from the "
                                          f"miners", source=self.source))

    def _start(self, op: str, name: str, run, *args) -> str:
        if self._closed:
            raise ClientError("the client session is closed")
        tid = f"{op}-{next(self._ids)}"
        task = asyncio.ensure_future(self._run(tid, op, name, run, *args))
        self._tasks[tid] = task
        task.add_done_callback(lambda _: self._tasks.pop(tid, None))
        return tid

    async def _run(self, tid: str, op: str, name: str, run, *args) -> None:
        started = time.perf_counter()
        report = _Reporter(self.bus, transfer=tid, op=op, name=name, source=self.source)
        report.publish()
        try:
            await run(report, *args)
        except TensorageError as exc:
            report.finish("failed", time.perf_counter() - started, detail=str(exc))
        except asyncio.CancelledError:
            report.finish("failed", time.perf_counter() - started, detail="stopped with the console: nothing was kept")
            raise
        except Exception as exc:  # a bug or an environment problem: say what it was
            log.exception("%s %s failed", op, name)
            report.finish("failed", time.perf_counter() - started, detail=f"{type(exc).__name__}: {exc}")
        else:
            report.finish("done", time.perf_counter() - started)

    async def _store(self, report: "_Reporter", path: Path) -> None:
        from .keyfile import load_or_create_key

        size = await asyncio.to_thread(lambda: path.stat().st_size if path.is_file() else None)
        report.publish(path=str(path), total=size)
        key = await asyncio.to_thread(load_or_create_key, self.key_file)
        if key.created:
            self.bus.publish(LogEvent(message=f"created the key file {key.path}: back it up — without it your "
                                              f"objects cannot be decrypted by anyone", severity="warning",
                                      source=self.source))
        self._key = key.key
        stored = await self._call(lambda c: c.store(path, self.k, self.n, progress=report.progress))
        report.set(object_id=stored.id, total=stored.plain_size, done=stored.plain_size,
                   detail=f"{stored.shards} shards in {stored.segments} segment(s), any {self.k} of {self.n} "
                          f"rebuild it")

    async def _retrieve(self, report: "_Reporter", object_id: str, out: Path) -> None:
        from .keyfile import load_key
        from .sealing import open_meta

        report.set(object_id=object_id, path=str(out))
        self._key = (await asyncio.to_thread(load_key, self.key_file)).key

        def started(entry, target) -> None:
            size = (open_meta(self._key, entry.meta) or {}).get("size")
            report.publish(total=size if isinstance(size, int) else None)

        got = await self._call(lambda c: c.retrieve(object_id, out, progress=report.progress, on_start=started))
        report.set(total=got.plain_size, done=got.plain_size, detail=f"sha256 {got.sha256[:16]}…, every tag checked")

    # lifecycle --------------------------------------------------------------------------------
    async def close(self) -> None:
        """Stop what runs (nothing half-stored stays: the gateway drops unfinished uploads, the
        client removes unfinished output files) and close the connection."""
        self._closed = True
        tasks = [t for t in self._tasks.values() if not t.done()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for client in [self._client, *self._retired]:
            if client is not None:
                await client.close()
        self._client = None
        self._retired.clear()


class _Reporter:
    """One transfer's events: the start, progress at most every PROGRESS_EVERY_S, the end. Each is a
    new event (published events are shared with every subscriber and never change)."""

    def __init__(self, bus: EventBus, **fields) -> None:
        self.bus = bus
        self.fields = fields
        self._last = 0.0

    def set(self, **changes) -> None:
        self.fields.update(changes)

    def publish(self, **changes) -> None:
        self.fields.update(changes)
        self.bus.publish(ClientTransfer(**self.fields))

    def progress(self, done: int) -> None:
        self.fields["done"] = done
        now = time.monotonic()
        if now - self._last >= PROGRESS_EVERY_S:
            self._last = now
            self.publish()

    def finish(self, state: str, seconds: float, detail: str = "") -> None:
        self.publish(state=state, seconds=seconds, detail=detail or self.fields.get("detail", ""))
