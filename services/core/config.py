"""Service configuration from environment variables, failing fast with a clear message."""

from __future__ import annotations

import os
import sys


class ConfigError(Exception):
    """A missing or malformed environment variable."""


def env_str(name: str, default: str | None = None) -> str:
    value = os.environ.get(name, default)
    if value is None or value == "":
        raise ConfigError(f"{name} is not set")
    return value


def env_int(name: str, default: int | None = None, lo: int = 0, hi: int = 2**31 - 1) -> int:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        if default is None:
            raise ConfigError(f"{name} is not set")
        return default
    try:
        value = int(raw, 0)
    except ValueError:
        raise ConfigError(f"{name}={raw!r} is not an integer") from None
    if not lo <= value <= hi:
        raise ConfigError(f"{name}={value} is outside {lo}..{hi}")
    return value


def env_addr(name: str, default: str | None = None) -> str:
    """A host:port gRPC address."""
    value = env_str(name, default)
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ConfigError(f"{name}={value!r} is not host:port")
    return value


def fail(err: ConfigError, service: str) -> None:
    print(f"stackemu-{service}: configuration error: {err}", file=sys.stderr)
    raise SystemExit(2)


def env_links(name: str) -> list[tuple[str, bytes]]:
    """ "eth0=02:00:0a:00:00:01,eth1=..." → [(ifname, mac)]; empty means lo only."""
    links = []
    for item in filter(None, os.environ.get(name, "").split(",")):
        ifname, sep, mac = item.partition("=")
        octets = mac.split(":")
        if not sep or not ifname or len(octets) != 6:
            raise ConfigError(f"{name}: {item!r} is not IFNAME=MAC")
        try:
            links.append((ifname, bytes(int(o, 16) for o in octets)))
        except ValueError:
            raise ConfigError(f"{name}: {mac!r} is not a MAC address") from None
    return links


def env_addrs(name: str) -> list[tuple[str, str, int]]:
    """ "lo=127.0.0.1/8,eth0=10.0.0.1/24" → [(ifname, address, prefixlen)]."""
    addrs = []
    for item in filter(None, os.environ.get(name, "").split(",")):
        ifname, sep, cidr = item.partition("=")
        addr, slash, plen = cidr.partition("/")
        if not sep or not ifname or not slash or not plen.isdigit() or int(plen) > 32:
            raise ConfigError(f"{name}: {item!r} is not IFNAME=ADDRESS/PREFIXLEN")
        addrs.append((ifname, addr, int(plen)))
    return addrs
