"""The health page in a real browser: Debian's headless Chromium driven by Playwright.

The control plane is the real process over TLS on loopback, with two real ``vantage agent run``
instances of the checkpoint ``sandbox`` (fixtures of conftest.py), told the name of their host
(``VANTAGE_HOST_NAME``, as ``checkpoint_container`` does), and two HTTP monitors on a local
target: ``intranet`` answers, ``shop`` fails (so it goes down). A test cannot wait six hours
for a response-time history, so ``intranet``'s results of the hours before are written into
the database first; everything after comes from the agents. The browser trusts exactly the
test server's certificate key (``--ignore-certificate-errors-spki-list``), not every
certificate. Screenshots at 1366x768 go to ``build/ui-screenshot.png`` (both instances up) and
``build/ui-screenshot-degraded.png`` (one stopped).

The page is also compared with what the collection's ``checkpoint_health`` module concludes
from the same control plane (its own client, ``read_control_plane`` and ``build_report``).

Without Chromium or Playwright the test is skipped, which ``VANTAGE_NO_SKIP=1`` (``make test``)
turns into a failure.
"""

from __future__ import annotations

import base64
import hashlib
import math
import os
import shutil
import sqlite3
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

CHECKPOINT = "sandbox"
HOST_NAME = "vantage-sandbox-host1"
VIEWPORT = {"width": 1366, "height": 768}
TOP = Path(__file__).resolve().parents[2]
BUILD = TOP / "build"


def chromium_path() -> str:
    path = os.environ.get("VANTAGE_CHROMIUM") or shutil.which("chromium") or ""
    if not path:
        pytest.skip("Debian's chromium is not installed (apt-get install chromium; tests/setup/host-prereqs.sh)")
    return path


def spki_pin(cert_pem: Path) -> str:
    """base64(SHA-256(SubjectPublicKeyInfo)) of the first certificate in ``cert_pem``."""
    cert = x509.load_pem_x509_certificate(cert_pem.read_bytes())
    spki = cert.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return base64.b64encode(hashlib.sha256(spki).digest()).decode()


@dataclass
class Sandbox:
    cp: Any
    agents: dict[str, Any]
    viewer_token: str
    monitors: dict[str, str]


def seed_history(db: Path, monitor_id: str, now: float) -> None:
    """Six hours of ``intranet`` results before the test, every five minutes (a few failed)."""
    rows = []
    for n in range(72):
        at = now - 6 * 3600 + n * 300
        ok = n not in (20, 21, 50)
        ms = 18 + 12 * math.sin(n / 6) + (35 if 40 <= n <= 44 else 0)
        rows.append((f"seed-{n}", monitor_id, f"seed-{n}", CHECKPOINT, "sandbox-1" if n % 2 else "sandbox-2",
                     1, ok, None if ok else "HTTP 503 (expected 200)", ms if ok else None, at - ms / 1000, "{}",
                     "{}", at))
    with sqlite3.connect(db, timeout=10) as conn:
        conn.executemany(
            "INSERT INTO results (id, monitor_id, check_id, checkpoint, instance, attempt, ok, error, duration_ms, "
            "started_at, phases_json, details_json, received_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            rows,
        )


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory: pytest.TempPathFactory, pki: Any, e2e: Any, target: Any) -> Iterator[Sandbox]:
    root = tmp_path_factory.mktemp("ui")
    cp = e2e.ControlPlane(root / "cp", pki, heartbeat_interval=1.0, result_margin=2.0)
    cp.start()
    agents: dict[str, Any] = {}
    try:
        cp.api("PUT", f"/api/v1/checkpoints/{CHECKPOINT}", {"description": "the local sandbox pair"})
        for name in ("sandbox-1", "sandbox-2"):
            agents[name] = e2e.AgentProcess(root / name, cp, CHECKPOINT, name, {"VANTAGE_HOST_NAME": HOST_NAME})
            agents[name].start()
        e2e.wait_until(
            lambda: all(i["connected"] and i["version"] for i in cp.health(CHECKPOINT)["instances"])
            and len(cp.health(CHECKPOINT)["instances"]) == 2,
            30,
            "both sandbox instances connected with a heartbeat",
        )
        target.set("shop", "fail")
        monitors = {
            "intranet": cp.create_monitor(CHECKPOINT, "intranet", target.url("intranet"), interval_s=2),
            "shop": cp.create_monitor(CHECKPOINT, "shop", target.url("shop"), interval_s=5),
        }
        seed_history(cp.db_path, monitors["intranet"], time.time())
        e2e.wait_until(lambda: cp.open_alert("monitor_down", monitors["shop"]), 30, "shop down")
        e2e.wait_until(lambda: len(cp.results(monitors["intranet"])) > 72 + 2, 30, "intranet results")
        token = cp.api("POST", "/api/v1/tokens", {"name": "ui-viewer", "scopes": ["read"]})["token"]
        yield Sandbox(cp, agents, token, monitors)
    finally:
        for agent in agents.values():
            agent.stop()
        cp.stop()


