"""The health page in a real browser: Debian's headless Chromium driven by Playwright.

The control plane is the real process over TLS on loopback, with two real ``vantage agent run``
instances of the checkpoint ``sandbox`` (fixtures of conftest.py). The browser trusts exactly
the test server's certificate key (``--ignore-certificate-errors-spki-list``), not every
certificate. Screenshots at 1366x768 go to ``build/ui-screenshot.png`` (both instances up) and
``build/ui-screenshot-degraded.png`` (one stopped).

Without Chromium or Playwright the test is skipped, which ``VANTAGE_NO_SKIP=1`` (``make test``)
turns into a failure.
"""

from __future__ import annotations

import base64
import hashlib
import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

CHECKPOINT = "sandbox"
VIEWPORT = {"width": 1366, "height": 768}
BUILD = Path(__file__).resolve().parents[2] / "build"


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


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory: pytest.TempPathFactory, pki: Any, e2e: Any) -> Iterator[Sandbox]:
    root = tmp_path_factory.mktemp("ui")
    cp = e2e.ControlPlane(root / "cp", pki, heartbeat_interval=1.0)
    cp.start()
    agents: dict[str, Any] = {}
    try:
        cp.api("PUT", f"/api/v1/checkpoints/{CHECKPOINT}", {"description": "the local sandbox pair"})
        for name in ("sandbox-1", "sandbox-2"):
            agents[name] = e2e.AgentProcess(root / name, cp, CHECKPOINT, name)
            agents[name].start()
        e2e.wait_until(
            lambda: all(i["connected"] and i["version"] for i in cp.health(CHECKPOINT)["instances"])
            and len(cp.health(CHECKPOINT)["instances"]) == 2,
            30,
            "both sandbox instances connected with a heartbeat",
        )
        token = cp.api("POST", "/api/v1/tokens", {"name": "ui-viewer", "scopes": ["read"]})["token"]
        yield Sandbox(cp, agents, token)
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


def test_health_page_in_chromium(sandbox: Sandbox, browser_page: tuple[Any, list[str]], e2e: Any) -> None:
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
        assert inst["host"]["hostname"] in instance_row(page, inst["name"]).inner_text()
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
    page.screenshot(path=str(BUILD / "ui-screenshot-degraded.png"), full_page=True)

    # sign out: back to the form, and the page is closed again
    page.click("header form button[type=submit]")
    page.wait_for_url(cp.url + "/ui/login")
    assert page.context.cookies() == []
    page.goto(cp.url + "/ui")
    assert page.url == cp.url + "/ui/login"
    assert problems == []  # no CSP violation, no failed sub-resource, no script error
