# -*- coding: utf-8 -*-

# Copyright (c) Vantage maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
name: control_plane
short_description: The checkpoints, instances and hosts a Vantage control plane knows
version_added: 0.1.0
description:
  - Lists the checkpoints of a Vantage control plane (C(GET /api/v1/checkpoints)) and the health of each
    (C(GET /api/v1/checkpoints/{cp}/health)), and makes one inventory host per host that runs instances.
  - A host is named by what its instances report (O(hostnames)). Its variables describe its instances - the checkpoint,
    state, connection, health and reasons, version, image digest, last heartbeat - and the host facts they report.
  - Groups - C(<group_prefix>checkpoints) (every host), C(<group_prefix>checkpoint_<name>) per checkpoint and
    C(<group_prefix>state_<state>) per checkpoint state (V(active), V(maintenance), V(unavailable), V(disabled)), C(-) in
    names becoming C(_). With the default prefix the hosts are in C(vantage_checkpoints), the group the collection's
    playbooks run on.
  - A host that serves exactly one checkpoint gets C(checkpoint_name) and C(checkpoint_instances), so that
    C(playbooks/verify.yml) and C(playbooks/update.yml) run against this inventory as they are.
  - The answers can be cached with Ansible's inventory cache (O(cache)); the API token is never cached.
  - The inventory file must end in C(control_plane.yml) or C(control_plane.yaml), or C(vantage.yml) / C(vantage.yaml).
author:
  - Vantage maintainers (@vantage)
extends_documentation_fragment:
  - ansible.builtin.constructed
  - ansible.builtin.inventory_cache
