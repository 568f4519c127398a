"""Run every benchmark, collect each one's headline figure and baseline, and write README's Numbers table.

Each benchmark runs as its own process with ``--json PATH`` and states its headline figures there
(``common.headline``): nothing here parses printed tables. The table between the README's
``<!-- numbers:start -->`` and ``<!-- numbers:end -->`` markers is replaced, never appended to, and
names the machine it was measured on (CPU, cores, RAM, disk, Python, date, load).

The default (quick) mode runs smaller versions of the long benchmarks so that all of them fit in
about ten minutes on 2 cores; ``--full`` runs each as its docstring describes (hours).

Run: python -m benchmarks.run_all [--full] [--only NAME,...] [--no-write] [--keep DIR [--resume]]
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

START, END = "<!-- numbers:start -->", "<!-- numbers:end -->"
README = Path(__file__).resolve().parent.parent / "README.md"


@dataclass(frozen=True)
class Bench:
    name: str                      # module in benchmarks/, without the bench_ prefix
    quick: tuple[str, ...]         # arguments of the quick mode
    full: tuple[str, ...] = ()     # arguments of --full (the benchmark's own defaults when empty)
    timeout_s: float = 900.0       # quick mode; --full allows 10x
    module: str = ""               # benchmarks.bench_<name> unless given

    @property
    def target(self) -> str:
        return self.module or f"benchmarks.bench_{self.name}"


BENCHES = [
    Bench("proofs", ("--k", "18", "--challenges", "1000")),
    Bench("allocator", ("--plots", "2", "--k", "19", "--rounds", "1")),
    Bench("challenge", ("--requests", "40", "--reps", "1")),
    Bench("round", ("--miners", "32", "--rounds", "5")),
    Bench("signing", ("--reps", "5")),
    Bench("hostile_round", ("--windows", "5")),
    Bench("disk_budget", ("--challenges", "100", "--sizes", "2", "--no-burst")),
    Bench("window_shards", ("--shards", "8", "--windows", "40")),
    Bench("proof_rate", ("--ks", "18", "--plots", "16", "--challenges", "300")),
    Bench("validator_scale", ("--shapes", "100", "--windows", "20", "--block_time", "0.5", "--real_plots", "0")),
    Bench("objects", ("--size-mb", "64", "--reps", "1", "--rss-gb", "0.25")),
    Bench("console", ("--seconds", "10", "--warmup", "10")),
    Bench("s3", ("--size-mb", "32", "--reps", "3", "--part-mb", "0")),
]


@dataclass
class Outcome:
    bench: Bench
    args: tuple[str, ...]
    seconds: float
    headlines: list[dict] = field(default_factory=list)
    error: str = ""  # why it has no figure (failed, timed out)


# --- the machine ---------------------------------------------------------------------------------

def _first(path: str, key: str) -> str:
    try:
        for line in Path(path).read_text().splitlines():
            if line.startswith(key):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return ""


def machine(where: Path = Path(tempfile.gettempdir())) -> dict[str, str]:
    """What the figures were measured on. ``where``: the benchmarks' working disk (their temp dirs)."""
    mem_kb = _first("/proc/meminfo", "MemTotal").split()
    disk = shutil.disk_usage(where)
    try:
        fs = subprocess.run(["df", "--output=fstype,source", str(where)], capture_output=True, text=True,
                            timeout=10).stdout.split("\n")[1].split()
    except (OSError, IndexError, subprocess.SubprocessError):
        fs = []
    return {
        "cpu": _first("/proc/cpuinfo", "model name") or platform.processor() or platform.machine(),
        "cores": str(os.cpu_count() or 1),
        "ram": f"{int(mem_kb[0]) / 1024 ** 2:.1f} GiB" if mem_kb else "?",
        "disk": f"{where}: {' on '.join(fs) or '?'}, {disk.total / 1e9:.0f} GB ({disk.free / 1e9:.0f} GB free)",
        "python": platform.python_version(),
        "os": f"{platform.system()} {platform.release()}",
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "load": " ".join(f"{x:.1f}" for x in os.getloadavg()),
    }


