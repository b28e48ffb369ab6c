"""The ``vantage.checkpoint.egress_rules`` module with the real ``nft``, in throw-away network namespaces.

The machine's own firewall is never touched: three namespaces make a small routed network::

    client (10.231.1.2, fd00:231:1::2)  --vtgc0--  fw (forwarding; the module runs here)  --vtgs0--  server
                                                                                   10.231.2.{2,3,4,53}, fd00:231:2::{2,3},
                                                                                   169.254.169.254

``vtgc0`` plays the checkpoint network's bridge. The server answers on TCP 53/80/8080/8081 and UDP
53/5353/5354 on every address; the client probes them through ``fw``, so allowed and forbidden
targets sit on the same path. ``fw`` also DNATs 10.231.9.9:8443 to 10.231.2.4:8081 (a port
published on the host). Host names resolve through ``/etc/netns/<fw>/hosts``, which ``ip netns exec``
mounts over ``/etc/hosts``.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

TOP = Path(__file__).resolve().parents[2]
MODULE = TOP / "plugins" / "modules" / "egress_rules.py"
NAMED_HOST = "target.vantage.test"

SERVER = textwrap.dedent(
    """
    import socket, sys, threading
    addresses = sys.argv[1].split(",")
    def tcp(sock):
        while True:
            conn, _ = sock.accept()
            try:
                conn.sendall(b"pong\\n")
            finally:
                conn.close()
    def udp(sock):
        while True:
            data, peer = sock.recvfrom(512)
            sock.sendto(b"pong " + data, peer)
    for address in addresses:
        family = socket.AF_INET6 if ":" in address else socket.AF_INET
        for port in (53, 80, 8080, 8081):
            s = socket.socket(family, socket.SOCK_STREAM)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind((address, port)); s.listen(16)
            threading.Thread(target=tcp, args=(s,), daemon=True).start()
        for port in (53, 5353, 5354):
            s = socket.socket(family, socket.SOCK_DGRAM)
            s.bind((address, port))
            threading.Thread(target=udp, args=(s,), daemon=True).start()
    print("ready", flush=True)
    threading.Event().wait()
    """
)

PROBE = textwrap.dedent(
    """
    import json, socket, sys
    from concurrent.futures import ThreadPoolExecutor
    def probe(spec):
        proto, address, port = spec
        family = socket.AF_INET6 if ":" in address else socket.AF_INET
        try:
            if proto == "tcp":
                with socket.create_connection((address, port), timeout=1.5) as s:
                    s.settimeout(1.5)
                    return s.recv(16).startswith(b"pong")
            with socket.socket(family, socket.SOCK_DGRAM) as s:
                s.settimeout(1.5)
                s.connect((address, port))
                s.send(b"ping")
                return s.recv(64).startswith(b"pong")
        except OSError:
            return False
    specs = json.loads(sys.argv[1])
    with ThreadPoolExecutor(len(specs)) as pool:
        print(json.dumps(list(pool.map(probe, specs))))
    """
)

SERVER_ADDRESSES = ["10.231.2.2", "10.231.2.3", "10.231.2.4", "10.231.2.53", "169.254.169.254",
                    "fd00:231:2::2", "fd00:231:2::3"]


def sh(*argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(list(argv), capture_output=True, text=True, check=False, timeout=60)
    if check and result.returncode != 0:
        raise AssertionError(f"{' '.join(argv)} failed: {result.stderr}")
    return result


@dataclass
class Net:
    fw: str
    client: str
    server: str
    collections: Path
    workdir: Path
    runs: int = 0

    def ns(self, ns: str, *argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return sh("ip", "netns", "exec", ns, *argv, check=check)

    def set_host(self, address: str) -> None:
        Path(f"/etc/netns/{self.fw}/hosts").write_text(f"127.0.0.1 localhost\n{address} {NAMED_HOST}\n")

    def module(self, args: dict[str, Any], *, check: bool = False, diff: bool = True,
               env: dict[str, str] | None = None) -> dict[str, Any]:
        """Run the module in ``fw`` as Ansible would (arguments file, JSON result)."""
        self.runs += 1
        params = dict(args, _ansible_check_mode=check, _ansible_diff=diff)
        path = self.workdir / f"args-{self.runs}.json"
        path.write_text(json.dumps({"ANSIBLE_MODULE_ARGS": params}))
        environment = dict(os.environ, PYTHONPATH=str(self.collections), **(env or {}))
        result = subprocess.run(["ip", "netns", "exec", self.fw, sys.executable, str(MODULE), str(path)],
                                capture_output=True, text=True, env=environment, check=False, timeout=120)
        try:
            parsed: dict[str, Any] = json.loads(result.stdout)
        except ValueError:
            raise AssertionError(f"module output is not JSON: {result.stdout}\n{result.stderr}") from None
        return parsed

    def probe(self, *specs: tuple[str, str, int]) -> dict[tuple[str, str, int], bool]:
        out = self.ns(self.client, sys.executable, "-c", PROBE, json.dumps(specs)).stdout
        return dict(zip(specs, json.loads(out), strict=True))

    def nft(self, *argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return self.ns(self.fw, "nft", *argv, check=check)


@pytest.fixture(scope="module")
def net(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Net]:
    if os.geteuid() != 0 or shutil.which("nft") is None or shutil.which("ip") is None:
        pytest.skip("needs root, nft (nftables) and ip (iproute2) to build network namespaces")
    suffix = f"{os.getpid() % 100000}"
    net = Net(f"vtg{suffix}-fw", f"vtg{suffix}-cl", f"vtg{suffix}-sv",
              tmp_path_factory.mktemp("collections"), tmp_path_factory.mktemp("egress"))
    link = net.collections / "ansible_collections" / "vantage" / "checkpoint"
    link.parent.mkdir(parents=True)
    link.symlink_to(TOP)
    server = None
    try:
        for ns in (net.fw, net.client, net.server):
            sh("ip", "netns", "add", ns)
            net.ns(ns, "ip", "link", "set", "lo", "up")
        sh("ip", "link", "add", "vtgc0", "netns", net.fw, "type", "veth", "peer", "name", "eth0", "netns", net.client)
        sh("ip", "link", "add", "vtgs0", "netns", net.fw, "type", "veth", "peer", "name", "eth0", "netns", net.server)
        for ns, dev, addresses in (
            (net.fw, "vtgc0", ["10.231.1.1/24", "fd00:231:1::1/64"]),
            (net.fw, "vtgs0", ["10.231.2.1/24", "fd00:231:2::1/64"]),
            (net.client, "eth0", ["10.231.1.2/24", "fd00:231:1::2/64"]),
            (net.server, "eth0", ["10.231.2.2/24", "10.231.2.3/24", "10.231.2.4/24", "10.231.2.53/24",
                                  "169.254.169.254/32", "fd00:231:2::2/64", "fd00:231:2::3/64"]),
        ):
            for address in addresses:
                net.ns(ns, "ip", "addr", "add", address, "dev", dev, *(["nodad"] if ":" in address else []))
            net.ns(ns, "ip", "link", "set", dev, "up")
        for ns, v4, v6 in ((net.client, "10.231.1.1", "fd00:231:1::1"), (net.server, "10.231.2.1", "fd00:231:2::1")):
            net.ns(ns, "ip", "route", "add", "default", "via", v4)
            net.ns(ns, "ip", "-6", "route", "add", "default", "via", v6)
        net.ns(net.fw, "ip", "route", "add", "169.254.169.254/32", "via", "10.231.2.2")
        net.ns(net.fw, "sysctl", "-qw", "net.ipv4.ip_forward=1", "net.ipv6.conf.all.forwarding=1")
        # A port "published" on the fw host: 10.231.9.9:8443 -> 10.231.2.4:8081, in a table the module must not touch.
        subprocess.run(["ip", "netns", "exec", net.fw, "nft", "-f", "-"], check=True, text=True, input=textwrap.dedent(
            """
            table ip host_nat {
                chain prerouting { type nat hook prerouting priority -100; ip daddr 10.231.9.9 tcp dport 8443 dnat to 10.231.2.4:8081; }
            }
            """))
        net.ns(net.client, "ip", "route", "add", "10.231.9.9/32", "via", "10.231.1.1")
        Path(f"/etc/netns/{net.fw}").mkdir(parents=True, exist_ok=True)
        net.set_host("10.231.2.3")
        server = subprocess.Popen(["ip", "netns", "exec", net.server, sys.executable, "-c", SERVER, ",".join(SERVER_ADDRESSES)],
                                  stdout=subprocess.PIPE, text=True)
        assert server.stdout is not None and server.stdout.readline().strip() == "ready"
        # Before any table exists every target answers (neighbour discovery done, forwarding on).
        deadline = time.monotonic() + 30
        while True:
            answers = net.probe(*ALLOWED, *FORBIDDEN)
            if all(answers.values()):
                break
            if time.monotonic() > deadline:
                raise AssertionError(f"the test network does not forward: {answers}")
            time.sleep(0.5)
        yield net
    finally:
        if server is not None:
            server.kill()
            server.wait(10)
        for ns in (net.fw, net.client, net.server):
            sh("ip", "netns", "del", ns, check=False)
        shutil.rmtree(f"/etc/netns/{net.fw}", ignore_errors=True)


def policy(**extra: Any) -> dict[str, Any]:
    args: dict[str, Any] = {
        "interfaces": ["vtgc0"],
        "resolvers": ["10.231.2.53"],
        "rules": [
            {"name": "web", "cidrs": ["10.231.2.2/32", "fd00:231:2::2/128"], "ports": [8080], "protocols": ["tcp"]},
            {"name": "syslog", "hosts": ["10.231.2.2"], "ports": ["5353"], "protocols": ["udp"]},
            {"name": "named", "hosts": [NAMED_HOST], "ports": [8080]},
            {"name": "published", "cidrs": ["10.231.9.9/32"], "ports": [8443]},
        ],
    }
    args.update(extra)
    return args


ALLOWED = [("tcp", "10.231.2.2", 8080), ("udp", "10.231.2.2", 5353), ("tcp", "fd00:231:2::2", 8080),
           ("udp", "10.231.2.53", 53), ("tcp", "10.231.2.53", 53), ("tcp", "10.231.9.9", 8443)]
FORBIDDEN = [("tcp", "10.231.2.2", 8081), ("tcp", "10.231.2.4", 8080), ("udp", "10.231.2.2", 5354),
             ("udp", "10.231.2.4", 5353), ("tcp", "169.254.169.254", 80), ("udp", "10.231.2.2", 53),
             ("tcp", "fd00:231:2::3", 8080), ("tcp", "fd00:231:2::2", 8081), ("tcp", "10.231.2.4", 8081)]


def drop_counter(net: Net) -> int:
    listing = json.loads(net.nft("-j", "list", "chain", "inet", "vantage_egress", "egress").stdout)
    for item in listing["nftables"]:
        for expr in item.get("rule", {}).get("expr", []):
            if "counter" in expr:
                return int(expr["counter"]["packets"])
    raise AssertionError("no counter in the egress chain")


def test_policy_lets_only_allowed_traffic_through(net: Net) -> None:
    net.nft("add", "table", "inet", "someone_else")
    net.set_host("10.231.2.3")
    result = net.module(policy())
    assert not result.get("failed"), result
    assert result["resolved"] == {NAMED_HOST: ["10.231.2.3"]}
    before = drop_counter(net)
    answers = net.probe(*ALLOWED, ("tcp", "10.231.2.3", 8080), *FORBIDDEN)
    assert [s for s in [*ALLOWED, ("tcp", "10.231.2.3", 8080)] if not answers[s]] == []
    assert [s for s in FORBIDDEN if answers[s]] == []
    assert drop_counter(net) >= before + len(FORBIDDEN)
    assert "someone_else" in net.nft("list", "tables").stdout  # other tables are left alone


def test_second_run_changes_nothing_and_check_mode_changes_nothing(net: Net) -> None:
    assert not net.module(policy()).get("failed")
    again = net.module(policy())
    assert again["changed"] is False, again.get("diff")
    live = net.nft("-s", "list", "table", "inet", "vantage_egress").stdout
    wider = policy()
    wider["rules"].append({"name": "extra", "cidrs": ["10.231.2.4/32"], "ports": [8081]})
    planned = net.module(wider, check=True)
    assert planned["changed"] is True
    assert "10.231.2.4 . 8081" in planned["diff"]["after"] and "10.231.2.4 . 8081" not in planned["diff"]["before"]
    assert net.nft("-s", "list", "table", "inet", "vantage_egress").stdout == live
    assert net.probe(("tcp", "10.231.2.4", 8081)) == {("tcp", "10.231.2.4", 8081): False}


def test_refresh_follows_a_changed_host_name(net: Net) -> None:
    net.set_host("10.231.2.3")
    assert not net.module(policy()).get("failed")
    net.set_host("10.231.2.4")
    refreshed = net.module(policy(refresh_only=True))
    assert refreshed["changed"] is True and refreshed["resolved"] == {NAMED_HOST: ["10.231.2.4"]}
    answers = net.probe(("tcp", "10.231.2.4", 8080), ("tcp", "10.231.2.3", 8080))
    assert answers == {("tcp", "10.231.2.4", 8080): True, ("tcp", "10.231.2.3", 8080): False}
    assert net.module(policy(refresh_only=True))["changed"] is False
    assert net.module(policy())["changed"] is False  # the full comparison agrees
    net.set_host("10.231.2.3")


def test_ruleset_that_fails_to_load_leaves_the_previous_one(net: Net, tmp_path: Path) -> None:
    assert not net.module(policy()).get("failed")
    live = net.nft("-s", "list", "table", "inet", "vantage_egress").stdout
    # An nft that corrupts the real load in fw (not the check, not the scratch namespace) at its end:
    # the kernel must reject the whole transaction, the delete of the old table included.
    wrapper = tmp_path / "bin" / "nft"
    wrapper.parent.mkdir()
    wrapper.write_text(textwrap.dedent(
        f"""\
        #!/bin/sh
        if [ "$1" = "-f" ] && [ "$(ip netns identify)" = "{net.fw}" ] && grep -q '^delete table' "$2"; then
            cp "$2" {tmp_path}/bad.nft && echo 'add rule inet vantage_egress egress ip daddr 10.231.2.4 accept bogus' >> {tmp_path}/bad.nft
            exec /usr/sbin/nft -f {tmp_path}/bad.nft
        fi
        exec /usr/sbin/nft "$@"
        """))
    wrapper.chmod(0o755)
    wider = policy()
    wider["rules"].append({"name": "extra", "cidrs": ["10.231.2.4/32"], "ports": [8081]})
    failed = net.module(wider, env={"PATH": f"{wrapper.parent}:{os.environ['PATH']}"})
    assert failed.get("failed") and "loading the ruleset (nft -f) failed" in failed["msg"], failed
    assert net.nft("-s", "list", "table", "inet", "vantage_egress").stdout == live
    assert net.probe(("tcp", "10.231.2.2", 8080), ("tcp", "10.231.2.4", 8081)) == {
        ("tcp", "10.231.2.2", 8080): True, ("tcp", "10.231.2.4", 8081): False}


def test_bad_policy_and_unresolvable_name_change_nothing(net: Net) -> None:
    assert not net.module(policy()).get("failed")
    live = net.nft("-s", "list", "table", "inet", "vantage_egress").stdout
    bad = policy(rules=[{"name": "intranet", "cidrs": ["10.0.0.300/8"], "ports": [443]},
                        {"name": "api", "hosts": ["api.internal"], "ports": [70000], "protocols": ["icmp"]}])
    result = net.module(bad)
    assert result["failed"]
    assert "rules[0] (intranet): invalid CIDR '10.0.0.300/8'" in result["msg"]
    assert "rules[1] (api): invalid port 70000" in result["msg"] and "rules[1] (api): invalid protocol(s) 'icmp'" in result["msg"]
    unresolvable = policy(rules=[{"name": "ghost", "hosts": ["ghost.vantage.test"], "ports": [443]}])
    result = net.module(unresolvable)
    assert result["failed"] and "ghost: host ghost.vantage.test does not resolve" in result["msg"]
    empty = net.module(policy(rules=[]))
    assert empty["failed"] and "allow_empty" in empty["msg"]
    assert net.nft("-s", "list", "table", "inet", "vantage_egress").stdout == live


def test_persist_and_absent(net: Net, tmp_path: Path) -> None:
    persisted = tmp_path / "egress.nft"
    assert net.module(policy(persist_path=str(persisted)))["changed"] is True
    assert net.module(policy(persist_path=str(persisted)))["changed"] is False
    text = persisted.read_text()
    assert "delete table inet vantage_egress" in text and "10.231.2.3 . 8080" in text
    assert oct(persisted.stat().st_mode & 0o777) == "0o640"
    removed = net.module({"state": "absent", "persist_path": str(persisted)})
    assert removed["changed"] is True and not persisted.exists()
    assert "vantage_egress" not in net.nft("list", "tables").stdout
    assert "someone_else" in net.nft("list", "tables").stdout
    # Without the table every target answers: the drops above were the module's doing.
    answers = net.probe(*FORBIDDEN)
    assert [s for s in FORBIDDEN if not answers[s]] == []
    assert net.module({"state": "absent"})["changed"] is False
    # The persisted file restores the table on its own (what the boot service does).
    assert net.module(policy(persist_path=str(persisted)))["changed"] is True
    net.nft("delete", "table", "inet", "vantage_egress")
    net.nft("-f", str(persisted))
    assert net.module(policy(persist_path=str(persisted)))["changed"] is False
