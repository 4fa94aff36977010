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


def env_file(name: str) -> bytes | None:
    """The contents of the file NAME names; None when NAME is unset or empty."""
    path = os.environ.get(name)
    if not path:
        return None
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as err:
        raise ConfigError(f"{name}={path!r} cannot be read: {err.strerror}") from None


# secrets.token_hex(16) is 128 bits; token_hex() gives 256.
SECRET_MIN_HEX_DIGITS = 32


def env_secret(name: str) -> str | None:
    """A shared secret: hex digits, at least SECRET_MIN_HEX_DIGITS of them, from NAME or
    from the file NAME_FILE names (how Docker and Kubernetes hand secrets over without
    the environment; one final newline is allowed). None when neither is set."""
    raw = os.environ.get(name)
    source = name
    from_file = env_file(f"{name}_FILE")
    if from_file is not None:
        if raw:
            raise ConfigError(f"{name} and {name}_FILE are both set: choose one")
        source = f"{name}_FILE"
        try:
            raw = from_file.decode("ascii").removesuffix("\n")
        except UnicodeDecodeError:
            raise ConfigError(f"{source}: the file is not hex digits") from None
    if not raw:
        return None
    return parse_secret(raw, source)


def parse_secret(raw: str, source: str) -> str:
    """A secret as env_secret() takes it, in lower case; ConfigError naming `source`
    (never the value: it may be the secret with a typo) when it is not one."""
    if any(c not in "0123456789abcdefABCDEF" for c in raw):
        raise ConfigError(f"{source}: the secret is not hex digits (make one with `openssl rand -hex 32`)")
    if len(raw) < SECRET_MIN_HEX_DIGITS:
        raise ConfigError(
            f"{source}: the secret has {len(raw)} hex digits, fewer than {SECRET_MIN_HEX_DIGITS}"
        )
    return raw.lower()


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
