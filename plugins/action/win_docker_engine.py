# -*- coding: utf-8 -*-

# Copyright (c) Vantage maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Install Docker's static Windows engine, pinned by version and SHA-256, only from a verified archive.

The archive reaches the host in a temporary directory and is checked before anything is
installed: a file from the controller (``src``) is hashed here before it is even copied; a
download (``url``) is checked by ``ansible.windows.win_get_url`` before it leaves the download
directory. The PowerShell module then checks it once more and installs it. A mismatch anywhere
installs nothing.
"""

from __future__ import annotations

import hashlib

from ansible_collections.vantage.checkpoint.plugins.module_utils import _windows_engine, _windows_host
from ansible_collections.vantage.checkpoint.plugins.plugin_utils._windows_action import WindowsAction


def file_sha256(path):
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


class ActionModule(WindowsAction):
    TRANSFERS_FILES = False  # the archive goes over only when it is needed: see act()
    ARGUMENT_SPEC = dict(
        version=dict(type="str", required=True),
        sha256=dict(type="str", required=True),
        url=dict(type="str", default=""),
        src=dict(type="str", default=""),
        install_dir=dict(type="str", default="C:\\Program Files\\docker"),
    )

    def act(self, args, task_vars):
        engine = _windows_host.engine_settings(dict(
            engine_source="static", engine_version=args["version"], engine_sha256=args["sha256"],
            engine_url=args["url"] or _windows_host.DEFAULT_ENGINE_URL.format(version=args["version"]),
            engine_src=args["src"], install_dir=args["install_dir"]))
        info = self.run_module("vantage.checkpoint.win_docker_engine_info",
                               dict(install_dir=engine["install_dir"], query_engine=False), task_vars)
        current, reason = _windows_engine.installed_engine(info, engine)
        registered = (info.get("service") or {}).get("exists", False)
        if current and registered:
            return {"changed": False, "msg": reason, "version": engine["version"]}
        if self._task.check_mode:
            return {"changed": True, "msg": "would install: %s" % reason, "version": engine["version"]}

        local = None
        if engine["src"]:
            local = self._find_needle("files", engine["src"])
            actual = file_sha256(local)
            if actual != engine["sha256"]:
                raise _windows_host.WindowsHostError([
                    "docker_host_windows_engine_src %s has SHA-256 %s, not the pinned docker_host_windows_engine_sha256 %s; "
                    "nothing was copied to the host" % (local, actual, engine["sha256"])])
        if self._connection._shell.tmpdir is None:
            self._connection._shell.tmpdir = self._make_tmp_path()
        archive = self._connection._shell.join_path(self._connection._shell.tmpdir, "docker-%s.zip" % engine["version"])
        try:
            if local:
                self._transfer_file(local, archive)
            else:
                self.run_module("ansible.windows.win_get_url", dict(
                    url=engine["url"], dest=archive, checksum=engine["sha256"], checksum_algorithm="sha256",
                    force=True), task_vars)
            installed = self.run_module("vantage.checkpoint.win_docker_engine", dict(
                archive=archive, sha256=engine["sha256"], version=engine["version"],
                install_dir=engine["install_dir"]), task_vars)
        finally:
            self._remove_tmp_path(self._connection._shell.tmpdir)
        return {
            "changed": installed.get("changed", False),
            "msg": "installed: %s" % reason,
            "version": engine["version"],
            "files": installed.get("files"),
            "changed_files": installed.get("changed_files"),
            "service_registered": installed.get("service_registered", False),
            "stopped_service": installed.get("stopped_service", False),
        }
