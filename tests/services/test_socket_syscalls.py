"""The socket layer's processes and system calls (services/socket: files.py,
syscalls.py, servicer.py): credentials and RLIMIT_NOFILE, socket()'s checks, fcntl,
shutdown, sendmmsg, recvmmsg, close releasing blocked calls, KeepAlive.

Most tests drive SocketLayer over LoopbackUdp in-process; those that need the real
streams (KeepAlive, the servicer's errno mapping) go through SocketHarness. What 6.18
answered on this machine is written next to each expectation, and asked again of the
kernel where a test can ask it (tests/e2e/test_syscalls_kernel.py compares more).
"""

from __future__ import annotations

import asyncio
import ctypes
import socket
import struct
import subprocess
import sys

import grpc
import pytest

from services.core import errno
from services.core.cred import CAP_FULL_SET, CAP_NET_RAW, ROOT, Cred
from services.core.socket_uapi import (
    MSG_DONTWAIT,
    MSG_PROBE,
    MSG_WAITFORONE,
    SO_ERROR,
    SO_RCVTIMEO_OLD,
    SO_SNDBUF,
    SOL_SOCKET,
)
from services.socket.files import UnknownProcess
from services.socket.syscalls import SocketLayer
from stackemu.socket.v1 import socket_pb2
from tests.services.fakes_udp import (
    LOOPBACK,
    LoopbackUdp,
    SocketHarness,
    async_test,
    eventually,
    real_socket,
    sockaddr,
)

SOCK_STREAM, SOCK_DGRAM, SOCK_RAW, SOCK_RDM, SOCK_PACKET = 1, 2, 3, 4, 10
SOCK_NONBLOCK, SOCK_CLOEXEC = 0o4000, 0o2000000
IPPROTO_ICMP, IPPROTO_UDP, IPPROTO_UDPLITE = 1, 17, 136
F_GETFD, F_SETFD, F_GETFL, F_SETFL = 1, 2, 3, 4
O_RDWR, O_APPEND, O_NONBLOCK, FASYNC, O_DIRECT, O_NOATIME = 0o2, 0o2000, 0o4000, 0o20000, 0o40000, 0o1000000
SHUT_RD, SHUT_WR, SHUT_RDWR = 0, 1, 2
MSG_CMSG_COMPAT = -0x80000000  # bit 31 of an int flags argument
AF_INET = 2


async def _layer() -> tuple[SocketLayer, LoopbackUdp, int]:
    udp = LoopbackUdp()
    layer = SocketLayer(udp)
    return layer, udp, layer.open_process("test").pid


async def _bound(layer: SocketLayer, pid: int, port: int, type_: int = SOCK_DGRAM) -> int:
    fd = await layer.socket(pid, AF_INET, type_, 0)
    await layer.bind(pid, fd, sockaddr("127.0.0.1", port))
    return fd


async def _errno(call: object) -> int:
    assert asyncio.iscoroutine(call)
    try:
        await call
    except OSError as err:
        return err.errno or 0
    return 0


def _errno_sync(call: object) -> int:
    try:
        if callable(call):
            call()
    except OSError as err:
        return err.errno or 0
    return 0


# Processes, credentials and limits.


@async_test
async def test_socket_checks_in_the_kernels_order() -> None:
    layer, _, root = await _layer()
    unpriv = layer.open_process("nobody", Cred(65534, 0)).pid
    # (process, domain, type, protocol) → errno; the root cases this machine's kernel
    # gives too (asked below).
    cases = [
        (root, AF_INET, SOCK_RAW, 0, errno.EPROTONOSUPPORT),  # SOCK_RAW's wildcard takes no 0
        (unpriv, AF_INET, SOCK_RAW, 0, errno.EPROTONOSUPPORT),  # ... before CAP_NET_RAW
        (unpriv, AF_INET, SOCK_RAW, IPPROTO_UDP, errno.EPERM),
        (unpriv, AF_INET, SOCK_RAW, 300, errno.EINVAL),  # IPPROTO_MAX before everything
        (unpriv, AF_INET, SOCK_PACKET, 0, errno.EPERM),  # packet_create wants CAP_NET_RAW
        (root, AF_INET, SOCK_STREAM, IPPROTO_UDP, errno.EPROTONOSUPPORT),
        (root, AF_INET, SOCK_DGRAM, IPPROTO_ICMP, errno.EACCES),  # ping_group_range "1 0"
        (root, AF_INET, SOCK_RDM, 0, errno.ESOCKTNOSUPPORT),
        (unpriv, AF_INET, SOCK_DGRAM, 0, 0),
    ]
    for pid, domain, type_, protocol, want in cases:
        got = await _errno(layer.socket(pid, domain, type_, protocol))
        assert got == want, (pid, type_, protocol)
        if pid == root:
            assert real_socket(domain, type_, protocol) == want, (type_, protocol)
    # What the emulator lacks, with the capability (the kernel would create these):
    # honest "no such type" and "no such family" errnos.
    assert await _errno(layer.socket(root, AF_INET, SOCK_RAW, IPPROTO_UDP)) == errno.ESOCKTNOSUPPORT
    assert await _errno(layer.socket(root, AF_INET, SOCK_PACKET, 0)) == errno.EAFNOSUPPORT


