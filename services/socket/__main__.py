"""python -m services.socket: serve one host's system-call layer.

STACKEMU_HOSTNAME  the host's name (alice)
STACKEMU_LISTEN    host:port to serve on
STACKEMU_METRICS   host:port to serve Prometheus metrics on, /metrics (optional)
STACKEMU_UDP       host:port of this host's UDP service
STACKEMU_HOST_SECRET[_FILE], STACKEMU_TLS_CERT/KEY/CA[/SERVER_NAME]  the host secret and
                   TLS (services/core/server.py)
"""

from __future__ import annotations

from services.core.config import env_addr, env_str
from services.core.server import serve
from services.socket.servicer import SocketService


def make_service() -> SocketService:
    return SocketService(env_str("STACKEMU_HOSTNAME"), env_addr("STACKEMU_UDP"))


if __name__ == "__main__":
    serve("socket", make_service, lambda: env_addr("STACKEMU_LISTEN"))
