"""One small chain port with two backends: bittensor 11 (real networks) and the devnet."""

from __future__ import annotations

from ..config import Settings
from .port import ChainPort, Metagraph, Neuron


def connect(settings: Settings) -> ChainPort:
    """The backend for ``--subtensor.network``: the devnet file or a bittensor client."""
    if settings.network == "devnet":
        from .devnet import Devnet

        chain = Devnet.open(settings.devnet_root, netuid=settings.resolved_netuid)
        chain.faults_apply = True  # a node's connection obeys `tensorage devnet fault` (chain/devnet_faults.py)
        return chain
    from .bittensor_backend import BittensorChain

    return BittensorChain(settings.network, settings.resolved_netuid)


__all__ = ["ChainPort", "Metagraph", "Neuron", "connect"]
