"""Issue 9, defect 7: the console showed stale or cut-off facts. Pilot tests on fixed state (the
devnet console's own StaticBackend) and, where the fix lives in an engine, on real jobs."""

from __future__ import annotations

from tensorage.events import AllocationDone, JobRan, LogEvent
from tensorage.scheduler import JobInfo
from tensorage.tui.app import ConsoleApp

from .conftest import StaticBackend, feed_fixed_events, screen_text, settle, until, until_text

WIDE = (100, 30)
TMUX = (80, 24)
LONG = "the whole reason " + "word " * 60 + "END-OF-LINE"


class MovingChain(StaticBackend):
    """The chain moves: each read is one block later."""

    def __init__(self) -> None:
        super().__init__()
        self.block = 100

    def load_chain(self):
        mg, _, epoch = super().load_chain()
        self.block += 1
        return mg, self.block, epoch


def notices(app) -> list[str]:
    """The toasts the app raised (they are drawn on a layer screen_text does not read)."""
    return [str(n.message) for n in app._notifications]


def app_of(backend=None) -> ConsoleApp:
    backend = backend or StaticBackend()
    feed_fixed_events(backend.bus)
    return ConsoleApp(backend, start_engines=False)


async def select(pilot, table_id: str, key: str) -> None:
    from tensorage.tui.widgets.keyed_table import KeyedTable

    table = pilot.app.screen.query_one(table_id, KeyedTable)
    for _ in range(table.row_count):
        if table.selected_key() == key:
            return
        await pilot.press("down")
    raise AssertionError(f"{key} not in {table_id}")


async def test_devnet_console_controls_node_jobs_and_lists_them_in_the_palette():
    app = app_of()
    async with app.run_test(size=WIDE) as pilot:
        await settle(pilot)
        await pilot.press("5")
        await until_text(pilot, "miner-0")
        await select(pilot, "#jobs-table", "miner-0/scrub")
        await pilot.press("p")
        told = await until(pilot, lambda: notices(app), "an answer to p")
        assert "can only run, pause or resume" not in " ".join(told)
        assert app.backend.commands == [("miner-0/scrub", "pause")]  # sent to the node (the source's control)
        await pilot.press("ctrl+p")
        await pilot.pause()
        await pilot.press(*"pause job: validator-1")
        await until_text(pilot, "validator-1/proof_round")  # node jobs are in the palette too


async def test_resuming_a_job_that_is_not_paused_says_so():
    import asyncio

    from tensorage.events import EventBus
    from tensorage.scheduler import Jobs

    async def nothing() -> None:
        return None

    jobs = Jobs(EventBus(), "node")
    jobs.add("scrub", nothing, 3600, first_in=None)
    jobs.start()
    try:
        assert jobs.resume("scrub") == (False, "scrub is not paused: nothing to resume")
        assert jobs.pause("scrub") == (True, "scrub: paused")
        assert jobs.pause("scrub") == (False, "scrub is paused already")
        assert jobs.resume("scrub") == (True, "scrub: resumed")
    finally:
        jobs.shutdown()
        await asyncio.sleep(0)


async def test_the_header_follows_the_chain_on_every_screen_and_keeps_it_at_80_columns():
    backend = MovingChain()
    app = app_of(backend)
    async with app.run_test(size=TMUX) as pilot:
        await settle(pilot)
        for key in "23456":
            await pilot.press(key)
            await settle(pilot)
            before = backend.block
            backend.bus.publish(JobRan(job_id="devnet_epoch", ok=True, duration_s=0.01, source="devnet"))
            header = await until(pilot, lambda: (t := screen_text(app).splitlines()[0]) and f"block {before + 1}" in t
                                 and t, f"the header's block to move on screen {key}")
            assert "devnet" in header and len(header) <= TMUX[0]


async def test_the_partition_adds_up_once_plotting_ends():
    """miner-0 finished plotting: no temp space in the legend (it was counted on top of the share)."""
    app = app_of()
    async with app.run_test(size=WIDE) as pilot:
        await settle(pilot)
        await pilot.press("2")
        await until_text(pilot, "partition")
        await select(pilot, "#disk-table", "miner-0")
        text = await until_text(pilot, "■ temp 0 B")
        assert "■ free" in text


