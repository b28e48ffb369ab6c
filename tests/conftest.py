"""Shared pytest settings for the whole test tree."""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest


def docker_available() -> bool:
    """True when a Docker engine answers on this machine."""
    if shutil.which("docker") is None:
        return False
    probe = subprocess.run(["docker", "info"], capture_output=True, check=False, timeout=30)
    return probe.returncode == 0


def pytest_configure(config: pytest.Config) -> None:
    # `make test` sets VANTAGE_REQUIRE_DOCKER=1: there a missing engine is a failure, never a
    # reason to skip the container tests and report green.
    if os.environ.get("VANTAGE_REQUIRE_DOCKER") == "1" and not docker_available():
        raise pytest.UsageError("VANTAGE_REQUIRE_DOCKER=1 but no Docker engine answers (run `make engine`)")
