"""``vantage control-plane serve`` as a real process with TLS (trustme), SIGTERM and restart."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import ssl
import subprocess
import sys
import time
from pathlib import Path

import aiohttp
import pytest
from support.agents import Api, FakeAgent, Identity
from support.pki import make_pki
from support.waiting import eventually

from vantage.protocol import TrustStore, key_id, load_private_key

ROOT = Path(__file__).resolve().parents[2]
VANTAGE = Path(sys.executable).with_name("vantage")
TOKEN = "process-admin-token-0123456789abcdef"
READY = re.compile(r"vantage control-plane listening on (https?://127\.0\.0\.1:(\d+))")


@pytest.fixture
def tls(tmp_path: Path) -> tuple[Path, Path, ssl.SSLContext]:
    pki = make_pki(tmp_path / "pki")
    return pki.cert, pki.key, pki.client


class Served:
    """One server process; its stderr goes to a file that the test reads."""

    def __init__(self, tmp: Path, tls: tuple[Path, Path, ssl.SSLContext], port: int = 0) -> None:
        self.tmp = tmp
        self.log = tmp / f"server-{time.monotonic_ns()}.log"
        (tmp / "token").write_text(TOKEN + "\n")
        args = [
            str(VANTAGE), "control-plane", "serve", "--listen", f"127.0.0.1:{port}",
            "--db", f"sqlite:///{tmp / 'cp.db'}", "--signing-key", str(tmp / "keys" / "signing.pem"),
            "--admin-token-file", str(tmp / "token"), "--tls-cert", str(tls[0]), "--tls-key", str(tls[1]),
            "--heartbeat-interval", "1", "--unavailable-grace", "2", "--scheduler-tick", "0.2",
        ]
        self.handle = self.log.open("wb")
        self.proc = subprocess.Popen(args, stderr=self.handle, stdout=subprocess.DEVNULL, cwd=ROOT)
        self.url = self._wait_ready()

    def _wait_ready(self) -> str:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            match = READY.search(self.log.read_text())
            if match:
                return match.group(1)
            if self.proc.poll() is not None:
                raise AssertionError(f"server exited {self.proc.returncode}: {self.log.read_text()}")
            time.sleep(0.05)
        raise AssertionError("server not ready: " + self.log.read_text())

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            code = self.proc.wait(timeout=15)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
            self.handle.close()
        return code


async def test_tls_process_session_sigterm_and_restart(
    tmp_path: Path, tls: tuple[Path, Path, ssl.SSLContext]
) -> None:
    served = Served(tmp_path, tls)
    assert served.url.startswith("https://127.0.0.1:")
    key_path = tmp_path / "keys" / "signing.pem"
    assert (key_path.stat().st_mode & 0o777) == 0o600
    signing_keyid = key_id(load_private_key(key_path))
    port = int(served.url.rsplit(":", 1)[1])
    connector = aiohttp.TCPConnector(ssl=tls[2])
    async with aiohttp.ClientSession(connector=connector) as http:
        try:
            api = Api(http, served.url, token=TOKEN)
            status = await api.ok("GET", "/api/v1/status")
            assert status["status"] == "ok" and status["signing_keyid"] == signing_keyid
            await api.ok("PUT", "/api/v1/checkpoints/site1", {"description": "lab"})
            ident = Identity("site1", "a")
            await api.ok("PUT", "/api/v1/checkpoints/site1/instances/a", {"public_key": ident.public_key})
            trust = TrustStore.from_json(await api.ok("GET", "/api/v1/signing-keys"))
            ws_url = served.url.replace("https", "wss", 1) + "/api/v1/agent/connect"
            agent = FakeAgent(http, ws_url, ident, served.url)
            await agent.connect(auto_heartbeat=True)
            monitor = await api.ok("POST", "/api/v1/monitors",
                                   {"name": "web", "checkpoint": "site1", "type": "tcp", "target": "127.0.0.1:9"})
            instr = await agent.instruction(trust)
            assert instr["iss"] == served.url and instr["aud"] == "site1/a"
            await agent.result(instr, ok=True)
            await eventually(lambda: _results(api, monitor["id"]))
            # SIGTERM: graceful stop, the agent's socket is closed with "going away"
            assert await asyncio.to_thread(served.stop) == 0
            assert await agent.wait_closed() == 1001
            log = served.log.read_text()
            assert TOKEN not in log
            assert "stopped" in log

            served = Served(tmp_path, tls, port=port)
            assert (await api.ok("GET", "/api/v1/status"))["signing_keyid"] == status["signing_keyid"]
            assert len(await _results(api, monitor["id"])) == 1
            again = FakeAgent(http, ws_url, ident, served.url)
            await again.connect(auto_heartbeat=True)
            health = await eventually(lambda: _active(api))
            assert health["instances"][0]["host"]["hostname"] == "host-a"
            await again.close()
        finally:
            served.stop()
    assert TOKEN not in served.log.read_text()


async def _results(api: Api, monitor_id: str) -> list[dict[str, object]]:
    return list((await api.ok("GET", f"/api/v1/monitors/{monitor_id}/results"))["results"])


async def _active(api: Api) -> dict[str, object] | None:
    data = await api.ok("GET", "/api/v1/checkpoints/site1/health")
    return data if data["state"] == "active" else None


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--listen", "nonsense"], "--listen must be HOST:PORT"),
        (["--listen", "127.0.0.1:99999"], "port must be 0-65535"),
        (["--admin-token-file", "/nonexistent/token"], "cannot read admin token file /nonexistent/token"),
        (["--tls-cert", "/nonexistent/cert.pem"], "--tls-cert and --tls-key go together"),
    ],
)
def test_bad_arguments_exit_nonzero(tmp_path: Path, extra: list[str], message: str) -> None:
    (tmp_path / "token").write_text(TOKEN)
    args = [
        str(VANTAGE), "control-plane", "serve", "--listen", "127.0.0.1:0", "--db", f"sqlite:///{tmp_path / 'cp.db'}",
        "--signing-key", str(tmp_path / "signing.pem"), "--admin-token-file", str(tmp_path / "token"), *extra,
    ]
    env = {k: val for k, val in os.environ.items() if not k.startswith("VANTAGE_")}
    done = subprocess.run(args, capture_output=True, text=True, timeout=30, env=env, check=False)
    assert done.returncode == 2
    assert message in done.stderr
    assert TOKEN not in done.stderr + done.stdout


def test_listen_address_in_use(tmp_path: Path) -> None:
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        (tmp_path / "token").write_text(TOKEN)
        done = subprocess.run(
            [str(VANTAGE), "control-plane", "serve", "--listen", f"127.0.0.1:{port}",
             "--db", f"sqlite:///{tmp_path / 'cp.db'}", "--signing-key", str(tmp_path / "signing.pem"),
             "--admin-token-file", str(tmp_path / "token")],
            capture_output=True, text=True, timeout=30, check=False,
        )
    assert done.returncode == 1
    assert f"cannot listen on 127.0.0.1:{port}" in done.stderr


async def test_no_credential_reaches_the_log(tmp_path: Path, tls: tuple[Path, Path, ssl.SSLContext]) -> None:
    """Whatever a client puts where (query, headers, path, a websocket frame), no credential is logged.

    The access log names the route (``/api/v1/checkpoints/{cp}``), never the request's own path
    or query, and every log line passes a filter that blanks tokens.
    """
    served = Served(tmp_path, tls)
    issued = ""
    secrets_sent: list[str] = []
    connector = aiohttp.TCPConnector(ssl=tls[2])
    try:
        async with aiohttp.ClientSession(connector=connector) as http:
            api = Api(http, served.url, token=TOKEN)
            issued = (await api.ok("POST", "/api/v1/tokens", {"name": "ci", "scopes": ["read"]}))["token"]

            def secret(label: str) -> str:
                value = f"s3cret-{label}-{len(secrets_sent)}-0123456789abcdef"
                secrets_sent.append(value)
                return value

            requests: list[tuple[str, str, dict[str, str]]] = [
                ("GET", f"/api/v1/status?token={secret('query')}", {}),
                ("GET", f"/api/v1/alerts?access_token={issued}", {}),
                ("GET", f"/api/v1/alerts?x={TOKEN}", {}),
                ("GET", "/api/v1/alerts", {"Authorization": f"Bearer {secret('bearer')}"}),
                ("GET", "/api/v1/alerts", {"Authorization": f"Bearer {issued}"}),
                ("GET", "/api/v1/status", {"Referer": f"https://x/?token={TOKEN}",
                                           "User-Agent": f"agent {issued}", "X-Api-Key": secret("header")}),
                ("GET", f"/api/v1/{secret('path')}", {}),
                ("GET", f"/api/v1/checkpoints/{TOKEN[:40].lower().replace('_', '-')}", {}),
                ("GET", f"/api/v1/checkpoints/{issued}", {"Authorization": f"Bearer {TOKEN}"}),
                ("GET", f"/ui/login?token={issued}", {}),
                ("POST", f"/ui/login?next={secret('ui')}", {"Origin": f"https://{secret('origin')}"}),
            ]
            for method, path, headers in requests:
                async with http.request(method, served.url + path, headers=headers) as response:
                    await response.read()
            ws_url = served.url.replace("https", "wss", 1) + "/api/v1/agent/connect"
            async with http.ws_connect(ws_url, params={"token": secret("ws")}) as ws:
                await ws.receive(timeout=5)
                await ws.send_str(json.dumps({"type": issued, "envelope": TOKEN}))
                await ws.receive(timeout=5)
        assert await asyncio.to_thread(served.stop) == 0
    finally:
        served.stop()
    log = served.log.read_text()
    assert "GET /api/v1/status" in log and "GET /api/v1/checkpoints/{cp}" in log, log[-2000:]
    assert "closing session of unauthenticated client" in log  # the websocket frame was logged about
    for value in [TOKEN, issued, TOKEN[:40].lower().replace("_", "-"), *secrets_sent]:
        assert value not in log, f"{value!r} is in the log"
