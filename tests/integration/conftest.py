"""Shared fixtures for the end-to-end tests: a private CA, the control plane and checkpoint
agents as real subprocesses on loopback (TLS), and a local HTTP target the tests can flip.

Everything listens on 127.0.0.1 only.  Helpers poll with deadlines; nothing sleeps blindly.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, TypeVar

import pytest
from support.pki import Pki, make_pki
from support.waiting import wait_until

from vantage.protocol import generate_key, public_key_b64, write_private_key

VANTAGE = [sys.executable, "-m", "vantage"]
CANARY_BODY = "e2e-canary-body-5c1d2f"
CANARY_HEADER = "e2e-canary-header-0a9b7e"
T = TypeVar("T")


def _clean_env(**extra: str) -> dict[str, str]:
    """The test's environment without proxies or VANTAGE_* settings, plus ``extra``."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("VANTAGE_")
        and k.lower() not in {"http_proxy", "https_proxy", "all_proxy", "no_proxy"}
    }
    env["NO_PROXY"] = "127.0.0.1,localhost"
    env.update(extra)
    return env


def _tail(path: Path, lines: int = 40) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


# ----------------------------------------------------------------------------- PKI


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


# ----------------------------------------------------------------------------- control plane


class ApiError(AssertionError):
    def __init__(self, status: int, body: str) -> None:
        super().__init__(f"HTTP {status}: {body}")
        self.status = status


@dataclass
class ControlPlane:
    """``vantage control-plane serve`` as a subprocess; restartable on the same port and DB."""

    workdir: Path
    pki: Pki
    heartbeat_interval: float = 1.0
    unavailable_grace: float = 2.5
    scheduler_tick: float = 0.2
    result_margin: float = 8.0
    port: int = 0
    admin_token: str = field(default_factory=lambda: secrets.token_urlsafe(24))
    proc: subprocess.Popen[bytes] | None = None
    starts: int = 0

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    @property
    def db_path(self) -> Path:
        return self.workdir / "cp.db"

    @property
    def log_path(self) -> Path:
        return self.workdir / f"control-plane-{self.starts}.log"

    def start(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        (self.workdir / "admin.token").write_text(self.admin_token + "\n")
        self.starts += 1
        log = self.log_path.open("wb")
        args = [
            *VANTAGE, "control-plane", "serve",
            "--listen", f"127.0.0.1:{self.port}",
            "--db", f"sqlite:///{self.db_path}",
            "--signing-key", str(self.workdir / "signing.pem"),
            "--admin-token-file", str(self.workdir / "admin.token"),
            "--tls-cert", str(self.pki.cert),
            "--tls-key", str(self.pki.key),
            "--heartbeat-interval", str(self.heartbeat_interval),
            "--unavailable-grace", str(self.unavailable_grace),
            "--scheduler-tick", str(self.scheduler_tick),
            "--result-margin", str(self.result_margin),
        ]  # fmt: skip
        self.proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, env=_clean_env())
        log.close()
        pattern = re.compile(r"listening on https://127\.0\.0\.1:(\d+)")

        def listening() -> int | None:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise AssertionError(
                    f"control plane exited with {self.proc.returncode}:\n{_tail(self.log_path)}"
                )
            match = pattern.search(self.log_path.read_text(errors="replace"))
            return int(match.group(1)) if match else None

        self.port = wait_until(listening, 20, "the control plane to listen")

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(sig)
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)

    def api(self, method: str, path: str, body: Any = None, *, auth: bool = True) -> Any:
        request = urllib.request.Request(self.url + path, method=method)
        if auth:
            request.add_header("Authorization", f"Bearer {self.admin_token}")
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            request.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(
                request, data, timeout=10, context=self.pki.client
            ) as response:
                text = response.read().decode()
        except urllib.error.HTTPError as exc:
            raise ApiError(exc.code, exc.read().decode(errors="replace")) from None
        return json.loads(text) if text else None

    def raw(self, path: str) -> str:
        """The body of an authenticated GET, as text (to grep)."""
        request = urllib.request.Request(self.url + path)
        request.add_header("Authorization", f"Bearer {self.admin_token}")
        with urllib.request.urlopen(request, timeout=10, context=self.pki.client) as response:
            body: str = response.read().decode()
            return body

    # -- conveniences ------------------------------------------------------------------------

    def health(self, checkpoint: str) -> dict[str, Any]:
        result: dict[str, Any] = self.api("GET", f"/api/v1/checkpoints/{checkpoint}/health")
        return result

    def instance_connected(self, checkpoint: str, instance: str) -> bool:
        return any(i["name"] == instance and i["connected"] for i in self.health(checkpoint)["instances"])

    def create_monitor(
        self, checkpoint: str, name: str, target: str, *, interval_s: float = 1, **spec: Any
    ) -> str:
        body = {
            "name": name,
            "checkpoint": checkpoint,
            "type": "http",
            "target": target,
            "interval_s": interval_s,
        }
        body.setdefault("timeout_s", 3)
        body.update(spec)
        monitor_id: str = self.api("POST", "/api/v1/monitors", body)["id"]
        return monitor_id

    def results(self, monitor_id: str, limit: int = 500) -> list[dict[str, Any]]:
        results: list[dict[str, Any]] = self.api(
            "GET", f"/api/v1/monitors/{monitor_id}/results?limit={limit}"
        )["results"]
        return sorted(results, key=lambda r: (r.get("received_at") or 0, r["id"]))

    def alerts(self, kind: str, subject: str) -> list[dict[str, Any]]:
        alerts = self.api("GET", "/api/v1/alerts?limit=500")["alerts"]
        return [a for a in alerts if a["kind"] == kind and a["subject"] == subject]

    def open_alert(self, kind: str, subject: str) -> dict[str, Any] | None:
        return next((a for a in self.alerts(kind, subject) if a.get("closed_at") is None), None)


