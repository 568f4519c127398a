"""The miner's shard store (docs/design.md#client-data): content-addressed files under ``shards/``,
each with its Merkle tree in a sidecar, and one index per placing validator in
``index/validator-<hotkey>.sqlite`` holding the shard's certificate.

A shard's name is its Merkle id (:mod:`tensorage.proofs.merkle`), checked as the bytes arrive, so
a name can never be a path (``..``, ``/``) and a file can never hold other bytes than its name
says. Writes go to temp files, are fsynced and renamed (tree first, then the shard), then the
index row is written: a kill leaves either nothing or a whole shard (a whole shard without a row
is removed at start).

A shard a validator deletes, or whose certificate expired long ago, leaves the next listing at
once but keeps its bytes until no listing this miner still answers for names it
(:meth:`ShardStore.purge`): a window sampled from the previous listing can still be answered.
"""

from __future__ import annotations

import asyncio
import errno
import os
import random
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import AsyncIterator, Iterable, Optional

import peewee as pw

from ..errors import CorruptIndex
from ..net.objects import is_shard_id
from ..net.pace import Pace, TooSlow
from ..proofs.certificates import Certificate, CertificateError
from ..proofs.merkle import MerkleError, ShardTree, leaf_count, read_proof, tree_bytes, tree_of_file
from ..proofs.windows import SampledChunk
from .files import fsync_dir
from .layout import Layout
from .models import open_sqlite
from .streams import HashingFile

TMP_PREFIX = ".tmp-"
DISK_FULL = (errno.ENOSPC, errno.EDQUOT)
TREE_SUFFIX = ".tree"
IDLE_S = 60.0  # an upload that sends nothing for this long is dropped
SS58 = re.compile(r"^[1-9A-HJ-NP-Za-km-z]{40,60}$")
INDEX_GLOB = "validator-*.sqlite"
INDEX_VERSION = 3  # 3: Merkle ids, sidecar trees, certificates (protocol 3)


