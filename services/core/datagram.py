"""What udp_recvmsg hands the socket layer: the bytes copied, the sender, and what the
socket layer needs to build the receive cmsgs (__sock_recv_timestamp, ip_cmsg_recv)."""

from __future__ import annotations

from dataclasses import dataclass, field

from services.core.skbuff import TraceStep


@dataclass(slots=True)
class Datagram:
    data: bytes
    # The datagram's full length, which MSG_TRUNC returns.
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
