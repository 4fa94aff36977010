"""The UDP service's vector calls: SendmmsgOp (__sys_sendmmsg's loop over udp_sendmsg,
its datagrams going down to IP in one message) and RecvmmsgOp (do_recvmmsg's loop over
udp_recvmsg: the first read may wait, the others do not)."""

from __future__ import annotations

import grpc

from services.core import errno
from services.core.socket_uapi import MSG_DONTWAIT, UIO_MAXIOV
from stackemu.udp.v1 import udp_pb2
from tests.services.fakes_udp import (
    LOOPBACK,
    UdpHarness,
    async_test,
    delivered_skb,
    eventually,
    ip,
    sockaddr,
    udp_segment,
)

PEER = ip("127.0.0.2")


def _send(data: bytes, port: int = 9000) -> udp_pb2.SendmsgOp:
    return udp_pb2.SendmsgOp(data=data, name=sockaddr("127.0.0.1", port), flags=MSG_DONTWAIT)


def _recv(vlen: int, flags: int = MSG_DONTWAIT, timeout_ns: int = 0) -> udp_pb2.RecvmmsgOp:
    return udp_pb2.RecvmmsgOp(msg=udp_pb2.RecvmsgOp(len=100, flags=flags, timeout_ns=timeout_ns), vlen=vlen)


@async_test
async def test_sendmmsg_sends_each_in_order_in_one_batch() -> None:
    async with UdpHarness() as h:
        sk = await h.sock.create()
        msgs = [_send(b"a"), _send(b"bb"), _send(b"ccc")]
        r = await h.sock.call(sk, sendmmsg=udp_pb2.SendmmsgOp(msgs=msgs))
        assert (r.errno, list(r.sendmmsg.sent)) == (0, [1, 2, 3])
        got = [(await h.ip.next_sent()).payload()[8:] for _ in range(3)]
        assert got == [b"a", b"bb", b"ccc"]
        assert h.ip.batches == [3]


@async_test
async def test_sendmmsg_stops_at_the_first_failure() -> None:
    async with UdpHarness() as h:
        sk = await h.sock.create()
        # A later failure (EMSGSIZE: more than 65535 bytes) ends the vector; its error is
        # lost, as __sys_sendmmsg loses it.
        msgs = [_send(b"one"), _send(bytes(65536)), _send(b"three")]
        r = await h.sock.call(sk, sendmmsg=udp_pb2.SendmmsgOp(msgs=msgs))
        assert (r.errno, list(r.sendmmsg.sent)) == (0, [3])
        assert (await h.ip.next_sent()).payload()[8:] == b"one"
        # The first one's failure is the call's.
        r = await h.sock.call(sk, sendmmsg=udp_pb2.SendmmsgOp(msgs=msgs[1:]))
        assert (r.errno, r.WhichOneof("result")) == (errno.EMSGSIZE, None)
        assert h.ip.sent.empty() and h.ip.batches == [1]


@async_test
async def test_sendmmsg_past_uio_maxiov_fails_the_stream() -> None:
    async with UdpHarness() as h:
        sk = await h.sock.create()
        h.sock.start(sk, sendmmsg=udp_pb2.SendmmsgOp(msgs=[_send(b"x")] * (UIO_MAXIOV + 1)))
        err = await h.sock.failure()
        assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert err.details() == f"call 2: sendmmsg of {UIO_MAXIOV + 1} messages, more than {UIO_MAXIOV}"


@async_test
async def test_recvmmsg_reads_up_to_vlen_then_says_why_it_stopped() -> None:
    async with UdpHarness() as h:
        sk = await h.sock.create()
        await h.sock.bind(sk, "127.0.0.1", 9000)
        for payload in (b"1", b"22", b"333"):
            await h.deliver(delivered_skb(PEER, LOOPBACK, udp_segment(PEER, LOOPBACK, 5555, 9000, payload)))
        await h.queued(sk, 3)
        r = await h.sock.call(sk, recvmmsg=_recv(2))
        assert r.errno == 0 and r.recvmmsg.errno == 0
        assert [(m.data, m.sport) for m in r.recvmmsg.msgs] == [(b"1", 5555), (b"22", 5555)]
        # Fewer queued than asked for: those there, and EAGAIN for the next.
        r = await h.sock.call(sk, recvmmsg=_recv(5))
        assert (r.errno, [m.data for m in r.recvmmsg.msgs], r.recvmmsg.errno) == (0, [b"333"], errno.EAGAIN)
        # None queued: the first read's error is the call's.
        r = await h.sock.call(sk, recvmmsg=_recv(5))
        assert (r.errno, r.WhichOneof("result")) == (errno.EAGAIN, None)


@async_test
async def test_blocking_recvmmsg_waits_for_the_first_datagram_only() -> None:
    async with UdpHarness() as h:
        servicer = h.service.servicer
        sk = await h.sock.create()
        await h.sock.bind(sk, "127.0.0.1", 9000)
        waiting = h.sock.start(sk, recvmmsg=_recv(4, flags=0, timeout_ns=-1))
        await eventually(lambda: waiting in servicer._pending, "the recvmmsg to wait")
        assert not h.sock.has_reply(waiting)
        await h.deliver(delivered_skb(PEER, LOOPBACK, udp_segment(PEER, LOOPBACK, 5555, 9000, b"late")))
        r = await h.sock.reply(waiting)
        assert (r.errno, [m.data for m in r.recvmmsg.msgs], r.recvmmsg.errno) == (0, [b"late"], errno.EAGAIN)


@async_test
async def test_recvmmsg_vlen_out_of_range_fails_the_stream() -> None:
    for vlen in (0, UIO_MAXIOV + 1):
        async with UdpHarness() as h:
            sk = await h.sock.create()
            h.sock.start(sk, recvmmsg=_recv(vlen))
            err = await h.sock.failure()
            assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
            assert err.details() == f"call 2: recvmmsg vlen {vlen} is not in 1..{UIO_MAXIOV}"
