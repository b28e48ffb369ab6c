"""Idle memory of the check code (a report, not a test): run it with the project's venv,

    .venv/bin/python benchmarks/bench_check_imports.py [--runs 5] [--json FILE]

Each scenario runs in a fresh interpreter: it imports modules, validates specs (an agent that
runs http checks only, or one spec of each of the ten types that older revisions have too: what
an idle agent has done once it accepted monitors, no check has run yet) and then reads its own
``VmRSS`` from ``/proc/self/status``. The figure is the smallest of ``--runs`` runs (the least
disturbed by other processes). It also lists which heavy check libraries and how many check type
modules got loaded: a type's module is imported when a spec of that type is first validated, a
heavy library when its check first runs (see docs/checks.md).

With ``PYTHONPATH=<another checkout>/src`` the same scenarios measure another revision (a
``git worktree`` of it, say).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

HEAVY = ("asyncssh", "psycopg", "pymysql", "aiosmtplib", "dns", "aiohttp", "yarl", "cryptography.x509")

VALIDATE = """
from vantage.checks import validate_spec
for spec in [
    {"type": "http", "target": "http://h/"}, {"type": "tcp", "target": "h:1"}, {"type": "dns", "target": "h"},
    {"type": "tls", "target": "h:443"}, {"type": "ssh", "target": "h:22"}, {"type": "postgres", "target": "h:5432"},
    {"type": "mysql", "target": "h:3306"}, {"type": "smtp", "target": "h:25"}, {"type": "imap", "target": "h:993"},
    {"type": "http_multistep", "target": "http://h/", "steps": [{"url": "/"}]},
]:
    validate_spec(spec)
"""

AGENT = "import vantage.agent.cli, vantage.agent.session, vantage.checks\n"
SCENARIOS = {
    "import vantage.agent.cli": "import vantage.agent.cli\n",
    "import vantage.checks": "import vantage.checks\n",
    "agent idle, http checks only: agent.cli + session + checks, an http spec validated":
        AGENT + "from vantage.checks import validate_spec\nvalidate_spec({'type': 'http', 'target': 'http://h/'})\n",
    "agent idle, every type: agent.cli + session + checks, one spec of each type validated": AGENT + VALIDATE,
    "import vantage.control_plane.app": "import vantage.control_plane.app\n",
}

REPORT = """
import sys
from vantage.checks.spec import TYPE_MODULES
rss = next(line for line in open("/proc/self/status") if line.startswith("VmRSS")).split()[1]
types = sum(f"vantage.checks.{name}" in sys.modules for name in TYPE_MODULES)
print(rss, types, ",".join(m for m in %r if m in sys.modules))
"""


def measure(code: str, runs: int) -> tuple[float, int, list[str]]:
    """The smallest RSS (MiB) of ``runs`` runs of ``code``, the check types and the heavy modules it loaded."""
    best = float("inf")
    types, heavy = 0, []
    for _ in range(runs):
        out = subprocess.run([sys.executable, "-c", code + REPORT % (HEAVY,)], capture_output=True, text=True,
                             check=True, timeout=120).stdout.split()
        best = min(best, int(out[0]) / 1024)
        types = int(out[1])
        heavy = out[2].split(",") if len(out) > 2 else []
    return best, types, heavy


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    figures = {}
    for label, code in SCENARIOS.items():
        rss, types, heavy = measure(code, args.runs)
        figures[label] = {"rss_mib": round(rss, 1), "check_types_loaded": types, "heavy_loaded": heavy}
        print(f"{label}: RSS {rss:.1f} MiB; check types loaded: {types}; "
              f"heavy check libraries loaded: {', '.join(heavy) or 'none'}")
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
