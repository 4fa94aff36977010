"""python -m services.ip: serve one host's IPv4 layer.

STACKEMU_HOSTNAME  the host's name (alice)
STACKEMU_LISTEN    host:port to serve on
STACKEMU_METRICS   host:port to serve Prometheus metrics on, /metrics (optional)
STACKEMU_NIC       host:port of this host's NIC service
STACKEMU_ADDRS     addresses: lo=127.0.0.1/8,eth0=10.0.0.1/24
STACKEMU_HOST_SECRET[_FILE], STACKEMU_TLS_CERT/KEY/CA[/SERVER_NAME]  the host secret and
                   TLS (services/core/server.py)
"""

from __future__ import annotations

from services.core.config import ConfigError, env_addr, env_addrs, env_str
from services.core.server import serve
from services.core.sysctl import Sysctl
from services.core.wire.errors import WireError
from services.core.wire.ipv4 import ip_from_str
from services.ip.layer import IpLayer
from services.ip.servicer import IpService


def make_service() -> IpService:
    addresses = []
    for label, addr, plen in env_addrs("STACKEMU_ADDRS") or [("lo", "127.0.0.1", 8)]:
        try:
            addresses.append((label, ip_from_str(addr), plen))
        except WireError as err:
            raise ConfigError(f"STACKEMU_ADDRS: {err}") from None
    layer = IpLayer(env_str("STACKEMU_HOSTNAME"), Sysctl())
    return IpService(layer, addresses, env_addr("STACKEMU_NIC"))


if __name__ == "__main__":
    serve("ip", make_service, lambda: env_addr("STACKEMU_LISTEN"))
