"""Configuration: file < environment < flags, and a clear error for every bad value."""

from __future__ import annotations

from pathlib import Path

import pytest

from worklens.agent.config import ConfigError, load


def test_precedence_file_then_env_then_flags(tmp_path: Path) -> None:
    f = tmp_path / "agent.toml"
    f.write_text('[agent]\nserver = "http://file:1"\npoll_interval_s = 5\nidle_threshold_s = 100\n')
    env = {"WORKLENS_AGENT_POLL_INTERVAL_S": "2", "WORKLENS_AGENT_SERVER": "http://env:2"}
    cfg = load(f, {"server": "https://flag:3/", "poll_interval_s": None}, env)
    assert cfg.server == "https://flag:3"
    assert cfg.poll_interval_s == 2.0
    assert cfg.idle_threshold_s == 100.0
    assert cfg.transport == "auto" and cfg.collectors == ("focus", "idle", "host")


@pytest.mark.parametrize(
    ("env", "needle"),
    [
        (
            {"WORKLENS_AGENT_POLL_INTERVAL_S": "fast"},
            "poll_interval_s = 'fast' (from environment variable WORKLENS_AGENT_POLL_INTERVAL_S)",
        ),
        ({"WORKLENS_AGENT_POLL_INTERVAL_S": "0"}, "greater than or equal to 0.1"),
        ({"WORKLENS_AGENT_TRANSPORT": "carrier-pigeon"}, "transport = 'carrier-pigeon'"),
        ({"WORKLENS_AGENT_COLLECTORS": "focus,keylogger"}, "unknown collector(s) ['keylogger']"),
        ({"WORKLENS_AGENT_SERVER": "ftp://x"}, "server = 'ftp://x'"),
    ],
)
def test_bad_values_name_the_setting_and_the_source(env: dict[str, str], needle: str) -> None:
    env = {"WORKLENS_AGENT_SERVER": "http://s:1", **env}
    with pytest.raises(ConfigError) as err:
        load(None, {}, env)
    assert needle in str(err.value)


def test_file_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load(tmp_path / "missing.toml", {"server": "http://s"}, {})
    bad = tmp_path / "bad.toml"
    bad.write_text("server = \n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load(bad, {}, {})
    unknown = tmp_path / "unknown.toml"
    unknown.write_text('server = "http://s"\npol_interval = 3\n')
    with pytest.raises(ConfigError, match=r"unknown setting.*pol_interval"):
        load(unknown, {}, {})


def test_missing_server_and_hidden_secret() -> None:
    with pytest.raises(ConfigError, match="no server URL"):
        load(None, {}, {})
    with pytest.raises(ConfigError) as err:
        load(None, {"server": "http://s", "enroll_secret": 5}, {})
    assert "<hidden>" in str(err.value)
