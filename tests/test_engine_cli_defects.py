"""Issue 15, item 0: engine and CLI defects an operator met on the devnet.

Run in this process through ``tensorage.cli.run`` (the same code as the `tensorage` script) unless a
real node process is the point."""

from __future__ import annotations

import json

import pytest

from tensorage.cli import apply_devnet_defaults, run
from tensorage.config import DEVNET_INSECURE_NOTICE, settings_from_namespace
from tensorage.storage import share as stored_share
from tensorage.storage.layout import Layout


def devnet_args(root, name: str = "miner-0") -> list[str]:
    return ["--subtensor.network", "devnet", "--devnet.root", str(root), "--wallet.name", name]


# --- a default is not a typed flag -----------------------------------------------------------------


def test_the_devnet_spec_size_is_a_default_not_a_typed_flag(devnet_root):
    settings = apply_devnet_defaults(settings_from_namespace({"subtensor.network": "devnet",
                                                              "devnet.root": str(devnet_root),
                                                              "wallet.name": "miner-0"}))
    assert settings.size_in_gb > 0 and settings.db_root_path  # the spec's share and the node's own root
    assert stored_share.flags_of(settings) == (None, None)


def test_status_of_a_stopped_devnet_node_keeps_its_stored_share(devnet_root, capsys):
    """The issue: without --size_in_gb the devnet's default overrode the stored share (15 plots -> 3)
    and `status` said `source: flag`."""
    layout = Layout(devnet_root / "nodes" / "miner-0")
    layout.ensure()
    stored_share.store(layout, 0.06, None, "allocate", (0.06, None))
    before = (layout.index / stored_share.SHARE_FILE).read_bytes()
    assert run(["status", "--json", "--offline", *devnet_args(devnet_root)]) == 0
    share = json.loads(capsys.readouterr().out)["share"]
    assert share["source"] == "stored" and share["size_in_gb"] == 0.06, share
    assert (layout.index / stored_share.SHARE_FILE).read_bytes() == before


# --- `status` renders every role, stopped and running ------------------------------------------------


def write_node_json(layout: Layout, role: str, state: str, **extra) -> None:
    import os
    import time

    from tensorage.engines.snapshot import NODE_STATE_FILE, parse_snapshot

    snap = parse_snapshot({"role": role, "source": role, "state": state, "hotkey": "5x", "network": "devnet",
                           "db_root_path": str(layout.root), "pid": os.getpid(), "protocol": 1,
                           "started_at": time.time(), "updated_at": time.time(), **extra})
    (layout.index / NODE_STATE_FILE).write_text(snap.model_dump_json())


@pytest.mark.parametrize("role", ["validator", "miner"])
@pytest.mark.parametrize("state", ["stopped", "running", "dead"])
def test_status_table_renders_every_role_and_state(devnet_root, capsys, role, state):
    """The issue: `tensorage status` for a validator crashed with KeyError: 'partition'. A failed job
    (the full disk's reallocation) is shown, not only in --json."""
    from tensorage.storage.lock import NodeLock

    name = f"{role}-0"
    layout = Layout(devnet_root / "nodes" / name)
    layout.ensure()
    if role == "validator":
        assert run(["allocate", "--validator", "--disable_prompt", *devnet_args(devnet_root, name)]) == 0
    else:
        stored_share.store(layout, 0.06, None, "allocate", (0.06, None))
    failed = {"id": "reallocate", "seconds": 60, "runs": 1, "last_ok": False,
              "last_result": "DiskFull: the disk under /x is full"}
    write_node_json(layout, role, "stopped" if state == "stopped" else "running", jobs=[failed])
    lock = NodeLock(layout)
    if state == "running":
        lock.acquire(role)
    capsys.readouterr()
    try:
        code = run(["status", "--offline", *devnet_args(devnet_root, name)])
    finally:
        lock.release()
    out = " ".join(capsys.readouterr().out.split())  # the table's words, whatever the column widths
    assert code == 0, out
    assert f"role {role}" in out and "Traceback" not in out
    assert {"running": "process running (pid", "dead": "process dead", "stopped": "process stopped"}[state] in out
    assert "job reallocate failed: DiskFull: the disk under /x is full" in out
    if role == "miner":  # the README: status shows where the share came from
        assert "share 0.06 GB, from stored: set by `tensorage allocate`" in out
    else:
        assert "share" not in out and "partition" not in out and "validator 0 miners scored" in out


