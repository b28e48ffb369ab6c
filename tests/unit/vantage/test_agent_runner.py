"""The check runner: result shape, bad specs, crashes, timeouts, the concurrency bound."""

from __future__ import annotations

import asyncio
import json
import sys
from typing import Any

import pytest

import vantage.checks
from vantage.agent import runner as runner_module
from vantage.agent.runner import BadInstructionBody, CheckRunner
from vantage.checks import CheckOptions, CheckResult, DataProtection


def body(check_id: str = "c1", **spec: Any) -> dict[str, Any]:
    check = {"type": "tcp", "target": "127.0.0.1:9", "timeout_s": 1, **spec}
    return {"check_id": check_id, "monitor_id": "m1", "attempt": 2, "check": check}


@pytest.fixture
def fake_checks(monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """Replace run_check; ``state`` controls its behaviour and records concurrency."""
    state: dict[str, Any] = {"delay": 0.0, "raise": None, "running": 0, "peak": 0, "calls": 0}

    async def fake_run_check(spec: dict[str, Any], options: CheckOptions) -> CheckResult:
        state["calls"] += 1
        state["running"] += 1
        state["peak"] = max(state["peak"], state["running"])
        try:
            await asyncio.sleep(state["delay"])
            if state["raise"] is not None:
                raise state["raise"]
            details = {"body_excerpt": "secret", "headers": {"x": "y"}, "peer_ip": "10.1.2.3", "banner": "hi"}
            return CheckResult(True, None, 1.5, 1700000000.0, {"connect_ms": 0.5}, details)
        finally:
            state["running"] -= 1

    monkeypatch.setattr(vantage.checks, "run_check", fake_run_check)
    return state


async def test_result_shape(fake_checks: dict[str, Any]) -> None:
    result, data = await CheckRunner(CheckOptions(), DataProtection()).run(body())
    assert json.loads(data) == result  # serialised once: the text stored and sent
    assert b"\n" not in data  # one journal record
    assert result["id"] == result["check_id"] == "c1"
    assert (result["monitor_id"], result["attempt"], result["ok"]) == ("m1", 2, True)
    assert result["phases"] == {"connect_ms": 0.5} and result["details"]["body_excerpt"] == "secret"


async def test_data_protection_is_applied(fake_checks: dict[str, Any]) -> None:
    protection = DataProtection(strip_content=True, strip_headers=True, strip_ips=True)
    result, data = await CheckRunner(CheckOptions(), protection).run(body(type="http", target="http://127.0.0.1:9/"))
    assert "body_excerpt" not in result["details"] and "headers" not in result["details"]
    assert "10.1.2.3" not in repr(result) and b"10.1.2.3" not in data


async def test_data_protection_applies_the_declarations_of_the_check_type(fake_checks: dict[str, Any]) -> None:
    """Only the check's own type wrote its details: its declared keys go, another type's are its own data."""
    protection = DataProtection(strip_content=True, strip_headers=True)
    result, _ = await CheckRunner(CheckOptions(), protection).run(body())  # a tcp check
    assert "banner" not in result["details"]  # the tcp check's content
    assert result["details"]["body_excerpt"] == "secret"  # an http key: no tcp check writes it


async def test_the_spec_is_validated_once_and_an_invalid_one_becomes_an_error_result(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    original = vantage.checks.validate_spec
    calls: list[dict[str, Any]] = []

    def counting(spec: dict[str, Any]) -> dict[str, Any]:
        calls.append(spec)
        return original(spec)

    for module in list(sys.modules.values()):  # wherever the checks hold a reference to it
        if getattr(module, "__name__", "").startswith("vantage.") and getattr(module, "validate_spec", None) is original:
            monkeypatch.setattr(module, "validate_spec", counting)
    runner = CheckRunner(CheckOptions(), DataProtection())
    result, _ = await runner.run(body())  # a real check of a closed local port
    assert result["ok"] is False and "invalid check spec" not in str(result["error"])
    assert len(calls) == 1
    result, _ = await runner.run(body(colour="blue"))
    assert result["ok"] is False and result["error"].startswith("invalid check spec: colour")
    assert len(calls) == 2


async def test_crashing_check_becomes_an_error_result(fake_checks: dict[str, Any]) -> None:
    fake_checks["raise"] = RuntimeError("bug")
    result, _ = await CheckRunner(CheckOptions(), DataProtection()).run(body())
    assert result["ok"] is False and result["error"] == "agent_error: RuntimeError"


async def test_runaway_check_is_cut_off(fake_checks: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(runner_module, "TIMEOUT_MARGIN_S", 0.0)
    fake_checks["delay"] = 5
    result, _ = await CheckRunner(CheckOptions(), DataProtection()).run(body(timeout_s=0.2))
    assert result["ok"] is False and result["error"].startswith("timeout")


async def test_concurrency_is_bounded(fake_checks: dict[str, Any]) -> None:
    fake_checks["delay"] = 0.05
    runner = CheckRunner(CheckOptions(), DataProtection(), max_concurrency=3)
    results = await asyncio.gather(*(runner.run(body(f"c{i}")) for i in range(10)))
    assert fake_checks["peak"] == 3 and len(results) == 10
    assert runner.running == 0 and runner.waiting == 0 and not runner.saturated


async def test_cancelled_waiter_is_not_counted(fake_checks: dict[str, Any]) -> None:
    fake_checks["delay"] = 0.2
    runner = CheckRunner(CheckOptions(), DataProtection(), max_concurrency=1)
    first = asyncio.create_task(runner.run(body("a")))
    second = asyncio.create_task(runner.run(body("b")))
    await asyncio.sleep(0.05)
    assert runner.saturated
    second.cancel()
    await asyncio.gather(first, second, return_exceptions=True)
    assert runner.waiting == 0 and runner.running == 0


@pytest.mark.parametrize(
    "bad",
    [
        {"monitor_id": "m", "check": {}},
        {"check_id": "", "monitor_id": "m", "check": {}},
        {"check_id": "c", "monitor_id": "m", "attempt": 0, "check": {}},
        {"check_id": "c", "monitor_id": "m", "check": "http://x"},
    ],
)
async def test_unusable_body_raises(bad: dict[str, Any]) -> None:
    with pytest.raises(BadInstructionBody):
        await CheckRunner(CheckOptions(), DataProtection()).run(bad)


async def test_oversized_result_keeps_its_verdict_without_details(
    fake_checks: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(runner_module, "MAX_RESULT_BYTES", 100)
    _, data = await CheckRunner(CheckOptions(), DataProtection()).run(body())
    sent = json.loads(data)
    assert sent["ok"] is True and sent["details"]["truncated"] is True
    assert sent["id"] == "c1"


async def test_bytes_become_text_whether_or_not_data_protection_is_on(
    fake_checks: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without any switch on, the runner skips data protection's copy; the JSON is the same."""
    real = CheckResult(True, None, 1.0, 1700000000.0, {}, {"banner": b"SSH-2.0-x\xff", "n": (1, 2)})

    async def banner_check(spec: dict[str, Any], options: CheckOptions) -> CheckResult:
        return real

    monkeypatch.setattr(vantage.checks, "run_check", banner_check)
    _, plain = await CheckRunner(CheckOptions(), DataProtection()).run(body())
    _, protected = await CheckRunner(CheckOptions(), DataProtection(strip_headers=True)).run(body())
    assert json.loads(plain)["details"] == {"banner": "SSH-2.0-x\ufffd", "n": [1, 2]}
    assert json.loads(plain) == json.loads(protected)
