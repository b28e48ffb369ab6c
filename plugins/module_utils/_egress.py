# -*- coding: utf-8 -*-

# Copyright (c) Vantage maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The egress policy: validation, host name resolution, set elements and the nftables ruleset text.

Standard library only, and no import of the rest of the collection: the egress_firewall role
also copies this file (with C(_nft.py)) to the host, where the refresh timer's script uses it
without Ansible.

The ruleset (one table of its own, ``inet vantage_egress`` by default, see docs/egress.md)::

    table inet vantage_egress {
        set allow4_tcp { type ipv4_addr . inet_service; flags interval; elements = {...} }   # CIDRs, IPs
        set hosts4_tcp { type ipv4_addr . inet_service; flags interval,timeout; timeout 1h }  # host names
        ... the same for udp and ipv6, and dns4 / dns6 (the resolvers) ...
        chain forward { type filter hook forward priority -5; policy accept;
                        iifname { "vtg-..." } jump egress }
        chain egress { ct state established,related accept; DNS to the resolvers; the sets;
                       the sets again on the original destination of DNATed connections;
                       limit rate ... log prefix "vantage-egress drop: "; counter drop }
    }
"""

from __future__ import annotations

import ipaddress
import json
import re
import socket

PROTOCOLS = ("tcp", "udp")
FAMILIES = ("ipv4", "ipv6", "any")
LOG_PREFIX = "vantage-egress drop: "
ENTRY_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,62}$")
HOST_NAME = re.compile(r"^(?=.{1,253}\.?$)([A-Za-z0-9_]([A-Za-z0-9_-]{0,61}[A-Za-z0-9])?)(\.[A-Za-z0-9_]([A-Za-z0-9_-]{0,61}[A-Za-z0-9])?)*\.?$")
TABLE_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,31}$")
INTERFACE_NAME = re.compile(r"^[A-Za-z0-9_.:-]{1,15}$")
RATE = re.compile(r"^[1-9][0-9]*/(second|minute|hour|day)$")


class PolicyError(Exception):
    """The policy is invalid; ``problems`` lists every problem, each naming its entry."""

    def __init__(self, problems):
        self.problems = list(problems)
        super(PolicyError, self).__init__("; ".join(self.problems))


class ResolveError(Exception):
    """Host names that did not resolve; ``problems`` names each entry and host."""

    def __init__(self, problems):
        self.problems = list(problems)
        super(ResolveError, self).__init__("; ".join(self.problems))


def set_name(kind, family, proto=None):
    """``allow4_tcp``, ``hosts6_udp``, ``dns4``..."""
    return "%s%d%s" % (kind, family, "_" + proto if proto else "")


STATIC_SETS = [set_name("allow", f, p) for f in (4, 6) for p in PROTOCOLS]
HOST_SETS = [set_name("hosts", f, p) for f in (4, 6) for p in PROTOCOLS]
DNS_SETS = [set_name("dns", f) for f in (4, 6)]


# ----------------------------------------------------------------------------- validation


def parse_port(value):
    """``443``, ``"443"`` or ``"8000-8100"`` → ``(low, high)``; raises ValueError."""
    if isinstance(value, bool):
        raise ValueError("not a port")
    if isinstance(value, int):
        low = high = value
    else:
        text = str(value).strip()
        match = re.match(r"^([0-9]{1,5})(?:-([0-9]{1,5}))?$", text)
        if not match:
            raise ValueError("not a port or port range")
        low = int(match.group(1))
        high = int(match.group(2) or low)
    if not (1 <= low <= 65535 and 1 <= high <= 65535):
        raise ValueError("ports are 1-65535")
    if low > high:
        raise ValueError("the range is reversed")
    return low, high


def _as_list(value):
    if value is None:
        return []
    if isinstance(value, (list, tuple)):
        return list(value)
    return [value]


class Entry(object):
    """One named entry of the policy, validated."""

    def __init__(self, name, hosts, networks, ports, protocols, family):
        self.name = name
        self.hosts = hosts  # host names, resolved on every run and by the refresh timer
        self.networks = networks  # ip_network objects: CIDRs and IP literals (static)
        self.ports = ports  # [(low, high)]
        self.protocols = protocols
        self.family = family

    def families(self):
        return {"ipv4": (4,), "ipv6": (6,), "any": (4, 6)}[self.family]


def parse_entries(rules):
    """Validate every entry; returns ``[Entry]`` or raises PolicyError listing all problems."""
    problems = []
    entries = []
    seen = set()
    for index, raw in enumerate(_as_list(rules)):
        where = "rules[%d]" % index
        if not isinstance(raw, dict):
            problems.append("%s: must be a dictionary with name, hosts and/or cidrs, ports, protocols" % where)
            continue
        name = raw.get("name")
        if not isinstance(name, str) or not ENTRY_NAME.match(name):
            problems.append("%s: name must match %s (got %r)" % (where, ENTRY_NAME.pattern, name))
            name = where
        else:
            where = "%s (%s)" % (where, name)
            if name in seen:
                problems.append("%s: the name is used twice" % where)
            seen.add(name)
        unknown = sorted(set(raw) - {"name", "hosts", "cidrs", "ports", "protocols", "family", "description"})
        if unknown:
            problems.append("%s: unknown key(s) %s" % (where, ", ".join(unknown)))
        hosts = []
        networks = []
        address_problems = len(problems)
        for host in _as_list(raw.get("hosts")):
            host_text = str(host).strip()
            try:
                networks.append(ipaddress.ip_network(host_text))
                continue
            except ValueError:
                pass
            if not HOST_NAME.match(host_text) or re.match(r"^[0-9.]+$", host_text):
                problems.append("%s: invalid host %r (a host name or an IP address)" % (where, host))
            else:
                hosts.append(host_text.rstrip(".").lower())
        for cidr in _as_list(raw.get("cidrs")):
            try:
                networks.append(ipaddress.ip_network(str(cidr).strip()))
            except ValueError as exc:
                problems.append("%s: invalid CIDR %r: %s" % (where, cidr, exc))
        if not hosts and not networks and len(problems) == address_problems:
            problems.append("%s: needs at least one host or CIDR" % where)
        ports = []
        raw_ports = _as_list(raw.get("ports"))
        if not raw_ports:
            problems.append("%s: needs at least one port" % where)
        for port in raw_ports:
            try:
                ports.append(parse_port(port))
            except ValueError as exc:
                problems.append("%s: invalid port %r: %s" % (where, port, exc))
        protocols = _as_list(raw.get("protocols")) or ["tcp"]
        bad = [p for p in protocols if p not in PROTOCOLS]
        if bad:
            problems.append("%s: invalid protocol(s) %s (choose from tcp, udp)" % (where, ", ".join(repr(p) for p in bad)))
        family = raw.get("family") or "any"
        if family not in FAMILIES:
            problems.append("%s: invalid family %r (choose from ipv4, ipv6, any)" % (where, family))
        else:
            wrong = [str(n) for n in networks if (n.version == 4 and family == "ipv6") or (n.version == 6 and family == "ipv4")]
            if wrong:
                problems.append("%s: %s do not belong to family %s" % (where, ", ".join(wrong), family))
        entries.append(Entry(name, sorted(set(hosts)), networks, ports, sorted(set(protocols)), family))
    if problems:
        raise PolicyError(problems)
    return entries


def parse_resolvers(resolvers):
    """The resolvers' IP addresses; raises PolicyError naming each bad one."""
    problems = []
    addresses = []
    for index, value in enumerate(_as_list(resolvers)):
        try:
            addresses.append(ipaddress.ip_address(str(value).strip()))
        except ValueError:
            problems.append("resolvers[%d]: %r is not an IP address" % (index, value))
    if problems:
        raise PolicyError(problems)
    return sorted(set(addresses), key=lambda a: (a.version, a))


