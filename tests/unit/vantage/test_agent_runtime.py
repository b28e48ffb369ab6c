"""The agent's process settings: its event loop, and what it changes once started."""

from __future__ import annotations

import json
import subprocess
import sys


def test_the_event_loop_is_uvloop_where_installed() -> None:
    import uvloop

    from vantage.agent.runtime import event_loop_factory

    factory, name = event_loop_factory()
    assert (factory, name) == (uvloop.new_event_loop, "uvloop")


def test_settling_freezes_start_up_objects_and_collects_the_young_generation_less_often() -> None:
    # In a process of its own: the settings are process-wide.
    code = """
import gc, json
from vantage.agent.runtime import settle_after_start
before = gc.get_threshold()
settle_after_start()
print(json.dumps({"before": before, "after": gc.get_threshold(), "frozen": gc.get_freeze_count()}))
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    figures = json.loads(out)
    assert figures["after"][0] == 10_000 and figures["after"][1:] == figures["before"][1:]
    assert figures["frozen"] > 1000  # modules, functions, configuration: out of the collector's way
