#!/usr/bin/python
# -*- coding: utf-8 -*-

# Copyright (c) Vantage maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# An action plugin (plugins/action/win_docker_engine.py) drives the PowerShell module
# win_docker_engine.ps1; this file only documents the task's options.

from __future__ import annotations

DOCUMENTATION = r"""
module: win_docker_engine
short_description: Install Docker's static Windows engine pinned by version and SHA-256
version_added: 0.1.0
description:
  - Installs C(docker.exe) and C(dockerd.exe) from Docker's static Windows archive into O(install_dir) and registers
    the C(docker) service (C(dockerd --register-service)); does not start it.
  - The archive must have the SHA-256 O(sha256). A local O(src) is hashed on the controller before it is copied; a
    download from O(url) is checked by M(ansible.windows.win_get_url) in its download directory. The host checks it
    once more before extracting it into a temporary directory. A mismatch installs nothing.
  - Nothing is downloaded when the install record in O(install_dir) names this version and archive and the binaries
    still have the recorded hashes.
  - Replacing the binaries of a running engine stops the service first; its containers stop with it.
  - Fails when another engine is registered as the C(docker) service; keep such an engine with
    C(docker_host_windows_engine_source=preinstalled).
author:
  - Vantage maintainers (@vantage)
extends_documentation_fragment:
  - vantage.checkpoint.attributes
attributes:
  check_mode:
    support: full
    details:
      - Check mode reports whether an install is needed without downloading or copying anything.
  diff_mode:
    support: none
  platform:
    support: full
    platforms: windows
options:
  version:
    description: Docker engine version, for example V(27.5.1).
    type: str
    required: true
  sha256:
    description: SHA-256 (64 hex digits) of the archive; see docs/windows.md for how to obtain it.
    type: str
    required: true
  url:
    description:
      - HTTPS URL of the archive. Empty means Docker's, C(https://download.docker.com/win/static/stable/x86_64/docker-<version>.zip).
    type: str
    default: ""
  src:
    description:
      - The archive as a file on the controller (air-gapped sites); wins over O(url).
    type: str
    default: ""
  install_dir:
    description: Directory of the engine's binaries.
    type: str
    default: C:\Program Files\docker
seealso:
  - module: vantage.checkpoint.win_docker_engine_info
"""

EXAMPLES = r"""
- name: Install Docker CE 27.5.1
  vantage.checkpoint.win_docker_engine:
    version: 27.5.1
    sha256: "{{ docker_host_windows_engine_sha256 }}"
"""

RETURN = r"""
version:
  description: The pinned version.
  returned: always
  type: str
  sample: 27.5.1
files:
  description: SHA-256 of each file installed from the archive.
  returned: when the archive was installed
  type: dict
changed_files:
  description: Files that were copied because they differed.
  returned: when the archive was installed
  type: list
  elements: str
service_registered:
  description: Whether the C(docker) service was registered.
  returned: when the archive was installed
  type: bool
stopped_service:
  description: Whether the running engine was stopped to replace its binaries.
  returned: when the archive was installed
  type: bool
"""
