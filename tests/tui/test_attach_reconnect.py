"""Issue 9, defect 3, end to end in tmux: a console attached to a miner follows it through a restart
on a new port, and says so on screen. The miner is a real process (as under pm2 or systemd)."""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import signal

import pytest

from ..subnet import Subnet, wait_for
from .test_console_e2e import Tmux, console_command

pytestmark = pytest.mark.skipif(shutil.which("tmux") is None, reason="needs tmux")


def state(subnet: Subnet) -> dict:
    try:
        return json.loads((subnet.db_root("miner-0") / "index" / "node.json").read_text())
    except (OSError, ValueError):
        return {}


def serving(subnet: Subnet) -> str:
    """The running miner's endpoint once it serves (its state file names its own pid)."""
    s = state(subnet)
    proc = subnet.procs.get("miner-0")
    ok = s.get("state") == "running" and proc is not None and s.get("pid") == proc.pid and s.get("endpoint")
    return s["endpoint"] if ok else ""


def test_attached_console_follows_its_node_to_a_new_port(plotted_devnet, tmp_path):
    subnet = Subnet(plotted_devnet)
    (subnet.root / "logs").mkdir(exist_ok=True)
    miner = ("--seconds_per_reallocate", "3600")
    subnet.start_miner("miner-0", 0.03, *miner)
    exit_file = tmp_path / "exit-code"
    tmux = None
    try:
        first = wait_for(lambda: serving(subnet), 60, "miner-0 serving")
        command = (f"{console_command()} --attach --network devnet --devnet.root {shlex.quote(str(subnet.root))} "
                   f"--wallet.name miner-0; echo $? > {shlex.quote(str(exit_file))}; sleep 60")
        tmux = Tmux(f"tsg-attach-{os.getpid()}", 100, 30, command)
        tmux.wait_for("the console attached", lambda s: f"attached at {first}" in s and "4 plots held" in s, 60)

        subnet.kill("miner-0", signal.SIGTERM)  # pm2 restart: a new process, a new port
        tmux.wait_for("the console to notice", lambda s: "node lost" in s or "looking for it" in s, 30)
        subnet.start_miner("miner-0", 0.03, *miner)
        second = wait_for(lambda: serving(subnet), 60, "miner-0 serving again")
        assert second != first
        screen = tmux.wait_for("the console to follow the node", lambda s: f"attached at {second}" in s, 60)
        assert "node lost" not in screen and first not in screen
        tmux.keys("6")
        screen = tmux.wait_for("the reconnection said on screen", lambda s: "found the node again" in s, 20)
        assert re.search(rf"found the node again at {re.escape(second)}\b", screen), screen
        tmux.keys("q")
        wait_for(lambda: exit_file.exists(), 30, "the console to quit")
        assert exit_file.read_text().strip() == "0"
        assert subnet.alive("miner-0"), "quitting an attached console leaves the node running"
    finally:
        if tmux is not None:
            tmux.kill()
        subnet.stop_all()