class ShardRefused(Exception):
    """A shard request that cannot be honoured; ``status`` and ``code`` for the HTTP answer."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


def _shard_model(db: pw.Database) -> type[pw.Model]:
    class Shard(pw.Model):
        id = pw.FixedCharField(max_length=64, primary_key=True)
        size = pw.BigIntegerField()
        stored_at = pw.FloatField(default=time.time)
        cert = pw.BlobField(null=True)         # the placing gateway's latest certificate (listing entry bytes)
        expiry = pw.IntegerField(default=0)    # its expiry block
        deleted_at = pw.FloatField(null=True)  # left the listing; the bytes go once no answered listing names it

        class Meta:
            database = db
            table_name = "shards"

    return Shard


class ShardIndex:
    """Shards one validator placed here, with their certificates."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.db = open_sqlite(path, "shard index of this validator")
        self.Shard = _shard_model(self.db)
        try:
            with self.db.atomic():
                version = self.db.execute_sql("PRAGMA user_version").fetchone()[0]
                if version < INDEX_VERSION and "shards" in self.db.get_tables():
                    # protocol 2 named shards by sha256 and kept no certificate: its rows cannot be
                    # proven in windows; the files are kept under their old names until the gateway
                    # places them again (the store removes files no index names)
                    self.db.execute_sql('ALTER TABLE "shards" RENAME TO "shards_v2"')
                self.db.create_tables([self.Shard])
                self.db.execute_sql('CREATE TABLE IF NOT EXISTS "legacy" (sha256 TEXT PRIMARY KEY, id TEXT NOT NULL)')
                self.db.execute_sql(f"PRAGMA user_version = {INDEX_VERSION}")
        except pw.DatabaseError as exc:
            raise CorruptIndex(f"{path} cannot be used ({exc}): move it aside and restart") from None

    def row(self, shard_id: str):
        return self.Shard.get_or_none((self.Shard.id == shard_id) & self.Shard.deleted_at.is_null())

    def has(self, shard_id: str) -> bool:
        return self.row(shard_id) is not None

    def add(self, shard_id: str, size: int, cert: Optional[Certificate]) -> None:
        with self.db.atomic():
            self.Shard.insert(id=shard_id, size=size, stored_at=time.time(), cert=cert.entry() if cert else None,
                              expiry=cert.expiry if cert else 0, deleted_at=None).on_conflict_replace().execute()

    def set_certificate(self, cert: Certificate) -> bool:
        """Keep the newer of the stored and the given certificate; True when it changed."""
        with self.db.atomic():
            return self.Shard.update(cert=cert.entry(), expiry=cert.expiry).where(
                (self.Shard.id == cert.shard_hex) & self.Shard.deleted_at.is_null()
                & ((self.Shard.expiry < cert.expiry) | self.Shard.cert.is_null()
                   | ((self.Shard.expiry == cert.expiry) & (self.Shard.cert != cert.entry())))).execute() > 0

    def mark_deleted(self, shard_ids: Iterable[str]) -> int:
        ids = list(shard_ids)
        if not ids:
            return 0
        with self.db.atomic():
            return self.Shard.update(deleted_at=time.time()).where(
                self.Shard.id.in_(ids) & self.Shard.deleted_at.is_null()).execute()

    def expired(self, before_block: int) -> list[str]:
        return [r.id for r in self.Shard.select(self.Shard.id).where(
            self.Shard.deleted_at.is_null() & self.Shard.cert.is_null(False) & (self.Shard.expiry < before_block))]

    def forget(self, shard_ids: Iterable[str]) -> None:
        ids = list(shard_ids)
        if ids:
            with self.db.atomic():
                self.Shard.delete().where(self.Shard.id.in_(ids)).execute()

    def live(self) -> list:
        return list(self.Shard.select().where(self.Shard.deleted_at.is_null()))

    def certified(self) -> int:
        return int(self.Shard.select(pw.fn.COUNT(self.Shard.id)).where(
            self.Shard.deleted_at.is_null() & self.Shard.cert.is_null(False)).scalar() or 0)

    def occupancy(self) -> "Occupancy":
        live = self.Shard.deleted_at.is_null()
        row = self.Shard.select(pw.fn.COUNT(self.Shard.id), pw.fn.COALESCE(pw.fn.SUM(self.Shard.size), 0),
                                pw.fn.COALESCE(pw.fn.SUM(pw.Case(None, [(live, 1)], 0)), 0),
                                pw.fn.COALESCE(pw.fn.SUM(pw.Case(None, [(live, self.Shard.size)], 0)), 0)
                                ).scalar(as_tuple=True)
        return Occupancy(shards=int(row[2]), bytes=int(row[3]), all_shards=int(row[0]), all_bytes=int(row[1]))

    def deleted_bytes(self) -> int:
        return int(self.Shard.select(pw.fn.COALESCE(pw.fn.SUM(self.Shard.size), 0)).where(
            self.Shard.deleted_at.is_null(False)).scalar() or 0)

    def deleted(self) -> list[str]:
        return [r.id for r in self.Shard.select(self.Shard.id).where(self.Shard.deleted_at.is_null(False))]

    def ids(self) -> list[str]:
        return [r.id for r in self.Shard.select(self.Shard.id)]

    def legacy(self) -> list[tuple[str, int]]:
        """(sha256 name, size) of shards a protocol-2 gateway placed, not migrated yet."""
        if "shards_v2" not in self.db.get_tables():
            return []
        return [(str(i), int(s)) for i, s in self.db.execute_sql('SELECT id, size FROM "shards_v2"').fetchall()]

    def adopt_legacy(self, sha: str, size: int, shard_id: str) -> None:
        """A protocol-2 shard now under its Merkle id (no certificate until its gateway gives one)."""
        with self.db.atomic():
            self.Shard.insert(id=shard_id, size=size, stored_at=time.time(), cert=None, expiry=0,
                              deleted_at=None).on_conflict_ignore().execute()
            self.db.execute_sql('INSERT OR REPLACE INTO "legacy" (sha256, id) VALUES (?, ?)', (sha, shard_id))

    def drop_legacy(self, sha: str) -> None:
        with self.db.atomic():
            self.db.execute_sql('DELETE FROM "shards_v2" WHERE id = ?', (sha,))

    def migrated(self, sha: str) -> Optional[str]:
        """The Merkle id a protocol-2 shard was migrated to."""
        row = self.db.execute_sql('SELECT id FROM "legacy" WHERE sha256 = ?', (sha,)).fetchone()
        return str(row[0]) if row else None

    def stats(self) -> tuple[int, int]:
        row = self.Shard.select(pw.fn.COUNT(self.Shard.id), pw.fn.COALESCE(pw.fn.SUM(self.Shard.size), 0)).where(
            self.Shard.deleted_at.is_null()).scalar(as_tuple=True)
        return int(row[0]), int(row[1])

    def close(self) -> None:
        self.db.close()


