"""The console's folding of events and its pump: plain Python, no terminal."""

from __future__ import annotations

import threading
import pytest

from tensorage.events import (AllocationDone, ChallengeResult, ChallengeServed, EventBus, JobRan, LogEvent, PlanReady,
                              PlotDone, PlotProgress, WeightsSet)
from tensorage.tui.messages import EngineEvents
from tensorage.tui.pump import EventPump
from tensorage.tui.state import ConsoleState, RollingList, level_of


def result(uid: int, outcome: str = "pass", returned: int = 10, expected: float = 10.0, source: str = "validator-0"):
    return ChallengeResult(validator="V" * 48, miner_uid=uid, miner_hotkey=f"hk{uid}", plots=4,
                           proofs_returned=returned, proofs_expected=expected, result=outcome, latency_ms=100.0 + uid,
                           source=source)


def test_rolling_list_forgets_in_chunks_and_keeps_stable_ids():
    rows = RollingList(cap=100)
    for i in range(125):
        rows.append(i)
    assert len(rows) == 125 and rows.dropped == 0 and rows.version == 0
    rows.append(125)  # past cap + cap/4: the oldest 26 go at once
    assert rows.dropped == 26 and len(rows) == 100 and rows.version == 1
    assert rows[0] == 26 and rows.dropped + 0 == rows[0]  # dropped + index is the row's id


def test_ingest_reports_topics_and_folds_challenges_per_peer():
    state = ConsoleState()
    topics = state.ingest([result(2), result(2, "fail", 1), result(3, "timeout", 0)])
    assert {"challenges", "weights", "logs"} <= topics and "disk" not in topics
    p2, p3 = state.peers["hk2"], state.peers["hk3"]
    assert (p2.n, p2.passed, p2.pass_rate) == (2, 1, 0.5)
    assert p2.proven_ratio == pytest.approx(11 / 20)
    assert p3.pass_rate == 0.0 and p3.last_result == "timeout"
    assert [r.result for r in state.results] == ["pass", "fail", "timeout"]
    assert list(state.pass_series) == pytest.approx([1.0, 0.5, 1 / 3])
    assert level_of(result(3, "timeout")) == "warning" and level_of(result(3)) == "info"


def test_served_challenges_are_kept_apart_from_verdicts():
    state = ConsoleState()
    state.ingest([ChallengeServed(validator_hotkey="vhk", plots=4, proofs=12, latency_ms=50.0, source="miner-0")])
    assert len(state.served) == 1 and len(state.results) == 0
    assert state.served_peers["vhk"].n == 1 and state.served[0].result == "served"


def test_disk_follows_plan_progress_and_completion():
    state = ConsoleState()
    topics = state.ingest([PlanReady(size_bytes=30, plot_bytes=16, reserve_bytes=3, temp_bytes=11, free_bytes=14,
                                     plots=[18, 18], to_make=2, to_remove=0, source="miner-0"),
                           PlotProgress(seed="a", k=18, fraction=0.5, done=0, total=2, rate_per_hour=0.0, eta_s=9.0,
                                        source="miner-0")])
    assert {"disk", "disk_files"} <= topics
    d = state.disks["miner-0"]
    assert d.total == 2 and d.plotting and d.eta_s == 9.0
    topics = state.ingest([PlotProgress(seed="a", k=18, fraction=0.9, done=0, total=2, rate_per_hour=0.0, eta_s=1.0,
                                        source="miner-0")])
    assert "disk" in topics and "disk_files" not in topics  # progress alone never re-reads the plot index
    state.ingest([PlotDone(seed="a", k=18, bytes=8, seconds=1.0, done=1, total=2, source="miner-0"),
                  AllocationDone(plots=2, verified=2, plot_bytes=16, seconds=2.0, source="miner-0")])
    assert not d.plotting and d.done == 2 and d.finished is not None


def test_weights_and_jobs_topics():
    state = ConsoleState()
    topics = state.ingest([WeightsSet(block=9, weights={"2": 1.0}, source="validator-0"),
                           WeightsSet(block=0, weights={}, ok=False, message="locked", source="validator-1"),
                           JobRan(job_id="devnet_epoch", ok=True, duration_s=0.0, source="devnet")])
    assert {"weights", "chain", "jobs"} <= topics
    assert state.weights["validator-0"].block == 9 and "validator-1" not in state.weights
    assert state.weights_failed["validator-1"].message == "locked"
    assert level_of(state.weights_failed["validator-1"]) == "warning"


class FakeApp:
    def __init__(self):
        self.posted: list[EngineEvents] = []
        self.message_queue_size = 0

    def post_message(self, message):
        self.posted.append(message)
        self.message_queue_size += 1


def test_pump_coalesces_a_burst_into_one_message():
    app, bus = FakeApp(), EventBus()
    pump = EventPump(app)
    pump.attach(bus)
    for i in range(10_000):
        bus.publish(LogEvent(message=f"e{i}"))
    assert len(app.posted) == 1  # the app had not taken the batch yet: one message for the burst
    events = pump.take(app.posted[0])
    assert [e.message for e in events[:3]] == ["e0", "e1", "e2"] and len(events) == 10_000
    bus.publish(LogEvent(message="after"))
    assert len(app.posted) == 2 and [e.message for e in pump.take(app.posted[1])] == ["after"]


def test_pump_replays_history_to_a_late_console():
    app, bus = FakeApp(), EventBus()
    bus.publish(LogEvent(message="before the console"))
    EventPump(app).attach(bus, replay=True)
    assert [e.message for e in app.posted[0].events] == ["before the console"]


def test_pump_stalls_a_foreign_thread_while_the_app_queue_is_long():
    app, bus = FakeApp(), EventBus()
    pump = EventPump(app, high_water=5)
    pump.attach(bus)
    app.message_queue_size = 50  # a busy app

    def publish_from_thread():
        bus.publish(LogEvent(message="x"))

    t = threading.Thread(target=publish_from_thread)
    t.start()
    t.join()
    stalled = pump.stalls
    assert stalled > 0  # the engine thread waited for the UI instead of flooding it
    pump.take(app.posted[0])
    bus.publish(LogEvent(message="y"))  # the app's own thread (the event loop) never stalls
    assert pump.stalls == stalled
