"""Issue 9, defect 6: hints that work, no leftovers, flags each command really takes.

Run in this process through ``tensorage.cli.run`` (the same code as the `tensorage` script)
unless a real btcli or a real node process is the point."""

from __future__ import annotations

import json
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tensorage.chain.wallets import create_wallet
from tensorage.cli import build_parser, run


def one_line_error(capsys, code: int) -> str:
    err = capsys.readouterr().err.strip()
    assert code != 0, err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:"), err
    return lines[0]


def hinted_command(line: str) -> list[str]:
    """The `btcli …` command a message suggests, as argv."""
    start = line.index("`btcli ") + 1
    return shlex.split(line[start:line.index("`", start)])


@pytest.mark.skipif(shutil.which("btcli", path=str(Path(sys.executable).parent)) is None, reason="needs btcli")
def test_missing_wallet_hints_are_commands_this_btcli_accepts(tmp_path, capsys):
    """The hint is run as given (plus --no-password, so no prompt) and makes the wallet loadable."""
    btcli = str(Path(sys.executable).parent / "btcli")
    wallets = tmp_path / "wallets"
    args = ["allocate", "--wallet.name", "op", "--wallet.hotkey", "hot", "--wallet.path", str(wallets),
            "--db_root_path", str(tmp_path / "db")]
    line = one_line_error(capsys, run(args))
    assert "btcli wallet create" in line
    made = subprocess.run([btcli, *hinted_command(line)[1:], "--no-password"], capture_output=True, text=True,
                          stdin=subprocess.DEVNULL, timeout=60)
    assert made.returncode == 0, made.stderr
    assert (wallets / "op" / "hotkeys" / "hot").exists()
    # only the hotkey missing: the hint is new-hotkey, and it works too
    args[args.index("hot")] = "second"
    line = one_line_error(capsys, run(args))
    assert "btcli wallet new-hotkey" in line and "btcli wallet create" not in line
    made = subprocess.run([btcli, *hinted_command(line)[1:]], capture_output=True, text=True,
                          stdin=subprocess.DEVNULL, timeout=60)
    assert made.returncode == 0, made.stderr
    assert (wallets / "op" / "hotkeys" / "second").exists()
    assert not (tmp_path / "db").exists()


@pytest.mark.parametrize("root, needle", [("/proc/tensorage", "virtual filesystem"), ("", "no directory given"),
                                          ("   ", "no directory given")])
def test_db_roots_that_cannot_hold_data_are_refused(devnet_root, tmp_path, capsys, root, needle):
    create_wallet(tmp_path / "w", "op")
    code = run(["allocate", "--wallet.name", "op", "--wallet.path", str(tmp_path / "w"), "--subtensor.network",
                "devnet", "--devnet.root", str(devnet_root), "--db_root_path", root, "--size_in_gb", "0.03",
                "--disable_prompt"])
    line = one_line_error(capsys, code)
    assert needle in line and "GB free" not in line
    if not root.strip():  # never the current directory in its place
        assert "--db_root_path" in line
        assert needle in one_line_error(capsys, run(["status", "--offline", "--db_root_path", root]))


def test_status_json_exits_nonzero_when_the_chain_cannot_be_read(devnet_root, tmp_path, capsys):
    from tensorage.storage.layout import Layout

    Layout(tmp_path / "node").ensure()
    code = run(["status", "--json", "--db_root_path", str(tmp_path / "node"), "--subtensor.network", "devnet",
                "--devnet.root", str(tmp_path / "no-devnet-here"), "--wallet.name", "x"])
    out = capsys.readouterr().out
    assert "no devnet chain" in json.loads(out)["chain_error"]  # the report is still printed
    assert code == 1
    code = run(["status", "--json", "--offline", "--db_root_path", str(tmp_path / "node")])
    assert code == 0 and "chain_error" not in json.loads(capsys.readouterr().out)


