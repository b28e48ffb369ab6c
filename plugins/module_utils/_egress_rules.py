# -*- coding: utf-8 -*-

# Copyright (c) Vantage maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The options and the manager of ``egress_rules``; the policy itself is ``_egress`` (standard
library only) and nftables is reached through ``_nft``."""

from __future__ import annotations

import os
import tempfile

from ansible_collections.vantage.checkpoint.plugins.module_utils._egress import (
    DNS_SETS,
    PolicyError,
    ResolveError,
    Ruleset,
    check_settings,
    host_keys_from_listing,
    normalize,
    parse_entries,
    parse_resolvers,
    resolve_hosts,
    strip_expiry,
)
from ansible_collections.vantage.checkpoint.plugins.module_utils._nft import Nft, NftError


RULE_SPEC = dict(
    name=dict(type="str"),
    hosts=dict(type="list", elements="str"),
    cidrs=dict(type="list", elements="str"),
    ports=dict(type="list", elements="raw"),
    protocols=dict(type="list", elements="str", default=["tcp"]),
    family=dict(type="str", default="any"),
    description=dict(type="str"),
)


def argument_spec():
    """The options of ``egress_rules``."""
    return dict(
        rules=dict(type="list", elements="dict", default=[], options=RULE_SPEC),
        resolvers=dict(type="list", elements="str", default=[]),
        interfaces=dict(type="list", elements="str", default=[]),
        table=dict(type="str", default="vantage_egress"),
        host_timeout=dict(type="int", default=3600),
        log_rate=dict(type="str", default="10/minute"),
        allow_empty=dict(type="bool", default=False),
        refresh_only=dict(type="bool", default=False),
        persist_path=dict(type="path"),
        state=dict(type="str", choices=["present", "absent"], default="present"),
    )


class EgressRules(object):
    """The manager of ``egress_rules``: builds the policy, compares it with the live table and
    applies it atomically (``nft -f``), with check mode and diff."""

    def __init__(self, module):
        self.module = module
        self.params = module.params
        self.table = self.params["table"]
        self.result = dict(changed=False, table="inet %s" % self.table)

    def run_command(self, argv, data=None):
        return self.module.run_command(argv, data=data, check_rc=False)

    def fail(self, msg):
        self.module.fail_json(msg=msg, **self.result)

    def nft(self):
        # get_bin_path looks in PATH, then in the sbin directories
        nft = Nft(self.module.get_bin_path("nft"), self.run_command, unshare=self.module.get_bin_path("unshare"))
        nft.probe()
        return nft

    def policy(self):
        """Validate everything before touching anything."""
        problems = []
        for step in (
            lambda: check_settings(self.table, self.params["interfaces"], self.params["log_rate"], self.params["host_timeout"]),
            lambda: parse_resolvers(self.params["resolvers"]),
            lambda: parse_entries([dict((k, v) for k, v in rule.items() if v is not None) for rule in self.params["rules"]]),
        ):
            try:
                step()
            except PolicyError as exc:
                problems.extend(exc.problems)
        if not self.params["rules"] and not self.params["allow_empty"]:
            problems.append("rules is empty: the checkpoint could reach nothing but the resolvers (not even the control plane); "
                            "list the allowed destinations, or set allow_empty: true if that is really wanted")
        if problems:
            self.fail("Invalid egress policy (nothing was changed): %s" % "; ".join(problems))
        entries = parse_entries([dict((k, v) for k, v in rule.items() if v is not None) for rule in self.params["rules"]])
        return entries, parse_resolvers(self.params["resolvers"])

    def write_persist(self, content):
        path = self.params["persist_path"]
        if not path:
            return False
        try:
            with open(path) as handle:
                if handle.read() == content:
                    return False
        except (IOError, OSError):
            pass
        if self.module.check_mode:
            return True
        directory = os.path.dirname(path) or "."
        if not os.path.isdir(directory):
            self.fail("persist_path: the directory %s does not exist" % directory)
        fd, tmp = tempfile.mkstemp(prefix=".vantage-egress-", dir=directory)
        with os.fdopen(fd, "w") as handle:
            handle.write(content)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o640)
        self.module.atomic_move(tmp, path)
        os.chmod(path, 0o640)
        return True

    def absent(self):
        nft = self.nft()
        exists = nft.table_exists(self.table)
        before = strip_expiry(nft.list_text(self.table)) if exists else ""
        if exists:
            self.result["changed"] = True
            if not self.module.check_mode:
                nft.load("delete table inet %s\n" % self.table)
        path = self.params["persist_path"]
        if path and os.path.exists(path):
            self.result["changed"] = True
            if not self.module.check_mode:
                os.unlink(path)
        if self.module._diff:
            self.result["diff"] = dict(before=before, after="")

    def present(self):
        entries, resolvers = self.policy()
        nft = self.nft()
        try:
            resolved = resolve_hosts(entries)
        except ResolveError as exc:
            self.fail("Host names of the egress policy do not resolve; the current rules were left as they are: %s" % exc)
        ruleset = Ruleset(self.table, self.params["interfaces"], entries, resolvers, resolved,
                          host_timeout=self.params["host_timeout"], log_rate=self.params["log_rate"])
        self.result["resolved"] = dict((host, [str(a) for a in addresses]) for host, addresses in resolved.items())
        counts = dict((name, len(elements)) for name, elements in list(ruleset.static.items()) + list(ruleset.hosts.items()))
        for name in DNS_SETS:
            counts[name] = len([a for a in resolvers if name.endswith(str(a.version))])
        self.result["elements"] = counts
        exists = nft.table_exists(self.table)
        live = nft.list_json(self.table) if exists else {}
        hosts_changed = host_keys_from_listing(live, self.table) != ruleset.host_keys()
        self.result["hosts_changed"] = hosts_changed

        if self.params["refresh_only"]:
            if not exists:
                self.fail("table inet %s does not exist: apply the policy first (refresh_only=false)" % self.table)
            self.result["changed"] = hosts_changed
            if self.module._diff:
                before = host_keys_from_listing(live, self.table)
                after = ruleset.host_keys()
                self.result["diff"] = dict(
                    before="".join("%s %s . %d-%d\n" % ((name,) + key) for name in sorted(before) for key in sorted(before[name])),
                    after="".join("%s %s . %d-%d\n" % ((name,) + key) for name in sorted(after) for key in sorted(after[name])),
                )
            if not self.module.check_mode:
                nft.load(ruleset.refresh_script())
            return

        script = ruleset.load_script()
        after_text, after_json = nft.canonical(script, self.table)
        before_text = strip_expiry(nft.list_text(self.table)) if exists else ""
        self.result["ruleset"] = strip_expiry(after_text)
        rules_changed = not exists or normalize(live, self.table) != normalize(after_json, self.table)
        if not self.module.check_mode:
            if rules_changed:
                nft.check(script)
                nft.load(script)
            else:
                # Same rules: refill the host-name sets, which also restarts their elements' timeouts.
                nft.load(ruleset.refresh_script())
        persisted = self.write_persist(script)
        self.result["changed"] = rules_changed or hosts_changed or persisted
        if self.module._diff:
            self.result["diff"] = dict(before=before_text, after=self.result["ruleset"])

    def run(self):
        try:
            if self.params["state"] == "absent":
                self.absent()
            else:
                self.present()
        except NftError as exc:
            self.fail(str(exc))
        self.module.exit_json(**self.result)
