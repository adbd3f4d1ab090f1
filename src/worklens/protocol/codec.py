"""Wire encodings: JSON, or msgpack compressed with zstd.

Both carry the same JSON-compatible dict. Decoding is bounded: a compressed body
is never inflated past ``max_size`` bytes, so a zstd bomb costs a few kilobytes
of memory and is refused at once.
"""

from __future__ import annotations

import io
import json
from typing import Any

import msgpack
import zstandard

JSON_TYPE = "application/json"
MSGPACK_TYPE = "application/x-msgpack"
ZSTD_ENCODING = "zstd"
DEFAULT_MAX_SIZE = 8 * 1024 * 1024


class DecodeError(ValueError):
    """The body could not be decoded; the message says why."""


class PayloadTooLarge(DecodeError):
    """The (decompressed) body is larger than allowed."""


def pack(obj: Any, level: int = 3) -> bytes:
    """msgpack, then zstd."""
    raw = msgpack.packb(obj, use_bin_type=True)
    return zstandard.ZstdCompressor(level=level).compress(raw)


def to_json(obj: Any) -> bytes:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode()


def inflate(body: bytes, max_size: int = DEFAULT_MAX_SIZE) -> bytes:
    """Decompress a zstd frame, refusing to produce more than ``max_size`` bytes."""
    try:
        reader = zstandard.ZstdDecompressor().stream_reader(io.BytesIO(body))
        out = reader.read(max_size + 1)
        # A frame may report EOF only after a second read; an extra byte means too big.
        if len(out) <= max_size and reader.read(1):
            raise PayloadTooLarge(f"decompressed body exceeds {max_size} bytes")
    except zstandard.ZstdError as exc:
        raise DecodeError(f"invalid zstd data: {exc}") from exc
    if len(out) > max_size:
        raise PayloadTooLarge(f"decompressed body exceeds {max_size} bytes")
    return out


def unpack(body: bytes, max_size: int = DEFAULT_MAX_SIZE) -> Any:
    """Inverse of :func:`pack`."""
    raw = inflate(body, max_size)
    return unpack_plain(raw)


def unpack_plain(raw: bytes) -> Any:
    try:
        return msgpack.unpackb(raw, raw=False, strict_map_key=True)
    except (msgpack.UnpackException, ValueError, TypeError) as exc:
        raise DecodeError(f"invalid msgpack data: {exc}") from exc


def from_json(raw: bytes) -> Any:
    try:
        return json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DecodeError(f"invalid JSON: {exc}") from exc


def decode_body(
    body: bytes,
    content_type: str | None,
    content_encoding: str | None,
    max_size: int = DEFAULT_MAX_SIZE,
) -> Any:
    """Decode an HTTP body by its content type and encoding headers."""
    ctype = (content_type or JSON_TYPE).split(";")[0].strip().lower()
    encoding = (content_encoding or "identity").strip().lower()
    if encoding == ZSTD_ENCODING:
        body = inflate(body, max_size)
    elif encoding != "identity":
        raise DecodeError(f"unsupported Content-Encoding {content_encoding!r}; use zstd or none")
    elif len(body) > max_size:
        raise PayloadTooLarge(f"body exceeds {max_size} bytes")
    if ctype == MSGPACK_TYPE:
        return unpack_plain(body)
    if ctype in (JSON_TYPE, "text/json"):
        return from_json(body)
    raise DecodeError(
        f"unsupported Content-Type {content_type!r}; use {JSON_TYPE} or {MSGPACK_TYPE}"
    )
