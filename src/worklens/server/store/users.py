"""Dashboard users: accounts, argon2id passwords, roles, a manager's teams.

Passwords are hashed with argon2id (argon2-cffi's PasswordHasher and its
RFC 9106 defaults); a stored hash made with other parameters is replaced by a
new one at the next successful login. A login that names no account costs as
much as one that does (a dummy hash is verified), so response times do not
tell which logins exist.
"""

from __future__ import annotations

import functools
import secrets
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import Connection, delete, select, update

from worklens.server.access import Access, Role, check_role
from worklens.server.store.schema import orgs, people, sessions, teams, user_teams, users

MIN_PASSWORD = 10
# argon2 hashes any length, slowly: a bound keeps one request from costing seconds.
MAX_PASSWORD = 1024
MAX_LOGIN = 320

_hasher = PasswordHasher()


class UserError(ValueError):
    """A value is not acceptable; the message names it."""

    def __init__(self, message: str, field: str) -> None:
        super().__init__(message)
        self.field = field


class UserExists(UserError):
    pass


class UnknownUser(LookupError):
    pass


@dataclass(frozen=True, slots=True)
class User:
    id: int
    org_id: int
    email: str
    name: str
    role: Role
    person_id: int | None
    team_ids: frozenset[int]
    created_ms: int
    disabled_ms: int | None

    def access(self, ip: str = "") -> Access:
        return Access.for_user(
            self.org_id,
            self.role,
            self.id,
            self.name or self.email,
            self.team_ids,
            self.person_id,
            ip,
        )

    def public(self) -> dict[str, object]:
        """What the API shows of a user (never the hash)."""
        return {
            "id": self.id,
            "email": self.email,
            "name": self.name,
            "role": self.role,
            "person_id": self.person_id,
            "team_ids": sorted(self.team_ids),
            "created_ms": self.created_ms,
            "disabled": self.disabled_ms is not None,
        }


def normalize_login(login: str) -> str:
    """The stored form of a login: trimmed, NFC, lower-cased; no spaces inside."""
    value = unicodedata.normalize("NFC", login.strip()).lower()
    if not value or len(value) > MAX_LOGIN:
        raise UserError(f"login must be 1 to {MAX_LOGIN} characters", "email")
    if any(c.isspace() or not c.isprintable() for c in value):
        raise UserError(f"login {login!r} must not contain spaces or control characters", "email")
    return value


def check_password(password: str) -> None:
    if len(password) < MIN_PASSWORD:
        raise UserError(f"password must have at least {MIN_PASSWORD} characters", "password")
    if len(password) > MAX_PASSWORD:
        raise UserError(f"password must have at most {MAX_PASSWORD} characters", "password")


def hash_password(password: str) -> str:
    check_password(password)
    return _hasher.hash(password)


@functools.cache
def _dummy_hash() -> str:
    return _hasher.hash(secrets.token_urlsafe(16))


def _verify(stored: str, password: str) -> bool:
    try:
        return _hasher.verify(stored, password)
    except (VerificationError, InvalidHashError):
        return False


# --- reading -----------------------------------------------------------------


def _teams_of(conn: Connection, user_ids: Iterable[int]) -> dict[int, frozenset[int]]:
    ids = list(user_ids)
    found: dict[int, set[int]] = {}
    if ids:
        for uid, tid in conn.execute(
            select(user_teams.c.user_id, user_teams.c.team_id).where(user_teams.c.user_id.in_(ids))
        ):
            found.setdefault(int(uid), set()).add(int(tid))
    return {uid: frozenset(found.get(uid, ())) for uid in ids}


_COLUMNS = (
    users.c.id,
    users.c.org_id,
    users.c.email,
    users.c.name,
    users.c.role,
    users.c.person_id,
    users.c.created_ms,
    users.c.disabled_ms,
)


def _users(conn: Connection, *where: object) -> list[User]:
    rows = conn.execute(select(*_COLUMNS).where(*where).order_by(users.c.email)).all()  # type: ignore[arg-type]
    team_map = _teams_of(conn, (r.id for r in rows))
    return [
        User(
            id=int(r.id),
            org_id=int(r.org_id),
            email=r.email,
            name=r.name,
            role=check_role(r.role),
            person_id=r.person_id,
            team_ids=team_map[r.id],
            created_ms=int(r.created_ms),
            disabled_ms=r.disabled_ms,
        )
        for r in rows
    ]


