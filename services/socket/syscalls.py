"""The system calls on sockets (net/socket.c, net/ipv4/af_inet.c inet_dgram_ops),
without gRPC. Each method returns the call's result or raises OSError with the errno
the kernel returns; the protocol below is reached through UdpProto."""

from __future__ import annotations

import asyncio
import struct
from collections.abc import Awaitable, Callable

from services.core import errno
from services.core.cred import CAP_NET_RAW, ROOT, Cred
from services.core.sockaddr import (
    AF_INET,
    AF_UNSPEC,
    SOCKADDR_IN_LEN,
    make_sockaddr_in,
    parse_sockaddr_in,
)
from services.core.socket_uapi import (
    F_GETFD,
    F_GETFL,
    F_SETFD,
    F_SETFL,
    FASYNC,
    FD_CLOEXEC,
    MSG_DONTWAIT,
    MSG_ERRQUEUE,
    MSG_WAITFORONE,
    O_APPEND,
    O_DIRECT,
    O_NOATIME,
    O_NONBLOCK,
    O_RDWR,
    SO_DOMAIN,
    SO_ERROR,
    SO_PROTOCOL,
    SO_RCVTIMEO_NEW,
    SO_RCVTIMEO_OLD,
    SO_SNDTIMEO_NEW,
    SO_SNDTIMEO_OLD,
    SO_TYPE,
    SOCK_CLOEXEC,
    SOCK_DGRAM,
    SOCK_MAX,
    SOCK_NONBLOCK,
    SOCK_PACKET,
    SOCK_RAW,
    SOCK_STREAM,
    SOCK_TYPE_MASK,
    SOL_SOCKET,
    UIO_MAXIOV,
)
from services.core.sysctl import MAX_SCHEDULE_TIMEOUT
from services.core.sysctl import SOCK_HZ as HZ
from services.core.wire.ipv4 import IPPROTO_ICMP, IPPROTO_UDP, IPPROTO_UDPLITE
from services.socket.files import Process, ProcessTable, SocketFile
from services.socket.proto import MmsgSend, RecvMsg, UdpProto

# include/linux/socket.h: AF_MAX (NPROTO), and sizeof(struct sockaddr_storage), the
# most move_addr_to_kernel() copies.
NPROTO = 46
SOCKADDR_STORAGE_LEN = 128
# include/uapi/linux/in.h: IPPROTO_MAX (after IPPROTO_MPTCP 262).
IPPROTO_IP = 0
IPPROTO_TCP = 6
IPPROTO_MPTCP = 262
IPPROTO_MAX = 263

# inetsw[] on 6.18 (inetsw_array and udplite4_register): the protocols each type
# has, the first being what protocol 0 picks; SOCK_RAW's one entry is the wildcard.
INETSW = {
    SOCK_STREAM: (IPPROTO_TCP, IPPROTO_MPTCP),
    SOCK_DGRAM: (IPPROTO_UDP, IPPROTO_ICMP, IPPROTO_UDPLITE),
    SOCK_RAW: (IPPROTO_IP,),
}

# include/linux/socket.h: the flag the 64-bit syscalls refuse (forbid_cmsg_compat);
MSG_CMSG_COMPAT = 0x80000000

# fs/fcntl.c's SETFL_MASK (O_NDELAY is O_NONBLOCK on x86_64).
SETFL_MASK = O_APPEND | O_NONBLOCK | O_DIRECT | O_NOATIME

# include/uapi/asm-generic/poll.h: poll(2)'s bits, the same numbers as EPOLL*.
POLLERR = 0x008
POLLHUP = 0x010
POLLNVAL = 0x020

# include/net/sock.h sk_shutdown
RCV_SHUTDOWN = 1

# include/uapi/linux/time_types.h: struct __kernel_sock_timeval (SO_*TIMEO_NEW) and,
# on x86_64, struct __kernel_old_timeval (SO_*TIMEO_OLD) are both two 64-bit fields.
_TIMEVAL = struct.Struct("=qq")
TIMEVAL_LEN = _TIMEVAL.size
USEC_PER_SEC = 1_000_000
NSEC_PER_SEC = 1_000_000_000


