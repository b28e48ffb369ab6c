# Copyright (c) Vantage maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Every PowerShell file of the collection parses with a real PowerShell grammar, and its references resolve.

No ``pwsh`` exists here, so ansible-test's ``pslint`` and ``validate-modules`` cannot inspect the
modules. Instead the tree-sitter PowerShell grammar (PyPI ``tree-sitter-powershell``) parses each
``.ps1``/``.psm1``: a file with any ERROR or MISSING node fails. The grammar rejects a few forms
PowerShell accepts (a bare-word list such as ``-Function A, B``); the collection writes those forms
quoted, which both accept. On top, the references between the files are checked statically.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
import tree_sitter_powershell
from tree_sitter import Language, Parser

ROOT = Path(__file__).resolve().parents[2]
PARSER = Parser(Language(tree_sitter_powershell.language()))


def powershell_files() -> list[Path]:
    listed = subprocess.run(["git", "-C", str(ROOT), "ls-files", "--cached", "--others", "--exclude-standard",
                             "*.ps1", "*.psm1"], capture_output=True, text=True, check=True).stdout.split()
    return sorted(ROOT / name for name in listed if (ROOT / name).exists())


def syntax_errors(source: bytes) -> list[str]:
    tree = PARSER.parse(source)
    found = []
    stack = [tree.root_node]
    while stack:
        node = stack.pop()
        if node.type == "ERROR" or node.is_missing:
            row, column = node.start_point
            kind = f"missing {node.type}" if node.is_missing else "cannot parse"
            text = source[node.start_byte:node.end_byte][:80].decode()
            found.append(f"line {row + 1} column {column + 1}: {kind} {text!r}")
        stack.extend(node.children)
    return sorted(found)


def command_names(source: bytes) -> set[str]:
    names = set()
    stack = [PARSER.parse(source).root_node]
    while stack:
        node = stack.pop()
        if node.type == "command_name":
            names.add(source[node.start_byte:node.end_byte].decode())
        stack.extend(node.children)
    return names


FILES = powershell_files()
MODULES = [path for path in FILES if path.suffix == ".ps1" and path.parent.name == "modules"]
UTIL = ROOT / "plugins" / "module_utils" / "VantageWindows.psm1"
EGRESS = ROOT / "roles" / "egress_firewall" / "files" / "vantage-egress.ps1"
UPDATE = ROOT / "roles" / "auto_update" / "files" / "vantage-checkpoint-update.ps1"


def test_the_collection_has_powershell_to_check():
    assert {path.name for path in MODULES} >= {
        "win_docker_engine_info.ps1", "win_docker_engine.ps1", "win_secure_directory.ps1", "win_checkpoint_image.ps1",
        "win_checkpoint_identity.ps1", "win_docker_exec.ps1", "win_checkpoint_files.ps1", "win_acl_report.ps1",
        "win_scheduled_task_xml.ps1"}
    assert UTIL in FILES
    assert {EGRESS, UPDATE} <= set(FILES)


@pytest.mark.parametrize("path", FILES, ids=lambda path: str(path.relative_to(ROOT)))
def test_parses_without_errors(path: Path):
    assert syntax_errors(path.read_bytes()) == []


@pytest.mark.parametrize("broken", [
    b"if ($a) { $b = 1",                                   # unclosed block
    b"$module.FailJson(\"no closing quote)\n",             # unclosed string
    b"$x = @{ a = 1; b = }\n",                             # hashtable value missing
    b"foreach ($item in $list { Write-Output $item }\n",   # missing parenthesis
    b"function Get-Thing { param([string]$Path) \n",      # unclosed function
])
def test_the_grammar_catches_broken_powershell(broken: bytes):
    assert syntax_errors(broken), broken


@pytest.mark.parametrize("path", MODULES, ids=lambda path: path.name)
def test_each_module_is_an_ansible_basic_module_with_its_documentation(path: Path):
    text = path.read_text()
    assert text.startswith("#!powershell\n")
    assert "#AnsibleRequires -CSharpUtil Ansible.Basic" in text
    assert "[Ansible.Basic.AnsibleModule]::Create($args, $spec)" in text
    assert "supports_check_mode = $true" in text
    stub = path.with_suffix(".py").read_text()
    assert f"module: {path.stem}\n" in stub
    assert "platforms: windows" in stub


