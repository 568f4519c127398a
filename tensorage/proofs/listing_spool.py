"""A validator's listings kept in files, read by index: what bounds its memory at the limits.

A validator follows every miner's listing (up to 256 miners of 65,536 plots and 16,384
certificates: 2.2 MB + 2.5 MB of canonical bytes each, and it keeps a few snapshots per miner), but
a window reads ~200 plot entries and a few certificates of one snapshot. So the bytes live in one
file per snapshot under the validator's index, written by the verify worker that checked them, and
a :class:`SpooledListing` holds only the file's name, digest and counts (a few hundred bytes):
entries are read with ``os.pread`` when a sample draws them, through the page cache, never into
the process's own memory.

A file belongs to exactly one live :class:`SpooledListing` in the process (its name carries a
random token), and is removed when that object is collected, so nothing has to track which miner
or database row still needs it. The database row keeps :meth:`SpooledListing.stored`, a small
reference; after a restart the file is opened again and its digest checked, and a missing or
damaged file only means the listing is fetched afresh. :func:`sweep` removes files that no live
listing owns (left by a crash), once they are old enough not to be one a worker just wrote.
"""

from __future__ import annotations

import os
import secrets
import struct
import threading
import time
import weakref
from pathlib import Path
from typing import Callable, Iterable, Iterator, Sequence

from .certificates import ENTRY_BYTES as CERT_BYTES
from .listing import ENTRY_BYTES, Listing, ListingError, ListingReader, listing_digest

SUFFIX = ".listing"
# A stored reference: magic, plot count, certificate count, digest, file name. The magic's first four
# bytes read as a plot count of over 4 billion, so no stored listing of bytes (Listing.stored) can be
# taken for a reference.
_REF_MAGIC = b"\xffTSL\x01ref"
_REF = struct.Struct(">II32s")
SWEEP_AGE_S = 600.0

_lock = threading.Lock()
_owners: dict[str, int] = {}  # file path -> live SpooledListing objects that own it


class ListingUnavailable(ListingError):
    """A spooled listing's file is gone or damaged: the miner's listing is fetched again at the next sync."""


def _release(path: str) -> None:
    with _lock:
        left = _owners.get(path, 0) - 1
        if left > 0:
            _owners[path] = left
            return
        _owners.pop(path, None)
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


class SpooledListing(ListingReader):
    """A listing whose canonical bytes are a file (plots, then certificates); entries are read by index."""

    def __init__(self, path: Path | str, digest: bytes, plots: int, certs: int, own: bool = True) -> None:
        self.path = str(path)
        self.digest = digest
        self._plots = plots
        self._certs = certs
        if own:
            self.own()

    def own(self) -> "SpooledListing":
        """Make this object the file's owner in this process: the file goes when the object does.
        (Not done in the verify worker that wrote it, whose copy is collected right after it is sent.)"""
        if "_finalizer" not in self.__dict__:
            with _lock:
                _owners[self.path] = _owners.get(self.path, 0) + 1
            finalizer = weakref.finalize(self, _release, self.path)
            finalizer.atexit = False  # the file outlives the process: a restart opens it again
            self._finalizer = finalizer
        return self

    def __reduce__(self):
        return SpooledListing, (self.path, self.digest, self._plots, self._certs, False)

    def __repr__(self) -> str:
        return f"SpooledListing({self.digest_hex[:16]}…, {self._plots} plots, {self._certs} certificates)"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ListingReader) and other.digest == self.digest

    def __hash__(self) -> int:
        return hash(self.digest)

    # reading -------------------------------------------------------------------------------
    def __len__(self) -> int:
        return self._plots

    @property
    def cert_count(self) -> int:
        return self._certs

    @property
    def size(self) -> int:
        return self._plots * ENTRY_BYTES + self._certs * CERT_BYTES

    def _preads(self, spans: Iterable[tuple[int, int]]) -> Iterator[bytes]:
        try:
            fd = os.open(self.path, os.O_RDONLY)
        except FileNotFoundError:
            raise ListingUnavailable(f"listing file {self.path} is gone: the miner's listing is fetched again at "
                                     f"the next sync") from None
        try:
            for offset, size in spans:
                raw = os.pread(fd, size, offset)
                if len(raw) != size:
                    raise ListingUnavailable(f"listing file {self.path} is truncated: the miner's listing is fetched "
                                             f"again at the next sync")
                yield raw
        finally:
            os.close(fd)

    def _read(self, offset: int, size: int) -> bytes:
        return next(self._preads([(offset, size)])) if size else b""

    def _plot_bytes(self, offset: int, size: int) -> bytes:
        return self._read(offset, size)

    def _cert_bytes(self, offset: int, size: int) -> bytes:
        return self._read(self._plots * ENTRY_BYTES + offset, size)

    def entries_at(self, indices: Sequence[int]) -> list[tuple[bytes, int]]:
        """One open for the whole sample."""
        return [(raw[1:], raw[0]) for raw in self._preads((i * ENTRY_BYTES, ENTRY_BYTES) for i in indices)]

    @property
    def blob(self) -> bytes:
        """Every plot entry, read whole (tests and tools; a window never needs it)."""
        return self._read(0, self._plots * ENTRY_BYTES)

    @property
    def certs(self) -> bytes:
        return self._read(self._plots * ENTRY_BYTES, self._certs * CERT_BYTES)

    def in_memory(self) -> Listing:
        return Listing(self.blob, self.certs)

    # storing -------------------------------------------------------------------------------
    def stored(self) -> bytes:
        """What a database row keeps: a reference to the file, not the bytes."""
        return _REF_MAGIC + _REF.pack(self._plots, self._certs, self.digest) + os.path.basename(self.path).encode()


