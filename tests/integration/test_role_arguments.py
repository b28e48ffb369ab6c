"""Role argument validation: a missing required variable fails before any task, naming it.

Runs the real roles with ansible-playbook against localhost; validation happens before the first
task, so nothing on this machine is touched.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

CHECKPOINT_VARS = {
    "checkpoint_name": "office",
    "checkpoint_instances": ["a"],
    "checkpoint_control_plane_url": "https://cp.example.test",
    "checkpoint_api_token": "canary-token-value-0123456789abcdef",
    "checkpoint_trusted_key_ids": ["0123456789abcdef"],
    "checkpoint_image": "sha256:" + "0" * 64,
}
CONTROL_PLANE_VARS = {
    "control_plane_image": "sha256:" + "0" * 64,
    "control_plane_public_url": "https://cp.example.test",
    "control_plane_admin_token": "canary-admin-token-0123456789abcdef",
}


def run_role(tmp_path: Path, role: str, variables: dict[str, object]) -> subprocess.CompletedProcess[str]:
    import json

    playbook = tmp_path / "play.yml"
    playbook.write_text(
        "- hosts: localhost\n  gather_facts: false\n  tasks:\n"
        f"    - ansible.builtin.include_role:\n        name: vantage.checkpoint.{role}\n"
    )
    extra = tmp_path / "vars.json"
    extra.write_text(json.dumps(variables))
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=str(ROOT / "build" / "collections"), ANSIBLE_NOCOLOR="1")
    (ROOT / "build" / "collections" / "ansible_collections" / "vantage").mkdir(parents=True, exist_ok=True)
    link = ROOT / "build" / "collections" / "ansible_collections" / "vantage" / "checkpoint"
    if not link.exists():
        link.symlink_to(ROOT)
    return subprocess.run(
        [str(Path(sys.executable).with_name("ansible-playbook")), "-i", "localhost,", "-c", "local",
         "-e", f"@{extra}", str(playbook)],
        capture_output=True, text=True, env=env, timeout=120, check=False,
    )


@pytest.mark.parametrize("missing", ["checkpoint_control_plane_url", "checkpoint_api_token", "checkpoint_image"])
def test_checkpoint_role_names_a_missing_variable(tmp_path: Path, missing: str) -> None:
    variables = {k: v for k, v in CHECKPOINT_VARS.items() if k != missing}
    result = run_role(tmp_path, "checkpoint", variables)
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert "missing required arguments" in output and missing in output
    assert "Validating arguments against arg spec" in output
    assert CHECKPOINT_VARS["checkpoint_api_token"] not in output


@pytest.mark.parametrize("missing", ["control_plane_public_url", "control_plane_admin_token"])
def test_control_plane_role_names_a_missing_variable(tmp_path: Path, missing: str) -> None:
    variables = {k: v for k, v in CONTROL_PLANE_VARS.items() if k != missing}
    result = run_role(tmp_path, "control_plane", variables)
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert "missing required arguments" in output and missing in output
    assert CONTROL_PLANE_VARS["control_plane_admin_token"] not in output


def test_checkpoint_role_names_a_bad_value_before_changing_anything(tmp_path: Path) -> None:
    variables = dict(CHECKPOINT_VARS, checkpoint_image="vantage/checkpoint:latest", checkpoint_instances=["A_b"])
    result = run_role(tmp_path, "checkpoint", variables)
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert "checkpoint_image must be pinned by digest" in output
    assert "checkpoint_instances entries must match" in output and "A_b" in output
    assert "changed=0" in output
