"""What the socket layer calls below it: the operations of struct proto udp_prot.

Every method raises OSError with the Linux errno on failure. The socket service
implements this over the UDP service's Attach stream; tests may implement it over an
in-process UDP layer.
"""

from __future__ import annotations

from typing import Protocol

from services.core.cred import ROOT, Cred
from services.core.datagram import Datagram
from services.ip.sockglue import RecvMsg
from services.udp.output import MmsgSend

__all__ = ["Datagram", "MmsgSend", "RecvMsg", "UdpProto"]


class UdpProto(Protocol):
    async def create(self, protocol: int, pid: int, fd: int, cred: Cred = ROOT) -> int: ...

    async def bind(self, sk: int, addr: int, port: int) -> None: ...

    async def connect(self, sk: int, name: bytes) -> None: ...

    async def disconnect(self, sk: int) -> None: ...

    async def sendmsg(
        self,
        sk: int,
        data: bytes,
        name: bytes,
        flags: int,
        trace: bool,
        control: bytes = b"",
        timeout_ns: int = -1,
    ) -> int: ...

    async def sendmmsg(self, sk: int, msgs: list[MmsgSend]) -> list[int]:
        """Each message in order, stopping at the first that fails; its error is
        raised when it is the first (__sys_sendmmsg)."""
        ...

    async def recvmsg(
        self, sk: int, length: int, flags: int, timeout_ns: int, controllen: int = 0
    ) -> RecvMsg: ...

    async def recvmmsg(
        self, sk: int, length: int, flags: int, timeout_ns: int, controllen: int, vlen: int
    ) -> tuple[list[RecvMsg], int]:
        """Up to vlen datagrams: the first read as recvmsg reads one (its error is
        raised), the others with MSG_DONTWAIT until one fails, whose errno comes back
        with those read (EAGAIN: none more queued)."""
        ...

    async def setsockopt(self, sk: int, level: int, optname: int, optval: bytes) -> None: ...

    async def getsockopt(self, sk: int, level: int, optname: int, optlen: int) -> tuple[bytes, int]: ...

    async def getname(self, sk: int, peer: bool) -> tuple[int, int]: ...

    async def release(self, sk: int) -> None: ...

    async def shutdown(self, sk: int, how: int) -> None:
        """inet_shutdown(): raises ENOTCONN on an unconnected socket after shutting it
        down all the same."""
        ...

    async def poll(self, sk: int, known: int | None, timeout_ns: int, nonblock: bool) -> int:
        """udp_poll()'s EPOLL* mask: at once without `known`, else once it differs from
        `known` or timeout_ns (negative: no limit) passes."""
        ...

    async def set_err(self, sk: int, err: int) -> None:
        """sk->sk_err = err (do_recvmmsg keeps an error for the next call)."""
        ...
