"""kill -9 of `tensorage allocate` at seeded random points, 20+ times on one miner root: before
plotting, mid-plot (a plotting child running), mid-verify, between plots. After every kill the plot
index and the plot files agree byte for byte (every listed plot present, readable, unchanged since
first seen whole); the next run removes what was half made and resumes; the last run finishes with
no temp file, no partial plot and every plot verified."""

from __future__ import annotations

import pytest

from tensorage.chain.devnet_init import init_devnet

from ..subnet import Subnet
from .integrity import PlotWitness, temp_files
from .procs import has_child_running, kill9, reap, tensorage_proc, wait_until

pytestmark = [pytest.mark.faults, pytest.mark.timeout(600)]

KILLS = 20
SHARE_GB = 0.08  # ~18 k18 plots: more than 20 interrupted runs finish


def test_kill_9_of_the_allocator_at_random_points_loses_no_plot(tmp_path, rng, ledger, request):
    root = tmp_path / "devnet"
    init_devnet(root, miners=1, validators=1)
    subnet = Subnet(root)
    node = subnet.db_root("miner-0")
    witness = PlotWitness(subnet.hotkey("miner-0"))
    log = tmp_path / "allocate.log"
    share = SHARE_GB
    kills = 0
    proc = final = None
    request.addfinalizer(lambda: reap(proc, final))
    while kills < KILLS:
        proc = tensorage_proc(["allocate", *subnet.common("miner-0"), "--size_in_gb", str(share), "--disable_prompt",
                               "--workers", "1"], log)
        point = rng.choice(["random-delay", "mid-plot", "mid-plot"])
        if point == "mid-plot":  # a plotting child is running: kill at a random moment of its plot
            try:
                wait_until(lambda: proc.poll() is not None or has_child_running(proc, "plot_child"), 60, "a plot")
            except AssertionError:
                pass
            delay = rng.uniform(0.0, 2.0)
        else:
            delay = rng.uniform(0.0, 3.0)
        try:
            proc.wait(timeout=delay)
        except Exception:  # noqa: BLE001 - still running: the normal case
            pass
        if proc.poll() is not None:  # the share was full before the kill: ask for more room next time
            assert proc.returncode == 0, log.read_text()[-2000:]
            share += 0.02
            continue
        with ledger.inject("kill9", "allocator", f"{point} +{delay:.2f}s", request.node.nodeid) as fault:
            kill9(proc)
            kills += 1
            found = witness.check(node)
            if found.lost_bytes:
                ledger.lost(fault, found.lost_bytes, "; ".join(found.lost))
    # the run after the last kill recovers, resumes and finishes
    final = tensorage_proc(["allocate", *subnet.common("miner-0"), "--size_in_gb", str(share), "--disable_prompt",
                            "--workers", "1"], log)
    assert final.wait(timeout=300) == 0, log.read_text()[-3000:]
    found = witness.check(node)
    assert found.lost_bytes == 0, found.lost
    assert found.leftovers == [] and temp_files(node) == [], (found.leftovers, temp_files(node))
    import sqlite3
    con = sqlite3.connect(node / "index" / "miner.sqlite")
    states = dict(con.execute("SELECT state, count(*) FROM plots GROUP BY state").fetchall())
    con.close()
    assert set(states) == {"verified"}, states  # every plot made and verified, none planned or half made
