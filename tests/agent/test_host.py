"""Host health and system identity, read from the real machine."""

from __future__ import annotations

import getpass
import os
import platform
import socket
import sys
import time
import uuid
from pathlib import Path

import psutil
import pytest

from worklens.agent import identity
from worklens.agent.collectors.base import Collector
from worklens.agent.collectors.host import HostCollector, highest_temperature, root_filesystem
from worklens.agent.identity import (
    IdentityUnavailable,
    normalize_mac,
    parse_cpuinfo_model,
    parse_ioreg_platform_uuid,
    parse_os_release,
    system_identity,
)
from worklens.protocol.messages import SystemIdentity
from worklens.protocol.wire import HostData

# --- host health ----------------------------------------------------------------


def _burn_cpu(seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        sum(range(1000))


def test_host_collector_is_a_collector_named_host() -> None:
    assert issubclass(HostCollector, Collector)
    assert HostCollector.name == "host"


def test_host_readings_match_the_machine() -> None:
    collector = HostCollector()
    collector.open()
    try:
        _burn_cpu(0.3)
        sample = collector.poll()
    finally:
        collector.close()

    assert isinstance(sample, HostData)
    # This process kept one core busy since open(), so usage cannot be zero.
    assert 0 < sample.cpu_percent <= 100
    assert sample.mem_percent == pytest.approx(psutil.virtual_memory().percent, abs=5)
    assert sample.disk_percent == pytest.approx(psutil.disk_usage(root_filesystem()).percent, abs=1)
    swap = psutil.swap_memory()
    if swap.total == 0:
        assert sample.swap_percent is None
    else:
        assert sample.swap_percent == pytest.approx(swap.percent, abs=5)


def test_load_average_is_measured_and_non_negative() -> None:
    collector = HostCollector()
    collector.open()
    sample = collector.poll()
    assert sample.load1 is not None and sample.load5 is not None and sample.load15 is not None
    assert min(sample.load1, sample.load5, sample.load15) >= 0
    if hasattr(os, "getloadavg"):
        # The 15-minute average barely moves between two reads.
        assert sample.load15 == pytest.approx(os.getloadavg()[2], abs=0.5)


def test_uptime_is_time_since_boot() -> None:
    collector = HostCollector()
    collector.open()
    sample = collector.poll()
    assert sample.uptime_s is not None and sample.uptime_s > 0
    assert sample.uptime_s == pytest.approx(time.time() - psutil.boot_time(), abs=5)


def test_temperature_is_the_hottest_sensor_or_none_never_invented() -> None:
    read = getattr(psutil, "sensors_temperatures", None)
    readings = [e.current for es in (read() if read else {}).values() for e in es]
    collector = HostCollector()
    collector.open()
    sample = collector.poll()
    if readings:
        assert sample.temperature_c == pytest.approx(max(readings), abs=5)
    else:
        assert sample.temperature_c is None
        assert highest_temperature() is None


def test_poll_without_open_still_measures_cpu() -> None:
    sample = HostCollector().poll()
    assert 0 <= sample.cpu_percent <= 100
    assert sample.uptime_s is not None and sample.uptime_s > 0


def test_unreadable_disk_is_none_not_zero(tmp_path: Path) -> None:
    collector = HostCollector(disk_path=str(tmp_path / "does-not-exist"))
    collector.open()
    assert collector.poll().disk_percent is None


# --- system identity --------------------------------------------------------------


def test_identity_describes_this_machine() -> None:
    ident = system_identity("1.2.3")
    assert ident.hostname == socket.gethostname()
    assert ident.os_user == getpass.getuser()
    assert ident.kernel == platform.release()
    assert ident.memory_bytes == psutil.virtual_memory().total
    assert ident.cpu_cores == os.cpu_count()
    assert ident.cpu.strip() != ""
    assert ident.agent_version == "1.2.3"
    # It is a valid wire message: it survives a JSON round trip unchanged.
    assert SystemIdentity.model_validate(ident.model_dump(mode="json")) == ident


def test_hardware_uuid_is_present_and_stable() -> None:
    first, second = system_identity("x"), system_identity("x")
    assert first.hardware_uuid.strip() != ""
    assert first.hardware_uuid == second.hardware_uuid


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux identity sources")
def test_linux_identity_comes_from_dmi_or_machine_id_and_os_release() -> None:
    ident = system_identity("x")
    sources = []
    for path in identity.LINUX_UUID_SOURCES:
        try:
            sources.append(path.read_text().strip().lower())
        except OSError:
            continue
    assert ident.hardware_uuid == sources[0]
    os_release = Path("/etc/os-release").read_text()
    pretty = next(line for line in os_release.splitlines() if line.startswith("PRETTY_NAME="))
    assert ident.os == pretty.split("=", 1)[1].strip('"')


def test_loopback_interface_is_listed_with_127_0_0_1() -> None:
    interfaces = system_identity("x").interfaces
    loopback = [i for i in interfaces if "127.0.0.1" in i.addresses]
    assert len(loopback) == 1
    assert loopback[0].name in psutil.net_if_addrs()
    # The loopback device has no hardware address; an all-zero MAC is not reported.
    assert loopback[0].mac is None
    names = [i.name for i in interfaces]
    assert len(names) == len(set(names))


def test_every_listed_mac_and_address_belongs_to_its_interface() -> None:
    actual = psutil.net_if_addrs()
    for interface in system_identity("x").interfaces:
        raw = {a.address for a in actual[interface.name]}
        assert set(interface.addresses) <= raw
        if interface.mac is not None:
            assert interface.mac in {normalize_mac(a) for a in raw}


# --- identity sources, with the platform's data replaced -------------------------


def test_linux_uuid_prefers_dmi_then_machine_id(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    dmi, machine_id, dbus = tmp_path / "product_uuid", tmp_path / "machine-id", tmp_path / "dbus"
    machine_id.write_text("3d1219c7c4c5404aaa1f6d2a48adfda4\n")
    dbus.write_text("ffffffffffffffffffffffffffffffff\n")
    monkeypatch.setattr(identity, "LINUX_UUID_SOURCES", (dmi, machine_id, dbus))

    # product_uuid missing (or root-only): the machine-id is used.
    assert identity._linux_hardware_uuid() == "3d1219c7c4c5404aaa1f6d2a48adfda4"
    # Firmware that never got a UUID reports zeros: skipped.
    dmi.write_text("00000000-0000-0000-0000-000000000000\n")
    assert identity._linux_hardware_uuid() == "3d1219c7c4c5404aaa1f6d2a48adfda4"
    # A real firmware UUID wins, normalised to lower case.
    dmi.write_text("4C4C4544-0052-3510-8052-B4C04F564433\n")
    assert identity._linux_hardware_uuid() == "4c4c4544-0052-3510-8052-b4c04f564433"


def test_without_any_platform_id_a_hardware_mac_is_the_fallback(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for reader in ("_linux_hardware_uuid", "_windows_hardware_uuid", "_macos_hardware_uuid"):
        monkeypatch.setattr(identity, reader, lambda: None)
    monkeypatch.setattr(uuid, "getnode", lambda: 0x0242AC110002)
    assert identity.hardware_uuid() == "mac-0242ac110002"
    # uuid.getnode() invents a random multicast address when there is no NIC:
    # that would change every run, so there is no identity rather than a false one.
    monkeypatch.setattr(uuid, "getnode", lambda: 0x0342AC110002)
    with pytest.raises(IdentityUnavailable, match="machine-id"):
        identity.hardware_uuid()


# --- parsers --------------------------------------------------------------------

DEBIAN_OS_RELEASE = """\
PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"
NAME="Debian GNU/Linux"
VERSION_ID="12"
VERSION="12 (bookworm)"
VERSION_CODENAME=bookworm
ID=debian
HOME_URL="https://www.debian.org/"
"""

ODD_OS_RELEASE = """\
# written by hand
NAME='Example OS'

PRETTY_NAME="Example \\"Quoted\\" OS \\$1"
ID=example
BROKEN LINE WITHOUT EQUALS
"""


def test_parse_os_release_reads_quoted_and_unquoted_values() -> None:
    fields = parse_os_release(DEBIAN_OS_RELEASE)
    assert fields["PRETTY_NAME"] == "Debian GNU/Linux 12 (bookworm)"
    assert fields["VERSION_CODENAME"] == "bookworm"
    assert fields["HOME_URL"] == "https://www.debian.org/"


def test_parse_os_release_handles_comments_single_quotes_and_escapes() -> None:
    fields = parse_os_release(ODD_OS_RELEASE)
    assert fields == {
        "NAME": "Example OS",
        "PRETTY_NAME": 'Example "Quoted" OS $1',
        "ID": "example",
    }


IOREG_OUTPUT = """\
+-o MacBookPro18,3  <class IOPlatformExpertDevice, id 0x100000110, registered, matched, active>
    {
      "IOPolledInterface" = "AppleARMWatchdogTimerHibernateHandler is not serializable"
      "IOPlatformSerialNumber" = "C02XXXXXXXXX"
      "manufacturer" = <"Apple Inc.">
      "IOPlatformUUID" = "A1B2C3D4-E5F6-5A7B-8C9D-0E1F2A3B4C5D"
      "model" = <"MacBookPro18,3">
    }
"""


def test_parse_ioreg_finds_the_platform_uuid() -> None:
    assert parse_ioreg_platform_uuid(IOREG_OUTPUT) == "A1B2C3D4-E5F6-5A7B-8C9D-0E1F2A3B4C5D"
    assert parse_ioreg_platform_uuid('"IOPlatformSerialNumber" = "C02"') is None
    assert parse_ioreg_platform_uuid("") is None


X86_CPUINFO = """\
processor\t: 0
vendor_id\t: GenuineIntel
cpu family\t: 6
model\t\t: 85
model name\t: Intel(R) Xeon(R) Gold 6230 CPU @ 2.10GHz
cpu MHz\t\t: 2095.078
cpu cores\t: 2

processor\t: 1
model name\t: Intel(R) Xeon(R) Gold 6230 CPU @ 2.10GHz
"""

RASPBERRY_PI_CPUINFO = """\
processor\t: 0
BogoMIPS\t: 108.00
CPU implementer\t: 0x41
CPU part\t: 0xd08

Hardware\t: BCM2835
Revision\t: c03112
Model\t\t: Raspberry Pi 4 Model B Rev 1.2
"""

ARM64_SERVER_CPUINFO = """\
processor\t: 0
BogoMIPS\t: 50.00
Features\t: fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics
CPU implementer\t: 0x41
CPU architecture: 8
"""


def test_parse_cpuinfo_model_name_on_x86() -> None:
    assert parse_cpuinfo_model(X86_CPUINFO) == "Intel(R) Xeon(R) Gold 6230 CPU @ 2.10GHz"


def test_parse_cpuinfo_falls_back_to_the_board_hardware_on_arm() -> None:
    assert parse_cpuinfo_model(RASPBERRY_PI_CPUINFO) == "BCM2835"


def test_parse_cpuinfo_without_a_name_is_none_not_a_cpu_index() -> None:
    assert parse_cpuinfo_model(ARM64_SERVER_CPUINFO) is None
    assert parse_cpuinfo_model("") is None


def test_normalize_mac() -> None:
    assert normalize_mac("AA-BB-CC-00-11-22") == "aa:bb:cc:00:11:22"
    assert normalize_mac("02:42:ac:11:00:02") == "02:42:ac:11:00:02"
    assert normalize_mac("00:00:00:00:00:00") is None
    assert normalize_mac("") is None
