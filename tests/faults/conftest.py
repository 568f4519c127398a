"""The fault suite's session: one seed, one ledger, one report.

``TENSORAGE_FAULT_SEED`` (default :data:`DEFAULT_SEED`) seeds every random point; each test draws
from its own generator (seed and test id), so one test's draws do not move another's.
``TENSORAGE_FAULT_REPORT`` names the report file (default: ``faults-report.json`` in pytest's basetemp)."""

from __future__ import annotations

import os
import random
from pathlib import Path

import pytest

from .ledger import Ledger

DEFAULT_SEED = 15
SEED = int(os.environ.get("TENSORAGE_FAULT_SEED", DEFAULT_SEED))
LEDGER = Ledger(seed=SEED)


@pytest.fixture(scope="session")
def ledger() -> Ledger:
    return LEDGER


@pytest.fixture
def rng(request) -> random.Random:
    return random.Random(f"{SEED}/{request.node.nodeid}")


def report_path(config) -> Path:
    named = os.environ.get("TENSORAGE_FAULT_REPORT")
    if named:
        return Path(named)
    return config._tmp_path_factory.getbasetemp() / "faults-report.json"


def pytest_sessionfinish(session, exitstatus) -> None:
    if LEDGER.faults:
        path = report_path(session.config)
        LEDGER.write(path)
        session.config._faults_report = path


def pytest_terminal_summary(terminalreporter, exitstatus, config) -> None:
    if not LEDGER.faults:
        return
    s = LEDGER.summary()
    tr = terminalreporter
    tr.section("fault suite")
    tr.write_line(f"seed {s['seed']} (TENSORAGE_FAULT_SEED): {s['injected']} faults injected, {s['survived']} survived, "
                  f"{s['bytes_lost']} bytes lost, {s['seconds']:.0f} s")
    for key, row in sorted(s["by_kind_and_role"].items()):
        tr.write_line(f"  {key:<24} injected {row['injected']:>3}  survived {row['survived']:>3}  "
                      f"bytes lost {row['bytes_lost']}")
    path = getattr(config, "_faults_report", None)
    if path:
        tr.write_line(f"report: {path}")
