"""What the console costs, measured against the same engines without it.

* CPU: the console process (its own CPU time, children excluded) running a devnet in tmux
  (100x30, the Overview, which redraws on every devnet block, i.e. once a second) versus
  `tensorage-console --no-tui` on the same pre-plotted devnet, logging to a file as under pm2.
  Two phases: idle (no proof rounds: the chain clock, syncs and reallocations only) and rounds
  (a proof round every 3 s, weights every 10 s). Target: the console adds <= 5 % of one core.
* Responsiveness: a pilot run with 10,000 challenges on the Challenges screen; time from a key
  event to the first frame the app renders after it (caught where Textual hands the update to
  the terminal driver, rendered to terminal text), versus the same keys with 100 rows.
  Target: <= 50 ms. The max is a full garbage collection of the process (~0.1 s with 10,000
  events held), not rendering.

Run: python -m benchmarks.bench_console [--seconds 30] [--warmup 20] [--skip-cpu]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

from .common import report, headline, parse_args

ROOT_FLAGS = "--miners 3 --validators 2"


# --- CPU ---------------------------------------------------------------------------------------


def console_argv(root: Path, round_s: int, weights_s: int) -> list[str]:
    return [sys.executable, "-c", "from tensorage.cli import console_main; console_main()", "--network", "devnet",
            "--devnet.root", str(root), "--seconds_per_round", str(round_s), "--seconds_per_weights", str(weights_s),
            *ROOT_FLAGS.split()]


def find_console(parent: psutil.Process) -> psutil.Process:
    for proc in [parent, *parent.children(recursive=True)]:
        try:
            if "console_main" in " ".join(proc.cmdline()):
                return proc
        except psutil.NoSuchProcess:
            continue
    raise RuntimeError("console process not found")


def cpu_share(proc: psutil.Process, seconds: float) -> float:
    """Percent of one core used by ``proc`` itself over ``seconds``."""
    t0 = proc.cpu_times()
    w0 = time.monotonic()
    time.sleep(seconds)
    t1 = proc.cpu_times()
    return ((t1.user + t1.system) - (t0.user + t0.system)) / (time.monotonic() - w0) * 100


def stop_and_wait(proc: psutil.Process, send_q: callable) -> None:
    send_q()
    try:
        proc.wait(timeout=60)
    except psutil.TimeoutExpired:
        proc.kill()


def run_tui(root: Path, round_s: int, weights_s: int, warmup: float, seconds: float) -> float:
    session = f"bench-console-{os.getpid()}"
    cmd = " ".join(shlex.quote(a) for a in console_argv(root, round_s, weights_s))
    subprocess.run(["tmux", "new-session", "-d", "-s", session, "-x", "100", "-y", "30", cmd], check=True)
    try:
        pane = int(subprocess.run(["tmux", "display", "-p", "-t", session, "#{pane_pid}"], capture_output=True,
                                  text=True, check=True).stdout.strip())
        time.sleep(2)
        console = find_console(psutil.Process(pane))
        time.sleep(warmup)
        share = cpu_share(console, seconds)
        stop_and_wait(console, lambda: subprocess.run(["tmux", "send-keys", "-t", session, "q"]))
        return share
    finally:
        subprocess.run(["tmux", "kill-session", "-t", session], capture_output=True)


def run_headless(root: Path, round_s: int, weights_s: int, warmup: float, seconds: float) -> float:
    log = open(root.parent / "headless.log", "ab")
    p = subprocess.Popen(console_argv(root, round_s, weights_s) + ["--no-tui"], stdout=log, stderr=log,
                         env={**os.environ, "COLUMNS": "120"})
    try:
        proc = psutil.Process(p.pid)
        time.sleep(2 + warmup)
        share = cpu_share(proc, seconds)
        stop_and_wait(proc, lambda: p.send_signal(2))
        return share
    finally:
        if p.poll() is None:
            p.kill()
        log.close()


def prepare(root: Path) -> None:
    """A devnet whose miners are fully plotted, so both runs measure the same steady state."""
    from tensorage.chain.devnet_init import init_devnet
    from tensorage.engines.node import read_node_state
    from tensorage.storage.layout import Layout

    init_devnet(root, miners=3, validators=2)
    p = subprocess.Popen(console_argv(root, 3600, 3600) + ["--no-tui"], stdout=subprocess.DEVNULL,
                         stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 300
    try:
        while time.monotonic() < deadline:
            states = [read_node_state(Layout(root / "nodes" / f"miner-{i}")) for i in range(3)]
            if all(s is not None and getattr(s, "plots_held", 0) and not getattr(s, "allocating", False) for s in states):
                break
            time.sleep(1)
    finally:
        p.send_signal(2)
        p.wait(timeout=60)


def cpu_rows(seconds: float, warmup: float) -> list[tuple[str, str, str, str, str]]:
    if shutil.which("tmux") is None:
        return [("console CPU", "skipped: no tmux", "", "", "")]
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-console-") as tmp:
        root = Path(tmp) / "devnet"
        prepare(root)
        for label, round_s, weights_s in (("idle", 3600, 3600), ("rounds 3s", 3, 10)):
            tui = run_tui(root, round_s, weights_s, warmup, seconds)
            headless = run_headless(root, round_s, weights_s, warmup, seconds)
            added = tui - headless
            rows.append((f"console CPU, {label}", f"{tui:.1f}% core", f"{headless:.1f}% no-tui",
                         f"{tui / headless:.1f}x" if headless > 0 else "-", f"{added:+.1f} pts (<= +5)"))
    return rows


# --- responsiveness ------------------------------------------------------------------------------


async def key_latencies(rows: int, keys: list[str]) -> tuple[list[float], list[float], float, int]:
    """Per key: wall time from the key event to the first frame the app renders after it, and
    this process's CPU time until then. Frames are caught where Textual hands a screen update to
    the terminal driver (``App._display``), and rendered to terminal text as a terminal would get."""
    from textual import events

    from tensorage.chain.devnet_init import init_devnet
    from tensorage.config import settings_from_namespace
    from tensorage.engines.devnet import DevnetSupervisor
    from tensorage.events import ChallengeResult, EventBus
    from tensorage.tui.app import ConsoleApp
    from tensorage.tui.sources import DevnetSource
    from tensorage.tui.messages import EnginesStarted

    with tempfile.TemporaryDirectory(prefix="bench-keys-") as tmp:
        root = Path(tmp) / "devnet"
        init_devnet(root, miners=3, validators=2)
        settings = settings_from_namespace({"subtensor.network": "devnet", "devnet.root": str(root)})
        bus = EventBus()
        app = ConsoleApp(DevnetSource(DevnetSupervisor(settings, bus)), start_engines=False, freeze_heap=True)
        frames: list[float] = []
        times: list[float] = []
        cpu: list[float] = []
        async with app.run_test(size=(120, 40)) as pilot:
            display = app._display

            def catch(screen, renderable) -> None:
                if renderable is not None:
                    for _ in app.console.render(renderable):  # the bytes a terminal would receive
                        pass
                    frames.append(time.perf_counter())
                display(screen, renderable)

            app._display = catch
            app.post_message(EnginesStarted("bench"))  # what the console does once its engines run
            await pilot.pause()
            start = time.perf_counter()
            for i in range(rows):
                bus.publish(ChallengeResult(validator="v", miner_uid=2 + i % 3, miner_hotkey=f"hk{i % 3}", plots=4,
                                            proofs_returned=i % 17, proofs_expected=15.2,
                                            result="pass" if i % 9 else "fail", latency_ms=100 + i % 300,
                                            source=f"validator-{i % 2}"))
            await pilot.pause()
            ingest = time.perf_counter() - start
            posted = app.pump.posted
            await pilot.press("6", "3")  # mount both screens once (a first visit parses its CSS, ~0.2 s)
            await pilot.pause(0.2)
            for key in keys:
                seen = len(frames)
                t0, c0 = time.perf_counter(), time.process_time()
                app._driver.send_message(events.Key(key, None))
                while len(frames) == seen and time.perf_counter() - t0 < 2.0:
                    await asyncio.sleep(0.0005)
                if len(frames) > seen:
                    times.append(frames[seen] - t0)
                    cpu.append(time.process_time() - c0)
                await pilot.pause()  # settle before the next key
        return times, cpu, ingest, posted


def p95(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(0.95 * (len(ordered) - 1))))]


def key_rows() -> list[tuple[str, str, str, str, str]]:
    nav = ["down"] * 30 + ["pagedown"] * 10 + ["end", "home", "end"] + ["up"] * 10 + ["home"]
    switch = ["6", "3"] * 20
    big, big_cpu, ingest, posted = asyncio.run(key_latencies(10_000, nav + switch))
    small, small_cpu, _, _ = asyncio.run(key_latencies(100, nav + switch))
    n = len(nav)
    rows = []
    for label, a, b in (("move", big[:n], small[:n]), ("3<->6", big[n:], small[n:])):
        rows.append((f"key->frame {label} p50", f"{statistics.median(a) * 1000:.1f} ms",
                     f"{statistics.median(b) * 1000:.1f} ms", f"{statistics.median(a) / statistics.median(b):.2f}x",
                     "<= 50 ms"))
        rows.append((f"key->frame {label} p95", f"{p95(a) * 1000:.1f} ms", f"{p95(b) * 1000:.1f} ms",
                     f"{p95(a) / p95(b):.2f}x", "<= 50 ms"))
        rows.append((f"key->frame {label} max", f"{max(a) * 1000:.1f} ms", f"{max(b) * 1000:.1f} ms",
                     f"{max(a) / max(b):.2f}x", "(GC pauses)"))
    move, move_base = statistics.median(big[:n]) * 1000, statistics.median(small[:n]) * 1000
    headline("console key to frame p50, 10,000 challenge rows", move, "ms", move_base, "100 rows", "≤ 50 ms",
             p95(big[:n]) * 1000 <= 50, note=f"p95 {p95(big[:n]) * 1000:.1f} ms")
    rows.append(("CPU key->frame p50", f"{statistics.median(big_cpu) * 1000:.1f} ms",
                 f"{statistics.median(small_cpu) * 1000:.1f} ms",
                 f"{statistics.median(big_cpu) / statistics.median(small_cpu):.2f}x", "-"))
    rows.append(("10k-event burst->screen", f"{ingest * 1000:.0f} ms", f"{posted} message(s)", "-", "coalesced"))
    return rows


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=30.0, help="CPU measuring window per run")
    ap.add_argument("--warmup", type=float, default=20.0, help="seconds after start before measuring")
    ap.add_argument("--skip-cpu", action="store_true", help="only the pilot responsiveness part")
    args = parse_args(ap)
    rows = key_rows()
    if not args.skip_cpu:
        rows += cpu_rows(args.seconds, args.warmup)
    report("tensorage-console: cost and responsiveness (baseline: 100 rows; CPU: --no-tui)", rows)


if __name__ == "__main__":
    main()
