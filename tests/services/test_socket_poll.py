"""Readiness: udp_poll() (services/udp/poll.py), the UDP service's PollOp (waiting for
the mask to change, cancelled by CancelOp), ShutdownOp and SetErrOp, and the socket
service's Poll stream (one response per change, POLLNVAL for fds not open or closed
meanwhile, the end at timeout_ns, the waits below stopped when the client cancels).

Masks are the numbers 6.18 gives on this machine (asked with select.poll where a test
can make the same state on a real socket)."""

from __future__ import annotations

import asyncio
import select
import socket
import struct

import grpc

from services.core import errno
from services.core.socket_uapi import MSG_DONTWAIT, SO_SELECT_ERR_QUEUE, SO_SNDBUF, SOL_SOCKET
from services.socket.syscalls import SocketLayer
from services.udp.poll import udp_poll
from stackemu.socket.v1 import socket_pb2
from stackemu.udp.v1 import udp_pb2
from tests.services.fakes_udp import (
    LOOPBACK,
    LoopbackUdp,
    SocketHarness,
    UdpHarness,
    async_test,
    delivered_skb,
    eventually,
    ip,
    sockaddr,
    udp_mib,
    udp_segment,
)

AF_INET, SOCK_DGRAM, SOCK_NONBLOCK = 2, 2, 0o4000
POLLIN, POLLPRI, POLLOUT, POLLERR, POLLHUP, POLLNVAL = 0x1, 0x2, 0x4, 0x8, 0x10, 0x20
POLLRDNORM, POLLWRNORM, POLLWRBAND, POLLRDHUP = 0x40, 0x100, 0x200, 0x2000
ALL = 0xFFFF
SHUT_RD, SHUT_WR, SHUT_RDWR = 0, 1, 2
PEER = ip("127.0.0.2")

# 6.18 on this machine, select.poll with every event asked for:
FRESH = POLLOUT | POLLWRNORM | POLLWRBAND  # 0x304: a fresh socket, bound or not
READABLE = FRESH | POLLIN | POLLRDNORM  # 0x345
SHUT_READ = READABLE | POLLRDHUP  # 0x2345: SHUT_RD, whether or not data is queued
SHUT_BOTH = SHUT_READ | POLLHUP  # 0x2355


def _kernel_masks() -> dict[str, int]:
    def mask(s: socket.socket) -> int:
        p = select.poll()
        p.register(s, ALL)
        (got,) = p.poll(0)
        return got[1]

    out: dict[str, int] = {}
    fresh = socket.socket(AF_INET, SOCK_DGRAM)
    out["fresh"] = mask(fresh)
    fresh.bind(("127.0.0.1", 0))
    out["bound"] = mask(fresh)
    other = socket.socket(AF_INET, SOCK_DGRAM)
    other.sendto(b"x", fresh.getsockname())
    out["readable"] = mask(fresh)
    fresh.recv(10)
    for how, name in ((SHUT_RD, "shut rd"), (SHUT_WR, "shut rdwr")):
        try:
            fresh.shutdown(how)
        except OSError as err:
            assert err.errno == errno.ENOTCONN
        out[name] = mask(fresh)
    conn = socket.socket(AF_INET, SOCK_DGRAM)
    conn.connect(("127.0.0.1", 9))
    conn.shutdown(SHUT_WR)
    out["connected shut wr"] = mask(conn)
    for s in (fresh, other, conn):
        s.close()
    return out


