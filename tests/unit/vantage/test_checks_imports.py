"""Heavy check libraries are imported when a check of their type first runs, never to validate.

Each case imports modules in a fresh interpreter, validates every type's example spec (which uses
the fields that would need a library if anything did: credentials, queries, SFTP), builds the
JSON Schemas and applies data protection, then reports which heavy modules got loaded. The idle memory this saves is measured by
``benchmarks/bench_check_imports.py``.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

#: Libraries only a running check needs (ssh, postgres, mysql, dns, the certificate parser; the
#: SMTP library the smtp check once used).
HEAVY = ("asyncssh", "psycopg", "pymysql", "aiosmtplib", "dns", "cryptography.x509")
#: Loaded by the agent's and the control plane's own code, but never by ``vantage.checks``.
SHARED = ("aiohttp", "yarl", "cryptography", "sqlalchemy")

EXERCISE = """
import json, sys
from vantage.checks import CHECK_TYPES, DataProtection, spec_schema, specs_schema, validate_spec
from vantage.checks.spec import TYPES
for check in TYPES.values():
    validate_spec(check.example)
    spec_schema(check.name)
specs_schema()
DataProtection(True, True, True).apply({"details": {"record_type": "A", "answers": ["10.0.0.1"]}})
"""


def loaded(imports: list[str], then: str = "") -> list[str]:
    """The heavy or shared modules in ``sys.modules`` after ``imports``, :data:`EXERCISE` and ``then``."""
    code = "\n".join(f"import {module}" for module in imports) + EXERCISE + then + (
        f"\nprint(json.dumps([m for m in {list(HEAVY + SHARED)!r} if m in sys.modules]))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120)
    return list(json.loads(out.stdout.strip().splitlines()[-1]))


def test_checks_alone_load_no_check_library() -> None:
    assert loaded(["vantage.checks"]) == []


@pytest.mark.parametrize(
    "imports",
    [
        ["vantage.agent", "vantage.agent.cli", "vantage.agent.session", "vantage.agent.runner"],
        ["vantage.control_plane.app"],
    ],
)
def test_agent_and_control_plane_load_no_check_library(imports: list[str]) -> None:
    assert not set(loaded(imports)) & set(HEAVY)


def test_a_check_loads_its_library_when_it_runs() -> None:
    """The detection works: running an ssh check (here against a closed port) loads asyncssh."""
    run = """
import asyncio, socket
from vantage.checks import CheckOptions, run_check
with socket.socket() as s:
    s.bind(("127.0.0.1", 0)); port = s.getsockname()[1]
result = asyncio.run(run_check({"type": "ssh", "target": f"127.0.0.1:{port}"}, CheckOptions()))
assert result.error.startswith("connection refused"), result.error
"""
    after = loaded(["vantage.checks"], run)
    assert "asyncssh" in after
    assert not {"psycopg", "pymysql", "dns"} & set(after)