@pytest.mark.parametrize("path", MODULES, ids=lambda path: path.name)
def test_module_params_are_declared_in_the_spec(path: Path):
    text = path.read_text()
    declared = set(re.findall(r"^        ([a-z0-9_]+) = @\{ type = ", text, re.MULTILINE))
    used = set(re.findall(r"\$module\.Params\.([a-z0-9_]+)", text))
    assert used <= declared, sorted(used - declared)
    assert declared <= used, f"declared but never used: {sorted(declared - used)}"


def test_required_utils_exist_and_every_vantage_function_is_exported():
    util = UTIL.read_bytes()
    defined = set(re.findall(r"^Function ([A-Za-z0-9-]+) \{", util.decode(), re.MULTILINE))
    exported = set(re.findall(r"'([A-Za-z]+-Vantage[A-Za-z0-9]*)'", util.decode().split("Export-ModuleMember", 1)[1]))
    assert exported <= defined
    for path in FILES:
        text = path.read_text()
        source = text.encode()
        for util_name in re.findall(r"^#AnsibleRequires -PowerShell \.\.module_utils\.(\w+)$", text, re.MULTILINE):
            assert (ROOT / "plugins" / "module_utils" / (util_name + ".psm1")).exists(), (path, util_name)
        calls = {name for name in command_names(source) if re.fullmatch(r"[A-Z][a-z]+-Vantage\w*", name)}
        if path == UTIL:
            assert calls <= defined, sorted(calls - defined)
        else:
            assert calls <= exported, (path.name, sorted(calls - exported))
            if calls:
                assert "#AnsibleRequires -PowerShell ..module_utils.VantageWindows" in text, path.name
        for command, util_name in (("Run-Command", "CommandUtil"), ("Argv-ToString", "ArgvParser")):
            if command in command_names(source):
                assert f"#AnsibleRequires -PowerShell Ansible.ModuleUtils.{util_name}" in text, (path.name, command)


def script_parameters(path: Path) -> set[str]:
    block = re.search(r"^param\((.*?)^\)", path.read_text(), re.MULTILINE | re.DOTALL)
    assert block, path
    return set(re.findall(r"\$([A-Za-z]+)\s*(?:=|,|$)", block.group(1), re.MULTILINE))


def test_the_reconciler_reads_only_what_the_controller_renders():
    from ansible_collections.vantage.checkpoint.plugins.module_utils import _windows_egress

    document = _windows_egress.render([{"name": "control-plane", "hosts": ["cp.example.com"], "ports": [443]}],
                                      ["10.0.0.53"], "plant", "vantage-plant")
    read = set(re.findall(r"\$document\.([a-z_]+)", EGRESS.read_text()))
    assert read and read <= set(document), sorted(read - set(document))
    # the parameters the action and the scheduled tasks pass (win_egress_policy)
    assert script_parameters(EGRESS) == {"Policy", "Docker", "Watch", "Verify"}


def test_the_update_command_reads_only_what_update_conf_has():
    from ansible_collections.vantage.checkpoint.plugins.module_utils import _windows_update

    conf = _windows_update.update_conf({
        "checkpoint": "plant", "channel": "stable", "instances": ["a"], "control_plane_url": "https://cp.example.com", "ca": True,
        "validate_certs": True, "health_timeout": 1, "gate_timeout": 1, "lock_dir": "C:\\lock",
        "layout": {"update_token": "C:\\t", "ca": "C:\\ca.pem", "trusted_keys": "C:\\k", "state_dir": "C:\\s"}})
    keys = set(re.findall(r"^([a-z_]+) = ", conf, re.MULTILINE))
    read = set(re.findall(r"\$settings\['([a-z_]+)'\]", UPDATE.read_text()))
    assert read and read <= keys, sorted(read - keys)
    assert script_parameters(UPDATE) == {"Config", "ManifestFile", "Check", "RetryFailed", "Docker"}
