"""Pinned front-end assets: fetched from the npm registry at setup, never from a CDN.

``assets.toml`` beside this file pins each npm package to an exact version and
the registry's sha512 ``integrity`` of its tarball. :func:`fetch` downloads each
tarball, verifies that integrity *before* unpacking anything, takes only the
listed files (regular files, no links, no path tricks) and writes them under
``static/vendor/`` (git-ignored) with a ``manifest.json`` recording what was
written and each file's sha256. :func:`check` compares that folder with the pins
and the manifest; the server serves it at ``/static/vendor/``.

Run ``python -m worklens.server.web.assets`` (scripts/up and scripts/test do):
it does nothing when the folder already matches the pins, fetches otherwise, and
exits 1 with a message on any failure. Standard library only, so it runs right
after the venv install.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import hmac
import io
import json
import os
import re
import sys
import tarfile
import tempfile
import tomllib
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

REGISTRY = "https://registry.npmjs.org"
WEB_DIR = Path(__file__).resolve().parent
PINS_FILE = WEB_DIR / "assets.toml"
STATIC_DIR = WEB_DIR / "static"
VENDOR_DIR = STATIC_DIR / "vendor"
MANIFEST_NAME = "manifest.json"
FETCH_COMMAND = "python -m worklens.server.web.assets"
#: No front-end package of ours comes near this; a bigger download is refused.
MAX_TARBALL_BYTES = 64 * 1024 * 1024
MANIFEST_FORMAT = 1

_PACKAGE_RE = re.compile(r"^(@[a-z0-9][a-z0-9._-]*/)?[a-z0-9][a-z0-9._-]*$")
# An exact version only: no ranges, tags or "latest".
_VERSION_RE = re.compile(r"^\d+\.\d+\.\d+(-[0-9A-Za-z.-]+)?$")
# What a file in vendor/ may be called: one plain name, never a path.
_DEST_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


class AssetError(Exception):
    """A pin, download, tarball or vendor folder is not what it must be."""


@dataclass(frozen=True)
class Asset:
    """One pinned npm package and the files taken from its tarball."""

    package: str
    version: str
    integrity: str
    #: path inside the package (below the tarball's top folder) -> name in vendor/
    files: Mapping[str, str]

    @property
    def tarball_name(self) -> str:
        # Scoped packages (@scope/name) name their tarball after the bare name.
        return f"{self.package.rsplit('/', 1)[-1]}-{self.version}.tgz"

    def tarball_url(self, registry: str = REGISTRY) -> str:
        return f"{registry.rstrip('/')}/{self.package}/-/{self.tarball_name}"

    def label(self) -> str:
        return f"{self.package}@{self.version}"


#: Gives the tarball bytes of a pinned asset (the registry, or a test's stand-in).
Source = Callable[[Asset], bytes]


# --- pins -------------------------------------------------------------------


def _safe_relative(path: str) -> str:
    """A normalized relative POSIX path, or AssetError for absolute paths and ``..``."""
    if not path or "\\" in path or "\x00" in path:
        raise AssetError(f"unsafe path {path!r}")
    pure = PurePosixPath(path)
    if pure.is_absolute() or any(part == ".." for part in pure.parts):
        raise AssetError(f"unsafe path {path!r}: absolute or leaving its folder")
    parts = [part for part in pure.parts if part != "."]
    if not parts:
        raise AssetError(f"unsafe path {path!r}")
    return "/".join(parts)


def _require_str(table: Mapping[str, Any], key: str, where: str) -> str:
    value = table.get(key)
    if not isinstance(value, str) or not value:
        raise AssetError(f"{where}: `{key}` must be a non-empty string")
    return value


def parse_pins(data: Mapping[str, Any], where: str = "assets.toml") -> list[Asset]:
    """Validate the parsed TOML: exact versions, sha512 integrity, safe file names."""
    entries = data.get("asset")
    if not isinstance(entries, list) or not entries:
        raise AssetError(f"{where}: no [[asset]] entries")
    assets: list[Asset] = []
    seen_dest: dict[str, str] = {}
    for i, entry in enumerate(entries):
        if not isinstance(entry, dict):
            raise AssetError(f"{where}: asset #{i + 1} is not a table")
        package = _require_str(entry, "package", f"{where}: asset #{i + 1}")
        ctx = f"{where}: {package}"
        if not _PACKAGE_RE.match(package):
            raise AssetError(f"{ctx}: not an npm package name")
        version = _require_str(entry, "version", ctx)
        if not _VERSION_RE.match(version):
            raise AssetError(f"{ctx}: version {version!r} is not an exact version")
        integrity = _require_str(entry, "integrity", ctx)
        if not _sha512_digests(integrity):
            raise AssetError(f"{ctx}: integrity must hold a sha512-<base64> value")
        raw_files = entry.get("files")
        if not isinstance(raw_files, dict) or not raw_files:
            raise AssetError(f"{ctx}: [asset.files] must map package paths to file names")
        files: dict[str, str] = {}
        for src, dest in raw_files.items():
            if not isinstance(dest, str) or not _DEST_RE.match(dest) or dest == MANIFEST_NAME:
                raise AssetError(f"{ctx}: {dest!r} is not a plain file name for vendor/")
            if dest in seen_dest:
                raise AssetError(f"{ctx}: {dest} is also written by {seen_dest[dest]}")
            seen_dest[dest] = package
            files[_safe_relative(src)] = dest
        assets.append(Asset(package, version, integrity, files))
    return assets


def load_pins(path: Path = PINS_FILE) -> list[Asset]:
    try:
        with path.open("rb") as f:
            data = tomllib.load(f)
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise AssetError(f"cannot read {path}: {exc}") from exc
    return parse_pins(data, path.name)


# --- download and verification ---------------------------------------------


def registry_source(registry: str = REGISTRY, timeout: float = 60.0) -> Source:
    """Downloads ``<registry>/<package>/-/<name>-<version>.tgz`` (also file:// URLs)."""

    def get(asset: Asset) -> bytes:
        url = asset.tarball_url(registry)
        request = urllib.request.Request(url, headers={"User-Agent": "worklens-assets"})
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                data: bytes = response.read(MAX_TARBALL_BYTES + 1)
        except (urllib.error.URLError, OSError) as exc:
            raise AssetError(f"{asset.label()}: cannot download {url}: {exc}") from exc
        if len(data) > MAX_TARBALL_BYTES:
            raise AssetError(f"{asset.label()}: {url} is larger than {MAX_TARBALL_BYTES} bytes")
        return data

    return get


def _sha512_digests(integrity: str) -> list[bytes]:
    """The sha512 digests of a Subresource-Integrity string (``sha512-<b64>[?opts] ...``)."""
    digests = []
    for token in integrity.split():
        algorithm, _, rest = token.partition("-")
        if algorithm != "sha512":
            continue
        try:
            digest = base64.b64decode(rest.split("?", 1)[0], validate=True)
        except ValueError:
            continue
        if len(digest) == hashlib.sha512().digest_size:
            digests.append(digest)
    return digests


def sri_sha512(data: bytes) -> str:
    """``data``'s integrity string in the registry's form."""
    return "sha512-" + base64.b64encode(hashlib.sha512(data).digest()).decode("ascii")


def verify_integrity(data: bytes, integrity: str, what: str = "tarball") -> None:
    """AssetError unless ``data`` matches one of the sha512 values of ``integrity``."""
    expected = _sha512_digests(integrity)
    if not expected:
        raise AssetError(f"{what}: no sha512 value in integrity {integrity!r}")
    actual = hashlib.sha512(data).digest()
    if not any(hmac.compare_digest(actual, digest) for digest in expected):
        raise AssetError(
            f"{what}: integrity mismatch: expected {integrity}, got {sri_sha512(data)}; "
            "refusing to unpack it"
        )


def _member_path(name: str) -> str | None:
    """A tar member's path below the top folder (``package/``); None for the top itself."""
    path = _safe_relative(name)
    _, _, rest = path.partition("/")
    return rest or None


def extract(data: bytes, asset: Asset) -> dict[str, bytes]:
    """The listed files of an already verified tarball: vendor name -> content.

    Nothing is written to disk here, and member names are never used as paths to
    write to; still, a tarball with an absolute or ``..`` member name is refused
    whole, and a listed file must be a regular file (not a link or device).
    """
    wanted = dict(asset.files)
    found: dict[str, bytes] = {}
    try:
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
            for member in tar:
                try:
                    path = _member_path(member.name)
                except AssetError as exc:
                    raise AssetError(f"{asset.label()}: tarball member {exc}") from None
                if path is None or path not in wanted:
                    continue
                dest = wanted[path]
                if not member.isreg():
                    raise AssetError(f"{asset.label()}: {path} is not a regular file")
                if dest in found:
                    raise AssetError(f"{asset.label()}: {path} appears twice in the tarball")
                stream = tar.extractfile(member)
                if stream is None:
                    raise AssetError(f"{asset.label()}: cannot read {path}")
                found[dest] = stream.read()
    except (tarfile.TarError, EOFError, OSError) as exc:
        raise AssetError(f"{asset.label()}: not a readable .tgz: {exc}") from exc
    missing = sorted(src for src, dest in wanted.items() if dest not in found)
    if missing:
        raise AssetError(f"{asset.label()}: not in the tarball: {', '.join(missing)}")
    return found


# --- the vendor folder ------------------------------------------------------


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _write_atomic(path: Path, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _pin_record(asset: Asset) -> dict[str, Any]:
    return {
        "package": asset.package,
        "version": asset.version,
        "integrity": asset.integrity,
        "files": dict(sorted(asset.files.items())),
    }


def read_manifest(dest_dir: Path = VENDOR_DIR) -> dict[str, Any]:
    path = dest_dir / MANIFEST_NAME
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise AssetError(f"no {path}") from None
    except (OSError, ValueError) as exc:
        raise AssetError(f"cannot read {path}: {exc}") from exc
    if not isinstance(manifest, dict) or manifest.get("format") != MANIFEST_FORMAT:
        raise AssetError(f"{path}: unknown manifest format")
    if not isinstance(manifest.get("assets"), list):
        raise AssetError(f"{path}: no asset list")
    return manifest


def _recorded_files(manifest: Mapping[str, Any]) -> dict[str, str]:
    """vendor name -> sha256, from a manifest written by :func:`fetch`."""
    files: dict[str, str] = {}
    for entry in manifest.get("assets", []):
        sha = entry.get("sha256", {}) if isinstance(entry, dict) else {}
        if isinstance(sha, dict):
            files.update({str(k): str(v) for k, v in sha.items()})
    return files


def fetch(
    dest_dir: Path = VENDOR_DIR,
    *,
    pins: Sequence[Asset] | None = None,
    source: Source | None = None,
) -> dict[str, Any]:
    """Download, verify and unpack every pinned asset into ``dest_dir``; the manifest.

    All tarballs are downloaded and verified before anything is written, so a
    failure leaves an existing vendor folder as it was.
    """
    pins = load_pins() if pins is None else pins
    source = source or registry_source()
    taken: list[tuple[Asset, dict[str, bytes]]] = []
    for asset in pins:
        data = source(asset)
        verify_integrity(data, asset.integrity, asset.label())
        taken.append((asset, extract(data, asset)))

    dest_dir.mkdir(parents=True, exist_ok=True)
    try:
        old = _recorded_files(read_manifest(dest_dir))
    except AssetError:
        old = {}
    entries = []
    for asset, files in taken:
        for name, content in files.items():
            _write_atomic(dest_dir / name, content)
        entries.append(
            {
                **_pin_record(asset),
                "sha256": {name: _sha256(content) for name, content in sorted(files.items())},
            }
        )
    manifest = {"format": MANIFEST_FORMAT, "assets": entries}
    # Files an older pin wrote and the new ones do not: only those fetch itself recorded.
    for stale in sorted(set(old) - set(_recorded_files(manifest))):
        if _DEST_RE.match(stale) and stale != MANIFEST_NAME:
            (dest_dir / stale).unlink(missing_ok=True)
    _write_atomic(dest_dir / MANIFEST_NAME, (json.dumps(manifest, indent=2) + "\n").encode("utf-8"))
    return manifest


def check(dest_dir: Path = VENDOR_DIR, *, pins: Sequence[Asset] | None = None) -> list[str]:
    """What is wrong with ``dest_dir``: an empty list when it matches the pins.

    The manifest must record exactly the pinned packages, versions, integrity and
    files, and every file must be present with the sha256 that fetch recorded.
    """
    try:
        pins = load_pins() if pins is None else pins
        manifest = read_manifest(dest_dir)
    except AssetError as exc:
        return [str(exc)]
    problems: list[str] = []
    recorded = {
        str(entry.get("package")): entry for entry in manifest["assets"] if isinstance(entry, dict)
    }
    for asset in pins:
        entry = recorded.pop(asset.package, None)
        if entry is None:
            problems.append(f"{asset.label()}: not fetched")
            continue
        if {k: entry.get(k) for k in ("package", "version", "integrity", "files")} != _pin_record(
            asset
        ):
            problems.append(
                f"{asset.label()}: fetched {entry.get('package')}@{entry.get('version')} "
                "does not match the pin"
            )
            continue
        sha = entry.get("sha256")
        if not isinstance(sha, dict) or set(sha) != set(asset.files.values()):
            problems.append(f"{asset.label()}: manifest lacks the files' sha256")
            continue
        for name, digest in sorted(sha.items()):
            path = dest_dir / name
            try:
                content = path.read_bytes()
            except FileNotFoundError:
                problems.append(f"{asset.label()}: {path} is missing")
                continue
            except OSError as exc:
                problems.append(f"{asset.label()}: cannot read {path}: {exc}")
                continue
            if not hmac.compare_digest(_sha256(content), str(digest)):
                problems.append(f"{asset.label()}: {path} differs from what was fetched")
    for package in sorted(recorded):
        problems.append(f"{package}: fetched but no longer pinned")
    return problems


# --- command line -----------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog=FETCH_COMMAND,
        description="Fetch the pinned front-end assets (assets.toml) into static/vendor/.",
    )
    parser.add_argument("--dest", type=Path, default=VENDOR_DIR, help="default: %(default)s")
    parser.add_argument("--registry", default=REGISTRY, help="default: %(default)s")
    parser.add_argument(
        "--check", action="store_true", help="only check the folder; exit 1 if it needs a fetch"
    )
    parser.add_argument("--force", action="store_true", help="fetch even when up to date")
    args = parser.parse_args(argv)
    dest: Path = args.dest

    try:
        pins = load_pins()
    except AssetError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    problems = check(dest, pins=pins)
    if not problems and not args.force:
        print(f"front-end assets up to date in {dest}")
        return 0
    if args.check:
        for problem in problems:
            print(f"error: {problem}", file=sys.stderr)
        print(f"run `{FETCH_COMMAND}` to fetch them", file=sys.stderr)
        return 1
    try:
        fetch(dest, pins=pins, source=registry_source(args.registry))
    except AssetError as exc:
        print(f"error: fetching front-end assets failed: {exc}", file=sys.stderr)
        return 1
    problems = check(dest, pins=pins)
    if problems:
        for problem in problems:
            print(f"error: {problem}", file=sys.stderr)
        return 1
    print(f"fetched {', '.join(a.label() for a in pins)} into {dest}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
