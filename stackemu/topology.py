"""The default topology (DESIGN.md): hosts alice and bob, four services each, and the
ports the launcher gives them."""

from __future__ import annotations

from dataclasses import dataclass

LAYERS = ("nic", "ip", "udp", "socket")
DEFAULT_BASE_PORT = 50100


@dataclass(frozen=True, slots=True)
class HostSpec:
    name: str
    eth0: str  # address/prefix of eth0
    mac: str

    def addrs(self) -> str:
        return f"lo=127.0.0.1/8,eth0={self.eth0}"

    def links(self) -> str:
        return f"eth0={self.mac}"


HOSTS = (
    HostSpec("alice", "10.0.0.1/24", "02:00:0a:00:00:01"),
    HostSpec("bob", "10.0.0.2/24", "02:00:0a:00:00:02"),
)


def ports(base: int) -> dict[str, dict[str, int]]:
    """Host i's layers listen on base + 10*i + 0..3."""
    return {h.name: {layer: base + 10 * i + j for j, layer in enumerate(LAYERS)} for i, h in enumerate(HOSTS)}
