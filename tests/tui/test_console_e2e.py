"""tensorage-console end to end in tmux: a real devnet started by the console, driven by keys.

What an operator does: start the console on a fresh devnet, add a miner with the wizard,
watch it plot, see challenges pass and weights set, then quit: exit code 0 and no process
left that was started for this devnet root.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

pytestmark = pytest.mark.skipif(shutil.which("tmux") is None, reason="needs tmux")

CHALLENGE_PASS = re.compile(r"validator-\d\s+miner-\d\s+\d+\s+\d+/[\d.]+\s+(?:[-\d/]+\s+)?pass")  # audits: - or 3/3
FITS = re.compile(r"fits here: ([0-9.]+) GB to ([0-9.]+) GB")
PLOTTING = re.compile(r"(plotting\s+k\d\d [0-9a-f]{8} \d+%|plotting \d+/\d+)")


def console_command() -> str:
    exe = shutil.which("tensorage-console", path=os.path.dirname(sys.executable) + os.pathsep + os.environ["PATH"])
    if exe:
        return shlex.quote(exe)
    return f"{shlex.quote(sys.executable)} -c 'from tensorage.cli import console_main; console_main()'"


class Tmux:
    def __init__(self, name: str, width: int, height: int, command: str) -> None:
        self.name = name
        subprocess.run(["tmux", "new-session", "-d", "-s", name, "-x", str(width), "-y", str(height), command],
                       check=True)

    def keys(self, *keys: str, literal: bool = False) -> None:
        for key in keys:
            subprocess.run(["tmux", "send-keys", "-t", self.name, *(["-l"] if literal else []), key], check=True)
            time.sleep(0.3)  # one key at a time, like a person (a burst can be read as a paste)

    def screen(self) -> str:
        out = subprocess.run(["tmux", "capture-pane", "-p", "-t", self.name], capture_output=True, text=True)
        return out.stdout

    def wait_for(self, what: str, test, timeout: float) -> str:
        """Poll the screen until ``test(screen)`` holds (the timeout only bounds a hung run)."""
        deadline = time.monotonic() + timeout
        screen = ""
        while time.monotonic() < deadline:
            screen = self.screen()
            if test(screen):
                return screen
            time.sleep(0.5)
        raise AssertionError(f"never saw {what}; the screen was:\n{screen}")

    def kill(self) -> None:
        subprocess.run(["tmux", "kill-session", "-t", self.name], capture_output=True)


def leftovers(root: Path) -> list[str]:
    """Processes started for this devnet root (the tmux pane's own shell aside)."""
    out = []
    for proc in psutil.process_iter(["pid", "name", "cmdline"]):
        cmd = proc.info["cmdline"] or []
        if proc.pid == os.getpid() or proc.info["name"] in ("tmux", "tmux: server", "sh", "bash", "dash", "sleep"):
            continue
        if any(str(root) in part for part in cmd):
            out.append(f"{proc.pid} {' '.join(cmd)[:160]}")
    return out


def cleanup(tmux: Tmux, root: Path) -> None:
    """After a failure too: close the pane, then end anything still running for this root."""
    tmux.kill()
    deadline = time.monotonic() + 15
    while leftovers(root) and time.monotonic() < deadline:
        time.sleep(0.3)
    for line in leftovers(root):
        try:
            os.kill(int(line.split()[0]), 9)
        except ProcessLookupError:
            pass


def nonzero_weight(screen: str) -> bool:
    if "set at block" not in screen:
        return False
    for line in screen.splitlines():
        m = re.match(r"\s*\d+\s+miner-\d+\s+\S+\s+\S+ [kMG]?B\s+(\d\.\d{3})", line)
        if m and float(m.group(1)) > 0:
            return True
    return False


def run_console(tmp_path: Path, size: tuple[int, int], extra: str, session: str) -> tuple[Tmux, Path, Path]:
    root = tmp_path / "devnet"
    exit_file = tmp_path / "exit-code"
    command = (f"{console_command()} --network devnet --devnet.root {shlex.quote(str(root))} "
               f"--seconds_per_round 3 --seconds_per_weights 10 {extra}; "
               f"echo $? > {shlex.quote(str(exit_file))}; sleep 60")
    return Tmux(session, size[0], size[1], command), root, exit_file


def add_miner_with_the_wizard(tmux: Tmux, size_gb: str) -> str:
    tmux.keys("a")
    tmux.wait_for("the wizard", lambda s: "Add a miner to the devnet" in s, 20)
    tmux.keys("Enter")  # the proposed path: <root>/nodes/miner-N
    screen = tmux.wait_for("the size step", lambda s: "Size in GB" in s and FITS.search(s) is not None, 20)
    low = FITS.search(screen).group(1)  # the range shown is the range accepted (issue 15)
    tmux.keys("C-u")
    tmux.keys(f"{float(low) - 0.001:.3f}", literal=True)
    tmux.keys("Enter")
    tmux.wait_for("one step below the range refused in its words", lambda s: f"use {low} GB or more" in s, 20)
    tmux.keys("C-u")
    tmux.keys(size_gb, literal=True)
    tmux.keys("Enter")
    screen = tmux.wait_for("the preview", lambda s: "Preview of the partition" in s and "client reserve" in s, 20)
    assert "temp while plotting" in screen and "time to plot" in screen
    tmux.keys("Enter")
    tmux.wait_for("the workers step", lambda s: "Workers: plots built at once" in s, 20)
    tmux.keys("C-u")
    tmux.keys("0", literal=True)
    tmux.keys("Enter")
    tmux.wait_for("zero workers refused", lambda s: "0 workers would never plot" in s, 20)
    tmux.keys("C-u")
    tmux.keys("1", literal=True)
    tmux.keys("Enter")
    tmux.wait_for("the confirmation", lambda s: f"Add a miner with {size_gb} GB" in s, 20)
    tmux.keys("y")
    return tmux.wait_for("plotting progress", lambda s: PLOTTING.search(s) is not None, 90)


def quit_cleanly(tmux: Tmux, root: Path, exit_file: Path) -> None:
    tmux.keys("q")
    deadline = time.monotonic() + 60
    while not exit_file.exists() and time.monotonic() < deadline:
        time.sleep(0.3)
    assert exit_file.exists(), f"the console did not exit; the screen was:\n{tmux.screen()}"
    assert exit_file.read_text().strip() == "0", tmux.screen()
    deadline = time.monotonic() + 10  # children die with the console (PDEATHSIG) within moments
    while leftovers(root) and time.monotonic() < deadline:
        time.sleep(0.3)
    assert leftovers(root) == []
    assert_nothing_half_written(root)


def assert_nothing_half_written(root: Path) -> None:
    """Every miner: no temp plot files, no plot left 'plotting' in its index."""
    from tensorage.storage.models import MinerIndex, PlotState

    miners = sorted((root / "nodes").glob("miner-*"))
    assert miners
    for node in miners:
        tmp = node / "plots" / "tmp"
        assert not tmp.exists() or not any(tmp.iterdir()), f"temp files left in {tmp}: {list(tmp.iterdir())}"
        index = MinerIndex(node / "index" / "miner.sqlite")
        try:
            assert index.plots(PlotState.PLOTTING) == [], f"{node.name} left a plot half made"
        finally:
            index.close()


def test_console_runs_a_devnet_in_tmux(tmp_path):
    """One miner and one validator started by the console, a second miner added with the wizard."""
    tmux, root, exit_file = run_console(tmp_path, (100, 30), "--miners 1 --validators 1", f"tsg-e2e-{os.getpid()}")
    try:
        screen = tmux.wait_for("the devnet running", lambda s: "2/2 node processes running" in s, 60)
        assert "devnet: plots are k=18-20" in screen and "metagraph: netuid 7" in screen
        screen = add_miner_with_the_wizard(tmux, "0.03")
        assert "miner-1" in screen
        tmux.keys("Escape")  # plotting goes on; the wizard closes
        tmux.keys("3")
        tmux.wait_for("a passed challenge", lambda s: CHALLENGE_PASS.search(s) is not None, 90)
        tmux.keys("4")
        tmux.wait_for("a non-zero weight", nonzero_weight, 90)
        tmux.keys("2")
        tmux.wait_for("both miners on the disk screen", lambda s: "miner-0" in s and "miner-1" in s, 20)
        add_miner_with_the_wizard(tmux, "0.08")  # and quit while it plots: nothing may be left half made
        quit_cleanly(tmux, root, exit_file)
    finally:
        cleanup(tmux, root)


@pytest.mark.slow
def test_console_default_devnet_at_80x24_every_screen(tmp_path):
    """README's first command as is (6 miners, 2 validators) at 80x24, a 7th miner added, every screen,
    every row and every ETA whole (issue 15), then quit."""
    tmux, root, exit_file = run_console(tmp_path, (80, 24), "", f"tsg-e2e-slow-{os.getpid()}")
    try:
        tmux.wait_for("the devnet running", lambda s: "8/8 node processes running" in s, 120)
        add_miner_with_the_wizard(tmux, "0.05")
        tmux.keys("Escape", "2")
        tmux.wait_for("seven miners, each with its whole ETA", lambda s: "miners (7)" in s and all(
            re.search(rf"^  miner-{i} .* (done|\d+s|\d+ min|[\d.]+ h|-)[ ▁▂▃▄▅▆▇█]*$", s, re.M) for i in range(7)),
            60)
        tmux.keys("3")
        tmux.wait_for("a passed challenge", lambda s: CHALLENGE_PASS.search(s) is not None, 120)
        tmux.keys("4")
        tmux.wait_for("a non-zero weight", nonzero_weight, 120)
        tmux.keys("5")
        tmux.wait_for("jobs", lambda s: "devnet_epoch" in s and "node processes" in s, 30)
        tmux.keys("Tab", *["Down"] * 9)  # the node processes that do not fit: scrolled to by keys
        tmux.wait_for("the last node process", lambda s: re.search(r"^  miner-6 +miner ", s.split("node processes")[-1],
                                                                    re.M) is not None, 30)
        tmux.keys("6")
        tmux.wait_for("logs", lambda s: "level ≥ info" in s, 30)
        tmux.keys("?", literal=True)
        tmux.wait_for("help", lambda s: "this help" in s, 30)
        tmux.keys("Escape", "1")
        tmux.wait_for("incentive on the overview", lambda s: re.search(r"miner-\d.*0\.[0-9]*[1-9]", s), 120)
        quit_cleanly(tmux, root, exit_file)
    finally:
        cleanup(tmux, root)
