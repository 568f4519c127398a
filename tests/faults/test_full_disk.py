"""A disk that fills up under a node: during plotting (another program takes the free space while a
plot is being built) and during a shard write (the miner's disk has no room for the bytes it is
receiving). Real size-limited tmpfs mounts (root only; skipped with the reason otherwise).

What this suite owns: no byte already stored is lost, nothing half made stays on the disk, and the
node finishes the work once the disk has room again. (How the reallocate job reports a full disk is
tested where it is built.)"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import subprocess
from pathlib import Path

import pytest

from tensorage.chain.devnet_init import init_devnet
from tensorage.chain.port import Metagraph

from ..shard_world import World, add_validator, make_gateway, start_miner, tree_of
from ..subnet import Subnet
from .integrity import PlotWitness, check_shards, rows, temp_files
from .procs import has_child_running, reap, tensorage_proc, wait_until

pytestmark = [pytest.mark.faults, pytest.mark.timeout(600)]


@pytest.fixture
def small_disk(tmp_path):
    """A tmpfs of a given size, unmounted afterwards."""
    mounts: list[Path] = []

    def make(name: str, size: str) -> Path:
        if os.geteuid() != 0:
            pytest.skip("a full disk is a size-limited tmpfs here, and mounting one needs root")
        path = tmp_path / name
        path.mkdir()
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], capture_output=True,
                              text=True)
        if done.returncode:
            pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
        mounts.append(path)
        return path

    yield make
    for path in mounts:
        subprocess.run(["umount", "-l", str(path)], capture_output=True)


def fill(disk: Path, leave: int = 0) -> Path:
    """Take the disk's free space (all but ``leave`` bytes), as another program would."""
    filler = disk / "filler"
    with open(filler, "ab") as f:
        block = b"\0" * (1 << 16)
        while True:
            free = os.statvfs(disk).f_bavail * os.statvfs(disk).f_frsize
            if free <= leave:
                break
            try:
                f.write(block[:max(4096, min(len(block), free - leave))])
                f.flush()
            except OSError as exc:
                if exc.errno != errno.ENOSPC:
                    raise
                break
    return filler


def test_a_disk_that_fills_mid_plot_loses_no_plot_and_leaves_nothing_half_made(tmp_path, small_disk, ledger, request,
                                                                                rng):
    root = tmp_path / "devnet"
    init_devnet(root, miners=1, validators=1)
    subnet = Subnet(root)
    disk = small_disk("disk", "64m")
    node = disk / "miner-0"
    args = ["allocate", *subnet.common("miner-0")[:-2], "--db_root_path", str(node), "--size_in_gb", "0.02",
            "--disable_prompt", "--workers", "1"]
    witness = PlotWitness(subnet.hotkey("miner-0"))
    log = tmp_path / "allocate.log"
    proc = again = None
    with ledger.inject("disk_full", "allocator", "mid-plot", request.node.nodeid) as fault, \
            contextlib.ExitStack() as cleanup:
        cleanup.callback(lambda: reap(proc, again))
        proc = tensorage_proc(args, log)
        # let one plot finish (bytes that must survive), then fill the disk while the next is plotting
        wait_until(lambda: proc.poll() is not None or rows(node / "index" / "miner.sqlite",
                   "SELECT seed FROM plots WHERE state IN ('done', 'verified')"), 120, "a first plot")
        wait_until(lambda: proc.poll() is not None or has_child_running(proc, "plot_child"), 60, "a second plot")
        filler = fill(disk, leave=rng.randint(0, 1 << 20))
        # chiapos sleeps and retries a short write forever; the allocator must stop that plot, say
        # why, and end (this hung for good before)
        code = proc.wait(timeout=120)
        out = log.read_text()
        assert "the disk is full" in out, out[-2000:]
        assert code != 0, "allocate said done with exit 0 although a plot failed for the full disk"  # exited 0 before
        found = witness.check(node)
        if found.lost_bytes:
            ledger.lost(fault, found.lost_bytes, "; ".join(found.lost))
        assert found.leftovers == [] and temp_files(node) == [], (found.leftovers, temp_files(node))
        # room again: the next run finishes the share, every plot whole
        filler.unlink()
        again = tensorage_proc(args, log)
        assert again.wait(timeout=300) == 0, log.read_text()[-3000:]
        found = witness.check(node)
        assert found.lost_bytes == 0 and found.leftovers == [] and temp_files(node) == [], found
        states = {s for (s,) in rows(node / "index" / "miner.sqlite", "SELECT state FROM plots")}
        assert states == {"verified"}, states


async def test_a_disk_that_fills_mid_shard_write_keeps_every_stored_shard(tmp_path, small_disk, ledger, request, rng):
    from tensorage.gateway.certificates import certificate
    from tensorage.net.objects import CERTIFICATE_HEADER

    disk = small_disk("shards", "8m")
    world = World(root=disk, mg=Metagraph(netuid=7, block=100, neurons=[]))
    try:
        miner = await start_miner(world, "miner", 1)
        add_validator(world, "gw", 2, stake=100.0)
        gw = make_gateway(world, "gw")
        spool = tmp_path / "spool"
        spool.mkdir()

        async def place(data: bytes) -> str:
            tree = tree_of(data)
            path = spool / tree.id_hex
            path.write_bytes(data)
            cert = certificate(gw, miner.hotkey, tree.id_hex, len(data))
            await gw.peers.put(gw.peers.neuron(miner.hotkey), tree.id_hex, path, len(data), cert)
            return tree.id_hex

        kept = [await place(rng.randbytes(300_000)) for _ in range(2)]
        node = disk / "miner"
        with ledger.inject("disk_full", "miner", "mid-shard-write", request.node.nodeid) as fault:
            big = rng.randbytes(2_000_000)  # the miner has room for it when the PUT starts
            tree = tree_of(big)
            cert = certificate(gw, miner.hotkey, tree.id_hex, len(big))
            filled: list[Path] = []

            async def body():
                """The gateway's stream, during which another program takes the miner's free space."""
                for off in range(0, len(big), 64 << 10):
                    if off == 256 << 10:
                        await asyncio.sleep(0.2)  # the miner has written the first chunks
                        filled.append(await asyncio.to_thread(fill, disk, 0))
                    yield big[off:off + (64 << 10)]

            reply = await gw.peers.client.put_stream("127.0.0.1", miner.port, f"/v1/shards/{tree.id_hex}?size={len(big)}",
                                                     miner.hotkey, body(), len(big),
                                                     headers={CERTIFICATE_HEADER: cert.entry().hex()})
            assert filled, "the disk was not filled during the PUT"
            # the gateway learns the miner's disk is full (507, as for any miner without room: place it
            # elsewhere), not an internal error that makes the miner look broken
            assert reply.status == 507 and b"disk_full" in reply.body, (reply.status, reply.body[:500])
            found = check_shards(node)
            if found.lost_bytes:
                ledger.lost(fault, found.lost_bytes, "; ".join(found.lost))
            assert found.leftovers == [], f"a half-written shard stayed on the full disk: {found.leftovers}"
            filled[0].unlink()
            placed = await place(big)  # room again: the same shard is taken whole
            found = check_shards(node)
            assert found.lost_bytes == 0 and found.leftovers == [], found
            assert {placed, *kept} <= {p.name for p in (node / "shards").iterdir()}
    finally:
        await world.close()
