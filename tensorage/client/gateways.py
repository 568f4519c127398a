"""Which validator gateway a client talks to: the one named (uid or hotkey), or by default the
best-staked validator with a permit that answers ``GET /v1/gateway``."""

from __future__ import annotations

from typing import Optional

from ..chain.port import Metagraph, Neuron
from ..net.client import PeerError, SignedClient
from ..net.objects import GatewayInfo
from .errors import NoGateway

MAX_PROBES = 8


def gateway_candidates(mg: Metagraph, uid: Optional[int] = None, hotkey: Optional[str] = None) -> list[Neuron]:
    if uid is not None or hotkey:
        neuron = mg.by_uid(uid) if uid is not None else mg.by_hotkey(hotkey or "")
        named = f"uid {uid}" if uid is not None else f"hotkey {hotkey}"
        if neuron is None:
            raise NoGateway(f"{named} is not registered on netuid {mg.netuid}: see the validators with "
                            f"`tensorage devnet show` or btcli, or drop --gateway.uid/--gateway.hotkey")
        if not neuron.endpoint:
            raise NoGateway(f"{named} serves no endpoint: choose a running validator")
        return [neuron]
    found = [n for n in mg.neurons if n.validator_permit and n.endpoint]
    if not found:
        raise NoGateway(f"no validator on netuid {mg.netuid} serves an endpoint: start one, or pass --gateway.uid")
    return sorted(found, key=lambda n: (-n.total_stake, n.uid))


async def pick_gateway(client: SignedClient, mg: Metagraph, uid: Optional[int] = None,
                       hotkey: Optional[str] = None) -> tuple[Neuron, GatewayInfo]:
    """The first candidate whose ``/v1/gateway`` answers and names the hotkey the chain has."""
    problems = []
    for neuron in gateway_candidates(mg, uid, hotkey)[:MAX_PROBES]:
        host, port = neuron.endpoint  # type: ignore[misc]
        try:
            reply = await client.request("GET", host, port, "/v1/gateway", neuron.hotkey, timeout=5.0)
        except PeerError as exc:
            problems.append(f"uid {neuron.uid}: {exc}")
            continue
        if reply.status != 200:
            problems.append(f"uid {neuron.uid}: no gateway (HTTP {reply.status})")
            continue
        try:
            info = GatewayInfo.model_validate_json(reply.body)
        except ValueError:
            problems.append(f"uid {neuron.uid}: malformed gateway answer")
            continue
        if info.hotkey != neuron.hotkey:
            problems.append(f"uid {neuron.uid}: answers as {info.hotkey}, the chain says {neuron.hotkey}")
            continue
        return neuron, info
    raise NoGateway("no validator gateway answered (" + "; ".join(problems)[:800] + "): check the network, or pass "
                    "--gateway.uid of a validator that serves client data")
