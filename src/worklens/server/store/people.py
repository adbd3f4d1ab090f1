"""Teams, people and which person uses which device, per organization."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, delete, select

from worklens.server.access import Access
from worklens.server.store.rollups import mark_person_hours_of
from worklens.server.store.schema import device_people, devices, people, teams


class NotFound(LookupError):
    """No such team, person or device in this organization."""


class Exists(ValueError):
    """The name is taken in this organization."""


def create_team(conn: Connection, org_id: int, name: str, now_ms: int) -> int:
    if conn.execute(
        select(teams.c.id).where(teams.c.org_id == org_id, teams.c.name == name)
    ).first():
        raise Exists(f"team {name!r} already exists")
    key = conn.execute(
        teams.insert().values(org_id=org_id, name=name, created_ms=now_ms)
    ).inserted_primary_key
    assert key is not None
    return int(key[0])


def team_id_by_name(conn: Connection, org_id: int, name: str) -> int:
    found = conn.execute(
        select(teams.c.id).where(teams.c.org_id == org_id, teams.c.name == name)
    ).scalar()
    if found is None:
        raise NotFound(f"no team {name!r} in this organization")
    return int(found)


def list_teams(conn: Connection, org_id: int) -> list[dict[str, Any]]:
    rows = conn.execute(
        select(teams.c.id, teams.c.name).where(teams.c.org_id == org_id).order_by(teams.c.name)
    )
    return [dict(r._mapping) for r in rows]


def check_team(conn: Connection, org_id: int, team_id: int) -> None:
    if (
        conn.execute(
            select(teams.c.id).where(teams.c.org_id == org_id, teams.c.id == team_id)
        ).first()
        is None
    ):
        raise NotFound(f"no team {team_id} in this organization")


def create_person(
    conn: Connection,
    org_id: int,
    name: str,
    now_ms: int,
    team_id: int | None = None,
    email: str | None = None,
) -> int:
    if team_id is not None:
        check_team(conn, org_id, team_id)
    if conn.execute(
        select(people.c.id).where(people.c.org_id == org_id, people.c.name == name)
    ).first():
        raise Exists(f"person {name!r} already exists")
    key = conn.execute(
        people.insert().values(
            org_id=org_id, name=name, team_id=team_id, email=email, created_ms=now_ms
        )
    ).inserted_primary_key
    assert key is not None
    return int(key[0])


def list_people(conn: Connection, org_id: int) -> list[dict[str, Any]]:
    rows = conn.execute(
        select(people.c.id, people.c.name, people.c.email, people.c.team_id)
        .where(people.c.org_id == org_id)
        .order_by(people.c.name)
    ).all()
    owned: dict[int, list[int]] = {}
    for device_id, person_id in conn.execute(
        select(device_people.c.device_id, device_people.c.person_id)
        .join(people, people.c.id == device_people.c.person_id)
        .where(people.c.org_id == org_id)
    ):
        owned.setdefault(person_id, []).append(device_id)
    return [{**r._mapping, "devices": sorted(owned.get(r.id, []))} for r in rows]


def check_person(conn: Connection, org_id: int, person_id: int) -> None:
    if (
        conn.execute(
            select(people.c.id).where(people.c.org_id == org_id, people.c.id == person_id)
        ).first()
        is None
    ):
        raise NotFound(f"no person {person_id} in this organization")


def assign_device(conn: Connection, org_id: int, device_id: int, person_id: int | None) -> None:
    """Say who uses a device (``None``: nobody in particular). The people who
    gain or lose it get the hours it has data in recomputed (their rollups
    merge their devices)."""
    found = conn.execute(
        select(devices.c.id).where(devices.c.org_id == org_id, devices.c.id == device_id)
    ).first()
    if found is None:
        raise NotFound(f"no device {device_id} in this organization")
    if person_id is not None:
        check_person(conn, org_id, person_id)
    before = conn.execute(
        select(device_people.c.person_id).where(device_people.c.device_id == device_id)
    ).scalar()
    if before == person_id:
        return
    conn.execute(delete(device_people).where(device_people.c.device_id == device_id))
    if person_id is not None:
        conn.execute(device_people.insert().values(device_id=device_id, person_id=person_id))
    for affected in (before, person_id):
        if affected is not None:
            mark_person_hours_of(conn, int(affected), device_id)


def device_teams(conn: Connection, device_ids: list[int]) -> dict[int, int | None]:
    """The team of each device's person (None when it has no person or team)."""
    out: dict[int, int | None] = dict.fromkeys(device_ids)
    for start in range(0, len(device_ids), 500):
        chunk = device_ids[start : start + 500]
        for device_id, team_id in conn.execute(
            select(device_people.c.device_id, people.c.team_id)
            .join(people, people.c.id == device_people.c.person_id)
            .where(device_people.c.device_id.in_(chunk))
        ):
            out[device_id] = team_id
    return out


def devices_of(
    conn: Connection, org_id: int, person_id: int | None = None, team_id: int | None = None
) -> list[int]:
    """The organization's devices, or those of one person or one team's people."""
    q = select(devices.c.id).where(devices.c.org_id == org_id)
    if person_id is not None or team_id is not None:
        q = q.join(device_people, device_people.c.device_id == devices.c.id).join(
            people, people.c.id == device_people.c.person_id
        )
        if person_id is not None:
            q = q.where(people.c.id == person_id)
        if team_id is not None:
            q = q.where(people.c.team_id == team_id)
    return sorted(int(i) for i in conn.execute(q).scalars())


def device_owners(
    conn: Connection, org_id: int, device_id: int | None = None
) -> dict[int, tuple[int | None, int | None]]:
    """Each device of the organization (or just one) with its person and that
    person's team."""
    q = (
        select(devices.c.id, device_people.c.person_id, people.c.team_id)
        .select_from(
            devices.outerjoin(device_people, device_people.c.device_id == devices.c.id).outerjoin(
                people, people.c.id == device_people.c.person_id
            )
        )
        .where(devices.c.org_id == org_id)
    )
    if device_id is not None:
        q = q.where(devices.c.id == device_id)
    return {int(d): (p, t) for d, p, t in conn.execute(q)}


def visible_devices(conn: Connection, access: Access) -> frozenset[int] | None:
    """The devices ``access`` may see; None when it sees the whole organization."""
    if access.sees_whole_org:
        return None
    return frozenset(
        d
        for d, (person, team) in device_owners(conn, access.org_id).items()
        if access.may_see_device(person, team)
    )


def check_device_visible(conn: Connection, access: Access, device_id: int) -> None:
    """NotFound unless the device is the organization's and ``access`` may see it."""
    owner = device_owners(conn, access.org_id, device_id).get(device_id)
    if owner is None or not access.may_see_device(*owner):
        raise NotFound(f"no device {device_id} in this organization")