def check_settings(table, interfaces, log_rate, host_timeout):
    problems = []
    if not TABLE_NAME.match(table or ""):
        problems.append("table: %r is not a valid table name (%s)" % (table, TABLE_NAME.pattern))
    if not interfaces:
        problems.append("interfaces: name at least one interface (the checkpoint network's bridge)")
    for name in interfaces:
        if not INTERFACE_NAME.match(name or ""):
            problems.append("interfaces: %r is not a valid interface name (at most 15 characters)" % (name,))
    if not RATE.match(log_rate or ""):
        problems.append("log_rate: %r must look like 10/minute (per second, minute, hour or day)" % (log_rate,))
    if not isinstance(host_timeout, int) or isinstance(host_timeout, bool) or host_timeout < 60:
        problems.append("host_timeout: %r must be at least 60 (seconds)" % (host_timeout,))
    if problems:
        raise PolicyError(problems)


# ----------------------------------------------------------------------------- resolution


def resolve_hosts(entries, getaddrinfo=None):
    """``{host: [ip_address]}`` for every host name of the policy; raises ResolveError naming entry and host."""
    getaddrinfo = getaddrinfo or socket.getaddrinfo
    resolved = {}
    problems = []
    for entry in entries:
        for host in entry.hosts:
            if host in resolved:
                continue
            try:
                infos = getaddrinfo(host, None, 0, socket.SOCK_STREAM)
            except (socket.gaierror, OSError, UnicodeError) as exc:
                problems.append("%s: host %s does not resolve: %s" % (entry.name, host, exc))
                continue
            addresses = set()
            for info in infos:
                try:
                    addresses.add(ipaddress.ip_address(info[4][0].split("%")[0]))
                except ValueError:
                    continue
            if not addresses:
                problems.append("%s: host %s resolves to no IP address" % (entry.name, host))
                continue
            resolved[host] = sorted(addresses, key=lambda a: (a.version, a))
    if problems:
        raise ResolveError(problems)
    return resolved


