"""Agent configuration: validation, precedence, typo warnings, proxy selection, CLI exit codes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from vantage.agent import cli
from vantage.agent.config import ConfigError, load_config, state_dir_only
from vantage.agent.transport import proxy_for
from vantage.protocol import TrustStore, generate_key, write_private_key


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    key = generate_key()
    write_private_key(tmp_path / "id.pem", key)
    TrustStore.single_key(generate_key()).save(tmp_path / "trusted.json")
    return {
        "VANTAGE_CONTROL_PLANE_URL": "https://cp.example.com/",
        "VANTAGE_CHECKPOINT": "site-a",
        "VANTAGE_INSTANCE": "inst-1",
        "VANTAGE_IDENTITY_KEY": str(tmp_path / "id.pem"),
        "VANTAGE_TRUSTED_KEYS": str(tmp_path / "trusted.json"),
        "VANTAGE_STATE_DIR": str(tmp_path / "state"),
    }


def test_minimal_configuration_and_defaults(env: dict[str, str]) -> None:
    config, warnings = load_config(env)
    assert warnings == []
    assert config.control_plane_url == "https://cp.example.com"  # trailing slash dropped
    assert config.connect_url == "wss://cp.example.com/api/v1/agent/connect"
    assert config.audience == "site-a/inst-1"
    assert config.max_concurrency == 32
    assert (config.strip_content, config.strip_headers, config.strip_ips) == (False, False, False)
    assert config.ca_bundle is None and config.image_digest is None and config.allow_networks == ()
    assert config.host_name is None


@pytest.mark.parametrize(
    ("variable", "value", "needle"),
    [
        ("VANTAGE_CONTROL_PLANE_URL", "ftp://cp.example.com", "https://"),
        ("VANTAGE_CONTROL_PLANE_URL", "http://cp.example.com", "loopback"),
        ("VANTAGE_CONTROL_PLANE_URL", "https://user:pw@cp.example.com", "credentials"),
        ("VANTAGE_CONTROL_PLANE_URL", "https://cp.example.com:99999", "99999"),
        ("VANTAGE_CHECKPOINT", "Site A", "must be 1 to 63 characters a-z"),
        ("VANTAGE_INSTANCE", "a/b", "must be 1 to 63 characters a-z"),
        ("VANTAGE_IDENTITY_KEY", "/nonexistent/key.pem", "not a readable file"),
        ("VANTAGE_DP_STRIP_IPS", "maybe", "true or false"),
        ("VANTAGE_MAX_CONCURRENCY", "0", "between"),
        ("VANTAGE_MAX_CONCURRENCY", "lots", "integer"),
        ("VANTAGE_IMAGE_DIGEST", "sha256:xyz", "sha256:"),
        ("VANTAGE_HOST_NAME", "host\n", "1 to 253 characters"),
        ("VANTAGE_HOST_NAME", "<b>host</b>", "1 to 253 characters"),
        ("VANTAGE_ALLOW_NETWORKS", "10.0.0.0/8,not-a-net", "not-a-net"),
        ("VANTAGE_ALLOW_NETWORKS", "10.0.0.1/8", "host bits"),
        ("VANTAGE_LOG_LEVEL", "chatty", "DEBUG"),
    ],
)
def test_invalid_values_name_the_variable(
    env: dict[str, str], variable: str, value: str, needle: str
) -> None:
    env[variable] = value
    with pytest.raises(ConfigError) as info:
        load_config(env)
    assert info.value.variable == variable
    assert needle in str(info.value)


@pytest.mark.parametrize(
    "variable", ["VANTAGE_CONTROL_PLANE_URL", "VANTAGE_CHECKPOINT", "VANTAGE_TRUSTED_KEYS"]
)
def test_missing_required_variable(env: dict[str, str], variable: str) -> None:
    del env[variable]
    with pytest.raises(ConfigError, match=f"^{variable}: is required"):
        load_config(env)


def test_plain_http_only_to_loopback(env: dict[str, str]) -> None:
    env["VANTAGE_CONTROL_PLANE_URL"] = "http://127.0.0.1:8080"
    assert load_config(env)[0].connect_url == "ws://127.0.0.1:8080/api/v1/agent/connect"
    env["VANTAGE_CONTROL_PLANE_URL"] = "http://localhost:8080"
    load_config(env)
    env["VANTAGE_CONTROL_PLANE_URL"] = "http://cp.internal:8080"
    with pytest.raises(ConfigError, match=r"^VANTAGE_CONTROL_PLANE_URL: must be an https:// URL"):
        load_config(env)


def test_all_settings(env: dict[str, str], tmp_path: Path) -> None:
    (tmp_path / "ca.pem").write_text("x")
    env.update(
        VANTAGE_CA_BUNDLE=str(tmp_path / "ca.pem"),
        VANTAGE_DP_STRIP_CONTENT="true",
        VANTAGE_DP_STRIP_HEADERS="1",
        VANTAGE_DP_STRIP_IPS="YES",
        VANTAGE_MAX_CONCURRENCY="4",
        VANTAGE_IMAGE_DIGEST="sha256:" + "0" * 64,
        VANTAGE_ALLOW_NETWORKS=" 169.254.10.0/24, fd00::/8 ,",
        VANTAGE_LOG_LEVEL="debug",
        VANTAGE_HOST_NAME="vantage-sandbox-host1",
    )
    config, _ = load_config(env)
    assert config.host_name == "vantage-sandbox-host1"
    assert config.ca_bundle == tmp_path / "ca.pem"
    assert (config.strip_content, config.strip_headers, config.strip_ips) == (True, True, True)
    assert config.max_concurrency == 4
    assert config.allow_networks == ("169.254.10.0/24", "fd00::/8")
    assert config.log_level == "DEBUG"


def test_unknown_variables_warn_with_a_suggestion(env: dict[str, str]) -> None:
    env["VANTAGE_DP_STRIP_IP"] = "true"
    env["VANTAGE_FOO"] = "1"
    env["VANTAGE_CONFIG"] = ""  # known, not a typo
    _, warnings = load_config(env)
    assert len(warnings) == 2
    assert "VANTAGE_DP_STRIP_IP" in warnings[0] and "did you mean VANTAGE_DP_STRIP_IPS" in warnings[0]
    assert "VANTAGE_FOO" in warnings[1]


def test_config_file_with_environment_overriding(env: dict[str, str], tmp_path: Path) -> None:
    path = tmp_path / "agent.json"
    path.write_text(
        json.dumps(
            {
                "control_plane_url": "https://from-file.example.com",
                "checkpoint": "file-cp",
                "instance": "file-inst",
                "identity_key": env["VANTAGE_IDENTITY_KEY"],
                "trusted_keys": env["VANTAGE_TRUSTED_KEYS"],
                "dp_strip_ips": True,
                "allow_networks": ["169.254.1.0/24"],
                "max_concurrency": 8,
                "typo_key": 1,
            }
        )
    )
    config, warnings = load_config({"VANTAGE_INSTANCE": "env-inst"}, path)
    assert config.control_plane_url == "https://from-file.example.com"
    assert config.audience == "file-cp/env-inst"  # the environment wins
    assert config.strip_ips and config.max_concurrency == 8 and config.allow_networks == ("169.254.1.0/24",)
    assert any("typo_key" in w for w in warnings)


def test_bad_config_file_value_names_the_key(env: dict[str, str], tmp_path: Path) -> None:
    path = tmp_path / "agent.json"
    path.write_text(json.dumps({"max_concurrency": "many"}))
    with pytest.raises(ConfigError) as info:
        load_config(env, path)
    assert info.value.variable.startswith("max_concurrency (in ")
    path.write_text("[1, 2]")
    with pytest.raises(ConfigError, match="JSON object"):
        load_config(env, path)


def test_state_dir_only_ignores_the_rest() -> None:
    assert state_dir_only({"VANTAGE_STATE_DIR": "/x/y"}, None) == Path("/x/y")
    assert state_dir_only({}, None) == Path("/var/lib/vantage")


@pytest.mark.parametrize(
    ("env", "url", "expected"),
    [
        ({"HTTPS_PROXY": "http://proxy:3128"}, "https://cp.example.com", "http://proxy:3128"),
        (
            {"https_proxy": "http://lower:3128", "HTTPS_PROXY": "http://upper:3128"},
            "https://cp",
            "http://lower:3128",
        ),
        ({"HTTP_PROXY": "http://proxy:3128"}, "https://cp.example.com", None),
        ({"HTTPS_PROXY": "http://proxy:3128", "NO_PROXY": "example.com"}, "https://cp.example.com", None),
        (
            {"HTTPS_PROXY": "http://proxy:3128", "NO_PROXY": ".example.com:443"},
            "https://cp.example.com:443",
            None,
        ),
        (
            {"HTTPS_PROXY": "http://proxy:3128", "NO_PROXY": "other.com"},
            "https://cp.example.com",
            "http://proxy:3128",
        ),
        ({"HTTPS_PROXY": "http://proxy:3128", "NO_PROXY": "*"}, "https://cp.example.com", None),
        ({}, "https://cp.example.com", None),
    ],
)
def test_proxy_selection(env: dict[str, str], url: str, expected: str | None) -> None:
    assert proxy_for(url, env) == expected


def test_cli_exits_2_naming_the_variable(
    env: dict[str, str], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("VANTAGE_MAX_CONCURRENCY", "-1")
    assert cli.main(["run"]) == 2
    assert "VANTAGE_MAX_CONCURRENCY" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("argv", "parsed"),
    [
        (["run"], ("run", None, None)),
        (["check-config", "--config", "/etc/a.json"], ("check-config", "/etc/a.json", None)),
        (["healthcheck", "--max-age=40", "--config=/c.json"], ("healthcheck", "/c.json", 40.0)),
    ],
)
def test_cli_arguments(argv: list[str], parsed: tuple[str, str | None, float | None]) -> None:
    assert cli.parse_args(argv) == parsed


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        ([], "expected one of run, check-config, healthcheck"),
        (["start"], "expected one of run, check-config, healthcheck, got 'start'"),
        (["run", "--max-age", "5"], "unknown option '--max-age' for run"),
        (["run", "--verbose"], "unknown option '--verbose' for run"),
        (["run", "--config"], "--config needs a value"),
        (["healthcheck", "--max-age", "soon"], "--max-age must be a number of seconds, got 'soon'"),
    ],
)
def test_cli_usage_errors_exit_2(argv: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"vantage agent: {message}\n") and "usage: vantage agent" in err


def test_cli_help(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["--help"]) == 0
    assert capsys.readouterr().out == cli.USAGE


def test_cli_check_config(env: dict[str, str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert cli.main(["check-config"]) == 0
    (tmp_path / "bad.pem").write_text("not a key")
    monkeypatch.setenv("VANTAGE_IDENTITY_KEY", str(tmp_path / "bad.pem"))
    assert cli.main(["check-config"]) == 2
    monkeypatch.setenv("VANTAGE_IDENTITY_KEY", env["VANTAGE_IDENTITY_KEY"])
    (tmp_path / "trusted.json").write_text('{"keys": [{"keyid": "00", "public_key": "AAAA"}]}')
    assert cli.main(["check-config"]) == 2


def test_every_setting_is_documented() -> None:
    from vantage.agent.config import SETTINGS

    doc = (Path(__file__).parents[3] / "docs" / "agent.md").read_text()
    for setting in SETTINGS:
        assert f"| `{setting.env}` | `{setting.field}` |" in doc, setting.env
