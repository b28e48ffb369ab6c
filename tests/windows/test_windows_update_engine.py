# Copyright (c) Vantage maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""What the controller writes for a Windows host's update task is what the update engine reads."""

from __future__ import annotations

from pathlib import Path

from ansible_collections.vantage.checkpoint.plugins.module_utils import _windows_update

from vantage.update.config import UpdateConfig


def test_the_update_conf_of_a_windows_host_is_read_by_vantage_update(tmp_path: Path) -> None:
    plan = _windows_update.update_plan({
        "checkpoint": "plant", "instances": ["a", "b"], "channel": "stable-ltsc2022", "control_plane_url": "https://cp.example.com:8443",
        "ca": True, "validate_certs": True, "health_timeout": 200, "gate_timeout": 250, "schedule": "daily 04:00", "randomized_delay": "1h",
        "max_interval_days": 14, "enabled": True, "config_dir": "", "state_dir": "", "bin_dir": "C:\\ProgramData\\Vantage\\bin",
        "lock_dir": "C:\\ProgramData\\Vantage\\lock", "docker": "", "os_updates": True, "os_reboot": False, "os_update_hour": 3})
    conf = tmp_path / "update.conf"
    conf.write_text(plan["update_conf"], encoding="utf-8")
    config = UpdateConfig.load(str(conf))
    assert (config.checkpoint, config.channel, config.instances) == ("plant", "stable-ltsc2022", ("a", "b"))
    assert config.docker_host == "npipe:////./pipe/docker_engine"
    assert config.lock_file == "C:\\ProgramData\\Vantage\\lock\\update.lock"
    assert config.ca_file == "C:\\ProgramData\\Vantage\\checkpoints\\plant\\ca.pem"
    assert config.trusted_keys == "C:\\ProgramData\\Vantage\\checkpoints\\plant\\trusted-keys.json"
    assert config.release_file == "C:\\ProgramData\\Vantage\\state\\plant\\release.json"
    assert (config.health_timeout, config.gate_timeout, config.validate_certs) == (200, 250, True)
