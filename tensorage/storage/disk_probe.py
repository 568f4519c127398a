"""Is a disk still there? A few cheap reads that tell a working --db_root_path disk from one that
was removed, unmounted or fails with I/O errors (engines/disks.py acts on the answer)."""

from __future__ import annotations

import errno
import os
from typing import Optional

from .layout import Layout

IO_ERROR = os.strerror(errno.EIO)


def is_io_error(exc_or_reason: BaseException | str) -> bool:
    """EIO, the error of a failing or vanished device (a lookup in a worker reports it as text)."""
    if isinstance(exc_or_reason, OSError):
        return exc_or_reason.errno == errno.EIO
    return IO_ERROR in str(exc_or_reason)


def probe(layout: Layout, device_id: Optional[int] = None) -> Optional[str]:
    """Why the disk at ``layout`` cannot serve plots, or None when it can. Reads the root, the index
    and plot directories and the plot index's metadata. ``device_id``: the st_dev it had when it
    was seen well (an unmounted disk leaves its mount point, an empty directory on another device)."""
    root = layout.root
    try:
        st = os.stat(root)
    except FileNotFoundError:
        return f"{root} is gone (removed, renamed or unmounted)"
    except OSError as exc:
        return f"{root} cannot be read: {exc.strerror or exc}"
    if device_id is not None and st.st_dev != device_id:
        return f"{root} is on another device than when it was seen (unmounted?)"
    try:
        # stat, never open: closing any descriptor of the plot index drops this process's SQLite
        # locks on it, and the next reader elsewhere then deletes the WAL the miner writes into
        os.stat(layout.miner_db)
        os.listdir(layout.index)
        os.listdir(layout.plots)
    except FileNotFoundError as exc:
        return f"{root} holds no tensorage plot index any more ({exc.filename} is missing)"
    except OSError as exc:
        return f"{root} cannot be read: {exc.strerror or exc}"
    return None
