"""The device token: obtained once by enrolling, kept on disk with mode 0600."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from worklens import __version__

if TYPE_CHECKING:
    import httpx


class EnrollmentError(RuntimeError):
    """Enrollment failed; the message says why (wrong secret, server unreachable, ...)."""


@dataclass(frozen=True, slots=True)
class Credentials:
    server: str
    device_id: int
    token: str


def load_token(path: Path, server: str) -> Credentials | None:
    """The saved token, if there is one for this server."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError):
        return None  # unreadable or corrupt: enroll again
    if data.get("server") != server or not isinstance(data.get("token"), str):
        return None
    return Credentials(server, int(data["device_id"]), data["token"])


def save_token(path: Path, creds: Credentials) -> None:
    """Write atomically, created 0600 from the start so the token is never world-readable."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        json.dump({"server": creds.server, "device_id": creds.device_id, "token": creds.token}, f)
        f.flush()
        os.fsync(f.fileno())
    os.chmod(tmp, 0o600)
    os.replace(tmp, path)


def forget_token(path: Path) -> None:
    path.unlink(missing_ok=True)


def enroll(server: str, secret: str, client: httpx.Client | None = None) -> Credentials:
    # Only on first run: the steady state needs neither the HTTP client nor
    # pydantic (the enrollment messages are validated with the protocol models).
    import httpx

    from worklens.agent.identity import system_identity
    from worklens.protocol.messages import EnrollRequest, EnrollResponse

    ident = system_identity(__version__)
    req = EnrollRequest(enroll_secret=secret, **ident.model_dump())
    own = client is None
    http = client or httpx.Client(timeout=15)
    try:
        r = http.post(f"{server}/api/v1/enroll", json=req.model_dump(mode="json"))
    except httpx.HTTPError as exc:
        raise EnrollmentError(f"cannot reach {server}: {exc}") from exc
    finally:
        if own:
            http.close()
    if r.status_code != 201:
        try:
            reason = r.json().get("error", r.text)
        except ValueError:
            reason = r.text[:200]
        raise EnrollmentError(f"enrollment refused by {server} ({r.status_code}): {reason}")
    resp = EnrollResponse.model_validate(r.json())
    return Credentials(server, resp.device_id, resp.token)


def enroll_in_child(server: str, secret: str, path: Path, timeout: float = 60.0) -> Credentials:
    """Enroll from a short-lived child process that saves the token at ``path``.

    Enrolling needs pydantic, httpx and the identity probes (~15 MiB); memory
    a long-running process never gives back to the system once it has used it.
    Doing it in a child keeps the agent that runs for days light. The secret
    goes through stdin, never argv (which any local user can read in ps).
    """
    request = json.dumps({"server": server, "secret": secret, "path": str(path)})
    try:
        done = subprocess.run(
            [sys.executable, "-m", "worklens.agent.enrollment"],
            input=request,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise EnrollmentError(f"enrollment with {server} took longer than {timeout:.0f} s") from exc
    if done.returncode != 0:
        lines = done.stderr.strip().splitlines()
        raise EnrollmentError(lines[-1] if lines else f"enrollment exited with {done.returncode}")
    creds = load_token(path, server)
    if creds is None:
        raise EnrollmentError(f"enrollment finished but left no token in {path}")
    return creds


def _child_main() -> int:
    request = json.loads(sys.stdin.read())
    try:
        creds = enroll(request["server"], request["secret"])
    except EnrollmentError as exc:
        print(exc, file=sys.stderr)
        return 1
    save_token(Path(request["path"]), creds)
    return 0


if __name__ == "__main__":
    sys.exit(_child_main())
