"""tensorage-console's command line: what it runs, and one-line errors with a non-zero exit."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import psutil

from tensorage.console_cli import main, resolve
from tensorage.tui.sources import DevnetSource, LocalSource


def run(argv, capsys) -> tuple[int, str]:
    code = main(argv)
    err = capsys.readouterr().err
    return code, err


def test_nothing_to_run_on_a_real_network_says_what_to_pass(capsys):
    code, err = run(["--subtensor.network", "finney"], capsys)
    assert code == 2
    assert err.count("\n") == 1 and "error:" in err and "--network devnet" in err and "--role" in err


def test_unknown_network_and_bad_flags_are_one_line(capsys):
    code, err = run(["--network", "moon"], capsys)
    assert code == 2 and "unknown network 'moon'" in err and err.count("\n") == 1
    code, err = run(["--network", "devnet", "--workers", "0"], capsys)
    assert code == 2 and "--workers: 0 workers would never plot: use at least 1" in err


def test_role_with_a_missing_wallet_fails_before_any_screen(capsys, tmp_path):
    code, err = run(["--role", "miner", "--network", "devnet", "--devnet.root", str(tmp_path / "none"),
                     "--wallet.name", "miner-0"], capsys)
    assert code == 2 and "wallet miner-0/default not found" in err and err.count("\n") == 1


def test_flags_reach_the_engines(devnet_root):
    settings, role, args = resolve(["--network", "devnet", "--devnet.root", str(devnet_root),
                                    "--seconds_per_round", "3", "--seconds_per_weights", "10", "--miners", "2"])
    assert role is None and settings.round_interval == 3 and settings.weights_interval == 10 and args.miners == 2
    from tensorage.console_cli import build_backend

    backend = build_backend(settings, role, args)
    assert isinstance(backend, DevnetSource)
    assert backend.supervisor.node_args == ("--seconds_per_round", "3.0", "--seconds_per_weights", "10")
    settings, role, args = resolve(["--network", "devnet", "--devnet.root", str(devnet_root), "--role", "validator",
                                    "--wallet.name", "validator-0"])
    assert role == "validator" and settings.db_root == devnet_root / "nodes" / "validator-0"
    backend = build_backend(settings, role, args)
    assert isinstance(backend, LocalSource) and backend.node.role == "validator"


def test_no_tui_runs_the_devnet_headless_and_stops_on_sigint(tmp_path):
    root = tmp_path / "devnet"
    proc = subprocess.Popen([sys.executable, "-c", "from tensorage.cli import console_main; console_main()",
                             "--network", "devnet", "--devnet.root", str(root), "--no-tui", "--miners", "1",
                             "--validators", "1"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env={**os.environ, "COLUMNS": "200"})
    lines = []
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        lines.append(line)
        if "partition:" in line:
            break
    assert any("partition:" in ln for ln in lines), "".join(lines)
    proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=60) == 0
    assert not [p for p in psutil.process_iter(["cmdline"]) if any(str(root) in c for c in p.info["cmdline"] or [])]
