"""What udp_recvmsg hands the socket layer: the bytes copied, the sender, and what the
socket layer needs to build the receive cmsgs (__sock_recv_timestamp, ip_cmsg_recv)."""

from __future__ import annotations

from dataclasses import dataclass, field, fields

from services.core.skbuff import TraceStep, trace_from_proto, trace_to_proto
from stackemu.udp.v1 import udp_pb2


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


# Every field but the trace has the same name in udp.v1.RecvmsgResult.
_SCALARS = tuple(f.name for f in fields(Datagram) if f.name != "trace")


def datagram_to_proto(d: Datagram) -> udp_pb2.RecvmsgResult:
    return udp_pb2.RecvmsgResult(**{n: getattr(d, n) for n in _SCALARS}, trace=trace_to_proto(d.trace))


def datagram_from_proto(m: udp_pb2.RecvmsgResult) -> Datagram:
    return Datagram(**{n: getattr(m, n) for n in _SCALARS}, trace=trace_from_proto(m.trace))
