# Copyright (c) Vantage maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The playbooks over a mixed Linux and Windows inventory, and the controller-side Windows plugins run by Ansible.

The Windows host itself cannot run here: the plugins that decide on the controller alone run for
real through ansible-playbook against localhost, fed with the recorded Windows answers.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from ansible_collections.vantage.checkpoint.plugins.module_utils import _windows_identity, _windows_sddl
from ansible_collections.vantage.checkpoint.tests.unit.plugins import windows_answers as answers

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
INVENTORY = ROOT / "inventories" / "windows-example"
ENV = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=str(ROOT / "build" / "collections"), ANSIBLE_NOCOLOR="1",
           ANSIBLE_LOCALHOST_WARNING="false", ANSIBLE_INVENTORY_UNPARSED_WARNING="false")


def ansible(tool: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(BIN / tool), *args], capture_output=True, text=True, env=ENV, timeout=300, check=False,
                          cwd=ROOT)


@pytest.mark.parametrize("playbook", ["site.yml", "deploy.yml", "verify.yml", "egress.yml"])
def test_playbooks_pass_the_syntax_check_over_the_mixed_inventory(playbook: str):
    done = ansible("ansible-playbook", "-i", str(INVENTORY), "--syntax-check", "playbooks/" + playbook)
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_inventory_reaches_windows_over_winrm_https_and_openssh():
    done = ansible("ansible-inventory", "-i", str(INVENTORY), "--list")
    assert done.returncode == 0, done.stderr
    hostvars = json.loads(done.stdout)["_meta"]["hostvars"]
    winrm, ssh = hostvars["ckpt-w22.example.com"], hostvars["ckpt-w25.example.com"]
    assert (winrm["ansible_connection"], winrm["ansible_port"], winrm["ansible_winrm_scheme"]) == ("winrm", 5986, "https")
    assert winrm["ansible_winrm_server_cert_validation"] == "validate"
    assert (ssh["ansible_connection"], ssh["ansible_shell_type"]) == ("ssh", "powershell")
    for host in (winrm, ssh):
        assert (host["ansible_become_method"], host["ansible_become_user"]) == ("runas", "SYSTEM")
        assert host["checkpoint_name"] == "plant"
    linux = hostvars["ckpt-lnx1.example.com"]
    assert "ansible_become_method" not in linux and linux["checkpoint_name"] == "hq"
    groups = json.loads(done.stdout)
    checkpoints = set(groups["vantage_linux"]["hosts"]) | set(groups["vantage_windows_winrm"]["hosts"]) | set(
        groups["vantage_windows_ssh"]["hosts"])
    assert len(checkpoints) == 4


def test_pywinrm_is_installed_for_winrm_connections():
    import winrm  # noqa: F401  (requirements.txt: the controller's WinRM client)


PLAYBOOK = """
- hosts: localhost
  connection: local
  gather_facts: false
  tasks:
    - name: Plan each recorded host
      vantage.checkpoint.win_docker_host_plan:
        facts: "{{ item.facts }}"
        engine_info: "{{ item.info }}"
        engine_version: 27.5.1
        engine_sha256: "{{ sha256 }}"
        engine_url: https://download.docker.com/win/static/stable/x86_64/docker-27.5.1.zip
        allow_reboot: "{{ item.allow_reboot }}"
        isolation: "{{ item.isolation }}"
      loop: "{{ recorded }}"
      loop_control:
        label: "{{ item.name }}"
      register: plans
      failed_when: false

    - name: Plan the checkpoint on each recorded host
      vantage.checkpoint.win_checkpoint_plan:
        facts: "{{ item.facts }}"
        checkpoint: plant
        instances: [a, b]
        image: "{{ image }}"
        control_plane_url: https://cp.example.com:8443
      loop: "{{ recorded }}"
      loop_control:
        label: "{{ item.name }}"
      register: checkpoints
      failed_when: false

    - name: Record the answers
      ansible.builtin.copy:
        content: "{{ {'plans': plans.results, 'checkpoints': checkpoints.results} | to_json }}"
        dest: "{{ out }}"
        mode: "0600"
"""


