"""Where everything lives under ``--db_root_path`` (docs/design.md, "Storage layout")."""

from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from .. import checks
from ..checks import existing_parent
from ..errors import DiskError


@dataclass(frozen=True)
class Layout:
    root: Path

    @property
    def plots(self) -> Path:
        return self.root / "plots"

    @property
    def plots_tmp(self) -> Path:
        return self.plots / "tmp"

    @property
    def shards(self) -> Path:
        return self.root / "shards"

    @property
    def spool(self) -> Path:
        """A validator gateway's working files (one segment's shards at a time)."""
        return self.root / "spool"

    @property
    def index(self) -> Path:
        return self.root / "index"

    @property
    def miner_db(self) -> Path:
        return self.index / "miner.sqlite"

    @property
    def validator_state_db(self) -> Path:
        return self.index / "validator.sqlite"

    def validator_index(self, hotkey_ss58: str) -> Path:
        """The miner's index of shards placed by one validator."""
        return self.index / f"validator-{hotkey_ss58}.sqlite"

    def exists(self) -> bool:
        return self.index.is_dir()

    def require_existing(self) -> "Layout":
        """For commands that read a node: refuse a root that was never allocated."""
        if not self.root.exists():
            raise DiskError(f"{self.root} does not exist: run `tensorage allocate --db_root_path {self.root}` first")
        if not self.root.is_dir():
            raise DiskError(f"{self.root} is not a directory: pass the tensorage database directory as --db_root_path")
        if not self.index.is_dir():
            raise DiskError(f"{self.root} holds no tensorage index: run `tensorage allocate --db_root_path {self.root}` first")
        return self

    def ensure(self) -> "Layout":
        """Create the directories and prove we can write there (before any real write)."""
        if self.root.exists() and not self.root.is_dir():
            raise DiskError(f"{self.root} is a file, not a directory: choose another --db_root_path")
        checks.real_filesystem(self.root)
        try:
            for d in (self.root, self.plots, self.plots_tmp, self.shards, self.index):
                d.mkdir(parents=True, exist_ok=True)
            with tempfile.NamedTemporaryFile(dir=self.root, prefix=".write-test-"):
                pass
        except OSError as exc:
            raise DiskError(
                f"cannot write to {self.root} ({exc.strerror or exc}): choose a writable --db_root_path or fix its permissions"
            ) from None
        return self

    def check_writable_target(self) -> None:
        """Without writing: can ``ensure`` succeed? (used by plans and the wizard)."""
        checks.writable_target(self.root)


@dataclass(frozen=True)
class Footprint:
    """What existed under a root before a node started, so a start that fails can remove exactly
    what it made (an empty validator.sqlite, the directories) and nothing else."""

    layout: Layout
    dirs: frozenset[Path]
    index_files: frozenset[str]

    @classmethod
    def of(cls, layout: Layout) -> "Footprint":
        dirs = [layout.root, layout.plots, layout.plots_tmp, layout.shards, layout.spool, layout.index]
        files = {p.name for p in layout.index.iterdir()} if layout.index.is_dir() else set()
        return cls(layout, frozenset(d for d in dirs if d.is_dir()), frozenset(files))

    def remove_new(self) -> list[Path]:
        """Remove index files and empty directories that were not there before; returns them."""
        removed: list[Path] = []
        index = self.layout.index
        if index.is_dir():
            for path in index.iterdir():
                if path.name not in self.index_files and path.is_file():
                    path.unlink(missing_ok=True)
                    removed.append(path)
        l = self.layout
        for d in (l.plots_tmp, l.plots, l.shards, l.spool, l.index, l.root):  # deepest first
            if d not in self.dirs and d.is_dir():
                try:
                    d.rmdir()  # only when empty: never data
                    removed.append(d)
                except OSError:
                    pass
        return removed


@dataclass(frozen=True)
class DeviceSpace:
    total: int
    free: int


def device_space(path: Path) -> DeviceSpace:
    usage = shutil.disk_usage(existing_parent(path))
    return DeviceSpace(total=usage.total, free=usage.free)


def safety_margin(total: int) -> int:
    """Space never given to tensorage so the device keeps working: 2 % of it, at most 1 GB."""
    return min(10**9, total // 50)


def dir_bytes(path: Path) -> int:
    if not path.exists():
        return 0
    total = 0
    for entry in os.scandir(path):
        if entry.is_file(follow_symlinks=False):
            total += entry.stat(follow_symlinks=False).st_size
    return total
