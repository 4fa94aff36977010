"""The system calls on sockets (net/socket.c, net/ipv4/af_inet.c inet_dgram_ops),
without gRPC. Each method returns the call's result or raises OSError with the errno
the kernel returns; the protocol below is reached through UdpProto."""

from __future__ import annotations

import struct

from services.core import errno
from services.core.sockaddr import (
    AF_INET,
    AF_UNSPEC,
    SOCKADDR_IN_LEN,
    make_sockaddr_in,
    parse_sockaddr_in,
)
from services.core.wire.ipv4 import IPPROTO_UDP, IPPROTO_UDPLITE
from services.socket.files import Process, ProcessTable, SocketFile
from services.socket.proto import RecvMsg, UdpProto

# include/linux/net.h
SOCK_STREAM = 1
SOCK_DGRAM = 2
SOCK_RAW = 3
SOCK_MAX = 11
SOCK_TYPE_MASK = 0xF
SOCK_NONBLOCK = 0o4000
SOCK_CLOEXEC = 0o2000000

# include/linux/socket.h: AF_MAX (NPROTO), and sizeof(struct sockaddr_storage), the
# most move_addr_to_kernel() copies.
NPROTO = 46
SOCKADDR_STORAGE_LEN = 128
# include/uapi/linux/in.h: IPPROTO_MAX (after IPPROTO_MPTCP 262).
IPPROTO_MAX = 263

MSG_TRUNC = 0x20
MSG_DONTWAIT = 0x40

# include/uapi/asm-generic/socket.h, include/linux/socket.h
SOL_IP = 0
SOL_SOCKET = 1
SOL_UDP = 17
SOL_UDPLITE = 136
SO_BINDTODEVICE = 25
SO_TYPE = 3
SO_ERROR = 4
SO_PROTOCOL = 38
SO_DOMAIN = 39


