"""Client-data flags (``--gateway.*``): the validator's gateway and the client's choice of gateway.

Kept apart from config.py so the gateway's knobs live in one place; ``Settings.gateway`` holds
them and dotted flags nest into it like ``--wallet.name``.
"""

from __future__ import annotations

import argparse
from typing import Optional

from pydantic import BaseModel, Field, field_validator

GiB = 1024**3
MiB = 1024**2


class GatewaySettings(BaseModel):
    # validator side
    disable: bool = False
    quota_gb: float = Field(default=1.0, gt=0, le=10**6)   # per client hotkey: bytes on miners, n/k counted (GB = 10^9)
    allow: str = ""            # comma-separated hotkeys accepted without registration
    shard_mb: float = Field(default=16.0, gt=0, le=64)     # target shard size of a segment (MiB; a tree of <= 4,096 chunks)
    max_expansion: float = Field(default=3.0, ge=1, le=32)  # n/k a client may ask for
    replace_after_s: Optional[float] = Field(default=None, ge=1)  # silent in windows this long: its shards move
    repair_s: Optional[float] = Field(default=None, ge=1)   # default: the proof-round period, at least 10 s
    # client side
    uid: Optional[int] = Field(default=None, ge=0)
    hotkey: Optional[str] = None

    @field_validator("allow")
    @classmethod
    def _hotkeys(cls, value: str) -> str:
        return ",".join(h.strip() for h in value.split(",") if h.strip())

    @property
    def allowed(self) -> frozenset[str]:
        return frozenset(h for h in self.allow.split(",") if h)

    @property
    def quota_bytes(self) -> int:
        return int(self.quota_gb * 10**9)

    @property
    def shard_bytes(self) -> int:
        return max(1, int(self.shard_mb * MiB))


def add_gateway_flags(parser: argparse.ArgumentParser) -> None:
    """The validator's gateway flags."""
    g = parser.add_argument_group("client gateway")
    g.add_argument("--gateway.disable", dest="gateway.disable", action="store_true", default=argparse.SUPPRESS,
                   help="do not serve client data")
    g.add_argument("--gateway.quota_gb", dest="gateway.quota_gb", type=float, default=argparse.SUPPRESS,
                   help="bytes each client may put on miners through this validator (its files times n/k), in GB (1)")
    g.add_argument("--gateway.allow", dest="gateway.allow", default=argparse.SUPPRESS,
                   help="comma-separated client hotkeys accepted without registration")
    g.add_argument("--gateway.shard_mb", dest="gateway.shard_mb", type=float, default=argparse.SUPPRESS,
                   help="target shard size per segment in MiB (16; at most 64)")
    g.add_argument("--gateway.max_expansion", dest="gateway.max_expansion", type=float, default=argparse.SUPPRESS,
                   help="largest n/k a client may store with (3)")
    g.add_argument("--gateway.replace_after_s", dest="gateway.replace_after_s", type=float,
                   default=argparse.SUPPRESS, help="seconds a miner may be silent in proof windows before its shards "
                                                   "are rebuilt elsewhere (12 windows, at least 120: 3600 on finney; at once "
                                                   "when only k+1 are left)")
    g.add_argument("--gateway.repair_s", dest="gateway.repair_s", type=float, default=argparse.SUPPRESS,
                   help="re-check, repair, certificate renewal and garbage-collection period in seconds (the "
                        "proof-round period, at least 10)")


def add_gateway_choice_flags(parser: argparse.ArgumentParser) -> None:
    """The client's choice of gateway (default: the best-staked validator serving one)."""
    g = parser.add_argument_group("gateway")
    g.add_argument("--gateway.uid", dest="gateway.uid", type=int, default=argparse.SUPPRESS,
                   help="use the gateway of this validator uid")
    g.add_argument("--gateway.hotkey", dest="gateway.hotkey", default=argparse.SUPPRESS,
                   help="use the gateway of this validator hotkey")