@async_test
async def test_udp_poll_masks() -> None:
    assert _kernel_masks() == {
        "fresh": FRESH,
        "bound": FRESH,
        "readable": READABLE,
        "shut rd": SHUT_READ,
        "shut rdwr": SHUT_BOTH,
        "connected shut wr": FRESH,
    }
    udp = LoopbackUdp()
    layer = SocketLayer(udp)
    pid = layer.open_process("t").pid
    fd = await layer.socket(pid, AF_INET, SOCK_DGRAM, 0)
    s = udp.layer.socks[layer.procs.get(pid).file(fd).sk]
    assert udp_poll(udp.layer, s, False) == FRESH
    await layer.bind(pid, fd, sockaddr("127.0.0.1", 9100))
    assert udp_poll(udp.layer, s, False) == FRESH
    other = await layer.socket(pid, AF_INET, SOCK_DGRAM, 0)
    await layer.sendmsg(pid, other, b"x", sockaddr("127.0.0.1", 9100), 0, False)
    assert udp_poll(udp.layer, s, False) == READABLE
    await layer.recvmsg(pid, fd, 10, 0, None)
    assert udp_poll(udp.layer, s, False) == FRESH
    try:
        await layer.shutdown(pid, fd, SHUT_RD)
    except OSError as err:
        assert err.errno == errno.ENOTCONN
    assert udp_poll(udp.layer, s, False) == SHUT_READ
    try:
        await layer.shutdown(pid, fd, SHUT_WR)
    except OSError as err:
        assert err.errno == errno.ENOTCONN
    assert udp_poll(udp.layer, s, False) == SHUT_BOTH
    conn = await layer.socket(pid, AF_INET, SOCK_DGRAM, 0)
    await layer.connect(pid, conn, sockaddr("127.0.0.1", 9))
    await layer.shutdown(pid, conn, SHUT_WR)
    c = udp.layer.socks[layer.procs.get(pid).file(conn).sk]
    assert udp_poll(udp.layer, c, False) == FRESH
    # sk_err: EPOLLERR; an error queued with SO_SELECT_ERR_QUEUE: EPOLLPRI too.
    c.sk_err = errno.ECONNREFUSED
    assert udp_poll(udp.layer, c, False) == FRESH | POLLERR
    await layer.setsockopt(pid, conn, SOL_SOCKET, SO_SELECT_ERR_QUEUE, struct.pack("=i", 1))
    assert udp_poll(udp.layer, c, False) == FRESH | POLLERR | POLLPRI
    c.sk_err = 0
    assert udp_poll(udp.layer, c, False) == FRESH
    # Not writeable once sk_wmem_alloc (+1) reaches half of sk_sndbuf.
    await layer.setsockopt(pid, other, SOL_SOCKET, SO_SNDBUF, struct.pack("=i", 1))
    o = udp.layer.socks[layer.procs.get(pid).file(other).sk]
    o.wmem_alloc = (o.sndbuf >> 1) - 2
    assert udp_poll(udp.layer, o, False) == FRESH
    o.wmem_alloc += 1
    assert udp_poll(udp.layer, o, False) == 0


@async_test
async def test_poll_op_over_the_attach_stream() -> None:
    async with UdpHarness() as h:
        sk = await h.sock.create()
        assert await h.sock.bind(sk, "127.0.0.1", 9200) == 0
        # Without `known`: at once.
        r = await h.sock.call(sk, poll=udp_pb2.PollOp(timeout_ns=-1))
        assert (r.errno, r.poll.mask) == (0, FRESH)
        # With it: the answer waits for the mask to change (the calls after it go on).
        waiting = h.sock.start(sk, poll=udp_pb2.PollOp(known=FRESH, timeout_ns=-1))
        assert (await h.sock.call(sk, poll=udp_pb2.PollOp())).poll.mask == FRESH
        assert not h.sock.has_reply(waiting)
        seg = udp_segment(PEER, LOOPBACK, 5000, 9200, b"data")
        await h.deliver(delivered_skb(PEER, LOOPBACK, seg))
        assert (await h.sock.reply(waiting)).poll.mask == READABLE
        # A recvmsg that empties the queue is a change too.
        waiting = h.sock.start(sk, poll=udp_pb2.PollOp(known=READABLE, timeout_ns=-1))
        assert (await h.sock.recvmsg(sk)).recvmsg.data == b"data"
        assert (await h.sock.reply(waiting)).poll.mask == FRESH
        # timeout_ns: the mask unchanged, when the time is up.
        r = await h.sock.call(sk, poll=udp_pb2.PollOp(known=FRESH, timeout_ns=1_000_000))
        assert (r.errno, r.poll.mask) == (0, FRESH)
        # CancelOp ends a wait (EINTR) and leaves no poller behind.
        waiting = h.sock.start(sk, poll=udp_pb2.PollOp(known=FRESH, timeout_ns=-1))
        await eventually(lambda: bool(h.layer.socks[sk].poll_waiters), "a poller")
        await h.sock.call(cancel=udp_pb2.CancelOp(call_id=waiting))
        assert (await h.sock.reply(waiting)).errno == errno.EINTR
        assert not h.layer.socks[sk].poll_waiters
        # ShutdownOp: EINVAL for a bad how; ENOTCONN unconnected, and the poller woken.
        assert (await h.sock.call(sk, shutdown=udp_pb2.ShutdownOp(how=3))).errno == errno.EINVAL
        waiting = h.sock.start(sk, poll=udp_pb2.PollOp(known=FRESH, timeout_ns=-1))
        r = await h.sock.call(sk, shutdown=udp_pb2.ShutdownOp(how=SHUT_RDWR))
        assert r.errno == errno.ENOTCONN
        assert (await h.sock.reply(waiting)).poll.mask == SHUT_BOTH
        # SetErrOp: sk_err, which SO_ERROR then takes (no wake-up).
        assert (await h.sock.call(sk, set_err=udp_pb2.SetErrOp(err=errno.ECONNREFUSED))).errno == 0
        assert (await h.sock.call(sk, poll=udp_pb2.PollOp())).poll.mask == SHUT_BOTH | POLLERR
        assert await h.sock.getsockopt(sk, SOL_SOCKET, 4) == (0, struct.pack("=i", errno.ECONNREFUSED))
        # Release wakes a poller: EBADF.
        waiting = h.sock.start(sk, poll=udp_pb2.PollOp(known=SHUT_BOTH, timeout_ns=-1))
        await eventually(lambda: bool(h.layer.socks[sk].poll_waiters), "a poller")
        await h.sock.call(sk, release=udp_pb2.ReleaseOp())
        assert (await h.sock.reply(waiting)).errno == errno.EBADF


