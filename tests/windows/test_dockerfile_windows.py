# Copyright (c) Vantage maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""images/checkpoint/Dockerfile.windows, checked statically (no Windows engine can build it here).

Base image per LTSC, the build-time release check against the collection's table, nothing
downloaded while building (wheels installed offline), ContainerUser, and the same HEALTHCHECK,
entry point and command as the Linux image. Its PowerShell is parsed with the PowerShell grammar.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from ansible_collections.vantage.checkpoint.plugins.module_utils import _windows_host
from test_powershell import syntax_errors

ROOT = Path(__file__).resolve().parents[2]
WINDOWS = ROOT / "images" / "checkpoint" / "Dockerfile.windows"
LINUX = ROOT / "images" / "checkpoint" / "Dockerfile"


def instructions(path: Path) -> list[tuple[str, str]]:
    """``(INSTRUCTION, arguments)`` with continuation lines joined and comments dropped."""
    lines = path.read_text().splitlines()
    escape = "`" if lines and lines[0].replace(" ", "") == "#escape=`" else "\\"
    result: list[tuple[str, str]] = []
    pending = ""
    for line in lines:
        if not pending and (not line.strip() or line.lstrip().startswith("#")):
            continue
        if pending and line.lstrip().startswith("#"):
            continue
        if line.rstrip().endswith(escape):
            pending += line.rstrip()[:-1]  # Docker drops the escape and the line break
            continue
        text = pending + line
        pending = ""
        keyword, rest = (text.strip().split(None, 1) + [""])[:2]
        result.append((keyword.upper(), rest.strip()))
    assert not pending, "the file ends inside a continued instruction"
    return result


def args_defaults(items: list[tuple[str, str]]) -> dict[str, str]:
    defaults = {}
    for keyword, rest in items:
        if keyword == "ARG" and "=" in rest:
            name, value = rest.split("=", 1)
            defaults.setdefault(name, value)
    return defaults


def expand(value: str, variables: dict[str, str]) -> str:
    return re.sub(r"\$\{(\w+)\}", lambda m: variables[m.group(1)], value)


def last(items: list[tuple[str, str]], keyword: str) -> str:
    return [rest for kw, rest in items if kw == keyword][-1]


WIN = instructions(WINDOWS)
LIN = instructions(LINUX)
DEFAULTS = args_defaults(WIN)


def test_the_escape_character_is_the_backtick_so_windows_paths_need_no_doubling():
    assert WINDOWS.read_text().startswith("# escape=`\n")


@pytest.mark.parametrize("ltsc", sorted(_windows_host.BUILD_BY_LTSC))
def test_each_ltsc_selects_the_python_server_core_image_of_that_release(ltsc):
    variables = dict(DEFAULTS, LTSC=ltsc)
    base = expand(DEFAULTS["BASE_IMAGE"], variables)
    assert base == "python:{}-windowsservercore-{}".format(DEFAULTS["PYTHON_VERSION"], ltsc)
    froms = [rest for keyword, rest in WIN if keyword == "FROM"]
    assert froms == ["${BASE_IMAGE} AS build", "${BASE_IMAGE}"]


def test_the_default_release_and_python_are_supported():
    assert DEFAULTS["LTSC"] in _windows_host.BUILD_BY_LTSC
    major, minor = (int(part) for part in DEFAULTS["PYTHON_VERSION"].split("."))
    assert (major, minor) >= (3, 13), "Windows Python before 3.13 has no os.fchmod, which key files need"


def test_the_build_refuses_a_base_of_another_release_with_the_collections_table():
    check = next(rest for keyword, rest in WIN if keyword == "RUN" and "$builds" in rest)
    table = {name: int(build) for name, build in re.findall(r"(ltsc\d{4}) = (\d+)", check)}
    assert table == _windows_host.BUILD_BY_LTSC
    assert "[Environment]::OSVersion.Version.Build" in check and "throw" in check


