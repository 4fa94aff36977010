"""python -m services.udp: serve one host's UDP layer.

STACKEMU_HOSTNAME  the host's name (alice)
STACKEMU_LISTEN    host:port to serve on
STACKEMU_METRICS   host:port to serve Prometheus metrics on, /metrics (optional)
STACKEMU_IP        host:port of this host's IP service
STACKEMU_HOST_SECRET[_FILE], STACKEMU_TLS_CERT/KEY/CA[/SERVER_NAME]  the host secret and
                   TLS (services/core/server.py)
"""

from __future__ import annotations

from services.core.config import env_addr, env_str
from services.core.server import serve
from services.core.sysctl import Sysctl
from services.udp.layer import UdpLayer
from services.udp.servicer import IpRoutes, UdpService


def make_service() -> UdpService:
    routes = IpRoutes()
    layer = UdpLayer(env_str("STACKEMU_HOSTNAME"), Sysctl(), routes)
    return UdpService(layer, routes, env_addr("STACKEMU_IP"))


if __name__ == "__main__":
    serve("udp", make_service, lambda: env_addr("STACKEMU_LISTEN"))
