"""The agent against its peer, Prometheus ``blackbox_exporter`` (a report, not a test).

    make bench-peer [PROFILE=agent-profile.txt]
    .venv/bin/python benchmarks/bench_peer.py [--window 10] [--runs 3] [--in-flight 16 64]
                                              [--singles] [--profile FILE] [--json FILE]

Both sides probe the same nginx on 127.0.0.1 with plain HTTP ``GET /``, a fresh connection per
check, as real processes:

* **blackbox**: Debian's ``prometheus-blackbox-exporter`` (module ``http_2xx``), driven through
  its ``/probe`` endpoint by ``wrk`` with N connections (N probes in flight); a probe counts
  when its answer says ``probe_success 1``.
* **agent**: ``vantage agent run`` connected over TLS (wss) to a protocol-correct control plane
  in this script (challenge, hello verified against the enrolled key, welcome) that keeps N
  signed ``run_check`` instructions outstanding: each result is acknowledged and replaced.  The
  instructions freed by the results that arrive together go out as one signed batch (the
  agent then verifies one signature for them; ``--singles`` sends one envelope each instead).
  ``VANTAGE_MAX_CONCURRENCY`` is N, so that both run N checks at a time.  The agent keeps
  every guarantee it has in production: verified signatures, replay protection, results
  durable in its journal (in a temporary directory under /var/tmp) before they are sent.

The measured process (exporter or agent) runs alone on one CPU (``taskset``); nginx and the load
generator (wrk, or this script's control plane) share the other.  For each number of checks in
flight the two sides are measured alternately, ``--runs`` times (interleaved, so that a change
of load on the shared machine hits both), each for ``--window`` seconds after a 2-second
warm-up.  Figures: checks per second, checks per CPU-second (user + system time of the measured
process from ``/proc/<pid>/stat``, all its threads, over the same window), resident memory
(``VmRSS``) idle (connected, before any load) and at the end; medians of the runs and the
agent/blackbox ratios.  The load average is printed with them: on a busy machine the measured
process gets less than its CPU, which lowers checks per second far more than checks per
CPU-second.

Last, the agent's own dispatch-to-result round trip: 400 checks sent alone, one envelope each,
20 per second (as ``make bench`` does through the real control plane), timed by this script from
sending the instruction to receiving the result; p50 and p99.  Against ``make bench``'s figure
it shows how much of that latency is the agent's.

``--profile FILE`` adds one unmeasured agent run (the highest N) under ``py-spy`` and writes its
collapsed stacks to FILE, then prints where the agent's CPU went (connection set-up, the
rest of the HTTP check, spec validation, timeouts, signature verification, the journal, the
websocket, JSON).

Needs two CPUs, ``taskset``, ``nginx``, ``wrk`` and ``prometheus-blackbox-exporter`` (``make
bench-peer`` installs Debian's ``nginx-light``, ``wrk`` and ``prometheus-blackbox-exporter`` when
missing) and ``py-spy`` for ``--profile`` (in requirements-dev.txt).  Exit status 0 when every
figure was measured, 1 otherwise.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import secrets
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench_agent import clean_env, log
from support.measure import CannotMeasure, cpu_seconds, percentile, rss_mb
from support.net import free_port
from support.pki import Pki, make_pki
from support.waiting import wait_until

VANTAGE = [sys.executable, "-m", "vantage"]
CHECKPOINT, INSTANCE = "bench", "peer"
WARMUP_S = 2.0
TOOLS = ("taskset", "nginx", "wrk", "prometheus-blackbox-exporter")

BLACKBOX_CONFIG = """\
modules:
  http_2xx:
    prober: http
    timeout: 10s
    http:
      preferred_ip_protocol: ip4
      ip_protocol_fallback: false