def test_nothing_is_downloaded_while_building_and_the_wheels_are_installed_offline():
    assert not [rest for keyword, rest in WIN if keyword == "ADD"]
    runs = [rest for keyword, rest in WIN if keyword == "RUN"]
    for run in runs:
        assert not re.search(r"https?://|Invoke-WebRequest|Invoke-RestMethod|curl|wget|Start-BitsTransfer", run, re.IGNORECASE), run
    assert ("COPY", "wheels/ C:/wheels/") in WIN
    install = next(run for run in runs if " install " in run)
    for flag in ("--no-index", "--find-links C:\\wheels", "--only-binary :all:", "--isolated", "vantage-checkpoint"):
        assert flag in install
    assert "uninstall --yes pip" in next(run for run in runs if "uninstall" in run)


def test_every_native_command_in_a_run_is_checked():
    for keyword, rest in WIN:
        if keyword == "RUN" and re.search(r"python|\.exe|icacls", rest):
            natives = len(re.findall(r"(?:^|;\s*)(?:python|C:\\vantage\\venv\\Scripts\\\S+|icacls)\b", rest, re.MULTILINE))
            assert rest.count("if ($LASTEXITCODE) { exit $LASTEXITCODE }") == natives, rest


def test_the_runs_are_valid_powershell_under_a_stopping_shell():
    shells = [json.loads(rest) for keyword, rest in WIN if keyword == "SHELL"]
    assert len(shells) == 2 and all(shell[0] == "powershell" and "$ErrorActionPreference = 'Stop';" in shell[-1]
                                    for shell in shells)
    for keyword, rest in WIN:
        if keyword == "RUN":
            assert syntax_errors(rest.encode()) == [], rest


def test_it_runs_as_containeruser_with_its_state_directory_writable_only_there():
    final = WIN[max(i for i, item in enumerate(WIN) if item[0] == "FROM"):]
    assert last(final, "USER") == "ContainerUser"
    user_at = max(i for i, item in enumerate(final) if item[0] == "USER")
    assert not [rest for keyword, rest in final[user_at:] if keyword == "RUN"], "nothing runs after USER"
    env = last(final, "ENV")
    assert "VANTAGE_STATE_DIR=C:\\vantage\\state" in env
    assert last(final, "WORKDIR") == last(final, "VOLUME") == "C:\\vantage\\state"
    grant = next(rest for keyword, rest in final if keyword == "RUN" and "icacls" in rest)
    assert "/inheritance:r" in grant and "'ContainerUser:(OI)(CI)M'" in grant


def test_same_healthcheck_entry_point_and_command_as_linux():
    def health(items):
        options, command = last(items, "HEALTHCHECK").split("CMD ", 1)
        return " ".join(options.split()), json.loads(command)

    win_options, win_probe = health(WIN)
    lin_options, lin_probe = health(LIN)
    assert win_options == lin_options
    assert win_probe[1:] == lin_probe[1:] == ["agent", "healthcheck"]
    win_entry, lin_entry = json.loads(last(WIN, "ENTRYPOINT")), json.loads(last(LIN, "ENTRYPOINT"))
    assert win_probe[0] == win_entry[0] == "C:\\vantage\\venv\\Scripts\\vantage.exe"
    assert lin_probe[0] == lin_entry[0] and lin_entry[0].endswith("/bin/vantage")
    assert json.loads(last(WIN, "CMD")) == json.loads(last(LIN, "CMD")) == ["agent", "run"]
    assert "python -m venv C:\\vantage\\venv" in next(rest for keyword, rest in WIN if keyword == "RUN" and "venv" in rest)


def test_the_identity_key_command_the_windows_module_runs_is_the_images_sub_command():
    module = (ROOT / "plugins" / "modules" / "win_checkpoint_identity.ps1").read_text()
    assert "$module.Params.image, 'identity', \"$mount\\$name\"" in module
    assert "'--network', 'none'" in module and "'--user', 'ContainerUser'" in module
    assert json.loads(last(WIN, "ENTRYPOINT"))[0].endswith("vantage.exe")


def test_the_same_oci_labels_as_linux_plus_the_release():
    def label_keys(items):
        return set(re.findall(r"([\w.]+)=\"", last(items, "LABEL")))

    assert label_keys(WIN) == label_keys(LIN) | {"io.vantage.ltsc"}
