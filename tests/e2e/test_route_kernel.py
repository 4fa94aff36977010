"""The FIB against this machine's kernel: the same `ip` commands go to a network
namespace of our own (lo 127.0.0.1/8, eth0 10.0.0.1/24 brd + on a veth pair) and to
the emulated IP service, and what `ip route show`, `ip route get`, `ip rule` print
and exit with must be the same. Skipped when not root or without `ip`."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from tests.cli.conftest import IpStack, ipstack, stack  # noqa: F401  (the fixtures)
from tests.netns import IP, ip_in, veth_netns

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or IP is None, reason="needs root and iproute2 for a network namespace"
)


@pytest.fixture
def netns() -> Iterator[str]:
    yield from veth_netns("rt")


def _both(s: IpStack, ns: str, *args: str) -> tuple[tuple[int, str], tuple[int, str]]:
    k = ip_in(ns, *args)
    r = s.run("ip", *args)
    return (k.returncode, k.stdout + k.stderr), (r.exit_code, r.stdout + r.stderr)


SETUP = [
    ("route", "add", "blackhole", "198.51.100.0/24"),
    ("route", "add", "unreachable", "198.51.101.0/24"),
    ("route", "add", "prohibit", "198.51.102.0/24"),
    ("route", "add", "throw", "198.51.103.0/24"),
    ("route", "add", "192.0.2.0/24", "via", "10.0.0.2", "mtu", "1400", "metric", "5"),
    (
        "route",
        "add",
        "192.0.2.0/24",
        "via",
        "10.0.0.2",
        "mtu",
        "lock",
        "1300",
        "metric",
        "7",
        "proto",
        "static",
    ),
    ("route", "add", "192.0.2.0/24", "via", "10.0.0.2", "metric", "5"),
    ("route", "append", "192.0.2.0/24", "via", "10.0.0.3", "metric", "5"),
    ("route", "add", "203.0.113.0/24", "dev", "eth0", "src", "10.0.0.1", "table", "100"),
    ("route", "add", "203.0.113.0/24", "via", "10.1.1.1"),
    ("route", "add", "203.0.113.0/24", "dev", "eth0", "src", "10.9.9.9"),
    ("route", "add", "203.0.114.0/24", "via", "10.0.0.255"),
    ("route", "add", "10.0.0.0/8", "dev", "eth0", "mtu", "70000"),
    ("route", "add", "10.1.2.3/24", "dev", "eth0"),
    ("route", "replace", "198.18.0.0/24", "via", "10.0.0.2"),
    ("route", "replace", "198.18.0.0/24", "dev", "eth0"),
    ("route", "change", "198.19.0.0/24", "dev", "eth0"),
    ("route", "del", "198.51.200.0/24"),
    ("route", "add", "203.0.129.0/24", "dev", "eth0", "tos", "0x03"),
]
GETS = [
    ("10.0.0.2",),
    ("127.0.0.1",),
    ("10.0.0.255",),
    ("8.8.8.8",),
    ("198.51.100.1",),
    ("198.51.101.1",),
    ("198.51.102.1",),
    ("198.51.103.1",),
    ("192.0.2.9",),
    ("192.0.2.9", "from", "10.0.0.1"),
    ("8.8.8.8", "oif", "eth0"),
    ("10.0.0.1", "oif", "eth0"),
    ("10.0.0.2", "from", "10.0.0.99"),
    ("10.0.0.2", "from", "127.0.0.1"),
    ("10.0.0.1", "from", "10.0.0.2", "iif", "eth0"),
    ("10.0.0.255", "from", "10.0.0.2", "iif", "eth0"),
    ("8.8.8.8", "from", "10.0.0.2", "iif", "eth0"),
    ("127.0.0.1", "from", "10.0.0.2", "iif", "eth0"),
    ("10.0.0.1", "from", "10.0.0.1", "iif", "eth0"),
]


def test_routes_match_the_kernel(ipstack: IpStack, netns: str) -> None:  # noqa: F811
    for args in SETUP:
        kernel, emulated = _both(ipstack, netns, *args)
        assert emulated == kernel, args
    for args in (("route", "show"), ("route", "show", "table", "local"), ("route", "show", "table", "100")):
        kernel, emulated = _both(ipstack, netns, *args)
        assert emulated == kernel, args
    for args in GETS:
        kernel, emulated = _both(ipstack, netns, "route", "get", *args)
        assert emulated == kernel, args


def test_rules_match_the_kernel(ipstack: IpStack, netns: str) -> None:  # noqa: F811
    for args in (
        ("rule", "add", "from", "10.0.0.0/24", "lookup", "100", "pref", "100"),
        ("rule", "add", "fwmark", "0x5/0xff", "table", "100"),
        ("rule", "add", "to", "192.0.2.0/24", "tos", "0x10", "blackhole"),
        ("rule", "add", "not", "from", "all", "prohibit", "priority", "40000"),
        ("route", "add", "203.0.113.0/24", "dev", "eth0", "table", "100"),
        ("rule", "del", "pref", "12345"),
        ("rule",),
        ("route", "get", "203.0.113.5", "mark", "5"),
        ("route", "get", "192.0.2.9", "tos", "0x10"),
        ("route", "get", "10.0.0.1"),
        ("rule", "del", "pref", "0"),
        ("rule",),
    ):
        kernel, emulated = _both(ipstack, netns, *args)
        assert emulated == kernel, args
