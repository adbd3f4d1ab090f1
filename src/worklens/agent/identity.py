"""What this machine says about itself when it enrolls.

The hardware UUID is the device's stable identity across reinstalls of the
agent: the server uses it to recognise a machine that enrolls again. Each
platform has its own source, read by the real code path behind a platform
check; the text parsers are separate functions so they can be tested anywhere.
"""

from __future__ import annotations

import getpass
import ipaddress
import platform
import re
import socket
import subprocess
import sys
import uuid
from pathlib import Path

import psutil

from worklens.protocol.messages import NetworkInterface, SystemIdentity

# Linux sources, best first. product_uuid is the firmware (SMBIOS) UUID and
# survives an OS reinstall, but only root can read it; machine-id is per
# installation and readable by everyone.
LINUX_UUID_SOURCES = (
    Path("/sys/class/dmi/id/product_uuid"),
    Path("/etc/machine-id"),
    Path("/var/lib/dbus/machine-id"),
)
OS_RELEASE_FILES = (Path("/etc/os-release"), Path("/usr/lib/os-release"))

# Firmware that was never given a UUID reports one of these placeholders;
# using them would merge unrelated machines into one device.
_PLACEHOLDER_UUIDS = {
    "00000000-0000-0000-0000-000000000000",
    "ffffffff-ffff-ffff-ffff-ffffffffffff",
}

# Protocol limits (see NetworkInterface / SystemIdentity).
MAX_INTERFACES = 64
MAX_ADDRESSES = 32


class IdentityUnavailable(RuntimeError):
    """No stable hardware identifier could be found on this machine."""


# --- parsers (pure, testable everywhere) -----------------------------------


def parse_os_release(text: str) -> dict[str, str]:
    """Parse os-release(5): KEY=value lines, values optionally shell-quoted."""
    fields: dict[str, str] = {}
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        key, value = line.split("=", 1)
        value = value.strip()
        quote = value[0] if len(value) >= 2 and value[0] == value[-1] else ""
        if quote in ("'", '"'):
            value = value[1:-1]
        if quote == '"':
            # Inside double quotes os-release allows backslash escapes of $"\`.
            value = re.sub(r'\\([$"\\`])', r"\1", value)
        fields[key.strip()] = value
    return fields


_IOREG_UUID = re.compile(r'"IOPlatformUUID"\s*=\s*"([^"]+)"')


def parse_ioreg_platform_uuid(text: str) -> str | None:
    """IOPlatformUUID from ``ioreg -rd1 -c IOPlatformExpertDevice`` output."""
    match = _IOREG_UUID.search(text)
    return match.group(1).strip() if match else None


# /proc/cpuinfo names the CPU differently per architecture: x86 "model name",
# MIPS "cpu model", PowerPC "cpu", many ARM boards only "Hardware" or "Model".
_CPUINFO_KEYS = ("model name", "cpu model", "cpu", "hardware", "model", "processor")


def parse_cpuinfo_model(text: str) -> str | None:
    """The CPU's brand string from /proc/cpuinfo text, or None."""
    found: dict[str, str] = {}
    for line in text.splitlines():
        if ":" not in line:
            continue
        key, value = line.split(":", 1)
        key, value = key.strip().lower(), value.strip()
        # "processor" on x86 and ARM64 is just the CPU's index; only a name counts.
        if value and not value.isdigit():
            found.setdefault(key, value)
    for key in _CPUINFO_KEYS:
        if key in found:
            return found[key]
    return None


def normalize_mac(mac: str) -> str | None:
    """Lower-case, colon-separated MAC; None for the all-zero address (loopback)."""
    cleaned = mac.strip().lower().replace("-", ":")
    if not cleaned or set(cleaned) <= {"0", ":"}:
        return None
    return cleaned


def _usable_id(value: str) -> str | None:
    value = value.strip().lower()
    if not value or value in _PLACEHOLDER_UUIDS:
        return None
    return value


# --- platform readers --------------------------------------------------------


def _read_text(path: Path) -> str | None:
    try:
        return path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        # Missing, or root-only (product_uuid): try the next source.
        return None


def _linux_hardware_uuid() -> str | None:
    for path in LINUX_UUID_SOURCES:
        text = _read_text(path)
        if text is not None and (value := _usable_id(text)):
            return value
    return None


