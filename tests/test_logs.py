"""Issue 15: headless logs. JSON lines parse, the log file rotates, a failing job's traceback is
logged exactly once, and the flags reach the settings."""

from __future__ import annotations

import asyncio
import io
import json
import logging

import pytest

from tensorage.cli import build_parser
from tensorage.config import settings_from_namespace
from tensorage.events import EventBus
from tensorage.logs import log_events, setup_logging
from tensorage.scheduler import Jobs


@pytest.fixture(autouse=True)
def root_logging():
    """setup_logging replaces the root logger's handlers: give them back after each test."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    for handler in root.handlers:
        if handler not in handlers:
            handler.close()
    root.handlers[:] = handlers
    root.setLevel(level)


def test_json_format_writes_one_parseable_object_a_line():
    out = io.StringIO()
    setup_logging(stream=out, fmt="json", role="miner", node="miner-0")
    log = logging.getLogger("tensorage.engines.miner")
    log.info("window %d answered", 812)
    try:
        raise ValueError("disk on fire")
    except ValueError:
        log.exception("scrub failed")
    log.warning("line one\nline two")  # a message with a newline is still one line of JSON
    lines = out.getvalue().splitlines()
    assert len(lines) == 3, lines
    records = [json.loads(line) for line in lines]
    first, crash, multi = records
    assert first["message"] == "window 812 answered" and first["level"] == "INFO"
    assert first["logger"] == "tensorage.engines.miner" and first["role"] == "miner" and first["node"] == "miner-0"
    assert first["time"].endswith("+00:00")  # ISO 8601, UTC
    assert "exception" not in first
    assert crash["level"] == "ERROR" and "ValueError: disk on fire" in crash["exception"]
    assert crash["exception"].startswith("Traceback (most recent call last)")
    assert multi["message"] == "line one\nline two"


def test_the_log_file_rotates_and_keeps_the_backups_asked_for(tmp_path):
    path = tmp_path / "logs" / "miner.log"  # its directory is made
    setup_logging(stream=io.StringIO(), file=str(path), max_mb=0.002, backups=2)  # ~2 KB a file
    log = logging.getLogger("tensorage.test")
    for i in range(200):
        log.info("line %03d %s", i, "x" * 40)
    files = sorted(p.name for p in path.parent.iterdir())
    assert files == ["miner.log", "miner.log.1", "miner.log.2"], files
    limit = int(0.002 * 1024 * 1024)
    assert all((path.parent / f).stat().st_size <= limit for f in files)
    assert "line 199" in path.read_text()  # the newest lines are in the current file
    assert "line 000" not in "".join((path.parent / f).read_text() for f in files)  # the oldest rotated away
    text = path.read_text().splitlines()[0]
    assert " INFO tensorage.test: line " in text  # a plain text line: a file is read by tools, not a terminal


def test_a_json_log_file_holds_json_lines(tmp_path):
    path = tmp_path / "v.log"
    setup_logging(stream=io.StringIO(), fmt="json", file=str(path), role="validator", node="validator-0")
    logging.getLogger("tensorage").info("weights set at block 12")
    (record,) = [json.loads(line) for line in path.read_text().splitlines()]
    assert record["message"] == "weights set at block 12" and record["role"] == "validator"


@pytest.mark.parametrize("fmt", ["rich", "json"])
async def test_a_failing_job_logs_its_traceback_once(fmt):
    """Before, the traceback was logged only under --logging.debug, and then the failure twice (the
    scheduler's debug line and the event's error line). Now once, at every level: debug here."""
    out = io.StringIO()
    setup_logging(debug=True, stream=out, fmt=fmt)
    bus = EventBus()
    log_events(bus)
    jobs = Jobs(bus, "miner")

    async def scrub() -> None:
        raise ValueError("disk on fire" + " smoke" * 20)

    jobs.add("scrub", scrub, seconds=3600, first_in=0)
    jobs.start()
    try:
        for _ in range(200):
            if jobs.state()[0].runs:
                break
            await asyncio.sleep(0.05)
    finally:
        jobs.shutdown()
    (job,) = jobs.state()
    assert job.runs == job.failures == 1 and job.last_ok is False and job.last_ok_at is None
    text = out.getvalue()
    assert text.count("Traceback (most recent call last)") == 1, text
    assert text.count("job scrub failed: disk on fire") == 1, text  # the error, once (JobRan's debug line aside)
    assert "in scrub" in text  # the frame that raised
    if fmt == "rich":
        # every traceback line whole, at a log file's 80 columns too (rich folded it into the message
        # column, splitting "in scrub" where a clone's path was long)
        assert "ValueError: disk on fire" + " smoke" * 20 + "\n" in text, text
    else:
        (record,) = [json.loads(line) for line in text.splitlines() if "job scrub failed: disk on fire" in line]
        assert record["message"] == "[miner] job scrub failed: disk on fire" + " smoke" * 20
        assert record["level"] == "ERROR"
        assert 'raise ValueError("disk on fire" + " smoke" * 20)' in record["exception"]


def test_logging_and_metrics_flags_reach_the_settings():
    args, _ = build_parser().parse_known_args(["validator", "--logging.format", "json", "--logging.file", "/tmp/v.log",
                                               "--logging.max_mb", "10", "--logging.backups", "3",
                                               "--metrics.port", "9500", "--metrics.host", "0.0.0.0"])
    ns = {k: v for k, v in vars(args).items() if k not in ("func", "command", "events")}
    settings = settings_from_namespace(ns)
    assert settings.logging.format == "json" and settings.logging.file == "/tmp/v.log"
    assert settings.logging.max_mb == 10 and settings.logging.backups == 3
    assert settings.metrics.host == "0.0.0.0" and settings.metrics_port == 9500


@pytest.mark.parametrize("flags, port", [
    ({"subtensor.network": "devnet"}, None),                          # off on the devnet
    ({"subtensor.network": "devnet", "metrics.port": 0}, 0),          # asked for: any free port
    ({"subtensor.network": "finney"}, 9091),                          # the axon's 8091 + 1000
    ({"subtensor.network": "finney", "axon.port": 8095}, 9095),       # a second node on the machine
    ({"subtensor.network": "finney", "metrics.disable": True}, None),
])
def test_metrics_port_defaults(flags, port):
    assert settings_from_namespace(flags).metrics_port == port


def test_a_headless_log_has_one_line_a_window():
    """`nohup tensorage validator`: the window's verdict line, not a line per passing miner;
    `nohup tensorage miner`: the window's lookup, not the same answer once per validator."""
    from tensorage.events import ChallengeResult, ChallengeServed, WindowJudged

    out = io.StringIO()
    setup_logging(stream=out, fmt="json")
    bus = EventBus()
    log_events(bus)
    for uid in range(50):
        bus.publish(ChallengeResult(validator="v", miner_uid=uid, miner_hotkey=f"m{uid}", plots=4, proofs_returned=4,
                                    proofs_expected=3.8, result="pass", latency_ms=80.0, window=7, source="validator"))
    bus.publish(WindowJudged(window=7, miners=52, results={"pass": 50, "timeout": 2}, seconds=1.25, source="validator"))
    for v in range(3):
        bus.publish(ChallengeServed(validator_hotkey=f"5Validator{v}", plots=4, proofs=5, latency_ms=90.0, window=7,
                                    cached=v > 0, source="miner"))
    lines = [json.loads(line)["message"] for line in out.getvalue().splitlines()]
    assert lines == ["[validator] window 7: 52 miners judged, 50 passed, 2 failed (2 timeout) in 1.25s",
                     "[miner] answered 5Validat: 5 proofs over 4 plots in 90 ms (window 7, looked up)"], lines


def test_devnet_up_hands_the_log_format_to_its_nodes():
    from tensorage.cli import node_passthrough
    from tensorage.engines.devnet import flags_for

    settings = settings_from_namespace({"subtensor.network": "devnet", "logging.format": "json", "workers": 1})
    args = node_passthrough(settings)
    for role in ("miner", "validator"):
        kept = flags_for(role, args)
        assert kept[kept.index("--logging.format") + 1] == "json", kept
    assert "--logging.format" not in node_passthrough(settings_from_namespace({"subtensor.network": "devnet"}))


def test_the_console_takes_the_metrics_and_logging_flags_of_the_node_it_runs():
    from tensorage.console_cli import resolve

    settings, role, _ = resolve(["--network", "finney", "--role", "miner", "--metrics.port", "9300",
                                 "--logging.format", "json"])
    assert role == "miner" and settings.metrics_port == 9300 and settings.logging.format == "json"