# --- a path that cannot hold data is refused in one line, by every command --------------------------


def one_line_error(capsys, code: int) -> str:
    err = capsys.readouterr().err.strip()
    assert code != 0, err
    notice = DEVNET_INSECURE_NOTICE.split(";")[0]
    lines = [ln for ln in err.splitlines() if ln.strip() and not ln.startswith(notice)]
    assert len(lines) == 1 and lines[0].startswith("error:"), err
    return lines[0]


@pytest.mark.parametrize("kind", ["file", "proc"])
@pytest.mark.parametrize("argv", [
    ["miner", "--db_root_path", "{p}"],
    ["miner", "--db_root_path", "{tmp}/home", "{p}"],  # a second disk
    ["validator", "--db_root_path", "{p}"],
    ["allocate", "--db_root_path", "{p}", "--size_in_gb", "0.03", "--disable_prompt"],
    ["allocate", "--db_root_path", "{tmp}/home", "{p}", "--size_in_gb", "0.03", "--disable_prompt"],
    ["devnet", "init", "--devnet.root", "{p}"],
    ["ls", "--wallet.path", "{p}"],
])
def test_a_path_that_cannot_hold_data_is_refused_in_one_line(devnet_root, tmp_path, capsys, argv, kind):
    """The issue: `tensorage miner --db_root_path <a file or /proc/x>` gave a traceback (shards/ was
    made before the path was checked); `allocate` and `validator` refused it in one line."""
    path = tmp_path / "a-file" if kind == "file" else "/proc/tensorage-x"
    (tmp_path / "a-file").write_text("not a directory")
    args = [a.format(p=path, tmp=tmp_path) for a in argv]
    if args[0] != "devnet":
        name = "validator-0" if args[0] == "validator" else "miner-0"
        args += ["--subtensor.network", "devnet", "--devnet.root", str(devnet_root)]
        args += ["--wallet.name", name] if args[0] not in ("ls",) else []
    line = one_line_error(capsys, run(args))
    assert str(path) in line or "--wallet.path" in line, line
    assert not (tmp_path / "home").exists()  # nothing made on the good disk either
    assert (tmp_path / "a-file").read_text() == "not a directory"


# --- a full disk: an operator's error, nothing lost, shown by `status` ------------------------------


@pytest.fixture
def small_disk(tmp_path):
    """A 40 MB tmpfs (root only: skipped elsewhere)."""
    import os
    import subprocess

    mnt = tmp_path / "disk"
    mnt.mkdir()
    if os.geteuid() != 0:
        pytest.skip("needs root to mount a 40 MB tmpfs")
    made = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=40m", "tmpfs", str(mnt)], capture_output=True)
    if made.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {made.stderr.decode().strip()}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def fill(path, leave: int = 0) -> None:
    """Write zeros until the device refuses, then give back ``leave`` bytes. Unbuffered: a buffered
    file kept the refused bytes and raised ENOSPC again when it was closed."""
    import errno
    import os

    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        block = b"\0" * (1 << 16)
        while True:
            try:
                os.write(fd, block)
            except OSError as exc:
                assert exc.errno == errno.ENOSPC
                break
        if leave:
            os.ftruncate(fd, max(0, os.fstat(fd).st_size - leave))
    finally:
        os.close(fd)