# ----------------------------------------------------------------------------- elements


def _merge_ranges(ranges):
    merged = []
    for low, high in sorted(ranges):
        if merged and low <= merged[-1][1] + 1:
            merged[-1] = (merged[-1][0], max(merged[-1][1], high))
        else:
            merged.append((low, high))
    return tuple(merged)


def disjoint(items):
    """``[(network, low, high)]`` → the same address/port space as non-overlapping elements.

    nftables refuses overlapping elements in an interval set (``File exists`` for concatenations,
    ``conflicting intervals`` otherwise). CIDRs are either nested or disjoint, so the space is
    cut into pieces that each lie in a fixed group of the given networks; every piece gets the
    union of their port ranges, and pieces with the same ports are collapsed again.
    """
    ports = {}
    for network, low, high in items:
        ports.setdefault(network, []).append((low, high))
    networks = sorted(ports, key=lambda n: (n.version, n.prefixlen, n.network_address))
    by_ports = {}
    for network in networks:
        # ports of this network and of every network containing it
        own = []
        for other in networks:
            if other.version == network.version and network.subnet_of(other):
                own.extend(ports[other])
        own = _merge_ranges(own)
        pieces = [network]
        for inner in networks:
            if inner == network or inner.version != network.version or not inner.subnet_of(network):
                continue
            next_pieces = []
            for piece in pieces:
                if inner.subnet_of(piece):
                    next_pieces.extend(piece.address_exclude(inner))
                else:
                    next_pieces.append(piece)
            pieces = next_pieces
        by_ports.setdefault(own, []).extend(pieces)
    result = []
    for own, pieces in by_ports.items():
        for network in ipaddress.collapse_addresses(pieces) if pieces else []:
            for low, high in own:
                result.append((network, low, high))
    return sorted(result, key=lambda e: (e[0].version, e[0].network_address, e[0].prefixlen, e[1], e[2]))


def build_elements(entries, resolved):
    """``(static, hosts)``: ``{set name: [(network, low, high)]}`` for the allow and hosts sets."""
    static = dict((name, []) for name in STATIC_SETS)
    dynamic = dict((name, []) for name in HOST_SETS)
    for entry in entries:
        for proto in entry.protocols:
            for network in entry.networks:
                for low, high in entry.ports:
                    static[set_name("allow", network.version, proto)].append((network, low, high))
            for host in entry.hosts:
                for address in resolved.get(host, []):
                    if address.version not in entry.families():
                        continue
                    network = ipaddress.ip_network(address)
                    for low, high in entry.ports:
                        dynamic[set_name("hosts", address.version, proto)].append((network, low, high))
    return (dict((k, disjoint(v)) for k, v in static.items()), dict((k, disjoint(v)) for k, v in dynamic.items()))


