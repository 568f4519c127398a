"""A hard disk you can measure here: a read-only FUSE passthrough with one head and a seek time.

Machines that run the tests have SSDs or RAM, where a chiapos lookup takes milliseconds; a miner's
hard disk takes ~8 ms per random read and a lookup with one full proof is ~77 of them, and a window's
sampled lookups must fit the deadline on the disk that holds them (docs/proofs.md#the-disks-time).
Serving plots through this file system gives chiapos a hard disk's latency: every read that does
not start where the disk's head stopped (the end of the previous read, on the same file) sleeps
``seek_s`` first, and all reads share one lock (one head: concurrent readers queue, as on a real
disk; a read on another file than the last one is a seek too). ``direct_io`` keeps the page cache
from hiding reads; ``ro`` because plots are only read. Sequential transfer time is not emulated (a
few KiB a read: ~20 µs at 200 MB/s, noise next to a seek).

    with EmulatedDisk(plots_dir, mountpoint) as disk:
        ...  # open plots under ``mountpoint``
        print(disk.stats())  # reads, seeks, emulated seconds

Needs libfuse 3 (``apt-get install fuse3``), the PyPI package ``mfusepy`` (the ``test`` extra;
imported lazily, the runtime never needs it) and access to ``/dev/fuse`` (root).
"""

from __future__ import annotations

import errno
import os
import shutil
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

from ..errors import TensorageError

SEEK_S = 0.008  # a 7,200 rpm disk's average seek plus half a rotation: ~120 random reads/s
_READS, _SEEKS, _EMULATED_S, _BYTES = range(4)


class HddfsError(TensorageError):
    """The emulated disk could not be mounted or unmounted."""


class FuseUnavailable(HddfsError):
    """This machine cannot mount FUSE file systems (the message says what to install or change)."""


def fuse_unavailable() -> Optional[str]:
    """Why FUSE cannot be mounted here (with what to do about it), or None when it can."""
    missing = []
    if shutil.which("fusermount3") is None:
        missing.append("fusermount3 not found: `apt-get install fuse3`")
    if not os.path.exists("/dev/fuse"):
        missing.append("/dev/fuse is missing: load the fuse module (`modprobe fuse`) or, in a container, "
                       "pass `--device /dev/fuse --cap-add SYS_ADMIN`")
    elif not os.access("/dev/fuse", os.R_OK | os.W_OK):
        missing.append("/dev/fuse is not readable and writable by this user: run as root")
    try:
        import mfusepy  # noqa: F401  (raises OSError when libfuse itself is missing)
    except ImportError:
        missing.append("the Python package mfusepy is missing: `pip install -e '.[test]'`")
    except OSError as exc:
        missing.append(f"libfuse cannot be loaded ({exc}): `apt-get install fuse3`")
    return "; ".join(missing) or None


def require_fuse() -> None:
    reason = fuse_unavailable()
    if reason:
        raise FuseUnavailable(f"cannot emulate a hard disk with FUSE: {reason}")


@dataclass(frozen=True)
class DiskStats:
    reads: int
    seeks: int
    emulated_s: float  # seconds the head spent seeking (reads queue behind it)
    bytes: int

    def __sub__(self, other: "DiskStats") -> "DiskStats":
        return DiskStats(self.reads - other.reads, self.seeks - other.seeks,
                         self.emulated_s - other.emulated_s, self.bytes - other.bytes)


def _operations(root: str, seek_s: float, counters: Any) -> Any:
    """The mfusepy Operations of one emulated disk (built here: mfusepy is imported lazily)."""
    from mfusepy import FuseOSError, Operations

    class SeekingPassthrough(Operations):
        use_ns = True

        def __init__(self) -> None:
            # Not ``self.lock``: that name is the FUSE lock operation and would shadow it.
            self._head = threading.Lock()
            self._at: tuple[str, int] | None = None  # (file, offset) where the head stopped

        def _full(self, path: str) -> str:
            return os.path.join(root, path.lstrip("/"))

        def getattr(self, path: str, fh: Optional[int] = None) -> dict[str, Any]:
            try:
                st = os.lstat(self._full(path))
            except OSError as exc:
                raise FuseOSError(exc.errno or errno.EIO) from None
            keys = ("st_mode", "st_nlink", "st_uid", "st_gid", "st_size", "st_atime_ns", "st_mtime_ns",
                    "st_ctime_ns", "st_ino")
            out = {k.removesuffix("_ns"): getattr(st, k) for k in keys}
            return out

        def readdir(self, path: str, fh: int) -> list[str]:
            return [".", "..", *os.listdir(self._full(path))]

        def statfs(self, path: str) -> dict[str, Any]:
            sv = os.statvfs(self._full(path))
            return {k: getattr(sv, k) for k in ("f_bavail", "f_bfree", "f_blocks", "f_bsize", "f_favail",
                                                "f_ffree", "f_files", "f_flag", "f_frsize", "f_namemax")}

        def open(self, path: str, flags: int) -> int:
            if flags & (os.O_WRONLY | os.O_RDWR | os.O_APPEND | os.O_TRUNC):
                raise FuseOSError(errno.EROFS)
            return os.open(self._full(path), os.O_RDONLY)

        def read(self, path: str, size: int, offset: int, fh: int) -> bytes:
            with self._head:
                seek = self._at != (path, offset)
                if seek:
                    time.sleep(seek_s)
                data = os.pread(fh, size, offset)
                self._at = (path, offset + len(data))
                counters[_READS] += 1
                counters[_SEEKS] += seek
                counters[_EMULATED_S] += seek_s if seek else 0.0
                counters[_BYTES] += len(data)
            return data

        def release(self, path: str, fh: int) -> int:
            os.close(fh)
            return 0

    return SeekingPassthrough()