def test_a_full_disk_is_an_operators_error_that_loses_nothing_and_status_shows_it(devnet_root, small_disk, capsys):
    """The issue: a 40 MB tmpfs showed `OperationalError: cannot rollback - no transaction is active`
    as the reallocate job's result, and `status` mentioned no failure."""
    import asyncio

    from tensorage.chain.wallets import load_wallet
    from tensorage.engines.disks import DiskSet
    from tensorage.errors import DiskError
    from tensorage.events import EventBus

    root = small_disk / "m"
    settings = apply_devnet_defaults(settings_from_namespace({
        "subtensor.network": "devnet", "devnet.root": str(devnet_root), "wallet.name": "miner-0",
        "db_root_path": str(root), "size_in_gb": 0.02, "workers": 1, "disable_verify": True}))
    disks = DiskSet(settings, load_wallet(settings).hotkey.ss58_address, EventBus())
    try:
        done = asyncio.run(disks.allocate())
        assert done.plots >= 1
        plots_before = sorted(p.name for p in (root / "plots").glob("*.plot"))
        rows_before = sorted((p.seed, p.k) for p in disks.existing_plots())
        fill(small_disk / "filler")
        with pytest.raises(Exception) as refused:
            asyncio.run(disks.reallocate())
        assert isinstance(refused.value, DiskError), repr(refused.value)  # one line at the CLI, not a traceback
        assert "is full" in str(refused.value) and "free some space" in str(refused.value)
        assert "rollback" not in str(refused.value)
    finally:
        disks.close()
    assert sorted(p.name for p in (root / "plots").glob("*.plot")) == plots_before  # nothing lost
    reopened = DiskSet(settings, load_wallet(settings).hotkey.ss58_address, EventBus())
    try:
        assert sorted((p.seed, p.k) for p in reopened.existing_plots()) == rows_before
    finally:
        reopened.close()
    capsys.readouterr()
    assert run(["status", "--offline", "--db_root_path", str(root), *devnet_args(devnet_root)]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "disk the disk under" in out and "is full" in out and "free some space" in out, out


# --- false errors: a state is not a failure ------------------------------------------------------------


class PoolThatRacesARemoval:
    """The real prover pool, with ``before`` run as a lookup starts (what a reallocation or a shard
    upload does to a plot at that moment)."""

    def __init__(self, real, before) -> None:
        self.real, self.before = real, before

    async def prove(self, tasks, challenge, per_plot):
        self.before()
        return await self.real.prove(tasks, challenge, per_plot)

    def __getattr__(self, name):
        return getattr(self.real, name)


@pytest.mark.parametrize("on_purpose", [True, False])
async def test_a_plot_removed_on_purpose_is_not_reported_unreadable(plotted_devnet, on_purpose):
    """The issue: `removed plot … client shards need the room` was followed in the same second by
    `ERROR plot … unreadable during a challenge`. A plot that vanishes without being removed is
    still reported (the control)."""
    from tensorage.engines.run import build_node
    from tensorage.events import ErrorEvent, EventBus

    settings = settings_from_namespace({"subtensor.network": "devnet", "devnet.root": str(plotted_devnet),
                                        "wallet.name": "miner-0", "size_in_gb": 0.03,
                                        "db_root_path": str(plotted_devnet / "nodes" / "miner-0")})
    bus, errors = EventBus(), []
    bus.subscribe(lambda e: errors.append(e.message) if isinstance(e, ErrorEvent) else None)
    miner = build_node("miner", settings, bus)
    try:
        miner.refresh_plots()
        victim = min(miner.plots.values(), key=lambda p: p.path.stat().st_size)
        if on_purpose:
            remove = lambda: miner.allocator.home.free_for_shards(1)  # noqa: E731 - the smallest plot goes
        else:
            remove = lambda: victim.path.unlink()  # noqa: E731 - the disk lost it
        miner.pool = PoolThatRacesARemoval(miner.pool, remove)
        entries = [(bytes.fromhex(p.seed), p.k) for p in miner.plots.values()]
        proofs = await miner.prove_sample(entries, bytes(32), 1)
        assert len(proofs) == len(entries) and not victim.path.exists()
    finally:
        await miner.shutdown()
    unreadable = [m for m in errors if "unreadable" in m]
    if on_purpose:
        assert not unreadable, errors
        assert all(d.ok for d in miner.allocator.disks)
    else:
        assert unreadable and victim.seed[:8] in unreadable[0]


@pytest.mark.parametrize("shards_mb", [3, 14, 26])
async def test_a_share_full_of_client_shards_is_a_state_not_a_failure(plotted_devnet, shards_mb):
    """The issue: `job reallocate failed: no room to build a k=18 plot` was logged when shards
    legitimately filled the share, and counted in the Overview's error total."""
    from tensorage.engines.disks import DiskSet
    from tensorage.events import ErrorEvent, EventBus

    settings = settings_from_namespace({"subtensor.network": "devnet", "devnet.root": str(plotted_devnet),
                                        "wallet.name": "miner-0", "size_in_gb": 0.03, "workers": 2,
                                        "disable_verify": True,
                                        "db_root_path": str(plotted_devnet / "nodes" / "miner-0")})
    shards = settings.db_root / "shards"
    shards.mkdir(exist_ok=True)
    (shards / ("cd" * 32)).write_bytes(b"\1" * (shards_mb * 1_000_000))
    bus, errors = EventBus(), []
    bus.subscribe(lambda e: errors.append(e.message) if isinstance(e, ErrorEvent) else None)
    from tensorage.chain.wallets import load_wallet

    disks = DiskSet(settings, load_wallet(settings).hotkey.ss58_address, bus)
    try:
        await disks.reallocate()
        await disks.reallocate()  # and again, with the room the first one left
    finally:
        disks.close()
    assert not errors, errors


async def test_plots_planned_before_shards_filled_the_share_wait_without_an_error(plotted_devnet):
    """The plan counted the shards, yet the planned plot has no room once plotting starts (the plan
    reckons with estimated plot sizes, the share with real ones): the plots wait, no error."""
    from tensorage.chain.wallets import load_wallet
    from tensorage.engines.allocator import Allocator
    from tensorage.events import ErrorEvent, EventBus
    from tensorage.proofs.plots import peak_bytes
    from tensorage.storage.models import PlotState

    settings = settings_from_namespace({"subtensor.network": "devnet", "devnet.root": str(plotted_devnet),
                                        "wallet.name": "miner-0", "size_in_gb": 0.03, "workers": 2,
                                        "disable_verify": True,
                                        "db_root_path": str(plotted_devnet / "nodes" / "miner-0")})
    bus, errors = EventBus(), []
    bus.subscribe(lambda e: errors.append(e.message) if isinstance(e, ErrorEvent) else None)
    allocator = Allocator(settings, load_wallet(settings).hotkey.ss58_address, bus)
    try:
        for row in allocator.index.plots(PlotState.VERIFIED)[:2]:  # room for a plot being made
            allocator.forget_plot(row.seed, row.k)
        plan = allocator.plan()
        plots = allocator.index.bytes_in(PlotState.DONE, PlotState.VERIFIED)
        room = allocator.share_size - plots
        shards = room - peak_bytes(18) // 2  # half a plot's room left: the shards took the rest
        (settings.db_root / "shards").mkdir(exist_ok=True)
        (settings.db_root / "shards" / ("ef" * 32)).write_bytes(b"\1" * shards)
        plan.add, plan.shard_bytes = [18], allocator.shard_bytes()  # the plan knew of them
        allocator._apply(plan)
        done = await allocator._make_plots()
        assert not allocator.index.plots(PlotState.PLANNED) and done.plots == len(plan.keep)
    finally:
        allocator.close()
    assert not errors, errors


# --- small mismatches ---------------------------------------------------------------------------------


@pytest.mark.parametrize("argv", [["ls"], ["status", "--offline"], ["miner", "--wallet.name", "miner-0"],
                                  ["validator", "--wallet.name", "validator-0"]])
def test_another_netuid_on_the_devnet_is_refused(devnet_root, capsys, argv):
    """The issue: `--netuid 99` was silently ignored on the devnet (it has one subnet)."""
    line = one_line_error(capsys, run([*argv, "--subtensor.network", "devnet", "--devnet.root", str(devnet_root),
                                       "--netuid", "99"]))
    assert "runs netuid 7 only, not 99" in line and "--netuid" in line


def test_devnet_status_renders_a_table_and_json_on_request(devnet_root, capsys):
    """The issue: `devnet status` without --json printed JSON. A node's stored share is what it says
    (the spec's size is a default there too)."""
    layout = Layout(devnet_root / "nodes" / "miner-0")
    layout.ensure()
    stored_share.store(layout, 0.06, None, "allocate", (0.06, None))
    args = ["status", "--offline", "--subtensor.network", "devnet", "--devnet.root", str(devnet_root)]
    assert run(args) == 0
    text = capsys.readouterr().out
    with pytest.raises(ValueError):
        json.loads(text)
    words = " ".join(text.split())
    assert "miner-0" in words and "validator-0" in words and "0.06 GB (stored)" in words, words
    assert run([*args, "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["nodes"]["miner-0"]["share"]["source"] == "stored"


def test_the_stop_message_says_what_this_role_leaves_behind():
    from tensorage.engines.run import STOPPING

    assert "plot" in STOPPING["miner"] and "plot" not in STOPPING["validator"]


@pytest.mark.parametrize("where", ["in-a-file", "proc", "no-such-dir"])
def test_gateway_backup_and_restore_refuse_paths_that_cannot_hold_data_in_one_line(tmp_path, capsys, where):
    """Siblings of the miner's traceback: the backup's destination and the restore's root."""
    from tensorage.storage.gateway_db import GatewayStore
    from tensorage.storage.wrap import SECRET_FILE, load_or_create_secret

    layout = Layout(tmp_path / "v").ensure()
    GatewayStore(layout.index / "gateway.sqlite").close()
    load_or_create_secret(layout.index / SECRET_FILE)
    (tmp_path / "a-file").write_text("not a directory")
    bad = {"in-a-file": tmp_path / "a-file" / "x", "proc": "/proc/tensorage-x",
           "no-such-dir": tmp_path / "none" / "x"}[where]
    line = one_line_error(capsys, run(["gateway", "backup", "--db_root_path", str(layout.root), f"{bad}/b.tar"]))
    assert str(bad) in line
    assert run(["gateway", "backup", "--db_root_path", str(layout.root), str(tmp_path / "b.tar")]) == 0  # the src
    capsys.readouterr()
    if where != "no-such-dir":  # a new root is where a restore may go
        line = one_line_error(capsys, run(["gateway", "restore", "--db_root_path", str(bad), str(tmp_path / "b.tar")]))
        assert "a-file" in line or str(bad) in line
    assert (tmp_path / "a-file").read_text() == "not a directory"


def test_restore_of_a_file_that_is_no_backup_is_one_line(tmp_path, capsys):
    (tmp_path / "junk").write_bytes(b"\0" * 10)
    line = one_line_error(capsys, run(["gateway", "restore", "--db_root_path", str(tmp_path / "v"),
                                       str(tmp_path / "junk")]))
    assert "is not a gateway backup" in line


def test_devnet_up_starts_a_node_without_typing_the_specs_share_for_it(devnet_root, tmp_path):
    """A sibling: `devnet up` typed the spec's --size_in_gb for every miner it started, so a share
    stored with `tensorage allocate --size_in_gb 0.06` (or from the console) was overridden at the
    next `devnet up`. The child now gets the spec's size as a default."""
    from tensorage.cli import OWN_ARGS, build_parser
    from tensorage.engines.devnet import DevnetSupervisor

    supervisor = DevnetSupervisor(settings_from_namespace({"subtensor.network": "devnet",
                                                           "devnet.root": str(devnet_root)}))
    node = next(n for n in supervisor_spec(devnet_root) if n.name == "miner-0")
    argv = supervisor.argv(node)
    assert argv[3] == "miner"  # python -m tensorage miner ...
    args, extra = build_parser().parse_known_args(argv[3:])
    assert not extra
    settings = apply_devnet_defaults(settings_from_namespace({k: v for k, v in vars(args).items()
                                                              if k not in OWN_ARGS}))
    layout = Layout(settings.db_root)
    layout.ensure()
    stored_share.store(layout, 0.06, None, "allocate", (0.06, None))
    resolved, state, _ = stored_share.resolve(settings, layout)
    assert state.source == "stored" and resolved.size_in_gb == 0.06, state


def supervisor_spec(root):
    from tensorage.chain.devnet import SubnetSpec

    return SubnetSpec.load(root).nodes


def test_a_disk_other_files_filled_keeps_every_plot(devnet_root, small_disk):
    """With a little room left (so the index can be written), the reallocation used to remove plots
    to fit what the full device could still give ("other files filled it"): that lost the operator's
    plots for someone else's files. It keeps them all, plots nothing new and says why once."""
    import asyncio

    from tensorage.chain.wallets import load_wallet
    from tensorage.engines.disks import DiskSet
    from tensorage.errors import DiskError
    from tensorage.events import ErrorEvent, EventBus, PlotRemoved

    root = small_disk / "m"
    settings = apply_devnet_defaults(settings_from_namespace({
        "subtensor.network": "devnet", "devnet.root": str(devnet_root), "wallet.name": "miner-0",
        "db_root_path": str(root), "size_in_gb": 0.02, "workers": 1, "disable_verify": True}))
    bus, seen = EventBus(), []
    bus.subscribe(lambda e: seen.append(e) if isinstance(e, (ErrorEvent, PlotRemoved)) else None)
    disks = DiskSet(settings, load_wallet(settings).hotkey.ss58_address, bus)
    try:
        asyncio.run(disks.allocate())
        plots_before = sorted(p.name for p in (root / "plots").glob("*.plot"))
        fill(small_disk / "filler", leave=300_000)  # under the 0.8 MB margin, room for the index
        with pytest.raises(DiskError) as refused:  # the job fails with why; nothing else says it twice
            asyncio.run(disks.reallocate())
        assert "is full" in str(refused.value) and "every plot is kept" in str(refused.value)
        assert "is full" in disks.status.last_error
    finally:
        disks.close()
    assert sorted(p.name for p in (root / "plots").glob("*.plot")) == plots_before
    assert not seen, seen  # no plot removed, no second error


def test_the_console_and_the_adversaries_still_take_every_flag_once():
    """A one-directory --db_root_path for the gateway commands must not be added twice where every
    flag group is (the console, the test adversaries): argparse refuses a conflicting option."""
    import argparse

    from tensorage.config import add_axon_flags, add_common_flags

    p = argparse.ArgumentParser()
    add_common_flags(p)
    add_axon_flags(p)
    assert p.parse_args(["--db_root_path", "/a", "/b"]).__dict__["db_root_path"] == ["/a", "/b"]


def test_settings_resolved_from_the_stored_share_claim_no_typed_flag(tmp_path):
    """Whoever reads the resolved settings' flags again (a restart path, the console) must not take
    the stored size for one the operator typed."""
    layout = Layout(tmp_path / "node")
    layout.ensure()
    stored_share.store(layout, 0.06, 3, "console", (None, None))
    resolved, state, _ = stored_share.resolve(settings_from_namespace({"db_root_path": str(layout.root)}), layout)
    assert (resolved.size_in_gb, resolved.workers, state.source) == (0.06, 3, "stored")
    assert stored_share.flags_of(resolved) == (None, None)
