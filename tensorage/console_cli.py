"""`tensorage-console`: filled in by the console issue; headless mode until then."""

from __future__ import annotations


def main(argv=None) -> int:
    raise SystemExit("tensorage-console is not built yet")
