"""The security suite (issue 15): every test here is marked ``security``; one world of real nodes is
shared by the whole suite, and every hostile input sent is counted per endpoint, printed in the
terminal summary and written to ``security-report.json``."""

from __future__ import annotations

import json
import shutil
from collections import Counter, defaultdict
from pathlib import Path

import pytest

from .world import World

REPORT = Path("security-report.json")


class Tally:
    """Hostile inputs tried, per endpoint and kind (fuzz-unsigned, fuzz-signed, traversal, ...)."""

    def __init__(self) -> None:
        self.counts: dict[str, Counter] = defaultdict(Counter)
        self.statuses: dict[str, Counter] = defaultdict(Counter)

    def add(self, endpoint: str, kind: str, status: int = 0, n: int = 1) -> None:
        self.counts[endpoint][kind] += n
        if status:
            self.statuses[endpoint][str(status)] += n

    def as_dict(self) -> dict:
        return {ep: {"inputs": dict(self.counts[ep]), "total": sum(self.counts[ep].values()),
                     "statuses": dict(self.statuses[ep])} for ep in sorted(self.counts)}


TALLY = Tally()


@pytest.hookimpl(tryfirst=True)  # marked before `-m` deselects: the default run leaves the suite to its own run
def pytest_collection_modifyitems(config, items):
    here = Path(__file__).parent
    for item in items:
        if here in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.security)


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    if not TALLY.counts:
        return
    data = TALLY.as_dict()
    tr = terminalreporter
    tr.section("security: hostile inputs per endpoint")
    for endpoint, row in data.items():
        kinds = ", ".join(f"{k} {v}" for k, v in sorted(row["inputs"].items()))
        tr.write_line(f"{endpoint:42s} {row['total']:5d}  ({kinds})")
    tr.write_line(f"{'total':42s} {sum(r['total'] for r in data.values()):5d}")
    REPORT.write_text(json.dumps(data, indent=2, sort_keys=True))
    tr.write_line(f"written to {REPORT.resolve()}")


@pytest.fixture(scope="session")
def tally() -> Tally:
    return TALLY


@pytest.fixture(scope="session")
def world(plotted_devnet_template, tmp_path_factory):
    """A miner and a validator gateway on a copy of the plotted devnet, up for the whole suite."""
    base = tmp_path_factory.mktemp("security")
    root = base / "devnet"
    shutil.copytree(plotted_devnet_template, root)
    (base / "canary.txt").write_text("CANARY-outside-every-node\n")  # what a traversal must never reach
    w = World(root)
    w.start()
    try:
        yield w
    finally:
        w.stop()


@pytest.fixture
def clean_log(world):
    """Fails the test if a node logged an error (an unhandled exception in a handler) during it."""
    start = len(world.errors.records)
    yield
    new = world.errors.records[start:]
    assert not new, "the nodes logged errors:\n" + "\n".join(new[:20])
