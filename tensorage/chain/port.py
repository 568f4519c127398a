"""What tensorage needs from a chain, and nothing more.

Field names follow bittensor 11's ``MetagraphNeuron`` so both backends look alike.
Calls are synchronous; engines run them with ``asyncio.to_thread``, so a backend is called from
several threads at once and must be safe for it. Every call ends within a bound: a backend raises
``ChainUnreachable`` when the chain does not answer (``ChainStalled`` when it ran out of time) and a
plain ``ChainError`` when the chain answered with a refusal; nodes keep serving on either, and
their chain jobs back off (scheduler.py) while the node's chain health says so (chain/health.py).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional, Protocol

from bittensor.wallet import Wallet

from ..errors import BlockNotYet  # noqa: F401 - part of the port


@dataclass(frozen=True)
class Neuron:
    uid: int
    hotkey: str
    coldkey: str
    active: bool
    validator_permit: bool
    last_update: int
    block_at_registration: int
    rank: float
    trust: float
    consensus: float
    incentive: float
    dividends: float
    emission: float
    total_stake: float
    axon: Optional[str]  # "ip:port" or None when nothing is served

    @property
    def endpoint(self) -> Optional[tuple[str, int]]:
        if not self.axon:
            return None
        host, _, port = self.axon.rpartition(":")
        try:
            port_n = int(port)
        except ValueError:
            return None
        if not host or port_n <= 0 or host in ("0.0.0.0", "::"):
            return None
        return host.strip("[]"), port_n


@dataclass
class Metagraph:
    netuid: int
    block: int
    neurons: list[Neuron] = field(default_factory=list)

    _index: Optional[tuple[int, int, dict[str, int]]] = field(default=None, init=False, repr=False, compare=False)

    def by_hotkey(self, hotkey: str) -> Optional[Neuron]:
        """By a hotkey -> position index, rebuilt when the list is replaced or grows: a window's
        verdicts look up every miner, and a scan each time is quadratic (1,024 miners: 15-30 ms of
        CPU in one callback on the node's loop a window, against 0.14 ms indexed). A hit is checked against the list, a miss scans it, so a list
        edited in place still answers right."""
        index = self._index
        if index is None or index[0] != id(self.neurons) or index[1] != len(self.neurons):
            index = self._index = (id(self.neurons), len(self.neurons),
                                   {n.hotkey: i for i, n in reversed(list(enumerate(self.neurons)))})
        i = index[2].get(hotkey)
        if i is not None and self.neurons[i].hotkey == hotkey:
            return self.neurons[i]
        return next((n for n in self.neurons if n.hotkey == hotkey), None)

    def by_uid(self, uid: int) -> Optional[Neuron]:
        return next((n for n in self.neurons if n.uid == uid), None)

    @property
    def hotkeys(self) -> list[str]:
        return [n.hotkey for n in self.neurons]

    @property
    def validators(self) -> list[Neuron]:
        return [n for n in self.neurons if n.validator_permit]


class ChainPort(Protocol):
    network: str
    netuid: int

    def block(self) -> int: ...

    def block_hash(self, block: int) -> bytes:
        """The 32-byte hash of a past or current block: the beacon of the window it starts.
        Raises BlockNotYet for a block that does not exist yet."""
        ...

    def block_timestamp(self, block: int) -> float:
        """Unix time at which ``block`` was made (raises BlockNotYet for a future block)."""
        ...

    def block_time(self) -> float:
        """Seconds per block."""
        ...

    def metagraph(self) -> Metagraph: ...

    def serve(self, wallet: Wallet, ip: str, port: int) -> None: ...

    def set_weights(self, wallet: Wallet, weights: dict[int, float]) -> int:
        """Normalize and write weights; returns the block. Never to an unregistered uid."""
        ...

    def close(self) -> None: ...
