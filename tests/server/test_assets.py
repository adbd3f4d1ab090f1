"""Pinned front-end assets: integrity before unpacking, safe extraction, serving.

Fetching is tested with small tarballs made here and a file:// "registry" or a
``source`` callable, so no network is needed; the served-files tests need the
real fetched files (scripts/test fetches them, so in CI they are present).
"""

from __future__ import annotations

import io
import logging
import tarfile
from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from worklens.server.app import create_app
from worklens.server.settings import ServerSettings
from worklens.server.web import assets, staticfiles
from worklens.server.web.assets import Asset, AssetError

FETCH_HINT = "run python -m worklens.server.web.assets"

Member = bytes | tuple[str, str]  # file content, or ("symlink" | "hardlink", target)


def make_tgz(members: Mapping[str, Member]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, body in members.items():
            info = tarfile.TarInfo(name)
            info.mode = 0o644
            if isinstance(body, bytes):
                info.size = len(body)
                tar.addfile(info, io.BytesIO(body))
            else:
                kind, target = body
                info.type = tarfile.SYMTYPE if kind == "symlink" else tarfile.LNKTYPE
                info.linkname = target
                tar.addfile(info)
    return buf.getvalue()


GOOD = {
    "package/package.json": b'{"name": "fake-chart", "version": "1.2.3"}',
    "package/dist/chart.min.js": b"window.fakeChart = 1;\n",
    "package/dist/chart.css": b".chart{}\n",
    "package/LICENSE": b"MIT\n",
    "package/src/unlisted.js": b"not taken\n",
}


def pin(data: bytes, **files: str) -> Asset:
    wanted = files or {"dist/chart.min.js": "chart.min.js", "LICENSE": "chart.LICENSE.txt"}
    return Asset("fake-chart", "1.2.3", assets.sri_sha512(data), wanted)


def file_registry(root: Path, asset: Asset, data: bytes) -> str:
    """A folder laid out like the registry's tarball URLs; its file:// URL."""
    path = root / asset.package / "-" / asset.tarball_name
    path.parent.mkdir(parents=True)
    path.write_bytes(data)
    return root.as_uri()


def refuse_extract(monkeypatch: pytest.MonkeyPatch) -> None:
    def extract(data: bytes, asset: Asset) -> dict[str, bytes]:
        raise AssertionError("extract() called on an unverified tarball")

    monkeypatch.setattr(assets, "extract", extract)


# --- fetch and check ----------------------------------------------------------


def test_fetch_from_a_registry_writes_only_listed_files_and_check_tracks_them(
    tmp_path: Path,
) -> None:
    data = make_tgz(GOOD)
    asset = pin(data)
    assert asset.tarball_url() == "https://registry.npmjs.org/fake-chart/-/fake-chart-1.2.3.tgz"
    registry = file_registry(tmp_path / "registry", asset, data)
    dest = tmp_path / "vendor"

    manifest = assets.fetch(dest, pins=[asset], source=assets.registry_source(registry))

    assert sorted(p.name for p in dest.iterdir()) == [
        "chart.LICENSE.txt",
        "chart.min.js",
        "manifest.json",
    ]
    assert (dest / "chart.min.js").read_bytes() == GOOD["package/dist/chart.min.js"]
    assert manifest["assets"][0]["version"] == "1.2.3"
    assert assets.check(dest, pins=[asset]) == []

    (dest / "chart.min.js").write_bytes(b"window.evil = 1;\n")
    assert any("differs" in p for p in assets.check(dest, pins=[asset]))
    (dest / "chart.min.js").unlink()
    assert any("missing" in p for p in assets.check(dest, pins=[asset]))
    bumped = Asset("fake-chart", "1.2.4", asset.integrity, asset.files)
    assert any("does not match the pin" in p for p in assets.check(dest, pins=[bumped]))
    assert assets.check(tmp_path / "nowhere", pins=[asset]) == [
        f"no {tmp_path / 'nowhere' / 'manifest.json'}"
    ]


def test_a_new_pin_replaces_the_files_of_the_old_one(tmp_path: Path) -> None:
    data = make_tgz(GOOD)
    old = pin(data)
    dest = tmp_path / "vendor"
    assets.fetch(dest, pins=[old], source=lambda a: data)
    new = pin(data, **{"dist/chart.css": "chart.css"})
    assets.fetch(dest, pins=[new], source=lambda a: data)
    assert sorted(p.name for p in dest.iterdir()) == ["chart.css", "manifest.json"]
    assert assets.check(dest, pins=[new]) == []


def test_a_tampered_tarball_is_refused_before_anything_is_unpacked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = make_tgz(GOOD)
    asset = pin(data)
    tampered = make_tgz({**GOOD, "package/dist/chart.min.js": b"fetch('//evil.example');\n"})
    dest = tmp_path / "vendor"
    refuse_extract(monkeypatch)

    with pytest.raises(AssetError, match=r"integrity mismatch.*refusing to unpack"):
        assets.fetch(dest, pins=[asset], source=lambda a: tampered)
    # Through the registry path too, and with bytes that are not even a tarball.
    registry = file_registry(tmp_path / "registry", asset, b"not a tarball")
    with pytest.raises(AssetError, match="integrity mismatch"):
        assets.fetch(dest, pins=[asset], source=assets.registry_source(registry))
    assert not dest.exists()


def test_a_failed_fetch_leaves_the_vendor_folder_as_it_was(tmp_path: Path) -> None:
    data = make_tgz(GOOD)
    asset = pin(data)
    dest = tmp_path / "vendor"
    assets.fetch(dest, pins=[asset], source=lambda a: data)
    before = {p.name: p.read_bytes() for p in dest.iterdir()}

    second = Asset("other", "2.0.0", assets.sri_sha512(b"x"), {"a.js": "a.js"})
    with pytest.raises(AssetError, match=r"other@2\.0\.0: integrity mismatch"):
        assets.fetch(dest, pins=[asset, second], source=lambda a: data)
    assert {p.name: p.read_bytes() for p in dest.iterdir()} == before


def test_integrity_strings_follow_the_registry_format() -> None:
    data = b"payload"
    good = assets.sri_sha512(data)
    assets.verify_integrity(data, good)
    # Several hashes (SRI): a matching sha512 among them is enough; sha1 is ignored.
    assets.verify_integrity(data, f"sha1-AAAA {assets.sri_sha512(b'other')} {good}")
    with pytest.raises(AssetError, match="no sha512"):
        assets.verify_integrity(data, "sha1-2jmj7l5rSw0yVb/vlWAYkK/YBwk=")
    with pytest.raises(AssetError, match="mismatch"):
        assets.verify_integrity(data + b"!", good)


# --- path traversal and other unsafe tarballs ------------------------------------


@pytest.mark.parametrize(
    "evil",
    ["package/../../evil.js", "../evil.js", "/tmp/evil.js", "package/dist/../../../evil.js"],
)
def test_a_tarball_with_a_path_traversal_member_is_refused(tmp_path: Path, evil: str) -> None:
    data = make_tgz({**GOOD, evil: b"owned\n"})
    asset = pin(data)  # the integrity matches: only the member names are wrong
    dest = tmp_path / "out" / "vendor"
    with pytest.raises(AssetError, match="unsafe path"):
        assets.fetch(dest, pins=[asset], source=lambda a: data)
    assert not (tmp_path / "out").exists()
    assert not (tmp_path / "evil.js").exists()


@pytest.mark.parametrize("kind", ["symlink", "hardlink"])
def test_a_listed_file_that_is_a_link_is_refused(tmp_path: Path, kind: str) -> None:
    data = make_tgz({**GOOD, "package/dist/chart.min.js": (kind, "/etc/passwd")})
    with pytest.raises(AssetError, match="not a regular file"):
        assets.fetch(tmp_path / "vendor", pins=[pin(data)], source=lambda a: data)


def test_a_listed_file_missing_from_the_tarball_is_an_error(tmp_path: Path) -> None:
    data = make_tgz(GOOD)
    asset = pin(data, **{"dist/nope.js": "nope.js"})
    with pytest.raises(AssetError, match=r"not in the tarball: dist/nope\.js"):
        assets.fetch(tmp_path / "vendor", pins=[asset], source=lambda a: data)


def _pins_toml(**overrides: object) -> dict[str, object]:
    entry: dict[str, object] = {
        "package": "fake-chart",
        "version": "1.2.3",
        "integrity": assets.sri_sha512(b"x"),
        "files": {"dist/chart.min.js": "chart.min.js"},
    }
    entry.update(overrides)
    return {"asset": [entry]}


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"files": {"../../etc/passwd": "passwd.js"}}, "unsafe path"),
        ({"files": {"/etc/passwd": "passwd.js"}}, "unsafe path"),
        ({"files": {"dist/a.js": "../a.js"}}, "not a plain file name"),
        ({"files": {"dist/a.js": "sub/a.js"}}, "not a plain file name"),
        ({"files": {"dist/a.js": "manifest.json"}}, "not a plain file name"),
        ({"version": "^1.2.3"}, "not an exact version"),
        ({"version": "latest"}, "not an exact version"),
        ({"integrity": "sha1-2jmj7l5rSw0yVb/vlWAYkK/YBwk="}, "sha512"),
        ({"package": "../evil"}, "not an npm package name"),
    ],
)
def test_unsafe_or_loose_pins_are_refused(overrides: dict[str, object], message: str) -> None:
    with pytest.raises(AssetError, match=message):
        assets.parse_pins(_pins_toml(**overrides))