@pytest.fixture
def browser_page(sandbox: Sandbox, pki: Any) -> Iterator[tuple[Any, list[str]]]:
    executable = chromium_path()
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is in requirements-dev.txt")
    problems: list[str] = []
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=executable,
            args=[f"--ignore-certificate-errors-spki-list={spki_pin(pki.cert)}"],
        )
        context = browser.new_context(viewport=VIEWPORT)
        page = context.new_page()
        # a CSP violation or a failed sub-resource shows up as a console error
        page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: problems.append(str(e)))
        # (ERR_ABORTED: a load cut short by the next navigation, e.g. the icon; not a failure)
        page.on(
            "requestfailed",
            lambda r: None if r.failure == "net::ERR_ABORTED" else problems.append(f"{r.url}: {r.failure}"),
        )
        try:
            yield page, problems
        finally:
            context.close()
            browser.close()


def instance_row(page: Any, name: str) -> Any:
    return page.locator(f'section[data-checkpoint="{CHECKPOINT}"] tr[data-instance="{name}"]')


def monitor_row(page: Any, monitor_id: str) -> Any:
    return page.locator(f'section[data-checkpoint="{CHECKPOINT}"] tr[data-monitor="{monitor_id}"]')


@pytest.fixture(scope="module")
def health_module(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """The collection's ``checkpoint_health`` logic (module_utils ``_health``), importable here."""
    root = tmp_path_factory.mktemp("collections")
    link = root / "ansible_collections" / "vantage" / "checkpoint"
    link.parent.mkdir(parents=True)
    link.symlink_to(TOP)
    sys.path.insert(0, str(root))
    try:
        from ansible_collections.vantage.checkpoint.plugins.module_utils import _control_plane, _health
    finally:
        sys.path.remove(str(root))
    return _control_plane, _health


def module_report(health_module: Any, cp: Any, pki: Any) -> dict[str, Any]:
    """What ``checkpoint_health`` reports about the sandbox (no local engine: it runs elsewhere)."""
    control_plane, health = health_module
    client = control_plane.ControlPlaneClient(cp.url, cp.admin_token, ca_path=str(pki.ca))
    answer, alerts = health.read_control_plane(client, CHECKPOINT)
    report: dict[str, Any] = health.build_report(CHECKPOINT, cp.url, answer, alerts)
    return report


def assert_page_agrees_with_module(page: Any, report: dict[str, Any]) -> None:
    section = page.locator(f'section[data-checkpoint="{CHECKPOINT}"]')
    assert section.get_attribute("data-state") == report["state"]
    assert (section.locator(".badge.warn", has_text="degraded").count() == 1) is report["degraded"]
    for item in report["instances"]:
        row = instance_row(page, item["name"])
        assert row.get_attribute("data-connected") == str(item["connected"]).lower(), item["name"]
        assert row.get_attribute("data-healthy") == str(item["healthy"]).lower(), item["name"]
        text = row.inner_text()
        assert all(reason in text for reason in item["reasons"] if "s ago" not in reason), item


def test_health_page_in_chromium(
    sandbox: Sandbox, browser_page: tuple[Any, list[str]], e2e: Any, health_module: Any, pki: Any
) -> None:
    page, problems = browser_page
    cp = sandbox.cp
    BUILD.mkdir(exist_ok=True)

    # not logged in: the login form, nothing else
    response = page.goto(cp.url + "/ui")
    assert response is not None and page.url == cp.url + "/ui/login"
    assert page.locator("section[data-checkpoint]").count() == 0

    # a wrong token is refused and shows no data
    page.fill("#token", "vt_wrong-token-for-the-browser-test")
    with page.expect_response(lambda r: r.url.endswith("/ui/login") and r.request.method == "POST") as refused:
        page.click("button[type=submit]")
    assert refused.value.status == 401
    assert page.get_by_role("alert").inner_text() == "Invalid token."
    assert page.locator("section[data-checkpoint]").count() == 0
    assert page.context.cookies() == []
    assert [m for m in problems if "401" not in m] == []  # the browser logs the refused login's 401
    problems.clear()

    # the right token: the page with both instances connected
    page.fill("#token", sandbox.viewer_token)
    page.click("button[type=submit]")
    page.wait_for_url(cp.url + "/ui")
    cookies = page.context.cookies()
    assert [(c["name"], c["httpOnly"], c["secure"], c["sameSite"], c["path"]) for c in cookies] == [
        ("vantage_ui_session", True, True, "Strict", "/ui")
    ]
    assert sandbox.viewer_token not in cookies[0]["value"] and sandbox.viewer_token not in page.url
    section = page.locator(f'section[data-checkpoint="{CHECKPOINT}"]')
    assert section.get_attribute("data-state") == "active"
    assert section.get_attribute("data-healthy") == "true"
    for name in sandbox.agents:
        row = instance_row(page, name)
        assert row.get_attribute("data-connected") == "true", name
        assert "connected" in row.inner_text()
    health = cp.health(CHECKPOINT)
    text = section.inner_text()
    assert "the local sandbox pair" in text and "2 of 2 instances connected" in text
    for inst in health["instances"]:  # the facts the REST view has are on the page
        assert inst["version"] in instance_row(page, inst["name"]).inner_text()
        assert inst["host"]["hostname"] == HOST_NAME  # the host it runs on, as the deployment said
        assert HOST_NAME in instance_row(page, inst["name"]).inner_text()
    assert_page_agrees_with_module(page, module_report(health_module, cp, pki))

    # the monitors: state, last result, error, 24-hour uptime, response-time chart
    listed = {m["id"]: m for m in cp.api("GET", f"/api/v1/monitors?checkpoint={CHECKPOINT}")["monitors"]}
    intranet, shop = monitor_row(page, sandbox.monitors["intranet"]), monitor_row(page, sandbox.monitors["shop"])
    assert intranet.get_attribute("data-state") == "up" and shop.get_attribute("data-state") == "down"
    for monitor_id, monitor in listed.items():  # "down" is the REST view's
        assert monitor_row(page, monitor_id).get_attribute("data-down") == str(monitor["down"]).lower()
    assert "intranet" in intranet.inner_text() and "ok" in intranet.inner_text()
    assert "got 500" in shop.locator(".error-cell").inner_text()
    assert "attempt 2" in shop.inner_text() and "0.00 %" in shop.inner_text()
    uptime = intranet.locator("td").nth(4).inner_text()
    assert "%" in uptime and "3 down" not in uptime  # seeded failures were first attempts: the checks were up
    chart = intranet.locator("svg.chart")
    box = chart.bounding_box()
    assert box is not None and box["width"] >= 250 and box["height"] >= 50
    assert chart.locator("polyline").count() >= 1 and chart.locator("rect.fail").count() >= 2
    line_colour = chart.locator("polyline").first.evaluate("e => getComputedStyle(e).stroke")
    assert line_colour == "rgb(31, 95, 191)"  # styled by ui.css under the CSP
    # the stylesheet applied (no inline style allowed, so this proves /ui/style.css loaded under the CSP)
    badge_color = section.locator(".badge.state-active").evaluate("e => getComputedStyle(e).color")
    assert badge_color == "rgb(26, 127, 55)"
    # readable at 1366x768: nothing wider than the window
    assert page.evaluate("document.documentElement.scrollWidth") <= VIEWPORT["width"]
    page.screenshot(path=str(BUILD / "ui-screenshot.png"), full_page=True)

    # stop one agent: after a reload it is disconnected, the checkpoint still active
    sandbox.agents["sandbox-2"].stop()
    e2e.wait_until(lambda: not cp.instance_connected(CHECKPOINT, "sandbox-2"), 15, "sandbox-2 disconnected")
    page.reload()
    section = page.locator(f'section[data-checkpoint="{CHECKPOINT}"]')
    assert section.get_attribute("data-state") == "active"
    assert section.get_attribute("data-healthy") == "false"
    assert instance_row(page, "sandbox-1").get_attribute("data-connected") == "true"
    stopped = instance_row(page, "sandbox-2")
    assert stopped.get_attribute("data-connected") == "false"
    assert "disconnected" in stopped.inner_text()
    assert "instance sandbox-2 is not connected" in section.inner_text()
    assert "1 of 2 instances connected" in section.inner_text()
    api_view = cp.health(CHECKPOINT)
    assert api_view["state"] == "active" and api_view["healthy"] is False
    report = module_report(health_module, cp, pki)
    assert report["degraded"] is True and report["healthy"] is False
    assert_page_agrees_with_module(page, report)
    page.screenshot(path=str(BUILD / "ui-screenshot-degraded.png"), full_page=True)

    # sign out: back to the form, and the page is closed again
    page.click("header form button[type=submit]")
    page.wait_for_url(cp.url + "/ui/login")
    assert page.context.cookies() == []
    page.goto(cp.url + "/ui")
    assert page.url == cp.url + "/ui/login"
    assert problems == []  # no CSP violation, no failed sub-resource, no script error
