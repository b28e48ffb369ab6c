# Copyright (c) Vantage maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""checkpoint_container states each default once: its documentation, its option model and the contract agree."""

from __future__ import annotations

import pytest
import yaml

from ansible_collections.vantage.checkpoint.plugins.module_utils._container import (
    CheckpointSpec,
    SpecError,
    argument_spec,
)
from ansible_collections.vantage.checkpoint.plugins.module_utils._contract import CONTAINER_DEFAULTS
from ansible_collections.vantage.checkpoint.plugins.modules import checkpoint_container

OPTIONS = yaml.safe_load(checkpoint_container.DOCUMENTATION)["options"]


def test_documented_contract_defaults_are_the_contracts():
    for option in ("user", "memory", "cpus", "pids_limit", "health_timeout"):
        assert OPTIONS[option]["default"] == CONTAINER_DEFAULTS[option], option


def test_documented_defaults_are_the_option_models():
    spec = argument_spec()

    def compare(documented, model, where):
        for name, doc in documented.items():
            assert doc.get("default") == model[name].get("default"), where + name
            if doc.get("suboptions"):
                compare(doc["suboptions"], model[name]["options"], where + name + ".")

    compare(OPTIONS, spec, "")
    assert set(OPTIONS) == set(spec)


@pytest.mark.parametrize("url", ["http://cp.example.com", "http://10.0.0.1:8080", "https://user:pw@cp.example.com",
                                 "ftp://cp.example.com"])
def test_a_control_plane_url_outside_the_contract_is_refused_with_its_sentence(url):
    params = dict((name, option.get("default")) for name, option in argument_spec().items())
    params.update(checkpoint="cp", image="sha256:" + "a" * 64, control_plane_url=url, trusted_keys="/k.json",
                  instances=[dict(name="a", identity_key="/a.pem", state_dir="/a")])
    with pytest.raises(SpecError, match=r"http:// only to a loopback address"):
        CheckpointSpec(params)
    assert CheckpointSpec(dict(params, control_plane_url="http://127.0.0.1:8443/")).control_plane_url == "http://127.0.0.1:8443"
