"""Issue 9, defect 5: only supervised children die with their parent.

Each case runs a real child process that calls ``die_with_parent()`` and reports what the kernel
holds for it: the parent-death signal (prctl PR_GET_PDEATHSIG) and its SIGINT disposition."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

from tensorage.procutil import PARENT_ENV, child_env

PROBE = """
import ctypes, json, signal
from tensorage.procutil import die_with_parent
die_with_parent()
sig = ctypes.c_int(0)
ctypes.CDLL("libc.so.6").prctl(2, ctypes.byref(sig))  # PR_GET_PDEATHSIG
print(json.dumps({"pdeathsig": sig.value, "sigint_ignored": signal.getsignal(signal.SIGINT) == signal.SIG_IGN}))
"""


def probe(env: dict) -> dict:
    out = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, env=env, timeout=60)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def test_a_node_started_from_a_shell_outlives_it():
    """`nohup tensorage miner &`: no supervisor asked, so the node keeps no parent-death signal."""
    env = {k: v for k, v in os.environ.items() if k != PARENT_ENV}
    assert probe(env) == {"pdeathsig": 0, "sigint_ignored": False}


def test_a_supervised_child_dies_with_its_supervisor_and_leaves_ctrl_c_to_it():
    assert probe(child_env()) == {"pdeathsig": int(signal.SIGKILL), "sigint_ignored": True}
