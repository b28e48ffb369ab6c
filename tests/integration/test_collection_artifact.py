"""The built collection artifact holds what roles and modules need at run time, nothing else."""

from __future__ import annotations

import subprocess
import sys
import tarfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_artifact_is_lean_and_carries_no_secret(tmp_path: Path) -> None:
    secrets = ROOT / "inventories" / "sandbox" / ".secrets"
    planted = not (secrets / "admin-token").exists()
    if planted:  # make sure an existing sandbox secret would be seen
        secrets.mkdir(parents=True, exist_ok=True)
        (secrets / "admin-token").write_text("canary-secret")
    try:
        subprocess.run(
            [str(Path(sys.executable).with_name("ansible-galaxy")), "collection", "build", "--output-path",
             str(tmp_path), str(ROOT)],
            check=True, capture_output=True, text=True, timeout=300,
        )
    finally:
        if planted:
            (secrets / "admin-token").unlink()
    (artifact,) = tmp_path.glob("vantage-checkpoint-*.tar.gz")
    with tarfile.open(artifact) as tar:
        names = tar.getnames()
    assert "galaxy.yml" not in names and "MANIFEST.json" in names
    for needed in ("roles/checkpoint/tasks/main.yml", "plugins/modules/checkpoint_container.py",
                   "playbooks/site.yml", "meta/runtime.yml"):
        assert needed in names
    top_level = ("src", "images", "benchmarks", "molecule", "build", "tests", "Makefile", ".ci", ".venv", ".git")
    anywhere = (".secrets", "__pycache__", ".pytest_cache", ".mypy_cache")
    leaked = [name for name in names
              if name.split("/")[0] in top_level or any(part in name.split("/") for part in anywhere)]
    assert leaked == []
