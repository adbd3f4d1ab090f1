"""Server settings: one object per process, from WORKLENS_* environment variables."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


def default_data_dir() -> Path:
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "worklens"


def default_database_url() -> str:
    return f"sqlite:///{default_data_dir() / 'worklens.db'}"


class ServerSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="WORKLENS_", extra="ignore")

    database_url: str = Field(default_factory=default_database_url)
    host: str = "127.0.0.1"
    port: int = Field(default=8420, ge=1, le=65535)
    # Largest accepted request body, after decompression.
    max_body_bytes: int = Field(default=8 * 1024 * 1024, ge=1024)
    # Per-token request budget: sustained rate and burst.
    rate_per_second: float = Field(default=50.0, gt=0)
    rate_burst: int = Field(default=200, ge=1)
    # A device not heard from for this long is offline.
    offline_after_s: float = Field(default=90.0, gt=0)
    rollup_interval_s: float = Field(default=5.0, gt=0)
    # Raw events of days that ended more than this many days ago are packed into
    # one compressed row per bucket and day (store/compaction.py), checked every
    # compact_interval_s.
    compact_after_days: float = Field(default=2.0, ge=0)
    compact_interval_s: float = Field(default=600.0, gt=0)
    # Longest range a report (time, series, heatmap) may ask for: bounds the
    # work one request can cause.
    max_report_days: int = Field(default=400, ge=1, le=3660)
    # How changes reach open dashboards (server/live.py): "local" within one
    # process, "db" through the database for several processes on one
    # database, "redis" through Redis pub/sub (several server instances);
    # "auto": "redis" when redis_url is set, else "db" when `worklens server
    # --workers N` (N > 1) started this process, else "local".
    live_bus: Literal["auto", "local", "db", "redis"] = "auto"
    redis_url: str | None = None  # e.g. redis://127.0.0.1:6379/0
    live_poll_s: float = Field(default=0.1, gt=0, le=5)
    # Set by `worklens server --workers N` for its processes.
    workers: int = Field(default=1, ge=1)
    # Serve cookies with the Secure flag (set when TLS terminates in front).
    secure_cookies: bool = False
