# -*- coding: utf-8 -*-

# Copyright (c) Vantage maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The egress policy of a Windows checkpoint as HNS endpoint ACLs, and the probe that proves it.

The Windows Firewall does not filter the traffic of containers on a ``nat`` network (Microsoft,
*Network isolation and security*: Windows Server containers default to "outbound: allow all", port
ACLs being enforced by VFP through the Host Networking Service). So the policy the ``egress_firewall``
role derives - control plane, registry, revocation endpoints, resolvers, targets, validated by
``_egress`` exactly as for the nftables table - is rendered here as the ACL policies of HNS
endpoints (``hcsshim``'s ``ACLPolicy``: ``Type``, ``Action``, ``Direction``, ``Protocols``,
``RemoteAddresses``, ``RemotePorts``, ``RuleType``, ``Priority``; lower priority values win):
an allow rule per entry and protocol, then a block of everything outbound.

:func:`render` writes one document for the reconciler on the host (``vantage-egress.ps1``), which
applies it to every endpoint of the checkpoint's network whenever an endpoint is (re)created. Host
names cannot be put in an ACL: the document carries a template per name whose addresses the
reconciler resolves on the host - at every apply and on its refresh schedule - the way the Linux
timer refills its sets.

After every apply the reconciler runs :data:`PROBE_SOURCE` inside each instance with the image's
Python (``docker exec``): a destination the policy allows must answer, and destinations outside it
(the link-local metadata address, a documentation-range address, the control plane's own address on
a port the policy does not open) must not. :func:`judge_probe` reads the probe's answer the same way
on the controller; a leak stops the instance and fails the play, naming the instance and the probe.
"""

from __future__ import annotations

import base64
import json

from ansible_collections.vantage.checkpoint.plugins.module_utils import _egress

DOCUMENT_VERSION = 1
PROTOCOL_NUMBERS = {"tcp": "6", "udp": "17"}
#: lower values win; every allow rule gets its own value above ALLOW_BASE, the block comes last
ALLOW_BASE = 100
DNS_BASE = 2000
HOST_BASE = 3000
BLOCK_PRIORITY = 65000
#: destinations outside any policy that an instance must not reach, probed after every apply
DENIED_PROBES = (("metadata", "169.254.169.254", 80), ("documentation range", "192.0.2.1", 443))
#: a port to try on the control plane's own address; the first one the policy does not open is used
CLOSED_PORT_CANDIDATES = (9, 7, 13, 19, 1)
PROBE_TIMEOUT = 5
#: the checkpoint image's Python (images/checkpoint/Dockerfile.windows)
IMAGE_PYTHON = "C:\\vantage\\venv\\Scripts\\python.exe"

EXIT_OK = 0
EXIT_LEAK = 3
EXIT_UNREACHABLE = 4

#: Run inside an instance: ``python -c BOOTSTRAP <source, base64> <arguments, base64 JSON>``.
BOOTSTRAP = "import base64,sys;exec(base64.b64decode(sys.argv[1]).decode())"

PROBE_SOURCE = '''
import base64, json, socket, sys

def attempt(host, port, timeout):
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return "connected"
    except ConnectionRefusedError:
        return "refused"
    except socket.timeout:
        return "timeout"
    except OSError as exc:
        return "error %s" % (exc.errno if exc.errno is not None else type(exc).__name__)

args = json.loads(base64.b64decode(sys.argv[2]).decode())
allowed = [dict(name=n, target="%s:%d" % (h, p), result=attempt(h, p, args["timeout"])) for n, h, p in args["allowed"]]
denied = [dict(name=n, target="%s:%d" % (h, p), result=attempt(h, p, args["timeout"])) for n, h, p in args["denied"]]
# an answer of any kind (a connection, or a refusal sent back) means the packets went through
leaks = [d for d in denied if d["result"] in ("connected", "refused")]
unreachable = [a for a in allowed if a["result"] != "connected"]
print(json.dumps(dict(allowed=allowed, denied=denied, leaks=leaks, unreachable=unreachable), sort_keys=True))
sys.exit(3 if leaks else 4 if unreachable else 0)
'''


class EgressError(ValueError):
    """The policy cannot be rendered; ``problems`` names each entry."""

    def __init__(self, problems):
        self.problems = list(problems)
        super(EgressError, self).__init__("; ".join(self.problems))


def acl(action, protocol=None, addresses=None, ports=None, priority=BLOCK_PRIORITY):
    """One HNS ACL policy (outbound, enforced in the virtual switch)."""
    policy = {"Type": "ACL", "Action": action, "Direction": "Out", "RuleType": "Switch", "Priority": priority}
    if protocol:
        policy["Protocols"] = PROTOCOL_NUMBERS[protocol]
    if addresses:
        policy["RemoteAddresses"] = ",".join(addresses)
    if ports:
        policy["RemotePorts"] = ",".join(ports)
    return policy


def port_text(low, high):
    return str(low) if low == high else "%d-%d" % (low, high)


def _ipv4(networks):
    """The IPv4 networks as HNS reads them: an address alone, or a CIDR."""
    return [str(n.network_address) if n.prefixlen == n.max_prefixlen else str(n)
            for n in sorted(networks, key=lambda n: (n.version, n.network_address, n.prefixlen)) if n.version == 4]


def render(rules, resolvers, checkpoint, network, host_timeout=3600):
    """The reconciler's document for a policy the ``egress_firewall`` role derived (see the module docstring).

    ``rules`` and ``resolvers`` are validated by ``_egress`` (every problem at once, :class:`EgressError`).
    The ``nat`` network carries IPv4 only: IPv6 destinations are left out and reported in ``skipped``.
    """
    problems = []
    try:
        entries = _egress.parse_entries(rules)
    except _egress.PolicyError as exc:
        problems.extend(exc.problems)
        entries = []
    try:
        dns = _egress.parse_resolvers(resolvers)
    except _egress.PolicyError as exc:
        problems.extend(exc.problems)
        dns = []
    if not rules:
        problems.append("the policy is empty: the checkpoint could reach nothing but its resolvers, not even the control plane")
    if problems:
        raise EgressError(problems)
    acls = []
    hosts = []
    skipped = []
    for entry in entries:
        ports = [port_text(low, high) for low, high in entry.ports]
        addresses = _ipv4(entry.networks)
        skipped.extend("%s: %s" % (entry.name, n) for n in entry.networks if n.version == 6)
        for protocol in entry.protocols:
            if addresses:
                acls.append(acl("Allow", protocol, addresses, ports, ALLOW_BASE + len(acls)))
            for host in entry.hosts:
                if 4 not in entry.families():
                    skipped.append("%s: %s (IPv6 only)" % (entry.name, host))
                    continue
                hosts.append({"entry": entry.name, "host": host,
                              "acl": acl("Allow", protocol, None, ports, HOST_BASE + len(hosts))})
    probe = probe_plan(entries)
    resolver_addresses = [str(a) for a in dns if a.version == 4]
    skipped.extend("resolver %s" % a for a in dns if a.version == 6)
    dns_rules = [acl("Allow", protocol, resolver_addresses, ["53"], DNS_BASE + index)
                 for index, protocol in enumerate(sorted(PROTOCOL_NUMBERS)) if resolver_addresses]
    return {
        "version": DOCUMENT_VERSION,
        "checkpoint": checkpoint,
        "network": network,
        "acls": acls + dns_rules,
        "hosts": hosts,
        # the DNS servers HNS gave each endpoint (Docker's, from the host) are allowed on port 53 as on Linux,
        # where Docker's embedded DNS forwards from the host's own namespace
        "endpoint_dns": [acl("Allow", protocol, None, ["53"], DNS_BASE + 10 + index)
                         for index, protocol in enumerate(sorted(PROTOCOL_NUMBERS))],
        "block": acl("Block"),
        "host_timeout": int(host_timeout),
        "probe": probe,
        "probe_argv": probe_argv(probe),
        "skipped": sorted(set(skipped)),
    }


def _opens(entry, port):
    return any(low <= port <= high for low, high in entry.ports) and "tcp" in entry.protocols


def probe_plan(entries):
    """What the probe tries from inside an instance: the control plane must answer, the rest must not."""
    control = [entry for entry in entries if entry.name == "control-plane"]
    if not control:
        raise EgressError(["the policy has no control-plane entry, so no allowed destination can be probed"])
    entry = control[0]
    target = (entry.hosts or [str(n.network_address) for n in entry.networks])[0]
    allowed = [["control plane", target, entry.ports[0][0]]]
    denied = [[name, address, port] for name, address, port in DENIED_PROBES]
    closed = [port for port in CLOSED_PORT_CANDIDATES if not any(_opens(e, port) for e in entries)]
    if closed:
        denied.append(["control plane on a port the policy does not open", target, closed[0]])
    return {"allowed": allowed, "denied": denied, "timeout": PROBE_TIMEOUT}


def probe_argv(plan, python=IMAGE_PYTHON):
    """The ``docker exec`` arguments (after the container) that run the probe with the image's Python."""
    source = base64.b64encode(PROBE_SOURCE.encode("utf-8")).decode("ascii")
    arguments = base64.b64encode(json.dumps(plan, sort_keys=True).encode("utf-8")).decode("ascii")
    return [python, "-c", BOOTSTRAP, source, arguments]


