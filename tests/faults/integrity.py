"""What "nothing lost, nothing half made" means, checked byte by byte against a node's own indexes.

Each check returns a :class:`Findings`: bytes lost (listed but missing, or bytes that are not what
their name or index says) and leftovers (half-made files that a restart must have removed). The
checks read SQLite read-only and never change a node's files."""

from __future__ import annotations

import hashlib
import sqlite3
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from tensorage.net.objects import is_shard_id
from tensorage.proofs.merkle import MerkleError, tree_of_file
from tensorage.proofs.plots import parse_plot_filename, plot_filename, plot_id
from tensorage.storage.shards import TMP_PREFIX, TREE_SUFFIX

ON_DISK = ("done", "verified")


@dataclass
class Findings:
    lost_bytes: int = 0
    lost: list[str] = field(default_factory=list)
    leftovers: list[str] = field(default_factory=list)

    def lose(self, nbytes: int, what: str) -> None:
        self.lost_bytes += max(1, nbytes)
        self.lost.append(what)

    def merge(self, other: "Findings") -> "Findings":
        self.lost_bytes += other.lost_bytes
        self.lost += other.lost
        self.leftovers += other.leftovers
        return self


def rows(db: Path, sql: str) -> list[tuple]:
    """Read a node's SQLite without writing to it (it may be running, or just killed)."""
    if not db.exists():
        return []
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30)
    try:
        return con.execute(sql).fetchall()
    except sqlite3.OperationalError as exc:
        if "no such table" in str(exc):
            return []
        raise
    finally:
        con.close()


def integrity_ok(db: Path) -> bool:
    return not db.exists() or rows(db, "PRAGMA integrity_check") == [("ok",)]


class PlotWitness:
    """Plots as first seen whole (verified with sample proofs, then hashed): later checks compare
    every listed plot's bytes with that digest, so a plot damaged by a later fault counts as lost."""

    def __init__(self, hotkey: str) -> None:
        self.hotkey = hotkey
        self.digests: dict[str, str] = {}

    def check(self, root: Path) -> Findings:
        from tensorage.proofs.chia import plot_header
        from tensorage.proofs.plot_check import verify_plot

        out = Findings()
        plots = root / "plots"
        db = root / "index" / "miner.sqlite"
        if not integrity_ok(db):
            out.lose(1, f"{db} fails PRAGMA integrity_check")
            return out
        listed = {seed: (k, size) for seed, k, size in rows(db, "SELECT seed, k, bytes FROM plots WHERE state IN "
                                                                 "('done', 'verified')")}
        for seed, (k, size) in listed.items():
            path = plots / plot_filename(k, bytes.fromhex(seed))
            if not path.exists():
                out.lose(size, f"listed plot {path.name} is missing")
                continue
            if path.stat().st_size != size:
                out.lose(size, f"{path.name} holds {path.stat().st_size} bytes, the index says {size}")
                continue
            digest = hashlib.blake2b(path.read_bytes(), digest_size=16).hexdigest()
            seen = self.digests.get(path.name)
            if seen is None:
                try:
                    header_id, header_k = plot_header(path)
                    verify_plot(path, plot_id(self.hotkey, bytes.fromhex(seed)), k)
                except Exception as exc:  # noqa: BLE001 - any failure to read is a lost plot
                    out.lose(size, f"listed plot {path.name} is not readable: {exc}")
                    continue
                if header_id != plot_id(self.hotkey, bytes.fromhex(seed)) or header_k != k:
                    out.lose(size, f"{path.name}'s header is not this miner's k={k} plot")
                    continue
                self.digests[path.name] = digest
            elif seen != digest:
                out.lose(size, f"{path.name}'s bytes changed since it was first seen whole")
        for path in plots.iterdir() if plots.exists() else ():
            if path.is_dir():
                if path.name == "tmp":
                    out.leftovers += [f"plots/tmp/{p.name}" for p in path.iterdir()]
                continue
            parsed = parse_plot_filename(path.name)
            if parsed is None or parsed[1].hex() not in listed:
                out.leftovers.append(f"plots/{path.name}")
        return out


def check_shards(root: Path, miner: Optional[str] = None) -> Findings:
    """Every shard a validator's index lists is here with its size, its bytes' Merkle id is its name,
    its tree is beside it, its certificate (given the ``miner``'s hotkey) is the placing gateway's
    signature over that shard, size and miner; no temp file or unindexed shard."""
    out = Findings()
    shards = root / "shards"
    live: dict[str, int] = {}
    for db in sorted((root / "index").glob("validator-*.sqlite")):
        if not integrity_ok(db):
            out.lose(1, f"{db.name} fails PRAGMA integrity_check")
            continue
        gateway = db.name[len("validator-"):-len(".sqlite")]
        for shard_id, size, cert in rows(db, "SELECT id, size, cert FROM shards"):
            live[shard_id] = int(size)
            if miner is not None and cert is not None:
                problem = certificate_problem(bytes(cert), shard_id, int(size), miner, gateway)
                if problem:
                    out.lose(int(size), f"shard {shard_id[:16]}: {problem}")
    for shard_id, size in live.items():
        path = shards / shard_id
        if not path.exists() or not (shards / f"{shard_id}{TREE_SUFFIX}").exists():
            out.lose(size, f"indexed shard {shard_id[:16]} or its tree is missing")
            continue
        try:
            tree = tree_of_file(path)
        except (OSError, MerkleError) as exc:
            out.lose(size, f"shard {shard_id[:16]} unreadable: {exc}")
            continue
        if tree.id_hex != shard_id or tree.size != size:
            out.lose(size, f"shard {shard_id[:16]} holds other bytes (Merkle id {tree.id_hex[:16]}, {tree.size} B)")
    for entry in shards.iterdir() if shards.exists() else ():
        name = entry.name.removesuffix(TREE_SUFFIX)
        if entry.name.startswith(TMP_PREFIX) or (is_shard_id(name) and name not in live):
            out.leftovers.append(f"shards/{entry.name}")
    return out


def certificate_problem(entry: bytes, shard_id: str, size: int, miner: str, gateway: str) -> str:
    from tensorage.proofs.certificates import Certificate, CertificateError, _verify, ss58_of
    from tensorage.proofs.plots import hotkey_public_key

    try:
        cert = Certificate.from_entry(entry)
    except CertificateError as exc:
        return f"its certificate does not parse ({exc})"
    if cert.shard.hex() != shard_id or cert.size != size or ss58_of(cert.gateway) != gateway:
        return "its certificate names another shard, size or gateway"
    if not _verify(entry, hotkey_public_key(miner)):
        return "its certificate's signature does not verify"
    return ""


def temp_files(root: Path) -> list[str]:
    """Half-made files anywhere under a node's root (what a restart must clean or resume)."""
    names = []
    for p in root.rglob("*"):
        n = p.name
        if n.startswith(TMP_PREFIX) or n.endswith(".tmp") or n.endswith(".2.tmp") or ".write-test-" in n:
            names.append(str(p.relative_to(root)))
    return names