def get_user(conn: Connection, org_id: int, user_id: int) -> User:
    found = _users(conn, users.c.org_id == org_id, users.c.id == user_id)
    if not found:
        raise UnknownUser(f"no user {user_id} in this organization")
    return found[0]


def user_by_login(conn: Connection, org_id: int, login: str) -> User:
    found = _users(conn, users.c.org_id == org_id, users.c.email == normalize_login(login))
    if not found:
        raise UnknownUser(f"no user {login!r} in this organization")
    return found[0]


def list_users(conn: Connection, org_id: int) -> list[User]:
    return _users(conn, users.c.org_id == org_id)


# --- writing -----------------------------------------------------------------


def _check_person(conn: Connection, org_id: int, person_id: int) -> None:
    row = conn.execute(
        select(people.c.id).where(people.c.id == person_id, people.c.org_id == org_id)
    ).first()
    if row is None:
        raise UserError(f"no person {person_id} in this organization", "person_id")


def _check_teams(conn: Connection, org_id: int, team_ids: frozenset[int]) -> None:
    known = set(
        conn.execute(
            select(teams.c.id).where(teams.c.org_id == org_id, teams.c.id.in_(list(team_ids)))
        ).scalars()
    )
    missing = sorted(team_ids - known)
    if missing:
        raise UserError(f"no team {missing[0]} in this organization", "team_ids")


def _check_shape(role: Role, person_id: int | None, team_ids: frozenset[int]) -> None:
    """What each role needs: a self user a person, teams only for a manager."""
    if role == "self" and person_id is None:
        raise UserError("role self needs the person whose data the user sees", "person_id")
    if role != "self" and person_id is not None:
        raise UserError(f"a person goes with role self, not {role}", "person_id")
    if team_ids and role != "manager":
        raise UserError(f"teams go with role manager, not {role}", "team_ids")


def create_user(
    conn: Connection,
    org_id: int,
    email: str,
    password: str,
    role: str,
    now_ms: int,
    *,
    name: str = "",
    person_id: int | None = None,
    team_ids: Iterable[int] = (),
) -> User:
    login = normalize_login(email)
    try:
        checked_role = check_role(role)
    except ValueError as exc:
        raise UserError(str(exc), "role") from None
    teams_set = frozenset(team_ids)
    _check_shape(checked_role, person_id, teams_set)
    if person_id is not None:
        _check_person(conn, org_id, person_id)
    _check_teams(conn, org_id, teams_set)
    if conn.execute(
        select(users.c.id).where(users.c.org_id == org_id, users.c.email == login)
    ).first():
        raise UserExists(f"user {login!r} already exists in this organization", "email")
    key = conn.execute(
        users.insert().values(
            org_id=org_id,
            email=login,
            name=name.strip(),
            password_hash=hash_password(password),
            role=checked_role,
            person_id=person_id,
            created_ms=now_ms,
        )
    ).inserted_primary_key
    assert key is not None
    user_id = int(key[0])
    if teams_set:
        conn.execute(user_teams.insert(), [{"user_id": user_id, "team_id": t} for t in teams_set])
    return get_user(conn, org_id, user_id)


# update_user: leave the person as it is (None would clear it).
UNSET: Any = object()


