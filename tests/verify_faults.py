"""Faults injected into the verifier's worker processes (importable by them: spawned workers unpickle
these by module and name).

* :class:`CrashOnLoad`: answer bytes that kill the worker that unpickles them, as a hostile input
  that crashes a C extension would: the pool breaks under every answer it held.
* :func:`buggy_check_answers` / :func:`buggy_check_answer_file`: the real checkers, except that a
  batch holding an answer of :data:`BUGGY_HOTKEY` raises, as a checker bug would (outside the
  per-answer guard, so the whole batch's work fails).
"""

from __future__ import annotations

import os

from tensorage.proofs import verify_pool

BUGGY_HOTKEY = "5DAAnrj7VHTznn2AWBemMuyBwZWs6FNFjdyVXUeYum3PTXFy"


def _die() -> bytes:
    os._exit(3)


class CrashOnLoad(bytes):
    def __reduce__(self):
        return _die, ()


def buggy_check_answers(batch):
    if any(spec.hotkey == BUGGY_HOTKEY for _, spec in batch):
        raise RuntimeError("injected verifier bug")
    return verify_pool.check_answers(batch)


def buggy_check_answer_file(path, spec):
    if spec.hotkey == BUGGY_HOTKEY:
        raise RuntimeError("injected verifier bug")
    return verify_pool.check_answer_file(path, spec)


def crashing_check_answer_file(path, spec):
    if spec.hotkey == BUGGY_HOTKEY:
        os._exit(3)
    return verify_pool.check_answer_file(path, spec)


def crashing_check_listing(raw, hotkey, *args):
    os._exit(3)


def buggy_check_listing(raw, hotkey, *args):
    raise KeyError("injected verifier bug")