# --- running --------------------------------------------------------------------------------------

def run_one(bench: Bench, full: bool, workdir: Path) -> Outcome:
    args = bench.full if full else bench.quick
    out = workdir / f"{bench.name}.json"
    log = workdir / f"{bench.name}.log"
    cmd = [sys.executable, "-m", bench.target, *args, "--json", str(out)]
    started = time.monotonic()
    error = ""
    with open(log, "wb") as sink:
        try:
            proc = subprocess.run(cmd, stdout=sink, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                  cwd=Path(__file__).resolve().parent.parent,
                                  timeout=bench.timeout_s * (10 if full else 1))
            if proc.returncode != 0:
                error = f"exited {proc.returncode}"
        except subprocess.TimeoutExpired:
            error = f"timed out after {bench.timeout_s * (10 if full else 1):.0f} s"
    headlines = []
    if out.exists():
        try:
            headlines = json.loads(out.read_text())["headlines"]
        except (ValueError, KeyError) as exc:
            error = error or f"unreadable --json ({exc})"
    if not headlines and not error:
        error = "stated no headline figure"
    outcome = Outcome(bench, args, time.monotonic() - started, headlines, error)
    (workdir / f"{bench.name}.outcome.json").write_text(json.dumps(
        {"args": list(args), "seconds": outcome.seconds, "headlines": headlines, "error": error}))
    return outcome


def kept_outcome(bench: Bench, workdir: Path) -> Optional[Outcome]:
    """What an earlier run into ``workdir`` (``--keep``) measured for ``bench``, if it ran there."""
    try:
        saved = json.loads((workdir / f"{bench.name}.outcome.json").read_text())
        return Outcome(bench, tuple(saved["args"]), saved["seconds"], saved["headlines"], saved["error"])
    except (OSError, ValueError, KeyError):
        pass
    try:  # a run that kept only the benchmark's own --json (and its log)
        return Outcome(bench, bench.quick, 0.0, json.loads((workdir / f"{bench.name}.json").read_text())["headlines"])
    except (OSError, ValueError, KeyError):
        if (workdir / f"{bench.name}.log").exists():
            return Outcome(bench, bench.quick, 0.0, [], f"failed in the kept run (its log: {bench.name}.log)")
    return None


# --- the table ------------------------------------------------------------------------------------

def _num(value: Optional[float]) -> str:
    if value is None:
        return "–"
    magnitude = abs(value)
    if magnitude >= 1000:
        return f"{value:,.0f}"
    if magnitude >= 100:
        return f"{value:.0f}"
    if magnitude >= 10:
        return f"{value:.1f}"
    return f"{value:.3g}" if magnitude < 1 else f"{value:.2f}"