def _windows_hardware_uuid() -> str | None:
    if sys.platform == "win32":
        import winreg

        try:
            # KEY_WOW64_64KEY: a 32-bit Python would otherwise read the
            # redirected WOW6432Node view, which has no MachineGuid.
            with winreg.OpenKey(
                winreg.HKEY_LOCAL_MACHINE,
                r"SOFTWARE\Microsoft\Cryptography",
                0,
                winreg.KEY_READ | winreg.KEY_WOW64_64KEY,
            ) as key:
                value, _kind = winreg.QueryValueEx(key, "MachineGuid")
        except OSError:
            return None
        return _usable_id(str(value))
    return None


def _macos_hardware_uuid() -> str | None:
    try:
        result = subprocess.run(
            ["ioreg", "-rd1", "-c", "IOPlatformExpertDevice"],
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    found = parse_ioreg_platform_uuid(result.stdout)
    return _usable_id(found) if found else None


def hardware_uuid() -> str:
    """A stable identifier of this machine, the same on every call.

    Raises IdentityUnavailable when the platform offers none (e.g. a container
    without /etc/machine-id and without a hardware MAC address).
    """
    if sys.platform.startswith("linux"):
        found = _linux_hardware_uuid()
    elif sys.platform == "win32":
        found = _windows_hardware_uuid()
    elif sys.platform == "darwin":
        found = _macos_hardware_uuid()
    else:
        found = None
    if found:
        return found
    # Last resort: the MAC address of a network card. uuid.getnode() makes up a
    # random number (with the multicast bit set) when it finds none; that would
    # change every run, so it is rejected.
    node = uuid.getnode()
    if not node & (1 << 40):
        return f"mac-{node:012x}"
    raise IdentityUnavailable(
        "no machine identifier found: no DMI product_uuid, /etc/machine-id, "
        "registry MachineGuid or IOPlatformUUID, and no hardware MAC address; "
        "create /etc/machine-id (systemd-machine-id-setup)"
    )


def os_description() -> str:
    """Human-readable OS name, e.g. "Debian GNU/Linux 12 (bookworm)"."""
    if sys.platform.startswith("linux"):
        for path in OS_RELEASE_FILES:
            text = _read_text(path)
            if text is not None:
                fields = parse_os_release(text)
                name = fields.get("PRETTY_NAME") or fields.get("NAME")
                if name:
                    return name
        return "Linux"
    if sys.platform == "darwin":
        version = platform.mac_ver()[0]
        return f"macOS {version}".strip()
    if sys.platform == "win32":
        return f"Windows {platform.release()} ({platform.version()})"
    return platform.platform(terse=True)


def cpu_brand() -> str:
    if sys.platform.startswith("linux"):
        text = _read_text(Path("/proc/cpuinfo"))
        if text is not None and (model := parse_cpuinfo_model(text)):
            return model
    return platform.processor() or platform.machine()


def os_user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        # No USER/LOGNAME and no passwd entry for our uid (some containers).
        return ""


def _is_ip(address: str) -> bool:
    try:
        ipaddress.ip_address(address.split("%", 1)[0])  # strip an IPv6 zone (%eth0)
    except ValueError:
        return False
    return True


def network_interfaces() -> list[NetworkInterface]:
    """Interfaces with their IP addresses and MAC, as many as the protocol allows."""
    link_family = getattr(psutil, "AF_LINK", None)
    interfaces: list[NetworkInterface] = []
    for name, entries in psutil.net_if_addrs().items():
        addresses: list[str] = []
        mac: str | None = None
        for entry in entries:
            if entry.family == link_family:
                mac = mac or normalize_mac(entry.address)
            elif entry.family in (socket.AF_INET, socket.AF_INET6) and _is_ip(entry.address):
                addresses.append(entry.address)
        interfaces.append(
            NetworkInterface(name=name[:64], addresses=addresses[:MAX_ADDRESSES], mac=mac)
        )
    # A container host can have hundreds of veth interfaces; keep the ones with
    # addresses first so a cut at the protocol limit drops the least useful.
    interfaces.sort(key=lambda i: (not i.addresses, i.name))
    return interfaces[:MAX_INTERFACES]


def system_identity(agent_version: str) -> SystemIdentity:
    """Everything the agent reports about this machine at enrollment."""
    return SystemIdentity(
        hardware_uuid=hardware_uuid(),
        hostname=socket.gethostname(),
        os_user=os_user(),
        os=os_description(),
        kernel=platform.release(),
        cpu=cpu_brand()[:255],
        cpu_cores=psutil.cpu_count(logical=True),
        memory_bytes=psutil.virtual_memory().total,
        interfaces=network_interfaces(),
        agent_version=agent_version,
    )
