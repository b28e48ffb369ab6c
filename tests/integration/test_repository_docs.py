"""The repository explains itself: its documents link to what exists, and nothing points outside it."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCS = sorted([ROOT / "README.md", *(ROOT / "docs").glob("*.md")])
SCENARIOS = sorted(p.name for p in (ROOT / "molecule").iterdir() if (p / "molecule.yml").is_file())

#: references to things a reader of the repository does not have: a design brief kept elsewhere,
#: issue numbers of a tracker, the machines the tests happen to run on
OUTSIDE = re.compile(r"DESIGN(\.md|\s*§)|\bissues? #?[0-9]+\b|\b(these|our) machines\b|\.\./shared/", re.IGNORECASE)
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")


def _tracked_text_files() -> list[Path]:
    listed = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True).stdout
    files = [ROOT / name for name in listed.decode().split("\0") if name]
    return [f for f in files if f.is_file() and f != Path(__file__).resolve()]


def test_nothing_refers_outside_the_repository() -> None:
    found = []
    for path in _tracked_text_files():
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            continue
        for number, line in enumerate(text.splitlines(), 1):
            if OUTSIDE.search(line):
                found.append(f"{path.relative_to(ROOT)}:{number}: {line.strip()}")
    assert found == []


def _slug(heading: str) -> str:
    """The anchor GitHub gives a heading."""
    text = re.sub(r"[`*_]", "", heading.strip().lower())
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def _anchors(path: Path) -> set[str]:
    in_code = False
    anchors = set()
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.startswith("```"):
            in_code = not in_code
        elif not in_code and line.startswith("#"):
            anchors.add(_slug(line.lstrip("#")))
    return anchors


@pytest.mark.parametrize("document", DOCS, ids=lambda p: str(p.relative_to(ROOT)))
def test_links_point_to_files_and_headings_that_exist(document: Path) -> None:
    broken = []
    for target in LINK.findall(document.read_text(encoding="utf-8")):
        if re.match(r"^[a-z]+:", target):  # https:, mailto:
            continue
        name, _, anchor = target.partition("#")
        path = (document.parent / name).resolve() if name else document
        if not path.exists():
            broken.append(target)
        elif anchor and path.suffix == ".md" and anchor not in _anchors(path):
            broken.append(target)
    assert broken == []


def test_the_readme_lists_every_molecule_scenario_and_links_the_architecture() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert SCENARIOS, "no Molecule scenario found"
    assert [s for s in SCENARIOS if f"| `{s}` |" not in readme] == []
    assert "(docs/architecture.md)" in readme


def test_every_page_under_docs_is_reachable_from_the_readme_or_the_architecture() -> None:
    linked = set()
    for document in (ROOT / "README.md", ROOT / "docs" / "architecture.md"):
        for target in LINK.findall(document.read_text(encoding="utf-8")):
            linked.add((document.parent / target.partition("#")[0]).resolve())
    assert [p.name for p in DOCS if p.parent.name == "docs" and p.resolve() not in linked | {ROOT / "docs" / "architecture.md"}] == []