@async_test
async def test_poll_drops_bad_checksums_unless_nonblocking() -> None:
    async with UdpHarness() as h:
        sk = await h.sock.create()
        assert await h.sock.bind(sk, "127.0.0.1", 9300) == 0
        # Longer than CHECKSUM_BREAK (76): udp4_csum_init leaves it for later.
        bad = udp_segment(PEER, LOOPBACK, 5000, 9300, bytes(100), check=0x1234)
        await h.deliver(delivered_skb(PEER, LOOPBACK, bad))
        await h.queued(sk, 1)
        # O_NONBLOCK: udp_poll() skips first_packet_length(): readable, nothing dropped.
        r = await h.sock.call(sk, poll=udp_pb2.PollOp(nonblock=True))
        assert r.poll.mask == READABLE
        assert len(h.layer.socks[sk].receive_queue) == 1
        # Blocking: the bad datagram is dropped where udp_recvmsg would drop it.
        r = await h.sock.call(sk, poll=udp_pb2.PollOp())
        assert r.poll.mask == FRESH
        assert not h.layer.socks[sk].receive_queue
        assert await h.counters() == udp_mib(InErrors=1, InCsumErrors=1)
        assert h.layer.socks[sk].drops == 1
        assert h.layer.socks[sk].rmem_alloc == 0


async def _stream_next(call: grpc.aio.UnaryStreamCall) -> list[int]:
    resp = await asyncio.wait_for(call.read(), 5)
    assert resp is not grpc.aio.EOF
    return list(resp.revents)


@async_test
async def test_poll_stream() -> None:
    async with SocketHarness() as h:
        pid = await h.process()
        fd = await h.udp_fd(pid)
        assert await h.bind(pid, fd, sockaddr("127.0.0.1", 9400)) == 0
        w = await h.udp_fd(pid)
        sk = h.layer.procs.get(pid).file(fd).sk
        fds = [
            socket_pb2.PollFd(fd=fd, events=POLLIN),
            socket_pb2.PollFd(fd=w, events=POLLOUT),
            socket_pb2.PollFd(fd=77, events=POLLIN),  # not open: POLLNVAL
            socket_pb2.PollFd(fd=-1, events=POLLIN),  # ignored: 0
        ]
        call = h.stub.Poll(socket_pb2.PollRequest(pid=pid, fds=fds))
        assert await _stream_next(call) == [0, POLLOUT, POLLNVAL, 0]
        assert await h.sendmsg(pid, w, b"one", sockaddr("127.0.0.1", 9400)) == (0, 3)
        assert await _stream_next(call) == [POLLIN, POLLOUT, POLLNVAL, 0]
        assert (await h.recvmsg(pid, fd, flags=MSG_DONTWAIT)).data == b"one"
        assert await _stream_next(call) == [0, POLLOUT, POLLNVAL, 0]
        # POLLHUP is reported though not asked for; POLLRDHUP only when asked.
        r = await h.stub.Shutdown(socket_pb2.ShutdownRequest(pid=pid, fd=fd, how=SHUT_RDWR))
        assert r.errno == errno.ENOTCONN
        assert await _stream_next(call) == [POLLIN | POLLHUP, POLLOUT, POLLNVAL, 0]
        # Closing an fd polled: POLLNVAL.
        assert await h.close(pid, w) == 0
        assert await _stream_next(call) == [POLLIN | POLLHUP, POLLNVAL, POLLNVAL, 0]
        call.cancel()
        await eventually(lambda: not h.udp.layer.socks[sk].poll_waiters, "the PollOps stopped")
        # timeout_ns: the first response, then the end (OK) when nothing changes.
        call = h.stub.Poll(
            socket_pb2.PollRequest(pid=pid, fds=[socket_pb2.PollFd(fd=fd, events=ALL)], timeout_ns=10_000_000)
        )
        assert await _stream_next(call) == [SHUT_BOTH]
        assert await asyncio.wait_for(call.read(), 5) == grpc.aio.EOF
        assert await call.code() == grpc.StatusCode.OK
        assert not h.udp.layer.socks[sk].poll_waiters
        # An unknown pid: INVALID_ARGUMENT.
        call = h.stub.Poll(socket_pb2.PollRequest(pid=4242, fds=fds))
        assert await call.code() == grpc.StatusCode.INVALID_ARGUMENT


