"""What the socket layer calls below it: the operations of struct proto udp_prot.

Every method raises OSError with the Linux errno on failure. The socket service
implements this over the UDP service's Attach stream; tests may implement it over an
in-process UDP layer.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from services.core.skbuff import TraceStep


@dataclass(slots=True)
class Datagram:
    """What udp_recvmsg returns to the socket layer."""

    data: bytes
    ulen: int
    msg_flags: int
    saddr: int
    sport: int
    daddr: int = 0
    tstamp: int = 0
    ttl: int = 0
    tos: int = 0
    mark: int = 0
    ifindex: int = 0
    trace: list[TraceStep] = field(default_factory=list)


class UdpProto(Protocol):
    async def create(self, protocol: int, pid: int, fd: int) -> int: ...

    async def bind(self, sk: int, addr: int, port: int) -> None: ...

    async def connect(self, sk: int, name: bytes) -> None: ...

    async def disconnect(self, sk: int) -> None: ...

    async def sendmsg(self, sk: int, data: bytes, name: bytes, flags: int, trace: bool) -> int: ...

    async def recvmsg(self, sk: int, length: int, flags: int, timeout_ns: int) -> Datagram: ...

    async def getname(self, sk: int, peer: bool) -> tuple[int, int]: ...

    async def release(self, sk: int) -> None: ...
