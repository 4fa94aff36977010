"""python -m services.nic: serve one host's NIC layer.

STACKEMU_HOSTNAME  the host's name (alice)
STACKEMU_LISTEN    host:port to serve on
STACKEMU_LINKS     Ethernet devices besides lo: eth0=02:00:0a:00:00:01,...
STACKEMU_NCPUS     emulated CPUs, each with its own backlog (default 1)
"""

from __future__ import annotations

from services.core.config import env_addr, env_int, env_links, env_str
from services.core.server import serve
from services.core.sysctl import Sysctl
from services.nic.device import ether_dev, loopback_dev
from services.nic.layer import NicLayer
from services.nic.servicer import NicService


def make_service() -> NicService:
    devices = [loopback_dev()]
    for i, (ifname, mac) in enumerate(env_links("STACKEMU_LINKS"), start=2):
        devices.append(ether_dev(i, ifname, mac))
    layer = NicLayer(
        env_str("STACKEMU_HOSTNAME"), devices, Sysctl(), ncpus=env_int("STACKEMU_NCPUS", 1, 1, 64)
    )
    return NicService(layer)


if __name__ == "__main__":
    serve("nic", make_service, lambda: env_addr("STACKEMU_LISTEN"))