"""

NGINX_CONFIG = """\
worker_processes 1;
pid {dir}/nginx.pid;
error_log {dir}/error.log warn;
events {{ worker_connections 4096; }}
http {{
  access_log off;
  client_body_temp_path {dir}/body;
  proxy_temp_path {dir}/proxy;
  fastcgi_temp_path {dir}/fastcgi;
  uwsgi_temp_path {dir}/uwsgi;
  scgi_temp_path {dir}/scgi;
  server {{
    listen 127.0.0.1:{port} backlog=4096;
    location / {{ return 200 "ok\\n"; }}
  }}
}}
"""

# wrk counts only probes whose answer says they succeeded (the exporter answers 200 either way).
WRK_SCRIPT = """\
local threads = {}
function setup(thread) table.insert(threads, thread) end
function init(args) ok = 0; failed = 0 end
function response(status, headers, body)
  if status == 200 and string.find(body, "probe_success 1", 1, true) then ok = ok + 1 else failed = failed + 1 end
end
function done(summary, latency, requests)
  local o, f = 0, 0
  for _, t in ipairs(threads) do o = o + t:get("ok"); f = f + t:get("failed") end
  io.write(string.format("PROBES %d %d %d\\n", o, f, summary.duration))
end
"""




def pinned(cpu: int, argv: list[str]) -> list[str]:
    return ["taskset", "-c", str(cpu), *argv]


def wait_for_port(port: int, what: str) -> None:
    def listening() -> bool:
        with socket.socket() as sock:
            return sock.connect_ex(("127.0.0.1", port)) == 0

    wait_until(listening, 15, what, 0.05)


@dataclass
class Measurement:
    side: str
    in_flight: int
    checks_per_s: float
    checks_per_cpu_s: float
    cpu_cores: float
    failed: int


# ----------------------------------------------------------------------------- processes


class Nginx:
    def __init__(self, workdir: Path, cpu: int) -> None:
        self.dir = workdir / "nginx"
        self.dir.mkdir()
        self.port = free_port()
        (self.dir / "nginx.conf").write_text(NGINX_CONFIG.format(dir=self.dir, port=self.port))
        argv = [
            "nginx",
            "-p",
            str(self.dir),
            "-e",
            str(self.dir / "error.log"),
            "-c",
            str(self.dir / "nginx.conf"),
        ]
        self.proc = subprocess.Popen(pinned(cpu, [*argv, "-g", "daemon off;"]), stderr=subprocess.DEVNULL)
        wait_for_port(self.port, "nginx to listen")

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)


class Blackbox:
    def __init__(self, workdir: Path, cpu: int) -> None:
        self.port = free_port()
        config = workdir / "blackbox.yml"
        config.write_text(BLACKBOX_CONFIG)
        self.log = (workdir / "blackbox.log").open("wb")
        self.proc = subprocess.Popen(
            pinned(
                cpu,
                [
                    "prometheus-blackbox-exporter",
                    f"--config.file={config}",
                    f"--web.listen-address=127.0.0.1:{self.port}",
                ],
            ),
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        wait_for_port(self.port, "blackbox_exporter to listen")
        self.pid = self.proc.pid

    def probe_url(self, target: str) -> str:
        return f"http://127.0.0.1:{self.port}/probe?module=http_2xx&target={target}"

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)
        self.log.close()


def run_wrk(cpu: int, url: str, connections: int, seconds: float, script: Path) -> tuple[int, int, float]:
    """(successful probes, failed probes, seconds) of one wrk run."""
    argv = ["wrk", "-t1", f"-c{connections}", f"-d{seconds:g}s", "--timeout", "15s", "-s", str(script), url]
    out = subprocess.run(pinned(cpu, argv), capture_output=True, text=True, timeout=seconds + 60, check=False)
    match = re.search(r"PROBES (\d+) (\d+) (\d+)", out.stdout)
    if out.returncode != 0 or match is None:
        raise CannotMeasure(f"wrk failed: {out.stdout[-500:]} {out.stderr[-500:]}")
    return int(match.group(1)), int(match.group(2)), int(match.group(3)) / 1e6


def measure_blackbox(
    blackbox: Blackbox, nginx: Nginx, side_cpu: int, in_flight: int, window: float, script: Path
) -> Measurement:
    url = blackbox.probe_url(nginx.url)
    run_wrk(side_cpu, url, in_flight, WARMUP_S, script)
    cpu0 = cpu_seconds(blackbox.pid)
    ok, failed, elapsed = run_wrk(side_cpu, url, in_flight, window, script)
    used = cpu_seconds(blackbox.pid) - cpu0
    if ok == 0 or used <= 0:
        raise CannotMeasure("blackbox_exporter completed no probe (see blackbox.log)")
    return Measurement("blackbox", in_flight, ok / elapsed, ok / used, used / elapsed, failed)


# ----------------------------------------------------------------------------- the control plane side


class Dispatcher:
    """A protocol-correct control plane for one agent, keeping a number of checks outstanding."""

    def __init__(self, pki: Pki, batches: bool) -> None:
        from vantage.protocol import generate_key

        self.key = generate_key()
        self.pki = pki
        self.batches = batches
        self.enrolled = ""
        self.url = ""
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.ws: Any = None
        self.spec: dict[str, Any] = {}
        self.in_flight = 0
        self.outstanding: set[str] = set()
        self.counts: Counter[str] = Counter()  # ok, failed, envelopes, instructions
        self.seq = 0
        #: send times of paced checks (see :meth:`paced`) and their round trips, ms
        self.sent_at: dict[str, float] = {}
        self.round_trips: list[float] = []
        self._refill: asyncio.Task[None] | None = None
        self._runner: Any = None

    def trusted_keys(self) -> dict[str, Any]:
        from vantage.protocol import key_id, public_key_b64

        entry = {"keyid": key_id(self.key), "public_key": public_key_b64(self.key), "status": "active"}
        return {"keys": [{**entry, "not_after": None}]}

    def call(self, coro: Any, timeout: float = 30) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def start(self) -> None:
        self.thread.start()
        self.url = self.call(self._start())

    async def _start(self) -> str:
        from aiohttp import web

        app = web.Application()
        app.router.add_get("/api/v1/agent/connect", self._connect)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0, ssl_context=self.pki.server)
        await site.start()
        return f"https://127.0.0.1:{self._runner.addresses[0][1]}"

    async def _connect(self, request: Any) -> Any:
        from aiohttp import WSMsgType, web

        from vantage.protocol import verify_hello

        ws = web.WebSocketResponse(autoping=True, max_msg_size=4 * 1024 * 1024)
        await ws.prepare(request)
        challenge = secrets.token_hex(32)
        await ws.send_json({"type": "challenge", "challenge": challenge, "server_time": time.time()})
        hello = await ws.receive_json(timeout=15)
        verify_hello(
            hello["envelope"],
            enrolled_public_key=self.enrolled,
            challenge=challenge,
            checkpoint=CHECKPOINT,
            instance=INSTANCE,
            control_plane=self.url,
        )
        await ws.send_json({"type": "welcome", "heartbeat_interval": 15, "server_time": time.time()})
        self.ws = ws
        async for msg in ws:
            if msg.type != WSMsgType.TEXT:
                continue
            data = json.loads(msg.data)
            if data["type"] == "result":
                result = data["result"]
                sent_at = self.sent_at.pop(result["id"], None)
                if sent_at is not None:
                    self.round_trips.append((time.monotonic() - sent_at) * 1000)
                await ws.send_str(json.dumps({"type": "ack", "id": result["id"]}))
                if result["id"] in self.outstanding:
                    self.outstanding.discard(result["id"])
                    self.counts["ok" if result.get("ok") else "failed"] += 1
                    self._schedule_refill()
            elif data["type"] == "rejected":
                self.counts["rejected"] += 1
        self.ws = None
        return ws

    def _schedule_refill(self) -> None:
        # Results read from one TCP segment are handled before the refill runs: their slots go
        # out together, as one batch.
        if self._refill is None or self._refill.done():
            self._refill = asyncio.ensure_future(self._top_up())

    async def _top_up(self) -> None:
        from vantage.protocol import (
            MAX_BATCH_ITEMS,
            instruction_payload,
            make_instruction,
            make_instruction_batch,
        )

        while self.ws is not None and len(self.outstanding) < self.in_flight:
            items = []
            for _ in range(min(self.in_flight - len(self.outstanding), MAX_BATCH_ITEMS)):
                self.seq += 1
                check_id = str(uuid.uuid4())
                body = {"check_id": check_id, "monitor_id": "peer", "attempt": 1, "check": self.spec}
                aud = f"{CHECKPOINT}/{INSTANCE}"
                items.append(
                    instruction_payload(iss=self.url, aud=aud, kind="run_check", body=body, seq=self.seq)
                )
                self.outstanding.add(check_id)
            if self.batches:
                frames = [{"type": "instruction_batch", "envelope": make_instruction_batch(self.key, items)}]
            else:
                frames = [
                    {"type": "instruction", "envelope": make_instruction(
                        self.key, iss=p["iss"], aud=p["aud"], kind="run_check", body=p["body"], seq=p["seq"],
                        nonce=p["nonce"],
                    )}
                    for p in items
                ]  # fmt: skip
            self.counts["envelopes"] += len(frames)
            self.counts["instructions"] += len(items)
            for frame in frames:
                await self.ws.send_str(json.dumps(frame))

    async def _set_load(self, in_flight: int, target: str) -> None:
        self.in_flight = in_flight
        self.spec = {"type": "http", "target": target, "timeout_s": 10}
        self._schedule_refill()

    def set_load(self, in_flight: int, target: str = "") -> None:
        self.call(self._set_load(in_flight, target))

    def paced(self, target: str, rate: float, count: int) -> list[float]:
        """Round trips (ms) of ``count`` checks sent alone, one envelope each, ``rate`` per second."""
        self.round_trips = []
        self.call(self._paced(target, rate, count), timeout=count / rate + 60)
        wait_until(lambda: len(self.round_trips) >= count, 30, "the paced checks' results")
        return list(self.round_trips)

    async def _paced(self, target: str, rate: float, count: int) -> None:
        from vantage.protocol import make_instruction

        spec = {"type": "http", "target": target, "timeout_s": 10}
        for _ in range(count):
            self.seq += 1
            check_id = str(uuid.uuid4())
            body = {"check_id": check_id, "monitor_id": "peer", "attempt": 1, "check": spec}
            envelope = make_instruction(
                self.key,
                iss=self.url,
                aud=f"{CHECKPOINT}/{INSTANCE}",
                kind="run_check",
                body=body,
                seq=self.seq,
            )
            self.sent_at[check_id] = time.monotonic()
            assert self.ws is not None
            await self.ws.send_str(json.dumps({"type": "instruction", "envelope": envelope}))
            await asyncio.sleep(1 / rate)

    def snapshot(self) -> Counter[str]:
        return self.call(self._snapshot())

    async def _snapshot(self) -> Counter[str]:
        return Counter(self.counts)

    def stop(self) -> None:
        if self._runner is not None:
            self.call(self._runner.cleanup())
        self.loop.call_soon_threadsafe(self.loop.stop)


class AgentProcess:
    def __init__(
        self, workdir: Path, dispatcher: Dispatcher, pki: Pki, cpu: int, max_concurrency: int
    ) -> None:
        from vantage.protocol import generate_key, public_key_b64, write_private_key

        self.dir = workdir
        self.dir.mkdir(parents=True)
        key = generate_key()
        write_private_key(self.dir / "identity.pem", key)
        dispatcher.enrolled = public_key_b64(key)
        (self.dir / "trusted_keys.json").write_text(json.dumps(dispatcher.trusted_keys()))
        env = clean_env(
            VANTAGE_CONTROL_PLANE_URL=dispatcher.url,
            VANTAGE_CHECKPOINT=CHECKPOINT,
            VANTAGE_INSTANCE=INSTANCE,
            VANTAGE_IDENTITY_KEY=str(self.dir / "identity.pem"),
            VANTAGE_TRUSTED_KEYS=str(self.dir / "trusted_keys.json"),
            VANTAGE_CA_BUNDLE=str(pki.ca),
            VANTAGE_STATE_DIR=str(self.dir / "state"),
            VANTAGE_MAX_CONCURRENCY=str(max_concurrency),
        )
        self.log = (self.dir / "agent.log").open("wb")
        self.proc = subprocess.Popen(
            pinned(cpu, [*VANTAGE, "agent", "run"]), stdout=self.log, stderr=subprocess.STDOUT, env=env
        )
        self.pid = self.proc.pid
        wait_until(lambda: dispatcher.ws is not None, 30, "the agent to connect")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self.log.close()


def measure_agent(
    agent: AgentProcess, dispatcher: Dispatcher, nginx: Nginx, in_flight: int, window: float
) -> Measurement:
    dispatcher.set_load(in_flight, nginx.url)
    time.sleep(WARMUP_S)
    before, cpu0, t0 = dispatcher.snapshot(), cpu_seconds(agent.pid), time.monotonic()
    time.sleep(window)
    after, cpu1, t1 = dispatcher.snapshot(), cpu_seconds(agent.pid), time.monotonic()
    dispatcher.set_load(0)
    wait_until(lambda: not dispatcher.outstanding, 30, "the outstanding checks to finish")
    done = after - before
    used, elapsed = cpu1 - cpu0, t1 - t0
    if done["ok"] == 0 or used <= 0:
        raise CannotMeasure(f"the agent delivered no result (see {agent.dir}/agent.log)")
    if done["rejected"]:
        raise CannotMeasure(
            f"the agent rejected {done['rejected']} instruction(s) (see {agent.dir}/agent.log)"
        )
    return Measurement(
        "agent", in_flight, done["ok"] / elapsed, done["ok"] / used, used / elapsed, done["failed"]
    )


# ----------------------------------------------------------------------------- the profile


#: What the agent's CPU goes to, by the first bucket one of whose markers appears in a sample's
#: stack (Python and native frames, py-spy --native).
PROFILE_BUCKETS = (
    (
        "connection set-up and teardown (vetted address, socket, connect, close)",
        (
            "open_vetted", "Connection.abort", "open_connection", "create_connection",
            "TCPTransport_connect", "uv__tcp_connect", "uv__stream_connect",
            "connection_made", "connection_lost", "uv_close", "uv__stream_destroy", "uv__finish_close",
            "_uv_close_handle_cb", "socket (libc", "connect (libc", "close (libc", "shutdown (libc", "wait_closed",
        ),
    ),
    ("signature verification (Ed25519)", ("vantage/protocol/envelope.py",)),
    ("timeouts (asyncio.timeout: the check's own and the runner's bound)", ("asyncio/timeouts.py",)),
    ("check spec validation", ("vantage/checks/schema.py", "vantage/checks/spec.py", "vantage/checks/fields.py")),
    ("the rest of the HTTP check (request, response, result)", ("vantage/checks/",)),
    ("journal and group commit (fsync included)", ("vantage/agent/journal.py", "vantage/agent/commit.py",
                                                   "vantage/agent/outbox.py", "concurrent/futures/")),
    ("TLS to the control plane", ("_ssl__SSLSocket", "sslproto", "SSLObject", "SSLProtocol")),
    ("websocket framing", ("vantage/agent/wsclient.py",)),
    ("instruction payloads (JSON, fields, replay cache)", ("vantage/protocol/",)),
    ("result JSON (serialised once)", ("serialise (",)),
    ("session and runner (tasks, data protection)", ("vantage/agent/",)),
)  # fmt: skip
#: Samples of a thread that waits (for work, for the GIL, for events) rather than runs.
PROFILE_IDLE = (
    "PyThread_acquire_lock_timed",
    "pthread_cond_timedwait",
    "pthread_cond_wait",
    "epoll_pwait",
    "epoll_wait",
)


def summarise_profile(path: Path) -> list[tuple[str, float]]:
    """Shares of the CPU-active samples of a py-spy ``--format raw`` file, by bucket."""
    totals: Counter[str] = Counter()
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not count.isdigit():
            continue
        frames = stack.split(";")
        if any(marker in frame for frame in frames[-4:] for marker in PROFILE_IDLE):
            continue
        bucket = "event loop and everything else"
        for label, markers in PROFILE_BUCKETS:
            if any(marker in frame for frame in frames for marker in markers):
                bucket = label
                break
        totals[bucket] += int(count)
    grand = sum(totals.values()) or 1
    return [(label, 100 * count / grand) for label, count in totals.most_common()]


def profile_agent(
    agent: AgentProcess, dispatcher: Dispatcher, nginx: Nginx, in_flight: int, window: float, out: Path
) -> list[tuple[str, float]]:
    if shutil.which("py-spy") is None and not Path(sys.executable).with_name("py-spy").exists():
        raise CannotMeasure("py-spy is not installed (pip install py-spy)")
    py_spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    dispatcher.set_load(in_flight, nginx.url)
    time.sleep(WARMUP_S)
    argv = [py_spy, "record", "--pid", str(agent.pid), "--duration", str(int(window)), "--rate", "250",
            "--format", "raw", "--output", str(out), "--native"]  # fmt: skip
    result = subprocess.run(argv, capture_output=True, text=True, timeout=window + 60, check=False)
    dispatcher.set_load(0)
    wait_until(lambda: not dispatcher.outstanding, 30, "the outstanding checks to finish")
    if result.returncode != 0 or not out.exists():
        raise CannotMeasure(f"py-spy failed: {result.stderr[-500:]}")
    return summarise_profile(out)


# ----------------------------------------------------------------------------- main


def report(figures: dict[str, Any]) -> None:
    rows = [
        (
            "in flight",
            "blackbox checks/s",
            "agent checks/s",
            "ratio",
            "blackbox checks/CPU-s",
            "agent checks/CPU-s",
            "ratio",
        )
    ]
    for n, row in figures["medians"].items():
        b, a = row["blackbox"], row["agent"]
        rows.append((
            str(n), f"{b['checks_per_s']:.0f}", f"{a['checks_per_s']:.0f}", f"{a['checks_per_s'] / b['checks_per_s']:.2f}",
            f"{b['checks_per_cpu_s']:.0f}", f"{a['checks_per_cpu_s']:.0f}", f"{a['checks_per_cpu_s'] / b['checks_per_cpu_s']:.2f}",
        ))  # fmt: skip
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    print(f"\nAgent vs blackbox_exporter ({figures['layout']}; window {figures['window_s']:g} s after a {WARMUP_S:g} s "
          f"warm-up, {figures['runs']} interleaved runs, medians; agent instructions: {figures['dispatch']})")  # fmt: skip
    for row in rows:
        print("  ".join(cell.rjust(width) for cell, width in zip(row, widths, strict=True)))
    rss = figures["rss_mb"]
    print(
        f"resident memory: idle blackbox {rss['blackbox_idle']:.1f} MB, agent {rss['agent_idle']:.1f} MB "
        f"(ratio {rss['agent_idle'] / rss['blackbox_idle']:.2f}); after the runs blackbox "
        f"{rss['blackbox_after']:.1f} MB, agent {rss['agent_after']:.1f} MB"
    )
    trip = figures["agent_round_trip_ms"]
    print(
        f"the agent's dispatch-to-result round trip, checks sent alone at 20/s (this script's control "
        f"plane, no database): p50 {trip['p50']:.1f} ms, p99 {trip['p99']:.1f} ms"
    )
    print("every run (checks/s, checks/CPU-s, CPU used in cores, failed checks):")
    for m in figures["runs_detail"]:
        print(f"  {m['side']:8} {m['in_flight']:3}: {m['checks_per_s']:7.0f}/s {m['checks_per_cpu_s']:7.0f}/CPU-s "
              f"{m['cpu_cores']:.2f} core  {m['failed']} failed")  # fmt: skip
    if figures.get("profile"):
        print(
            f"where the agent's CPU went ({figures['profile_in_flight']} in flight, py-spy, {figures['profile_file']}):"
        )
        for label, share in figures["profile"]:
            print(f"  {share:5.1f} %  {label}")
    print(f"load average (1 min) before {figures['load_before']:.2f}, after {figures['load_after']:.2f} "
          f"on {os.cpu_count()} CPUs")  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--window", type=float, default=10.0, help="seconds measured per run (default 10)")
    parser.add_argument("--runs", type=int, default=3, help="interleaved runs per figure (default 3)")
    parser.add_argument(
        "--in-flight", type=int, nargs="+", default=[16, 64], help="checks in flight (default 16 64)"
    )
    parser.add_argument(
        "--singles", action="store_true", help="one signed envelope per instruction, no batches"
    )
    parser.add_argument("--profile", type=Path, help="also profile the agent with py-spy into this file")
    parser.add_argument("--json", type=Path, help="also write the figures to this JSON file")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory (logs)")
    args = parser.parse_args()

    missing = [tool for tool in TOOLS if shutil.which(tool) is None]
    cpus = sorted(os.sched_getaffinity(0))
    if missing or len(cpus) < 2:
        log(
            f"cannot measure: needs two CPUs and {', '.join(TOOLS)} (missing: {', '.join(missing) or 'none'})"
        )
        return 1
    measured_cpu, side_cpu = cpus[0], cpus[1]
    os.sched_setaffinity(0, {side_cpu})  # this script's control plane shares the load generator's CPU
    workdir = Path(
        tempfile.mkdtemp(prefix="vantage-bench-peer-", dir="/var/tmp" if Path("/var/tmp").is_dir() else None)
    )
    figures: dict[str, Any] = {
        "layout": f"measured process on CPU {measured_cpu}, nginx and load generator on CPU {side_cpu}",
        "window_s": args.window,
        "runs": args.runs,
        "dispatch": "one envelope per instruction" if args.singles else "batches of the slots freed together",
        "load_before": os.getloadavg()[0],
    }
    stoppable: list[Any] = []
    try:
        script = workdir / "probe.lua"
        script.write_text(WRK_SCRIPT)
        nginx = Nginx(workdir, side_cpu)
        stoppable.append(nginx)
        blackbox = Blackbox(workdir, measured_cpu)
        stoppable.append(blackbox)
        pki = make_pki(workdir)
        dispatcher = Dispatcher(pki, batches=not args.singles)
        dispatcher.start()
        stoppable.append(dispatcher)
        agent = AgentProcess(workdir / "agent", dispatcher, pki, measured_cpu, max(args.in_flight))
        stoppable.append(agent)
        time.sleep(3)  # both idle: blackbox listening, the agent connected
        figures["rss_mb"] = {"blackbox_idle": rss_mb(blackbox.pid), "agent_idle": rss_mb(agent.pid)}
        log(
            f"idle RSS: blackbox {figures['rss_mb']['blackbox_idle']:.1f} MB, agent {figures['rss_mb']['agent_idle']:.1f} MB"
        )

        runs: list[Measurement] = []
        for run in range(1, args.runs + 1):
            for n in args.in_flight:
                order = ("blackbox", "agent") if run % 2 else ("agent", "blackbox")
                for side in order:
                    log(f"run {run}/{args.runs}: {side}, {n} in flight, {args.window:g} s")
                    if side == "blackbox":
                        runs.append(measure_blackbox(blackbox, nginx, side_cpu, n, args.window, script))
                    else:
                        runs.append(measure_agent(agent, dispatcher, nginx, n, args.window))
        log("the agent's own dispatch-to-result round trip: 400 checks alone, 20 per second")
        trips = dispatcher.paced(nginx.url, 20, 400)
        figures["agent_round_trip_ms"] = {"p50": percentile(trips, 50), "p99": percentile(trips, 99)}
        figures["rss_mb"]["blackbox_after"] = rss_mb(blackbox.pid)
        figures["rss_mb"]["agent_after"] = rss_mb(agent.pid)
        figures["runs_detail"] = [m.__dict__ for m in runs]
        figures["medians"] = {
            n: {
                side: {
                    key: statistics.median(
                        getattr(m, key) for m in runs if m.side == side and m.in_flight == n
                    )
                    for key in ("checks_per_s", "checks_per_cpu_s")
                }
                for side in ("blackbox", "agent")
            }
            for n in args.in_flight
        }
        if args.profile is not None:
            n = max(args.in_flight)
            log(f"profile of the agent with py-spy ({n} in flight, {args.window:g} s; not measured)")
            figures["profile"] = profile_agent(
                agent, dispatcher, nginx, n, args.window, args.profile.resolve()
            )
            figures["profile_in_flight"], figures["profile_file"] = n, str(args.profile)
        figures["load_after"] = os.getloadavg()[0]
    except CannotMeasure as exc:
        log(f"cannot measure: {exc} (logs in {workdir})")
        args.keep = True
        return 1
    finally:
        for item in reversed(stoppable):
            try:
                item.stop()
            except Exception as exc:  # noqa: BLE001 - stop the rest regardless
                log(f"stopping {type(item).__name__}: {exc}")
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
    report(figures)
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
