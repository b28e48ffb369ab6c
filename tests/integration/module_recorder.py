"""Run roles for real on the controller while recording, not running, what would run on the host.

Two halves:

- **The host's Python** (``main``): used as ``ansible_python_interpreter`` through a small shell
  shim. Every module that would run on the managed host is recorded instead - one JSON line
  ``{"module": ..., "args": {...}}`` appended to ``$RECORDER_LOG``, with the content of the file
  for ``copy`` (and so for ``template``) - and answered with the first matching canned result of
  ``$RECORDER_ANSWERS`` (a JSON list of ``{"module": short name, "match": {arg: value in JSON},
  "result": {...}}``; ``{"changed": false}`` when none matches). It reads the module and its
  arguments from the AnsiballZ wrapper of ansible-core 2.19 (the string keyword arguments of its
  final ``_ansiballz_main(...)`` call). Nothing on the machine is changed.
- **The harness** (``Recorder``): runs plays of a role with the real ``ansible-playbook`` -
  templating, conditions, loops, handlers and action plugins such as ``template`` and ``copy`` all
  run on the controller as usual - against a host whose Python is the recorder, and returns what
  each play sent to the host. ``ANSWERS`` is the canned host: a Debian 12 machine whose control
  plane offers the pinned key and whose checkpoint has one of two instances healthy.

Only the standard library: the shim runs this file with the test's Python.
"""

from __future__ import annotations

import ast
import base64
import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

TOP = Path(__file__).resolve().parents[2]
ANSIBLE_PLAYBOOK = Path(sys.executable).with_name("ansible-playbook")
KEYID = "0123456789abcdef"
DIGEST = "sha256:" + "ab" * 32
REGISTRY_IMAGE = f"registry.example.test:5000/vantage/checkpoint@{DIGEST}"
CHECKPOINT_VARS: dict[str, Any] = {
    "checkpoint_name": "office",
    "checkpoint_instances": ["a", "b"],
    "checkpoint_control_plane_url": "https://cp.example.test",
    "checkpoint_api_token": "token-0123456789abcdef0123456789",
    "checkpoint_trusted_key_ids": [KEYID],
    "checkpoint_image": REGISTRY_IMAGE,
}
#: what each role needs besides its numbers and booleans
ROLE_VARS: dict[str, dict[str, Any]] = {
    "docker_host": {},
    "checkpoint": CHECKPOINT_VARS,
    "egress_firewall": CHECKPOINT_VARS,
    "auto_update": CHECKPOINT_VARS,
    "health": CHECKPOINT_VARS,
    "control_plane": {
        "control_plane_image": f"registry.example.test/vantage/control-plane@{DIGEST}",
        "control_plane_public_url": "https://cp.example.test:8443",
        "control_plane_admin_token": "admin-token-0123456789abcdef0123",
    },
}
FACTS = {
    "os_family": "Debian", "distribution": "Debian", "distribution_version": "12", "system": "Linux",
    "pkg_mgr": "apt", "service_mgr": "systemd", "dns": {"nameservers": ["10.0.0.53", "127.0.0.53"]},
    "default_ipv4": {"address": "10.0.0.10"},
}  # fmt: skip
HEALTH_REPORT = {
    "checkpoint": "office", "control_plane_url": "https://cp.example.test", "state": "active",
    "healthy": False, "degraded": True, "healthy_instances": 1, "min_healthy": None,
    "reasons": ["instance b is not connected"], "alerts": [], "checked_at": 1700000000.0, "clock_offset_s": 0.1,
    "instances": [
        {"name": "a", "local": True, "connected": True, "healthy": True, "last_heartbeat_age_s": 2,
         "version": "0.1.0", "image_digest": DIGEST, "reasons": []},
        {"name": "b", "local": True, "connected": False, "healthy": False, "last_heartbeat_age_s": None,
         "version": None, "image_digest": None, "reasons": ["instance b is not connected"]},
    ],
}  # fmt: skip
#: a RHEL-family host, for the roles' RedHat paths
REDHAT_FACTS = {
    **FACTS, "os_family": "RedHat", "distribution": "Rocky", "distribution_version": "9.4", "pkg_mgr": "dnf",
}  # fmt: skip
#: what the recorded modules answer (first match wins; anything else answers {"changed": false})
ANSWERS: list[dict[str, Any]] = [
    {"module": "setup", "result": {"ansible_facts": FACTS}},
    {"module": "find", "result": {"matched": 1, "files": []}},
    {"module": "command", "match": {"argv": "apt-cache"}, "result": {"rc": 0, "stdout": "Candidate: 20.10.24"}},
    {"module": "command", "match": {"argv": "repoquery"}, "result": {"rc": 0, "stdout": "docker-ce-3:26.1.3-1.el9"}},
    {"module": "command", "match": {"argv": "systemd-analyze"},
     "result": {"rc": 0, "stdout": json.dumps({"longest_gap_s": 3 * 86400.0, "runs": 4})}},
    {"module": "stat", "result": {"stat": {"exists": False}}},
    {"module": "uri", "match": {"url": "/api/v1/signing-keys"},
     "result": {"status": 200, "json": {"keys": [{"keyid": KEYID, "public_key": "AA==", "status": "active"}]}}},
    {"module": "slurp", "match": {"src": "ca.crt"},
     "result": {"content": base64.b64encode(b"-----BEGIN CERTIFICATE-----\n").decode()}},
    {"module": "slurp", "result": {"failed": True, "msg": "file not found"}},
    {"module": "checkpoint_identity", "result": {"public_key": "AA==", "key_id": KEYID}},
    {"module": "signing_key", "result": {"key_id": KEYID}},
    {"module": "openssl_csr_pipe", "result": {"csr": "-----BEGIN CERTIFICATE REQUEST-----\n"}},
    {"module": "docker_container_info",
     "result": {"exists": True, "container": {"State": {"Status": "running", "Health": {"Status": "healthy"}}}}},
    {"module": "checkpoint_health", "result": {"report": HEALTH_REPORT}},
    {"module": "copy", "result": {"changed": True}},
]  # fmt: skip
TIMESTAMP = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ")




