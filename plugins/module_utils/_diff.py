# -*- coding: utf-8 -*-

# Copyright (c) Vantage maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Collects before/after values of what a module manages, for C(diff) output and ``changed``."""

from __future__ import annotations


class DifferenceTracker:
    """Remembers each tracked item's value before and after the module's run.

    Only values safe to show belong here (key ids, modes, owners — never key material or tokens).
    """

    def __init__(self):
        self._items = []

    def add(self, name, before=None, after=None):
        """Track ``name``; replaces an earlier entry of the same name."""
        self._items = [item for item in self._items if item[0] != name]
        self._items.append((name, before, after))

    def set_after(self, name, after):
        """Update the after value of an item tracked before."""
        self._items = [(n, b, after if n == name else a) for n, b, a in self._items]

    def has_differences(self):
        return any(before != after for dummy, before, after in self._items)

    def differences(self):
        """The names whose values differ, in the order they were added."""
        return [name for name, before, after in self._items if before != after]

    def get_before_after(self):
        """``(before, after)`` dictionaries of every tracked item."""
        before = dict((name, value) for name, value, dummy in self._items)
        after = dict((name, value) for name, dummy, value in self._items)
        return before, after

    def diff(self):
        """The C(diff) result value."""
        before, after = self.get_before_after()
        return {"before": before, "after": after}
