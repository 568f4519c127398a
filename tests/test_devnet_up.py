"""`tensorage devnet up` as an operator runs it: a supervisor of real processes that
restarts a crashed node, writes a log per node and stops cleanly on SIGTERM."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

import psutil
import pytest

from tensorage.chain.devnet_init import init_devnet

from .conftest import tensorage
from .subnet import wait_for


def node_procs(root) -> dict[str, psutil.Process]:
    found = {}
    for proc in psutil.process_iter(["cmdline"]):
        cmd = proc.info["cmdline"] or []
        if "--devnet.root" in cmd and str(root) in cmd and "--wallet.name" in cmd and proc.pid != os.getpid():
            found[cmd[cmd.index("--wallet.name") + 1]] = proc
    return found


def status(root) -> dict:
    result = tensorage("status", "--json", "--subtensor.network", "devnet", "--devnet.root", str(root))
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


@pytest.mark.slow  # 16 s; tests/tui/test_console_e2e.py runs the devnet under the console in tmux by default
def test_devnet_up_supervises_and_stops_cleanly(tmp_path):
    root = tmp_path / "devnet"
    init_devnet(root, miners=1, validators=1, miner_sizes_gb=(0.03,))
    up = subprocess.Popen([sys.executable, "-m", "tensorage", "devnet", "up", "--devnet.root", str(root),
                           "--seconds_per_round", "2", "--seconds_per_weights", "5"],
                          stdout=subprocess.DEVNULL, stderr=open(tmp_path / "up.log", "wb"))
    try:
        def passing() -> bool:
            rounds = status(root)["nodes"]["validator-0"].get("validator", {}).get("miners", {})
            return any(r["result"] == "pass" for m in rounds.values() for r in m["last_rounds"])

        wait_for(passing, 90, "a passing proof round")
        wait_for(lambda: status(root)["metagraph"][0]["last_update"] > 0, 30, "weights on chain")
        assert (root / "logs" / "miner-0.log").stat().st_size > 0
        assert (root / "logs" / "validator-0.log").stat().st_size > 0

        miner = node_procs(root)["miner-0"]
        miner.kill()  # a crash
        wait_for(lambda: (p := node_procs(root).get("miner-0")) is not None and p.pid != miner.pid, 30,
                 "the supervisor to restart miner-0")
        wait_for(lambda: "miner-0: exited" in (tmp_path / "up.log").read_text(), 10, "the crash to be reported")
        new_pid = node_procs(root)["miner-0"].pid
        wait_for(lambda: status(root)["nodes"]["miner-0"]["process"]["pid"] == new_pid, 30, "the new miner to serve")
    finally:
        up.send_signal(signal.SIGTERM)
        code = up.wait(timeout=30)
    assert code == 0
    wait_for(lambda: not node_procs(root), 10, "every node process to exit")
    nodes = status(root)["nodes"]
    assert nodes["miner-0"]["process"]["state"] == "stopped"
    assert nodes["validator-0"]["process"]["state"] == "stopped"
