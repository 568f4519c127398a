"""Where everything lives under ``--db_root_path`` (DESIGN §6)."""

from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

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
        if self.root.exists():
            if not self.root.is_dir():
                raise DiskError(f"{self.root} is a file, not a directory: choose another path")
            if not os.access(self.root, os.W_OK | os.X_OK):
                raise DiskError(f"{self.root} is not writable by this user: choose another path or fix its permissions")
            return
        parent = existing_parent(self.root)
        if not parent.is_dir():
            raise DiskError(f"{parent} is not a directory, so {self.root} cannot be created: choose another path")
        if not os.access(parent, os.W_OK | os.X_OK):
            raise DiskError(f"cannot create {self.root}: {parent} is not writable; choose another path")


def existing_parent(path: Path) -> Path:
    path = path.expanduser().absolute()
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


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
