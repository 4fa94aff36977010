"""python -m services.nic: serve one host's NIC layer.

STACKEMU_HOSTNAME  the host's name (alice)
STACKEMU_LISTEN    host:port to serve on
STACKEMU_METRICS   host:port to serve Prometheus metrics on, /metrics (optional)
STACKEMU_LINKS     Ethernet devices besides lo: eth0=02:00:0a:00:00:01,...
STACKEMU_WIRES     point-to-point wires to other hosts' NICs: eth0=127.0.0.1:50110/eth0,...
                   (our device = the peer NIC's address / the peer's device)
STACKEMU_TAP       attach a device to a Linux TAP device moved into a network namespace
                   of the same name: eth1=NAME or eth1=NAME@10.99.0.1/24 (the kernel
                   side's address; that is the default)
STACKEMU_NCPUS     emulated CPUs, each with its own backlog (default 1)
STACKEMU_HOST_SECRET[_FILE], STACKEMU_TLS_CERT/KEY/CA[/SERVER_NAME]  the host secret and
                   TLS (services/core/server.py)
"""

from __future__ import annotations

import os

from services.core.config import ConfigError, env_addr, env_int, env_links, env_str
from services.core.server import serve
from services.core.sysctl import Sysctl
from services.nic.device import ether_dev, loopback_dev
from services.nic.layer import NicLayer
from services.nic.servicer import NicService

TAP_KERNEL_ADDR = "10.99.0.1/24"


def env_wires(name: str) -> list[tuple[str, str, str]]:
    wires = []
    for item in filter(None, os.environ.get(name, "").split(",")):
        ifname, sep, rest = item.partition("=")
        peer, slash, peer_dev = rest.rpartition("/")
        _, colon, port = peer.rpartition(":")
        if not sep or not ifname or not slash or not peer_dev or not colon or not port.isdigit():
            raise ConfigError(f"{name}: {item!r} is not IFNAME=HOST:PORT/PEER_IFNAME")
        wires.append((ifname, peer, peer_dev))
    return wires


def env_tap(name: str) -> tuple[str, str, str] | None:
    raw = os.environ.get(name, "")
    if not raw:
        return None
    ifname, sep, rest = raw.partition("=")
    tap, _, addr = rest.partition("@")
    if not sep or not ifname or not tap or len(tap) > 15 or "/" in tap:
        raise ConfigError(f"{name}: {raw!r} is not IFNAME=TAPNAME[@ADDRESS/PREFIXLEN]")
    return ifname, tap, addr or TAP_KERNEL_ADDR


def make_service() -> NicService:
    devices = [loopback_dev()]
    for i, (ifname, mac) in enumerate(env_links("STACKEMU_LINKS"), start=2):
        devices.append(ether_dev(i, ifname, mac))
    layer = NicLayer(
        env_str("STACKEMU_HOSTNAME"), devices, Sysctl(), ncpus=env_int("STACKEMU_NCPUS", 1, 1, 64)
    )
    return NicService(layer, env_wires("STACKEMU_WIRES"), env_tap("STACKEMU_TAP"))


if __name__ == "__main__":
    serve("nic", make_service, lambda: env_addr("STACKEMU_LISTEN"))
