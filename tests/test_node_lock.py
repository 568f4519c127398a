"""Issue 9, defect 1: one node per database root, and a running node keeps the chain pointing at it.

Real miner processes on a real devnet (chain file, signed HTTP on 127.0.0.1)."""

from __future__ import annotations

import asyncio
import json
import socket
import subprocess
import sys

from tensorage.chain.devnet import Devnet
from tensorage.chain.wallets import load_wallet
from tensorage.storage.layout import Layout

from .subnet import Subnet, wait_for

# Modules new with issue 9 are imported where they are used, so that against the code before it
# these tests fail on what they check, not on an import.

MINER = ("--size_in_gb", "0.03", "--seconds_per_reallocate", "3600")


def node_json(subnet: Subnet, name: str) -> dict:
    try:
        return json.loads((subnet.db_root(name) / "index" / "node.json").read_text())
    except (OSError, ValueError):
        return {}


def chain_axon(subnet: Subnet, name: str) -> str:
    chain = Devnet.open(subnet.root)
    try:
        return chain.metagraph().by_hotkey(subnet.hotkey(name)).axon or ""  # type: ignore[union-attr]
    finally:
        chain.close()


def dead_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_job(subnet: Subnet, name: str, job: str) -> str:
    """Run a job in the node now, over its operator API (as the console does)."""
    from tensorage.net.operator import NodeAddress, OperatorClient

    settings = subnet_settings(subnet, name)

    async def call() -> str:
        client = OperatorClient(load_wallet(settings), NodeAddress.parse(node_json(subnet, name)["endpoint"]))
        try:
            return (await client.job(job, "run")).message
        finally:
            await client.close()

    return asyncio.run(call())


def subnet_settings(subnet: Subnet, name: str):
    from tensorage.config import settings_from_namespace

    return settings_from_namespace({"subtensor.network": "devnet", "devnet.root": str(subnet.root),
                                    "wallet.name": name})


def test_a_second_copy_is_refused_and_the_running_node_republishes_its_address(plotted_devnet):
    subnet = Subnet(plotted_devnet)
    (subnet.root / "logs").mkdir(exist_ok=True)
    first = subnet.start_miner("miner-0", 0.03, "--seconds_per_reallocate", "3600")
    try:
        wait_for(lambda: node_json(subnet, "miner-0").get("state") == "running", 60, "miner-0 serving")
        published = chain_axon(subnet, "miner-0")
        assert published.endswith(":" + node_json(subnet, "miner-0")["endpoint"].rpartition(":")[2])

        # the copy an operator starts by mistake (pm2 twice, a shell next to `devnet up`)
        copy = subprocess.run([sys.executable, "-m", "tensorage", "miner", *subnet.common("miner-0"), *MINER],
                              capture_output=True, text=True, timeout=30)
        assert copy.returncode != 0
        lines = [ln for ln in copy.stderr.splitlines() if ln.strip() and "devnet:" not in ln]
        assert len(lines) == 1 and f"in use by a running miner (pid {first.pid})" in lines[0], copy.stderr
        assert "tensorage-console --attach" in lines[0]
        assert chain_axon(subnet, "miner-0") == published  # it published nothing
        assert node_json(subnet, "miner-0")["pid"] == first.pid and first.poll() is None

        # the chain stops pointing at us (what the copy did before the lock): the next sync republishes
        chain = Devnet.open(subnet.root)
        try:
            chain.serve_hotkey(subnet.hotkey("miner-0"), "127.0.0.1", dead_port())
        finally:
            chain.close()
        assert chain_axon(subnet, "miner-0") != published
        run_job(subnet, "miner-0", "sync")
        wait_for(lambda: chain_axon(subnet, "miner-0") == published, 30, "miner-0 to publish its address again")
        wait_for(lambda: "published it again" in subnet.log("miner-0"), 10, "the republish in the log")
    finally:
        subnet.stop_all()
    from tensorage.storage.lock import holder

    assert holder(Layout(subnet.db_root("miner-0"))) is None  # the lock goes with the process


def test_the_lock_names_its_holder_and_is_free_once_released(tmp_path):
    from tensorage.storage.lock import NodeLock, holder

    layout = Layout(tmp_path / "root")
    first, second = NodeLock(layout), NodeLock(layout)
    first.acquire("validator")
    try:
        held = holder(layout)
        assert held is not None and held.role == "validator"
        try:
            second.acquire("miner")
        except Exception as exc:
            assert "in use by a running validator" in str(exc) and "its own --db_root_path" in str(exc)
        else:
            raise AssertionError("two locks on one root")
    finally:
        first.release()
    assert holder(layout) is None
    second.acquire("miner")
    second.release()
