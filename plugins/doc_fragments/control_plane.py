# -*- coding: utf-8 -*-

# Copyright (c) Vantage maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations


class ModuleDocFragment:
    """Connection options of the modules that call the control plane's REST API."""

    DOCUMENTATION = r"""
options:
  control_plane_url:
    description:
      - Base URL of the control plane, for example V(https://cp.example.com:8443).
      - The REST API is expected under C(/api/v1/) below it; a trailing slash is ignored.
      - It must be an C(https://) URL without user info, query or fragment; plain C(http://) is accepted only to a
        loopback address (127.0.0.0/8, C(::1), C(localhost)) - the same rule as the agent and every role.
    type: str
    required: true
  api_token:
    description:
      - Bearer API token for the control plane.
      - Its scope must allow the calls the module makes (see the module's notes).
      - The token is never included in results, messages or logs.
    type: str
    required: true
  ca_path:
    description:
      - PEM file of the CA certificates that sign the control plane's TLS certificate.
      - When not set, the system trust store is used.
    type: path
  validate_certs:
    description:
      - Whether to verify the control plane's TLS certificate.
      - Only set to V(false) on throw-away test systems; the API token is sent to whoever answers.
    type: bool
    default: true
  timeout:
    description:
      - Seconds to wait for each HTTP request to the control plane.
    type: int
    default: 30
notes:
  - Redirects are not followed, so that the API token is never sent to another address.
    Set O(control_plane_url) to the address that answers.
  - The C(HTTPS_PROXY) / C(https_proxy) environment variables of the managed host are honoured.
"""
