"""Client data at size, on its own devnet (6 miners of 0.03 GB: each 16 MiB shard of a 64 MiB file
makes its miner give up a plot for it). Slow: run with `pytest -m slow`."""

from __future__ import annotations

import os

import pytest

from tensorage.storage.models import MinerIndex, PlotState

from .conftest import tensorage
from .objectnet import ObjectNet, cli_ids
from .subnet import wait_for

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def net(tmp_path_factory):
    net = ObjectNet(tmp_path_factory.mktemp("objects-slow") / "devnet", 6, 0.03,
                    ("--seconds_per_round", "30", "--gateway.repair_s", "3600"))
    try:
        net.start()
        yield net
    finally:
        net.close()


def plotted(net: ObjectNet, name: str) -> int:
    index = MinerIndex(net.subnet.db_root(name) / "index" / "miner.sqlite")
    try:
        return len(index.plots(PlotState.DONE, PlotState.VERIFIED))
    finally:
        index.close()


def test_64_mib_round_trip_and_miners_make_room(net, tmp_path):
    for name in net.miners:  # a full share: 4 k=18 plots, 14.5 MB free of 30
        wait_for(lambda name=name: plotted(net, name) == 4, 300, f"{name} to finish plotting")
    src = tmp_path / "big"
    with open(src, "wb") as f:
        for _ in range(64):
            f.write(os.urandom(1 << 20))
    key = str(tmp_path / "client.key")
    result = tensorage("store", str(src), "--key_file", key, *net.flags, timeout=900)
    assert result.returncode == 0, result.stderr
    oid = cli_ids(result.stdout)[str(src)]
    result = tensorage("retrieve", oid, "-o", str(tmp_path / "back"), "--key_file", key, *net.flags, timeout=900)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "back").read_bytes() == src.read_bytes()
    assert "audits on 6 miners, 0 shards lost" in net.audit()
    for name in net.miners:  # every miner holds a 16 MiB shard in a 30 MB share: a plot gave way
        assert max(net.shard_files(name).values()) == 16 << 20  # 256 stripes of 64 KiB
        assert "client shards need the room" in net.subnet.log(name) and plotted(net, name) == 3
