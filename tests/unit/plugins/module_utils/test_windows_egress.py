# Copyright (c) Vantage maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Egress on Windows: the policy rendered as HNS ACLs (fixture in, exact JSON out), the probe run for real
against loopback sockets, and the verdicts on its answers."""

from __future__ import annotations

import base64
import json
import socket
import subprocess
import sys

import pytest

from ansible_collections.vantage.checkpoint.plugins.module_utils import _windows_egress
from ansible_collections.vantage.checkpoint.tests.unit.plugins import windows_answers as answers


def test_the_policy_fixture_renders_to_exactly_the_recorded_hns_document():
    policy = answers.load("egress-policy.json")
    document = _windows_egress.render(policy["rules"], policy["resolvers"], "plant", "vantage-plant", 3600)
    argv = document.pop("probe_argv")
    assert document == answers.load("egress-hns.json")
    assert argv[:3] == [_windows_egress.IMAGE_PYTHON, "-c", _windows_egress.BOOTSTRAP]
    assert json.loads(base64.b64decode(argv[4])) == document["probe"]


def test_every_allow_rule_wins_over_the_final_block():
    policy = answers.load("egress-policy.json")
    document = _windows_egress.render(policy["rules"], policy["resolvers"], "plant", "vantage-plant")
    allows = document["acls"] + [h["acl"] for h in document["hosts"]] + document["endpoint_dns"]
    priorities = [rule["Priority"] for rule in allows]
    assert len(set(priorities)) == len(priorities)
    assert max(priorities) < document["block"]["Priority"]
    assert all(rule["Action"] == "Allow" and rule["Direction"] == "Out" and rule["RuleType"] == "Switch" for rule in allows)
    assert document["block"] == {"Type": "ACL", "Action": "Block", "Direction": "Out", "RuleType": "Switch", "Priority": 65000}


def test_the_linux_validation_refuses_the_same_policies():
    with pytest.raises(_windows_egress.EgressError) as refused:
        _windows_egress.render([{"name": "x", "hosts": ["bad host"], "ports": [0]}], ["not-an-ip"], "plant", "vantage-plant")
    text = str(refused.value)
    assert "rules[0] (x): invalid host 'bad host'" in text and "invalid port 0" in text
    assert "resolvers[0]: 'not-an-ip' is not an IP address" in text
    with pytest.raises(_windows_egress.EgressError) as refused:
        _windows_egress.render([], [], "plant", "vantage-plant")
    assert "the policy is empty" in str(refused.value)
    with pytest.raises(_windows_egress.EgressError) as refused:
        _windows_egress.render([{"name": "intranet", "cidrs": ["10.0.0.0/8"], "ports": [443]}], [], "plant", "vantage-plant")
    assert "no control-plane entry" in str(refused.value)


def test_the_closed_port_probe_avoids_ports_the_policy_opens():
    rules = [{"name": "control-plane", "hosts": ["cp.example.com"], "ports": [443]},
             {"name": "wide", "cidrs": ["10.0.0.0/8"], "ports": ["1-10"]}]
    plan = _windows_egress.render(rules, [], "plant", "vantage-plant")["probe"]
    assert plan["denied"][-1] == ["control plane on a port the policy does not open", "cp.example.com", 13]


def run_probe(allowed, denied, timeout=1):
    """The probe exactly as an instance runs it (``python -c BOOTSTRAP <source> <arguments>``), here with this Python."""
    argv = _windows_egress.probe_argv({"allowed": allowed, "denied": denied, "timeout": timeout}, python=sys.executable)
    done = subprocess.run(argv, capture_output=True, text=True, timeout=30, check=False)
    return {"rc": done.returncode, "stdout": done.stdout, "stderr": done.stderr}


@pytest.fixture
def listener():
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    yield server.getsockname()[1]
    server.close()


def closed_port():
    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()  # nothing listens there now: a connection is refused
    return port


def test_the_probe_passes_when_the_allowed_target_answers_and_the_denied_one_does_not(listener):
    # The kernel refuses a TCP connection to the broadcast address before a packet leaves (EACCES), the way a
    # filter that drops locally answers: no answer came from the destination, so it is not a leak. (Where this
    # test runs, even 192.0.2.1 answers with a reset, so that address cannot stand for "dropped" here.)
    answer = run_probe([["control plane", "127.0.0.1", listener]], [["blocked", "255.255.255.255", 443]])
    assert answer["rc"] == 0, answer
    assert _windows_egress.judge_probe("a", answer) == []
    report = json.loads(answer["stdout"])
    assert report["allowed"][0]["result"] == "connected"
    assert report["denied"][0]["result"].startswith("error ") and report["leaks"] == []


def test_a_denied_destination_that_answers_is_a_leak_even_when_it_refuses(listener):
    port = closed_port()
    answer = run_probe([["control plane", "127.0.0.1", listener]],
                       [["metadata", "127.0.0.1", listener], ["control plane on a port the policy does not open", "127.0.0.1", port]])
    assert answer["rc"] == _windows_egress.EXIT_LEAK
    reasons = _windows_egress.judge_probe("a", answer)
    assert reasons == [
        "instance a reached 127.0.0.1:%d (connected): metadata is outside the egress policy" % listener,
        "instance a reached 127.0.0.1:%d (refused): control plane on a port the policy does not open is outside the "
        "egress policy" % port,
    ]


def test_an_allowed_destination_that_does_not_answer_fails_the_proof():
    answer = run_probe([["control plane", "127.0.0.1", closed_port()]], [])
    assert answer["rc"] == _windows_egress.EXIT_UNREACHABLE
    assert "cannot reach 127.0.0.1" in _windows_egress.judge_probe("b", answer)[0]
    assert "which the policy allows" in _windows_egress.judge_probe("b", answer)[0]


def test_a_probe_that_did_not_run_is_not_a_pass():
    reasons = _windows_egress.judge_probe("a", {"rc": 126, "stdout": "", "stderr": "OCI runtime exec failed: python not found"})
    assert reasons == ["instance a: the egress probe did not run (exit 126): OCI runtime exec failed: python not found"]


def test_the_reconcilers_report_must_prove_every_instance():
    good = {"rc": 0, "stdout": json.dumps({"leaks": [], "unreachable": []}), "stderr": ""}
    report = {"errors": ["wiki.corp.example does not resolve: No such host is known"], "endpoints": [
        {"container": "vantage-plant-a", "acls": 9, "applied": True, "probe": good, "stopped": False},
        {"container": "vantage-plant-b", "acls": 0, "applied": False, "probe": None, "stopped": True},
    ]}
    reasons = _windows_egress.judge_report(report, [("a", "vantage-plant-a"), ("b", "vantage-plant-b"), ("c", "vantage-plant-c")])
    assert reasons == [
        "the egress reconciler: wiki.corp.example does not resolve: No such host is known",
        "instance b: its endpoint has no egress ACLs",
        "instance b: the egress probe did not run",
        "instance b was stopped by the reconciler",
        "instance c: no endpoint of container vantage-plant-c was found on the checkpoint's network, so its egress is not proven",
    ]
    assert _windows_egress.judge_report({"endpoints": report["endpoints"][:1]}, [("a", "vantage-plant-a")]) == []
    assert _windows_egress.judge_report(None, []) == ["the egress reconciler printed no report"]