def _send_wait(f: SocketFile, flags: int, timeout_ns: int | None) -> tuple[int, int]:
    """The flags and send buffer wait of a send on f: sock_sndtimeo() (none on an
    O_NONBLOCK file or with MSG_DONTWAIT, else SO_SNDTIMEO), unless the caller bounds
    the wait (a Python timeout-mode socket's poll(POLLOUT), which waits even on an
    O_NONBLOCK file)."""
    if timeout_ns is not None and timeout_ns >= 0 and not flags & MSG_DONTWAIT:
        return flags, timeout_ns
    if f.nonblock:
        flags |= MSG_DONTWAIT
    return flags, 0 if flags & MSG_DONTWAIT else f.sndtimeo_ns


def _recv_wait(f: SocketFile, flags: int) -> tuple[int, int]:
    """The flags and wait of a read on f: sock_rcvtimeo() (SO_RCVTIMEO, none on an
    O_NONBLOCK file)."""
    return (flags | MSG_DONTWAIT if f.nonblock else flags), f.rcvtimeo_ns


class SocketLayer:
    def __init__(self, proto: UdpProto) -> None:
        self.proto = proto
        self.procs = ProcessTable()

    def open_process(self, comm: str, cred: Cred = ROOT, nofile: int = 0) -> Process:
        return self.procs.open(comm, cred, nofile)

    def lower_lost(self) -> None:
        """The stream to the UDP layer ended, and with it every socket below (the UDP
        service releases them, or restarted without them): every file is lost, its
        calls EBADF, its number kept until close() so it never names a socket made
        since."""
        for proc in self.procs:
            for f in proc.files.values():
                f.lost = True

    async def exit_process(self, pid: int) -> None:
        """do_exit() → close_files(): every descriptor is closed, lowest first; calls
        blocked on them are released (EBADF)."""
        proc = self.procs.remove(pid)
        proc.exited.set()
        files = [proc.files[fd] for fd in sorted(proc.files) if not proc.files[fd].lost]
        proc.files.clear()
        for f in files:
            try:
                await self.proto.release(f.sk)
            except OSError:
                pass  # the layer below went away: nothing is left to release

    async def socket(self, pid: int, domain: int, type_: int, protocol: int) -> int:
        """__sys_socket() → __sock_create() → inet_create(), then sock_map_fd()."""
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
        if domain == AF_INET and kind == SOCK_PACKET:
            # "Compatibility": an AF_PACKET socket, whose packet_create() wants
            # CAP_NET_RAW first. The emulator is built without AF_PACKET.
            if not proc.cred.capable(CAP_NET_RAW):
                raise errno.kernel_error(errno.EPERM)
            raise errno.kernel_error(errno.EAFNOSUPPORT, "the emulator has no AF_PACKET sockets")
        if domain != AF_INET:
            raise errno.kernel_error(errno.EAFNOSUPPORT, "the emulator has AF_INET only")
        protocol = inet_create(proc, kind, protocol)
        # sock_map_fd(): the descriptor comes after the socket (a socket() that fails
        # its checks is never EMFILE); nothing is created for one that would be.
        fd = proc.alloc_fd()
        try:
            sk = await self.proto.create(protocol, pid, fd, proc.cred)
        except BaseException:
            proc.put_unused_fd(fd)
            raise
        if proc.exited.is_set():
            # The process exited while the socket was made: nothing will close it.
            proc.put_unused_fd(fd)
            await self.proto.release(sk)
            raise errno.kernel_error(errno.EBADF, "the process exited")
        proc.fd_install(
            fd,
            SocketFile(
                sk,
                kind,
                protocol,
                f_flags=O_RDWR | (O_NONBLOCK if flags & SOCK_NONBLOCK else 0),
                cloexec=bool(flags & SOCK_CLOEXEC),
            ),
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
        self,
        pid: int,
        fd: int,
        data: bytes,
        addr: bytes,
        flags: int,
        trace: bool,
        control: bytes = b"",
        timeout_ns: int | None = None,
    ) -> int:
        """____sys_sendmsg() → inet_sendmsg() → udp_sendmsg(); `control` is msg_control.
        The wait for send buffer room is sock_sndtimeo() (none on an O_NONBLOCK file or
        with MSG_DONTWAIT, else SO_SNDTIMEO), unless the caller bounds it (a Python
        timeout-mode socket's poll(POLLOUT), which waits even on an O_NONBLOCK file)."""
        if flags & MSG_CMSG_COMPAT:
            # __sys_sendmsg(): bit 31 is the compat syscalls' own (flags -1 is EINVAL).
            raise errno.kernel_error(errno.EINVAL)
        return await self._sendmsg(self._file(pid, fd), data, addr, flags, trace, control, timeout_ns)

    async def _sendmsg(
        self,
        f: SocketFile,
        data: bytes,
        addr: bytes,
        flags: int,
        trace: bool,
        control: bytes,
        timeout_ns: int | None,
    ) -> int:
        flags, timeout = _send_wait(f, flags, timeout_ns)
        return await self.proto.sendmsg(f.sk, data, addr, flags, trace, control, timeout)

    async def recvmsg(
        self, pid: int, fd: int, bufsize: int, flags: int, timeout_ns: int | None, controllen: int = 0
    ) -> RecvMsg:
        """____sys_recvmsg() → inet_recvmsg() → udp_recvmsg(); the wait is sock_rcvtimeo()
        unless the caller bounds it (a Python timeout-mode socket's poll). The cmsgs come
        back in RecvMsg.control, at most `controllen` (msg_controllen) bytes."""
        if flags & MSG_CMSG_COMPAT:
            # __sys_recvmsg(), as __sys_sendmsg().
            raise errno.kernel_error(errno.EINVAL)
        return await self._recvmsg(self._file(pid, fd), bufsize, flags, timeout_ns, controllen)

    async def _recvmsg(
        self, f: SocketFile, bufsize: int, flags: int, timeout_ns: int | None, controllen: int
    ) -> RecvMsg:
        if timeout_ns is not None and timeout_ns >= 0 and not flags & MSG_DONTWAIT:
            # The caller's poll() waits whatever the file's mode.
            if f.shutdown & RCV_SHUTDOWN:
                return await self._recv_polled(f, bufsize, flags, timeout_ns, controllen)
            wait = f.rcvtimeo_ns
            wait = timeout_ns if wait < 0 else min(wait, timeout_ns)
        else:
            flags, wait = _recv_wait(f, flags)
        return await self.proto.recvmsg(f.sk, bufsize, flags, wait, controllen)

    async def _recv_polled(
        self, f: SocketFile, bufsize: int, flags: int, timeout_ns: int, controllen: int
    ) -> RecvMsg:
        """A timeout-mode read of a socket shut down for reading, as Python makes it:
        poll() says readable at once (EPOLLRDHUP|EPOLLIN), the non-blocking read finds
        nothing (EAGAIN, not the 0 of a blocking one), and so on until the time is up.
        Here the wait is for udp_poll() to change, so a datagram that comes meanwhile
        (which does not change it) is read at the end of the wait, not at once."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_ns / 1e9
        known: int | None = None
        while True:
            try:
                return await self.proto.recvmsg(f.sk, bufsize, flags | MSG_DONTWAIT, 0, controllen)
            except OSError as err:
                if err.errno != errno.EAGAIN:
                    raise
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise errno.kernel_error(errno.EAGAIN)
            known = await self.proto.poll(f.sk, known, int(remaining * 1e9), f.nonblock)

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
        """close(): the fd goes at once; the socket is released, which releases the
        calls blocked on it (EBADF, and POLLNVAL for a poll)."""
        proc = self.procs.get(pid)
        f = proc.files.pop(fd, None)
        if f is None:
            raise errno.kernel_error(errno.EBADF)
        if not f.lost:
            await self.proto.release(f.sk)

    def fcntl(self, pid: int, fd: int, cmd: int, arg: int) -> int:
        """do_fcntl() for F_GETFD, F_SETFD, F_GETFL and F_SETFL (setfl()); the int
        commands take the low 32 bits of arg (argi). Anything else: EINVAL."""
        f = self._file(pid, fd)
        argi = arg & 0xFFFFFFFF
        if cmd == F_GETFD:
            return FD_CLOEXEC if f.cloexec else 0
        if cmd == F_SETFD:
            f.cloexec = bool(argi & FD_CLOEXEC)
            return 0
        if cmd == F_GETFL:
            return f.f_flags
        if cmd == F_SETFL:
            # setfl(): a socket's file has no FMODE_CAN_ODIRECT; O_NOATIME needs the
            # inode's owner, which the creator always is; FASYNC goes through
            # sock_fasync() (no SIGIO is ever sent here).
            if argi & O_DIRECT:
                raise errno.kernel_error(errno.EINVAL)
            f.f_flags = (argi & SETFL_MASK) | (f.f_flags & ~SETFL_MASK & ~FASYNC) | (argi & FASYNC)
            return 0
        raise errno.kernel_error(errno.EINVAL)

    async def shutdown(self, pid: int, fd: int, how: int) -> None:
        """__sys_shutdown() → inet_shutdown(), which shuts an unconnected socket down and
        still answers ENOTCONN."""
        f = self._file(pid, fd)
        try:
            await self.proto.shutdown(f.sk, how)
        except OSError as err:
            if err.errno != errno.ENOTCONN:
                raise
            f.shutdown |= how + 1
            raise
        f.shutdown |= how + 1

    async def sendmmsg(
        self,
        pid: int,
        fd: int,
        msgs: list[tuple[bytes, bytes, bytes]],
        flags: int,
        timeout_ns: int | None = None,
    ) -> list[int]:
        """__sys_sendmmsg(): each (data, name, control) in order, at most UIO_MAXIOV of
        them, stopping at the first that fails; each sent one's msg_len, or the first
        message's error when none was sent (a later error is lost)."""
        if flags & MSG_CMSG_COMPAT:
            raise errno.kernel_error(errno.EINVAL)
        f = self._file(pid, fd)
        flags, timeout = _send_wait(f, flags, timeout_ns)
        vec = [MmsgSend(data, name, control, flags, timeout) for data, name, control in msgs[:UIO_MAXIOV]]
        if not vec:
            return []
        # The whole vector goes below as one call, so its datagrams travel as one batch.
        return await self.proto.sendmmsg(f.sk, vec)

    async def recvmmsg(
        self,
        pid: int,
        fd: int,
        vlen: int,
        bufsize: int,
        controllen: int,
        flags: int,
        timeout_ns: int | None = None,
    ) -> list[RecvMsg]:
        """__sys_recvmmsg() → do_recvmmsg(): up to vlen datagrams, each read as recvmsg
        reads one (flags without MSG_WAITFORONE, which makes every read after the first
        MSG_DONTWAIT). The timeout is looked at only after each datagram, so a read
        still waits as the file says (and a timeout of 0 takes one datagram). An error
        after some datagrams is left in sk_err, unless it is EAGAIN; before any, it is
        the call's."""
        if flags & MSG_CMSG_COMPAT:
            raise errno.kernel_error(errno.EINVAL)
        loop = asyncio.get_running_loop()
        end: float | None = None
        if timeout_ns is not None:
            # poll_select_set_timeout(): an invalid timespec is EINVAL; 0/0 is an end
            # time already passed.
            if timeout_ns < 0:
                raise errno.kernel_error(errno.EINVAL)
            end = loop.time() + timeout_ns / 1e9 if timeout_ns else 0.0
        f = self._file(pid, fd)
        vlen = min(vlen, UIO_MAXIOV)
        if not vlen:
            # do_recvmmsg()'s own sock_error() (every read begins with one too, in
            # __skb_recv_udp, so it matters only when there is none).
            if not flags & MSG_ERRQUEUE:
                val, _ = await self.proto.getsockopt(f.sk, SOL_SOCKET, SO_ERROR, 4)
                err = struct.unpack("=i", val)[0]
                if err:
                    raise errno.kernel_error(err)
            return []
        got: list[RecvMsg] = []
        while len(got) < vlen:
            # The reads are asked for in batches: the first as recvmsg reads, the
            # others without waiting. With a timeout, one at a time, as the kernel
            # looks at it after each datagram.
            rflags, wait = _recv_wait(f, flags & ~MSG_WAITFORONE)
            batch = 1 if end is not None else vlen - len(got)
            try:
                more, err = await self.proto.recvmmsg(f.sk, bufsize, rflags, wait, controllen, batch)
            except OSError as e:
                # The batch's first read failed, as the kernel's would: the end.
                if not got:
                    raise
                err = e.errno or errno.EIO
            else:
                got += more
                if err == errno.EAGAIN and not rflags & MSG_DONTWAIT and wait and not flags & MSG_WAITFORONE:
                    # Only "none queued now" for a batch's later reads: the kernel's
                    # own reads of them would wait.
                    err = 0
            if err:
                if err != errno.EAGAIN:
                    try:
                        await self.proto.set_err(f.sk, err)
                    except OSError:
                        pass  # the socket went meanwhile (closed)
                break
            if flags & MSG_WAITFORONE:
                flags |= MSG_DONTWAIT
            if end is not None and loop.time() >= end:
                break
        return got

    async def poll(
        self,
        pid: int,
        fds: list[tuple[int, int]],
        timeout_ns: int | None,
        report: Callable[[list[int]], Awaitable[None]],
    ) -> None:
        """do_sys_poll() kept open: `report` gets every (fd, events)'s revents at once
        (do_pollfd: the socket's udp_poll() mask within events | POLLERR | POLLHUP,
        POLLNVAL for an fd not open, 0 for a negative fd), then again each time they
        change, until timeout_ns (None or negative: until cancelled). One wait per
        socket runs below (a PollOp with the mask last seen); a file closed meanwhile
        becomes POLLNVAL."""
        proc = self.procs.get(pid)
        loop = asyncio.get_running_loop()
        deadline = None if timeout_ns is None or timeout_ns < 0 else loop.time() + timeout_ns / 1e9
        revents = [0] * len(fds)
        changed = asyncio.Event()

        async def first(i: int, fd: int, events: int) -> tuple[SocketFile, int] | None:
            if fd < 0:
                return None
            f = proc.files.get(fd)
            if f is not None and not f.lost:
                try:
                    mask = await self.proto.poll(f.sk, None, 0, f.nonblock)
                    revents[i] = mask & (events | POLLERR | POLLHUP)
                    return f, mask
                except OSError:
                    pass
            revents[i] = POLLNVAL
            return None

        async def watch(i: int, fd: int, events: int, f: SocketFile, known: int) -> None:
            while True:
                try:
                    known = await self.proto.poll(f.sk, known, -1, f.nonblock)
                except OSError:
                    known = -1
                if known < 0 or proc.files.get(fd) is not f or f.lost:
                    revents[i] = POLLNVAL
                    changed.set()
                    return
                revents[i] = known & (events | POLLERR | POLLHUP)
                changed.set()

        starts = await asyncio.gather(*(first(i, fd, ev) for i, (fd, ev) in enumerate(fds)))
        watchers = [
            asyncio.create_task(watch(i, fds[i][0], fds[i][1], *start))
            for i, start in enumerate(starts)
            if start is not None
        ]
        try:
            last = list(revents)
            await report(last)
            while True:
                remaining = None if deadline is None else deadline - loop.time()
                if remaining is not None and remaining <= 0:
                    return
                try:
                    await asyncio.wait_for(changed.wait(), remaining)
                except TimeoutError:
                    return
                changed.clear()
                if revents != last:
                    last = list(revents)
                    await report(last)
        finally:
            for w in watchers:
                w.cancel()
            await asyncio.gather(*watchers, return_exceptions=True)