def _cell(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def render_table(outcomes: list[Outcome], box: dict[str, str], full: bool) -> str:
    """The Markdown that goes between the markers: one row per headline figure, then the machine."""
    lines = [
        f"Measured by `python -m benchmarks.run_all{' --full' if full else ''}` "
        f"({'full' if full else 'quick'} mode) on {box['date']}{box.get('resumed', '')}. Each ratio is against a "
        f"baseline measured in the same run.",
        "",
        "| benchmark | headline | measured | baseline | ratio | target | met |",
        "|---|---|---|---|---|---|---|",
    ]
    for o in outcomes:
        command = f"`bench_{o.bench.name}{(' ' + ' '.join(o.args)) if o.args else ''}`"
        if not o.headlines:
            lines.append(f"| {command} | **no figure**: {_cell(o.error)} | | | | | |")
            continue
        for h in o.headlines:
            what = _cell(h["what"] + (f" ({h['note']})" if h.get("note") else ""))
            unit = f" {h['unit']}" if h.get("unit") else ""
            baseline = f"{_num(h.get('baseline'))}{unit} {h.get('baseline_what') or ''}".strip() \
                if h.get("baseline") is not None else "–"
            ratio = f"{_num(h['ratio'])}×" if h.get("ratio") is not None else "–"
            met = {True: "yes", False: "**no**", None: "–"}[h.get("met")]
            if o.error:
                met += f" ({_cell(o.error)})"
            lines.append(f"| {command} | {what} | {_num(h['value'])}{unit} | {_cell(baseline)} | {ratio} | "
                         f"{_cell(h.get('target') or '–')} | {met} |")
    lines += ["", f"Machine: {box['cpu']}, {box['cores']} cores, {box['ram']} RAM; disk {box['disk']}; "
                  f"Python {box['python']}, {box['os']}; load average (1, 5, 15 min) at the start {box['load']}"
                  + (f", at the end {box['load_end']}" if box.get("load_end") else "") + "."]
    return "\n".join(lines)


def write_numbers(readme: Path, table: str) -> None:
    """Replace what is between the markers with ``table`` (the markers stay)."""
    text = readme.read_text()
    start, end = text.find(START), text.find(END)
    if start < 0 or end < 0 or end < start:
        raise SystemExit(f"{readme} has no {START} … {END} block: add the two markers where the table goes")
    if text.find(START, start + 1) >= 0 or text.find(END, end + 1) >= 0:
        raise SystemExit(f"{readme} has more than one {START} … {END} block: keep one")
    readme.write_text(text[:start + len(START)] + "\n" + table.strip() + "\n" + text[end:])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--full", action="store_true", help="each benchmark as its docstring describes (hours)")
    p.add_argument("--only", default="", help="comma-separated benchmark names (e.g. proofs,hostile_round)")
    p.add_argument("--readme", type=Path, default=README)
    p.add_argument("--no-write", action="store_true", help="print the table, leave the README as it is (always "
                   "so with --only: the README's table covers every benchmark)")
    p.add_argument("--keep", type=Path, help="keep each benchmark's log and JSON in this folder")
    p.add_argument("--resume", action="store_true", help="with --keep and --only: run only those again and take "
                   "the others from the earlier run kept there; the table then covers every benchmark and is written")
    a = p.parse_args()
    if a.resume and not (a.keep and a.only):
        p.error("--resume needs --keep DIR (an earlier run's) and --only NAME,...")
    chosen = [b for b in BENCHES if not a.only or b.name in a.only.split(",")]
    box = machine()
    if a.resume:
        box["resumed"] = f" ({', '.join('bench_' + b.name for b in chosen)}; the others from the earlier run kept " \
                         f"in {a.keep})"
    workdir = a.keep or Path(tempfile.mkdtemp(prefix="tensorage-run-all-"))
    workdir.mkdir(parents=True, exist_ok=True)
    outcomes = []
    try:
        for bench in BENCHES if a.resume else chosen:
            if bench not in chosen:
                kept = kept_outcome(bench, workdir)
                outcomes.append(kept or Outcome(bench, bench.quick, 0.0, [], "not run"))
                continue
            print(f"bench_{bench.name} ...", end=" ", flush=True)
            outcome = run_one(bench, a.full, workdir)
            outcomes.append(outcome)
            print(f"{outcome.seconds:.0f} s" + (f" ({outcome.error})" if outcome.error else ""), flush=True)
            if outcome.error:
                tail = (workdir / f"{bench.name}.log").read_text(errors="replace").splitlines()[-15:]
                print("\n".join("    " + line for line in tail), flush=True)
    finally:
        if a.keep is None:
            shutil.rmtree(workdir, ignore_errors=True)
    box["load_end"] = " ".join(f"{x:.1f}" for x in os.getloadavg())
    table = render_table(outcomes, box, a.full)
    print(table)
    if not a.no_write and (not a.only or a.resume):
        write_numbers(a.readme, table)
        print(f"written to {a.readme}")


if __name__ == "__main__":
    main()
