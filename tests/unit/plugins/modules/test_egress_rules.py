# Copyright (c) Vantage maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""egress_rules: policy validation naming entries, non-overlapping elements, the ruleset text, nft errors.

The real nft runs in tests/integration/test_module_egress_rules.py (network namespaces).
"""

from __future__ import annotations

import ipaddress
import socket

import pytest

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.vantage.checkpoint.plugins.module_utils import _egress
from ansible_collections.vantage.checkpoint.plugins.module_utils._egress import (
    PolicyError,
    ResolveError,
    Ruleset,
    disjoint,
    element_keys_from_json,
    normalize,
    parse_entries,
    parse_port,
    resolve_hosts,
)
from ansible_collections.vantage.checkpoint.plugins.module_utils._nft import Nft, NftError
from ansible_collections.vantage.checkpoint.plugins.modules import egress_rules

POLICY = dict(
    interfaces=["vtg-0123456789a"],
    resolvers=["10.0.0.2"],
    rules=[dict(name="intranet", cidrs=["10.20.0.0/16"], ports=[443])],
)


def net(text):
    return ipaddress.ip_network(text)


def test_ports_and_ranges():
    assert parse_port(443) == (443, 443)
    assert parse_port("8000-8100") == (8000, 8100)
    for bad in (0, 70000, "http", "90-80", True, "1-2-3"):
        with pytest.raises(ValueError):
            parse_port(bad)


def test_every_problem_is_reported_with_its_entry():
    with pytest.raises(PolicyError) as info:
        parse_entries([
            dict(name="intranet", cidrs=["10.0.0.300/8", "10.1.2.3/8"], ports=[443]),
            dict(name="api", hosts=["api.internal", "bad host!"], ports=[70000, "x"], protocols=["tcp", "icmp"]),
            dict(name="api", cidrs=["fd00::/64"], ports=[53], family="ipv4"),
            dict(hosts=["a.example"], ports=[1]),
            dict(name="nothing", ports=[1], colour="red"),
        ])
    problems = "\n".join(info.value.problems)
    assert "rules[0] (intranet): invalid CIDR '10.0.0.300/8'" in problems
    assert "rules[0] (intranet): invalid CIDR '10.1.2.3/8': 10.1.2.3/8 has host bits set" in problems
    assert "rules[1] (api): invalid host 'bad host!'" in problems
    assert "rules[1] (api): invalid port 70000: ports are 1-65535" in problems
    assert "rules[1] (api): invalid port 'x'" in problems
    assert "rules[1] (api): invalid protocol(s) 'icmp' (choose from tcp, udp)" in problems
    assert "rules[2] (api): the name is used twice" in problems
    assert "rules[2] (api): fd00::/64 do not belong to family ipv4" in problems
    assert "rules[3]: name must match" in problems
    assert "rules[4] (nothing): unknown key(s) colour" in problems
    assert "rules[4] (nothing): needs at least one host or CIDR" in problems


def test_ip_literals_in_hosts_are_static_and_names_are_resolved():
    entries = parse_entries([dict(name="mixed", hosts=["192.0.2.7", "CP.Example.com.", "2001:db8::1"], ports=[443])])
    assert entries[0].hosts == ["cp.example.com"]
    assert entries[0].networks == [net("192.0.2.7/32"), net("2001:db8::1/128")]
    assert entries[0].protocols == ["tcp"]


def test_resolution_failures_name_entry_and_host():
    entries = parse_entries([dict(name="cp", hosts=["cp.example.com", "gone.example.com"], ports=[443])])

    def fake(host, port, family, type_):
        if host == "gone.example.com":
            raise socket.gaierror(-2, "Name or service not known")
        return [(socket.AF_INET, type_, 6, "", ("203.0.113.5", 0)), (socket.AF_INET6, type_, 6, "", ("2001:db8::5", 0, 0, 0)),
                (socket.AF_INET, type_, 6, "", ("203.0.113.5", 0))]

    with pytest.raises(ResolveError) as info:
        resolve_hosts(entries, getaddrinfo=fake)
    assert str(info.value) == "cp: host gone.example.com does not resolve: [Errno -2] Name or service not known"
    entries[0].hosts = ["cp.example.com"]
    resolved = resolve_hosts(entries, getaddrinfo=fake)
    assert resolved == {"cp.example.com": [ipaddress.ip_address("203.0.113.5"), ipaddress.ip_address("2001:db8::5")]}


def test_overlapping_elements_become_disjoint():
    items = [(net("10.0.0.0/8"), 443, 443), (net("10.1.0.0/16"), 443, 443), (net("10.1.0.0/16"), 8000, 8100),
             (net("10.1.2.3/32"), 8050, 8200), (net("10.0.0.0/8"), 444, 444), (net("192.0.2.0/24"), 80, 80)]
    result = disjoint(items)
    # every (address, port) of the input is covered, and no two elements overlap
    for network, low, high in items:
        for address in (network.network_address, network.broadcast_address):
            for port in (low, high):
                assert any(address in n and lo <= port <= hi for n, lo, hi in result), (address, port)
    for i, (a, alo, ahi) in enumerate(result):
        for b, blo, bhi in result[i + 1:]:
            assert not (a.overlaps(b) and alo <= bhi and blo <= ahi), (a, b)
    # 10.0.0.0/8 is cut around 10.1.0.0/16, which has more ports, and 10.1.2.3 around the merged range
    assert (net("10.0.0.0/16"), 443, 444) in result and (net("10.128.0.0/9"), 443, 444) in result
    assert (net("10.1.0.0/23"), 8000, 8100) in result
    assert (net("10.1.2.3/32"), 443, 444) in result and (net("10.1.2.3/32"), 8000, 8200) in result
    assert not any(n == net("10.1.2.3/32") and lo == 8050 for n, lo, hi in result)


def ruleset(rules, resolved=None, resolvers=("10.0.0.2", "fd00::53")):
    return Ruleset("vantage_egress", ["vtg-0123456789a"], parse_entries(rules),
                   [ipaddress.ip_address(a) for a in resolvers], resolved or {}, host_timeout=600, log_rate="5/second")


def test_ruleset_text():
    rules = ruleset(
        [dict(name="cp", hosts=["cp.example.com"], ports=[8443], family="ipv4"),
         dict(name="intranet", cidrs=["10.20.0.0/16", "fd00:20::/64"], ports=[80, "8000-8100"], protocols=["tcp", "udp"])],
        resolved={"cp.example.com": [ipaddress.ip_address("203.0.113.5"), ipaddress.ip_address("2001:db8::5")]},
    )
    text = rules.render()
    assert text.startswith("table inet vantage_egress {\n")
    assert "elements = { 10.20.0.0/16 . 80,\n\t\t\t     10.20.0.0/16 . 8000-8100 }" in text
    assert "set hosts4_tcp {\n\t\ttype ipv4_addr . inet_service\n\t\tflags interval,timeout\n\t\ttimeout 600s\n" \
           "\t\telements = { 203.0.113.5 . 8443 }" in text
    assert "2001:db8::5" not in text  # family ipv4
    assert "type filter hook forward priority -5; policy accept;" in text
    assert 'iifname { "vtg-0123456789a" } jump egress' in text
    assert "ip daddr @dns4 udp dport 53 accept" in text and "ip6 daddr @dns6 tcp dport 53 accept" in text
    assert "ip daddr . tcp dport @hosts4_tcp accept" in text
    assert "meta l4proto tcp ct status dnat ct original ip daddr . ct original proto-dst @allow4_tcp accept" in text
    lines = text.splitlines()
    assert lines.index("\t\tct state established,related accept") < lines.index("\t\tip daddr @dns4 tcp dport 53 accept")
    assert lines[-4:] == ['\t\tlimit rate 5/second log prefix "vantage-egress drop: " level warn', "\t\tcounter drop", "\t}", "}"]
    script = rules.load_script()
    assert "table inet vantage_egress\ndelete table inet vantage_egress\ntable inet vantage_egress {" in script
    assert rules.refresh_script().splitlines()[:2] == [
        "flush set inet vantage_egress hosts4_tcp",
        "add element inet vantage_egress hosts4_tcp { 203.0.113.5 . 8443 }",
    ]


def test_listing_elements_and_normalization():
    elements = [{"elem": {"val": {"concat": ["192.0.2.7", 443]}, "expires": 3599}},
                {"concat": [{"prefix": {"addr": "10.0.0.0", "len": 8}}, {"range": [8000, 8100]}]},
                {"concat": [{"range": ["10.0.0.0", "10.0.0.255"]}, 53]}]
    assert element_keys_from_json(elements) == {("192.0.2.7/32", 443, 443), ("10.0.0.0/8", 8000, 8100), ("10.0.0.0/24", 53, 53)}
    listing = {"nftables": [
        {"metainfo": {"version": "1.0.6"}},
        {"table": {"family": "inet", "name": "vantage_egress", "handle": 4}},
        {"table": {"family": "ip", "name": "nat", "handle": 1}},
        {"set": {"family": "inet", "name": "hosts4_tcp", "table": "vantage_egress", "handle": 3, "elem": elements[:1]}},
        {"rule": {"family": "inet", "table": "vantage_egress", "chain": "egress", "handle": 9,
                  "expr": [{"counter": {"packets": 7, "bytes": 420}}, {"drop": None}]}},
    ]}
    assert normalize(listing, "vantage_egress") == [
        ["table", {"family": "inet", "name": "vantage_egress"}],
        ["set", {"family": "inet", "name": "hosts4_tcp", "table": "vantage_egress"}],
        ["rule", {"family": "inet", "table": "vantage_egress", "chain": "egress", "expr": [{"counter": None}, {"drop": None}]}],
    ]


# ----------------------------------------------------------------------------- the module


@pytest.fixture
def egress(run_module):
    def run(check_mode=False, diff=False, **args):
        return run_module(egress_rules.main, args, check_mode=check_mode, diff=diff)

    return run


def test_invalid_policy_fails_before_nft_runs(egress, monkeypatch):
    monkeypatch.setattr(AnsibleModule, "get_bin_path", lambda *a, **k: pytest.fail("nft must not run"))
    run = egress(interfaces=["vtg-0123456789a"], resolvers=["10.0.0.300"], log_rate="lots",
                 rules=[dict(name="intranet", cidrs=["10.0.0.0/33"], ports=[443]), dict(name="dns", cidrs=["10.0.0.0/8"], ports=[53], protocols=["icmp"])])
    assert run.failed
    msg = run.result["msg"]
    assert msg.startswith("Invalid egress policy (nothing was changed): ")
    assert "rules[0] (intranet): invalid CIDR '10.0.0.0/33'" in msg and "rules[1] (dns): invalid protocol(s) 'icmp'" in msg
    assert "resolvers[0]: '10.0.0.300' is not an IP address" in msg and "log_rate: 'lots'" in msg


def test_empty_policy_is_refused_unless_allowed(egress, monkeypatch):
    monkeypatch.setattr(AnsibleModule, "get_bin_path", lambda *a, **k: None)
    run = egress(interfaces=["vtg-0123456789a"], resolvers=["10.0.0.2"])
    assert run.failed and "rules is empty" in run.result["msg"] and "allow_empty: true" in run.result["msg"]
    run = egress(interfaces=["vtg-0123456789a"], allow_empty=True)
    assert run.failed and "rules is empty" not in run.result["msg"]  # it got as far as looking for nft


def test_missing_nft_says_what_to_install(egress, monkeypatch):
    monkeypatch.setattr(AnsibleModule, "get_bin_path", lambda *a, **k: None)
    run = egress(**POLICY)
    assert run.failed
    assert run.result["msg"].startswith("the nft command was not found: install the nftables package")
    assert "apt-get install nftables" in run.result["msg"] and "dnf install nftables" in run.result["msg"]


@pytest.mark.parametrize("stderr, expected", [
    ("Error: Could not process rule: Operation not supported", "the kernel has no nf_tables support"),
    ("netlink: Error: cache initialization failed: Protocol not supported", "CONFIG_NF_TABLES"),
    ("Error: Could not process rule: Operation not permitted", "run the task with become: true"),
])
def test_nft_that_cannot_work_is_explained(egress, monkeypatch, stderr, expected):
    monkeypatch.setattr(AnsibleModule, "get_bin_path", lambda self, name, *a, **k: "/usr/sbin/" + name)
    calls = []

    def run_command(self, argv, data=None, check_rc=False, **kwargs):
        calls.append(argv)
        return 1, "", stderr

    monkeypatch.setattr(AnsibleModule, "run_command", run_command)
    run = egress(**POLICY)
    assert run.failed and expected in run.result["msg"]
    assert run.result["msg"].startswith("nft list tables failed: ")
    assert calls == [["/usr/sbin/nft", "list", "tables"]]


def test_nft_class_needs_a_binary():
    with pytest.raises(NftError):
        Nft(None, lambda argv, data=None: (0, "", ""))


def test_module_utils_stay_standalone():
    """The role copies _egress.py and _nft.py to the host for the refresh timer: no collection imports."""
    import inspect

    from ansible_collections.vantage.checkpoint.plugins.module_utils import _nft

    for module in (_egress, _nft):
        source = inspect.getsource(module)
        assert "ansible_collections" not in source and "from ansible" not in source and "import ansible" not in source
