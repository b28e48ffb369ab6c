"""Settings for the unit tests of the ``vantage`` package."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping

import pytest


def pytest_asyncio_loop_factories(config: pytest.Config, item: pytest.Item) -> Mapping[str, Callable[[], asyncio.AbstractEventLoop]]:
    """Tests marked ``both_event_loops`` run on asyncio's event loop and again on uvloop's.

    The agent runs its checks on uvloop (see ``vantage.agent.runtime``), the control plane and
    every other test on asyncio's loop; the connection code of the checks must behave the same on
    both (errors, half-closed connections, TLS upgrades).
    """
    if item.get_closest_marker("both_event_loops") is None:
        return {"asyncio": asyncio.new_event_loop}
    import uvloop

    return {"asyncio": asyncio.new_event_loop, "uvloop": uvloop.new_event_loop}
