#!/usr/bin/env python3
"""Build the execution environment image from ``execution-environment.yml`` here, where the build
containers reach neither Galaxy nor PyPI (``make ee``; docs/awx.md).

    images/ee/build.py [--base-image IMAGE] [--tag TAG]

1. Builds the collection artifact and stages it with the collections it depends on (and theirs),
   copied from the ``ansible`` package in ``.venv``, as the Galaxy requirements of the build.
2. Builds wheels on the host (its pip settings reach PyPI) for everything the image installs with
   pip: ansible-core and ansible-runner as the definition asks, the collections' Python
   requirements (``ansible-builder introspect``), ansible-builder's own tools; versions are the
   development venv's where it has them.
3. Writes ``build/ee/execution-environment.yml``: the repository's definition, unchanged but for
   the Galaxy requirements (the staged collections, ``--offline``), a pip configuration pointing
   at the wheels (served on the Docker bridge's address while the image builds, removed from the
   final image) and the tag.
4. Runs ``ansible-builder build`` with ``--build-arg EE_BASE_IMAGE=IMAGE``, removes the image the
   tag named before (when it changed) and prints the new image's id and size.

Environment: EE_BASE_IMAGE (default vantage-test/debian12:bookworm), EE_WHEEL_PORT (18765).
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import http.server
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import yaml

TOP = Path(__file__).resolve().parents[2]
WORK = TOP / "build" / "ee"
VENV_BIN = Path(sys.executable).parent
BUNDLED = Path(__import__("ansible_collections").__path__[0])
#: what ansible-builder itself installs with pip in the build stages
BUILDER_TOOLS = ["bindep", "pyyaml", "packaging"]
STAGE_LABEL = "io.vantage.ee-stage"


def log(message: str) -> None:
    print(f"[ee] {message}", file=sys.stderr, flush=True)


def run(*argv: str, **kwargs: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, check=True, text=True, **kwargs)


def stage_collections(files: Path) -> list[dict[str, str]]:
    """The artifact and its dependency closure under ``files/``; their Galaxy requirements."""
    run(str(VENV_BIN / "ansible-galaxy"), "collection", "build", "--force", "--output-path", str(files), str(TOP),
        stdout=subprocess.DEVNULL)  # fmt: skip
    (artifact,) = files.glob("vantage-checkpoint-*.tar.gz")
    with tarfile.open(artifact) as tar:
        member = tar.extractfile("MANIFEST.json")
        assert member is not None
        pending = dict(json.load(member)["collection_info"]["dependencies"])
    requirements = [{"name": f"/build/collections/{artifact.name}", "type": "file"}]
    done: set[str] = set()
    while pending:
        name, _ = pending.popitem()
        if name in done:
            continue
        source = BUNDLED.joinpath(*name.split("."))
        if not (source / "MANIFEST.json").is_file():
            raise SystemExit(f"dependency {name} is not in the ansible package of {VENV_BIN.parent}")
        shutil.copytree(source, files / name, ignore=shutil.ignore_patterns("__pycache__"))
        requirements.append({"name": f"/build/collections/{name}", "type": "dir"})
        pending.update(json.loads((source / "MANIFEST.json").read_text())["collection_info"]["dependencies"])
        done.add(name)
    return requirements


def python_requirements(definition: dict[str, Any], files: Path) -> list[str]:
    """Everything the image installs with pip, as requirement lines."""
    with tempfile.TemporaryDirectory() as tmp:
        target = Path(tmp) / "ansible_collections"
        (target / "vantage").mkdir(parents=True)
        with tarfile.open(next(files.glob("vantage-checkpoint-*.tar.gz"))) as tar:
            tar.extractall(target / "vantage" / "checkpoint", filter="data")
        for path in files.iterdir():
            if path.is_dir():
                namespace, name = path.name.split(".")
                (target / namespace).mkdir(exist_ok=True)
                (target / namespace / name).symlink_to(path)
        report = run(str(VENV_BIN / "ansible-builder"), "introspect", "--sanitize", tmp, capture_output=True).stdout
    collected = yaml.safe_load(report[report.index("---") :])["python"] or []
    dependencies = definition["dependencies"]
    init = definition.get("options", {}).get("container_init", {}).get("package_pip", "dumb-init==1.2.5")
    return [
        dependencies["ansible_core"]["package_pip"],
        dependencies["ansible_runner"]["package_pip"],
        *(line.split("#")[0].strip() for line in collected),
        *BUILDER_TOOLS,
        init,
    ]


def build_wheels(requirements: list[str], wheels: Path) -> str:
    """Wheels for ``requirements`` and their dependencies; a hash of the set."""
    frozen = run(str(VENV_BIN / "pip"), "freeze", "--exclude-editable", capture_output=True).stdout
    constraints = wheels.parent / "constraints.txt"
    constraints.write_text("".join(line + "\n" for line in frozen.splitlines() if "==" in line))
    (wheels.parent / "requirements.txt").write_text("\n".join(requirements) + "\n")
    pip = subprocess.run(
        [str(VENV_BIN / "pip"), "wheel", "-q", "--wheel-dir", str(wheels), "-c", str(constraints),
         "-r", str(wheels.parent / "requirements.txt")],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    # (the host's pip settings name local indexes that may be absent: pip notes each of them)
    sys.stderr.write("".join(line for line in pip.stderr.splitlines(keepends=True) if "is ignored" not in line))
    if pip.returncode:
        raise SystemExit(f"pip wheel failed (exit {pip.returncode})")
    names = sorted(p.name for p in wheels.glob("*.whl"))
    return hashlib.sha256("\n".join(names).encode()).hexdigest()[:16]


def bridge_address() -> str:
    """The host's address on Docker's default bridge, which build containers reach."""
    output = run("ip", "-4", "-o", "addr", "show", "docker0", capture_output=True).stdout.split()
    return output[output.index("inet") + 1].split("/")[0]


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


def serve(directory: Path, address: str, port: int) -> http.server.ThreadingHTTPServer:
    server = http.server.ThreadingHTTPServer((address, port), functools.partial(QuietHandler, directory=str(directory)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def derived_definition(example: dict[str, Any], tag: str, pip_conf: str) -> dict[str, Any]:
    """The repository's definition with local Galaxy requirements, pip settings and tag."""
    definition: dict[str, Any] = json.loads(json.dumps(example))
    definition["dependencies"]["galaxy"] = "requirements.yml"
    definition.setdefault("build_arg_defaults", {})["ANSIBLE_GALAXY_CLI_COLLECTION_OPTS"] = "--offline"
    definition.setdefault("additional_build_files", []).append({"src": "files", "dest": "collections"})
    steps = definition.setdefault("additional_build_steps", {})
    # printf's format is single-quoted in the RUN line: the settings hold no quote or %
    steps["prepend_base"] = [f"RUN printf '{pip_conf}' > /etc/pip.conf", *steps.get("prepend_base", [])]
    steps["append_final"] = [*steps.get("append_final", []), "RUN rm -f /etc/pip.conf"]
    # the intermediate stages' images are labelled, so that the next build can remove the old ones
    for stage in ("galaxy", "builder"):
        steps[f"prepend_{stage}"] = [f"LABEL {STAGE_LABEL}={stage}", *steps.get(f"prepend_{stage}", [])]
    definition["options"]["tags"] = [tag]
    return definition


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--base-image", default=os.environ.get("EE_BASE_IMAGE", "vantage-test/debian12:bookworm"))
    parser.add_argument("--tag")
    args = parser.parse_args()
    version = yaml.safe_load((TOP / "galaxy.yml").read_text())["version"]
    tag = args.tag or f"vantage/ee:{version}"
    if subprocess.run(["docker", "image", "inspect", args.base_image], capture_output=True, check=False).returncode:
        raise SystemExit(f"base image {args.base_image} is not here: build it (make images) or pull a public one")

    started = time.monotonic()
    shutil.rmtree(WORK / "files", ignore_errors=True)
    (WORK / "files").mkdir(parents=True)
    (WORK / "wheels").mkdir(exist_ok=True)
    example = yaml.safe_load((TOP / "execution-environment.yml").read_text())
    requirements = stage_collections(WORK / "files")
    (WORK / "requirements.yml").write_text(yaml.safe_dump({"collections": requirements}, sort_keys=False))
    log(f"collections staged: {', '.join(Path(r['name']).name for r in requirements)}")
    wheel_set = build_wheels(python_requirements(example, WORK / "files"), WORK / "wheels")
    log(f"{len(list((WORK / 'wheels').glob('*.whl')))} wheels ready (set {wheel_set})")

    address, port = bridge_address(), int(os.environ.get("EE_WHEEL_PORT", "18765"))
    pip_conf = (f"# wheels {wheel_set}, for the build only\\n[global]\\nno-index = true\\n"
                f"find-links = http://{address}:{port}/\\ntrusted-host = {address}\\n")  # fmt: skip
    definition = derived_definition(example, tag, pip_conf)
    (WORK / "execution-environment.yml").write_text(yaml.safe_dump(definition, sort_keys=False))
    previous = subprocess.run(["docker", "image", "inspect", "-f", "{{.Id}}", tag], capture_output=True, text=True,
                              check=False).stdout.strip()  # fmt: skip
    server = serve(WORK / "wheels", address, port)
    try:
        log(f"ansible-builder build on {args.base_image} -> {tag}")
        with open(WORK / "build.log", "w") as output:
            result = subprocess.run(
                [str(VENV_BIN / "ansible-builder"), "build", "-f", str(WORK / "execution-environment.yml"),
                 "-c", str(WORK / "context"), "--container-runtime", "docker",
                 "--build-arg", f"EE_BASE_IMAGE={args.base_image}", "-v", "3"],
                stdout=output, stderr=subprocess.STDOUT, check=False,
            )  # fmt: skip
    finally:
        server.shutdown()
    if result.returncode != 0:
        sys.stderr.write("".join((WORK / "build.log").read_text().splitlines(keepends=True)[-60:]))
        raise SystemExit(f"ansible-builder failed (exit {result.returncode}); full log: {WORK / 'build.log'}")
    image = run("docker", "image", "inspect", "-f", "{{.Id}} {{.Size}}", tag, capture_output=True).stdout.split()
    # the image this build replaced under the tag, and the stage images no longer used (this build's,
    # named in its log, are kept: they are the cache of the next one)
    used = set(re.findall(r"---> ([0-9a-f]{12})", (WORK / "build.log").read_text()))
    stages = run("docker", "images", "-q", "--filter", "dangling=true", "--filter", f"label={STAGE_LABEL}",
                 capture_output=True).stdout.split()  # fmt: skip
    stale = [stage for stage in stages if stage[:12] not in used]
    if previous and previous != image[0]:
        stale.append(previous)
    for old in stale:
        subprocess.run(["docker", "image", "rm", old], capture_output=True, check=False)
    log(f"built {tag} {image[0][:19]} in {time.monotonic() - started:.0f} s: {int(image[1]) / 1e6:.0f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