@dataclass
class ShardCounts:
    files: int
    bytes: int
    validators: dict[str, tuple[int, int]]  # hotkey -> (shards, bytes)
    certified: int = 0                       # shards whose certificate this miner lists


class ShardStore:
    def __init__(self, layout: Layout) -> None:
        self.layout = layout
        self.dir = layout.shards
        self.dir.mkdir(parents=True, exist_ok=True)
        self._indexes: dict[str, ShardIndex] = {}
        for path in sorted(layout.index.glob(INDEX_GLOB)):
            hotkey = path.name[len("validator-"):-len(".sqlite")]
            if SS58.fullmatch(hotkey):
                self._indexes[hotkey] = ShardIndex(path)
        self.reserved = 0
        self.inflight: set[str] = set()
        self.migrate_legacy()
        self.used_bytes = self._recover()
        self.generation = 0  # bumped whenever what the listing would carry changes

    def _recover(self) -> int:
        """Remove half-written temp files and whole shards (and trees) no validator indexes (a kill
        between rename and index row); count the rest."""
        indexed: set[str] = set()
        for index in self._indexes.values():
            indexed.update(index.ids())
            indexed.update(i for i, _ in index.legacy())
        used = 0
        for entry in os.scandir(self.dir):
            name = entry.name.removesuffix(TREE_SUFFIX)
            if entry.name.startswith(TMP_PREFIX) or (is_shard_id(name) and name not in indexed):
                os.unlink(entry.path)
            elif is_shard_id(name):
                used += entry.stat().st_size
        return used

    def migrate_legacy(self) -> int:
        """Protocol 2 named shards by sha256 and kept no tree: each one still here is hashed once more,
        given its tree and renamed to its Merkle id (blocking, once, at start). Its gateway finds it
        again by the old name (``GET /v1/shards/legacy/{sha256}``) and certifies it. Order makes a kill
        safe: tree, then the index rows, then the rename, then the old row goes."""
        moved = 0
        for index in self._indexes.values():
            for sha, size in index.legacy():
                old = self.dir / sha
                done = index.migrated(sha)
                if done is not None and not old.exists():
                    index.drop_legacy(sha)
                    continue
                try:
                    tree = tree_of_file(old)
                except (OSError, MerkleError):
                    continue  # gone or unreadable: its gateway finds that out and repairs
                if tree.size != size:
                    continue
                tmp = self.dir / f"{TMP_PREFIX}{sha[:16]}.tree"
                tmp.unlink(missing_ok=True)
                _write_synced(tmp, tree.encode())
                os.replace(tmp, self.tree_path(tree.id_hex))
                index.adopt_legacy(sha, size, tree.id_hex)
                os.replace(old, self.path(tree.id_hex))
                fsync_dir(self.dir)
                index.drop_legacy(sha)
                moved += 1
        return moved

    def migrated(self, validator: str, sha: str) -> Optional[tuple[str, int]]:
        """(Merkle id, size) a protocol-2 shard of this validator's was migrated to, if it is held."""
        index = self.index(validator)
        shard_id = index.migrated(sha) if index is not None and is_shard_id(sha) else None
        row = index.row(shard_id) if shard_id else None
        return (shard_id, int(row.size)) if row is not None else None

    # lookups -----------------------------------------------------------------------------
    def index(self, validator: str, create: bool = False) -> Optional[ShardIndex]:
        index = self._indexes.get(validator)
        if index is None and create:
            if not SS58.fullmatch(validator):
                raise ShardRefused(400, "bad_request", "the validator hotkey is not an ss58 address")
            index = self._indexes[validator] = ShardIndex(self.layout.validator_index(validator))
        return index

    def path(self, shard_id: str) -> Path:
        if not is_shard_id(shard_id):
            raise ShardRefused(400, "bad_shard_id", f"{shard_id[:80]!r} is not a shard id: a shard id is the Merkle "
                                                    f"id of its bytes, 64 lowercase hex characters")
        return self.dir / shard_id

    def tree_path(self, shard_id: str) -> Path:
        return self.path(shard_id).with_name(shard_id + TREE_SUFFIX)

    def held_by(self, validator: str, shard_id: str) -> Path:
        """The shard's file if ``validator`` placed it; 403 if only another validator did, else 404."""
        path = self.path(shard_id)
        index = self.index(validator)
        if index is not None and index.has(shard_id):
            return path
        if any(v != validator and i.has(shard_id) for v, i in self._indexes.items()):
            raise ShardRefused(403, "forbidden", f"shard {shard_id[:16]}… was placed by another validator: only the "
                                                 f"validator that placed a shard may read, check or delete it")
        raise ShardRefused(404, "unknown_shard", f"no shard {shard_id[:16]}… placed by you is held here: check the "
                                                 f"id, or the miner lost it")

    def counts(self) -> ShardCounts:
        """Shards and bytes per validator (a copy of the index map is walked: a metrics scrape calls
        this from a thread while the loop may add a validator's index)."""
        per = {v: i.stats() for v, i in list(self._indexes.items())}
        return ShardCounts(files=sum(c for c, _ in per.values()), bytes=self.used_bytes, validators=per,
                           certified=self.certified())

    def certified(self) -> int:
        """Shards whose certificate this miner holds (what its listing may carry)."""
        return sum(i.certified() for i in list(self._indexes.values()))

    def leaving_bytes(self) -> int:
        """Bytes of shards that left the listing and are kept only until no answered listing names
        them: they do not count against the share (a store after a removal must not wait for them)."""
        return sum(index.deleted_bytes() for index in self._indexes.values())

    def occupied_by(self, validator: str) -> "Occupancy":
        index = self.index(validator)
        return index.occupancy() if index else Occupancy(0, 0, 0, 0)

    def certificates(self, block: int, require_file: bool = True) -> list[Certificate]:
        """What this miner lists: the certificate of every shard it holds that counts at ``block``
        (one per shard: a shard placed by two validators keeps the later-expiring one)."""
        best: dict[str, Certificate] = {}
        for index in self._indexes.values():
            for row in index.live():
                if row.cert is None or row.expiry < block or (require_file and not self.path(row.id).exists()):
                    continue
                cert = Certificate.from_entry(bytes(row.cert))
                if row.id not in best or best[row.id].expiry < cert.expiry:
                    best[row.id] = cert
        return list(best.values())

    # writes --------------------------------------------------------------------------------
    async def receive(self, validator: str, shard_id: str, size: int, chunks: AsyncIterator[bytes],
                      cert: Optional[Certificate] = None) -> None:
        """Stream a shard in; keep it only if exactly ``size`` bytes whose Merkle id is ``shard_id``
        arrived. The caller reserved room for ``size`` bytes (:attr:`reserved`) and checked ``cert``."""
        final = self.path(shard_id)
        index = self.index(validator, create=True)
        assert index is not None
        tag = f"{TMP_PREFIX}{shard_id[:16]}-{os.urandom(4).hex()}"
        tmp, tmp_tree = self.dir / tag, self.dir / f"{tag}{TREE_SUFFIX}"
        out = HashingFile(tmp)
        try:
            async for chunk in _idle_bounded(chunks, IDLE_S):
                if out.size + len(chunk) > size:
                    raise ShardRefused(400, "too_long", f"more than the declared {size} bytes arrived: send exactly "
                                                        f"the shard's bytes")
                await out.write(chunk)
            if out.size != size:
                raise ShardRefused(400, "too_short", f"{out.size} of the declared {size} bytes arrived: send the "
                                                     f"whole shard")
            digest = await out.finish(sync=True)
            if digest != shard_id:
                raise ShardRefused(422, "hash_mismatch", f"the bytes' Merkle id is {digest[:16]}…, not the shard id "
                                                         f"{shard_id[:16]}…: a shard id is the Merkle id of its bytes")
            tree: ShardTree = out.hasher.finish()
            await asyncio.to_thread(_write_synced, tmp_tree, tree.encode())
            existed = final.exists()
            os.replace(tmp_tree, self.tree_path(shard_id))
            os.replace(tmp, final)
            fsync_dir(self.dir)
            if not existed:
                self.used_bytes += size + len(tree.encode())
            index.add(shard_id, size, cert)
            self.generation += 1
        except BaseException as exc:
            out.discard()
            tmp_tree.unlink(missing_ok=True)
            if isinstance(exc, OSError) and exc.errno in DISK_FULL:
                # the disk filled under the upload (another program, or the free-space check raced):
                # "no room here", so the gateway places it elsewhere, not "this miner is broken"
                raise ShardRefused(507, "disk_full", f"this miner's disk filled up while the shard arrived "
                                                     f"({exc.strerror}); nothing of it was kept: place it on "
                                                     f"another miner") from None
            raise

    def set_certificate(self, validator: str, cert: Certificate, max_expiry: Optional[int] = None) -> bool:
        """Take a renewed certificate: only for a shard this validator placed that is still here, of the
        size it has (a certificate claiming more would fail every window this miner answers), expiring
        no later than ``max_expiry`` (a certificate that never expires could never be shed)."""
        index = self.index(validator)
        row = index.row(cert.shard_hex) if index is not None else None
        if row is None or not self.path(cert.shard_hex).exists():
            raise ShardRefused(404, "unknown_shard", f"no shard {cert.shard_hex[:16]}… placed by you is held here")
        check_terms(cert, int(row.size), max_expiry)
        changed = index.set_certificate(cert)
        self.generation += changed
        return changed

    def delete(self, validator: str, shard_id: str) -> None:
        """Take a shard out of the listing for this validator; its bytes go at the next purge that
        no answered listing stops."""
        self.held_by(validator, shard_id)
        index = self.index(validator)
        assert index is not None
        self.generation += index.mark_deleted([shard_id])

    def expire(self, block: int, grace: int) -> int:
        """Shards whose certificate expired more than ``grace`` blocks ago leave the listing (their
        gateway stopped renewing them: the object is gone, or the gateway left)."""
        dropped = sum(index.mark_deleted(index.expired(block - grace)) for index in self._indexes.values())
        self.generation += dropped
        return dropped

    def purge(self, keep: set[str]) -> int:
        """Remove the bytes of deleted shards no answered listing names (``keep``: ids in them)."""
        live = {i for index in self._indexes.values() for i in (r.id for r in index.live())}
        removed = 0
        for index in self._indexes.values():
            gone = [s for s in index.deleted() if s not in keep]
            index.forget(gone)
            for shard_id in gone:
                if shard_id not in live and not any(i.has(shard_id) for i in self._indexes.values()):
                    removed += self._unlink(shard_id)
        return removed

    def _unlink(self, shard_id: str) -> int:
        freed = 0
        for p in (self.path(shard_id), self.tree_path(shard_id)):
            try:
                freed += p.stat().st_size
                p.unlink()
            except FileNotFoundError:
                pass
        self.used_bytes = max(0, self.used_bytes - freed)
        return 1 if freed else 0

    # proofs ---------------------------------------------------------------------------------
    def read_proofs(self, chunks: list[SampledChunk]) -> list[Optional[bytes]]:
        """A window's chunks with their paths (blocking: a thread). None for a chunk this miner
        cannot produce (the shard or its tree is gone or damaged): the window then fails, which
        is what it should."""
        out: list[Optional[bytes]] = []
        trees: dict[bytes, Optional[ShardTree]] = {}
        for c in chunks:
            if c.shard not in trees:
                trees[c.shard] = self._tree(c.shard.hex(), c.size)
            tree = trees[c.shard]
            out.append(self._proof(c.shard.hex(), tree, c.index) if tree is not None else None)
        return out

    def prove(self, validator: str, shard_id: str, indices: list[int],
              leaves: bool = False) -> Optional[tuple[list[Optional[bytes]], Optional[bytes]]]:
        """A re-check from the placing validator: the chunks with their paths (and every leaf hash,
        when asked), or None when the shard is not held for it (blocking)."""
        index = self.index(validator)
        row = index.row(shard_id) if index is not None and is_shard_id(shard_id) else None
        if row is None:
            return None
        tree = self._tree(shard_id, row.size)
        proofs = [self._proof(shard_id, tree, i) if tree is not None and 0 <= i < leaf_count(row.size) else None
                  for i in indices]
        return proofs, (b"".join(tree.levels[0]) if leaves and tree is not None else None)

    def _tree(self, shard_id: str, size: int) -> Optional[ShardTree]:
        """The sidecar in one read (its length is known from the size): one seek on a hard disk."""
        try:
            fd = os.open(self.tree_path(shard_id), os.O_RDONLY)
            try:
                data = os.pread(fd, tree_bytes(size), 0)
            finally:
                os.close(fd)
            tree = ShardTree.decode(data, bytes.fromhex(shard_id))
        except (OSError, MerkleError):
            return None
        return tree if tree.size == size else None

    def _proof(self, shard_id: str, tree: ShardTree, index: int) -> Optional[bytes]:
        try:
            fd = os.open(self.path(shard_id), os.O_RDONLY)
        except OSError:
            return None
        try:
            return read_proof(fd, tree, index)
        except (OSError, MerkleError):
            return None
        finally:
            os.close(fd)

    def scrub(self, limit: int = 8) -> list[str]:
        """Re-hash up to ``limit`` shards against their ids; a damaged one (or one with a damaged
        tree) leaves the listing and its files go: it is reported lost, not served (blocking)."""
        bad = []
        names = [e.name for e in os.scandir(self.dir) if is_shard_id(e.name)]
        for name in random.sample(names, min(limit, len(names))):
            try:
                tree = tree_of_file(self.path(name))
                ShardTree.decode(self.tree_path(name).read_bytes(), tree.id)
                ok = tree.id.hex() == name
            except FileNotFoundError:
                continue
            except (OSError, MerkleError):
                ok = False
            if not ok:
                bad.append(name)
                self.generation += 1
                for index in self._indexes.values():
                    index.mark_deleted([name])
                    index.forget([name])
                self._unlink(name)
        return bad

    def close(self) -> None:
        for index in self._indexes.values():
            index.close()
        self._indexes.clear()


