"""The fault suite's ledger: every fault injected, whether the system survived it, and the bytes it
lost. One per session; written to ``faults-report.json`` and summed in the terminal summary, so a
run says how much it injected, not only that it passed."""

from __future__ import annotations

import json
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Iterator


@dataclass
class Fault:
    kind: str            # kill9, disk_full, clock_skew, chain_error, chain_stall
    role: str            # allocator, miner, validator, gateway, client, chain
    point: str           # where in an operation it hit: mid-plot, mid-put, mid-window, ...
    seed: int
    test: str
    survived: bool = False
    bytes_lost: int = 0
    detail: str = ""
    seconds: float = 0.0


@dataclass
class Ledger:
    seed: int
    faults: list[Fault] = field(default_factory=list)
    started: float = field(default_factory=time.monotonic)

    @contextmanager
    def inject(self, kind: str, role: str, point: str, test: str) -> Iterator[Fault]:
        """Record one fault; it survived only if the block (inject, restart, check) ends cleanly
        with no byte lost. The check sets ``bytes_lost``."""
        fault = Fault(kind=kind, role=role, point=point, seed=self.seed, test=test)
        self.faults.append(fault)
        began = time.monotonic()
        try:
            yield fault
        except BaseException as exc:
            fault.detail = fault.detail or f"{type(exc).__name__}: {exc}"[:500]
            raise
        else:
            fault.survived = fault.bytes_lost == 0
        finally:
            fault.seconds = round(time.monotonic() - began, 3)

    def lost(self, fault: Fault, nbytes: int, what: str) -> None:
        """Count bytes lost and fail the test: no fault may lose a byte."""
        fault.bytes_lost += nbytes
        fault.detail = what
        raise AssertionError(f"{fault.kind} of the {fault.role} {fault.point} lost {nbytes} bytes: {what}")

    def summary(self) -> dict:
        by_role: dict[str, dict[str, int]] = {}
        for f in self.faults:
            row = by_role.setdefault(f"{f.kind}/{f.role}", {"injected": 0, "survived": 0, "bytes_lost": 0})
            row["injected"] += 1
            row["survived"] += int(f.survived)
            row["bytes_lost"] += f.bytes_lost
        return {"seed": self.seed, "injected": len(self.faults), "survived": sum(f.survived for f in self.faults),
                "bytes_lost": sum(f.bytes_lost for f in self.faults), "seconds": round(time.monotonic() - self.started, 1),
                "by_kind_and_role": by_role}

    def write(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({**self.summary(), "faults": [asdict(f) for f in self.faults]}, indent=1))
