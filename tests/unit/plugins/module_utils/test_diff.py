# Copyright (c) Vantage maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

from ansible_collections.vantage.checkpoint.plugins.module_utils._diff import DifferenceTracker


def test_tracker_reports_differences_and_before_after():
    tracker = DifferenceTracker()
    tracker.add("key_id", "a", "a")
    assert not tracker.has_differences() and tracker.differences() == []
    tracker.add("mode", "0644", "0600")
    assert tracker.has_differences() and tracker.differences() == ["mode"]
    tracker.add("mode", "0600", "0600")  # replaces the earlier entry
    assert not tracker.has_differences()
    tracker.set_after("key_id", "b")
    assert tracker.diff() == {"before": {"key_id": "a", "mode": "0600"}, "after": {"key_id": "b", "mode": "0600"}}
