"""The settings the server pushes: precedence over the local configuration,
going back to it, surviving a restart, and what a bad saved file does."""

from __future__ import annotations

import json
import logging
import stat
from pathlib import Path

import pytest

from worklens.agent import config
from worklens.agent.control import Effective, PushedSettings
from worklens.protocol import wire

SERVER = "http://127.0.0.1:9"


def local(tmp_path: Path, **flags: object) -> config.AgentConfig:
    """A configuration from a file, the environment and flags, as the agent loads it."""
    path = tmp_path / "agent.toml"
    path.write_text(f'server = "{SERVER}"\nidle_threshold_s = 120\nhost_interval_s = 20\n')
    env = {"WORKLENS_AGENT_POLL_INTERVAL_S": "0.5", "WORKLENS_AGENT_STATE_DIR": str(tmp_path)}
    return config.load(path, dict(flags), env)


def test_server_values_override_file_environment_and_flags_for_their_settings_only(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    cfg = local(tmp_path, send_interval_s=0.25)
    pushed = PushedSettings(cfg)
    assert pushed.current == Effective(120.0, 0.5, 20.0, 0.25) and pushed.version == 0
    caplog.set_level(logging.INFO, "worklens.agent")
    pushed.apply(wire.AgentSettings(3, idle_threshold_s=60, send_interval_s=5))
    # idle from the server over the file, send over the flag; the rest stays local.
    assert pushed.current == Effective(60.0, 0.5, 20.0, 5.0) and pushed.version == 3
    assert "agent settings v3 (server): idle_threshold_s 120 -> 60 (server)" in caplog.text
    assert "send_interval_s 0.25 -> 5 (server)" in caplog.text
    # Null for a setting: back to the local value.
    pushed.apply(wire.AgentSettings(4, idle_threshold_s=60))
    assert pushed.current == Effective(60.0, 0.5, 20.0, 0.25)
    assert "send_interval_s 5 -> 0.25 (local config)" in caplog.text


def test_saved_settings_apply_after_a_restart_and_only_for_the_same_server(
    tmp_path: Path,
) -> None:
    cfg = local(tmp_path)
    PushedSettings(cfg).apply(wire.AgentSettings(7, host_interval_s=2.5))
    saved = tmp_path / "settings.json"
    assert stat.S_IMODE(saved.stat().st_mode) == 0o600
    assert json.loads(saved.read_text()) == {
        "server": SERVER,
        "version": 7,
        "values": {"host_interval_s": 2.5},
    }
    again = PushedSettings(cfg)
    again.load()
    assert again.version == 7 and again.current.host_interval_s == 2.5
    other = PushedSettings(config.load(None, {"server": "http://other:1", "state_dir": tmp_path}))
    other.load()
    assert other.version == 0 and other.current.host_interval_s == 30.0
    # Enrolling anew forgets them (and the file).
    again.forget()
    assert again.version == 0 and again.current.host_interval_s == 20.0
    assert not saved.exists()


@pytest.mark.parametrize(
    "text",
    [
        "{not json",
        "[]",
        json.dumps({"server": SERVER, "version": -1, "values": {}}),
        json.dumps({"server": SERVER, "version": 2, "values": []}),
    ],
)
def test_a_bad_saved_file_is_ignored(tmp_path: Path, text: str) -> None:
    (tmp_path / "settings.json").write_text(text)
    pushed = PushedSettings(local(tmp_path))
    pushed.load()
    assert pushed.version == 0 and pushed.current == pushed.local


def test_saved_values_out_of_bounds_are_left_out(tmp_path: Path) -> None:
    body = {
        "server": SERVER,
        "version": 2,
        "values": {"poll_interval_s": 0.0, "host_interval_s": 5},
    }
    (tmp_path / "settings.json").write_text(json.dumps(body))
    pushed = PushedSettings(local(tmp_path))
    pushed.load()
    assert pushed.version == 2 and pushed.current == Effective(120.0, 0.5, 5.0, 2.0)


def test_the_pushed_settings_have_the_configs_bounds() -> None:
    for name, bounds in wire.PUSHED_SETTINGS.items():
        assert config.BOUNDS[name] == bounds
        assert name in config.FIELDS
