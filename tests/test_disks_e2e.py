"""A miner process with two disks on a real devnet: it plots on both and answers windows from both;
one disk removed mid-run (renamed away) takes its plots out of the listing, not the node down, and
`status --json` names it; put back, its plots return. Real processes, signed HTTP, temp dirs."""

from __future__ import annotations

import json
import shutil

import pytest

from tensorage.storage.models import MinerIndex, PlotState

from .conftest import tensorage
from .subnet import Subnet, wait_for

# real allocate, miner and validator processes, 25 s: behind the slow marker; tests/test_disks.py loses and
# returns a disk under a running miner engine (listing, answers, status snapshot) in the default suite
pytestmark = pytest.mark.slow

SIZE = "0.05"


def node_json(subnet: Subnet) -> dict:
    try:
        return json.loads((subnet.db_root("miner-0") / "index" / "node.json").read_text())
    except (OSError, ValueError):
        return {}


def disks(subnet: Subnet) -> dict[str, dict]:
    return {d["path"]: d for d in node_json(subnet).get("disks", [])}


def plots_on(root) -> int:
    index = MinerIndex(root / "index" / "miner.sqlite")
    try:
        return len(index.plots(PlotState.VERIFIED))
    finally:
        index.close()


def test_two_disks_one_lost_mid_run(tmp_path):
    subnet = Subnet.create(tmp_path / "devnet", miners=1, validators=1, sizes=(0.05,))
    home, other = subnet.db_root("miner-0"), tmp_path / "disk-b"
    roots = ["--db_root_path", str(home), str(other)]
    done = tensorage("allocate", *subnet.common("miner-0"), *roots, "--size_in_gb", SIZE, "--disable_prompt",
                     "--workers", "2", timeout=240)
    assert done.returncode == 0, done.stderr
    on_home, on_other = plots_on(home), plots_on(other)
    assert on_home >= 2 and on_other >= 2, (on_home, on_other)  # plotted on both disks
    hotkey = subnet.hotkey("miner-0")
    try:
        subnet.start_miner("miner-0", float(SIZE), *roots, "--seconds_per_reallocate", "3600")
        subnet.start_validator("validator-0")
        wait_for(lambda: node_json(subnet).get("plots_held") == on_home + on_other, 60, "the miner serving both disks")
        # windows answered from both disks: passing rounds on the listing of every plot
        wait_for(lambda: sum(r.result == "pass" for r in subnet.rounds("validator-0", hotkey)) >= 2, 120,
                 "two passing windows")
        seen = max(r.id for r in subnet.rounds("validator-0", hotkey))
        full_listings = {r.listing for r in subnet.rounds("validator-0", hotkey)}

        shutil.move(str(other), str(tmp_path / "disk-b-away"))  # the disk is gone mid-run
        wait_for(lambda: disks(subnet).get(str(other), {}).get("state") == "lost", 30, "disk b marked lost")
        assert subnet.alive("miner-0")
        snap = node_json(subnet)
        assert snap["plots_held"] == on_home and disks(subnet)[str(home)]["state"] == "ok"
        status = tensorage("status", "--json", "--offline", *subnet.common("miner-0"), *roots)
        assert status.returncode == 0, status.stderr
        by_path = {d["path"]: d for d in json.loads(status.stdout)["disks"]}
        assert by_path[str(other)]["state"] == "lost" and str(other) in by_path[str(other)]["reason"]
        # the node keeps answering, from disk a, on a listing without disk b's plots
        wait_for(lambda: any(r.result == "pass" and r.id > seen and r.listing not in full_listings
                             for r in subnet.rounds("validator-0", hotkey)), 120,
                 "a passing window after the loss")
        assert not other.exists()  # nothing was recreated where the disk was

        shutil.move(str(tmp_path / "disk-b-away"), str(other))  # back
        wait_for(lambda: disks(subnet).get(str(other), {}).get("state") == "ok"
                 and node_json(subnet).get("plots_held") == on_home + on_other, 30, "disk b back")
        assert subnet.alive("miner-0")
    finally:
        subnet.stop_all()
