"""Load benchmark of the control plane (a report, not a test): run it with the project's venv,

    .venv/bin/python benchmarks/bench_control_plane.py [--sessions 1000,5000] [--db sqlite,postgres]
                                                        [--interval 20] [--window 30] [--json FILE]

or ``make bench-cp``. For each database and each number of sessions it starts one control-plane
process (``vantage control-plane serve``, plain HTTP on 127.0.0.1, pinned with ``taskset`` to
one core when the machine has two) on a fresh SQLite file or a fresh throw-away PostgreSQL
cluster, enrolls N instances (N/2 checkpoints of two) and connects N simulated agents
(:class:`support.agents.SimAgent`, run by this script on the other core: real hello signatures,
heartbeats every ``--heartbeat`` seconds, each ``run_check`` answered at once with a result).
There are as many monitors as sessions (``tcp``, every ``--interval`` seconds, two per
checkpoint), so the control plane dispatches N / interval checks per second, receives as many
results and N / heartbeat heartbeats per second.

Figures and how each is measured:

1. **Sessions held** — ``vantage_cp_connected_instances`` from ``/metrics`` after the window.
2. **Memory per session** — the process's ``VmRSS`` (``/proc/<pid>/status``) with every agent
   connected minus the same before the first agent connected, divided by N.
3. **Dispatch → result, p50 and p99** — for every first attempt whose result arrived in the
   ``--window`` seconds after one full interval of warm-up: the stored result's
   ``received_at`` minus its dispatch's ``dispatched_at``, both written by the control plane
   into its database (so it counts signing, the send, the agent's answer and storing the
   result), read afterwards.
4. **CPU** — the control plane's CPU seconds (``/proc/<pid>/stat``) over the window, per
   second of window: 1.0 is the whole core it is pinned to.

The target (docs/control-plane.md, "Load"): 5,000 sessions on one core with p99 ≤ 100 ms. The
machine may be shared: the 1-minute load average is printed with every row, and the figures
are as measured. Exit status 0 when every figure was measured, 1 otherwise.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import resource
import secrets
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
import aiohttp
from sqlalchemy import create_engine, text
from support.agents import Identity, SimAgent
from support.measure import CannotMeasure, cpu_seconds, percentile, rss_mb
from support.postgres import postgres_server
from support.processes import ControlPlaneProcess
from support.waiting import WaitTimeout

from vantage.protocol import TrustStore

P99_TARGET_MS = 100.0
CONNECT_WAVE = 200
PUBLIC_URL = "http://127.0.0.1:8443"  # the name agents sign for; they connect to the real port

#: Scratch space for the databases: /var/tmp (on disk) where it exists, like a real site.
BENCH_TMP = "/var/tmp" if os.path.isdir("/var/tmp") else None




def log(message: str) -> None:
    print(f"[bench-cp {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)








def cores() -> tuple[list[str], list[int]]:
    """(prefix pinning the control plane to a core, the cores left for this script)."""
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) >= 2 and shutil.which("taskset"):
        return ["taskset", "-c", str(cpus[0])], cpus[1:]
    return [], cpus


async def _parallel(calls: list[Any], width: int = 16) -> None:
    """Await the coroutines ``calls``, ``width`` at a time."""
    queue = list(calls)

    async def worker() -> None:
        while queue:
            await queue.pop()

    await asyncio.gather(*(worker() for _ in range(width)))


async def _rest(http: aiohttp.ClientSession, cp: ControlPlaneProcess, method: str, path: str, body: Any) -> Any:
    async with http.request(method, cp.url + path, json=body,
                            headers={"Authorization": f"Bearer {cp.admin_token}"}) as response:
        if response.status >= 300:
            raise CannotMeasure(f"{method} {path}: HTTP {response.status} {(await response.text())[:300]}")
        return await response.json()


def latencies(db_url: str, since: float, until: float) -> list[float]:
    engine = create_engine(db_url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(
                text("SELECT r.received_at - d.dispatched_at FROM results r JOIN dispatches d ON d.check_id = r.check_id "
                     "WHERE d.attempt = 1 AND r.received_at >= :since AND r.received_at < :until"),
                {"since": since, "until": until},
            ).all()
    finally:
        engine.dispose()
    return [row[0] * 1000 for row in rows]


async def run_one(workdir: Path, db_url: str, n: int, args: argparse.Namespace, prefix: list[str]) -> dict[str, Any]:
    token = secrets.token_urlsafe(24)
    cp = ControlPlaneProcess(
        workdir, db_url, token, workdir / "signing.pem",
        ["--public-url", PUBLIC_URL, "--heartbeat-interval", str(args.heartbeat), "--scheduler-tick", "0.2",
         "--max-unauthenticated-per-address", "1024", "--unavailable-grace", "600", "--log-level", "WARNING"],
        prefix=prefix, name=f"cp-{n}",
    )
    cp.start()
    agents: list[SimAgent] = []
    try:
        connector = aiohttp.TCPConnector(limit=0)
        async with aiohttp.ClientSession(connector=connector) as http:
            identities = [Identity(f"site{i // 2}", f"i{i % 2}") for i in range(n)]
            log(f"{n} sessions: enrolling")
            await _parallel([_rest(http, cp, "PUT", f"/api/v1/checkpoints/site{c}", {}) for c in range((n + 1) // 2)])
            await _parallel([
                _rest(http, cp, "PUT", f"/api/v1/checkpoints/{i.checkpoint}/instances/{i.instance}",
                      {"public_key": i.public_key}) for i in identities
            ])
            trust = TrustStore.from_json(await _rest(http, cp, "GET", "/api/v1/signing-keys", None))
            rss_before = rss_mb(cp.pid)
            log(f"{n} sessions: connecting (control plane RSS {rss_before:.0f} MB)")
            agents = [SimAgent(http, [cp.ws_url], ident, PUBLIC_URL, trust) for ident in identities]
            started = time.monotonic()
            for first in range(0, n, CONNECT_WAVE):  # in waves: a herd of hellos only times itself out
                wave = agents[first:first + CONNECT_WAVE]
                for agent in wave:
                    agent.start()
                deadline = time.monotonic() + 120
                while not all(a.connected for a in wave):
                    if time.monotonic() > deadline:
                        raise CannotMeasure(f"only {sum(a.connected for a in agents)} of {n} agents connected")
                    await asyncio.sleep(0.2)
            connect_s = time.monotonic() - started
            await asyncio.sleep(2 * args.heartbeat)  # a heartbeat or two from everyone
            rss_after = rss_mb(cp.pid)
            log(f"{n} sessions: {n} connected in {connect_s:.0f} s (RSS {rss_after:.0f} MB); "
                f"{n} monitors, every {args.interval:g} s")
            await _parallel([
                _rest(http, cp, "POST", "/api/v1/monitors",
                      {"name": f"m-{i.checkpoint}-{i.instance}", "checkpoint": i.checkpoint, "type": "tcp",
                       "target": f"10.9.{k // 250}.{k % 250 + 1}:443", "interval_s": args.interval})
                for k, i in enumerate(identities)
            ])
            log(f"{n} sessions: warm-up ({args.interval:g} s)")
            await asyncio.sleep(args.interval)
            load = os.getloadavg()[0]
            cpu0, t0 = cpu_seconds(cp.pid), time.time()
            await asyncio.sleep(args.window)
            cpu1, t1 = cpu_seconds(cp.pid), time.time()
            metrics = await (await http.get(cp.url + "/metrics")).text()
            held = next((float(line.split()[-1]) for line in metrics.splitlines()
                         if line.startswith("vantage_cp_connected_instances ")), 0.0)
            samples = latencies(db_url, t0, t1)
            return {
                "sessions": n, "sessions_held": int(held), "control_plane_rss_mb": round(rss_after, 1),
                "memory_per_session_kb": round((rss_after - rss_before) * 1024 / n, 1),
                "results_in_window": len(samples), "results_per_s": round(len(samples) / (t1 - t0), 1),
                "p50_ms": round(percentile(samples, 50), 1), "p99_ms": round(percentile(samples, 99), 1),
                "cpu_core_share": round((cpu1 - cpu0) / (t1 - t0), 2), "load_average_1m": round(load, 2),
                "reconnects": sum(a.connects for a in agents) - n, "connect_all_s": round(connect_s, 1),
            }
    finally:
        for agent in agents:
            await agent.stop()
        cp.stop()


async def main_async(args: argparse.Namespace) -> int:
    prefix, harness_cpus = cores()
    if prefix:
        os.sched_setaffinity(0, harness_cpus)  # the harness must not compete with the control plane
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 65536), hard))  # the child inherits it
    sizes = [int(x) for x in args.sessions.split(",")]
    rows: list[dict[str, Any]] = []
    failed = False
    base = Path(tempfile.mkdtemp(prefix="vantage-bench-cp-", dir=BENCH_TMP))
    try:
        for kind in args.db.split(","):
            for n in sizes:
                workdir = base / f"{kind}-{n}"
                try:
                    if kind == "sqlite":
                        row = await run_one(workdir, f"sqlite:///{workdir / 'cp.db'}", n, args, prefix)
                    elif kind == "postgres":
                        with postgres_server() as pg:
                            row = await run_one(workdir, pg.url, n, args, prefix)
                    else:
                        raise CannotMeasure(f"unknown database kind {kind!r}")
                except (CannotMeasure, WaitTimeout, FileNotFoundError, AssertionError) as exc:
                    log(f"{kind}, {n} sessions: could not measure: {exc}")
                    failed = True
                    continue
                row["database"] = kind
                rows.append(row)
                log(f"{kind}, {n}: {json.dumps(row)}")
    finally:
        if not args.keep:
            shutil.rmtree(base, ignore_errors=True)
    report(rows, args, "pinned with taskset to one core" if prefix else "not pinned (one CPU or no taskset)")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2) + "\n")
    return 1 if failed else 0


def report(rows: list[dict[str, Any]], args: argparse.Namespace, layout: str) -> None:
    print(f"\ncontrol plane: {layout}; monitor interval {args.interval:g} s, heartbeat {args.heartbeat:g} s, "
          f"window {args.window:g} s; plain HTTP on 127.0.0.1; {os.cpu_count()} CPUs")
    header = (f"{'database':9} {'sessions':>8} {'held':>6} {'KB/session':>10} {'results/s':>9} {'p50 ms':>7} "
              f"{'p99 ms':>7} {'CPU':>5} {'load':>5}  p99 ≤ {P99_TARGET_MS:g} ms")
    print(header)
    print("-" * len(header))
    for r in rows:
        verdict = "PASS" if r["p99_ms"] <= P99_TARGET_MS and r["sessions_held"] == r["sessions"] else "MISS"
        print(f"{r['database']:9} {r['sessions']:>8} {r['sessions_held']:>6} {r['memory_per_session_kb']:>10} "
              f"{r['results_per_s']:>9} {r['p50_ms']:>7} {r['p99_ms']:>7} {r['cpu_core_share']:>5} "
              f"{r['load_average_1m']:>5}  {verdict}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--sessions", default="1000,5000", help="numbers of sessions, comma-separated")
    parser.add_argument("--db", default="sqlite,postgres", help="sqlite, postgres or both")
    parser.add_argument("--interval", type=float, default=20.0, help="monitor interval, s (default 20)")
    parser.add_argument("--heartbeat", type=float, default=15.0, help="heartbeat interval, s (default 15)")
    parser.add_argument("--window", type=float, default=30.0, help="measurement window, s (default 30)")
    parser.add_argument("--json", type=Path, help="also write the figures to this JSON file")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory (logs, databases)")
    args = parser.parse_args()
    with contextlib.suppress(KeyboardInterrupt):
        return asyncio.run(main_async(args))
    return 130


if __name__ == "__main__":
    sys.exit(main())
