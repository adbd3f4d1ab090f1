"""Dashboard sessions and the login throttle, both in the database so that
every server process (``worklens server --workers N``) sees the same state.

A session id is 256 random bits in the browser's cookie and only its SHA-256
here. A session ends after 12 hours without a request or 7 days after login,
whichever comes first, and at logout, password change, role change or when
the user is disabled.

The throttle counts failed logins: 5 for one login, or 20 from one address,
within 15 minutes lock further attempts for 15 minutes from the failure that
reached the limit. Refused attempts are not counted (a lock does not extend
itself) and a successful login forgets the failures of that login.
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import Column, Connection, delete, or_, select, update

from worklens.server.security import hash_secret, same_hash
from worklens.server.store.schema import login_failures, sessions, users
from worklens.server.store.users import User, get_user

MINUTE_MS = 60_000
IDLE_MS = 12 * 60 * MINUTE_MS
ABSOLUTE_MS = 7 * 24 * 60 * MINUTE_MS
# last_seen_ms is written at most this often: a page with many requests
# would otherwise write once per request.
TOUCH_EVERY_MS = MINUTE_MS
LOGIN_LIMIT = 5
IP_LIMIT = 20
WINDOW_MS = 15 * MINUTE_MS
LOCK_MS = 15 * MINUTE_MS


@dataclass(frozen=True, slots=True)
class Session:
    id_hash: str
    user: User
    csrf_token: str
    last_seen_ms: int
    expires_ms: int


def create_session(
    conn: Connection, user: User, now_ms: int, ip: str = "", user_agent: str = ""
) -> tuple[str, str]:
    """Start a session; returns (session id for the cookie, CSRF token)."""
    # Ended sessions are removed as new ones start: the table stays small.
    conn.execute(
        delete(sessions).where(
            or_(sessions.c.expires_ms <= now_ms, sessions.c.last_seen_ms <= now_ms - IDLE_MS)
        )
    )
    session_id = secrets.token_urlsafe(32)
    csrf = secrets.token_urlsafe(32)
    conn.execute(
        sessions.insert().values(
            id_hash=hash_secret(session_id),
            user_id=user.id,
            csrf_token=csrf,
            created_ms=now_ms,
            last_seen_ms=now_ms,
            expires_ms=now_ms + ABSOLUTE_MS,
            ip=ip[:64],
            user_agent=user_agent[:256],
        )
    )
    return session_id, csrf


def lookup_session(conn: Connection, session_id: str, now_ms: int) -> Session | None:
    """The live session of an enabled user with this id, or None."""
    if not session_id or len(session_id) > 128:
        return None
    digest = hash_secret(session_id)
    row = conn.execute(
        select(
            sessions.c.id_hash,
            sessions.c.csrf_token,
            sessions.c.last_seen_ms,
            sessions.c.expires_ms,
            users.c.id.label("user_id"),
            users.c.org_id,
        )
        .select_from(sessions.join(users, users.c.id == sessions.c.user_id))
        .where(sessions.c.id_hash == digest, users.c.disabled_ms.is_(None))
    ).first()
    if row is None or not same_hash(row.id_hash, digest):
        return None
    if row.expires_ms <= now_ms or row.last_seen_ms <= now_ms - IDLE_MS:
        return None
    user = get_user(conn, int(row.org_id), int(row.user_id))
    return Session(row.id_hash, user, row.csrf_token, int(row.last_seen_ms), int(row.expires_ms))


def needs_touch(session: Session, now_ms: int) -> bool:
    return now_ms - session.last_seen_ms >= TOUCH_EVERY_MS


def touch_session(conn: Connection, id_hash: str, now_ms: int) -> None:
    conn.execute(
        update(sessions)
        .where(sessions.c.id_hash == id_hash, sessions.c.last_seen_ms < now_ms)
        .values(last_seen_ms=now_ms)
    )


def delete_session(conn: Connection, session_id: str) -> None:
    conn.execute(delete(sessions).where(sessions.c.id_hash == hash_secret(session_id)))


# --- login throttle ---------------------------------------------------------


def locked_until(failures: Sequence[int], limit: int) -> int | None:
    """When a lock caused by these failure times (ms, ascending) ends: a lock
    starts at each failure that is the ``limit``-th within WINDOW_MS (pure)."""
    until: int | None = None
    for i in range(limit - 1, len(failures)):
        if failures[i] - failures[i - limit + 1] <= WINDOW_MS:
            until = max(until or 0, failures[i] + LOCK_MS)
    return until


def _times(conn: Connection, column: Column[str], value: str, since_ms: int) -> list[int]:
    return [
        int(t)
        for t in conn.execute(
            select(login_failures.c.at_ms)
            .where(column == value, login_failures.c.at_ms > since_ms)
            .order_by(login_failures.c.at_ms)
        ).scalars()
    ]


def throttle_wait_s(conn: Connection, login: str, ip: str, now_ms: int) -> int:
    """Seconds until this login may be tried from this address again (0: now)."""
    since = now_ms - WINDOW_MS - LOCK_MS
    ends = [
        locked_until(_times(conn, login_failures.c.login, login[:320], since), LOGIN_LIMIT),
        locked_until(_times(conn, login_failures.c.ip, ip[:64], since), IP_LIMIT),
    ]
    wait_ms = max((e - now_ms for e in ends if e is not None), default=0)
    return max(0, -(-wait_ms // 1000))


def record_failure(conn: Connection, login: str, ip: str, now_ms: int) -> None:
    conn.execute(
        delete(login_failures).where(login_failures.c.at_ms <= now_ms - WINDOW_MS - LOCK_MS)
    )
    conn.execute(login_failures.insert().values(login=login[:320], ip=ip[:64], at_ms=now_ms))


def forget_failures(conn: Connection, login: str) -> None:
    conn.execute(delete(login_failures).where(login_failures.c.login == login[:320]))
