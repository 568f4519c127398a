"""One check each for what an operator types: a database root, a share in GB, a worker count.

The command line (through :class:`~tensorage.config.Settings`), the console's allocation wizard,
a node's operator endpoint and the miner engine all call these, so one entry gets one answer
wherever it is typed. Messages name the value, not the flag: callers that speak in flags prefix it.
Whether a share fits the disk is the allocator's plan (it knows the plots already there).
"""

from __future__ import annotations

import math
import os
import shutil
from pathlib import Path
from typing import Union

from .errors import ConfigError, DiskError

MAX_SIZE_IN_GB = 10**6  # a petabyte: anything above is a typo, not a disk
MAX_WORKERS = 256
EXAMPLE_ROOT = "~/tensorage-db"


def size_in_gb(value: Union[float, int, str]) -> float:
    """A disk share in (decimal) GB: a finite number above zero and below a petabyte. A refusal
    names the value as typed (``1e400``, not the ``inf`` it parses to)."""
    shown = ""
    if isinstance(value, str):
        text = value.strip().lower().removesuffix("gb").strip()
        if not text:
            raise ConfigError("no share given: enter it in GB, e.g. 100 (0.05 on the devnet)")
        try:
            value = float(text)
        except ValueError:
            raise ConfigError(f"{text!r} is not a number: give the share in GB, e.g. 100") from None
        shown = text
    value = float(value)
    shown = shown or f"{value:g}"
    if math.isnan(value):
        raise ConfigError(f"{shown!r} is not a number: give the share in GB, e.g. 100")
    if value > MAX_SIZE_IN_GB:  # infinity too: 1e400 parses to it
        raise ConfigError(f"{shown} GB is more than a petabyte ({MAX_SIZE_IN_GB:,} GB): give the share in GB, "
                          f"e.g. 100")
    if not value > 0:
        if value == 0 and any(c in "123456789" for c in shown.split("e")[0]):  # 1e-400: below a float's range
            raise ConfigError(f"{shown} GB is too small to be a share: give it in GB, e.g. 100")
        raise ConfigError(f"the share must be positive (got {shown} GB): give it in GB, e.g. 100")
    return value


def workers(value: Union[int, str]) -> int:
    """Plots built at once: a whole number from 1 to 256."""
    if isinstance(value, str):
        text = value.strip()
        try:
            value = int(text)
        except ValueError:
            raise ConfigError(f"{text or 'nothing'!r} is not a whole number: give how many plots to build at "
                              f"once, e.g. {os.cpu_count() or 1}") from None
    if value < 1:
        raise ConfigError(f"{value} workers would never plot: use at least 1")
    if value > MAX_WORKERS:
        raise ConfigError(f"{value} workers is more than {MAX_WORKERS}: this machine has {os.cpu_count()} CPUs")
    return int(value)


def db_root(value: Union[str, Path]) -> Path:
    """A database root as typed: not empty, ``~`` expanded, made absolute. Touches no file."""
    text = str(value).strip()
    if not text:
        raise ConfigError(f"no directory given: name one for plots, shards and indexes, e.g. {EXAMPLE_ROOT}")
    path = Path(text).expanduser()
    return path if path.is_absolute() else path.absolute()


def distinct_roots(roots: list[Path]) -> None:
    """Several --db_root_path directories must be distinct and none inside another (a plot
    directory would be counted twice)."""
    for i, a in enumerate(roots):
        for b in roots[i + 1:]:
            if a == b or a in b.parents or b in a.parents:
                raise ConfigError(f"--db_root_path: {a} and {b} overlap: give one directory per disk, none inside "
                                  f"another")


def existing_parent(path: Path) -> Path:
    path = path.expanduser().absolute()
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def writable_target(path: Path) -> None:
    """Without writing: could a node create and write ``path``, on a filesystem that stores data?"""
    if path.exists():
        if not path.is_dir():
            raise DiskError(f"{path} is a file, not a directory: choose another path")
        if not os.access(path, os.W_OK | os.X_OK):
            raise DiskError(f"{path} is not writable by this user: choose another path or fix its permissions")
    else:
        parent = existing_parent(path)
        if not parent.is_dir():
            raise DiskError(f"{parent} is not a directory, so {path} cannot be created: choose another path")
        if not os.access(parent, os.W_OK | os.X_OK):
            raise DiskError(f"cannot create {path}: {parent} is not writable; choose another path")
    real_filesystem(path)


def real_filesystem(path: Path) -> None:
    """Refuse virtual filesystems (/proc, /sys): they report no space and lose whatever is written."""
    try:
        total = shutil.disk_usage(existing_parent(path)).total
    except OSError as exc:
        raise DiskError(f"cannot read the free space at {path} ({exc.strerror or exc}): choose another path") from None
    if total == 0:
        raise DiskError(f"{path} is on a virtual filesystem with no disk behind it (like /proc or /sys): "
                        f"choose a directory on a disk, e.g. {EXAMPLE_ROOT}")
