"""Session-wide test wiring.

* In CI (``CI=true``) or with ``WORKLENS_REQUIRE_REAL=1`` a skipped test is a
  failure: every capability must be proven against the real component, and a
  missing PostgreSQL or X server must not turn into a green run.
* ``postgres_url`` (from :mod:`tests.pg`) and ``db_url``, which runs a test once
  on SQLite and once on PostgreSQL.
"""

from __future__ import annotations

import os
from collections.abc import Generator
from pathlib import Path

import pytest

pytest_plugins = ["tests.pg", "tests.xserver", "tests.browser", "tests.redis_server"]

_TRUTHY = {"1", "true", "yes"}


def skips_are_failures() -> bool:
    return (
        os.environ.get("CI", "").strip().lower() in _TRUTHY
        or os.environ.get("WORKLENS_REQUIRE_REAL", "").strip().lower() in _TRUTHY
    )


def _skip_reason(longrepr: object) -> str:
    # A skip's longrepr is (path, 1-based lineno, "Skipped: <reason>").
    if isinstance(longrepr, tuple) and len(longrepr) == 3:
        path, lineno, message = longrepr
        reason = str(message).removeprefix("Skipped: ")
        return f"{reason} ({path}:{lineno})"
    return str(longrepr)


def _fail_skip(report: pytest.TestReport | pytest.CollectReport, what: str) -> None:
    reason = _skip_reason(report.longrepr)
    report.outcome = "failed"
    report.longrepr = (
        f"skipped in CI: {reason}\n"
        f"This {what} was skipped, and CI=true / WORKLENS_REQUIRE_REAL=1 forbids skips: "
        "install the missing component (see scripts/test) instead of skipping."
    )


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    # Skips from fixtures (e.g. no PostgreSQL) and skip marks arrive in the setup
    # phase, pytest.skip() in the test body in the call phase: both count.
    # An xfail is also reported as "skipped" but carries `wasxfail`: leave it.
    if report.skipped and not hasattr(report, "wasxfail") and skips_are_failures():
        _fail_skip(report, "test")
    return report


@pytest.hookimpl(wrapper=True)
def pytest_make_collect_report(
    collector: pytest.Collector,
) -> Generator[None, pytest.CollectReport, pytest.CollectReport]:
    report = yield
    # Module-level pytest.skip(allow_module_level=True) / importorskip skip a whole
    # file at collection time, before any runtest report exists.
    if report.skipped and skips_are_failures():
        _fail_skip(report, "module")
    return report


@pytest.fixture(
    params=["sqlite", pytest.param("postgresql", marks=pytest.mark.real)],
)
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A SQLAlchemy URL of an empty database: the test runs once per back end."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'worklens.db'}"
    # Imported here, not at the top: pytest_plugins must import tests.pg first so
    # that its asserts get rewritten.
    from tests.pg import fresh_pg_database

    # Looked up lazily so SQLite-only runs never start PostgreSQL.
    return fresh_pg_database(request.getfixturevalue("postgres_url"))
