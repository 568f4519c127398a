"""The real networks through bittensor 11 (finney, test, local, ws://...).

Thin on purpose: reads go through ``SyncClient.subnets.metagraph``, writes through
``bittensor.set_weights`` (normalization, quantization, commit-reveal, rate limits)
and the ``ServeAxon`` intent. Never called in tests: there is no chain here.
"""

from __future__ import annotations

from typing import Any, Optional

import bittensor as bt

from ..errors import BlockNotYet, ChainError, NotRegistered
from .port import Metagraph, Neuron


def _float(value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return 0.0


# Blocks at least this deep are cached: shallower ones are read again, so a validator settling a
# window (config.NetworkProfile.settle_blocks) sees a fork that replaced its beacon.
CACHE_DEPTH = 3


class BittensorChain:
    def __init__(self, network: str, netuid: int) -> None:
        self.network = network
        self.netuid = netuid
        self._client = bt.SyncClient(network)
        self._infos: dict[int, bt.BlockInfo] = {}  # recent blocks: a window's beacon is read by every job
        self._block_time: Optional[float] = None

    def _fail(self, what: str, exc: Exception) -> ChainError:
        return ChainError(f"{what} on {self.network} failed ({exc}); check the network is reachable or pass "
                          f"--subtensor.network devnet to run locally")

    def block(self) -> int:
        try:
            return int(self._client.block)  # a property that reads the chain head
        except Exception as exc:
            raise self._fail("reading the block", exc) from None

    def _block_info(self, block: int) -> bt.BlockInfo:
        info = self._infos.get(block)
        if info is not None:
            return info
        head = self.block()
        if block > head:
            raise BlockNotYet(f"block {block} is not on {self.network} yet")
        try:
            info = self._client.block_info(block)
        except Exception as exc:
            raise self._fail(f"reading block {block}", exc) from None
        if info is None or not info.hash:
            raise BlockNotYet(f"block {block} is not on {self.network} yet")
        if block <= head - CACHE_DEPTH:  # a block near the head may still be replaced by a fork
            self._infos[block] = info
        while len(self._infos) > 64:
            self._infos.pop(next(iter(self._infos)))
        return info

    def block_hash(self, block: int) -> bytes:
        return bytes.fromhex(self._block_info(block).hash.removeprefix("0x"))

    def block_timestamp(self, block: int) -> float:
        return self._block_info(block).timestamp.timestamp()

    def block_time(self) -> float:
        if self._block_time is None:
            try:
                self._block_time = float(self._client.block_time())
            except Exception as exc:
                raise self._fail("reading the block time", exc) from None
        return self._block_time

    def metagraph(self) -> Metagraph:
        try:
            mg = self._client.subnets.metagraph(self.netuid)
        except Exception as exc:
            raise self._fail(f"reading the metagraph of netuid {self.netuid}", exc) from None
        if mg is None:
            raise ChainError(f"netuid {self.netuid} does not exist on {self.network}: check --netuid")
        neurons = [
            Neuron(
                uid=n.uid, hotkey=n.hotkey, coldkey=n.coldkey, active=bool(n.active),
                validator_permit=bool(n.validator_permit), last_update=int(n.last_update),
                block_at_registration=int(n.block_at_registration), rank=_float(n.rank), trust=_float(n.trust),
                consensus=_float(n.consensus), incentive=_float(n.incentive), dividends=_float(n.dividends),
                emission=_float(n.emission), total_stake=_float(n.total_stake), axon=n.axon,
            )
            for n in mg.neurons
        ]
        return Metagraph(netuid=self.netuid, block=int(mg.block), neurons=neurons)

    def serve(self, wallet: bt.Wallet, ip: str, port: int) -> None:
        try:
            self._client.execute(bt.intents.ServeAxon(netuid=self.netuid, ip=ip, port=port), wallet)
        except Exception as exc:
            raise self._fail(f"serving {ip}:{port}", exc) from None

    def set_weights(self, wallet: bt.Wallet, weights: dict[int, float]) -> int:
        mg = self.metagraph()
        unknown = sorted(set(weights) - {n.uid for n in mg.neurons})
        if unknown:
            raise NotRegistered(f"cannot set weights to unregistered uids {unknown}: sync the metagraph first")
        try:
            bt.set_weights(self.netuid, dict(weights), wallet=wallet, network=self.network)
        except bt.ChainError as exc:
            raise ChainError(f"set_weights on {self.network} refused: {exc}") from None
        except Exception as exc:
            raise self._fail("set_weights", exc) from None
        return mg.block

    def close(self) -> None:
        try:
            self._client.close()
        except Exception:
            pass
