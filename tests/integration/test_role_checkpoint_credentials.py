"""The checkpoint role's check of ``checkpoint_credentials``: errors name the credential and the
field, never a value, and happen before anything is changed.

Runs the real role with ansible-playbook against localhost; the preflight fails before any task
that changes something. A valid dict gets as far as reaching the control plane, which does not
exist here; on the way the preflight creates the configuration directory, which the test puts in
its temporary directory.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CANARY = "canary-credential-value-7d41c2"

CHECKPOINT_VARS = {
    "checkpoint_name": "office",
    "checkpoint_instances": ["a"],
    "checkpoint_control_plane_url": "https://cp.invalid",
    "checkpoint_api_token": "canary-token-value-0123456789abcdef",
    "checkpoint_trusted_key_ids": ["0123456789abcdef"],
    "checkpoint_image": "sha256:" + "0" * 64,
}


def run_role(tmp_path: Path, variables: dict[str, object]) -> tuple[int, str]:
    playbook = tmp_path / "play.yml"
    playbook.write_text(
        "- hosts: localhost\n  gather_facts: false\n  tasks:\n"
        "    - ansible.builtin.include_role:\n        name: vantage.checkpoint.checkpoint\n"
    )
    extra = tmp_path / "vars.json"
    extra.write_text(json.dumps(variables))
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=str(ROOT / "build" / "collections"), ANSIBLE_NOCOLOR="1")
    (ROOT / "build" / "collections" / "ansible_collections" / "vantage").mkdir(parents=True, exist_ok=True)
    link = ROOT / "build" / "collections" / "ansible_collections" / "vantage" / "checkpoint"
    if not link.exists():
        link.symlink_to(ROOT)
    result = subprocess.run(
        [str(Path(sys.executable).with_name("ansible-playbook")), "-vvv", "-i", "localhost,", "-c", "local",
         "-e", f"@{extra}", str(playbook)],
        capture_output=True, text=True, env=env, timeout=120, check=False,
    )
    return result.returncode, result.stdout + result.stderr


def test_bad_entries_are_named_without_their_values(tmp_path: Path) -> None:
    credentials = {
        "mail-probe": {"username": "probe", "password": CANARY},
        "bad name!": {"password": CANARY + "-2"},
        "typo": {"usernme": "x", "password": CANARY + "-3"},
        "numeric": {"password": 123456789},
        "empty": {"password": "", "passphrase": None},
        "flat": CANARY + "-4",
    }
    code, output = run_role(tmp_path, dict(CHECKPOINT_VARS, checkpoint_credentials=credentials))
    assert code != 0
    assert "Invalid checkpoint_credentials" in output
    assert "name must be 1 to 64 characters A-Z, a-z, 0-9, '_', '.' and '-', starting with a letter or digit, got 'bad name!'" in output
    assert "'typo' has unknown field 'usernme'" in output
    assert "'numeric' field 'password' must be a string (quote it)" in output
    assert "'empty' has no field set" in output
    assert "'flat' must be a dict" in output
    assert "mail-probe" not in output.split("Invalid checkpoint_credentials", 1)[1].split("\n", 1)[0]
    assert CANARY not in output and "123456789" not in output
    assert "changed=0" in output


def test_valid_credentials_pass_the_check_and_are_never_printed(tmp_path: Path) -> None:
    credentials = {
        "mail-probe": {"username": "probe@example.internal", "password": CANARY},
        "sftp.probe_2": {"private_key": "-----BEGIN OPENSSH PRIVATE KEY-----\n" + CANARY + "\n-----END", "passphrase": ""},
    }
    variables = dict(CHECKPOINT_VARS, checkpoint_credentials=credentials, checkpoint_config_dir=str(tmp_path / "etc"),
                     ansible_python_interpreter=sys.executable)
    code, output = run_role(tmp_path, variables)
    assert code != 0  # cp.invalid cannot be reached - the next check after the credentials'
    assert "Invalid checkpoint_credentials" not in output
    assert "Cannot reach the control plane" in output
    assert CANARY not in output
    assert not (tmp_path / "etc" / "office" / "credentials.json").exists()  # written only after the preflight
