# Copyright (c) Vantage maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""_control_plane: URLs, paths, and the client's answers and errors against a real HTTP server."""

from __future__ import annotations

import re

import pytest

from ansible_collections.vantage.checkpoint.plugins.module_utils._contract import RULES, URL_RULE
from ansible_collections.vantage.checkpoint.plugins.module_utils._control_plane import (
    ControlPlaneClient,
    ControlPlaneError,
    api_path,
    check_name,
)


def test_paths_names_and_urls():
    assert api_path("checkpoints", "office", "instances", "a") == "/api/v1/checkpoints/office/instances/a"
    assert api_path("checkpoints", "a/../b") == "/api/v1/checkpoints/a%2F..%2Fb"
    assert ControlPlaneClient(" https://cp.example.com:8443/ ", "t").base_url == "https://cp.example.com:8443"
    assert ControlPlaneClient("https://cp.example.com/prefix/", "t").base_url == "https://cp.example.com/prefix"
    assert ControlPlaneClient("http://127.0.0.1:8080/", "t").base_url == "http://127.0.0.1:8080"
    assert check_name("office-1", "checkpoint") == "office-1"
    for bad in ("", "-a", "A", "a_b", "a" * 64, "a/b", "a\n", None):
        with pytest.raises(ValueError, match="^checkpoint must be %s, got " % re.escape(RULES["name"][1])):
            check_name(bad, "checkpoint")


@pytest.mark.parametrize(
    "url",
    ["cp.example.com", "ftp://cp", "https://", "https://u:p@cp", "https://cp/?x=1", "", None,
     "http://cp.example.com", "http://10.0.0.5:8080", "http://[2001:db8::1]:8080"],
)
def test_the_client_refuses_what_the_url_policy_refuses(url):
    with pytest.raises(ValueError, match="^control_plane_url must be %s, got " % re.escape(URL_RULE)):
        ControlPlaneClient(url, "t")


def test_request_returns_status_and_json(control_plane):
    client = ControlPlaneClient(control_plane.url, control_plane.GOOD_TOKEN, timeout=5)
    assert client.request("GET", "/api/v1/checkpoints/office", accept=(200, 404)) == (
        404, {"error": "unknown checkpoint 'office'", "field": "checkpoint"})
    status, data = client.request("PUT", "/api/v1/checkpoints/office", body={})
    assert status == 201 and data["name"] == "office"
    method, path, body, auth = control_plane.requests[-1]
    assert (method, body, auth) == ("PUT", {}, "Bearer " + control_plane.GOOD_TOKEN)


def test_unaccepted_status_raises_with_the_servers_message(control_plane):
    client = ControlPlaneClient(control_plane.url, control_plane.GOOD_TOKEN, timeout=5)
    with pytest.raises(ControlPlaneError) as info:
        client.request("GET", "/api/v1/checkpoints/office")
    assert info.value.status == 404
    assert "HTTP 404" in info.value.msg and "unknown checkpoint 'office' (field checkpoint)" in info.value.msg


def test_errors_never_contain_the_token_even_if_the_server_echoes_it(control_plane):
    token = control_plane.GOOD_TOKEN
    control_plane.fail_with = (400, {"error": "bad header: Bearer %s" % token})
    client = ControlPlaneClient(control_plane.url, token, timeout=5)
    with pytest.raises(ControlPlaneError) as info:
        client.request("GET", "/api/v1/checkpoints/office")
    assert token not in info.value.msg and token not in str(info.value) and "********" in info.value.msg


def test_authentication_and_authorization_errors(control_plane):
    with pytest.raises(ControlPlaneError) as info:
        ControlPlaneClient(control_plane.url, "not-the-token", timeout=5).request("GET", "/api/v1/checkpoints/x")
    assert info.value.status == 401 and info.value.msg.startswith("authentication failed") and "not-the-token" not in info.value.msg
    with pytest.raises(ControlPlaneError) as info:
        ControlPlaneClient(control_plane.url, control_plane.READ_TOKEN, timeout=5).request("PUT", "/api/v1/checkpoints/x", body={})
    assert info.value.status == 403 and info.value.msg.startswith("authorization failed") and "PUT /api/v1/checkpoints/x" in info.value.msg


def test_non_json_success_is_an_error(control_plane):
    client = ControlPlaneClient(control_plane.url, control_plane.GOOD_TOKEN, timeout=5)
    client._decode(b"")  # empty bodies are fine
    with pytest.raises(ControlPlaneError) as info:
        client._decode_or_fail(b"<html>", "GET /x", 200)
    assert "not JSON" in info.value.msg
