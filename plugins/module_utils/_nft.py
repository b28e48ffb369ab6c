# -*- coding: utf-8 -*-

# Copyright (c) Vantage maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Runs C(nft): list a table, check and load rulesets, canonicalize a ruleset in a scratch namespace.

Standard library only, and no import of the rest of the collection (the egress_firewall role
copies it to the host for the refresh timer). The command runner is injected: modules pass
``module.run_command``, the refresh script a small C(subprocess) wrapper; both take
``(argv, data=None)`` and return ``(rc, stdout, stderr)``.
"""

from __future__ import annotations

import json
import os
import tempfile

INSTALL_HINT = "install the nftables package (Debian/Ubuntu: apt-get install nftables; RHEL family: dnf install nftables)"
SEPARATOR = "--- vantage-egress json ---"


class NftError(Exception):
    """C(nft) failed; the message says what happened and, where known, what to do."""


def explain(stderr):
    """A clear message for the errors that mean nft cannot work on this host at all."""
    text = (stderr or "").strip()
    lowered = text.lower()
    if "operation not supported" in lowered or "protocol not supported" in lowered or "address family not supported" in lowered:
        return ("the kernel has no nf_tables support (%s): load the nf_tables module (modprobe nf_tables) or use a kernel "
                "built with CONFIG_NF_TABLES and CONFIG_NF_TABLES_INET" % text)
    if "operation not permitted" in lowered or "permission denied" in lowered:
        return "nft was refused (%s): it needs root (CAP_NET_ADMIN); run the task with become: true" % text
    return text or "nft failed without a message"


class Nft(object):
    """The C(nft) command at ``path``, run through ``run(argv, data=None) -> (rc, out, err)``."""

    def __init__(self, path, run, unshare=None):
        if not path:
            raise NftError("the nft command was not found: " + INSTALL_HINT)
        self.path = path
        self.run = run
        self.unshare = unshare

    def _call(self, args, data=None, what="nft"):
        rc, out, err = self.run([self.path] + list(args), data=data)
        if rc != 0:
            raise NftError("%s failed: %s" % (what, explain(err)))
        return out

    def probe(self):
        """Fail early, with what to install or enable, when nf_tables cannot be used."""
        self._call(["list", "tables"], what="nft list tables")

    def table_exists(self, table):
        out = self._call(["-j", "list", "tables"], what="nft -j list tables")
        for item in json.loads(out or "{}").get("nftables", []):
            value = item.get("table")
            if value and value.get("family") == "inet" and value.get("name") == table:
                return True
        return False

    def list_json(self, table):
        return json.loads(self._call(["-j", "list", "table", "inet", table], what="nft -j list table inet %s" % table))

    def list_text(self, table):
        return self._call(["-s", "list", "table", "inet", table], what="nft -s list table inet %s" % table)

    def _with_file(self, script, args, what):
        fd, path = tempfile.mkstemp(prefix="vantage-egress-", suffix=".nft")
        try:
            with os.fdopen(fd, "w") as handle:
                handle.write(script)
            return self._call(list(args) + [path], what=what)
        finally:
            os.unlink(path)

    def check(self, script):
        """``nft -c -f``: the kernel validates the whole transaction and nothing is applied."""
        self._with_file(script, ["-c", "-f"], "checking the ruleset (nft -c -f)")

    def load(self, script):
        """``nft -f``: one transaction; when it fails nothing of it is applied."""
        self._with_file(script, ["-f"], "loading the ruleset (nft -f)")

    def canonical(self, script, table):
        """Load ``script`` in a new, empty network namespace and list the table there.

        Returns ``(text, listing)``: the text of ``nft -s list table`` and the parsed ``nft -j``
        listing, formatted by nft exactly as the live table is, so the two can be compared.
        """
        if not self.unshare:
            raise NftError("the unshare command (util-linux) was not found; it is needed to compare rulesets")
        fd, path = tempfile.mkstemp(prefix="vantage-egress-", suffix=".nft")
        try:
            with os.fdopen(fd, "w") as handle:
                handle.write(script)
            shell = ('"$1" -f "$2" && "$1" -s list table inet "$3" && echo "%s" && "$1" -j list table inet "$3"' % SEPARATOR)
            rc, out, err = self.run([self.unshare, "--net", "--", "/bin/sh", "-c", shell, "sh", self.path, path, table])
        finally:
            os.unlink(path)
        if rc != 0:
            raise NftError("the ruleset does not load in a scratch network namespace (unshare --net): %s" % explain(err))
        text, dummy, listing = out.partition(SEPARATOR)
        return text.strip() + "\n", json.loads(listing)
