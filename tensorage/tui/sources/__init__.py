"""What the console follows, one small module per source: a miner or validator engine in this
process (:mod:`.local`), a whole devnet (:mod:`.devnet`), or a node running elsewhere
(:mod:`.attached`). Screens ask a source's :class:`~.views.Capabilities`, never its mode."""

from .attached import AttachedSource
from .base import Source
from .devnet import DevnetSource
from .local import LocalSource
from .views import (Capabilities, DiskInfo, Identity, JobRow, MinerRef, NodeRow, PathCheck, WeightRow,
                    disk_live_of, read_disk, weight_rows_of)

__all__ = ["AttachedSource", "Capabilities", "DevnetSource", "DiskInfo", "Identity", "JobRow", "LocalSource",
           "MinerRef", "NodeRow", "PathCheck", "Source", "WeightRow", "disk_live_of", "read_disk", "weight_rows_of"]