async def test_the_wizard_progress_shows_verdicts_and_no_temp_after_plotting():
    class Adds(StaticBackend):
        async def allocate(self, path, size_in_gb, workers, remove_plots=False) -> str:
            return "miner-2"  # stands for the new miner: it has plotted and validators judged it

    backend = Adds()
    app = app_of(backend)
    async with app.run_test(size=WIDE) as pilot:
        await settle(pilot)
        await pilot.press("a")
        await settle(pilot)
        for _ in range(3):  # path, size, preview
            await pilot.press("enter")
            await settle(pilot)
        await pilot.press("enter", "y")  # workers, confirm
        await until_text(pilot, "miner-2")
        backend.bus.publish(AllocationDone(plots=9, verified=9, plot_bytes=60_000_000, seconds=30.0,
                                           source="miner-2"))
        text = await until_text(pilot, "allocation complete", "of expected proofs")
        assert "no challenge judged yet" not in text and "■ temp 0 B" in text


async def test_long_log_lines_and_job_results_open_whole():
    class LongResult(StaticBackend):
        def jobs(self, snapshots):
            rows = super().jobs(snapshots)
            info = rows[0].info
            rows[0].info = JobInfo(**{**info.__dict__, "last_result": LONG})
            return rows

    backend = LongResult()
    app = app_of(backend)
    async with app.run_test(size=TMUX) as pilot:
        await settle(pilot)
        backend.bus.publish(LogEvent(message=LONG, source="miner-0", ts=1_800_000_100.0))
        await pilot.press("6")
        await until_text(pilot, "the whole reason")
        assert "END-OF-LINE" not in screen_text(app)  # cut at 80 columns
        await pilot.press("enter")
        await until_text(pilot, "END-OF-LINE")
        await pilot.press("escape")
        await pilot.press("5")
        await until_text(pilot, "devnet_epoch")
        assert "END-OF-LINE" not in screen_text(app)
        await pilot.press("enter")  # the first row: devnet/devnet_epoch
        await until_text(pilot, "END-OF-LINE")


async def test_help_titles_and_keys_are_right():
    app = app_of()
    async with app.run_test(size=WIDE) as pilot:
        await settle(pilot)
        await pilot.press("2", "question_mark")
        text = await until_text(pilot, "Keys")
        keys = [line.split()[0] for line in text.split("Keys", 1)[1].splitlines() if line.split()]
        assert keys.count("a") == 1
        await pilot.press("escape", "a")
        await settle(pilot)
        await pilot.press("f1")  # ? would be typed into the path box
        text = await until_text(pilot, "Allocation wizard")
        assert "Wizardscreen" not in text


async def test_the_devnet_supervisor_controls_a_real_node_job_over_its_operator_api(plotted_devnet):
    """What the devnet console's r/p/u call for a node job: the node's own API, its own wallet."""
    from tensorage.engines.devnet import DevnetSupervisor
    from tensorage.engines.run import build_node
    from tensorage.engines.snapshot import read_snapshot
    from tensorage.events import EventBus

    from .conftest import devnet_settings

    from tensorage.engines.devnet import node_settings

    settings = devnet_settings(plotted_devnet)
    miner = build_node("miner", node_settings(devnet_settings(plotted_devnet, **{
        "wallet.name": "miner-0", "size_in_gb": 0.03, "seconds_per_reallocate": 3600})), EventBus())
    await miner.launch()
    try:
        supervisor = DevnetSupervisor(settings, EventBus())
        assert await supervisor.node_job("miner-0", "scrub", "pause") == "scrub: paused"
        assert {j.id: j for j in miner.jobs.state()}["scrub"].paused
        state = read_snapshot(miner.layout)  # written before the node answered: the console reads it next
        assert {j.id: j for j in state.jobs}["scrub"].paused
        assert await supervisor.node_job("miner-0", "scrub", "pause") == "scrub is paused already"
    finally:
        await miner.shutdown()