# ----------------------------------------------------------------------------- agents


@dataclass
class AgentProcess:
    """``vantage agent run`` as a subprocess, enrolled at ``cp`` with its own identity key."""

    workdir: Path
    cp: ControlPlane
    checkpoint: str
    instance: str
    env_extra: dict[str, str] = field(default_factory=dict)
    proc: subprocess.Popen[bytes] | None = None
    starts: int = 0

    def __post_init__(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        key = generate_key()
        write_private_key(self.workdir / "identity.pem", key)
        self.cp.api(
            "PUT",
            f"/api/v1/checkpoints/{self.checkpoint}/instances/{self.instance}",
            {"public_key": public_key_b64(key)},
        )
        keys = self.cp.api("GET", "/api/v1/signing-keys", auth=False)
        (self.workdir / "trusted_keys.json").write_text(json.dumps({"keys": keys["keys"]}))

    @property
    def state_dir(self) -> Path:
        return self.workdir / "state"

    @property
    def log_path(self) -> Path:
        return self.workdir / f"agent-{self.starts}.log"

    def start(self) -> None:
        self.starts += 1
        env = _clean_env(
            VANTAGE_CONTROL_PLANE_URL=self.cp.url,
            VANTAGE_CHECKPOINT=self.checkpoint,
            VANTAGE_INSTANCE=self.instance,
            VANTAGE_IDENTITY_KEY=str(self.workdir / "identity.pem"),
            VANTAGE_TRUSTED_KEYS=str(self.workdir / "trusted_keys.json"),
            VANTAGE_CA_BUNDLE=str(self.cp.pki.ca),
            VANTAGE_STATE_DIR=str(self.state_dir),
            **self.env_extra,
        )
        log = self.log_path.open("wb")
        self.proc = subprocess.Popen(
            [*VANTAGE, "agent", "run"], stdout=log, stderr=subprocess.STDOUT, env=env
        )
        log.close()

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill(self) -> None:
        """SIGKILL: the process vanishes without closing anything."""
        if self.alive():
            assert self.proc is not None
            self.proc.kill()
            self.proc.wait(10)

    def stop(self) -> None:
        if self.alive():
            assert self.proc is not None
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)

    def healthcheck(self) -> subprocess.CompletedProcess[str]:
        env = _clean_env(VANTAGE_STATE_DIR=str(self.state_dir))
        return subprocess.run(
            [*VANTAGE, "agent", "healthcheck"],
            check=False,
            env=env,
            capture_output=True,
            text=True,
            timeout=30,
        )

    def journal_files(self) -> list[Path]:
        """The files of the agent's journal (its replay cache and outbox)."""
        directory = self.state_dir / "journal"
        return sorted(directory.glob("*.log")) if directory.is_dir() else []

    def outbox_results(self) -> list[dict[str, Any]]:
        """The results waiting in the agent's outbox, read from its journal as a restart would."""
        from vantage.agent.journal import read_journal

        return [json.loads(data) for data in read_journal(self.state_dir).results.values()]

    def log_tail(self) -> str:
        return _tail(self.log_path)


# ----------------------------------------------------------------------------- HTTP target


class Target:
    """A local HTTP server; each path ``/<name>`` has a behaviour the test flips.

    Behaviours: ``ok`` (200; body and ``X-Canary`` header are the canaries followed by
    ``:<name>``, so a grep can tell which monitor's data it found), ``fail`` (500), ``fail_once``
    (one 500, then ``ok``), ``slow:<seconds>`` (``ok`` after a delay).
    """

    def __init__(self) -> None:
        self.modes: dict[str, str] = {}
        self.hits: dict[str, int] = {}
        self.lock = threading.Lock()
        target = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                name = self.path.strip("/").split("?", 1)[0]
                with target.lock:
                    mode = target.modes.get(name, "ok")
                    target.hits[name] = target.hits.get(name, 0) + 1
                    if mode == "fail_once":
                        target.modes[name] = "ok"
                if mode.startswith("slow:"):
                    time.sleep(float(mode.split(":", 1)[1]))
                status = 500 if mode in {"fail", "fail_once"} else 200
                body = (f"{CANARY_BODY}:{name}" if status == 200 else "failure").encode()
                self.send_response(status)
                self.send_header("X-Canary", f"{CANARY_HEADER}:{name}")
                self.send_header("Content-Type", "text/plain")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def url(self, name: str, host: str = "127.0.0.1") -> str:
        return f"http://{host}:{self.port}/{name}"

    def set(self, name: str, mode: str) -> None:
        with self.lock:
            self.modes[name] = mode

    def hit_count(self, name: str) -> int:
        with self.lock:
            return self.hits.get(name, 0)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="module")
def target() -> Iterator[Target]:
    server = Target()
    yield server
    server.close()


# ----------------------------------------------------------------------------- the toolbox


@dataclass(frozen=True)
class E2E:
    """What the e2e tests need from here (test modules cannot import a conftest reliably)."""

    ControlPlane: type[ControlPlane]
    AgentProcess: type[AgentProcess]
    wait_until: Callable[..., Any]
    canary_body: str
    canary_header: str


@pytest.fixture(scope="session")
def e2e() -> E2E:
    return E2E(ControlPlane, AgentProcess, wait_until, CANARY_BODY, CANARY_HEADER)