@async_test
async def test_poll_stream_released_by_close_and_exit() -> None:
    async with SocketHarness() as h:
        pid = await h.process()
        fd = await h.udp_fd(pid)
        sk = h.layer.procs.get(pid).file(fd).sk
        call = h.stub.Poll(socket_pb2.PollRequest(pid=pid, fds=[socket_pb2.PollFd(fd=fd, events=POLLIN)]))
        assert await _stream_next(call) == [0]
        await eventually(lambda: bool(h.udp.layer.socks[sk].poll_waiters), "a poller below")
        await h.stub.ExitProcess(socket_pb2.ExitProcessRequest(pid=pid))
        assert await _stream_next(call) == [POLLNVAL]
        call.cancel()


@async_test
async def test_poll_stream_limits() -> None:
    """More fds than RLIMIT_NOFILE is INVALID_ARGUMENT (poll(2): EINVAL); a reader that
    does not read while the state changes many times gets at most one response per
    change (fewer when the transport pushed back and the stream kept only the latest),
    the last being the state now."""
    async with SocketHarness() as h:
        pid = int((await h.stub.OpenProcess(socket_pb2.OpenProcessRequest(comm="t", nofile=8))).pid)
        fds = [socket_pb2.PollFd(fd=3 + i, events=POLLIN) for i in range(9)]
        call = h.stub.Poll(socket_pb2.PollRequest(pid=pid, fds=fds))
        assert await call.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "more than RLIMIT_NOFILE 8" in (await call.details() or "")
        fd = await h.udp_fd(pid)
        assert await h.bind(pid, fd, sockaddr("127.0.0.1", 9410)) == 0
        w = await h.udp_fd(pid)
        call = h.stub.Poll(socket_pb2.PollRequest(pid=pid, fds=[socket_pb2.PollFd(fd=fd, events=POLLIN)]))
        assert await _stream_next(call) == [0]
        sk = h.layer.procs.get(pid).file(fd).sk
        for _ in range(20):
            assert await h.sendmsg(pid, w, b"x", sockaddr("127.0.0.1", 9410)) == (0, 1)
            await eventually(lambda: bool(h.udp.layer.socks[sk].receive_queue), "queued")
            assert (await h.recvmsg(pid, fd, flags=MSG_DONTWAIT)).data == b"x"
        assert await h.sendmsg(pid, w, b"last", sockaddr("127.0.0.1", 9410)) == (0, 4)
        await eventually(lambda: bool(h.udp.layer.socks[sk].receive_queue), "queued")
        seen = []
        for _ in range(100):
            try:
                seen.append(await _stream_next_within(call, 0.2))
            except TimeoutError:
                break
        assert 1 <= len(seen) <= 41
        assert seen[-1] == [POLLIN]
        assert all(r in ([0], [POLLIN]) for r in seen)
        call.cancel()


async def _stream_next_within(call: grpc.aio.UnaryStreamCall, seconds: float) -> list[int]:
    resp = await asyncio.wait_for(call.read(), seconds)
    assert resp is not grpc.aio.EOF
    return list(resp.revents)