def inet_create(proc: Process, kind: int, protocol: int) -> int:
    """inet_create()'s checks in its order, for what the emulator has (UDP and
    UDP-Lite datagram sockets): the protocol number's range, the inetsw lookup (protocol
    0 takes the type's first; SOCK_RAW's wildcard entry takes any but 0), then
    CAP_NET_RAW for SOCK_RAW. The protocol the socket gets."""
    if protocol < 0 or protocol >= IPPROTO_MAX:
        raise errno.kernel_error(errno.EINVAL)
    entries = INETSW.get(kind)
    if entries is None:
        raise errno.kernel_error(errno.ESOCKTNOSUPPORT)
    if kind == SOCK_RAW:
        if protocol == IPPROTO_IP:
            raise errno.kernel_error(errno.EPROTONOSUPPORT)
        if not proc.cred.capable(CAP_NET_RAW):
            raise errno.kernel_error(errno.EPERM)
        raise errno.kernel_error(errno.ESOCKTNOSUPPORT, "the emulator has no raw sockets")
    if protocol == IPPROTO_IP:
        protocol = entries[0]
    if protocol not in entries:
        raise errno.kernel_error(errno.EPROTONOSUPPORT)
    if kind != SOCK_DGRAM:
        raise errno.kernel_error(errno.ESOCKTNOSUPPORT, "the emulator has SOCK_DGRAM only")
    if protocol == IPPROTO_ICMP:
        # A ping socket: ping_init_sock() refuses every group outside
        # net.ipv4.ping_group_range, which is empty ("1 0") by default.
        raise errno.kernel_error(errno.EACCES, "the emulator has no ping sockets")
    return protocol


def recv_has_name(d: RecvMsg) -> bool:
    """Whether msg_name was filled: a RecvMsg without a destination carries none (a
    udp_recvmsg() that returned 0 for a socket shut down for reading, an error-queue
    entry ipv4_datagram_support_addr() gives no address: a timestamp); every datagram
    received, and an ICMP or local error, has one."""
    return bool(d.daddr)


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
