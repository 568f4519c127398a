"""The real networks through bittensor 11 (finney, test, local, ws://...).

Thin on purpose: reads go through ``SyncClient.subnets.metagraph`` / ``block`` / ``block_info``,
writes through ``SyncClient.execute`` with the ``SetWeights`` intent (what ``bt.set_weights`` runs:
normalization, quantization, commit-reveal, rate limits) and the ``ServeAxon`` intent.
``tests/test_chain_contract.py`` pins every SDK member used here; there is no chain in tests.

Engines call the port with ``asyncio.to_thread``, so calls arrive on several threads at once.
Each thread gets its own ``SyncClient`` (its own connection and event loop): one client shared
across threads would interleave their requests on one socket and one stalled call would hold
every other caller. Every RPC is bounded (chain/bounded.py); a call that runs out of time raises
:class:`ChainStalled`, one that cannot reach the chain :class:`ChainUnreachable`.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from typing import Any, Callable, Optional

import bittensor as bt

from ..errors import BlockNotYet, ChainError, ChainStalled, ChainUnreachable, NotRegistered
from .bounded import READ_CALL_S, WRITE_CALL_S, ChainCallTimeout, bounded_client
from .port import Metagraph, Neuron

BLOCK_INFOS_KEPT = 64  # recent blocks: a window's beacon is read by every job
SET_WEIGHTS_RETRIES = 2  # transient pool rejections, as bt.set_weights does


def _float(value: Any) -> float:
    """A score or an amount as a float. Stakes and emission are ``bt.Balance`` values (in the
    subnet's own units), which have no ``__float__``: their ``amount`` is the number."""
    if isinstance(value, bt.Balance):
        return float(value.amount)
    try:
        return float(value)
    except (TypeError, ValueError):
        return 0.0


# Blocks at least this deep are cached: shallower ones are read again, so a validator settling a
# window (config.NetworkProfile.settle_blocks) sees a fork that replaced its beacon.
CACHE_DEPTH = 3


def neuron_of(n: Any) -> Neuron:
    """The port's Neuron from a ``bt.MetagraphNeuron``."""
    return Neuron(
        uid=int(n.uid), hotkey=n.hotkey, coldkey=n.coldkey, active=bool(n.active),
        validator_permit=bool(n.validator_permit), last_update=int(n.last_update),
        block_at_registration=int(n.block_at_registration), rank=_float(n.rank), trust=_float(n.trust),
        consensus=_float(n.consensus), incentive=_float(n.incentive), dividends=_float(n.dividends),
        emission=_float(n.emission), total_stake=_float(n.total_stake), axon=n.axon or None,
    )


class BittensorChain:
    def __init__(self, network: str, netuid: int, client_factory: Optional[Callable[[], Any]] = None) -> None:
        """``client_factory`` makes one client per calling thread (default: a bounded
        ``bt.SyncClient`` for ``network``; tests pass a stand-in)."""
        self.network = network
        self.netuid = netuid
        self._factory = client_factory or (lambda: bounded_client(network))
        self._local = threading.local()
        self._lock = threading.Lock()  # guards the lists below; never held during a chain call
        self._clients: list[Any] = []
        self._infos: OrderedDict[int, Any] = OrderedDict()
        self._block_time: Optional[float] = None
        self._closed = False

    # one client per thread ---------------------------------------------------------------
    def _client(self) -> Any:
        client = getattr(self._local, "client", None)
        if client is None:
            with self._lock:
                if self._closed:
                    raise ChainError(f"the {self.network} chain connection is closed (the node is stopping)")
                client = self._factory()
                self._clients.append(client)
            self._local.client = client
        return client

    def _drop_client(self) -> None:
        """Forget this thread's client after a stall: its connection may be wedged; the next call
        connects afresh. Closed in the background (closing waits on the stalled loop up to 5 s)."""
        client = getattr(self._local, "client", None)
        self._local.client = None
        if client is None:
            return
        with self._lock:
            if client in self._clients:
                self._clients.remove(client)
        threading.Thread(target=_close_quietly, args=(client,), name="chain-close", daemon=True).start()

    def _call(self, what: str, fn: Callable[[Any], Any], seconds: Optional[float] = None) -> Any:
        """Run ``fn(client)`` on this thread's client within ``seconds`` in all (a read's bound by
        default), turning SDK failures into port errors."""
        client = self._client()
        bound = getattr(client, "tensorage_bound", None)
        if bound is not None:
            bound.call_deadline = time.monotonic() + (READ_CALL_S if seconds is None else seconds)
        try:
            return fn(client)
        except (ChainCallTimeout, TimeoutError) as exc:
            self._drop_client()
            raise ChainStalled(f"{what} on {self.network} stalled ({exc}); retrying with backoff. Check the "
                               f"endpoint, or pass another with --subtensor.network ws://...") from None
        except bt.ChainError as exc:
            raise ChainError(f"{what} on {self.network} refused: {exc}") from None
        except Exception as exc:
            raise ChainUnreachable(f"{what} on {self.network} failed ({type(exc).__name__}: {exc}); check the "
                                   f"network is reachable or pass --subtensor.network devnet to run locally") from None
        finally:
            if bound is not None:
                bound.call_deadline = None

    # reads -------------------------------------------------------------------------------
    def block(self) -> int:
        return int(self._call("reading the block", lambda c: c.block))  # a property that reads the head

    def _block_info(self, block: int) -> Any:
        with self._lock:
            info = self._infos.get(block)
        if info is not None:
            return info
        head = self.block()
        if block > head:
            raise BlockNotYet(f"block {block} is not on {self.network} yet")
        info = self._call(f"reading block {block}", lambda c: c.block_info(block))
        if info is None or not info.hash:
            raise BlockNotYet(f"block {block} is not on {self.network} yet")
        if block <= head - CACHE_DEPTH:  # a block near the head may still be replaced by a fork
            with self._lock:
                self._infos[block] = info
                while len(self._infos) > BLOCK_INFOS_KEPT:
                    self._infos.popitem(last=False)
        return info

    def block_hash(self, block: int) -> bytes:
        return bytes.fromhex(self._block_info(block).hash.removeprefix("0x"))

    def block_timestamp(self, block: int) -> float:
        return self._block_info(block).timestamp.timestamp()

    def block_time(self) -> float:
        if self._block_time is None:
            self._block_time = float(self._call("reading the block time", lambda c: c.block_time()))
        return self._block_time

    def metagraph(self) -> Metagraph:
        mg = self._call(f"reading the metagraph of netuid {self.netuid}",
                        lambda c: c.subnets.metagraph(self.netuid, commitments=False))
        if mg is None:
            raise ChainError(f"netuid {self.netuid} does not exist on {self.network}: check --netuid")
        return Metagraph(netuid=self.netuid, block=int(mg.block), neurons=[neuron_of(n) for n in mg.neurons])

    # writes ------------------------------------------------------------------------------
    def serve(self, wallet: bt.Wallet, ip: str, port: int) -> None:
        """Publish ip:port. ``execute`` reports a failed extrinsic in its result, not by raising."""
        intent = bt.intents.ServeAxon(netuid=self.netuid, ip=ip, port=port)
        self._call(f"serving {ip}:{port}", lambda c: c.execute(intent, wallet).raise_for_failure(), WRITE_CALL_S)

    def set_weights(self, wallet: bt.Wallet, weights: dict[int, float]) -> int:
        """The ``SetWeights`` intent on this thread's bounded client: what ``bt.set_weights`` does,
        without its process-wide shared, unbounded client."""
        mg = self.metagraph()
        unknown = sorted(set(weights) - {n.uid for n in mg.neurons})
        if unknown:
            raise NotRegistered(f"cannot set weights to unregistered uids {unknown}: sync the metagraph first")
        intent = bt.SetWeights(netuid=self.netuid, weights=dict(weights))
        self._call("set_weights", lambda c: c.execute(intent, wallet, retries=SET_WEIGHTS_RETRIES).raise_for_failure(),
                   WRITE_CALL_S)
        return mg.block

    def close(self) -> None:
        """Close every thread's client (each has a connection and a loop thread)."""
        with self._lock:
            self._closed = True
            clients, self._clients = self._clients, []
        for client in clients:
            _close_quietly(client)


def _close_quietly(client: Any) -> None:
    try:
        client.close()
    except Exception:
        pass