@dataclass(frozen=True)
class Occupancy:
    """What one validator's shards take here: the live ones, and all of them with those it deleted
    that are kept until no answered listing names them."""
    shards: int
    bytes: int
    all_shards: int
    all_bytes: int


def check_terms(cert: Certificate, size: int, max_expiry: Optional[int]) -> None:
    if cert.size != size:
        raise ShardRefused(400, "bad_certificate", f"the certificate says shard {cert.shard_hex[:16]}… has {cert.size} "
                                                   f"bytes; it has {size}")
    if max_expiry is not None and cert.expiry > max_expiry:
        raise ShardRefused(400, "bad_certificate", f"the certificate expires at block {cert.expiry}, past the "
                                                   f"{max_expiry} this network's certificate life allows: sign it for "
                                                   f"cert_lifetime_blocks from now")


def parse_certificate(text: str, miner_key: bytes, gateway_key: bytes, shard_id: str, size: int,
                      max_expiry: Optional[int] = None) -> Certificate:
    """A certificate a gateway hands over: for this miner, this shard and size, signed by the
    caller, expiring no later than ``max_expiry``. Raises ShardRefused with what is wrong."""
    try:
        cert = Certificate.from_hex(text)
    except CertificateError as exc:
        raise ShardRefused(400, "bad_certificate", f"{exc}: send the certificate as the gateway signed it") from None
    if cert.shard_hex != shard_id or cert.size != size:
        raise ShardRefused(400, "bad_certificate", f"the certificate is for shard {cert.shard_hex[:16]}… of "
                                                   f"{cert.size} bytes, not {shard_id[:16]}… of {size}")
    if cert.gateway != gateway_key:
        raise ShardRefused(403, "bad_certificate", "the certificate is signed by another gateway than the caller")
    check_terms(cert, size, max_expiry)
    if not cert.valid_for(miner_key):
        raise ShardRefused(403, "bad_certificate", "the certificate's signature does not verify for this miner: sign "
                                                   "it with your hotkey for this miner's hotkey")
    return cert


def _write_synced(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        os.fsync(fd)
    finally:
        os.close(fd)


async def _idle_bounded(chunks: AsyncIterator[bytes], seconds: float) -> AsyncIterator[bytes]:
    """The chunks, as long as they keep up with the floor rate (net/pace.py) and none is ``seconds`` late."""
    it, pace = chunks.__aiter__(), Pace(seconds)
    while True:
        try:
            chunk = await pace.read(1, it.__anext__())
        except StopAsyncIteration:
            return
        except TooSlow as exc:
            raise ShardRefused(408, "too_slow", str(exc)) from None
        pace.got(len(chunk))
        yield chunk
