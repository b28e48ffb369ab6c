"""Shared pytest settings for the whole test tree."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Generator

import pytest

#: Set by `make test`: every prerequisite is installed there, so a skipped test is a failure.
NO_SKIP = os.environ.get("VANTAGE_NO_SKIP") == "1"


def docker_available() -> bool:
    """True when a Docker engine answers on this machine."""
    if shutil.which("docker") is None:
        return False
    probe = subprocess.run(["docker", "info"], capture_output=True, check=False, timeout=30)
    return probe.returncode == 0


def pytest_configure(config: pytest.Config) -> None:
    if NO_SKIP and not docker_available():
        raise pytest.UsageError("VANTAGE_NO_SKIP=1 but no Docker engine answers (run `make engine`)")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Generator[None, None, None]:
    """Under VANTAGE_NO_SKIP=1 a skip never counts as a pass: it is reported as a failure."""
    outcome = yield
    report = outcome.get_result()  # type: ignore[attr-defined]
    if NO_SKIP and report.skipped and not hasattr(report, "wasxfail"):
        report.outcome = "failed"
        report.longrepr = f"skipped under VANTAGE_NO_SKIP=1 (make test installs every prerequisite): {report.longrepr}"
