"""Typed, versioned messages between validators and miners (JSON bodies).

Validation happens here, at the edge: a handler only ever sees a parsed message.
Every message carries the protocol version so peers of different versions say so.
"""

from __future__ import annotations

from typing import Optional

from pydantic import BaseModel, ConfigDict, Field, field_validator

from .. import PROTOCOL_VERSION

HEX32 = r"^[0-9a-f]{64}$"
MAX_CHALLENGE_PLOTS = 1024
MAX_PER_PLOT = 16
MAX_CONTROL_BODY = 1 << 20  # 1 MiB: the largest JSON a peer may send


class Message(BaseModel):
    model_config = ConfigDict(extra="forbid")

    protocol: int = PROTOCOL_VERSION


class PlotEntry(BaseModel):
    model_config = ConfigDict(extra="forbid")

    seed: str = Field(pattern=HEX32)
    k: int = Field(ge=1, le=64)


class PlotsResponse(Message):
    hotkey: str
    plots: list[PlotEntry]


class ChallengeRequest(Message):
    challenge: str = Field(pattern=HEX32)
    plots: list[str] = Field(min_length=1, max_length=MAX_CHALLENGE_PLOTS)
    per_plot: int = Field(ge=1, le=MAX_PER_PLOT)
    deadline: float  # unix time by which the answer must have arrived

    @field_validator("plots")
    @classmethod
    def _seeds(cls, seeds: list[str]) -> list[str]:
        for s in seeds:
            if len(s) != 64 or any(c not in "0123456789abcdef" for c in s):
                raise ValueError("plots must be 64-character lowercase hex seeds")
        if len(set(seeds)) != len(seeds):
            raise ValueError("plots must not repeat")
        return seeds


class PlotProofs(BaseModel):
    model_config = ConfigDict(extra="forbid")

    seed: str = Field(pattern=HEX32)
    j: int = Field(ge=0, lt=MAX_PER_PLOT)
    proofs: list[str] = Field(max_length=64)  # hex; several proofs are possible for one challenge


class ChallengeResponse(Message):
    proofs: list[PlotProofs]
    missing: list[str] = Field(default_factory=list)  # sampled plots the miner no longer has


class HealthResponse(Message):
    version: str
    hotkey: str
    role: str
    plots: int = 0
    uptime_s: float = 0.0


class ErrorBody(BaseModel):
    error: str     # a short code: unauthorized, replayed, forbidden, bad_request, ...
    message: str   # what happened and what to do
    protocol: int = PROTOCOL_VERSION
    detail: Optional[str] = None
