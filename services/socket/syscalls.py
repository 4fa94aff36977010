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
from services.core.socket_uapi import (
    MSG_DONTWAIT,
    SO_DOMAIN,
    SO_PROTOCOL,
    SO_RCVTIMEO_NEW,
    SO_RCVTIMEO_OLD,
    SO_SNDTIMEO_NEW,
    SO_SNDTIMEO_OLD,
    SO_TYPE,
    SOL_SOCKET,
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

# include/uapi/linux/time_types.h: struct __kernel_sock_timeval (SO_*TIMEO_NEW) and,
# on x86_64, struct __kernel_old_timeval (SO_*TIMEO_OLD) are both two 64-bit fields.
_TIMEVAL = struct.Struct("=qq")
TIMEVAL_LEN = _TIMEVAL.size
USEC_PER_SEC = 1_000_000
NSEC_PER_SEC = 1_000_000_000
# CONFIG_HZ of the kernel emulated (SO_RCVTIMEO reads back in 4 ms steps on it), and
# MAX_SCHEDULE_TIMEOUT (LONG_MAX jiffies).
HZ = 250
MAX_SCHEDULE_TIMEOUT = (1 << 63) - 1


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
        if protocol not in (IPPROTO_UDP, IPPROTO_UDPLITE):
            # inet_create(): no inetsw entry for SOCK_DGRAM and this protocol.
            raise errno.kernel_error(errno.EPROTONOSUPPORT)
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
        # sock_sndtimeo(): no wait with MSG_DONTWAIT, else SO_SNDTIMEO.
        timeout = 0 if flags & MSG_DONTWAIT else f.sndtimeo_ns
        return await self.proto.sendmsg(f.sk, data, addr, flags, trace, control, timeout)

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
        """do_sock_setsockopt(): SOL_SOCKET to sock_setsockopt(), whose timeouts are kept
        with the file here (the waits are asked for from here) and whose other options
        live in struct sock, the protocol's (udp_setsockopt takes SOL_SOCKET to
        sk_setsockopt); any other level to the protocol."""
        f = self._file(pid, fd)
        if level == SOL_SOCKET and optname in _TIMEOUTS:
            ns = sock_set_timeout(optval)
            if optname in (SO_RCVTIMEO_OLD, SO_RCVTIMEO_NEW):
                f.rcvtimeo_ns = ns
            else:
                f.sndtimeo_ns = ns
            return
        await self.proto.setsockopt(f.sk, level, optname, optval)

    async def getsockopt(self, pid: int, fd: int, level: int, optname: int, optlen: int) -> tuple[bytes, int]:
        """do_sock_getsockopt(): sk_getsockopt() for the file's identity and timeouts,
        the protocol for the options kept in struct sock and any other level. Returns
        the bytes written and the optlen returned."""
        f = self._file(pid, fd)
        if optlen >= 1 << 31:
            optlen -= 1 << 32  # optlen is an int in the kernel
        if level != SOL_SOCKET:
            return await self.proto.getsockopt(f.sk, level, optname, optlen)
        if optlen < 0:
            raise errno.kernel_error(errno.EINVAL)
        if optname in _TIMEOUTS:
            rcv = optname in (SO_RCVTIMEO_OLD, SO_RCVTIMEO_NEW)
            val = sock_get_timeout(f.rcvtimeo_ns if rcv else f.sndtimeo_ns)[: min(optlen, TIMEVAL_LEN)]
            return val, len(val)
        values = {SO_TYPE: f.type, SO_PROTOCOL: f.protocol, SO_DOMAIN: AF_INET}
        if optname in values:
            # An int option: min(optlen, sizeof(int)) bytes are copied out.
            val = struct.pack("=i", values[optname])[: min(optlen, 4)]
            return val, len(val)
        return await self.proto.getsockopt(f.sk, level, optname, optlen)

    async def close(self, pid: int, fd: int) -> None:
        proc = self.procs.get(pid)
        f = proc.files.pop(fd, None)
        if f is None:
            raise errno.kernel_error(errno.EBADF)
        await self.proto.release(f.sk)


_TIMEOUTS = (SO_RCVTIMEO_OLD, SO_RCVTIMEO_NEW, SO_SNDTIMEO_OLD, SO_SNDTIMEO_NEW)


def sock_set_timeout(optval: bytes) -> int:
    """sock_set_timeout(): a struct timeval, EINVAL when short, EDOM when tv_usec is out
    of range; a negative tv_sec means no wait at all, 0/0 no limit; else the time in
    jiffies, rounded up (CONFIG_HZ 250 on the kernel this emulates: 1 µs reads back as
    4000 µs). Nanoseconds, negative for no limit."""
    if len(optval) < TIMEVAL_LEN:
        raise errno.kernel_error(errno.EINVAL)
    sec: int
    usec: int
    sec, usec = _TIMEVAL.unpack_from(optval)
    if usec < 0 or usec >= USEC_PER_SEC:
        raise errno.kernel_error(errno.EDOM)
    if sec < 0:
        return 0
    if (sec == 0 and usec == 0) or sec >= MAX_SCHEDULE_TIMEOUT // HZ - 1:
        return -1
    jiffies = sec * HZ + -(-usec // (USEC_PER_SEC // HZ))
    return jiffies * (NSEC_PER_SEC // HZ)


def sock_get_timeout(ns: int) -> bytes:
    """sock_get_timeout(): 0/0 for no limit (and for no wait), else whole jiffies as
    seconds and microseconds."""
    if ns < 0:
        return _TIMEVAL.pack(0, 0)
    jiffies = ns // (NSEC_PER_SEC // HZ)
    return _TIMEVAL.pack(jiffies // HZ, (jiffies % HZ) * USEC_PER_SEC // HZ)
