"""The AWX job templates' playbooks, run the way AWX runs them: ansible-runner starts the
execution environment built by ``make ee`` (``vantage/ee:<version>``) with the job's private data
directory - the project's playbooks, the inventory, the survey answers as AWX passes them and the
``Vantage control plane`` credential injected as AWX injects it - against the local sandbox
(``inventories/sandbox``, created with ``playbooks/sandbox_hosts.yml`` when it does not exist).

1. ``Vantage deploy`` (``playbooks/site.yml``): control plane, both checkpoint hosts, egress,
   verify; the health report comes from the runner's artifacts (``set_stats`` ``vantage_health``).
2. ``Vantage verify`` with a token of scope ``read`` only.
3. ``Vantage update`` after a release of the running image was published: the signed manifest is
   verified on the hosts, the instances are up to date, the health gate passes.

The wall time of each run is printed. A sandbox this test created is removed at the end.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import string
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from awx_rules import answer_errors, credential_type, inject, job_template, survey_answers

pytestmark = pytest.mark.docker

TOP = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
VERSION = yaml.safe_load((TOP / "galaxy.yml").read_text())["version"]
EE_IMAGE = f"vantage/ee:{VERSION}"
SANDBOX = TOP / "inventories" / "sandbox"
IMAGES = yaml.safe_load((SANDBOX / "group_vars" / "all.yml").read_text())["sandbox_image_refs"]
CP_HOST = "vantage-sandbox-cp"
CHECKPOINT_HOSTS = ("vantage-sandbox-host1", "vantage-sandbox-host2")


def docker(*argv: str, stdin: str | None = None) -> str:
    return subprocess.run(["docker", *argv], input=stdin, capture_output=True, text=True, check=True).stdout.strip()


def sandbox_exists() -> bool:
    return bool(docker("ps", "-aq", "--filter", "label=io.vantage.sandbox=true"))


def control_plane_api(method: str, path: str, token: str, body: dict[str, Any] | None = None) -> Any:
    """A call to the sandbox's control plane from its own host (its CA, its public name)."""
    script = (
        "import json, ssl, sys, urllib.request\n"
        "token, body = sys.stdin.read().split('\\n', 1)\n"
        "ctx = ssl.create_default_context(cafile='/etc/vantage/control-plane/tls/ca.crt')\n"
        f"req = urllib.request.Request('https://{CP_HOST}:8443{path}', method='{method}',\n"
        "    data=body.encode() or None, headers={'Authorization': 'Bearer ' + token, 'Content-Type': 'application/json'})\n"
        "print(urllib.request.urlopen(req, context=ctx, timeout=30).read().decode())\n"
    )
    answer = docker("exec", "-i", CP_HOST, "python3", "-c", script, stdin=f"{token}\n{json.dumps(body) if body else ''}")
    return json.loads(answer)


@dataclass
class Sandbox:
    admin_token: str
    images: dict[str, str]
    ready: str  # how the sandbox's hosts came to be, and in how long


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sandbox]:
    if shutil.which("docker") is None or subprocess.run(["docker", "info"], capture_output=True, check=False).returncode:
        pytest.skip("no Docker engine")
    for image in (EE_IMAGE, *IMAGES.values()):
        if subprocess.run(["docker", "image", "inspect", image], capture_output=True, check=False).returncode:
            pytest.skip(f"image {image} is missing (make ee app-images)")
    created = not sandbox_exists()
    collections = tmp_path_factory.mktemp("collections")
    (collections / "ansible_collections" / "vantage").mkdir(parents=True)
    (collections / "ansible_collections" / "vantage" / "checkpoint").symlink_to(TOP)
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=str(collections), ANSIBLE_NOCOLOR="1")
    try:
        started = time.monotonic()
        hosts = subprocess.run(
            [str(BIN / "ansible-playbook"), "-i", str(SANDBOX), str(TOP / "playbooks" / "sandbox_hosts.yml")],
            capture_output=True, text=True, env=env, timeout=1800, check=False,
        )  # fmt: skip
        failures = [line for line in hosts.stdout.splitlines() if line.startswith(("fatal:", "failed:"))]
        assert hosts.returncode == 0, "\n".join(failures) + hosts.stdout[-3000:] + hosts.stderr[-2000:]
        ready = f"{'created' if created else 'found'} and prepared in {time.monotonic() - started:.0f} s"
        images = {name: docker("image", "inspect", "-f", "{{.Id}}", ref) for name, ref in IMAGES.items()}
        secret = SANDBOX / ".secrets" / "admin-token"
        if not secret.exists():  # what the inventory's password lookup creates on a first deploy
            secret.parent.mkdir(mode=0o700, exist_ok=True)
            alphabet = string.ascii_letters + string.digits
            secret.write_text("".join(secrets.choice(alphabet) for _ in range(40)))
            secret.chmod(0o600)
        yield Sandbox(secret.read_text().strip(), images, ready)
    finally:
        if created:
            subprocess.run(["make", "-C", str(TOP), "--no-print-directory", "sandbox-destroy"], check=False)
        elif sandbox_exists():  # a sandbox kept for the user: the test's release must not pin its next deploy
            for host in CHECKPOINT_HOSTS:
                subprocess.run(["docker", "exec", host, "rm", "-f", "/var/lib/vantage/checkpoints/sandbox/release.json"],
                               check=False)  # fmt: skip


@dataclass
class Job:
    status: str
    rc: int
    seconds: float
    stdout: str
    stats: dict[str, Any]


