"""``vantage control-plane serve`` as a child process, on 127.0.0.1, with its log in a file."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from support.waiting import wait_until

READY = re.compile(r"vantage control-plane listening on (https?://127\.0\.0\.1:(\d+))")


def clean_env(**extra: str) -> dict[str, str]:
    """This environment without proxies or VANTAGE_* settings, plus ``extra``."""
    env = {
        k: v for k, v in os.environ.items()
        if not k.startswith("VANTAGE_") and k.lower() not in {"http_proxy", "https_proxy", "all_proxy", "no_proxy"}
    }
    env["NO_PROXY"] = "127.0.0.1,localhost"
    env.update(extra)
    return env


@dataclass
class ControlPlaneProcess:
    """One control-plane process (a replica); ``args`` are extra ``serve`` options.

    ``prefix`` is put before the command (``["taskset", "-c", "0"]`` pins it to a core).
    """

    workdir: Path
    db_url: str
    admin_token: str
    signing_key: Path
    args: list[str] = field(default_factory=list)
    prefix: list[str] = field(default_factory=list)
    name: str = "cp"
    proc: subprocess.Popen[bytes] | None = None
    url: str = ""

    @property
    def log_path(self) -> Path:
        return self.workdir / f"{self.name}.log"

    @property
    def ws_url(self) -> str:
        return self.url.replace("http", "ws", 1) + "/api/v1/agent/connect"

    def start(self, timeout: float = 30) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        token_file = self.workdir / f"{self.name}.token"
        token_file.write_text(self.admin_token + "\n")
        command = [
            *self.prefix, sys.executable, "-m", "vantage", "control-plane", "serve", "--listen", "127.0.0.1:0",
            "--db", self.db_url, "--signing-key", str(self.signing_key), "--admin-token-file", str(token_file),
            *self.args,
        ]
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=clean_env())

        def listening() -> str | None:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise AssertionError(f"{self.name} exited with {self.proc.returncode}: {self.log()[-3000:]}")
            match = READY.search(self.log())
            return match.group(1) if match else None

        self.url = wait_until(listening, timeout, f"{self.name} to listen")

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def api(self, method: str, path: str, body: Any = None, *, auth: bool = True) -> Any:
        request = urllib.request.Request(self.url + path, method=method)
        if auth:
            request.add_header("Authorization", f"Bearer {self.admin_token}")
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            request.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(request, data, timeout=15) as response:
                text = response.read().decode()
        except urllib.error.HTTPError as exc:
            raise AssertionError(f"{method} {path}: HTTP {exc.code} {exc.read()[:500]!r}") from None
        return json.loads(text) if text else None

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def kill(self) -> None:
        """SIGKILL: the process vanishes mid-whatever, its sockets reset by the kernel."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def stop(self) -> int | None:
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        return self.proc.returncode