def wrapper_call(source: str) -> dict[str, str]:
    """The string keyword arguments of the wrapper's ``_ansiballz_main(...)`` call."""
    for node in ast.walk(ast.parse(source)):
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name)
            and node.func.id == "_ansiballz_main"
            and node.keywords
        ):
            return {
                kw.arg: kw.value.value
                for kw in node.keywords
                if kw.arg and isinstance(kw.value, ast.Constant) and isinstance(kw.value.value, str)
            }
    raise SystemExit("module_recorder: no _ansiballz_main(...) call in the module wrapper")


def short_name(module: str) -> str:
    return module.rsplit(".", 1)[-1]


def record(module: str, params: dict[str, Any]) -> dict[str, Any]:
    # internal arguments, and the ones that name or checksum the temporary copy of a file; the
    # template action names its template there, which is kept
    args = {k: v for k, v in params.items() if not k.startswith("_ansible_") and k not in ("_original_basename", "checksum")}
    if str(params.get("_original_basename", "")).endswith(".j2"):
        args["template"] = params["_original_basename"]
    src = args.get("src")
    if short_name(module) == "copy" and isinstance(src, str) and Path(src).is_file():
        # the controller copied the rendered file to the (here local) temporary directory
        args["src"] = None
        args["content"] = Path(src).read_text(errors="replace")
    return {"module": module, "args": args}


def answer(call: dict[str, Any], answers: list[dict[str, Any]]) -> dict[str, Any]:
    for candidate in answers:
        if candidate["module"] != short_name(call["module"]):
            continue
        match: dict[str, str] = candidate.get("match", {})
        if all(text in json.dumps(call["args"].get(arg)) for arg, text in match.items()):
            result: dict[str, Any] = candidate["result"]
            return result
    return {"changed": False}


def main(argv: list[str]) -> int:
    if len(argv) > 2:
        raise SystemExit(f"module_recorder: expected one module wrapper, got {argv[1:]}")
    # the wrapper's path, or the wrapper itself on stdin (pipelining)
    call = wrapper_call(Path(argv[1]).read_text() if len(argv) == 2 else sys.stdin.read())
    params = json.loads(call["params"])["ANSIBLE_MODULE_ARGS"]
    entry = record(call["ansible_module"], params)
    with open(os.environ["RECORDER_LOG"], "a", encoding="utf-8") as log:
        log.write(json.dumps(entry, sort_keys=True) + "\n")
    answers = json.loads(Path(os.environ["RECORDER_ANSWERS"]).read_text())
    print(json.dumps(answer(entry, answers)))
    return 0