def run_job(workdir: Path, template_name: str, sandbox: Sandbox, read_token: str, **answers: Any) -> Job:
    """One job of the job template, as AWX launches it."""
    template = job_template(template_name)
    extra_vars = survey_answers(template["survey"], **answers)
    assert answer_errors(template["survey"], extra_vars) == []
    private = workdir / template_name.split()[-1]
    shutil.copytree(TOP / "playbooks", private / "project" / "playbooks")
    shutil.copytree(SANDBOX, private / "inventory")  # hosts.yml, group_vars, .secrets/admin-token
    # the images of this machine, pinned by id (the job template's own extra variables)
    extra_vars.update(checkpoint_image=sandbox.images["checkpoint"], control_plane_image=sandbox.images["control_plane"])
    (private / "env").mkdir()
    (private / "env" / "extravars").write_text(yaml.safe_dump(extra_vars))
    inputs = {"control_plane_url": f"https://{CP_HOST}:8443", "admin_token": sandbox.admin_token,
              "enroll_token": sandbox.admin_token, "read_token": read_token}  # fmt: skip
    env, credential_vars = inject(credential_type("Vantage control plane"), inputs, private)
    (private / "env" / "credential-extravars").write_text(yaml.safe_dump(credential_vars))
    in_container = {k: v.replace(str(private), "/runner") for k, v in env.items()}
    (private / "env" / "envvars").write_text(yaml.safe_dump(in_container))
    (private / "env" / "cmdline").write_text("-e @/runner/env/credential-extravars")
    for path in [private, *private.rglob("*")]:  # the EE runs as uid 1000, group 0, like AWX's
        path.chmod(path.stat().st_mode | 0o070)
    socket_gid = os.stat("/var/run/docker.sock").st_gid
    started = time.monotonic()
    result = subprocess.run(
        [str(BIN / "ansible-runner"), "run", str(private), "--ident", "job", "-p", template["playbook"],
         "--process-isolation", "--process-isolation-executable", "docker", "--container-image", EE_IMAGE,
         # the sandbox hosts are containers of this machine's engine (community.docker.docker): its
         # socket and its CLI, read-only, instead of SSH - the EE itself stays as AWX would run it
         "--container-volume-mount", "/var/run/docker.sock:/var/run/docker.sock",
         "--container-volume-mount", f"{shutil.which('docker')}:/usr/bin/docker:ro",
         f"--container-option=--group-add={socket_gid}"],
        capture_output=True, text=True, timeout=3600, check=False,
    )  # fmt: skip
    seconds = time.monotonic() - started
    artifacts = private / "artifacts" / "job"
    stats = {}
    for event in sorted((artifacts / "job_events").glob("*.json")):
        data = json.loads(event.read_text())
        if data.get("event") == "playbook_on_stats":
            stats = data["event_data"]
    print(f"\n[ee] {template_name} ({template['playbook']}) in the execution environment: {seconds:.0f} s")
    return Job((artifacts / "status").read_text().strip(), int((artifacts / "rc").read_text()), seconds,
               result.stdout, stats)  # fmt: skip


def healthy_report(job: Job) -> dict[str, Any]:
    assert job.status == "successful" and job.rc == 0, job.stdout[-6000:]
    report: dict[str, Any] = job.stats["artifact_data"]["vantage_health"]
    assert report["healthy"] is True, json.dumps(report, indent=1)
    (checkpoint,) = report["checkpoints"]
    assert checkpoint["checkpoint"] == "sandbox" and checkpoint["state"] == "active"
    assert sorted((i["name"], i["host"], i["healthy"]) for i in checkpoint["instances"]) == [
        ("a", "vantage-sandbox-host1", True), ("b", "vantage-sandbox-host2", True)]  # fmt: skip
    return report


def test_deploy_verify_and_update_jobs_in_the_execution_environment(
    sandbox: Sandbox, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with capsys.disabled():
        print(f"\n[ee] sandbox hosts {sandbox.ready}")
        deploy = run_job(tmp_path, "Vantage deploy", sandbox, read_token=sandbox.admin_token,
                         docker_host_live_restore="true", egress_firewall_allow_registry="false")  # fmt: skip
        healthy_report(deploy)
        assert deploy.stats["failures"] == {} and deploy.stats["dark"] == {}

        read_token = control_plane_api("POST", "/api/v1/tokens", sandbox.admin_token,
                                       {"name": "ee-test-read", "scopes": ["read"]})["token"]  # fmt: skip
        verify = run_job(tmp_path, "Vantage verify", sandbox, read_token=read_token, health_fail="true")
        healthy_report(verify)
        assert verify.stats["changed"] == {}, verify.stats["changed"]  # verifying changes nothing

        digest = sandbox.images["checkpoint"]
        control_plane_api("PUT", "/api/v1/releases/stable", sandbox.admin_token,
                          {"image": "vantage/checkpoint", "digest": digest, "version": VERSION})  # fmt: skip
        update = run_job(tmp_path, "Vantage update", sandbox, read_token=read_token,
                         update_serial=1, update_retry_failed="false")  # fmt: skip
        assert update.status == "successful" and update.rc == 0, update.stdout[-6000:]
        # the running image is the release: verified, recorded, nothing replaced, the health gate passed
        assert f"manifest of channel stable verified: version {VERSION}" in update.stdout, update.stdout[-4000:]
        assert f"already run {digest}" in update.stdout and "replacing" not in update.stdout
