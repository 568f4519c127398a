"""Issue 15 item 6: ``benchmarks.run_all`` writes README's Numbers table between its markers,
replacing the one there (not appending), and says which benchmark gave no figure and why. It
checks the writer only, never the benchmarks' speed."""

from __future__ import annotations

import json

import pytest

from benchmarks.run_all import END, START, Bench, Outcome, machine, render_table, run_one, write_numbers

BOX = {"cpu": "Test CPU @ 2.0GHz", "cores": "2", "ram": "8.0 GiB", "disk": "/tmp: ext4 on /dev/x, 100 GB (50 GB free)",
       "python": "3.11.7", "os": "Linux 6", "date": "2026-12-03 03:00 UTC", "load": "0.1 0.2 0.3"}


def health(value: float, baseline: float, met: bool) -> dict:
    return {"what": "/v1/health p99", "value": value, "unit": "ms", "baseline": baseline,
            "baseline_what": "phase A", "ratio": value / baseline, "target": "≤ 100 ms", "met": met, "note": ""}


def readme(tmp_path, table: str = "| old | table |\n|---|---|\n| 1 | 2 |"):
    path = tmp_path / "README.md"
    path.write_text(f"# project\n\n## Benchmarks\n\nintro\n\n{START}\n{table}\n{END}\n\n## Networks\n\nafter\n")
    return path


def test_the_table_replaces_the_one_between_the_markers_and_nothing_else(tmp_path):
    path = readme(tmp_path)
    first = render_table([Outcome(Bench("hostile_round", ("--windows", "5")), ("--windows", "5"), 90.0,
                                  [health(42.0, 40.0, True)])], BOX, full=False)
    write_numbers(path, first)
    second = render_table([Outcome(Bench("hostile_round", ()), (), 900.0, [health(55.5, 50.0, False)])], BOX,
                          full=True)
    write_numbers(path, second)
    text = path.read_text()
    assert text.count(START) == text.count(END) == 1
    assert "| old | table |" not in text and "42.0" not in text  # replaced, not appended
    inside = text[text.index(START):text.index(END)]
    assert "| `bench_hostile_round` | /v1/health p99 | 55.5 ms | 50.0 ms phase A | 1.11× | ≤ 100 ms | **no** |" in inside
    assert "Test CPU @ 2.0GHz, 2 cores, 8.0 GiB RAM" in inside and "Python 3.11.7" in inside
    assert "2026-12-03 03:00 UTC" in inside and "--full" in inside
    assert text.startswith("# project\n\n## Benchmarks\n\nintro\n\n") and text.endswith("## Networks\n\nafter\n")


def test_a_benchmark_without_a_figure_gets_a_row_saying_why(tmp_path):
    table = render_table([Outcome(Bench("objects", ()), (), 3.0, [], "exited 1"),
                          Outcome(Bench("proofs", ()), (), 3.0,
                                  [{**health(1.0, 2.0, True), "what": "a | b", "baseline": None}])], BOX, full=False)
    assert "| `bench_objects` | **no figure**: exited 1 |" in table
    assert "a \\| b" in table and "| – |" in table  # a pipe is escaped; no baseline, no ratio


def test_a_readme_without_markers_is_refused_untouched(tmp_path):
    path = tmp_path / "README.md"
    path.write_text("# project\n")
    with pytest.raises(SystemExit, match="markers"):
        write_numbers(path, "| x |")
    assert path.read_text() == "# project\n"


def test_headlines_reach_run_all_as_json_not_printed_text(tmp_path, monkeypatch):
    """A benchmark states its figure with common.headline; run_one reads the --json file it wrote."""
    script = tmp_path / "fake_bench.py"
    script.write_text("import argparse\nfrom benchmarks.common import headline, parse_args\n"
                      "parse_args(argparse.ArgumentParser())\nprint('| 1 | 2 |')\n"
                      "headline('x per s', 12.5, '/s', 10.0, 'plain', '≥ 10', True)\n")
    monkeypatch.setenv("PYTHONPATH", str(tmp_path))
    outcome = run_one(Bench("fake", (), module="fake_bench"), False, tmp_path)
    assert outcome.error == "" and outcome.headlines == [
        {"what": "x per s", "value": 12.5, "unit": "/s", "baseline": 10.0, "baseline_what": "plain", "ratio": 1.25,
         "target": "≥ 10", "met": True, "note": ""}]
    assert json.loads((tmp_path / "fake.json").read_text())["headlines"] == outcome.headlines


def test_machine_names_cpu_cores_ram_disk_python_and_date():
    box = machine()
    assert set(BOX) <= set(box) and int(box["cores"]) >= 1 and box["date"].endswith("UTC")


def test_resume_takes_the_benchmarks_not_rerun_from_the_kept_run(tmp_path):
    from benchmarks.run_all import kept_outcome

    (tmp_path / "proofs.json").write_text('{"headlines": [{"what": "x", "value": 1.0}]}')
    (tmp_path / "round.log").write_text("Traceback ...")
    assert kept_outcome(Bench("proofs", ("--k", "18")), tmp_path).headlines == [{"what": "x", "value": 1.0}]
    assert "failed in the kept run" in kept_outcome(Bench("round", ()), tmp_path).error
    assert kept_outcome(Bench("console", ()), tmp_path) is None
