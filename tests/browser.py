"""A real browser for tests: Debian's Chromium, driven by Playwright's sync API.

tests/conftest.py registers this module as a plugin (``pytest_plugins``), so any
test can ask for ``browser_context``: a fresh Chromium profile (its own
user-data-dir under ``tmp_path``), headless, closed at teardown. Import only
helpers from here, never the fixture itself (that would define a second one).

The browser is always ``/usr/bin/chromium`` from Debian (scripts/test installs
the ``chromium`` package); Playwright comes from PyPI (the ``dev`` extra) and
only drives it: never run ``playwright install``, nothing is downloaded. When
either is missing the test skips with the command to install it; in CI
(``CI=true``) such a skip is a failure (tests/conftest.py).
"""

from __future__ import annotations

import contextlib
import importlib.util
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from playwright.sync_api import BrowserContext

CHROMIUM = Path("/usr/bin/chromium")
#: Chromium as root in a sandbox-less container with no network but loopback:
#: without the background-networking flags it keeps trying to reach Google.
#: (``--headless`` is added by Playwright for ``headless=True``.)
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
#: Each wait fails after this many milliseconds instead of Playwright's 30 s.
TIMEOUT_MS = 15_000

CHROMIUM_HINT = "apt-get install chromium (Debian's /usr/bin/chromium)"
PLAYWRIGHT_HINT = "pip install -e '.[dev]' (Playwright from PyPI; no `playwright install`)"


def require_browser() -> None:
    """Skip (a failure in CI) unless Debian's Chromium and Playwright are installed."""
    if importlib.util.find_spec("playwright") is None:
        pytest.skip(f"playwright not installed: {PLAYWRIGHT_HINT}")
    if not CHROMIUM.is_file():
        pytest.skip(f"{CHROMIUM} not installed: {CHROMIUM_HINT}")


@contextlib.contextmanager
def chromium_context(
    user_data_dir: Path, extension: Path | None = None, **options: Any
) -> Iterator[BrowserContext]:
    """Headless Chromium with a new profile in ``user_data_dir``, as one browser context.

    ``extension``: an unpacked extension to load (Playwright passes
    --disable-extensions unless told not to). ``options`` go to Playwright's
    ``launch_persistent_context`` (viewport, locale, ...).
    """
    from playwright.sync_api import sync_playwright

    user_data_dir.mkdir(parents=True, exist_ok=True)
    if any(user_data_dir.iterdir()):
        raise ValueError(f"{user_data_dir} is not empty: each browser needs a fresh profile")
    options.setdefault("viewport", {"width": 1280, "height": 800})
    with sync_playwright() as pw:
        context = pw.chromium.launch_persistent_context(
            str(user_data_dir),
            executable_path=str(CHROMIUM),
            headless=True,
            args=CHROMIUM_ARGS
            + (
                [f"--disable-extensions-except={extension}", f"--load-extension={extension}"]
                if extension
                else []
            ),
            ignore_default_args=["--disable-extensions"] if extension else None,
            **options,
        )
        try:
            context.set_default_timeout(TIMEOUT_MS)
            context.set_default_navigation_timeout(TIMEOUT_MS)
            yield context
        finally:
            context.close()


@pytest.fixture
def browser_context(tmp_path: Path) -> Iterator[BrowserContext]:
    """A real headless Chromium (fresh profile) for one test."""
    require_browser()
    with chromium_context(tmp_path / "chromium-profile") as context:
        yield context
