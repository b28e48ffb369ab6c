"""What importing, validating and running checks loads: per-type modules on demand, heavy libraries on run.

Each case imports modules in a fresh interpreter, does something, then reports which modules got
loaded. Two rules are held: a check type's module is imported when a spec of that type is first
validated, run or described (the agent loads only what it runs; ``vantage.checks.spec``), and a
heavy library only when a check of its type first runs. The idle memory this saves is measured
by ``benchmarks/bench_check_imports.py``.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from vantage.checks.spec import TYPE_MODULES

#: Libraries only a running check needs (ssh, postgres, mysql, dns, the certificate parser; the
#: SMTP library the smtp check once used).
HEAVY = ("asyncssh", "psycopg", "pymysql", "aiosmtplib", "dns", "cryptography.x509")
#: Loaded by the agent's and the control plane's own code, but never by ``vantage.checks``.
SHARED = ("aiohttp", "yarl", "cryptography", "sqlalchemy")
#: Every check type's module, and the helpers only check types import.
TYPES = tuple(f"vantage.checks.{name}" for name in TYPE_MODULES)
HELPERS = ("vantage.checks.httpclient", "vantage.checks.mail", "vantage.checks.database")
AGENT = ["vantage.agent", "vantage.agent.cli", "vantage.agent.session", "vantage.agent.runner"]

EXERCISE = """
from vantage.checks import CHECK_TYPES, DataProtection, spec_schema, specs_schema, validate_spec
from vantage.checks.spec import all_types
for check in all_types().values():
    validate_spec(check.example)
    spec_schema(check.name)
specs_schema()
DataProtection(True, True, True).apply({"details": {"record_type": "A", "answers": ["10.0.0.1"]}})
"""

WATCHED = HEAVY + SHARED + TYPES + HELPERS


def loaded(imports: list[str], then: str = "") -> list[str]:
    """The watched modules in ``sys.modules`` after ``imports`` and ``then``, in a fresh interpreter."""
    code = "\n".join(f"import {module}" for module in imports) + "\n" + then + (
        f"\nimport json, sys\nprint(json.dumps([m for m in {list(WATCHED)!r} if m in sys.modules]))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120)
    return list(json.loads(out.stdout.strip().splitlines()[-1]))


# --- check types are loaded on demand -------------------------------------------------------------


@pytest.mark.parametrize("imports", [["vantage.checks"], AGENT, ["vantage.checks.runner", "vantage.checks.privacy"]])
def test_importing_loads_no_check_type(imports: list[str]) -> None:
    assert not set(loaded(imports)) & set(TYPES + HELPERS)


def test_the_agent_leaves_out_what_only_rare_paths_need() -> None:
    """Each would stay in the running agent's memory for nothing.

    argparse (the agent's few options are parsed by hand), difflib (hints for typos), datetime
    (certificate dates, imported by the TLS code that reads them).
    """
    spec = "from vantage.checks import validate_spec\nvalidate_spec({'type': 'http', 'target': 'http://h/'})"
    code = spec + "\nimport sys\nassert not {'argparse', 'difflib', 'datetime'} & set(sys.modules), sys.modules.keys()"
    loaded(AGENT, code)


def test_validating_a_spec_loads_its_type_only() -> None:
    after = loaded(AGENT, "from vantage.checks import validate_spec\nvalidate_spec({'type': 'http', 'target': 'http://h/'})")
    assert set(after) & set(TYPES + HELPERS) == {"vantage.checks.http", "vantage.checks.httpclient"}


def test_running_a_check_loads_its_type_only() -> None:
    run = """
import asyncio, socket
from vantage.checks import CheckOptions, run_check
with socket.socket() as s:
    s.bind(("127.0.0.1", 0)); port = s.getsockname()[1]
result = asyncio.run(run_check({"type": "tcp", "target": f"127.0.0.1:{port}"}, CheckOptions()))
assert result.error.startswith("connection refused"), result.error
"""
    assert set(loaded(AGENT, run)) & set(TYPES + HELPERS) == {"vantage.checks.tcp"}


def test_data_protection_loads_the_types_it_applies() -> None:
    """A result of a known type needs that type's declarations; one of unknown origin every type's."""
    own = "from vantage.checks import DataProtection\nDataProtection(True, True, True).apply({'details': {}}, 'tls')"
    assert set(loaded(["vantage.checks"], own)) & set(TYPES + HELPERS) == {"vantage.checks.tls"}
    any_type = "from vantage.checks import DataProtection\nDataProtection(True, True, True).apply({'details': {}})"
    assert set(TYPES) <= set(loaded(["vantage.checks"], any_type))


def test_the_control_plane_describes_every_type() -> None:
    """Its OpenAPI document lists every type's spec, so building it loads them all."""
    after = loaded(["vantage.control_plane.openapi"], "vantage.control_plane.openapi.document()")
    assert set(TYPES) <= set(after)


@pytest.mark.parametrize("name", ["net", "netpolicy", "mail", "database", "spec", "__init__", "os", "http.client", ""])
def test_only_registered_names_are_imported(name: str) -> None:
    """A spec's ``type`` comes from outside: a module of the package that is no check type is never imported."""
    attempt = f"""
from vantage.checks import CheckSpecError, validate_spec
try:
    validate_spec({{"type": {name!r}, "target": "h:1"}})
except CheckSpecError as exc:
    assert exc.field == "type" and "unknown check type" in exc.message, exc
else:
    raise AssertionError("accepted")
"""
    assert not set(loaded(["vantage.checks"], attempt)) & set(TYPES + HELPERS)


# --- heavy libraries are loaded when a check of their type runs -------------------------------------


def test_checks_alone_load_no_check_library() -> None:
    """Validating every type's example, building every schema and data protection load no library."""
    assert not set(loaded(["vantage.checks"], EXERCISE)) & set(HEAVY + SHARED)


@pytest.mark.parametrize("imports", [AGENT, ["vantage.control_plane.app"]])
def test_agent_and_control_plane_load_no_check_library(imports: list[str]) -> None:
    assert not set(loaded(imports, EXERCISE)) & set(HEAVY)


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
