# -*- coding: utf-8 -*-

# Copyright (c) Vantage maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""A small client for the control plane's REST API (docs/control-plane.md), for modules.

It uses ``ansible.module_utils.urls.open_url`` (no third-party HTTP library), sends the bearer
token, never follows redirects (the token must not travel to another address), and turns every
failure into a :class:`ControlPlaneError` whose message says what went wrong without ever
containing the token. URLs and names follow the collection's contract (``_contract``): the same
URL policy and name rule as the agent and the control plane.
"""

from __future__ import annotations

import json
import os
from urllib.error import HTTPError
from urllib.parse import quote

from ansible.module_utils.common.text.converters import to_text
from ansible.module_utils.urls import open_url

from ansible_collections.vantage.checkpoint.plugins.module_utils._contract import check, control_plane_url

API_PREFIX = "/api/v1"
MAX_ERROR_TEXT = 300
REDACTED = "********"

# the options of the control_plane doc fragment (plugins/doc_fragments/control_plane.py)
CONTROL_PLANE_ARGUMENT_SPEC = dict(
    control_plane_url=dict(type="str", required=True),
    api_token=dict(type="str", required=True, no_log=True),
    ca_path=dict(type="path"),
    validate_certs=dict(type="bool", default=True),
    timeout=dict(type="int", default=30),
)


class ControlPlaneError(Exception):
    """A request failed. ``status`` is the HTTP status (``None`` when no answer came back)."""

    def __init__(self, msg, status=None, error=None):
        super(ControlPlaneError, self).__init__(msg)
        self.msg = msg
        self.status = status
        self.error = error


def check_name(value, what):
    """A checkpoint or instance name (the contract's rule); a :class:`ValueError` naming ``what`` otherwise."""
    return check("name", value, what)


def api_path(*segments):
    """``/api/v1/<seg>/<seg>...`` with each segment percent-encoded."""
    return API_PREFIX + "".join("/" + quote(str(segment), safe="") for segment in segments)


class ControlPlaneClient:
    """``request(method, path, body)`` → ``(status, data)`` against one control plane."""

    def __init__(self, base_url, token, validate_certs=True, ca_path=None, timeout=30, user_agent="vantage.checkpoint"):
        self.base_url = control_plane_url(base_url)
        self._token = token or ""
        self.validate_certs = validate_certs
        self.ca_path = ca_path
        self.timeout = timeout
        self.user_agent = user_agent

    @classmethod
    def from_module(cls, module):
        """A client built from the control_plane fragment's options; fails the module on bad ones."""
        params = module.params
        try:
            client = cls(
                params["control_plane_url"],
                params["api_token"],
                validate_certs=params["validate_certs"],
                ca_path=params["ca_path"] or None,
                timeout=params["timeout"],
                user_agent="ansible-module/%s" % module._name,
            )
        except ValueError as exc:
            module.fail_json(msg=str(exc))
        if client.ca_path and not os.path.isfile(client.ca_path):
            module.fail_json(msg="ca_path %s does not exist or is not a file" % client.ca_path)
        if not client._token.strip():
            module.fail_json(msg="api_token is empty")
        if params["timeout"] <= 0:
            module.fail_json(msg="timeout must be a positive number of seconds")
        return client

    def scrub(self, text):
        """``text`` with the token replaced (belt and braces: no message should contain it anyway)."""
        text = to_text(text, errors="surrogate_or_replace")
        if self._token:
            text = text.replace(self._token, REDACTED)
        return text

    @staticmethod
    def _decode(raw):
        if not raw:
            return None
        return json.loads(to_text(raw, errors="surrogate_or_strict"))

    def _server_error(self, raw):
        """The server's ``{"error": ..., "field": ...}`` message, or a short excerpt of its answer."""
        try:
            data = self._decode(raw)
        except ValueError:
            data = None
        if isinstance(data, dict) and isinstance(data.get("error"), str):
            message = data["error"]
            if isinstance(data.get("field"), str):
                message = "%s (field %s)" % (message, data["field"])
            return self.scrub(message)
        text = to_text(raw or b"", errors="surrogate_or_replace").strip()
        if len(text) > MAX_ERROR_TEXT:
            text = text[:MAX_ERROR_TEXT] + "..."
        return self.scrub(text) or "no error message"

    def request(self, method, path, body=None, accept=(200, 201)):
        """Send one request; return ``(status, data)`` for a status in ``accept``.

        ``data`` is the decoded JSON answer (``None`` when empty). Any other outcome raises
        :class:`ControlPlaneError`: no answer ("cannot reach the control plane ..."), 401/403
        (authentication/authorization, never showing the token), a redirect, or another status
        (with the server's error message).
        """
        url = self.base_url + path
        what = "%s %s" % (method, path)
        headers = {
            "Authorization": "Bearer %s" % self._token,
            "Accept": "application/json",
        }
        data = None
        if body is not None:
            data = json.dumps(body).encode("utf-8")
            headers["Content-Type"] = "application/json"
        try:
            response = open_url(
                url,
                data=data,
                headers=headers,
                method=method,
                timeout=self.timeout,
                validate_certs=self.validate_certs,
                ca_path=self.ca_path,
                follow_redirects="none",
                http_agent=self.user_agent,
                use_netrc=False,
            )
            status = response.getcode()
            raw = response.read()
        except HTTPError as exc:
            status = exc.code
            try:
                raw = exc.read()
            except Exception:  # pylint: disable=broad-except
                raw = b""
            if status in accept:
                return status, self._decode_or_fail(raw, what, status)
            raise self._http_error(exc, status, raw, what)
        except Exception as exc:  # pylint: disable=broad-except
            # URLError, timeouts, TLS and certificate errors, connection resets: no usable answer
            reason = getattr(exc, "reason", None) or exc
            raise ControlPlaneError(self.scrub("cannot reach the control plane at %s: %s" % (self.base_url, reason)))
        if status not in accept:
            raise ControlPlaneError(
                self.scrub("%s: unexpected answer from the control plane at %s (HTTP %s)" % (what, self.base_url, status)),
                status=status,
            )
        return status, self._decode_or_fail(raw, what, status)

    def _decode_or_fail(self, raw, what, status):
        try:
            return self._decode(raw)
        except ValueError:
            raise ControlPlaneError(
                self.scrub("%s: the control plane at %s answered HTTP %s with a body that is not JSON" % (what, self.base_url, status)),
                status=status,
            )

    def _http_error(self, exc, status, raw, what):
        error = self._server_error(raw)
        if status == 401:
            msg = "authentication failed: the control plane at %s rejected the API token (HTTP 401: %s)" % (self.base_url, error)
        elif status == 403:
            msg = "authorization failed: the API token may not %s at %s (HTTP 403: %s)" % (what, self.base_url, error)
        elif 300 <= status < 400:
            location = exc.headers.get("Location") if exc.headers is not None else None
            msg = (
                "%s: the control plane at %s answered with a redirect (HTTP %s) to %s; redirects are not followed so that "
                "the API token is not sent elsewhere - set control_plane_url to the address that answers"
                % (what, self.base_url, status, location or "an unknown location")
            )
        else:
            msg = "%s failed at the control plane %s: HTTP %s: %s" % (what, self.base_url, status, error)
        return ControlPlaneError(self.scrub(msg), status=status, error=error)
