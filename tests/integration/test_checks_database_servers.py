"""The ``postgres`` and ``mysql`` checks against real servers on 127.0.0.1: a PostgreSQL cluster
(``initdb``/``pg_ctl``) and MariaDB (``mariadbd``), with TLS certificates from a test CA (trustme).

Success (handshake only, TLS verify-full, login and query), and each failure class: refused,
timeout, bad TLS (untrusted CA, wrong name, no TLS offered), wrong credentials, assertion failed,
a write refused by the read-only transaction. No result ever contains the canary password.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import trustme
from check_servers import (
    MariaDBServer,
    PostgresServer,
    free_port,
    mariadb_server,
    postgres_server,
    silent_listener,
)

from vantage.checks import CheckOptions, DataProtection, run_check
from vantage.checks.credentials import CredentialStore

PASSWORD = "canary-db-pw-" + secrets.token_hex(6)
USER = "vantage_probe"


@dataclass
class Pki:
    ca: Path
    cert: Path
    key: Path


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    base = tmp_path_factory.mktemp("dbpki")
    ca = trustme.CA()
    leaf = ca.issue_cert("db.test", "127.0.0.1")
    paths = Pki(base / "ca.pem", base / "server.crt", base / "server.key")
    ca.cert_pem.write_to_path(str(paths.ca))
    leaf.private_key_pem.write_to_path(str(paths.key))
    with paths.cert.open("wb") as out:
        for blob in leaf.cert_chain_pems:
            out.write(blob.bytes())
    return paths


def _options(pki: Pki | None) -> CheckOptions:
    store = CredentialStore.from_mapping({"credentials": {
        "db": {"username": USER, "password": PASSWORD},
        "db-wrong": {"username": USER, "password": PASSWORD + "-wrong"},
    }})
    return CheckOptions(credentials=store, ca_bundle=str(pki.ca) if pki else None)


async def _run(spec: dict[str, Any], options: CheckOptions) -> dict[str, Any]:
    result = (await run_check(spec, options)).to_dict()
    assert PASSWORD not in json.dumps(result), "the password leaked into the result"
    return result


# --- PostgreSQL ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def pg(pki: Pki) -> Iterator[PostgresServer]:
    with postgres_server(tls=(pki.cert, pki.key), host_auth="scram-sha-256") as server:
        server.psql(f"CREATE ROLE {USER} LOGIN PASSWORD '{PASSWORD}'")
        server.psql(f"CREATE DATABASE vantage OWNER {USER}")
        yield server


async def test_postgres_handshake_only(pg: PostgresServer, pki: Pki) -> None:
    result = await _run({"type": "postgres", "target": f"127.0.0.1:{pg.port}", "server_name": "db.test"},
                        _options(pki))
    assert result["ok"], result["error"]
    assert result["details"]["tls_offered"] is True
    assert result["details"]["cert"]["san"] == ["DNS:db.test", "IP:127.0.0.1"]
    assert {"connect_ms", "handshake_ms", "tls_ms"} <= set(result["phases"]) and "login_ms" not in result["phases"]


async def test_postgres_login_query_verify_full(pg: PostgresServer, pki: Pki) -> None:
    spec = {"type": "postgres", "target": f"127.0.0.1:{pg.port}", "server_name": "db.test",
            "credential": "db", "database": "vantage", "query": "SELECT 41 + 1, 'ok'::text", "expected": 42}
    result = await _run(spec, _options(pki))
    assert result["ok"], result["error"]
    assert result["details"]["first_row"] == ["42", "ok"]
    assert {"tls_ms", "login_ms", "query_ms"} <= set(result["phases"])
    row = await _run({**spec, "expected": [42, "ok"]}, _options(pki))
    assert row["ok"], row["error"]
    # the IP in the certificate is verified too when no server_name is given
    by_ip = await _run({**spec, "server_name": None}, _options(pki))
    assert by_ip["ok"], by_ip["error"]
    stripped = DataProtection(strip_content=True).apply(result)
    assert "first_row" not in stripped["details"] and "server_version" not in stripped["details"]


async def test_postgres_assertion_failed(pg: PostgresServer, pki: Pki) -> None:
    spec = {"type": "postgres", "target": f"127.0.0.1:{pg.port}", "server_name": "db.test",
            "credential": "db", "database": "vantage", "query": "SELECT 'secret-content-7'", "expected": "other"}
    result = await _run(spec, _options(pki))
    assert not result["ok"]
    assert result["error"].startswith("query result does not match: expected 'other'")
    assert "secret-content-7" not in result["error"], "error strings never quote response content"


async def test_postgres_query_is_read_only(pg: PostgresServer, pki: Pki) -> None:
    pg.psql(f"CREATE TABLE IF NOT EXISTS public.t (id int); GRANT ALL ON public.t TO {USER}")
    spec = {"type": "postgres", "target": f"127.0.0.1:{pg.port}", "server_name": "db.test",
            "credential": "db", "database": "postgres",
            "query": "WITH x AS (INSERT INTO public.t VALUES (1) RETURNING id) SELECT * FROM x"}
    result = await _run(spec, _options(pki))
    assert not result["ok"]
    assert result["error"].startswith("query failed [25006]: cannot execute")
    assert result["error"].endswith("in a read-only transaction")
    assert pg.psql("SELECT count(*) FROM public.t").strip() == "0"


async def test_postgres_wrong_password(pg: PostgresServer, pki: Pki) -> None:
    spec = {"type": "postgres", "target": f"127.0.0.1:{pg.port}", "server_name": "db.test",
            "credential": "db-wrong", "query": "SELECT 1"}
    result = await _run(spec, _options(pki))
    assert not result["ok"]
    assert result["error"].startswith("PostgreSQL login failed:")
    assert f'password authentication failed for user "{USER}"' in result["error"]
    assert (PASSWORD + "-wrong") not in json.dumps(result)


async def test_postgres_bad_tls(pg: PostgresServer, pki: Pki) -> None:
    target = f"127.0.0.1:{pg.port}"
    untrusted = await _run({"type": "postgres", "target": target, "server_name": "db.test"}, _options(None))
    assert not untrusted["ok"]
    assert untrusted["error"].startswith("TLS certificate verify failed: unable to get local issuer certificate")
    wrong_name = await _run({"type": "postgres", "target": target, "server_name": "wrong.test"}, _options(pki))
    assert not wrong_name["ok"] and wrong_name["error"].startswith("TLS certificate verify failed: Hostname mismatch")
    # require: encrypted without verification (the certificate is still reported)
    required = await _run({"type": "postgres", "target": target, "tls": "require"}, _options(None))
    assert required["ok"], required["error"]
    assert required["details"]["cert"]["subject"]


async def test_postgres_without_tls(pki: Pki) -> None:
    with postgres_server(tls=None, host_auth="scram-sha-256") as server:
        server.psql(f"CREATE ROLE {USER} LOGIN PASSWORD '{PASSWORD}'")
        target = f"127.0.0.1:{server.port}"
        refused = await _run({"type": "postgres", "target": target, "tls": "require"}, _options(pki))
        assert not refused["ok"]
        assert refused["error"].startswith("the PostgreSQL server does not offer TLS")
        plain = await _run({"type": "postgres", "target": target, "tls": "disable", "credential": "db",
                            "database": "postgres", "query": "SELECT current_user", "expected": USER},
                           _options(pki))
        assert plain["ok"], plain["error"]
        assert plain["details"]["tls_offered"] is False and "tls_ms" not in plain["phases"]
        assert any("without TLS" in w for w in plain["details"]["warnings"])


# --- MariaDB ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def maria(pki: Pki) -> Iterator[MariaDBServer]:
    with mariadb_server(tls=(pki.cert, pki.key)) as server:
        server.sql(
            "CREATE DATABASE vantage; CREATE TABLE vantage.t (id INT); INSERT INTO vantage.t VALUES (7);"
            f"CREATE USER '{USER}'@'127.0.0.1' IDENTIFIED BY '{PASSWORD}';"
            f"GRANT SELECT ON vantage.* TO '{USER}'@'127.0.0.1';"
        )
        yield server


async def test_mysql_handshake_only(maria: MariaDBServer, pki: Pki) -> None:
    result = await _run({"type": "mysql", "target": f"127.0.0.1:{maria.port}", "server_name": "db.test"},
                        _options(pki))
    assert result["ok"], result["error"]
    assert "MariaDB" in result["details"]["server_version"]
    assert result["details"]["tls_offered"] is True and result["details"]["protocol"].startswith("TLS")
    assert {"connect_ms", "handshake_ms", "tls_ms"} <= set(result["phases"])


async def test_mysql_login_query(maria: MariaDBServer, pki: Pki) -> None:
    spec = {"type": "mysql", "target": f"127.0.0.1:{maria.port}", "server_name": "db.test",
            "credential": "db", "database": "vantage", "query": "SELECT id, id * 2 FROM t", "expected": [7, "14"]}
    result = await _run(spec, _options(pki))
    assert result["ok"], result["error"]
    assert result["details"]["first_row"] == ["7", "14"]
    assert {"tls_ms", "login_ms", "query_ms"} <= set(result["phases"])
    by_ip = await _run({**spec, "server_name": None, "expected": 7}, _options(pki))
    assert by_ip["ok"], by_ip["error"]


async def test_mysql_assertion_and_query_errors(maria: MariaDBServer, pki: Pki) -> None:
    spec = {"type": "mysql", "target": f"127.0.0.1:{maria.port}", "server_name": "db.test",
            "credential": "db", "database": "vantage", "query": "SELECT id FROM t", "expected": 8}
    result = await _run(spec, _options(pki))
    assert not result["ok"]
    assert result["error"].startswith("query result does not match: expected 8")
    missing = await _run({**spec, "query": "SELECT * FROM nope", "expected": None}, _options(pki))
    assert not missing["ok"]
    assert missing["error"] == "query failed: error 1146: Table 'vantage.nope' doesn't exist"


async def test_mysql_wrong_password(maria: MariaDBServer, pki: Pki) -> None:
    spec = {"type": "mysql", "target": f"127.0.0.1:{maria.port}", "server_name": "db.test",
            "credential": "db-wrong"}
    result = await _run(spec, _options(pki))
    assert not result["ok"]
    assert result["error"].startswith(f"MySQL login failed: error 1045: Access denied for user '{USER}'")


async def test_mysql_bad_tls(maria: MariaDBServer, pki: Pki) -> None:
    target = f"127.0.0.1:{maria.port}"
    untrusted = await _run({"type": "mysql", "target": target, "server_name": "db.test", "credential": "db"},
                           _options(None))
    assert not untrusted["ok"]
    assert untrusted["error"].startswith("TLS certificate verify failed: unable to get local issuer certificate")
    assert "login_ms" not in untrusted["phases"], "no login after a failed TLS probe"
    wrong_name = await _run({"type": "mysql", "target": target, "server_name": "wrong.test"}, _options(pki))
    assert not wrong_name["ok"] and wrong_name["error"].startswith("TLS certificate verify failed: Hostname mismatch")
    required = await _run({"type": "mysql", "target": target, "tls": "require", "credential": "db",
                           "query": "SELECT 1", "expected": 1}, _options(None))
    assert required["ok"], required["error"]


async def test_mysql_without_tls(pki: Pki) -> None:
    with mariadb_server(tls=None) as server:
        target = f"127.0.0.1:{server.port}"
        # no account for 127.0.0.1 yet: MariaDB answers with an error instead of its greeting
        denied = await _run({"type": "mysql", "target": target, "tls": "disable"}, _options(pki))
        assert not denied["ok"]
        assert denied["error"] == ("the MySQL server refused the connection: error 1130: "
                                   "Host '127.0.0.1' is not allowed to connect to this MariaDB server")
        server.sql(f"CREATE USER '{USER}'@'127.0.0.1' IDENTIFIED BY '{PASSWORD}'")
        result = await _run({"type": "mysql", "target": target}, _options(pki))
        assert not result["ok"] and result["error"].startswith("the MySQL server does not offer TLS")
        plain = await _run({"type": "mysql", "target": target, "tls": "disable"}, _options(pki))
        assert plain["ok"], plain["error"]
        assert plain["details"]["tls_offered"] is False


# --- both: refused and timeout ------------------------------------------------------------------


@pytest.mark.parametrize("check_type", ["postgres", "mysql"])
async def test_refused(check_type: str) -> None:
    port = free_port()
    result = await _run({"type": check_type, "target": f"127.0.0.1:{port}"}, _options(None))
    assert not result["ok"] and result["error"] == f"connection refused to 127.0.0.1:{port}"


@pytest.mark.parametrize(("check_type", "stage"), [("postgres", "PostgreSQL SSLRequest"),
                                                   ("mysql", "MySQL server greeting")])
async def test_timeout(check_type: str, stage: str) -> None:
    with silent_listener() as port:
        result = await _run({"type": check_type, "target": f"127.0.0.1:{port}", "timeout_s": 1}, _options(None))
    assert not result["ok"] and result["error"] == f"timed out after 1.0 s during {stage}"