def judge_probe(instance, answer):
    """Reasons (empty: proven) from one probe run in ``instance`` (``{"rc", "stdout", "stderr"}``)."""
    lines = [line for line in str(answer.get("stdout") or "").splitlines() if line.strip()]
    try:
        report = json.loads(lines[-1]) if lines else None
    except ValueError:
        report = None
    if not isinstance(report, dict):
        return ["instance %s: the egress probe did not run (exit %s): %s" % (
            instance, answer.get("rc"), (str(answer.get("stderr") or "") or str(answer.get("stdout") or ""))[-300:].strip())]
    reasons = []
    for leak in report.get("leaks") or []:
        reasons.append("instance %s reached %s (%s): %s is outside the egress policy" % (
            instance, leak.get("target"), leak.get("result"), leak.get("name")))
    for miss in report.get("unreachable") or []:
        reasons.append("instance %s cannot reach %s (%s): %s, which the policy allows" % (
            instance, miss.get("target"), miss.get("result"), miss.get("name")))
    if not reasons and answer.get("rc") != EXIT_OK:
        reasons.append("instance %s: the egress probe exited %s" % (instance, answer.get("rc")))
    return reasons


def judge_report(report, instances):
    """Reasons from the reconciler's report (``vantage-egress.ps1 -Once -Verify``): every listed instance must
    have had its endpoint's ACLs applied and its probe pass; a leaking instance has been stopped by then."""
    if not isinstance(report, dict):
        return ["the egress reconciler printed no report"]
    reasons = ["the egress reconciler: %s" % error for error in report.get("errors") or []]
    by_name = dict((item.get("container"), item) for item in report.get("endpoints") or [] if isinstance(item, dict))
    for instance, container in instances:
        item = by_name.get(container)
        if item is None:
            reasons.append("instance %s: no endpoint of container %s was found on the checkpoint's network, so its "
                           "egress is not proven" % (instance, container))
            continue
        if not item.get("acls"):
            reasons.append("instance %s: its endpoint has no egress ACLs" % instance)
        probe = item.get("probe")
        if probe is None:
            reasons.append("instance %s: the egress probe did not run" % instance)
        else:
            reasons.extend(judge_probe(instance, probe))
        if item.get("stopped"):
            reasons.append("instance %s was stopped by the reconciler" % instance)
    return reasons
