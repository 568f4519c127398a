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
    quota_gb: float = Field(default=1.0, gt=0, le=10**6)   # per client hotkey, ciphertext bytes (GB = 10^9)
    allow: str = ""            # comma-separated hotkeys accepted without registration
    shard_mb: float = Field(default=16.0, gt=0, le=1024)   # target shard size of a segment (MiB)
    audits_per_shard: int = Field(default=32, ge=1, le=1000)
    audits_per_round: int = Field(default=8, ge=1, le=256)  # per miner, per proof window
    miss_limit: int = Field(default=2, ge=1, le=100)        # unanswered audits in a row before a shard is lost
    audit_s: Optional[float] = Field(default=None, ge=1)    # refill period; default: the proof-round period
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
                   help="bytes each client may store through this validator, in GB (1)")
    g.add_argument("--gateway.allow", dest="gateway.allow", default=argparse.SUPPRESS,
                   help="comma-separated client hotkeys accepted without registration")
    g.add_argument("--gateway.shard_mb", dest="gateway.shard_mb", type=float, default=argparse.SUPPRESS,
                   help="target shard size per segment in MiB (16)")
    g.add_argument("--gateway.audits_per_shard", dest="gateway.audits_per_shard", type=int,
                   default=argparse.SUPPRESS, help="one-use audits made per shard before it is downloaded again (32)")
    g.add_argument("--gateway.audits_per_round", dest="gateway.audits_per_round", type=int,
                   default=argparse.SUPPRESS, help="shards audited per miner per proof window (8)")
    g.add_argument("--gateway.miss_limit", dest="gateway.miss_limit", type=int, default=argparse.SUPPRESS,
                   help="unanswered audits in a row before a shard counts as lost (2)")
    g.add_argument("--gateway.audit_s", dest="gateway.audit_s", type=float, default=argparse.SUPPRESS,
                   help="how often spent audits are refilled, in seconds (the proof-round period)")
    g.add_argument("--gateway.repair_s", dest="gateway.repair_s", type=float, default=argparse.SUPPRESS,
                   help="repair and garbage-collection period in seconds (the proof-round period, at least 10)")


def add_gateway_choice_flags(parser: argparse.ArgumentParser) -> None:
    """The client's choice of gateway (default: the best-staked validator serving one)."""
    g = parser.add_argument_group("gateway")
    g.add_argument("--gateway.uid", dest="gateway.uid", type=int, default=argparse.SUPPRESS,
                   help="use the gateway of this validator uid")
    g.add_argument("--gateway.hotkey", dest="gateway.hotkey", default=argparse.SUPPRESS,
                   help="use the gateway of this validator hotkey")