def update_user(
    conn: Connection,
    org_id: int,
    user_id: int,
    now_ms: int,
    *,
    role: str | None = None,
    name: str | None = None,
    person_id: int | None = UNSET,
    team_ids: Iterable[int] | None = None,
    disabled: bool | None = None,
) -> tuple[User, dict[str, object]]:
    """Change a user; returns the user as now and what changed (for the audit
    log). Disabling a user, or changing their role, ends their sessions."""
    before = get_user(conn, org_id, user_id)
    new_role = before.role
    if role is not None:
        try:
            new_role = check_role(role)
        except ValueError as exc:
            raise UserError(str(exc), "role") from None
    new_person = before.person_id if person_id is UNSET else person_id
    new_teams = before.team_ids if team_ids is None else frozenset(team_ids)
    # Leaving the role a person or teams go with drops them, unless named anew.
    if new_role != "self" and person_id is UNSET:
        new_person = None
    if new_role != "manager" and team_ids is None:
        new_teams = frozenset()
    if role is not None or person_id is not UNSET or team_ids is not None:
        _check_shape(new_role, new_person, new_teams)
    if new_person is not None and new_person != before.person_id:
        _check_person(conn, org_id, new_person)
    if new_teams != before.team_ids:
        _check_teams(conn, org_id, new_teams)
    changes: dict[str, object] = {}
    values: dict[str, object] = {}
    if new_role != before.role:
        values["role"] = changes["role"] = new_role
    if name is not None and name.strip() != before.name:
        values["name"] = changes["name"] = name.strip()
    if new_person != before.person_id:
        values["person_id"] = changes["person_id"] = new_person
    if disabled is not None and disabled != (before.disabled_ms is not None):
        values["disabled_ms"] = now_ms if disabled else None
        changes["disabled"] = disabled
    if values:
        conn.execute(update(users).where(users.c.id == user_id).values(**values))
    if new_teams != before.team_ids:
        conn.execute(delete(user_teams).where(user_teams.c.user_id == user_id))
        if new_teams:
            conn.execute(
                user_teams.insert(), [{"user_id": user_id, "team_id": t} for t in new_teams]
            )
        changes["team_ids"] = sorted(new_teams)
    # What a session may see is read anew on every request; ending the sessions
    # of a disabled or re-roled user makes the change visible to them at once.
    if "disabled" in changes or "role" in changes:
        conn.execute(delete(sessions).where(sessions.c.user_id == user_id))
    return get_user(conn, org_id, user_id), changes


def set_password(conn: Connection, org_id: int, user_id: int, password: str) -> None:
    """Replace the password and end every session of the user."""
    get_user(conn, org_id, user_id)
    conn.execute(
        update(users).where(users.c.id == user_id).values(password_hash=hash_password(password))
    )
    conn.execute(delete(sessions).where(sessions.c.user_id == user_id))


@dataclass(frozen=True, slots=True)
class Candidate:
    """The stored hash of the one enabled user a login names."""

    org_id: int
    user_id: int
    password_hash: str


def login_key(login: str) -> str:
    """The form of a typed login that the throttle counts failures under."""
    try:
        return normalize_login(login)
    except UserError:
        return login.strip().lower()[:MAX_LOGIN]


def password_candidate(
    conn: Connection, login: str, org_name: str | None = None
) -> Candidate | None:
    """The enabled user with this login (in ``org_name``, when given), if there
    is exactly one. Logins are unique per organization; one that exists in
    several organizations needs the organization's name."""
    try:
        key = normalize_login(login)
    except UserError:
        return None
    q = (
        select(users.c.id, users.c.org_id, users.c.password_hash)
        .select_from(users.join(orgs, orgs.c.id == users.c.org_id))
        .where(users.c.email == key, users.c.disabled_ms.is_(None))
    )
    if org_name and org_name.strip():
        q = q.where(orgs.c.name == org_name.strip())
    rows = conn.execute(q.limit(2)).all()
    if len(rows) != 1:
        return None
    return Candidate(int(rows[0].org_id), int(rows[0].id), rows[0].password_hash)


def verify_password(candidate: Candidate | None, password: str) -> tuple[bool, str | None]:
    """Whether ``password`` is the candidate's, and a new hash when the stored
    one was made with other argon2 parameters. Runs exactly one argon2
    verification whatever the outcome (a dummy hash when there is no
    candidate), so the time taken tells nothing. Pure CPU: call it outside a
    transaction."""
    password = password[: MAX_PASSWORD + 1]
    if candidate is None or len(password) > MAX_PASSWORD:
        _verify(_dummy_hash(), password[:MAX_PASSWORD])
        return False, None
    if not _verify(candidate.password_hash, password):
        return False, None
    if _hasher.check_needs_rehash(candidate.password_hash):
        return True, _hasher.hash(password)
    return True, None


def replace_hash(conn: Connection, user_id: int, password_hash: str) -> None:
    conn.execute(update(users).where(users.c.id == user_id).values(password_hash=password_hash))


def authenticate_password(
    conn: Connection, login: str, password: str, org_name: str | None = None
) -> User | None:
    """The enabled user with this login and password, or None (see
    :func:`password_candidate` and :func:`verify_password`); an outdated hash is
    replaced, so call within a write transaction. The login page does the same
    in three steps, to keep the slow hash out of any transaction."""
    candidate = password_candidate(conn, login, org_name)
    ok, new_hash = verify_password(candidate, password)
    if not ok or candidate is None:
        return None
    if new_hash:
        replace_hash(conn, candidate.user_id, new_hash)
    return get_user(conn, candidate.org_id, candidate.user_id)