options:
  plugin:
    description: The name of this plugin; it makes Ansible use it for the file.
    type: str
    required: true
    choices: [vantage.checkpoint.control_plane]
  url:
    description:
      - Base URL of the control plane, for example V(https://cp.example.com:8443); the REST API is under C(/api/v1/).
    type: str
    required: true
    env:
      - name: VANTAGE_CONTROL_PLANE_URL
  token:
    description:
      - API token of the control plane; the C(read) scope is enough.
      - Keep it out of the inventory file - set E(VANTAGE_CONTROL_PLANE_TOKEN), which the collection's AWX credential type
        injects (see docs/awx.md).
    type: str
    required: true
    env:
      - name: VANTAGE_CONTROL_PLANE_TOKEN
  ca_path:
    description:
      - PEM file of the CA certificates that sign the control plane's TLS certificate; unset or an empty file uses the
        system trust store (an AWX credential without a CA injects an empty file).
    type: path
    env:
      - name: VANTAGE_CONTROL_PLANE_CA_PATH
  validate_certs:
    description: Whether to verify the control plane's TLS certificate. Only for throw-away test systems.
    type: bool
    default: true
  timeout:
    description: Seconds to wait for each request to the control plane.
    type: int
    default: 30
  checkpoints:
    description: Only these checkpoints; empty lists every checkpoint.
    type: list
    elements: str
    default: []
  hostnames:
    description:
      - How each instance's host is named, in order of preference; the first that gives a name wins, and the instances
        that give the same name are one host.
      - V(reported) - the host name in the instance's last heartbeat (C(host.hostname)), when it has sent one. It is the
        name the agent sees, which inside a container is the container's unless the container is given the host's name.
      - V(instance) - C(<checkpoint>-<instance>), always available.
    type: list
    elements: str
    choices: [reported, instance]
    default: [reported, instance]
  group_prefix:
    description: Prefix of the groups and of the host variables this plugin makes.
    type: str
    default: vantage_
"""

EXAMPLES = r"""
# inventory/control_plane.yml - the token comes from VANTAGE_CONTROL_PLANE_TOKEN
plugin: vantage.checkpoint.control_plane
url: https://cp.example.com:8443
ca_path: /etc/vantage/control-plane-ca.pem
cache: true
cache_plugin: ansible.builtin.jsonfile
cache_connection: ~/.cache/vantage-inventory
cache_timeout: 300
# the checkpoints' hosts by operating system, and their SSH address from their own report
keyed_groups:
  - key: vantage_host.os.split(';')[0]
    prefix: os
compose:
  ansible_host: vantage_host.hostname
groups:
  vantage_degraded: vantage_instances | rejectattr('healthy') | list | length > 0

# ansible-inventory -i inventory/control_plane.yml --graph
# ansible-playbook -i inventory/control_plane.yml vantage.checkpoint.verify
"""

import re

from ansible.errors import AnsibleParserError
from ansible.module_utils.common.text.converters import to_native
from ansible.plugins.inventory import BaseInventoryPlugin, Cacheable, Constructable
from ansible_collections.vantage.checkpoint.plugins.module_utils._control_plane import (
    ControlPlaneClient,
    ControlPlaneError,
    api_path,
)

STATES = ("active", "maintenance", "unavailable", "disabled")
#: the keys of an instance's health entry that become its host variables
INSTANCE_KEYS = ("connected", "healthy", "reasons", "version", "image_digest", "last_heartbeat", "keyid", "data_protection")
HOST_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,252}$")


class InventoryModule(BaseInventoryPlugin, Constructable, Cacheable):
    NAME = "vantage.checkpoint.control_plane"

    def verify_file(self, path):
        return super().verify_file(path) and path.endswith(
            ("control_plane.yml", "control_plane.yaml", "vantage.yml", "vantage.yaml")
        )

    def parse(self, inventory, loader, path, cache=True):
        super().parse(inventory, loader, path, cache)
        self._read_config_data(path)
        cache_key = self.get_cache_key(path)
        use_cache = self.get_option("cache") and cache
        update_cache = self.get_option("cache") and not cache
        data = None
        if use_cache:
            try:
                data = self._cache[cache_key]
            except KeyError:
                update_cache = True
        if data is None:
            data = self._fetch()
        if update_cache:
            self._cache[cache_key] = data
        self._populate(data)

    def _fetch(self):
        """``{"url": ..., "checkpoints": [{"checkpoint": <GET .../cp>, "health": <GET .../cp/health>}]}``."""
        url = self.get_option("url")
        token = self.get_option("token") or ""
        if not token.strip():
            raise AnsibleParserError("vantage.checkpoint.control_plane: no API token; set VANTAGE_CONTROL_PLANE_TOKEN (or token)")
        ca_path = self.get_option("ca_path") or None
        if ca_path:
            try:
                with open(ca_path, "rb") as handle:
                    if not handle.read().strip():
                        ca_path = None  # an empty CA file (an AWX credential without one): the system trust store
            except OSError as exc:
                raise AnsibleParserError("vantage.checkpoint.control_plane: cannot read ca_path %s: %s" % (ca_path, to_native(exc)))
        try:
            client = ControlPlaneClient(
                url,
                token,
                validate_certs=self.get_option("validate_certs"),
                ca_path=ca_path,
                timeout=self.get_option("timeout"),
                user_agent="ansible-inventory/vantage.checkpoint.control_plane",
            )
            wanted = set(self.get_option("checkpoints"))
            listing = client.request("GET", api_path("checkpoints"))[1] or {}
            checkpoints = []
            for checkpoint in listing.get("checkpoints", []):
                if wanted and checkpoint["name"] not in wanted:
                    continue
                health = client.request("GET", api_path("checkpoints", checkpoint["name"], "health"))[1]
                checkpoints.append({"checkpoint": checkpoint, "health": health})
        except (ControlPlaneError, ValueError) as exc:
            raise AnsibleParserError("vantage.checkpoint.control_plane: %s" % to_native(exc))
        missing = wanted - set(c["checkpoint"]["name"] for c in checkpoints)
        if missing:
            raise AnsibleParserError(
                "vantage.checkpoint.control_plane: the control plane at %s has no checkpoint %s" % (client.base_url, ", ".join(sorted(missing)))
            )
        return {"url": client.base_url, "checkpoints": checkpoints}

    def _host_name(self, checkpoint, instance, report):
        for source in self.get_option("hostnames"):
            if source == "reported":
                name = (report.get("host") or {}).get("hostname")
                if isinstance(name, str) and HOST_NAME_RE.match(name):
                    return name
            elif source == "instance":
                return "%s-%s" % (checkpoint, instance)
        return None

    def _group(self, *parts):
        return self.get_option("group_prefix") + "_".join(parts).replace("-", "_")

    def _populate(self, data):
        prefix = self.get_option("group_prefix")
        strict = self.get_option("strict")
        everyone = self.inventory.add_group(self._group("checkpoints"))
        hosts = {}
        for entry in data["checkpoints"]:
            checkpoint, health = entry["checkpoint"], entry["health"]
            name = checkpoint["name"]
            state = health.get("state") if health.get("state") in STATES else "unavailable"
            checkpoint_group = self.inventory.add_group(self._group("checkpoint", name))
            state_group = self.inventory.add_group(self._group("state", state))
            reports = dict((i["name"], i) for i in health.get("instances", []))
            for instance in checkpoint.get("instances", []):
                report = reports.get(instance["name"], {})
                host = self._host_name(name, instance["name"], report)
                if host is None:
                    continue
                self.inventory.add_host(host, group=everyone)
                self.inventory.add_host(host, group=checkpoint_group)
                self.inventory.add_host(host, group=state_group)
                described = dict((key, report.get(key, instance.get(key))) for key in INSTANCE_KEYS)
                described.update(checkpoint=name, instance=instance["name"], state=state, checkpoint_healthy=health.get("healthy"))
                known = hosts.setdefault(host, {"instances": [], "host": {}})
                known["instances"].append(described)
                if report.get("host"):
                    known["host"] = report["host"]
        for host, known in hosts.items():
            served = sorted(set(i["checkpoint"] for i in known["instances"]))
            variables = {
                prefix + "instances": known["instances"],
                prefix + "host": known["host"],
                prefix + "control_plane_url": data["url"],
            }
            if len(served) == 1:
                variables["checkpoint_name"] = served[0]
                variables["checkpoint_instances"] = sorted(i["instance"] for i in known["instances"])
            for key, value in variables.items():
                self.inventory.set_variable(host, key, value)
            hostvars = self.inventory.get_host(host).get_vars()
            self._set_composite_vars(self.get_option("compose"), hostvars, host, strict=strict)
            self._add_host_to_composed_groups(self.get_option("groups"), hostvars, host, strict=strict)
            self._add_host_to_keyed_groups(self.get_option("keyed_groups"), hostvars, host, strict=strict)
