# -*- coding: utf-8 -*-

# Copyright (c) Vantage maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Make the pinned checkpoint image present on a Windows host and refuse one that does not match it."""

from __future__ import annotations

import json

from ansible_collections.vantage.checkpoint.plugins.module_utils import _windows_host
from ansible_collections.vantage.checkpoint.plugins.plugin_utils._windows_action import WindowsAction


class ActionModule(WindowsAction):
    ARGUMENT_SPEC = dict(
        image=dict(type="str", required=True),
        image_source=dict(type="str", default="checkpoint_image"),
        docker=dict(type="str", default=""),
        facts=dict(type="dict"),
    )

    def act(self, args, task_vars):
        host = _windows_host.host_platform(self.facts(args, task_vars))
        _windows_host.select_image(host["ltsc"], args["image"], {})  # refuses an unpinned reference
        result = self.run_module("vantage.checkpoint.win_checkpoint_image",
                                 dict(image=args["image"], docker=args["docker"] or None), task_vars)
        if result.get("inspect") is None:  # check mode, image not pulled yet: the real run checks it
            return {"changed": True, "image": args["image"], "verified": False}
        try:
            described = json.loads(result["inspect"])
        except ValueError:
            raise _windows_host.WindowsHostError(["docker image inspect did not print JSON"])
        if not isinstance(described, list) or len(described) != 1:
            raise _windows_host.WindowsHostError(["docker image inspect %s did not describe one image" % args["image"]])
        checked = _windows_host.check_image(described[0], args["image"], host, args["image_source"])
        return {"changed": result.get("changed", False), "pulled": result.get("pulled", False), "image": args["image"],
                "id": checked["id"], "os_version": checked["os_version"], "verified": True}