def test_the_committed_pins_are_exact_and_complete() -> None:
    pins = {a.package: a for a in assets.load_pins()}
    assert set(pins) == {"htmx.org", "htmx-ext-ws", "uplot"}
    assert pins["htmx.org"].version.startswith("2.0.")
    assert pins["htmx-ext-ws"].version.startswith("2.0.")
    names = {name for a in pins.values() for name in a.files.values()}
    assert {"htmx.min.js", "htmx-ext-ws.min.js", "uPlot.iife.min.js", "uPlot.min.css"} <= names


def test_main_explains_failures_with_exit_1(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    dest = tmp_path / "vendor"
    assert assets.main(["--dest", str(dest), "--check"]) == 1
    assert "python -m worklens.server.web.assets" in capsys.readouterr().err
    empty_registry = (tmp_path / "registry").as_uri()
    assert assets.main(["--dest", str(dest), "--registry", empty_registry]) == 1
    err = capsys.readouterr().err
    assert "error: fetching front-end assets failed" in err and "cannot download" in err
    assert not dest.exists()


# --- serving --------------------------------------------------------------------


@pytest.fixture
def client(tmp_path: Path) -> Iterator[TestClient]:
    app = create_app(ServerSettings(database_url=f"sqlite:///{tmp_path / 'worklens.db'}"))
    with TestClient(app) as c:
        yield c


@pytest.mark.real
def test_the_server_serves_the_fetched_vendor_files(client: TestClient) -> None:
    problems = assets.check()
    if problems:
        pytest.skip(f"{FETCH_HINT} ({problems[0]})")
    for name, content_type in [
        ("htmx.min.js", "javascript"),
        ("htmx-ext-ws.min.js", "javascript"),
        ("uPlot.iife.min.js", "javascript"),
        ("uPlot.min.css", "text/css"),
    ]:
        r = client.get(f"/static/vendor/{name}")
        assert r.status_code == 200, name
        assert content_type in r.headers["content-type"], name
        assert r.content == (assets.VENDOR_DIR / name).read_bytes()
        assert r.headers["cache-control"] == staticfiles.VENDOR_CACHE_CONTROL
    assert client.get("/static/vendor/nope.js").status_code == 404
    assert client.get("/static/vendor/../assets.toml").status_code == 404


def test_the_server_starts_without_vendor_files_and_says_how_to_fetch_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(assets, "STATIC_DIR", tmp_path / "static")
    db = f"sqlite:///{tmp_path / 'worklens.db'}"
    with caplog.at_level(logging.WARNING, logger=staticfiles.__name__):
        app = create_app(ServerSettings(database_url=db))
    warnings = [r for r in caplog.records if r.name == staticfiles.__name__]
    assert len(warnings) == 1
    assert "python -m worklens.server.web.assets" in warnings[0].getMessage()
    with TestClient(app) as c:
        assert c.get("/api/v1/health").status_code == 200
        assert c.get("/static/vendor/htmx.min.js").status_code == 404

    # A static folder without vendor/: mounted, and the vendor files answer 404.
    (tmp_path / "static").mkdir()
    (tmp_path / "static" / "app.css").write_text("body{}")
    bare = FastAPI()
    staticfiles.mount_static(bare, tmp_path / "static")
    with TestClient(bare) as c:
        assert c.get("/static/app.css").text == "body{}"
        assert "cache-control" not in c.get("/static/app.css").headers
        assert c.get("/static/vendor/htmx.min.js").status_code == 404
