"""Create a local subnet: chain file, wallets, registrations, stake and node sizes."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Optional

from .. import checks
from ..errors import ConfigError
from .devnet import CHAIN_FILE, Devnet, DevnetNode, SubnetSpec
from .wallets import create_wallet

# Miner shares in GB: different sizes so weights have something to tell apart
# (0.03 GB -> 4 k18 plots, 0.05 -> 3 k19 + 3 k18, 0.08 -> 1 k20 + 4 k19 + 4 k18); six miners, one per
# shard of the default 4-of-6 code, the last three small so the devnet still plots in well under a
# minute on 2 cores.
MINER_SIZES_GB = (0.03, 0.05, 0.08, 0.03, 0.03, 0.03)
VALIDATOR_STAKE = (2000.0, 1000.0, 500.0)
# A registered hotkey without stake or endpoint: the devnet's gateways accept it as a client, and
# `tensorage store/retrieve/ls/rm --network devnet` use it by default.
CLIENT_WALLET = "client"


def devnet_exists(root: Path) -> bool:
    return (root / CHAIN_FILE).exists()


def init_devnet(root: Path, miners: int = 6, validators: int = 2, force: bool = False,
                miner_sizes_gb: tuple[float, ...] = MINER_SIZES_GB, block_time: Optional[float] = None) -> SubnetSpec:
    """``block_time``: seconds a block (default: the devnet profile's); benchmarks shorten it to
    run more proof windows."""
    if miners < 1 or validators < 1 or miners + validators > 256:
        raise ConfigError("a devnet needs at least 1 miner and 1 validator, and at most 256 neurons")
    root = Path(root).expanduser()
    checks.writable_target(root)  # a file or /proc/x: one line, before anything is made
    if devnet_exists(root):
        if not force:
            raise ConfigError(f"a devnet already exists at {root}: run `tensorage devnet up` to use it, "
                              f"or `tensorage devnet init --force` to start a new one")
        for name in ("chain.sqlite", "chain.sqlite-wal", "chain.sqlite-shm", "subnet.json"):
            (root / name).unlink(missing_ok=True)
        for d in ("wallets", "nodes", "logs"):
            shutil.rmtree(root / d, ignore_errors=True)
    chain = Devnet.create(root, block_time=block_time)
    nodes = [DevnetNode(name=f"validator-{i}", role="validator", size_in_gb=0.0) for i in range(validators)]
    nodes += [DevnetNode(name=f"miner-{i}", role="miner", size_in_gb=miner_sizes_gb[i % len(miner_sizes_gb)])
              for i in range(miners)]
    try:
        for i, node in enumerate(nodes):
            wallet = create_wallet(root / "wallets", node.wallet_name)
            chain.register(wallet.hotkey.ss58_address, wallet.coldkeypub.ss58_address)
            if node.role == "validator":
                chain.add_stake(wallet.hotkey.ss58_address, VALIDATOR_STAKE[i % len(VALIDATOR_STAKE)])
        client = create_wallet(root / "wallets", CLIENT_WALLET)
        chain.register(client.hotkey.ss58_address, client.coldkeypub.ss58_address)
        SubnetSpec(nodes=nodes).save(root)
    finally:
        chain.close()
    return SubnetSpec(nodes=nodes)


def client_names(root: Path) -> dict[str, str]:
    """hotkey -> name of the devnet's client wallet, for tables (empty if it is not there)."""
    import bittensor as bt

    try:
        return {bt.Wallet(name=CLIENT_WALLET, hotkey="default", path=str(Path(root) / "wallets")).hotkey.ss58_address:
                CLIENT_WALLET}
    except Exception:
        return {}