@pytest.mark.parametrize("argv, flag", [(["status", "--restart"], "--restart"),
                                        (["status", "--size_in_gb", "3"], "--size_in_gb 3"),
                                        (["validator", "--size_in_gb", "3"], "--size_in_gb 3"),
                                        (["devnet", "show", "--workers", "2"], "--workers 2"),
                                        (["allocate", "--axon.port", "9"], "--axon.port 9")])
def test_a_command_refuses_flags_it_does_not_use(capsys, argv, flag):
    line = one_line_error(capsys, run(argv))
    command = " ".join(a for a in argv if not a.startswith("-") and not a[0].isdigit())
    assert f"`tensorage {command}` does not take {flag}" in line and "--help" in line


def test_help_says_what_restart_removes():
    allocate = build_parser()._subparsers._group_actions[0].choices["allocate"]  # type: ignore[union-attr]
    text = " ".join(allocate.format_help().split())
    assert "remove every plot and the plot index" in text and "client shards and validator data are kept" in text
    assert "wipe the database root" not in text


def test_a_failed_validator_start_leaves_nothing_behind(devnet_root, tmp_path):
    """An unregistered validator: one line, exit non-zero, no index/validator.sqlite, no 'validator' in status."""
    from .conftest import tensorage

    create_wallet(devnet_root / "wallets", "stranger")
    db = tmp_path / "v"
    args = ["--subtensor.network", "devnet", "--devnet.root", str(devnet_root), "--wallet.name", "stranger",
            "--db_root_path", str(db)]
    result = tensorage("validator", *args)
    assert result.returncode != 0 and "is not registered" in result.stderr
    assert not (db / "index" / "validator.sqlite").exists()
    assert not db.exists()  # it made the directory for this run only
    status = tensorage("status", "--json", "--offline", *args)
    assert status.returncode != 0 and "does not exist" in status.stderr


def test_ctrl_c_on_a_plotting_miner_stops_it_without_tracebacks(devnet_root):
    """Ctrl-C in a terminal sends SIGINT to the whole process group: the miner, its proof workers
    and the plotting child. Only the miner handles it; the others stop when it stops them."""
    import json
    import os
    import signal
    import subprocess
    import sys

    import psutil

    from .subnet import wait_for

    db = devnet_root / "nodes" / "miner-0"
    miner = subprocess.Popen([sys.executable, "-m", "tensorage", "miner", "--subtensor.network", "devnet",
                              "--devnet.root", str(devnet_root), "--wallet.name", "miner-0", "--size_in_gb", "0.08"],
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, start_new_session=True)

    def plotting() -> bool:
        try:
            state = json.loads((db / "index" / "node.json").read_text())
        except (OSError, ValueError):
            return False
        return bool(state.get("allocating")) and any(
            "plot_child" in " ".join(c.cmdline()) for c in psutil.Process(miner.pid).children(recursive=True))

    try:
        try:
            wait_for(plotting, 60, "the miner to be plotting (a k=20 plot takes seconds)")
        except AssertionError:
            miner.kill()
            state = (db / "index" / "node.json").read_text() if (db / "index" / "node.json").exists() else "none"
            raise AssertionError(f"never saw it plotting; node.json: {state[:2000]}; stderr: "
                                 f"{miner.communicate(timeout=10)[1][-3000:]}") from None
        family = psutil.Process(miner.pid).children(recursive=True)
        os.killpg(miner.pid, signal.SIGINT)  # what the terminal does
        _, err = miner.communicate(timeout=60)
    finally:
        if miner.poll() is None:
            miner.kill()
    assert miner.returncode == 0, err
    assert "Traceback" not in err and "KeyboardInterrupt" not in err and "ERROR" not in err, err
    assert "SIGINT: stopping" in err
    wait_for(lambda: not [p for p in family if p.is_running() and p.status() != psutil.STATUS_ZOMBIE], 20,
             "every child of the miner to be gone")
    assert not list((db / "plots" / "tmp").iterdir())  # the plot in progress was undone