def element_text(element):
    network, low, high = element
    address = str(network.network_address) if network.prefixlen == network.max_prefixlen else str(network)
    return "%s . %s" % (address, low if low == high else "%d-%d" % (low, high))


def element_key(element):
    network, low, high = element
    return (str(network), low, high)


# ----------------------------------------------------------------------------- ruleset


class Ruleset(object):
    """The desired table: built from a validated policy and the resolved host names."""

    def __init__(self, table, interfaces, entries, resolvers, resolved, host_timeout=3600, log_rate="10/minute"):
        self.table = table
        self.interfaces = sorted(set(interfaces))
        self.entries = entries
        self.resolvers = resolvers
        self.host_timeout = host_timeout
        self.log_rate = log_rate
        self.static, self.hosts = build_elements(entries, resolved)

    def host_keys(self):
        """``{set name: set of (network, low, high) keys}`` of the host-name sets."""
        return dict((name, set(element_key(e) for e in elements)) for name, elements in self.hosts.items())

    def _set(self, name, type_, flags, elements, timeout=None):
        lines = ["\tset %s {" % name, "\t\ttype %s" % type_]
        if flags:
            lines.append("\t\tflags %s" % ",".join(flags))
        if timeout:
            lines.append("\t\ttimeout %ds" % timeout)
        if elements:
            lines.append("\t\telements = { %s }" % (",\n\t\t\t     ".join(elements)))
        lines.append("\t}")
        return lines

    def render(self):
        """The table definition (without the lines that replace an existing one)."""
        lines = ["table inet %s {" % self.table]
        for family in (4, 6):
            addr_type = "ipv%d_addr" % family
            for proto in PROTOCOLS:
                name = set_name("allow", family, proto)
                lines += self._set(name, addr_type + " . inet_service", ["interval"], [element_text(e) for e in self.static[name]])
            for proto in PROTOCOLS:
                name = set_name("hosts", family, proto)
                lines += self._set(name, addr_type + " . inet_service", ["interval", "timeout"],
                                   [element_text(e) for e in self.hosts[name]], timeout=self.host_timeout)
            lines += self._set(set_name("dns", family), addr_type, [], [str(a) for a in self.resolvers if a.version == family])
        lines += [
            "\tchain forward {",
            "\t\ttype filter hook forward priority -5; policy accept;",
            "\t\tiifname { %s } jump egress" % ", ".join('"%s"' % i for i in self.interfaces),
            "\t}",
            "\tchain egress {",
            "\t\tct state established,related accept",
        ]
        for family, match in ((4, "ip daddr"), (6, "ip6 daddr")):
            for proto in PROTOCOLS:
                lines.append("\t\t%s @%s %s dport 53 accept" % (match, set_name("dns", family), proto))
        for family, match in ((4, "ip daddr"), (6, "ip6 daddr")):
            for proto in PROTOCOLS:
                for kind in ("allow", "hosts"):
                    lines.append("\t\t%s . %s dport @%s accept" % (match, proto, set_name(kind, family, proto)))
        # A published port on this host: the forward hook sees the address after DNAT; allow the
        # connection when its original destination is allowed.
        for family, match in ((4, "ip"), (6, "ip6")):
            for proto in PROTOCOLS:
                for kind in ("allow", "hosts"):
                    lines.append("\t\tmeta l4proto %s ct status dnat ct original %s daddr . ct original proto-dst @%s accept"
                                 % (proto, match, set_name(kind, family, proto)))
        lines += [
            '\t\tlimit rate %s log prefix "%s" level warn' % (self.log_rate, LOG_PREFIX),
            "\t\tcounter drop",
            "\t}",
            "}",
        ]
        return "\n".join(lines) + "\n"

    def load_script(self):
        """A file for ``nft -f``: deletes and recreates the table in one transaction."""
        return (
            "#!/usr/sbin/nft -f\n"
            "# vantage egress firewall (vantage.checkpoint.egress_rules): generated, do not edit.\n"
            "# Replaces table inet %s in one transaction; other tables are left alone.\n"
            "table inet %s\n"
            "delete table inet %s\n" % (self.table, self.table, self.table)
        ) + self.render()

    def refresh_script(self):
        """A file for ``nft -f``: empties the host-name sets and fills them again, in one transaction.

        Re-adding restarts each element's timeout; addresses the names no longer resolve to are gone.
        """
        lines = []
        for name, elements in sorted(self.hosts.items()):
            lines.append("flush set inet %s %s" % (self.table, name))
            if elements:
                lines.append("add element inet %s %s { %s }" % (self.table, name, ", ".join(element_text(e) for e in elements)))
        return "\n".join(lines) + "\n"


