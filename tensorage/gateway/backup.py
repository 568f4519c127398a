"""Custody: the gateway's manifest and wrapping secret are the only way back to its clients' bytes.

``tensorage gateway backup DEST`` copies both into one file (a tar: ``gateway.sqlite`` taken with
SQLite's online backup, so a running validator keeps running; ``gateway.secret``; ``backup.json``
with what is in it). ``tensorage gateway restore SRC`` puts them back under a stopped validator's
root; what was there is moved aside (``*.pre-restore-<time>``), never deleted. The file holds the
secret: it is written 0600 and must be kept like a coldkey.
"""

from __future__ import annotations

import io
import json
import sqlite3
import stat
import tarfile
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from .. import checks
from ..errors import ConfigError, CorruptIndex, DiskError
from ..storage.files import atomic_write, fsync_dir
from ..storage.layout import Layout
from ..storage.lock import NodeLock
from ..storage.wrap import SECRET_BYTES, SECRET_FILE

MANIFEST_FILE = "gateway.sqlite"
ABOUT_FILE = "backup.json"
FORMAT = 1


@dataclass(frozen=True)
class BackupSummary:
    path: Path
    objects: int
    shards: int
    bytes: int


def _counts(db_path: Path) -> tuple[int, int]:
    con = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True)
    try:
        objects = con.execute("SELECT COUNT(*) FROM objects WHERE state IN ('stored', 'damaged')").fetchone()[0]
        shards = con.execute("SELECT COUNT(*) FROM shards WHERE state != 'doomed'").fetchone()[0]
        return int(objects), int(shards)
    except sqlite3.DatabaseError as exc:
        raise CorruptIndex(f"{db_path} is not a gateway manifest ({exc})") from None
    finally:
        con.close()


def backup(layout: Layout, dest: Path) -> BackupSummary:
    """Write the manifest and the secret to ``dest`` (one file, 0600). Safe while the validator runs."""
    manifest, secret = layout.index / MANIFEST_FILE, layout.index / SECRET_FILE
    if not manifest.exists() or not secret.exists():
        raise ConfigError(f"{layout.root} holds no gateway ({MANIFEST_FILE} and {SECRET_FILE} under index/): check "
                          f"--db_root_path (or --wallet.name on the devnet)")
    dest = Path(dest).expanduser()
    if dest.exists() and dest.is_dir():
        dest = dest / f"tensorage-gateway-{time.strftime('%Y%m%d-%H%M%S')}.tar"
    if not dest.parent.is_dir():
        raise DiskError(f"cannot write {dest}: {dest.parent} is not a directory; give a file in an existing "
                        f"directory, or the directory")
    checks.writable_target(dest.parent)  # /proc, a read-only disk: one line, before the copy is made
    with tempfile.TemporaryDirectory(prefix=".gateway-backup-", dir=dest.parent) as tmp:
        copy = Path(tmp) / MANIFEST_FILE
        src = sqlite3.connect(f"file:{manifest}?mode=ro", uri=True)
        out = sqlite3.connect(copy)
        try:
            src.backup(out)  # a consistent copy while the validator writes
        finally:
            out.close()
            src.close()
        objects, shards = _counts(copy)
        about = {"format": FORMAT, "made_at": time.time(), "root": str(layout.root), "objects": objects,
                 "shards": shards}
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w") as tar:
            tar.add(copy, arcname=MANIFEST_FILE)
            tar.add(secret, arcname=SECRET_FILE)
            data = json.dumps(about, indent=2).encode()
            info = tarfile.TarInfo(ABOUT_FILE)
            info.size, info.mtime = len(data), int(time.time())
            tar.addfile(info, io.BytesIO(data))
    blob = buf.getvalue()
    atomic_write(dest, blob, mode=0o600)
    return BackupSummary(path=dest, objects=objects, shards=shards, bytes=len(blob))


def restore(layout: Layout, src: Path) -> BackupSummary:
    """Put a backup's manifest and secret under ``layout`` (the validator must be stopped). What was
    there is moved aside, not deleted."""
    src = Path(src).expanduser()
    layout.check_writable_target()  # a file or /proc/x as the root: one line, before anything is read or made
    if not src.is_file():
        raise ConfigError(f"{src} is not a file: give the path `tensorage gateway backup` wrote")
    try:
        with tarfile.open(src, mode="r") as tar:
            members = {m.name: m for m in tar.getmembers() if m.isfile()}
            if not {MANIFEST_FILE, SECRET_FILE, ABOUT_FILE} <= set(members):
                raise ConfigError(f"{src} is not a tensorage gateway backup (it lacks {MANIFEST_FILE}, {SECRET_FILE} "
                                  f"or {ABOUT_FILE})")
            manifest = tar.extractfile(members[MANIFEST_FILE]).read()  # type: ignore[union-attr]
            secret = tar.extractfile(members[SECRET_FILE]).read()  # type: ignore[union-attr]
            about = json.loads(tar.extractfile(members[ABOUT_FILE]).read())  # type: ignore[union-attr]
    except tarfile.TarError:
        raise ConfigError(f"{src} is not a gateway backup (not a tar file `tensorage gateway backup` wrote): "
                          f"check the file") from None
    except (OSError, ValueError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else " ".join(str(exc).split())
        raise ConfigError(f"{src} cannot be read as a gateway backup ({reason}): check the file") from None
    if about.get("format") != FORMAT:
        raise ConfigError(f"{src} is a backup of format {about.get('format')!r}; this tensorage reads {FORMAT}")
    if len(secret) != SECRET_BYTES:
        raise ConfigError(f"{src} holds a damaged secret ({len(secret)} bytes, not {SECRET_BYTES}): use another backup")
    layout.index.mkdir(parents=True, exist_ok=True)
    lock = NodeLock(layout)
    lock.acquire("restore")  # refuses while the validator runs on this root
    try:
        with tempfile.TemporaryDirectory(prefix=".gateway-restore-", dir=layout.index) as tmp:
            check = Path(tmp) / MANIFEST_FILE
            check.write_bytes(manifest)
            objects, shards = _counts(check)  # a readable manifest before anything is moved
        stamp = time.strftime("%Y%m%d-%H%M%S")
        for name in (MANIFEST_FILE, f"{MANIFEST_FILE}-wal", f"{MANIFEST_FILE}-shm", SECRET_FILE):
            old = layout.index / name
            if old.exists():
                old.rename(old.with_name(f"{name}.pre-restore-{stamp}"))
        atomic_write(layout.index / MANIFEST_FILE, manifest, mode=0o600)
        atomic_write(layout.index / SECRET_FILE, secret, mode=stat.S_IRUSR | stat.S_IWUSR)
        fsync_dir(layout.index)
    finally:
        lock.release()
    return BackupSummary(path=src, objects=objects, shards=shards, bytes=src.stat().st_size)
