"""The OpenAPI document, and schemathesis against a live control-plane process.

``GET /api/v1/openapi.json`` is derived from the route table; schemathesis generates requests
from it (bounded examples per operation, with an admin token) and checks every answer: no 5xx,
a documented status code and content type, and a body that conforms to the documented schema.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)
from support.agents import Identity
from support.processes import ControlPlaneProcess

from vantage.checks import CHECK_TYPES, spec_schema
from vantage.control_plane.api_monitors import MONITOR_BODY
from vantage.control_plane.web_common import ROUTES

TOKEN = secrets.token_urlsafe(24)
EXAMPLES = 15
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControlPlaneProcess]:
    tmp = tmp_path_factory.mktemp("openapi")
    cp = ControlPlaneProcess(tmp, f"sqlite:///{tmp / 'cp.db'}", TOKEN, tmp / "signing.pem",
                             ["--log-level", "WARNING"])
    cp.start()
    # something for the GETs to find
    cp.api("PUT", "/api/v1/checkpoints/cp1", {"description": "fuzzed", "labels": {"env": "test"}})
    cp.api("PUT", "/api/v1/checkpoints/cp1/instances/a", {"public_key": Identity("cp1", "a").public_key})
    cp.api("POST", "/api/v1/monitors", {"name": "m", "checkpoint": "cp1", "type": "tcp", "target": "127.0.0.1:9"})
    cp.api("PUT", "/api/v1/releases/stable", {"image": "vantage/checkpoint", "digest": "sha256:" + "a" * 64,
                                              "version": "1.0.0"})
    yield cp
    assert cp.stop() == 0
    assert "Traceback" not in cp.log(), cp.log()[-3000:]


def test_the_document_is_derived_from_the_routes(live: ControlPlaneProcess) -> None:
    document = live.api("GET", "/api/v1/openapi.json", auth=False)
    assert document["openapi"] == "3.1.0"
    declared = {(route.path, route.method.lower()) for route in ROUTES}
    documented = {(path, method) for path, ops in document["paths"].items() for method in ops}
    assert documented == declared
    body = document["paths"]["/api/v1/monitors"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert body["discriminator"]["propertyName"] == "type"
    for kind in CHECK_TYPES:  # each check type's spec, with the monitor's own fields
        monitor = document["components"]["schemas"][f"monitor-{kind}"]
        assert {"$ref": f"#/components/schemas/monitor-{kind}"} in body["oneOf"]
        for name, schema in MONITOR_BODY.fields.items():  # the very schema the handler validates with
            assert monitor["properties"][name] == schema.document()
        assert monitor["properties"]["type"] == spec_schema(kind)["properties"]["type"]
        assert {"name", "checkpoint", "type"} <= set(monitor["required"])
    put_cp = document["paths"]["/api/v1/checkpoints/{cp}"]["put"]
    assert put_cp["parameters"][0]["schema"]["pattern"] == "^(?:[a-z0-9][a-z0-9-]{0,62})$"
    assert {"401", "403", "404", "422"} <= set(put_cp["responses"])


def test_every_operation_answers_as_documented(live: ControlPlaneProcess) -> None:
    """Hypothesis-generated requests for every operation (a bounded number each, with an admin token)."""
    # revoking tokens would revoke the fuzzer's own; everything else is fair game
    api = schemathesis.openapi.from_url(live.url + "/api/v1/openapi.json").exclude(
        method="DELETE", path="/api/v1/tokens/{id}"
    )
    tested = []
    for result in api.get_all_operations():
        operation = result.ok()

        @given(case=operation.as_strategy())
        @settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), database=None)
        def run(case: Any) -> None:
            case.call_and_validate(headers={"Authorization": f"Bearer {TOKEN}"}, checks=CHECKS)

        run()
        tested.append(operation.label)
    skipped = {("DELETE", "/api/v1/tokens/{id}"), ("GET", "/api/v1/openapi.json")}  # the document: schemathesis's input
    assert sorted(tested) == sorted(f"{r.method} {r.path}" for r in ROUTES if (r.method, r.path) not in skipped)
