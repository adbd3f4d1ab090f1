"""The database schema, in one place, for SQLite and PostgreSQL alike.

Alembic migrations (``server/migrations``) create exactly this; a test compares
the migrated database with this metadata.

Events are stored compactly because there are many of them: a per-bucket time
ordered primary key (no separate rowid on SQLite), integer milliseconds, and the
event payload deduplicated into ``event_data`` (a focus stream repeats the same
few app/title pairs all day).
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    SmallInteger,
    String,
    Table,
    Text,
    UniqueConstraint,
)

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(column_0_label)s",
        "uq": "uq_%(table_name)s_%(column_0_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

# SQLite's INTEGER PRIMARY KEY is the rowid; PostgreSQL wants BIGINT identity.
Id = BigInteger().with_variant(Integer(), "sqlite")

orgs = Table(
    "orgs",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("name", String(128), nullable=False, unique=True),
    Column("enroll_secret_hash", String(64), nullable=False, unique=True),
    # IANA name; reports split days at this zone's midnight, and day rollups
    # of the organization's devices are kept in its local days.
    Column("timezone", String(64), nullable=False, server_default="UTC"),
    Column("created_ms", BigInteger, nullable=False),
)

api_tokens = Table(
    "api_tokens",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("org_id", ForeignKey("orgs.id", ondelete="CASCADE"), nullable=False, index=True),
    Column("role", String(16), nullable=False),
    Column("name", String(128), nullable=False, server_default=""),
    Column("token_hash", String(64), nullable=False, unique=True),
    Column("created_ms", BigInteger, nullable=False),
    Column("revoked_ms", BigInteger),
)

devices = Table(
    "devices",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("org_id", ForeignKey("orgs.id", ondelete="CASCADE"), nullable=False),
    Column("hardware_uuid", String(128), nullable=False),
    Column("hostname", String(255), nullable=False),
    Column("os_user", String(255), nullable=False, server_default=""),
    Column("os", String(255), nullable=False, server_default=""),
    Column("kernel", String(255), nullable=False, server_default=""),
    Column("email", String(320)),
    Column("identity", Text, nullable=False, server_default="{}"),  # full SystemIdentity JSON
    Column("token_hash", String(64), unique=True),  # NULL once revoked
    Column("blocked", Boolean, nullable=False, server_default="0"),
    Column("created_ms", BigInteger, nullable=False),
    Column("last_seen_ms", BigInteger),
    Column("agent_version", String(64), nullable=False, server_default=""),
    Column("spool_depth", Integer, nullable=False, server_default="0"),
    Column("dropped", BigInteger, nullable=False, server_default="0"),
    # What the device shows now, from the newest focus and afk events ingested
    # (the live hub and the fleet page read these, never the event tables).
    Column("current_app", Text, nullable=False, server_default=""),
    Column("current_title", Text, nullable=False, server_default=""),
    Column("current_since_ms", BigInteger),
    Column("afk_status", String(16), nullable=False, server_default=""),
    Column("afk_since_ms", BigInteger),
    # When its live connection closed: offline at once, until heard from again.
    Column("disconnected_ms", BigInteger),
    UniqueConstraint("org_id", "hardware_uuid"),
)

# A bucket is one stream of events from one source on one device, as in ActivityWatch.
buckets = Table(
    "buckets",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("device_id", ForeignKey("devices.id", ondelete="CASCADE"), nullable=False),
    Column("name", String(255), nullable=False),
    Column("type", String(64), nullable=False),
    Column("client", String(128), nullable=False, server_default=""),
    Column("created_ms", BigInteger, nullable=False),
    # Longest event ever stored here: bounds how far back an overlap search must look.
    Column("max_duration_ms", BigInteger, nullable=False, server_default="0"),
    UniqueConstraint("device_id", "name"),
)

event_data = Table(
    "event_data",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("hash", LargeBinary(16), nullable=False, unique=True),
    Column("data", Text, nullable=False),  # canonical JSON
)

events = Table(
    "events",
    metadata,
    Column("bucket_id", ForeignKey("buckets.id", ondelete="CASCADE"), primary_key=True),
    Column("start_ms", BigInteger, primary_key=True),
    Column("uid", LargeBinary(16), primary_key=True),  # the client's event id
    Column("duration_ms", BigInteger, nullable=False),
    Column("data_id", ForeignKey("event_data.id"), nullable=False),
    sqlite_with_rowid=False,
)

host_samples = Table(
    "host_samples",
    metadata,
    Column("device_id", ForeignKey("devices.id", ondelete="CASCADE"), primary_key=True),
    Column("ts_ms", BigInteger, primary_key=True),
    Column("cpu_percent", Float, nullable=False),
    Column("mem_percent", Float, nullable=False),
    Column("swap_percent", Float),
    Column("disk_percent", Float),
    Column("load1", Float),
    Column("load5", Float),
    Column("load15", Float),
    Column("uptime_s", Float),
    Column("temperature_c", Float),
    sqlite_with_rowid=False,
)

ingest_batches = Table(
    "ingest_batches",
    metadata,
    Column("device_id", ForeignKey("devices.id", ondelete="CASCADE"), primary_key=True),
    Column("batch_id", LargeBinary(16), primary_key=True),
    Column("received_ms", BigInteger, nullable=False),
    Column("accepted", Integer, nullable=False),
    Column("duplicates", Integer, nullable=False),
    sqlite_with_rowid=False,
)

# Rollups: active time per device, period and key, so long-range reports never
# scan raw events. One row per (device, resolution, dimension, period) holds all
# keys of that period packed (see rollups.pack): a PostgreSQL row costs ~28
# bytes of header and a B-tree entry, which one row per key would pay ~10 times
# per period. res 0 = hour, 1 = UTC day; dim 0 = app (key: rollup_keys.id),
# dim 1 = the whole focus payload (key: event_data.id), from which titles,
# categories and anything else derived from the payload are computed at read
# time, so a change of category rules applies to history at once.
rollup_keys = Table(
    "rollup_keys",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("dim", String(16), nullable=False),
    Column("value", Text, nullable=False),
    UniqueConstraint("dim", "value"),
)

rollups = Table(
    "rollups",
    metadata,
    # Device first: a report reads each of its devices' periods as one range.
    Column("device_id", ForeignKey("devices.id", ondelete="CASCADE"), primary_key=True),
    Column("res", SmallInteger, primary_key=True),
    Column("dim", SmallInteger, primary_key=True),
    Column("period_s", BigInteger, primary_key=True),
    Column("body", LargeBinary, nullable=False),
    sqlite_with_rowid=False,
)

# Hours whose rollups must be recomputed. gen is a random number set anew by
# every ingest that touches the hour, so a refresh can tell whether the hour
# changed while it computed, even across a delete and re-insert of the mark.
rollup_dirty = Table(
    "rollup_dirty",
    metadata,
    Column("device_id", ForeignKey("devices.id", ondelete="CASCADE"), primary_key=True),
    Column("hour_s", BigInteger, primary_key=True),
    Column("gen", BigInteger, nullable=False, server_default="0"),
    sqlite_with_rowid=False,
)

# Raw events of one bucket and UTC day (by start), packed into one row once the
# day is old enough (store/compaction.py): a row per event costs PostgreSQL more
# in headers and index entries than the event itself. ``body`` is the columnar
# encoding of store/chunks.py; n, min_start_ms and max_end_ms let readers skip
# chunks without decoding them. A day's events live either here or in
# ``events``, never in both. Payload ids inside ``body`` have no foreign key:
# whoever ever deletes ``event_data`` rows must look in chunks too.
event_chunks = Table(
    "event_chunks",
    metadata,
    Column("bucket_id", ForeignKey("buckets.id", ondelete="CASCADE"), primary_key=True),
    Column("day_s", BigInteger, primary_key=True),
    Column("n", Integer, nullable=False),
    Column("min_start_ms", BigInteger, nullable=False),
    Column("max_end_ms", BigInteger, nullable=False),
    Column("body", LargeBinary, nullable=False),
)


# --- people and category rules ---------------------------------------------

# A team groups people; managers will see their teams (issue 4). Its category
# overrides (JSON, see worklens.categories.TeamOverrides) adjust the
# organization's rules for the devices of its people.
teams = Table(
    "teams",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("org_id", ForeignKey("orgs.id", ondelete="CASCADE"), nullable=False),
    Column("name", String(128), nullable=False),
    Column("category_overrides", Text),  # NULL = none
    Column("created_ms", BigInteger, nullable=False),
    UniqueConstraint("org_id", "name"),
)

# A person may use several devices; reports by person merge them.
people = Table(
    "people",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("org_id", ForeignKey("orgs.id", ondelete="CASCADE"), nullable=False),
    Column("team_id", ForeignKey("teams.id", ondelete="SET NULL")),
    Column("name", String(255), nullable=False),
    Column("email", String(320)),
    Column("created_ms", BigInteger, nullable=False),
    UniqueConstraint("org_id", "name"),
)

device_people = Table(
    "device_people",
    metadata,
    # One person per device (a shared device belongs to nobody in particular).
    Column("device_id", ForeignKey("devices.id", ondelete="CASCADE"), primary_key=True),
    Column("person_id", ForeignKey("people.id", ondelete="CASCADE"), nullable=False, index=True),
)

# The organization's category rules (JSON, see worklens.categories.RuleSet);
# no row = the shipped defaults.
category_rules = Table(
    "category_rules",
    metadata,
    Column("org_id", ForeignKey("orgs.id", ondelete="CASCADE"), primary_key=True),
    Column("body", Text, nullable=False),
    Column("updated_ms", BigInteger, nullable=False),
)

# Rollups of a person: all their devices merged, time when two of them were
# active at once counted once (see Rollups: the most recently started activity
# wins). Same layout and marks as the device rollups above.
person_rollups = Table(
    "person_rollups",
    metadata,
    Column("person_id", ForeignKey("people.id", ondelete="CASCADE"), primary_key=True),
    Column("res", SmallInteger, primary_key=True),
    Column("dim", SmallInteger, primary_key=True),
    Column("period_s", BigInteger, primary_key=True),
    Column("body", LargeBinary, nullable=False),
    sqlite_with_rowid=False,
)

person_dirty = Table(
    "person_dirty",
    metadata,
    Column("person_id", ForeignKey("people.id", ondelete="CASCADE"), primary_key=True),
    Column("hour_s", BigInteger, primary_key=True),
    Column("gen", BigInteger, nullable=False, server_default="0"),
    sqlite_with_rowid=False,
)


# --- users, sessions, audit -------------------------------------------------

# People who log in to the dashboard (API tokens stay in api_tokens). The login
# (an e-mail or any name) is unique per organization and stored lower-cased;
# the password only as an argon2id hash. Roles are defined in server/access.py.
users = Table(
    "users",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("org_id", ForeignKey("orgs.id", ondelete="CASCADE"), nullable=False),
    Column("email", String(320), nullable=False),
    Column("name", String(255), nullable=False, server_default=""),
    Column("password_hash", String(255), nullable=False),
    Column("role", String(16), nullable=False),
    # Role "self": the person whose data the user sees.
    Column("person_id", ForeignKey("people.id", ondelete="SET NULL")),
    Column("created_ms", BigInteger, nullable=False),
    Column("disabled_ms", BigInteger),
    UniqueConstraint("org_id", "email"),
)
Index("ix_users_email", users.c.email)  # the login form looks a login up in every org

# A manager's teams.
user_teams = Table(
    "user_teams",
    metadata,
    Column("user_id", ForeignKey("users.id", ondelete="CASCADE"), primary_key=True),
    Column("team_id", ForeignKey("teams.id", ondelete="CASCADE"), primary_key=True),
)

# Dashboard sessions. The cookie holds a random 256-bit id; only its SHA-256 is
# stored, so a copy of the database does not log anyone in. The CSRF token is
# random per session and useless without the session cookie.
sessions = Table(
    "sessions",
    metadata,
    Column("id_hash", String(64), primary_key=True),
    Column("user_id", ForeignKey("users.id", ondelete="CASCADE"), nullable=False, index=True),
    Column("csrf_token", String(64), nullable=False),
    Column("created_ms", BigInteger, nullable=False),
    Column("last_seen_ms", BigInteger, nullable=False),
    Column("expires_ms", BigInteger, nullable=False),  # absolute end
    Column("ip", String(64), nullable=False, server_default=""),
    Column("user_agent", String(256), nullable=False, server_default=""),
)

# Failed logins of the last minutes, per login and per client address: the
# throttle is in the database so that every server process counts the same.
login_failures = Table(
    "login_failures",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("login", String(320), nullable=False, index=True),
    Column("ip", String(64), nullable=False, index=True),
    Column("at_ms", BigInteger, nullable=False, index=True),
)

# Every admin action, written in the transaction of the action itself.
audit_log = Table(
    "audit_log",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("org_id", ForeignKey("orgs.id", ondelete="CASCADE"), nullable=False),
    Column("at_ms", BigInteger, nullable=False),
    Column("actor_kind", String(8), nullable=False),  # user | token | cli
    Column("actor_id", BigInteger),
    Column("actor_name", String(320), nullable=False, server_default=""),
    Column("action", String(64), nullable=False),  # e.g. "device.block"
    Column("target", String(255), nullable=False, server_default=""),
    Column("details", Text, nullable=False, server_default="{}"),  # JSON object
    Column("ip", String(64), nullable=False, server_default=""),
)
# The log is read per organization, newest first, in pages.
Index("ix_audit_log_org_id_id", audit_log.c.org_id, audit_log.c.id)

# Changes for open dashboards, shared by the server processes of one database
# (``worklens server --workers N``): each process appends and polls; rows are
# kept for a minute (server/live.py).
live_events = Table(
    "live_events",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("org_id", BigInteger, nullable=False),
    Column("at_ms", BigInteger, nullable=False, index=True),
    Column("body", Text, nullable=False),  # JSON
)


# --- device token rotation, agent settings ---------------------------------------

# A token rotation an admin asked for (POST /api/v1/devices/{id}/rotate), until
# the device first uses its new token (store/devices.py). The new token is
# HMAC-SHA256(old token, nonce): the server derives it again from the old token
# each time the device calls with it, so it stores neither token, and the nonce
# alone gives nothing. pending_hash (SHA-256 of the new token) is set when the
# new token is first sent; a request with it makes it the device's token.
device_token_rotations = Table(
    "device_token_rotations",
    metadata,
    Column("device_id", ForeignKey("devices.id", ondelete="CASCADE"), primary_key=True),
    Column("nonce", String(64), nullable=False),
    Column("pending_hash", String(64), unique=True),
    Column("requested_ms", BigInteger, nullable=False),
)

# The agent settings an organization pushes to its agents (JSON object of
# wire.PUSHED_SETTINGS names; a missing name = the agent's own value); version
# goes up with every change, agents report the one they apply. No row = none.
agent_settings = Table(
    "agent_settings",
    metadata,
    Column("org_id", ForeignKey("orgs.id", ondelete="CASCADE"), primary_key=True),
    Column("version", BigInteger, nullable=False),
    Column("body", Text, nullable=False),
    Column("updated_ms", BigInteger, nullable=False),
)