class Recorder:
    """Runs plays of one role with ansible-playbook; returns what each play sent to the host.

    ``collections`` is the ANSIBLE_COLLECTIONS_PATH; by default one where the repository is
    vantage.checkpoint. ``isolated`` hides the collections installed with Python (the ``ansible``
    package's), so that only those of ``collections`` exist.
    """

    def __init__(
        self,
        tmp_path: Path,
        role: str,
        collections: Path | None = None,
        isolated: bool = False,
        facts: dict[str, Any] | None = None,
    ) -> None:
        self.tmp = tmp_path
        self.role = role
        self.isolated = isolated
        if collections is None:
            collections = tmp_path / "collections"
            (collections / "ansible_collections" / "vantage").mkdir(parents=True)
            (collections / "ansible_collections" / "vantage" / "checkpoint").symlink_to(TOP)
        self.collections = collections
        shim = tmp_path / "python"
        shim.write_text(f'#!/bin/sh\nexec "{sys.executable}" "{Path(__file__).resolve()}" "$@"\n')
        shim.chmod(0o755)
        host = {"ansible_connection": "local", "ansible_python_interpreter": str(shim)}
        # localhost too, so that tasks delegated to the controller are recorded, not run
        (tmp_path / "inventory.yml").write_text(json.dumps({"all": {"hosts": {"host1": host, "localhost": host}}}))
        answers = ([{"module": "setup", "result": {"ansible_facts": facts}}] if facts else []) + ANSWERS
        (tmp_path / "answers.json").write_text(json.dumps(answers))

    def run(self, variants: dict[str, dict[str, Any]], extra_vars: dict[str, Any] | None = None) -> dict[str, list[Any]]:
        """One play per variant (its variables given to the role); the records of each.

        ``extra_vars`` go in a file passed with ``-e @file``, the way AWX passes a job's extra
        variables and survey answers.
        """
        plays = []
        for index, (name, variables) in enumerate(variants.items()):
            plays.append({
                "name": name, "hosts": "host1", "gather_facts": index == 0,
                "tasks": [
                    {"ansible.builtin.ping": {"data": f"variant {name}"}},
                    {"block": [{"ansible.builtin.include_role": {"name": f"vantage.checkpoint.{self.role}"},
                                "vars": variables}],
                     "rescue": [{"ansible.builtin.ping": {"data": "failed: {{ ansible_failed_result.msg | default('') }}"}}]},
                ],
            })  # fmt: skip
        tag = str(len(list(self.tmp.glob("play-*.json"))))
        playbook = self.tmp / f"play-{tag}.json"
        playbook.write_text(json.dumps(plays, indent=1))
        log = self.tmp / f"records-{tag}.jsonl"
        argv = [str(ANSIBLE_PLAYBOOK), "-i", str(self.tmp / "inventory.yml"), str(playbook)]
        if extra_vars is not None:
            (self.tmp / f"extravars-{tag}.json").write_text(json.dumps(extra_vars))
            argv += ["-e", f"@{self.tmp / f'extravars-{tag}.json'}"]
        env = dict(
            os.environ,
            ANSIBLE_COLLECTIONS_PATH=str(self.collections),
            ANSIBLE_COLLECTIONS_SCAN_SYS_PATH=str(not self.isolated).lower(),
            ANSIBLE_PIPELINING="true",
            ANSIBLE_REMOTE_TMP=str(self.tmp / "remote-tmp"),
            ANSIBLE_LOCAL_TEMP=str(self.tmp / "local-tmp"),
            ANSIBLE_NOCOLOR="1",
            ANSIBLE_STDOUT_CALLBACK="ansible.builtin.minimal",
            RECORDER_LOG=str(log),
            RECORDER_ANSWERS=str(self.tmp / "answers.json"),
        )
        result = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=900, check=False)
        if result.returncode != 0:
            raise AssertionError(f"ansible-playbook failed:\n{result.stdout[-4000:]}{result.stderr[-2000:]}")
        records: dict[str, list[Any]] = {}
        current: list[Any] = []
        for line in log.read_text().splitlines():
            entry = json.loads(TIMESTAMP.sub("<time>", line))
            data = entry["args"].get("data", "")
            if entry["module"] == "ansible.builtin.ping" and data.startswith("variant "):
                current = records.setdefault(data[len("variant ") :], [])
            elif entry["module"] != "ansible.legacy.setup":
                current.append(entry)
        if list(records) != list(variants):
            raise AssertionError(f"plays recorded: {list(records)}, expected {list(variants)}:\n{result.stdout[-4000:]}")
        return records


if __name__ == "__main__":
    sys.exit(main(sys.argv))
