"""Build the browser extension for one browser family: the shared files plus the
manifest that browser needs (Chromium: a service worker; Firefox: a background
script and an add-on id). Pure file work, no browser needed."""

from __future__ import annotations

import json
import shutil
from importlib import resources
from pathlib import Path
from typing import Any

BROWSERS = ("chromium", "firefox")
FILES = ("background.js", "options.html", "options.js", "managed_schema.json")
# Firefox needs an add-on id for storage.managed and for signing; .invalid
# because the id must look like an e-mail address or a GUID and own no domain.
GECKO_ID = "tab-reporter@worklens.invalid"
GECKO_MIN_VERSION = "128.0"  # MV3 optional_host_permissions


def source_dir() -> Path:
    return Path(str(resources.files("worklens.extension")))


def manifest(browser: str) -> dict[str, Any]:
    """The manifest for ``browser`` (one of :data:`BROWSERS`)."""
    if browser not in BROWSERS:
        raise ValueError(f"unknown browser {browser!r}: use one of {', '.join(BROWSERS)}")
    base: dict[str, Any] = json.loads((source_dir() / "manifest.json").read_text("utf-8"))
    if browser == "firefox":
        base["background"] = {"scripts": ["background.js"]}
        base["browser_specific_settings"] = {
            "gecko": {"id": GECKO_ID, "strict_min_version": GECKO_MIN_VERSION}
        }
    return base


def build(browser: str, out: Path) -> Path:
    """Write the extension for ``browser`` into ``out`` (created; must be empty if
    it exists, so a build never mixes with other files). Returns ``out``."""
    data = manifest(browser)
    if out.exists() and any(out.iterdir()):
        raise FileExistsError(f"{out} is not empty")
    out.mkdir(parents=True, exist_ok=True)
    src = source_dir()
    for name in FILES:
        shutil.copyfile(src / name, out / name)
    (out / "manifest.json").write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    return out
