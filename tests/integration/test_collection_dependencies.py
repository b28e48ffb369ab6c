"""The built artifact works with its declared dependencies and nothing else.

The artifact (``ansible-galaxy collection build``) is installed into an empty collections path
together with the collections its ``MANIFEST.json`` declares - and theirs - copied from the
``ansible`` package's bundled collections (Galaxy is unreachable here). The collections installed
with Python are hidden (``ANSIBLE_COLLECTIONS_SCAN_SYS_PATH=false``), so only ansible-core and
that path exist. Then every playbook passes ``--syntax-check`` by its collection name, every role
runs with its defaults (modules recorded, not run: ``module_recorder.py``) so that every template,
variable and filter of every task is rendered, and ``ansible-doc`` renders every plugin and role.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml
from module_recorder import FACTS, REDHAT_FACTS, ROLE_VARS, Recorder
from packaging.specifiers import SpecifierSet
from packaging.version import Version

TOP = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
BUNDLED = Path(__import__("ansible_collections").__path__[0])
PLUGIN_TYPES = {
    "modules": "module", "inventory": "inventory", "filter": "filter", "test": "test", "lookup": "lookup",
}


@dataclass(frozen=True)
class Installed:
    path: Path
    artifact: Path
    #: what the artifact's MANIFEST.json declares, and every collection installed for it
    dependencies: dict[str, str]
    closure: dict[str, str]

    def env(self) -> dict[str, str]:
        return dict(
            os.environ,
            ANSIBLE_COLLECTIONS_PATH=str(self.path),
            ANSIBLE_COLLECTIONS_SCAN_SYS_PATH="false",
            ANSIBLE_NOCOLOR="1",
            ANSIBLE_LOCAL_TEMP=str(self.path.parent / "local-tmp"),
        )

    def run(self, *argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            [str(BIN / argv[0]), *argv[1:]], capture_output=True, text=True, env=self.env(), timeout=300, check=False
        )
        if check:
            assert result.returncode == 0, f"{' '.join(argv)}:\n{result.stdout[-3000:]}{result.stderr[-3000:]}"
        return result


def manifest(directory: Path) -> dict[str, object]:
    info: dict[str, object] = json.loads((directory / "MANIFEST.json").read_text())["collection_info"]
    return info


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Installed]:
    root = tmp_path_factory.mktemp("isolated")
    subprocess.run(
        [str(BIN / "ansible-galaxy"), "collection", "build", "--output-path", str(root), str(TOP)],
        check=True, capture_output=True, timeout=300,
    )  # fmt: skip
    (artifact,) = root.glob("vantage-checkpoint-*.tar.gz")
    path = root / "collections"
    target = path / "ansible_collections" / "vantage" / "checkpoint"
    target.mkdir(parents=True)
    with tarfile.open(artifact) as tar:
        tar.extractall(target, filter="data")
    declared: dict[str, str] = dict(manifest(target)["dependencies"])  # type: ignore[call-overload]
    pending, needed = dict(declared), dict[str, str]()
    while pending:  # the declared collections, and the collections they declare
        name, constraint = pending.popitem()
        source = BUNDLED.joinpath(*name.split("."))
        assert (source / "MANIFEST.json").is_file(), f"dependency {name} is not bundled with ansible"
        info = manifest(source)
        version = str(info["version"])
        if constraint != "*":
            assert Version(version) in SpecifierSet(constraint), f"{name} {version} does not meet {constraint}"
        if name not in needed:
            needed[name] = version
            shutil.copytree(source, path / "ansible_collections" / name.replace(".", "/"))
            pending.update(info["dependencies"])  # type: ignore[call-overload]
    yield Installed(path, artifact, declared, needed)


def test_only_the_declared_collections_exist(installed: Installed) -> None:
    listing = json.loads(installed.run("ansible-galaxy", "collection", "list", "--format", "json").stdout)
    # ansible-core's own internal collections (ansible._protomatter) live inside the ansible package
    core = Path(__import__("ansible").__file__).parent
    found = {name for path, collections in listing.items() if not Path(path).is_relative_to(core) for name in collections}
    assert found == {"vantage.checkpoint", *installed.closure}
    assert set(installed.dependencies) <= found and "community.general" not in found


NAME = r"([a-z_][a-z0-9_]*\.[a-z_][a-z0-9_]*)\.[a-z_][a-z0-9_]*"
#: where content names a plugin of a collection by its FQCN
FQCN_PATTERNS = [
    re.compile(r"^\s*(?:- )?" + NAME + r":", re.MULTILINE),  # a task's module or action
    re.compile(r"(?:\||\bis\s+(?:not\s+)?)\s*" + NAME + r"\b"),  # a filter or a test
    re.compile(r"['\"]" + NAME + r"['\"]"),  # lookup('...'), map('...'), select('...')
    re.compile(r"^\s*[a-z_]+:\s+" + NAME + r"\s*$", re.MULTILINE),  # ansible_connection: ns.name.plugin
]


def named_collections() -> dict[str, set[str]]:
    """The existing collections whose plugins the roles, playbooks and inventories name, and where."""
    found: dict[str, set[str]] = {}
    for folder in ("roles", "playbooks", "inventories"):
        for path in (TOP / folder).rglob("*"):
            if path.suffix not in (".yml", ".yaml", ".j2"):
                continue
            text = path.read_text()
            for pattern in FQCN_PATTERNS:
                for match in pattern.finditer(text):
                    name = match.group(1)
                    # 'merge.json.j2' or the label 'io.vantage.sandbox' are no collections
                    if name in ("ansible.builtin", "ansible.legacy") or BUNDLED.joinpath(*name.split(".")).is_dir():
                        found.setdefault(name, set()).add(str(path.relative_to(TOP)))
    return found


def test_every_collection_the_content_names_is_declared(installed: Installed) -> None:
    named = named_collections()
    assert {"community.docker", "community.crypto"} <= set(named)  # the scan sees real use
    known = {"ansible.builtin", "ansible.legacy", "vantage.checkpoint", *installed.dependencies}
    undeclared = {name: sorted(files) for name, files in named.items() if name not in known}
    assert not undeclared, f"named but not declared in galaxy.yml: {undeclared}"


def playbooks() -> list[str]:
    return sorted(
        str(path.relative_to(TOP / "playbooks").with_suffix("")).replace("/", ".")
        for path in (TOP / "playbooks").rglob("*.yml")
        if path.parent.name not in ("tasks", "vars")  # task and variable files of the playbooks
    )


@pytest.mark.parametrize("name", playbooks())
def test_playbook_syntax_by_collection_name(installed: Installed, name: str) -> None:
    result = installed.run("ansible-playbook", "-i", "localhost,", "--syntax-check", f"vantage.checkpoint.{name}")
    # the name resolves to the playbook file (playbooks/sandbox/ once shadowed sandbox.yml)
    expected = installed.path / "ansible_collections/vantage/checkpoint/playbooks" / (name.replace(".", "/") + ".yml")
    assert f"playbook: {expected}" in result.stdout


def role_runs() -> list[tuple[str, str]]:
    """Each role on a Debian host, and on a RHEL-family host when its tasks or vars branch on the OS."""
    runs = []
    for role in sorted(ROLE_VARS):
        runs.append((role, "Debian"))
        files = [*(TOP / "roles" / role / "tasks").glob("*.yml"), *(TOP / "roles" / role / "vars").glob("*.yml")]
        if any("os_family" in path.read_text() for path in files):
            runs.append((role, "RedHat"))
    return runs


@pytest.mark.parametrize(("role", "os_family"), role_runs())
def test_role_renders_with_declared_dependencies_only(
    installed: Installed, tmp_path: Path, role: str, os_family: str
) -> None:
    """Every task's templates, variables and filters render (no 'No filter named ...')."""
    facts = REDHAT_FACTS if os_family == "RedHat" else FACTS
    recorder = Recorder(tmp_path, role, collections=installed.path, isolated=True, facts=facts)
    records = recorder.run({"defaults": ROLE_VARS[role]})["defaults"]
    failed = [e["args"]["data"] for e in records if e["module"] == "ansible.builtin.ping"]
    # the canned checkpoint is unhealthy: only the health role ends, on purpose, in a failure
    expected = ["failed: checkpoint office is not healthy"] if role == "health" else []
    assert [message[:40] for message in failed] == expected, failed
    rendered = {e["args"]["template"] for e in records if "template" in e["args"]}
    RENDERED.setdefault(role, set()).update(rendered)


