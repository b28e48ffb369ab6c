#!/usr/bin/python
# -*- coding: utf-8 -*-

# Copyright (c) Vantage maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
module: egress_rules
short_description: Restrict a checkpoint network's egress with an nftables table of its own
version_added: 0.1.0
description:
  - Applies an egress policy - named entries of host names and/or CIDRs with ports and protocols, IPv4 and IPv6 - as
    one nftables table of its own (V(inet vantage_egress) by default) that filters, in the C(forward) hook at
    priority V(-5), the traffic that enters through the given interfaces (the checkpoint network's bridge).
  - The chain accepts established and related traffic, DNS (UDP and TCP port 53) to the O(resolvers) only, and
    new connections whose C(address . port) is in the allowed sets; everything else is dropped and counted, and
    logged at a limited rate with the prefix C(vantage-egress drop:). Connections to a port published on the
    same host (DNAT) are accepted when their original destination is allowed.
  - CIDRs and IP addresses go into sets without timeouts. Host names are resolved on the managed host
    (C(getaddrinfo)) into separate sets whose elements expire after O(host_timeout) seconds unless refreshed, so an
    address a name no longer resolves to drops out. Run the module with O(refresh_only=true) on a timer (the
    C(vantage.checkpoint.egress_firewall) role installs one) to re-resolve the names and fill those sets again.
  - The whole policy is validated before anything is touched; every invalid entry, CIDR, port or protocol is
    reported by its name. A host name that does not resolve makes the module fail, naming the entry, and leaves
    the current rules as they are.
  - The new ruleset is checked with C(nft -c -f) and then loaded with C(nft -f) from a file that deletes and
    recreates the table in one transaction, so a ruleset that fails to load leaves the previous one in place.
    Other tables (Docker's, firewalld's, the host's own) are never touched.
  - The module compares the desired table with the live one (C(nft -j list table)); it loads the desired
    ruleset in a new, empty network namespace (C(unshare --net)) so that nft formats both the same way, and
    ignores counters and element expiry. It reports a change only when the rules, the static elements or the
    addresses of the host names differ.
  - See docs/egress.md for the policy format and the ruleset.
author:
  - Vantage maintainers (@vantage)
extends_documentation_fragment:
  - vantage.checkpoint.attributes
attributes:
  check_mode:
    support: full
    details:
      - Check mode resolves the names, builds and compares the ruleset (in a scratch network namespace), and changes
        nothing on the host.
  diff_mode:
    support: full
    details:
      - The diff shows the table before and after, as C(nft -s list table) prints it (without element expiry).
  platform:
    support: full
    platforms: posix
requirements:
  - The C(nft) command (package C(nftables)) and a kernel with nf_tables (C(CONFIG_NF_TABLES_INET)).
  - The C(unshare) command (util-linux) and the right to create a network namespace (root).
options:
  rules:
    description:
      - The allowed destinations, as named entries (with O(state=present)).
      - An empty list is refused unless O(allow_empty=true).
    type: list
    elements: dict
    default: []
    suboptions:
      name:
        description:
          - Name of the entry (letters, digits, C(_), C(.), C(:), C(-); at most 63), used in every error message.
          - Required; checked by the module with the rest of the policy, so that every problem is reported at once.
        type: str
      hosts:
        description:
          - Host names (resolved on the managed host into sets with timeouts) and/or IP addresses (static).
        type: list
        elements: str
      cidrs:
        description: IPv4 and IPv6 networks, for example V(10.20.0.0/16) or V(fd00:20::/64). Host bits must be zero.
        type: list
        elements: str
      ports:
        description: Destination ports (V(443)) and port ranges (V(8000-8100)). Required.
        type: list
        elements: raw
      protocols:
        description: Any of V(tcp) and V(udp).
        type: list
        elements: str
        default: [tcp]
      family:
        description:
          - Which resolved addresses of O(rules[].hosts) are allowed - V(ipv4), V(ipv6) or V(any).
          - CIDRs and IP addresses must belong to it.
        type: str
        default: any
      description:
        description: Free text, for the reader.
        type: str
  resolvers:
    description:
      - IP addresses of the DNS resolvers the containers may query directly (UDP and TCP port 53).
      - Containers on a user-defined Docker network ask Docker's embedded DNS, which queries from the host's
        own namespace and is not filtered here; this governs containers that query resolvers directly.
    type: list
    elements: str
    default: []
  interfaces:
    description:
      - Interfaces whose incoming traffic is filtered; the checkpoint network's bridge (RV(vantage.checkpoint.checkpoint_container#module:bridge)).
      - An interface that does not exist yet is fine (the match is by name).
      - Required with O(state=present).
    type: list
    elements: str
    default: []
  table:
    description: Name of the table (family C(inet)).
    type: str
    default: vantage_egress
  host_timeout:
    description:
      - Seconds after which an address resolved from a host name expires unless refreshed. At least V(60).
      - Refresh more often than this (the role's timer runs every few minutes).
    type: int
    default: 3600
  log_rate:
    description: How many dropped packets are logged at most, for example V(10/minute). All of them are counted.
    type: str
    default: 10/minute
  allow_empty:
    description:
      - Accept an empty O(rules) list. The checkpoint could then reach nothing but the resolvers - it would be cut
        off from the control plane.
    type: bool
    default: false
  refresh_only:
    description:
      - Only resolve the host names again and replace the elements of the host-name sets (restarting their
        timeouts), in one transaction. The table must exist; its rules and static sets are not compared.
    type: bool
    default: false
  persist_path:
    description:
      - Also write the ruleset (the file loaded with C(nft -f)) here, for a service to load at boot.
      - Written atomically, mode V(0640), when its content differs. Removed with O(state=absent).
    type: path
  state:
    description:
      - V(present) applies the policy; V(absent) deletes the table (and O(persist_path)).
    type: str
    choices: [present, absent]
    default: present
seealso:
  - module: vantage.checkpoint.checkpoint_container
"""

EXAMPLES = r"""
- name: Let the checkpoint reach its control plane, the intranet and the resolvers, nothing else
  vantage.checkpoint.egress_rules:
    interfaces: ["{{ checkpoint_deployment.bridge }}"]
    resolvers: [10.0.0.2, 10.0.0.3]
    rules:
      - name: control-plane
        hosts: [vantage.example.com]
        ports: [443]
      - name: intranet
        cidrs: [10.20.0.0/16, fd00:20::/64]
        ports: [80, 443, 8000-8100]
      - name: syslog
        hosts: [10.30.0.5]
        ports: [514]
        protocols: [udp]
    persist_path: /etc/vantage/egress/vantage_egress.nft
  register: egress

- name: Re-resolve the host names and refresh their addresses (what the role's timer does)
  vantage.checkpoint.egress_rules:
    interfaces: ["{{ checkpoint_deployment.bridge }}"]
    rules: "{{ my_rules }}"
    refresh_only: true

- name: Remove the egress filtering
  vantage.checkpoint.egress_rules:
    state: absent
"""

RETURN = r"""
table:
  description: The table, C(inet <name>).
  returned: always
  type: str
  sample: inet vantage_egress
ruleset:
  description: The table as nft lists it after the run (or would, in check mode), without element expiry.
  returned: when O(state=present) and O(refresh_only=false)
  type: str
resolved:
  description: The addresses each host name resolved to.
  returned: when O(state=present)
  type: dict
  sample: {"vantage.example.com": ["203.0.113.10", "2001:db8::10"]}
elements:
  description: How many elements each set has after the run (merged so that none overlap).
  returned: when O(state=present)
  type: dict
  sample: {"allow4_tcp": 3, "hosts4_tcp": 1, "dns4": 2}
hosts_changed:
  description: Whether the addresses of the host names differ from those in the live table.
  returned: when O(state=present)
  type: bool
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.vantage.checkpoint.plugins.module_utils._egress_rules import EgressRules, argument_spec


def main():
    module = AnsibleModule(argument_spec=argument_spec(), supports_check_mode=True)
    EgressRules(module).run()


if __name__ == "__main__":
    main()
