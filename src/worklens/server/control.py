"""What the server tells an agent along with its answers (``messages.AgentControl``):
its new token while a rotation is pending, and the organization's agent
settings when the agent applies another version of them.

Called by the agent endpoints (the WebSocket's AckFrame, the HTTP ingest and
heartbeat answers) after the request was authenticated; it needs the token the
agent called with, from which the new token is derived (store/devices.py).
"""

from __future__ import annotations

import logging

from worklens.protocol.messages import AgentControl, AgentSettings
from worklens.server.security import hash_secret
from worklens.server.services import Services
from worklens.server.store import agent_settings as agent_settings_store
from worklens.server.store import devices as devices_store
from worklens.server.store.devices import DeviceAuth

log = logging.getLogger(__name__)


def control_for(
    services: Services, device: DeviceAuth, token: str, reported_version: int | None
) -> AgentControl | None:
    """What to tell the agent now, or None (sync: call from a thread).

    ``reported_version``: the settings version the agent said it applies; None
    from an agent that predates control messages, which is then told nothing
    (it could not read them; its rotation stays pending and its old token works).
    """
    if reported_version is None:
        return None
    new_token = devices_store.rotation_token(device, token)
    if new_token is not None and device.rotation_pending_hash != hash_secret(new_token):
        # Stored before the token leaves, so it is accepted whenever it comes back.
        with services.db.write() as conn:
            devices_store.note_rotation_sent(conn, device, new_token)
        log.info("device %d: new token sent (token rotation)", device.id)
    settings = None
    if reported_version != device.settings_version:
        with services.db.read() as conn:
            current = agent_settings_store.get(conn, device.org_id)
        settings = AgentSettings(
            version=current.version,
            **{name: current.values.get(name) for name in agent_settings_store.NAMES},
        )
    if new_token is None and settings is None:
        return None
    return AgentControl(rotate_token=new_token, settings=settings)