# ----------------------------------------------------------------------------- reading nft -j


def _json_network(value):
    if isinstance(value, dict) and "prefix" in value:
        return ipaddress.ip_network("%s/%s" % (value["prefix"]["addr"], value["prefix"]["len"]))
    if isinstance(value, dict) and "range" in value:
        first, last = (ipaddress.ip_address(v) for v in value["range"])
        networks = list(ipaddress.summarize_address_range(first, last))
        return networks[0] if len(networks) == 1 else networks
    return ipaddress.ip_network(str(value))


def _json_ports(value):
    if isinstance(value, dict) and "range" in value:
        return int(value["range"][0]), int(value["range"][1])
    return int(value), int(value)


def element_keys_from_json(elements):
    """Set elements as listed by ``nft -j`` → set of ``(network, low, high)`` keys (timeouts ignored)."""
    keys = set()
    for item in elements or []:
        if isinstance(item, dict) and "elem" in item:
            item = item["elem"]["val"]
        if not (isinstance(item, dict) and "concat" in item):
            continue
        networks, ports = item["concat"]
        low, high = _json_ports(ports)
        network = _json_network(networks)
        for net in network if isinstance(network, list) else [network]:
            keys.add((str(net), low, high))
    return keys


def table_objects(listing, table):
    """The objects of ``table`` in an ``nft -j list ...`` listing (a parsed dict)."""
    objects = []
    for item in listing.get("nftables", []):
        for kind, value in item.items():
            if kind == "metainfo":
                continue
            if value.get("family") == "inet" and (value.get("table") == table or (kind == "table" and value.get("name") == table)):
                objects.append((kind, value))
    return objects


def _strip_state(value):
    if isinstance(value, dict):
        if "counter" in value and isinstance(value["counter"], dict) and set(value["counter"]) <= {"packets", "bytes"}:
            return {"counter": None}
        return dict((k, _strip_state(v)) for k, v in value.items() if k not in ("handle", "expires"))
    if isinstance(value, list):
        return [_strip_state(v) for v in value]
    return value


def normalize(listing, table):
    """What must be equal for the table to count as unchanged: structure, rules and static set elements.

    Handles, counters, element expiry and the elements of the host-name sets (compared
    separately, as addresses) are left out.
    """
    result = []
    for kind, value in table_objects(listing, table):
        value = dict(value)
        if kind == "set":
            if value.get("name") in HOST_SETS:
                value.pop("elem", None)
            elif "elem" in value:
                value["elem"] = sorted(json.dumps(_strip_state(e), sort_keys=True) for e in value["elem"])
        result.append([kind, _strip_state(value)])
    return result


def host_keys_from_listing(listing, table):
    """``{set name: set of keys}`` of the host-name sets in a listing of the table."""
    keys = dict((name, set()) for name in HOST_SETS)
    for kind, value in table_objects(listing, table):
        if kind == "set" and value.get("name") in keys:
            keys[value["name"]] = element_keys_from_json(value.get("elem"))
    return keys


def strip_expiry(text):
    """``nft list`` text without the element expiry countdowns (for stable diffs)."""
    return re.sub(r" expires [0-9dhms]+", "", text)
