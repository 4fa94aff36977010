"""The default topology (DESIGN.md): hosts alice and bob, four services each, and the
ports the launcher gives them."""

from __future__ import annotations

from dataclasses import dataclass

LAYERS = ("nic", "ip", "udp", "socket")
DEFAULT_BASE_PORT = 50100
# Each service's Prometheus endpoint (STACKEMU_METRICS) is its gRPC port + this.
METRICS_PORT_OFFSET = 1000


# `stackemu up --tap NAME`: alice's eth1 and the kernel's side of the TAP device.
TAP_HOST = "alice"
TAP_DEV = "eth1"
TAP_ADDR = "10.99.0.2/24"
TAP_MAC = "02:00:0a:63:00:02"
TAP_KERNEL_ADDR = "10.99.0.1/24"


@dataclass(frozen=True, slots=True)
class HostSpec:
    name: str
    eth0: str  # address/prefix of eth0
    mac: str
    peer: str  # the host at the other end of eth0's wire

    def addrs(self, tap: bool = False) -> str:
        extra = f",{TAP_DEV}={TAP_ADDR}" if tap else ""
        return f"lo=127.0.0.1/8,eth0={self.eth0}{extra}"

    def links(self, tap: bool = False) -> str:
        extra = f",{TAP_DEV}={TAP_MAC}" if tap else ""
        return f"eth0={self.mac}{extra}"


HOSTS = (
    HostSpec("alice", "10.0.0.1/24", "02:00:0a:00:00:01", "bob"),
    HostSpec("bob", "10.0.0.2/24", "02:00:0a:00:00:02", "alice"),
)


def ports(base: int) -> dict[str, dict[str, int]]:
    """Host i's layers listen on base + 10*i + 0..3."""
    return {h.name: {layer: base + 10 * i + j for j, layer in enumerate(LAYERS)} for i, h in enumerate(HOSTS)}


def metrics_port(port: int) -> int:
    """The metrics port of the service whose gRPC port is port."""
    return port + METRICS_PORT_OFFSET