def _serve(root: str, mountpoint: str, seek_s: float, counters: Any, errors: Any, parent: int) -> None:
    """The FUSE process: serves until ``fusermount3 -u``; dies with the process that mounted it."""
    from ..procutil import die_with_parent

    die_with_parent(parent)
    try:
        from mfusepy import FUSE

        # libfuse 3.14 prints "Ignoring invalid max threads value 4294967295" here: its own default, harmless
        FUSE(_operations(root, seek_s, counters), mountpoint, foreground=True, ro=True, direct_io=True,
             fsname="hddfs", subtype="hddfs")
    except BaseException as exc:  # the parent reports it (this process has no terminal of its own)
        errors.send(f"{type(exc).__name__}: {exc}")
        raise


def _received(conn: Any) -> Optional[str]:
    try:
        return conn.recv() if conn.poll() else None
    except EOFError:  # the child died before it could say why
        return None


class EmulatedDisk:
    """Mount ``source`` read-only at ``mountpoint`` as one hard disk (see the module docstring).

    A context manager: entering mounts in a child process and waits until the mount is live;
    leaving unmounts with ``fusermount3 -u`` (lazily if readers still hold files open), also when
    the body raised. :meth:`stats` counts reads, seeks and emulated seconds since the mount.
    """

    def __init__(self, source: Path, mountpoint: Path, seek_s: float = SEEK_S, mount_timeout_s: float = 10.0) -> None:
        self.source = Path(source).resolve()
        self.mountpoint = Path(mountpoint)
        self.seek_s = seek_s
        self.mount_timeout_s = mount_timeout_s
        self._proc: Any = None
        self._counters: Any = None

    def __enter__(self) -> "EmulatedDisk":
        self.mount()
        return self

    def __exit__(self, *exc: object) -> None:
        self.unmount()

    def mount(self) -> None:
        import multiprocessing

        require_fuse()
        if not self.source.is_dir():
            raise HddfsError(f"{self.source} is not a directory: pass the directory that holds the plots")
        self.mountpoint.mkdir(parents=True, exist_ok=True)
        if os.path.ismount(self.mountpoint):
            raise HddfsError(f"{self.mountpoint} is already a mount point: `fusermount3 -u {self.mountpoint}` "
                             "or pick another directory")
        ctx = multiprocessing.get_context("spawn")  # a fresh interpreter: no threads or locks inherited
        self._counters = ctx.Array("d", 4, lock=False)
        receive, send = ctx.Pipe(duplex=False)
        self._proc = ctx.Process(target=_serve, name=f"hddfs {self.mountpoint}", daemon=True,
                                 args=(str(self.source), str(self.mountpoint), self.seek_s, self._counters, send,
                                       os.getpid()))
        self._proc.start()
        send.close()
        deadline = time.monotonic() + self.mount_timeout_s
        try:
            while not os.path.ismount(self.mountpoint):
                if not self._proc.is_alive():
                    why = _received(receive) or f"exit code {self._proc.exitcode}"
                    raise HddfsError(f"mounting {self.source} at {self.mountpoint} failed ({why}); "
                                     "FUSE needs root and `apt-get install fuse3`")
                if time.monotonic() > deadline:
                    raise HddfsError(f"{self.mountpoint} was not mounted after {self.mount_timeout_s:.0f} s: "
                                     "is /dev/fuse usable here (root, fuse3 installed)?")
                time.sleep(0.02)
        except BaseException:
            self.unmount()
            raise
        finally:
            receive.close()

    def unmount(self) -> None:
        """Unmount (retrying while readers close their files, then lazily) and stop the FUSE process."""
        proc, self._proc = self._proc, None
        if proc is None:
            return
        try:
            if os.path.ismount(self.mountpoint):
                for _ in range(20):
                    if subprocess.run(["fusermount3", "-u", str(self.mountpoint)], capture_output=True).returncode == 0:
                        break
                    time.sleep(0.05)  # busy: a reader still holds a file open
                else:
                    subprocess.run(["fusermount3", "-u", "-z", str(self.mountpoint)], capture_output=True)
            proc.join(timeout=5)
        finally:
            if proc.is_alive():
                proc.terminate()
                proc.join(timeout=5)
            if os.path.ismount(self.mountpoint):  # the server died under it: clear "not connected"
                subprocess.run(["fusermount3", "-u", "-z", str(self.mountpoint)], capture_output=True)

    def stats(self) -> DiskStats:
        c = self._counters
        if c is None:
            return DiskStats(0, 0, 0.0, 0)
        return DiskStats(int(c[_READS]), int(c[_SEEKS]), float(c[_EMULATED_S]), int(c[_BYTES]))