def is_reference(data: bytes) -> bool:
    return data.startswith(_REF_MAGIC)


def write(root: Path | str, listing: Listing) -> SpooledListing:
    """Spool a checked listing (in the verify worker): temp file, then rename, so a reader never
    sees half of one. Not fsynced: the file is a copy of what the miner serves, its digest is checked
    when it is opened after a restart, and a lost one is fetched again."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    path = root / f"{listing.digest_hex[:16]}-{secrets.token_hex(6)}{SUFFIX}"
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        f.write(listing.blob)
        f.write(listing.certs)
    os.replace(tmp, path)
    return SpooledListing(path, listing.digest, len(listing), listing.cert_count, own=False)


def open_stored(root: Path | str, data: bytes, max_plots: int, max_shards: int, own: bool = True) -> SpooledListing:
    """A listing from its database reference; the file's size and digest are checked (its canonical
    form was checked before it was written). ``own``: this process's object owns the file from now
    on (the validator's own restore; a reader of another process's state passes False)."""
    if not is_reference(data):
        raise ListingError("not a spooled listing reference")
    head = len(_REF_MAGIC)
    try:
        plots, certs, digest = _REF.unpack_from(data, head)
        name = data[head + _REF.size:].decode()
    except (struct.error, UnicodeDecodeError):
        raise ListingUnavailable("stored listing reference is damaged") from None
    if plots > max_plots or certs > max_shards:
        raise ListingError(f"stored listing has {plots} plots and {certs} certificates, over this network's limits")
    if os.path.basename(name) != name or not name.endswith(SUFFIX):
        raise ListingUnavailable(f"stored listing reference names {name!r}, not a listing file")
    listing = SpooledListing(Path(root) / name, digest, plots, certs, own=False)
    try:
        on_disk = os.stat(listing.path).st_size
    except FileNotFoundError:
        raise ListingUnavailable(f"listing file {listing.path} is gone") from None
    if on_disk != listing.size:
        raise ListingUnavailable(f"listing file {listing.path} is {on_disk} bytes, not {listing.size}")
    chunk = 1 << 20
    spans = ((off, min(chunk, listing.size - off)) for off in range(0, listing.size, chunk))
    if listing_digest(plots, listing._preads(spans)) != digest:
        raise ListingUnavailable(f"listing file {listing.path} does not match its digest")
    return listing.own() if own else listing


def read_stored(data: bytes, max_plots: int, max_shards: int, root: Path | str) -> Listing:
    """A database row's listing in memory, whatever form the row has (a reference to a file under
    ``root``, or bytes). Never owns the file: for tools, tests and other processes reading a
    validator's state while it runs."""
    if not is_reference(data):
        return Listing.from_stored(data, max_plots, max_shards)
    listing = open_stored(root, data, max_plots, max_shards, own=False)
    return Listing(listing.blob, listing.certs)


def remove_old(root: Path | str, min_age_s: float, keep: Callable[[str], bool] = lambda path: False) -> int:
    """Remove the files under ``root`` older than ``min_age_s`` that ``keep`` does not claim (a
    spool's leftovers; younger files may be in use). Returns files removed."""
    try:
        names = os.listdir(root)
    except FileNotFoundError:
        return 0
    now = time.time()
    removed = 0
    for name in names:
        path = str(Path(root) / name)
        if keep(path):
            continue
        try:
            if now - os.stat(path).st_mtime >= min_age_s:
                os.unlink(path)
                removed += 1
        except FileNotFoundError:
            pass
    return removed


def sweep(root: Path | str, min_age_s: float = SWEEP_AGE_S) -> int:
    """Remove listing files no live listing of this process owns, older than ``min_age_s`` (younger
    ones may be a worker's, not yet handed over). Returns files removed."""
    with _lock:
        owned = set(_owners)
    return remove_old(root, min_age_s, lambda path: path in owned or not (
        path.endswith(SUFFIX) or path.endswith(SUFFIX + ".tmp")))


def owned_files() -> int:
    """Listing files owned by live objects in this process (tests, benchmarks)."""
    with _lock:
        return len(_owners)
