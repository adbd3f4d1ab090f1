"""Secrets: generation, hashing at rest, constant-time checks.

Tokens and enrollment secrets are 256-bit random strings, so a single SHA-256
is enough to store them (no dictionary to attack); human passwords would need
argon2 instead. Lookups go by hash, then the hash is compared in constant time.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets

DEVICE_TOKEN_PREFIX = "wld_"
ADMIN_TOKEN_PREFIX = "wla_"
ENROLL_SECRET_PREFIX = "wle_"


def new_secret(prefix: str) -> str:
    return prefix + secrets.token_urlsafe(32)


def hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def same_hash(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode(), b.encode())


def derived_secret(prefix: str, key: str, nonce: str) -> str:
    """A secret that only a holder of ``key`` (itself a 256-bit secret) can compute
    from ``nonce``: HMAC-SHA256, written like :func:`new_secret`'s."""
    mac = hmac.new(key.encode(), b"worklens derived secret\0" + nonce.encode(), hashlib.sha256)
    return prefix + base64.urlsafe_b64encode(mac.digest()).rstrip(b"=").decode()
