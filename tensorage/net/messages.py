"""Typed, versioned messages between validators and miners (JSON bodies).

Validation happens here, at the edge: a handler only ever sees a parsed message.
Every message carries the protocol version so peers of different versions say so.
"""

from __future__ import annotations

from typing import Optional

from pydantic import BaseModel, ConfigDict, Field

from .. import PROTOCOL_VERSION

HEX32 = r"^[0-9a-f]{64}$"
MAX_CONTROL_BODY = 1 << 20  # 1 MiB: the largest JSON a peer may send


class Message(BaseModel):
    model_config = ConfigDict(extra="forbid")

    protocol: int = PROTOCOL_VERSION


class PlotsResponse(Message):
    """A miner's current listing (``GET /v1/plots``), in canonical form (proofs/listing.py):
    base64 of the plot entries and of the shard certificates, and the digest that names it in
    challenges."""

    hotkey: str
    digest: str = Field(pattern=HEX32)
    plots: str
    shards: str = ""


class WindowChallenge(Message):
    """``POST /v1/challenge``: answer window ``window`` for the listing named ``listing``.

    The miner takes the beacon from its own view of the chain (``beacon`` only lets it say
    so clearly when the two disagree), derives its sample and answers once per
    (window, listing), whoever asks."""

    window: int = Field(ge=0, le=2**40)
    beacon: str = Field(pattern=HEX32)
    listing: str = Field(pattern=HEX32)
    deadline: float = Field(allow_inf_nan=False)  # unix time by which the answer must have arrived


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
