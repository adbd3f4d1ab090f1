"""Configuration: file < environment < flags, and a clear error for every bad value."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from worklens.agent import config
from worklens.agent.config import ConfigError, load
from worklens.agent.config_model import AgentConfigModel


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


# --- the direct check agrees with the pydantic model -------------------------------

odd = st.sampled_from([None, True, False, 0, 1.5, b"x", [], {}, "\udcff"])


def numeric(low: float, high: float | None) -> st.SearchStrategy[Any]:
    edges: list[float] = [low, low - 1e-9, low + 1e-9, 0, -1, 1e30]
    if high is not None:
        edges += [high, high + 1e-9, high - 1e-9]
    return st.one_of(
        st.sampled_from(edges),
        st.sampled_from(edges).map(repr),
        st.sampled_from(edges).map(lambda v: str(int(v)) if v == int(v) else repr(v)),
        st.integers(-10, 10**7),
        st.integers(-10, 10**7).map(str),
        st.floats(allow_nan=True, allow_infinity=True),
        st.from_regex(
            r"\s?[+-]?[0-9_]{0,5}(\.[0-9_]{0,3})?([eE][+-]?[0-9]{1,2})?\s?", fullmatch=True
        ),
        st.sampled_from(["inf", "nan", "٣", "1e3", "0x10", " 2 ", "2.", ".5", "1_0"]),
        odd,
    )


values: dict[str, st.SearchStrategy[Any]] = {
    "server": st.one_of(
        st.sampled_from(
            ["http://s:1", "https://x.example/", "HTTP://A//", "ftp://x", "http://", "http:///x"]
        ),
        st.text(max_size=12),
        odd,
    ),
    "enroll_secret": st.one_of(st.text(max_size=8), odd),
    "state_dir": st.one_of(st.text(max_size=8), st.text(max_size=8).map(Path), odd),
    "transport": st.one_of(st.sampled_from(["auto", "websocket", "http", "HTTP", ""]), odd),
    "log_level": st.one_of(st.sampled_from(["debug", "info", "warning", "error", "x"]), odd),
    "aw_host": st.one_of(
        st.sampled_from(
            ["127.0.0.1", "127.1.2.3", "::1", "0:0::1", "0.0.0.0", "localhost", "10.0.0.1", "::"]
        ),
        st.sampled_from(["127.0.0.01", " 127.0.0.1", "::ffff:127.0.0.1", "::1%lo", ""]),
        st.text(max_size=8),
        odd,
    ),
    "collectors": st.one_of(
        st.lists(st.sampled_from(["focus", "idle", "host", " host", "keylogger"]), max_size=4),
        st.lists(st.sampled_from(["focus", "idle", "host", " idle", ""]), max_size=4).map(",".join),
        st.tuples(st.sampled_from(["focus", "host"])),
        st.text(max_size=8),
        st.sampled_from([["focus", 1], ("idle", None), 5, None]),
    ),
    **{name: numeric(*bounds) for name, bounds in config.BOUNDS.items()},
}


def near_bounds(name: str, low: float, high: float | None) -> st.SearchStrategy[Any]:
    top = 10**7 if high is None else high
    inside = st.integers(int(low), int(top)) if name in config._INTS else st.floats(low, top)
    return st.one_of(
        inside, inside.map(str), st.sampled_from([low, top]), st.sampled_from([low, top]).map(str)
    )


plausible: dict[str, st.SearchStrategy[Any]] = {
    "server": st.sampled_from(["http://s:1", "https://x.example/", "http://127.0.0.1:8420//"]),
    "enroll_secret": st.none() | st.text(max_size=8),
    "state_dir": st.text(max_size=8) | st.text(max_size=8).map(Path),
    "transport": st.sampled_from(["auto", "websocket", "http"]),
    "log_level": st.sampled_from(["debug", "info", "warning", "error"]),
    "aw_host": st.sampled_from(["127.0.0.1", "127.0.0.2", "::1"]),
    "collectors": st.lists(st.sampled_from(["focus", "idle", "host"]), max_size=3)
    | st.lists(st.sampled_from(["focus", " idle ", "host", ""]), max_size=3).map(",".join),
    **{name: near_bounds(name, *bounds) for name, bounds in config.BOUNDS.items()},
}


def settings_from(strategies: dict[str, st.SearchStrategy[Any]]) -> st.SearchStrategy[Any]:
    return st.fixed_dictionaries(
        {"server": strategies["server"]},
        optional={name: strategy for name, strategy in strategies.items() if name != "server"},
    )


# Mostly ordinary settings with now and then an odd one, and anything at all.
configs = st.one_of(
    settings_from(plausible),
    st.tuples(settings_from(plausible), settings_from(values)).map(
        lambda pair: {**pair[0], **dict(list(pair[1].items())[1:3])}
    ),
    settings_from(values),
)


@settings(max_examples=3000, deadline=None)
@given(configs)
def test_what_the_direct_check_accepts_the_model_accepts_alike(merged: dict[str, Any]) -> None:
    direct = config._direct(merged)
    if direct is None:
        return  # the model decides, as load() would ask it to
    model = AgentConfigModel.model_validate(merged)
    assert {n: getattr(model, n) for n in config.FIELDS} == dataclasses.asdict(direct)
    assert all(type(getattr(model, n)) is type(getattr(direct, n)) for n in config.FIELDS)


def test_ordinary_settings_take_the_direct_path(tmp_path: Path) -> None:
    f = tmp_path / "agent.toml"
    f.write_text(
        '[agent]\nserver = "https://worklens.example.com/"\npoll_interval_s = 2\n'
        'batch_size = 100\ncollectors = ["focus", "host"]\nstate_dir = "/var/lib/wl"\n'
    )
    env = {"WORKLENS_AGENT_IDLE_THRESHOLD_S": "120.5", "WORKLENS_AGENT_TRANSPORT": "websocket"}
    cfg = config._direct({**config._from_file(f), **config._from_env(env)})
    assert cfg is not None
    assert cfg == config.load(f, {}, env)
    assert cfg.server == "https://worklens.example.com" and cfg.poll_interval_s == 2.0
    assert cfg.idle_threshold_s == 120.5 and cfg.collectors == ("focus", "host")


# --- the ActivityWatch API's settings ----------------------------------------------


def test_aw_api_settings_and_their_defaults(tmp_path: Path) -> None:
    cfg = load(None, {}, {"WORKLENS_AGENT_SERVER": "http://s:1"})
    assert (cfg.aw_port, cfg.aw_host, cfg.aw_retention_days) == (5600, "127.0.0.1", 7.0)
    assert cfg.aw_store_path == cfg.state_dir / "aw.db"
    f = tmp_path / "agent.toml"
    f.write_text('server = "http://s:1"\naw_port = 5601\naw_host = "::1"\naw_retention_days = 2\n')
    cfg = load(f, {"aw_port": 5602}, {"WORKLENS_AGENT_AW_PORT": "0"})
    assert (cfg.aw_port, cfg.aw_host, cfg.aw_retention_days) == (5602, "::1", 2.0)
    assert load(f, {}, {"WORKLENS_AGENT_AW_PORT": "0"}).aw_port == 0  # 0 = off


@pytest.mark.parametrize("host", ["0.0.0.0", "192.168.1.20", "::", "localhost", "example.com", ""])
def test_the_aw_api_listens_on_loopback_only(host: str) -> None:
    with pytest.raises(ConfigError) as err:
        load(None, {"aw_host": host}, {"WORKLENS_AGENT_SERVER": "http://s:1"})
    assert f"aw_host = {host!r} (from command line)" in str(err.value)
    assert "loopback" in str(err.value)


@pytest.mark.parametrize(
    ("value", "needle"),
    [("65536", "less than or equal to 65535"), ("-1", "greater than or equal to 0"), ("x", "")],
)
def test_bad_aw_ports_are_refused(value: str, needle: str) -> None:
    with pytest.raises(ConfigError) as err:
        load(None, {}, {"WORKLENS_AGENT_SERVER": "http://s:1", "WORKLENS_AGENT_AW_PORT": value})
    message = str(err.value)
    assert "aw_port" in message and "WORKLENS_AGENT_AW_PORT" in message and needle in message
