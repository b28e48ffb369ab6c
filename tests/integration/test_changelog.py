"""The changelog: the released versions, the one in galaxy.yml, and the next release.

``antsibull-changelog`` keeps ``changelogs/changelog.yaml`` and renders ``CHANGELOG.md``; every
release has a release summary, the newest is ``galaxy.yml``'s version, and a fragment added after
it goes into the next release without touching the released ones (tried on a copy).
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import yaml

TOP = Path(__file__).resolve().parents[2]
CHANGELOG = Path(sys.executable).with_name("antsibull-changelog")


def antsibull(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(CHANGELOG), *args], cwd=cwd, capture_output=True, text=True, timeout=300, check=False,
        env={"PATH": f"{CHANGELOG.parent}:/usr/bin:/bin", "HOME": str(cwd)},
    )  # fmt: skip


def releases(root: Path) -> dict[str, dict[str, object]]:
    data: dict[str, dict[str, object]] = yaml.safe_load((root / "changelogs" / "changelog.yaml").read_text())["releases"]
    return data


def test_releases_have_summaries_and_the_newest_is_galaxy_yml_version() -> None:
    lint = antsibull(TOP, "lint")
    assert lint.returncode == 0 and lint.stdout.strip() == "", lint.stdout + lint.stderr
    found = releases(TOP)
    assert found, "no release has been cut"
    for version, release in found.items():
        changes = release["changes"]
        assert isinstance(changes, dict) and changes.get("release_summary"), f"{version} has no release_summary"
    version = yaml.safe_load((TOP / "galaxy.yml").read_text())["version"]
    assert max(found, key=lambda v: tuple(int(p) for p in v.split("."))) == version
    assert f"## v{version.replace('.', chr(92) + '.')}" in (TOP / "CHANGELOG.md").read_text()


def test_a_later_fragment_goes_into_the_next_release(tmp_path: Path) -> None:
    root = tmp_path / "ansible_collections" / "vantage" / "checkpoint"
    files = subprocess.run(["git", "ls-files"], cwd=TOP, capture_output=True, text=True, check=True).stdout.split()
    for name in files:
        if (TOP / name).is_file():
            (root / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(TOP / name, root / name)
    before = releases(root)
    (root / "changelogs" / "fragments").mkdir(exist_ok=True)
    (root / "changelogs" / "fragments" / "next-thing.yml").write_text(
        "---\nminor_changes:\n  - health - a change made after the release.\n"
    )
    (root / "changelogs" / "fragments" / "next-summary.yml").write_text("---\nrelease_summary: The next release.\n")
    result = antsibull(root, "release", "--version", "99.0.0")
    assert result.returncode == 0, result.stdout + result.stderr
    after = releases(root)
    assert {k: v for k, v in after.items() if k != "99.0.0"} == before
    changes = after["99.0.0"]["changes"]
    assert "health - a change made after the release." in changes["minor_changes"]
    assert changes["release_summary"] == "The next release."
    assert "a change made after the release" in (root / "CHANGELOG.md").read_text()
