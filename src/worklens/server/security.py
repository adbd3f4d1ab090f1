"""Secrets: generation, hashing at rest, constant-time checks.

Tokens and enrollment secrets are 256-bit random strings, so a single SHA-256
is enough to store them (no dictionary to attack); human passwords would need
argon2 instead. Lookups go by hash, then the hash is compared in constant time.
"""

from __future__ import annotations

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
