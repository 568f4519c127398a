"""Issue 9, defect 8: the project cites only design notes it ships (docs/), and those notes name the
files the code really writes."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def tracked(*patterns: str) -> list[Path]:
    """The project's files matching ``patterns`` (git's list; a plain walk outside a clone)."""
    out = subprocess.run(["git", "ls-files", *patterns], cwd=ROOT, capture_output=True, text=True)
    if out.returncode == 0:
        return [ROOT / line for line in out.stdout.splitlines() if (ROOT / line).exists()]
    found = {p for pattern in patterns for p in ROOT.glob(pattern if "/" in pattern else f"**/{pattern}")}
    return sorted(p for p in found if p.is_file() and ".venv" not in p.parts and "build" not in p.parts)


def anchors(doc: Path) -> set[str]:
    """GitHub's heading anchors: lower case, punctuation dropped, spaces to dashes."""
    return {re.sub(r"[^\w\- ]", "", h.strip().lower()).replace(" ", "-")
            for h in re.findall(r"^#+ (.+)$", doc.read_text(), flags=re.M)}


def test_nothing_cites_a_design_outside_the_repository():
    files = tracked("*.py", "*.md", "*.toml", "*.tcss")
    citing = [str(p.relative_to(ROOT)) for p in files if re.search(r"DESIGN\s*§", p.read_text(errors="replace"))]
    assert citing == []


def test_every_pointer_into_docs_resolves():
    sources = tracked("README.md", "tensorage/*.py", "tests/*.py", "benchmarks/*.py")
    sources = [p for p in sources if p.name != "test_docs.py"]
    seen = 0
    for path in sources:
        for name, anchor in re.findall(r"docs/([\w\-]+\.md)(?:#([\w\-]+))?", path.read_text(errors="replace")):
            target = ROOT / "docs" / name
            assert target.exists(), f"{path.relative_to(ROOT)} points to docs/{name}, which is not in the repository"
            if anchor:
                assert anchor in anchors(target), f"{path.relative_to(ROOT)}: docs/{name} has no #{anchor}"
            seen += 1
    assert seen >= 5  # README, the tests and the code do point into docs/


def test_the_design_notes_name_the_files_a_node_writes():
    from tensorage.engines.snapshot import NODE_STATE_FILE
    from tensorage.storage.layout import Layout
    from tensorage.storage.lock import LOCK_FILE
    from tensorage.storage.share import SHARE_FILE

    design = (ROOT / "docs" / "design.md").read_text()
    layout = Layout(Path("/r"))
    for path in (layout.miner_db, layout.validator_state_db, layout.index / NODE_STATE_FILE,
                 layout.index / LOCK_FILE, layout.index / SHARE_FILE):
        assert path.name in design, f"docs/design.md does not mention {path.name}"
    assert "## Storage layout" in design and "## Console" in design