class SocketLayer:
    def __init__(self, proto: UdpProto) -> None:
        self.proto = proto
        self.procs = ProcessTable()

    def open_process(self, comm: str) -> Process:
        return self.procs.open(comm)

    async def exit_process(self, pid: int) -> None:
        """do_exit() → close_files(): every descriptor is closed."""
        proc = self.procs.remove(pid)
        for f in list(proc.files.values()):
            await self.proto.release(f.sk)
        proc.files.clear()

    async def socket(self, pid: int, domain: int, type_: int, protocol: int) -> int:
        """__sys_socket() → __sock_create() → inet_create()."""
        proc = self.procs.get(pid)
        flags = type_ & ~SOCK_TYPE_MASK
        if flags & ~(SOCK_CLOEXEC | SOCK_NONBLOCK):
            raise errno.kernel_error(errno.EINVAL)
        kind = type_ & SOCK_TYPE_MASK
        # __sock_create(): the family's range is checked before the type's.
        if domain < 0 or domain >= NPROTO:
            raise errno.kernel_error(errno.EAFNOSUPPORT)
        if kind < 0 or kind >= SOCK_MAX:
            raise errno.kernel_error(errno.EINVAL)
        if domain != AF_INET:
            raise errno.kernel_error(errno.EAFNOSUPPORT, "the emulator has AF_INET only")
        # inet_create(): a protocol number out of range is EINVAL, before the type lookup.
        if protocol < 0 or protocol >= IPPROTO_MAX:
            raise errno.kernel_error(errno.EINVAL)
        if kind != SOCK_DGRAM:
            raise errno.kernel_error(errno.ESOCKTNOSUPPORT, "the emulator has SOCK_DGRAM only")
        if protocol == 0:
            protocol = IPPROTO_UDP
        if protocol != IPPROTO_UDP:
            # inet_create(): no inetsw entry; UDP-Lite is not built yet.
            detail = "UDP-Lite is not built yet" if protocol == IPPROTO_UDPLITE else None
            raise errno.kernel_error(errno.EPROTONOSUPPORT, detail)
        fd = proc.alloc_fd()
        sk = await self.proto.create(protocol, pid, fd)
        proc.files[fd] = SocketFile(
            sk, kind, protocol, nonblock=bool(flags & SOCK_NONBLOCK), cloexec=bool(flags & SOCK_CLOEXEC)
        )
        return fd

    def _file(self, pid: int, fd: int) -> SocketFile:
        return self.procs.get(pid).file(fd)

    async def bind(self, pid: int, fd: int, addr: bytes) -> None:
        """inet_bind() → __inet_bind()."""
        f = self._file(pid, fd)
        # move_addr_to_kernel() refuses more than a sockaddr_storage; inet_bind_sk()
        # less than a sockaddr_in.
        if len(addr) < SOCKADDR_IN_LEN or len(addr) > SOCKADDR_STORAGE_LEN:
            raise errno.kernel_error(errno.EINVAL)
        family, ip, port = parse_sockaddr_in(addr)
        # Compatibility: AF_UNSPEC is accepted as AF_INET only with INADDR_ANY.
        if family != AF_INET and (family != AF_UNSPEC or ip != 0):
            raise errno.kernel_error(errno.EAFNOSUPPORT)
        await self.proto.bind(f.sk, ip, port)

    async def connect(self, pid: int, fd: int, addr: bytes) -> None:
        """inet_dgram_connect()."""
        f = self._file(pid, fd)
        if len(addr) < 2 or len(addr) > SOCKADDR_STORAGE_LEN:  # move_addr_to_kernel()
            raise errno.kernel_error(errno.EINVAL)
        family, _, _ = parse_sockaddr_in(addr)
        if family == AF_UNSPEC:
            await self.proto.disconnect(f.sk)
            return
        await self.proto.connect(f.sk, addr)

    async def sendmsg(
        self, pid: int, fd: int, data: bytes, addr: bytes, flags: int, trace: bool, control: bytes = b""
    ) -> int:
        """____sys_sendmsg() → inet_sendmsg() → udp_sendmsg(); `control` is msg_control."""
        f = self._file(pid, fd)
        if f.nonblock:
            flags |= MSG_DONTWAIT
        return await self.proto.sendmsg(f.sk, data, addr, flags, trace, control)

    async def recvmsg(
        self, pid: int, fd: int, bufsize: int, flags: int, timeout_ns: int | None, controllen: int = 0
    ) -> RecvMsg:
        """____sys_recvmsg() → inet_recvmsg() → udp_recvmsg(); the wait is sock_rcvtimeo()
        unless the caller bounds it (a Python timeout-mode socket's poll). The cmsgs come
        back in RecvMsg.control, at most `controllen` (msg_controllen) bytes."""
        f = self._file(pid, fd)
        if f.nonblock:
            flags |= MSG_DONTWAIT
        wait = f.rcvtimeo_ns
        if timeout_ns is not None and timeout_ns >= 0:
            wait = timeout_ns if wait < 0 else min(wait, timeout_ns)
        return await self.proto.recvmsg(f.sk, bufsize, flags, wait, controllen)

    async def getsockname(self, pid: int, fd: int) -> bytes:
        f = self._file(pid, fd)
        addr, port = await self.proto.getname(f.sk, peer=False)
        return make_sockaddr_in(addr, port)

    async def getpeername(self, pid: int, fd: int) -> bytes:
        f = self._file(pid, fd)
        addr, port = await self.proto.getname(f.sk, peer=True)
        return make_sockaddr_in(addr, port)

    async def setsockopt(self, pid: int, fd: int, level: int, optname: int, optval: bytes) -> None:
        """do_sock_setsockopt(): SOL_SOCKET to sock_setsockopt(), any other level to the
        protocol (udp_setsockopt: SOL_UDP, else ip_setsockopt)."""
        f = self._file(pid, fd)
        if level != SOL_SOCKET:
            await self.proto.setsockopt(f.sk, level, optname, optval)
            return
        # sk_setsockopt() (but for SO_BINDTODEVICE) wants an int before it looks at optname.
        if len(optval) < 4 and optname != SO_BINDTODEVICE:
            raise errno.kernel_error(errno.EINVAL)
        # The socket options come with the socket issue; until then none is settable.
        raise errno.kernel_error(errno.ENOPROTOOPT)

    async def getsockopt(self, pid: int, fd: int, level: int, optname: int, optlen: int) -> bytes:
        """do_sock_getsockopt(): sk_getsockopt() for the read-only identity options and
        SO_ERROR (the protocol's sk_err), the protocol for any other level."""
        f = self._file(pid, fd)
        if optlen >= 1 << 31:
            optlen -= 1 << 32  # optlen is an int in the kernel
        if level != SOL_SOCKET:
            return await self.proto.getsockopt(f.sk, level, optname, optlen)
        if optlen < 0:
            raise errno.kernel_error(errno.EINVAL)
        if optname == SO_ERROR:
            return await self.proto.getsockopt(f.sk, level, optname, optlen)
        values = {SO_TYPE: f.type, SO_PROTOCOL: f.protocol, SO_DOMAIN: AF_INET}
        if optname in values:
            # An int option: min(optlen, sizeof(int)) bytes are copied out.
            return struct.pack("=i", values[optname])[: min(optlen, 4)]
        raise errno.kernel_error(errno.ENOPROTOOPT)

    async def close(self, pid: int, fd: int) -> None:
        proc = self.procs.get(pid)
        f = proc.files.pop(fd, None)
        if f is None:
            raise errno.kernel_error(errno.EBADF)
        await self.proto.release(f.sk)