def test_the_controller_side_plugins_decide_through_ansible(tmp_path: Path):
    hosts = [
        {"name": release, "facts": answers.facts(release), "info": answers.engine_info_fresh(), "allow_reboot": "true",
         "isolation": "process"}
        for release in ("server2019", "server2022", "server2025", "windows11")
    ]
    hosts.append(dict(hosts[1], name="no-reboot", allow_reboot="false"))
    hosts.append(dict(hosts[1], name="hyperv", isolation="hyperv"))
    (tmp_path / "play.yml").write_text(PLAYBOOK)
    (tmp_path / "vars.json").write_text(json.dumps({
        "recorded": hosts, "sha256": answers.ARCHIVE_SHA256, "image": answers.IMAGE, "out": str(tmp_path / "out.json")}))
    done = ansible("ansible-playbook", "-i", "localhost,", "-e", f"@{tmp_path / 'vars.json'}",
                   "-e", f"ansible_python_interpreter={sys.executable}", str(tmp_path / "play.yml"))
    assert done.returncode == 0, done.stdout + done.stderr
    out = json.loads((tmp_path / "out.json").read_text())
    plans = {item["item"]["name"]: item for item in out["plans"]}
    for release, ltsc in (("server2019", "ltsc2019"), ("server2022", "ltsc2022"), ("server2025", "ltsc2025")):
        assert not plans[release].get("failed"), plans[release]
        assert plans[release]["plan"]["host"]["ltsc"] == ltsc
        assert plans[release]["plan"]["containers"] == {"install": True, "reboot": True}
        assert plans[release]["plan"]["daemon_config"]["hosts"] == ["npipe:////./pipe/docker_engine"]
    # failed_when: false keeps the play going; a refusal is a message, its reasons and no plan
    for name, words in (("windows11", "Windows client edition"), ("no-reboot", "docker_host_windows_allow_reboot=false forbids"),
                        ("hyperv", "hyperv is not supported")):
        assert "plan" not in plans[name] and words in plans[name]["msg"], plans[name]
        assert plans[name]["msg"].startswith("Refused, nothing was changed by this task: ")
    checkpoints = {item["item"]["name"]: item for item in out["checkpoints"]}
    assert checkpoints["server2025"]["plan"]["layout"]["instances"]["b"]["identity_key"] == (
        "C:\\ProgramData\\Vantage\\checkpoints\\plant\\b\\identity.pem")
    assert "plan" not in checkpoints["windows11"] and checkpoints["windows11"]["reasons"]


def test_what_vantage_identity_prints_is_what_the_controller_accepts(tmp_path: Path):
    """The image's key command and the collection's parser agree (the same command runs in the Windows image)."""
    key = tmp_path / "identity.pem"
    created = subprocess.run([str(BIN / "vantage"), "identity", str(key)], capture_output=True, text=True, check=True)
    again = subprocess.run([str(BIN / "vantage"), "identity", str(key)], capture_output=True, text=True, check=True)
    report = {"changed": True, "path": "C:\\k\\identity.pem", "directory": "C:\\k", "created": True,
              "keygen": {"rc": 0, "stdout": created.stdout, "stderr": ""},
              "readback": {"rc": 0, "stdout": again.stdout, "stderr": ""},
              "directory_sddl": _windows_sddl.KEY_DIRECTORY, "file_sddl": _windows_sddl.KEY_FILE}
    identity, reasons = _windows_identity.check_identity(report)
    assert reasons == []
    assert identity == dict(json.loads(created.stdout), created=True)
    assert json.loads(again.stdout)["created"] is False


@pytest.mark.parametrize("role", ["docker_host", "checkpoint", "egress_firewall", "auto_update"])
def test_the_windows_variables_have_defaults_and_argument_specs_that_agree(role: str):
    import yaml

    defaults = yaml.safe_load((ROOT / "roles" / role / "defaults" / "main.yml").read_text())
    options = yaml.safe_load((ROOT / "roles" / role / "meta" / "argument_specs.yml").read_text())[
        "argument_specs"]["main"]["options"]
    windows = sorted(name for name in defaults if "_windows_" in name)
    assert windows
    for name in windows:
        assert name in options, name
        assert options[name]["default"] == defaults[name], name
        assert options[name]["description"], name