def test_sock_raw_without_cap_net_raw_is_eperm_on_the_kernel() -> None:
    """The same question of the kernel, asked by root without CAP_NET_RAW."""
    code = "import socket\ntry:\n socket.socket(2, 3, 17)\nexcept OSError as e:\n print(e.errno)\n"
    proc = subprocess.run(
        ["setpriv", "--bounding-set=-net_raw", "--inh-caps=-net_raw", sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=30,
    )
    if proc.returncode != 0:
        pytest.skip(f"setpriv: {proc.stderr.strip()}")
    assert proc.stdout.strip() == str(errno.EPERM)


@async_test
async def test_credentials_reach_the_udp_layer() -> None:
    layer, udp, _ = await _layer()
    cred = Cred(1000, 1 << CAP_NET_RAW)
    pid = layer.open_process("app", cred).pid
    fd = await layer.socket(pid, AF_INET, SOCK_DGRAM, IPPROTO_UDPLITE)
    s = udp.layer.socks[layer.procs.get(pid).file(fd).sk]
    assert (s.cred, s.uid, s.owner_pid, s.owner_fd, s.protocol) == (cred, 1000, pid, fd, IPPROTO_UDPLITE)


@async_test
async def test_rlimit_nofile_and_the_lowest_free_fd() -> None:
    layer, _, _ = await _layer()
    pid = layer.open_process("app", nofile=6).pid
    fds = [await layer.socket(pid, AF_INET, SOCK_DGRAM, 0) for _ in range(3)]
    assert fds == [3, 4, 5]
    assert await _errno(layer.socket(pid, AF_INET, SOCK_DGRAM, 0)) == errno.EMFILE
    # The checks come before the descriptor: a bad socket() at the limit is its own errno.
    assert await _errno(layer.socket(pid, AF_INET, SOCK_DGRAM, 99)) == errno.EPROTONOSUPPORT
    await layer.close(pid, 4)
    assert await layer.socket(pid, AF_INET, SOCK_DGRAM, 0) == 4
    # A limit of 3 leaves no room above stdio.
    tight = layer.open_process("tight", nofile=3).pid
    assert await _errno(layer.socket(tight, AF_INET, SOCK_DGRAM, 0)) == errno.EMFILE
    with pytest.raises(ValueError):
        layer.open_process("big", nofile=65537)


class _SlowCreate(LoopbackUdp):
    """A UDP layer whose socket creation takes a turn of the loop, as the real one does
    (a round trip to the UDP service), and can be made to fail."""

    fail = False

    async def create(self, protocol: int, pid: int, fd: int, cred: Cred = ROOT) -> int:
        await asyncio.sleep(0)
        if self.fail:
            raise errno.kernel_error(errno.ENOBUFS)
        return await super().create(protocol, pid, fd, cred)


@async_test
async def test_concurrent_sockets_get_distinct_fds() -> None:
    """get_unused_fd_flags() reserves the descriptor before the socket is made, so
    socket() calls of one process in flight together get distinct fds (on 6.18, 16
    threads' sockets at once got 16 distinct fds), and one that fails gives its back."""
    udp = _SlowCreate()
    layer = SocketLayer(udp)
    pid = layer.open_process("app").pid
    fds = await asyncio.gather(*(layer.socket(pid, AF_INET, SOCK_DGRAM, 0) for _ in range(5)))
    assert sorted(fds) == [3, 4, 5, 6, 7]
    assert len(udp.layer.socks) == 5
    udp.fail = True
    assert await _errno(layer.socket(pid, AF_INET, SOCK_DGRAM, 0)) == errno.ENOBUFS
    udp.fail = False
    assert await layer.socket(pid, AF_INET, SOCK_DGRAM, 0) == 8
    assert layer.procs.nr_files() == 6


@async_test
async def test_files_lose_their_sockets_with_the_udp_stream() -> None:
    """The stream to UDP ended (the UDP service restarted, or released them): each
    file's calls are EBADF, its number stays taken until close() (which releases
    nothing below), so it never names a socket made since."""
    layer, udp, pid = await _layer()
    old = await _bound(layer, pid, 9600)
    layer.lower_lost()
    assert await _errno(layer.getsockname(pid, old)) == errno.EBADF
    assert await _errno(layer.sendmsg(pid, old, b"x", sockaddr("127.0.0.1", 9600), 0, False)) == errno.EBADF
    new = await layer.socket(pid, AF_INET, SOCK_DGRAM, 0)
    assert new == old + 1
    socks = dict(udp.layer.socks)
    await layer.close(pid, old)
    assert udp.layer.socks == socks
    assert await layer.socket(pid, AF_INET, SOCK_DGRAM, 0) == old


@async_test
async def test_recvmmsg_ends_when_a_later_read_times_out() -> None:
    """do_recvmmsg() stops at the first read that fails: with SO_RCVTIMEO 50 ms, two
    datagrams queued and vlen 5 (no MSG_WAITFORONE), 6.18 returns 2 after one timeout
    (ctypes recvmmsg on 127.0.0.1: 2 datagrams in 0.053 s)."""
    layer, _, pid = await _layer()
    rx = await _bound(layer, pid, 9610)
    await layer.setsockopt(pid, rx, SOL_SOCKET, SO_RCVTIMEO_OLD, struct.pack("=qq", 0, 50_000))
    tx = await layer.socket(pid, AF_INET, SOCK_DGRAM, 0)
    for _ in range(2):
        await layer.sendmsg(pid, tx, b"ab", sockaddr("127.0.0.1", 9610), 0, False)
    got = await asyncio.wait_for(layer.recvmmsg(pid, rx, 5, 100, 0, 0), 5)
    assert [m.data for m in got] == [b"ab", b"ab"]


def test_rlimit_nofile_on_the_kernel() -> None:
    code = (
        "import resource, socket\n"
        "resource.setrlimit(resource.RLIMIT_NOFILE, (6, 6))\n"
        "s = [socket.socket(2, 2) for _ in range(3)]\n"
        "out = [x.fileno() for x in s]\n"
        "for t, p in ((2, 0), (2, 99)):\n"
        "    try:\n"
        "        socket.socket(2, t, p)\n"
        "    except OSError as e:\n"
        "        out.append(e.errno)\n"
        "s[1].close()\n"
        "out.append(socket.socket(2, 2).fileno())\n"
        "print(out)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=30)
    assert proc.stdout.strip() == str([3, 4, 5, errno.EMFILE, errno.EPROTONOSUPPORT, 4])


@async_test
async def test_a_process_never_reaches_another_ones_fds() -> None:
    layer, _, a = await _layer()
    b = layer.open_process("other").pid
    fd = await _bound(layer, a, 7100)
    assert fd == 3
    assert await _errno(layer.bind(b, fd, sockaddr("127.0.0.1", 7101))) == errno.EBADF
    assert await _errno(layer.recvmsg(b, fd, 100, MSG_DONTWAIT, None)) == errno.EBADF
    assert await _errno(layer.shutdown(b, fd, SHUT_RD)) == errno.EBADF
    assert _errno_sync(lambda: layer.fcntl(b, fd, F_GETFL, 0)) == errno.EBADF
    assert await _errno(layer.close(b, fd)) == errno.EBADF
    # b's own first socket is its fd 3 too, and a different socket.
    assert await layer.socket(b, AF_INET, SOCK_DGRAM, 0) == 3
    assert layer.procs.get(a).file(3).sk != layer.procs.get(b).file(3).sk
    with pytest.raises(UnknownProcess):
        await layer.socket(12345, AF_INET, SOCK_DGRAM, 0)


@async_test
async def test_open_process_capabilities_and_nofile_over_grpc() -> None:
    async with SocketHarness() as h:
        full = await h.stub.OpenProcess(socket_pb2.OpenProcessRequest(comm="root"))
        none = await h.stub.OpenProcess(socket_pb2.OpenProcessRequest(comm="u", uid=1000, capabilities=0))
        assert h.layer.procs.get(full.pid).cred == Cred(0, CAP_FULL_SET)
        assert h.layer.procs.get(none.pid).cred == Cred(1000, 0)
        assert (await h.socket(none.pid, SOCK_RAW, protocol=IPPROTO_UDP))[0] == errno.EPERM
        assert (await h.socket(full.pid, SOCK_RAW, protocol=IPPROTO_UDP))[0] == errno.ESOCKTNOSUPPORT
        with pytest.raises(grpc.aio.AioRpcError) as exc:
            await h.stub.OpenProcess(socket_pb2.OpenProcessRequest(nofile=70000))
        assert exc.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        with pytest.raises(grpc.aio.AioRpcError) as exc:
            await h.stub.ExitProcess(socket_pb2.ExitProcessRequest(pid=99999))
        assert exc.value.code() == grpc.StatusCode.INVALID_ARGUMENT


@async_test
async def test_keepalive_ending_exits_the_process_and_releases_a_blocked_recv() -> None:
    async with SocketHarness() as h:
        pid = await h.process("held")
        fd = await h.udp_fd(pid)
        assert await h.bind(pid, fd, sockaddr("127.0.0.1", 7200)) == 0
        sk = h.layer.procs.get(pid).file(fd).sk
        keep = h.stub.KeepAlive(socket_pb2.KeepAliveRequest(pid=pid))
        first = await keep.read()
        assert first.pid == pid
        recv = asyncio.create_task(h.recvmsg(pid, fd))
        await eventually(lambda: bool(h.udp.layer.socks[sk].waiters), "a blocked recvmsg")
        keep.cancel()
        r = await asyncio.wait_for(recv, 5)
        assert r.errno == errno.EBADF
        await eventually(lambda: sk not in h.udp.layer.socks, "the socket released")
        with pytest.raises(grpc.aio.AioRpcError) as exc:
            await h.socket(pid)
        assert exc.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        # ExitProcess ends a KeepAlive (OK, no more responses).
        other = await h.process("other")
        keep = h.stub.KeepAlive(socket_pb2.KeepAliveRequest(pid=other))
        assert (await keep.read()).pid == other
        await h.stub.ExitProcess(socket_pb2.ExitProcessRequest(pid=other))
        assert await keep.read() == grpc.aio.EOF
        assert await keep.code() == grpc.StatusCode.OK
        # An unknown pid: INVALID_ARGUMENT.
        keep = h.stub.KeepAlive(socket_pb2.KeepAliveRequest(pid=4242))
        assert await keep.code() == grpc.StatusCode.INVALID_ARGUMENT


# fcntl.


@async_test
async def test_fcntl_flags_as_the_kernel_keeps_them() -> None:
    layer, _, pid = await _layer()
    fd = await layer.socket(pid, AF_INET, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0)
    plain = await layer.socket(pid, AF_INET, SOCK_DGRAM, 0)
    real = socket.socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC)
    libc = ctypes.CDLL(None, use_errno=True)
    # Python makes its own sockets close-on-exec: this one is libc's.
    real_plain = socket.socket(fileno=libc.socket(AF_INET, SOCK_DGRAM, 0))

    def real_fcntl(s: socket.socket, cmd: int, arg: int) -> int:
        r = int(libc.fcntl(s.fileno(), cmd, ctypes.c_long(arg)))
        return r if r >= 0 else -ctypes.get_errno()

    def emu_fcntl(fd: int, cmd: int, arg: int) -> int:
        try:
            return layer.fcntl(pid, fd, cmd, arg)
        except OSError as err:
            return -(err.errno or 0)

    # 6.18: O_RDWR|O_NONBLOCK and FD_CLOEXEC; F_SETFL keeps O_APPEND, O_NOATIME and
    # FASYNC, refuses O_DIRECT (EINVAL) and ignores the rest (O_SYNC, access modes); F_SETFD
    # keeps bit 0 of the int argument; an unknown command is EINVAL.
    steps: list[tuple[int, int]] = [
        (F_GETFL, 0),
        (F_GETFD, 0),
        (F_SETFL, O_APPEND),
        (F_GETFL, 0),
        (F_SETFL, O_DIRECT),
        (F_GETFL, 0),
        (F_SETFL, O_NOATIME | FASYNC),
        (F_GETFL, 0),
        (F_SETFL, 0o4010001),
        (F_GETFL, 0),
        (F_SETFL, O_NONBLOCK),
        (F_GETFL, 0),
        (F_SETFD, 3),
        (F_GETFD, 0),
        (F_SETFD, 0xFFFFFFFE),
        (F_GETFD, 0),
        (F_SETFD, 0x100000001),
        (F_GETFD, 0),
        (999, 0),
    ]
    want = [O_RDWR | O_NONBLOCK, 1, 0, O_RDWR | O_APPEND, -errno.EINVAL, O_RDWR | O_APPEND]
    want += [0, O_RDWR | O_NOATIME | FASYNC, 0, O_RDWR, 0, O_RDWR | O_NONBLOCK]
    want += [0, 1, 0, 0, 0, 1, -errno.EINVAL]
    assert [real_fcntl(real, cmd, arg) for cmd, arg in steps] == want
    assert [emu_fcntl(fd, cmd, arg) for cmd, arg in steps] == want
    assert [real_fcntl(real_plain, F_GETFL, 0), real_fcntl(real_plain, F_GETFD, 0)] == [O_RDWR, 0]
    assert [emu_fcntl(plain, F_GETFL, 0), emu_fcntl(plain, F_GETFD, 0)] == [O_RDWR, 0]
    assert emu_fcntl(99, F_GETFL, 0) == -errno.EBADF
    real.close()
    real_plain.close()


@async_test
async def test_o_nonblock_set_by_fcntl_makes_recv_and_send_not_wait() -> None:
    layer, udp, pid = await _layer()
    fd = await _bound(layer, pid, 7300)
    layer.fcntl(pid, fd, F_SETFL, O_NONBLOCK)
    assert await _errno(layer.recvmsg(pid, fd, 100, 0, None)) == errno.EAGAIN
    # A caller's timeout (a Python timeout-mode socket's poll) waits even so.
    recv = asyncio.create_task(layer.recvmsg(pid, fd, 100, 0, 5_000_000_000))
    sk = layer.procs.get(pid).file(fd).sk
    await eventually(lambda: bool(udp.layer.socks[sk].waiters), "the recv waiting")
    sender = await layer.socket(pid, AF_INET, SOCK_DGRAM, 0)
    assert await layer.sendmsg(pid, sender, b"late", sockaddr("127.0.0.1", 7300), 0, False) == 4
    assert (await asyncio.wait_for(recv, 5)).data == b"late"
    # Sending: fill the send buffer (LoopbackUdp never reports datagrams freed).
    await layer.setsockopt(pid, fd, SOL_SOCKET, SO_SNDBUF, struct.pack("=i", 1))
    s = udp.layer.socks[sk]
    for _ in range(100):
        if s.wmem_full():
            break
        await layer.sendmsg(pid, fd, bytes(1000), sockaddr("127.0.0.1", 7301), 0, False)
    assert s.wmem_full()
    dest = sockaddr("127.0.0.1", 7301)
    assert await _errno(layer.sendmsg(pid, fd, b"x", dest, 0, False)) == errno.EAGAIN
    assert await _errno(layer.sendmsg(pid, fd, b"x", dest, 0, False, timeout_ns=1_000_000)) == errno.EAGAIN
    assert s.write_waiters == type(s.write_waiters)()  # the timed wait left the queue


# shutdown.


@async_test
async def test_shutdown_of_an_unconnected_socket() -> None:
    layer, udp, pid = await _layer()
    fd = await _bound(layer, pid, 7400)
    sk = layer.procs.get(pid).file(fd).sk
    # 6.18: how outside 0..2 is EINVAL (inet_shutdown's how + 1 check); an unconnected
    # socket is shut down but answers ENOTCONN.
    for how in (3, -1, 0x7FFFFFFF):
        assert await _errno(layer.shutdown(pid, fd, how)) == errno.EINVAL
    assert udp.layer.socks[sk].shutdown == 0
    assert await _errno(layer.shutdown(pid, fd, SHUT_RD)) == errno.ENOTCONN
    assert udp.layer.socks[sk].shutdown == 1
    # A blocking read returns 0 at once, without a sender; MSG_DONTWAIT is EAGAIN.
    r = await layer.recvmsg(pid, fd, 100, 0, None)
    assert (r.data, r.ulen, r.daddr) == (b"", 0, 0)
    assert await _errno(layer.recvmsg(pid, fd, 100, MSG_DONTWAIT, None)) == errno.EAGAIN
    # A datagram still comes in and is read.
    sender = await layer.socket(pid, AF_INET, SOCK_DGRAM, 0)
    await layer.sendmsg(pid, sender, b"hi", sockaddr("127.0.0.1", 7400), 0, False)
    r = await layer.recvmsg(pid, fd, 100, 0, None)
    assert (r.data, r.daddr) == (b"hi", LOOPBACK)
    # SHUT_WR: a send is EPIPE (sock_alloc_send_pskb), MSG_PROBE still succeeds.
    assert await _errno(layer.shutdown(pid, fd, SHUT_WR)) == errno.ENOTCONN
    assert udp.layer.socks[sk].shutdown == 3
    dest = sockaddr("127.0.0.1", 7401)
    assert await _errno(layer.sendmsg(pid, fd, b"x", dest, 0, False)) == errno.EPIPE
    assert await layer.sendmsg(pid, fd, b"x", dest, MSG_PROBE, False) == 1
    # An unbound socket shut down is autobound by the send that then fails.
    fresh = await layer.socket(pid, AF_INET, SOCK_DGRAM, 0)
    assert await _errno(layer.shutdown(pid, fresh, SHUT_RDWR)) == errno.ENOTCONN
    assert await _errno(layer.sendmsg(pid, fresh, b"x", dest, 0, False)) == errno.EPIPE
    assert (await layer.getsockname(pid, fresh))[2:4] != b"\0\0"


@async_test
async def test_shutdown_of_a_connected_socket_and_what_it_wakes() -> None:
    layer, udp, pid = await _layer()
    fd = await _bound(layer, pid, 7500)
    await layer.connect(pid, fd, sockaddr("127.0.0.1", 7501))
    sk = layer.procs.get(pid).file(fd).sk
    blocked = asyncio.create_task(layer.recvmsg(pid, fd, 100, 0, None))
    await eventually(lambda: bool(udp.layer.socks[sk].waiters), "a blocked recvmsg")
    await layer.shutdown(pid, fd, SHUT_RD)  # 0: connected
    r = await asyncio.wait_for(blocked, 5)
    assert (r.data, r.daddr) == (b"", 0)
    # A timeout-mode read (Python polls, then reads without waiting): EAGAIN when the
    # time is up, not 0.
    assert await _errno(layer.recvmsg(pid, fd, 100, 0, 20_000_000)) == errno.EAGAIN
    await layer.shutdown(pid, fd, SHUT_WR)
    assert await _errno(layer.sendmsg(pid, fd, b"x", b"", 0, False)) == errno.EPIPE


@async_test
async def test_a_read_after_shutdown_has_no_sender_over_grpc() -> None:
    async with SocketHarness() as h:
        pid = await h.process()
        fd = await h.udp_fd(pid)
        assert await h.bind(pid, fd, sockaddr("127.0.0.1", 7550)) == 0
        r = await h.stub.Shutdown(socket_pb2.ShutdownRequest(pid=pid, fd=fd, how=SHUT_RD))
        assert r.errno == errno.ENOTCONN
        got = await h.recvmsg(pid, fd)
        # 6.18's recvfrom: (b'', None): msg_namelen 0.
        assert (got.errno, got.data, got.length, got.addr) == (0, b"", 0, b"")
        r = await h.stub.Shutdown(socket_pb2.ShutdownRequest(pid=pid, fd=fd, how=5))
        assert r.errno == errno.EINVAL
        f = await h.stub.Fcntl(socket_pb2.FcntlRequest(pid=pid, fd=fd, cmd=F_GETFL))
        assert (f.errno, f.value) == (0, O_RDWR)
        f = await h.stub.Fcntl(socket_pb2.FcntlRequest(pid=pid, fd=fd, cmd=77))
        assert f.errno == errno.EINVAL


# sendmmsg and recvmmsg.


@async_test
async def test_sendmmsg_stops_at_the_first_error() -> None:
    layer, udp, pid = await _layer()
    r = await _bound(layer, pid, 7600)
    s = await layer.socket(pid, AF_INET, SOCK_DGRAM, 0)
    to, port0 = sockaddr("127.0.0.1", 7600), sockaddr("127.0.0.1", 0)
    # 6.18: vlen 0 sends nothing and returns 0; [ok, port 0, ok] is 1 (msg_len 1, the
    # error lost); [port 0, ok] is the first message's EINVAL; MSG_CMSG_COMPAT EINVAL.
    assert await layer.sendmmsg(pid, s, [], 0) == []
    assert await layer.sendmmsg(pid, s, [(b"a", to, b""), (b"b", port0, b""), (b"c", to, b"")], 0) == [1]
    assert await _errno(layer.sendmmsg(pid, s, [(b"b", port0, b""), (b"c", to, b"")], 0)) == errno.EINVAL
    assert await _errno(layer.sendmmsg(pid, s, [(b"c", to, b"")], MSG_CMSG_COMPAT)) == errno.EINVAL
    assert await _errno(layer.sendmmsg(pid, 99, [(b"c", to, b"")], MSG_CMSG_COMPAT)) == errno.EINVAL
    assert await _errno(layer.sendmmsg(pid, 99, [(b"c", to, b"")], 0)) == errno.EBADF
    got = await layer.recvmmsg(pid, r, 10, 100, 0, MSG_DONTWAIT)
    assert [d.data for d in got] == [b"a"]
    # At most UIO_MAXIOV (1024) messages (probes: LoopbackUdp never gives the send
    # buffer back, and 1100 datagrams would not fit).
    before = udp.layer.mib.udp.get("OutDatagrams")
    assert await layer.sendmmsg(pid, s, [(b"v", to, b"")] * 1100, MSG_PROBE) == [1] * 1024
    assert udp.layer.mib.udp.get("OutDatagrams") == before


@async_test
async def test_recvmmsg_flags_and_timeout() -> None:
    layer, _, pid = await _layer()
    r = await _bound(layer, pid, 7700)
    s = await layer.socket(pid, AF_INET, SOCK_DGRAM, 0)
    to = sockaddr("127.0.0.1", 7700)

    async def send(*payloads: bytes) -> None:
        for p in payloads:
            await layer.sendmsg(pid, s, p, to, 0, False)

    # 6.18: MSG_CMSG_COMPAT and an invalid timeout are EINVAL, before the fd is looked at.
    assert await _errno(layer.recvmmsg(pid, r, 5, 100, 0, MSG_CMSG_COMPAT | MSG_DONTWAIT)) == errno.EINVAL
    assert await _errno(layer.recvmmsg(pid, 99, 5, 100, 0, MSG_DONTWAIT, -1)) == errno.EINVAL
    assert await _errno(layer.recvmmsg(pid, 99, 5, 100, 0, MSG_DONTWAIT)) == errno.EBADF
    assert await _errno(layer.recvmmsg(pid, r, 5, 100, 0, MSG_DONTWAIT)) == errno.EAGAIN
    await send(b"1", b"2", b"3")
    # A timeout of 0 is an end already passed: one datagram (it would wait for it).
    assert [d.data for d in await layer.recvmmsg(pid, r, 5, 100, 0, 0, 0)] == [b"1"]
    assert [d.data for d in await layer.recvmmsg(pid, r, 1, 100, 0, 0)] == [b"2"]
    # MSG_WAITFORONE: the first read waits, the others do not.
    assert [d.data for d in await layer.recvmmsg(pid, r, 5, 100, 0, MSG_WAITFORONE)] == [b"3"]
    waiting = asyncio.create_task(layer.recvmmsg(pid, r, 5, 100, 0, MSG_WAITFORONE))
    await asyncio.sleep(0.01)
    assert not waiting.done()
    await send(b"4")
    assert [d.data for d in await asyncio.wait_for(waiting, 5)] == [b"4"]
    # The timeout does not bound the waits: looked at after each datagram, it ends the
    # call only once the vlen-th... or a later datagram comes.
    waiting = asyncio.create_task(layer.recvmmsg(pid, r, 5, 100, 0, 0, 1_000_000))
    await asyncio.sleep(0.02)
    assert not waiting.done()
    await send(b"5")
    assert [d.data for d in await asyncio.wait_for(waiting, 5)] == [b"5"]
    assert await layer.recvmmsg(pid, r, 0, 100, 0, 0) == []


@async_test
async def test_recvmmsg_keeps_a_later_error_in_sk_err() -> None:
    layer, udp, pid = await _layer()
    c = await _bound(layer, pid, 7800)
    peer = await _bound(layer, pid, 7801)
    await layer.connect(pid, c, sockaddr("127.0.0.1", 7801))
    await layer.sendmsg(pid, peer, b"p", sockaddr("127.0.0.1", 7800), 0, False)
    call = asyncio.create_task(layer.recvmmsg(pid, c, 3, 100, 0, 0))
    sk = layer.procs.get(pid).file(c).sk
    await eventually(lambda: bool(udp.layer.socks[sk].waiters), "recvmmsg waiting for a second datagram")
    # The peer goes; a send to it draws a port unreachable: ECONNREFUSED in sk_err, which
    # wakes the read. 6.18: recvmmsg returns 1 and SO_ERROR then says 111.
    await layer.close(pid, peer)
    await layer.sendmsg(pid, c, b"z", b"", 0, False)
    got = await asyncio.wait_for(call, 5)
    assert [d.data for d in got] == [b"p"]
    assert udp.layer.socks[sk].sk_err == errno.ECONNREFUSED
    val, _ = await layer.getsockopt(pid, c, SOL_SOCKET, SO_ERROR, 4)
    assert struct.unpack("=i", val)[0] == errno.ECONNREFUSED
    # Kept for the next call: it is the error at once, then EAGAIN.
    await layer.sendmsg(pid, c, b"z", b"", 0, False)
    assert await _errno(layer.recvmmsg(pid, c, 3, 100, 0, MSG_DONTWAIT)) == errno.ECONNREFUSED
    assert await _errno(layer.recvmmsg(pid, c, 3, 100, 0, MSG_DONTWAIT)) == errno.EAGAIN
    # vlen 0 still returns a pending error (do_recvmmsg's own sock_error).
    await layer.sendmsg(pid, c, b"z", b"", 0, False)
    assert await _errno(layer.recvmmsg(pid, c, 0, 100, 0, 0)) == errno.ECONNREFUSED


@async_test
async def test_recvmmsg_and_sendmmsg_over_grpc() -> None:
    async with SocketHarness() as h:
        pid = await h.process()
        r = await h.udp_fd(pid)
        assert await h.bind(pid, r, sockaddr("127.0.0.1", 7900)) == 0
        s = await h.udp_fd(pid)
        to = sockaddr("127.0.0.1", 7900)
        msgs = [socket_pb2.Mmsghdr(data=b"one", addr=to), socket_pb2.Mmsghdr(data=b"three", addr=to)]
        sent = await h.stub.SendMmsg(socket_pb2.SendMmsgRequest(pid=pid, fd=s, msgs=msgs))
        assert (sent.errno, list(sent.sent)) == (0, [3, 5])
        got = await h.stub.RecvMmsg(
            socket_pb2.RecvMmsgRequest(pid=pid, fd=r, vlen=4, bufsize=4, flags=MSG_DONTWAIT)
        )
        assert got.errno == 0
        assert [(m.data, m.length, m.msg_flags) for m in got.msgs] == [(b"one", 3, 0), (b"thre", 4, 0x20)]
        sport = (await h.getsockname(pid, s))[1][2:4]
        assert got.msgs[0].addr == sockaddr("127.0.0.1", int.from_bytes(sport, "big"))
        empty = await h.stub.RecvMmsg(
            socket_pb2.RecvMmsgRequest(pid=pid, fd=r, vlen=4, bufsize=4, flags=MSG_DONTWAIT)
        )
        assert (empty.errno, len(empty.msgs)) == (errno.EAGAIN, 0)


# close releasing blocked calls.


@async_test
async def test_close_releases_a_blocked_recvmsg_and_sendmsg() -> None:
    layer, udp, pid = await _layer()
    fd = await _bound(layer, pid, 8000)
    sk = layer.procs.get(pid).file(fd).sk
    s = udp.layer.socks[sk]
    recv = asyncio.create_task(layer.recvmsg(pid, fd, 100, 0, None))
    await eventually(lambda: bool(s.waiters), "a blocked recvmsg")
    await layer.setsockopt(pid, fd, SOL_SOCKET, SO_SNDBUF, struct.pack("=i", 1))
    for _ in range(100):
        if s.wmem_full():
            break
        await layer.sendmsg(pid, fd, bytes(1000), sockaddr("127.0.0.1", 8001), 0, False)
    send = asyncio.create_task(layer.sendmsg(pid, fd, b"x", sockaddr("127.0.0.1", 8001), 0, False))
    await eventually(lambda: bool(s.write_waiters), "a blocked sendmsg")
    await layer.close(pid, fd)
    assert await _errno(asyncio.wait_for(recv, 5)) == errno.EBADF
    assert await _errno(asyncio.wait_for(send, 5)) == errno.EBADF
