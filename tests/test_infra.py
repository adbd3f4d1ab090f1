"""The test infrastructure itself works against real components."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import sqlalchemy as sa

from tests.pg import fresh_pg_database

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.real
def test_postgres_url_points_at_a_running_postgresql_server(postgres_url: str) -> None:
    engine = sa.create_engine(postgres_url)
    try:
        with engine.connect() as conn:
            version = conn.execute(sa.text("select version()")).scalar_one()
            database = conn.execute(sa.text("select current_database()")).scalar_one()
            user = conn.execute(sa.text("select current_user")).scalar_one()
    finally:
        engine.dispose()
    assert version.startswith("PostgreSQL ")
    assert database == "worklens_test"
    assert user == "worklens"
    assert postgres_url.startswith("postgresql+psycopg://worklens:")
    assert "@127.0.0.1:" in postgres_url


@pytest.mark.real
def test_postgres_role_requires_its_password(postgres_url: str) -> None:
    wrong = sa.engine.make_url(postgres_url).set(password="not-the-password")
    engine = sa.create_engine(wrong)
    try:
        with pytest.raises(sa.exc.OperationalError, match="password authentication failed"):
            engine.connect()
    finally:
        engine.dispose()


@pytest.mark.real
def test_fresh_databases_are_separate(postgres_url: str) -> None:
    first, second = fresh_pg_database(postgres_url), fresh_pg_database(postgres_url)
    assert first != second
    one, two = sa.create_engine(first), sa.create_engine(second)
    try:
        with one.begin() as conn:
            conn.execute(sa.text("create table only_in_first (x int)"))
            conn.execute(sa.text("insert into only_in_first values (1)"))
        with one.connect() as conn:
            assert conn.execute(sa.text("select count(*) from only_in_first")).scalar_one() == 1
        assert sa.inspect(two).get_table_names() == []
        with two.connect() as conn:
            current = conn.execute(sa.text("select current_database()")).scalar_one()
        assert current == sa.engine.make_url(second).database
    finally:
        one.dispose()
        two.dispose()


def test_db_url_gives_an_empty_writable_database_per_backend(
    db_url: str, request: pytest.FixtureRequest
) -> None:
    backend = request.node.callspec.params["db_url"]
    engine = sa.create_engine(db_url)
    try:
        assert engine.dialect.name == backend
        assert sa.inspect(engine).get_table_names() == []
        with engine.begin() as conn:
            conn.execute(sa.text("create table t (x int)"))
            conn.execute(sa.text("insert into t values (41), (1)"))
        with engine.connect() as conn:
            assert conn.execute(sa.text("select sum(x) from t")).scalar_one() == 42
    finally:
        engine.dispose()


# --- CI turns skips into failures ---------------------------------------------

SAMPLE_TESTS = textwrap.dedent(
    """
    import pytest

    @pytest.fixture
    def component():
        pytest.skip("component missing in fixture")

    def test_passes():
        assert True

    def test_skips_in_body():
        pytest.skip("component missing in body")

    def test_skips_in_setup(component):
        pass

    @pytest.mark.skip(reason="skipped by mark")
    def test_skipped_by_mark():
        pass

    @pytest.mark.xfail(reason="known bug", strict=True)
    def test_expected_failure():
        assert False
    """
)


def _run_sample(tmp_path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    (tmp_path / "pytest.ini").write_text("[pytest]\n")
    (tmp_path / "test_sample.py").write_text(SAMPLE_TESTS)
    clean = {k: v for k, v in os.environ.items() if k not in {"CI", "WORKLENS_REQUIRE_REAL"}}
    clean["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), clean.get("PYTHONPATH")]))
    return subprocess.run(
        # Load this repository's conftest as a plugin: that is the hook under test.
        [sys.executable, "-m", "pytest", "-p", "tests.conftest", "-p", "no:cacheprovider", "-rA"],
        cwd=tmp_path,
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_outside_ci_skips_stay_skips(tmp_path: Path) -> None:
    result = _run_sample(tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 passed, 3 skipped, 1 xfailed" in result.stdout


@pytest.mark.parametrize("env", [{"CI": "true"}, {"WORKLENS_REQUIRE_REAL": "1"}])
def test_in_ci_every_skip_is_a_failure_with_its_reason(tmp_path: Path, env: dict[str, str]) -> None:
    result = _run_sample(tmp_path, **env)
    out = result.stdout
    assert result.returncode == 1, out + result.stderr
    assert "skipped in CI: component missing in body" in out
    assert "skipped in CI: component missing in fixture" in out
    assert "skipped in CI: skipped by mark" in out
    # The skip in the body fails the test; skips in setup fail its setup (an error).
    assert "FAILED test_sample.py::test_skips_in_body" in out
    assert "ERROR test_sample.py::test_skips_in_setup" in out
    assert "ERROR test_sample.py::test_skipped_by_mark" in out
    # Neither passing tests nor expected failures are affected.
    assert "PASSED test_sample.py::test_passes" in out
    assert "XFAIL test_sample.py::test_expected_failure" in out
    assert "1 failed, 1 passed, 1 xfailed, 2 errors in" in out  # and no skips left


def test_in_ci_a_module_level_skip_is_a_failure(tmp_path: Path) -> None:
    (tmp_path / "test_module_skip.py").write_text(
        "import pytest\npytest.skip('whole module needs X', allow_module_level=True)\n"
    )
    result = _run_sample(tmp_path, CI="true")
    assert result.returncode != 0
    assert "skipped in CI: whole module needs X" in result.stdout