#: the templates each role rendered in the runs above, for the check below
RENDERED: dict[str, set[str]] = {}


def test_every_template_was_rendered() -> None:
    """Each role's templates were written by its runs in the isolated path (the health role's two
    templates are rendered by lookups into its report and summary, which its run produced; the
    Windows hosts' templates are for PowerShell tasks, which the recorded Linux host cannot run)."""
    by_lookup = {"health": {"merge.json.j2", "summary.txt.j2"}}
    for role in sorted(ROLE_VARS):
        assert role in RENDERED, f"run test_role_renders_with_declared_dependencies_only[{role}] first"
        folder = TOP / "roles" / role / "templates"
        templates = {p.name for p in folder.rglob("*.j2")
                     if "windows" not in str(p.relative_to(folder)).lower() and not p.name.endswith(".ps1.j2")}  # fmt: skip
        assert templates - by_lookup.get(role, set()) == RENDERED[role], role


def plugin_names(kind: str) -> list[str]:
    """Documented plugins: one per file, except filters and tests (several per file, a YAML doc each)."""
    folder = TOP / "plugins" / kind
    if not folder.is_dir():
        return []
    if kind in ("filter", "test"):
        return sorted(p.stem for p in folder.glob("*.yml"))
    return sorted(p.stem for p in folder.glob("*.py") if not p.name.startswith("_"))


def test_ansible_doc_renders_every_plugin_and_role(installed: Installed) -> None:
    for folder, kind in PLUGIN_TYPES.items():
        names = plugin_names(folder)
        listed = json.loads(installed.run("ansible-doc", "-t", kind, "--list", "--json", "vantage.checkpoint").stdout)
        assert sorted(n.removeprefix("vantage.checkpoint.") for n in listed) == names, kind
        for name in names:
            result = installed.run("ansible-doc", "-t", kind, f"vantage.checkpoint.{name}")
            assert "[WARNING]" not in result.stderr and "[ERROR]" not in result.stderr, result.stderr
            assert "EXAMPLES:" in result.stdout, f"{kind} {name} has no examples"
    roles = sorted(p.name for p in (TOP / "roles").iterdir() if p.is_dir())
    listed = json.loads(installed.run("ansible-doc", "-t", "role", "--list", "--json", "vantage.checkpoint").stdout)
    assert sorted(n.removeprefix("vantage.checkpoint.") for n in listed) == roles
    for role in roles:
        result = installed.run("ansible-doc", "-t", "role", f"vantage.checkpoint.{role}")
        spec = yaml.safe_load((TOP / "roles" / role / "meta" / "argument_specs.yml").read_text())
        summary = spec["argument_specs"]["main"]["short_description"]
        assert re.search(r"ENTRY POINT: \W*main\W* - " + re.escape(summary), result.stdout), result.stdout[:500]
        assert "[WARNING]" not in result.stderr and "[ERROR]" not in result.stderr, result.stderr
