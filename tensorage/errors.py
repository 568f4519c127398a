"""Errors an operator can act on.

Every message names what went wrong and what to do about it; the CLI prints it
as one line and exits non-zero, the console shows it on screen.
"""

from __future__ import annotations


class TensorageError(Exception):
    """Base class: the message is meant for the operator."""

    exit_code = 2


class ConfigError(TensorageError):
    """A flag or setting is missing, malformed or out of range."""


class DiskError(TensorageError):
    """The database root cannot be used (missing, unwritable, too small)."""


class NotEnoughSpace(DiskError):
    """The requested share does not fit on the device."""


class DiskFull(DiskError):
    """The device is full: a write (an index row, a file) could not be made; nothing was changed."""


class CorruptIndex(TensorageError):
    """A SQLite index cannot be read; nothing was changed."""


class PlotError(TensorageError):
    """A plot could not be made, opened or verified."""


class WalletError(TensorageError):
    """A wallet or hotkey is missing or unreadable."""


class ChainError(TensorageError):
    """The chain refused a read or a write, or cannot be reached."""


class ChainUnreachable(ChainError):
    """The chain did not answer (connection refused or dropped, an RPC error): not a refusal.

    Nodes keep serving and their chain jobs retry with backoff; the node's chain health says
    "unreachable since T"."""


class ChainStalled(ChainUnreachable):
    """A chain call got no answer within its bound (a stalled endpoint)."""


class BlockNotYet(ChainError):
    """A block that is not on the chain yet: its hash (a window's beacon) cannot be known."""


class NotRegistered(ChainError):
    """A hotkey or uid is not registered on the subnet."""


class ProtocolError(TensorageError):
    """A peer sent something that does not follow the protocol."""


class NodeLocked(TensorageError):
    """Another process already runs a node (or an allocation) on this database root."""
