"""The send buffer of a UDP socket, as the kernel accounts it: sock_alloc_send_pskb()
charges each datagram's truesize to sk_wmem_alloc (only while it is below sk_sndbuf, so
one datagram may take it past), sock_wfree() gives it back when the layers below free
the skb and sock_def_write_space() wakes the senders once sk_wmem_alloc is at most half
of sk_sndbuf; udp_sendmsg()'s "out:" counts SndbufErrors for ENOBUFS or whenever
SOCK_NOSPACE was ever set (it stays set on a UDP socket). Also the route keys a send
passes down (MSG_DONTROUTE, SO_DONTROUTE, SO_BINDTODEVICE), MSG_CONFIRM, and udp_mem on
the receive side (__sk_mem_raise_allocated).

The UdpLayer is driven directly with a fake ip_route_output_key, except where the gRPC
service's own behaviour is the point (UdpHarness, its IP faked with TX completions).
Checked on this machine's 6.18 kernel (a netns, a veth held back by a slow tbf):
SO_SNDBUF 1, 100000 and INT_MAX read back 4608, 200000 and 2 * wmem_max; a
nonblocking send with sk_wmem_alloc at sk_sndbuf is EAGAIN and SndbufErrors 1; a
later EMSGSIZE from ip_append_data counts one more, MSG_OOB's EOPNOTSUPP and a
65536-byte send's early EMSGSIZE do not.
"""

from __future__ import annotations

import asyncio
import struct

import pytest

from services.core import errno
from services.core.netdev import NETIF_F_HW_CSUM, NETIF_F_SG
from services.core.skbuff import Dst
from services.core.socket_uapi import (
    MSG_CONFIRM,
    MSG_DONTROUTE,
    MSG_DONTWAIT,
    MSG_OOB,
    SO_BINDTODEVICE,
    SO_DONTROUTE,
    SO_SNDBUF,
    SOL_SOCKET,
)
from services.core.sysctl import Sysctl
from services.udp.layer import UdpLayer
from services.udp.sock import UdpSock
from stackemu.skb.v1 import skb_pb2
from stackemu.udp.v1 import udp_pb2
from tests.services import fakes_udp
from tests.services.fakes_udp import (
    FakeIp,
    LoopbackUdp,
    UdpHarness,
    async_test,
    eventually,
    ip,
    sockaddr,
    udp_mib,
)

INT = struct.Struct("=i")
ALICE = ip("10.0.0.1")
BOB = ip("10.0.0.2")
TO_BOB = sockaddr("10.0.0.2", 9000)
# A device that does scatter-gather and checksums: the truesize of __ip_append_data's
# page-frag path for big datagrams.
ETH0_FEATURES = NETIF_F_SG | NETIF_F_HW_CSUM
ETH0_IFINDEX = 2
RT_SCOPE_LINK = 253
RTN_UNICAST = 1
SOCK_MIN_SNDBUF = 4608
WMEM_MAX = 4194304


class Routes:
    """ip_route_output_key to a device of MTU 65536 with SG and HW_CSUM, every call's
    keys recorded."""

    def __init__(self) -> None:
        self.calls: list[dict[str, int]] = []

    async def __call__(
        self, daddr: int, saddr: int, oif: int, *, tos: int = 0, scope: int = 0, mark: int = 0
    ) -> tuple[Dst, int, int]:
        self.calls.append({"daddr": daddr, "saddr": saddr, "oif": oif, "tos": tos, "scope": scope})
        return Dst(ETH0_IFINDEX, daddr, 65536, RTN_UNICAST, 0, ETH0_FEATURES), ALICE, 0


def new_layer(sysctl: Sysctl | None = None) -> tuple[UdpLayer, Routes]:
    routes = Routes()
    return UdpLayer("alice", sysctl or Sysctl(), routes), routes


async def send(layer: UdpLayer, s: UdpSock, size: int, flags: int = 0, timeout_ns: int = 0) -> int:
    """sendmsg to bob: the length sent, or -errno."""
    try:
        return await layer.sendmsg(s, bytes(size), TO_BOB, flags, False, b"", timeout_ns)
    except OSError as err:
        return -(err.errno or 0)


def sndbuf_errors(layer: UdpLayer) -> int:
    return layer.mib.udp.get("SndbufErrors")


async def settle() -> None:
    """Let every ready task run (a woken sender finishes within a few steps)."""
    for _ in range(10):
        await asyncio.sleep(0)


async def full(layer: UdpLayer) -> UdpSock:
    """A socket whose send buffer (SO_SNDBUF 1: 4608) is already full: one 16000-byte
    datagram (truesize 16640) not yet freed below."""
    s = layer.create(17, 1, 3)
    await layer.setsockopt(s, SOL_SOCKET, SO_SNDBUF, INT.pack(1))
    assert await send(layer, s, 16000) == 16000
    assert s.wmem_alloc == 16640 and s.sndbuf == SOCK_MIN_SNDBUF
    return s


@async_test
async def test_a_sent_datagram_charges_its_truesize_until_tx_done() -> None:
    layer, _ = new_layer()
    s = layer.create(17, 1, 3)
    assert await send(layer, s, 500) == 500
    (skb,) = layer.to_ip
    assert (skb.truesize, skb.wmem, s.wmem_alloc) == (1280, 1280, 1280)
    assert await send(layer, s, 1000) == 1000
    assert s.wmem_alloc == 1280 + 2304 and layer.to_ip[1].wmem == 2304
    layer.tx_done(s.sk, 1280, 0)
    assert s.wmem_alloc == 2304
    layer.tx_done(s.sk, 2304, 0)
    assert s.wmem_alloc == 0
    assert layer.mib.udp.get("OutDatagrams") == 2 and sndbuf_errors(layer) == 0


@pytest.mark.parametrize(
    ("payload", "truesize"), [(0, 832), (500, 1280), (1000, 2304), (16000, 16640), (32000, 32832)]
)
def test_truesize_is_ip_append_datas(payload: int, truesize: int) -> None:
    """__ip_append_data() over an SG device of MTU 65536: linear skbs (SKB_TRUESIZE of
    the kmalloc bucket) while fraglen + alloc_extra is below SKB_MAX_ALLOC, then the
    headers in the head and the data in page frags, charged byte for byte."""

    async def go() -> None:
        layer, _ = new_layer()
        s = layer.create(17, 1, 3)
        assert await send(layer, s, payload) == payload
        (skb,) = layer.to_ip
        assert (skb.truesize, skb.wmem, s.wmem_alloc) == (truesize, truesize, truesize)

    fakes_udp.run(go())


@async_test
async def test_a_released_socket_counts_its_refused_datagrams_until_all_are_freed() -> None:
    """A struct sock outlives close() while sk_wmem_alloc holds its datagrams below
    (__sk_free waits for the last sock_wfree): a qdisc's -ENOBUFS reported after the
    close is still the socket's SndbufErrors, and the socket goes with the last one."""
    layer, _ = new_layer()
    s = layer.create(17, 1, 3)
    assert await send(layer, s, 500) == 500
    assert await send(layer, s, 1000) == 1000
    layer.release(s)
    assert layer.socks == {} and layer.dying == {s.sk: s}
    layer.tx_done(s.sk, 1280, 1)
    assert (sndbuf_errors(layer), s.wmem_alloc, layer.dying) == (1, 2304, {s.sk: s})
    layer.tx_done(s.sk, 2304, 1)
    assert (sndbuf_errors(layer), s.wmem_alloc, layer.dying) == (2, 0, {})
    # A completion for a socket that is gone altogether changes nothing.
    layer.tx_done(s.sk, 100, 1)
    assert sndbuf_errors(layer) == 2
    # One released with nothing in flight is freed at once.
    quiet = layer.create(17, 1, 4)
    layer.release(quiet)
    assert layer.dying == {}


@async_test
async def test_tx_done_wakes_senders_only_at_half_of_sndbuf() -> None:
    """sock_def_write_space(): (sk_wmem_alloc << 1) <= sk_sndbuf."""
    layer, _ = new_layer()
    s = await full(layer)
    waiter = asyncio.get_running_loop().create_future()
    s.write_waiters.append(waiter)
    layer.tx_done(s.sk, 16640 - 2305, 0)  # 2305 * 2 > 4608
    assert s.wmem_alloc == 2305 and not waiter.done()
    layer.tx_done(s.sk, 1, 0)  # 2304 * 2 == 4608
    assert s.wmem_alloc == 2304 and waiter.done()


@async_test
async def test_full_sndbuf_nonblocking_is_eagain_and_nospace_stays() -> None:
    layer, _ = new_layer()
    s = await full(layer)
    assert not s.nospace
    assert await send(layer, s, 10, timeout_ns=0) == -errno.EAGAIN
    assert s.nospace and sndbuf_errors(layer) == 1
    # Room again: SOCK_NOSPACE is not cleared (sock_def_write_space leaves it), so an
    # error at "out:" still counts, here ip_append_data's EMSGSIZE (65527 + 8 + 20 >
    # 0xFFFF)...
    layer.tx_done(s.sk, 16640, 0)
    assert s.wmem_alloc == 0
    assert await send(layer, s, 65528) == -errno.EMSGSIZE
    assert s.nospace and sndbuf_errors(layer) == 2
    # ...but not an error returned before it: MSG_OOB, len > 0xFFFF.
    assert await send(layer, s, 10, flags=MSG_OOB) == -errno.EOPNOTSUPP
    assert await send(layer, s, 65536) == -errno.EMSGSIZE
    assert sndbuf_errors(layer) == 2
    # A send that succeeds counts nothing.
    assert await send(layer, s, 10) == 10
    assert sndbuf_errors(layer) == 2
    assert layer.mib.udp.get("OutDatagrams") == 2


@async_test
async def test_emsgsize_without_nospace_is_not_a_sndbuf_error() -> None:
    layer, _ = new_layer()
    s = layer.create(17, 1, 3)
    assert await send(layer, s, 65528) == -errno.EMSGSIZE
    assert sndbuf_errors(layer) == 0 and not s.nospace


@async_test
async def test_one_datagram_may_take_wmem_past_sndbuf() -> None:
    """sock_alloc_send_pskb(): sk_wmem_alloc < sk_sndbuf before the allocation."""
    layer, _ = new_layer()
    s = layer.create(17, 1, 3)
    await layer.setsockopt(s, SOL_SOCKET, SO_SNDBUF, INT.pack(1))
    assert await send(layer, s, 1000) == 1000
    assert s.wmem_alloc == 2304
    assert await send(layer, s, 32000) == 32000
    assert s.wmem_alloc == 2304 + 32832 > s.sndbuf
    assert await send(layer, s, 0) == -errno.EAGAIN
    assert not layer.to_ip[2:]


@async_test
async def test_blocking_send_waits_for_tx_done() -> None:
    layer, _ = new_layer()
    s = await full(layer)
    task = asyncio.create_task(send(layer, s, 500, timeout_ns=-1))
    await settle()
    assert not task.done() and s.nospace and len(layer.to_ip) == 1
    layer.tx_done(s.sk, 16640 - 2400, 0)  # still above half: no wake-up
    await settle()
    assert not task.done()
    layer.tx_done(s.sk, 2400, 0)
    assert await asyncio.wait_for(task, fakes_udp.WAIT) == 500
    assert s.wmem_alloc == 1280 and len(layer.to_ip) == 2
    # Waiting is not an error: nothing counted.
    assert sndbuf_errors(layer) == 0


@async_test
async def test_send_timeout_is_eagain_after_it() -> None:
    layer, _ = new_layer()
    s = await full(layer)
    task = asyncio.create_task(send(layer, s, 10, timeout_ns=50_000_000))
    await settle()
    assert not task.done()
    assert await asyncio.wait_for(task, fakes_udp.WAIT) == -errno.EAGAIN
    assert sndbuf_errors(layer) == 1 and len(layer.to_ip) == 1


@async_test
async def test_a_timed_out_sender_leaves_no_waiter() -> None:
    """sk_stream_wait_memory's finish_wait(): a sender that gave up is off the wait
    queue; repeated timeouts with nothing freed must not pile up."""
    layer, _ = new_layer()
    s = await full(layer)
    for _ in range(3):
        assert await send(layer, s, 10, timeout_ns=1_000_000) == -errno.EAGAIN
    assert len(s.write_waiters) == 0


@async_test
async def test_pending_error_comes_before_the_wait() -> None:
    """sock_alloc_send_pskb(): sock_error() first, taken once; SOCK_NOSPACE is not set
    yet, so it is no SndbufErrors."""
    layer, _ = new_layer()
    s = await full(layer)
    s.sk_err = errno.ECONNREFUSED
    assert await send(layer, s, 10, timeout_ns=-1) == -errno.ECONNREFUSED
    assert s.sk_err == 0 and sndbuf_errors(layer) == 0
    assert await send(layer, s, 10, timeout_ns=0) == -errno.EAGAIN


@async_test
async def test_a_waiting_sender_gets_the_error_reported_meanwhile() -> None:
    layer, _ = new_layer()
    s = await full(layer)
    task = asyncio.create_task(send(layer, s, 10, timeout_ns=-1))
    await settle()
    assert not task.done()
    s.sk_err = errno.EHOSTUNREACH
    layer.tx_done(s.sk, 16640, 0)
    assert await asyncio.wait_for(task, fakes_udp.WAIT) == -errno.EHOSTUNREACH


@async_test
async def test_release_wakes_a_waiting_sender_with_ebadf() -> None:
    layer, _ = new_layer()
    s = await full(layer)
    task = asyncio.create_task(send(layer, s, 10, timeout_ns=-1))
    await settle()
    assert not task.done()
    layer.release(s)
    assert await asyncio.wait_for(task, fakes_udp.WAIT) == -errno.EBADF


@pytest.mark.parametrize(
    ("value", "sndbuf"),
    [
        (1, SOCK_MIN_SNDBUF),
        (0, SOCK_MIN_SNDBUF),
        (100000, 200000),
        (0x7FFFFFFF, 2 * WMEM_MAX),
        (-1, 2 * WMEM_MAX),
    ],
)
def test_so_sndbuf_values(value: int, sndbuf: int) -> None:
    async def go() -> None:
        layer, _ = new_layer()
        s = layer.create(17, 1, 3)
        assert s.sndbuf == 212992
        await layer.setsockopt(s, SOL_SOCKET, SO_SNDBUF, INT.pack(value))
        assert s.sndbuf == sndbuf
        assert await layer.getsockopt(s, SOL_SOCKET, SO_SNDBUF, 4) == (INT.pack(sndbuf), 4)

    fakes_udp.run(go())


@async_test
async def test_shrinking_sndbuf_below_wmem_makes_the_next_send_eagain() -> None:
    layer, _ = new_layer()
    s = layer.create(17, 1, 3)
    assert await send(layer, s, 16000) == 16000
    assert await send(layer, s, 10) == 10
    await layer.setsockopt(s, SOL_SOCKET, SO_SNDBUF, INT.pack(1))
    assert s.wmem_alloc == 16640 + 832 > s.sndbuf
    assert await send(layer, s, 10) == -errno.EAGAIN
    assert sndbuf_errors(layer) == 1


@async_test
async def test_growing_sndbuf_wakes_a_waiting_sender() -> None:
    """sock_setsockopt(SO_SNDBUF) ends with sk_write_space()."""
    layer, _ = new_layer()
    s = await full(layer)
    task = asyncio.create_task(send(layer, s, 10, timeout_ns=-1))
    await settle()
    assert not task.done()
    await layer.setsockopt(s, SOL_SOCKET, SO_SNDBUF, INT.pack(100000))
    assert await asyncio.wait_for(task, fakes_udp.WAIT) == 10


@async_test
async def test_msg_confirm_marks_the_datagram() -> None:
    layer, _ = new_layer()
    s = layer.create(17, 1, 3)
    assert await send(layer, s, 4, flags=MSG_CONFIRM) == 4
    assert await send(layer, s, 4) == 4
    assert [skb.dst_pending_confirm for skb in layer.to_ip] == [True, False]


@async_test
async def test_dontroute_looks_the_route_up_with_scope_link() -> None:
    layer, routes = new_layer()
    s = layer.create(17, 1, 3)
    assert await send(layer, s, 4) == 4
    assert await send(layer, s, 4, flags=MSG_DONTROUTE) == 4
    await layer.setsockopt(s, SOL_SOCKET, SO_DONTROUTE, INT.pack(1))
    assert await send(layer, s, 4) == 4
    assert [c["scope"] for c in routes.calls] == [0, RT_SCOPE_LINK, RT_SCOPE_LINK]
    assert {c["daddr"] for c in routes.calls} == {BOB}


@async_test
async def test_bindtodevice_sends_through_that_device() -> None:
    layer, routes = new_layer()
    layer.devices = {1: "lo", ETH0_IFINDEX: "eth0"}
    s = layer.create(17, 1, 3)
    await layer.setsockopt(s, SOL_SOCKET, SO_BINDTODEVICE, b"eth0\0")
    assert s.bound_dev_if == ETH0_IFINDEX
    assert await send(layer, s, 4) == 4
    assert routes.calls[-1]["oif"] == ETH0_IFINDEX
    with pytest.raises(OSError) as err:
        await layer.setsockopt(s, SOL_SOCKET, SO_BINDTODEVICE, b"wlan9\0")
    assert err.value.errno == errno.ENODEV
    assert s.bound_dev_if == ETH0_IFINDEX


# udp_mem, on the receive side (__udp_enqueue_schedule_skb → __sk_mem_raise_allocated).


async def receiver(udp: LoopbackUdp, port: int) -> UdpSock:
    s = udp.layer.create(17, 1, port)
    await udp.layer.bind(s, ip("127.0.0.1"), port)
    return s


async def flood(udp: LoopbackUdp, sender: UdpSock, port: int, n: int) -> None:
    for _ in range(n):
        # Over the fake lo (no SG): a 1000-byte datagram is a 2304-truesize skb.
        assert (
            await udp.sendmsg(sender.sk, bytes(1000), sockaddr("127.0.0.1", port), 0, False, b"", 0) == 1000
        )


@async_test
async def test_udp_mem_pressure_refuses_a_socket_past_udp_rmem_min() -> None:
    """Between udp_mem[0] and udp_mem[2] a socket still gets pages while it holds less
    than udp_rmem_min (4096); one holding more gets MemErrors (and InErrors, sk_drops)."""
    sysctl = Sysctl()
    sysctl.set("net.ipv4.udp_mem", "1 1 100")
    udp = LoopbackUdp(sysctl)
    a, b = await receiver(udp, 9001), await receiver(udp, 9002)
    sender = udp.layer.create(17, 1, 9)
    # a: page 1 (within udp_mem[0]); page 2 while rmem 2304 < 4096; the third fits the
    # forward allocation; the fourth needs a page with rmem 6912: refused.
    await flood(udp, sender, 9001, 4)
    assert (len(a.receive_queue), a.rmem_alloc, a.drops) == (3, 6912, 1)
    assert udp.layer.memory_allocated == 2
    # b holds nothing: it still takes one (page 3).
    await flood(udp, sender, 9002, 1)
    assert (len(b.receive_queue), b.rmem_alloc, b.drops) == (1, 2304, 0)
    assert udp.layer.memory_allocated == 3
    assert {f"Udp{k}": v for k, v in udp.layer.mib.udp.as_dict().items()} == udp_mib(
        OutDatagrams=5, MemErrors=1, InErrors=1
    )


@async_test
async def test_udp_mem_hard_limit_refuses_every_socket() -> None:
    """udp_mem "1 1 1": past udp_mem[2] __sk_mem_raise_allocated() suppresses the
    allocation before the udp_rmem_min guarantee is looked at, so a socket holding less
    than 4096 is refused too, once the one page is taken."""
    sysctl = Sysctl()
    sysctl.set("net.ipv4.udp_mem", "1 1 1")
    udp = LoopbackUdp(sysctl)
    a, b = await receiver(udp, 9001), await receiver(udp, 9002)
    sender = udp.layer.create(17, 1, 9)
    await flood(udp, sender, 9001, 2)
    assert (len(a.receive_queue), a.rmem_alloc, a.drops) == (1, 2304, 1)
    await flood(udp, sender, 9002, 1)
    assert (len(b.receive_queue), b.rmem_alloc, b.drops) == (0, 0, 1)
    assert udp.layer.memory_allocated == 1
    assert {f"Udp{k}": v for k, v in udp.layer.mib.udp.as_dict().items()} == udp_mib(
        OutDatagrams=3, MemErrors=2, InErrors=2
    )
    # Reading a's datagram keeps its last page (udp_rmem_release with partial = 1
    # returns whole pages of sk_forward_alloc - 1): b is still refused, a takes the
    # next one from its forward allocation.
    assert len((await udp.recvmsg(a.sk, 2000, 0, 0)).data) == 1000
    assert (a.rmem_alloc, a.forward_alloc, udp.layer.memory_allocated) == (0, 4096, 1)
    await flood(udp, sender, 9002, 1)
    await flood(udp, sender, 9001, 1)
    assert (len(a.receive_queue), len(b.receive_queue), b.drops) == (1, 0, 2)
    assert udp.layer.mib.udp.get("MemErrors") == 3


# Through the gRPC service: the IP side reports TX completions.


class TxIp(FakeIp):
    """FakeIp that can also send TX completions (AttachResponse.tx_done)."""

    def __init__(self) -> None:
        super().__init__()
        self.tx: asyncio.Queue[skb_pb2.TxCompletion] = asyncio.Queue()

    def tx_done(self, sk: int, wmem: int, enobufs: int = 0) -> None:
        """sock_wfree() below: the UDP service hears of it on the Attach stream."""
        assert self.up.put_nowait([skb_pb2.TxCompletion(sk=sk, wmem=wmem, enobufs=enobufs)])


class TxHarness(UdpHarness):
    ip: TxIp
    ip_class = TxIp


def send_op(size: int, flags: int = 0, timeout_ns: int = -1) -> udp_pb2.SendmsgOp:
    return udp_pb2.SendmsgOp(
        data=bytes(size), name=sockaddr("127.0.0.1", 9001), flags=flags, timeout_ns=timeout_ns
    )


@async_test
async def test_a_blocking_send_does_not_hold_up_the_stream() -> None:
    async with TxHarness() as h:
        sk = await h.sock.create()
        other = await h.sock.create()
        assert await h.sock.setsockopt(sk, SOL_SOCKET, SO_SNDBUF, INT.pack(1)) == 0
        r = await h.sock.call(sk, sendmsg=send_op(5000))
        assert (r.errno, r.sendmsg.sent) == (0, 5000)
        wmem = h.layer.socks[sk].wmem_alloc
        assert wmem > SOCK_MIN_SNDBUF
        assert (await h.ip.next_sent()).wmem == wmem
        # MSG_DONTWAIT, and a timeout of 0, do not wait.
        assert (await h.sock.call(sk, sendmsg=send_op(10, flags=MSG_DONTWAIT))).errno == errno.EAGAIN
        assert (await h.sock.call(sk, sendmsg=send_op(10, timeout_ns=0))).errno == errno.EAGAIN
        blocked = h.sock.start(sk, sendmsg=send_op(700))
        # Calls after it on the stream are answered meanwhile.
        assert await h.sock.getsockopt(other, SOL_SOCKET, SO_SNDBUF) == (0, INT.pack(212992))
        r = await h.sock.recvmsg(other)
        assert r.errno == errno.EAGAIN
        assert not h.sock.has_reply(blocked)
        # Half freed is not enough (sock_def_write_space).
        h.ip.tx_done(sk, wmem - SOCK_MIN_SNDBUF // 2 - 1)
        await eventually(lambda: h.layer.socks[sk].wmem_alloc == SOCK_MIN_SNDBUF // 2 + 1, "partial tx_done")
        assert await h.sock.getsockopt(other, SOL_SOCKET, SO_SNDBUF) == (0, INT.pack(212992))
        assert not h.sock.has_reply(blocked)
        # The rest freed, one datagram of it refused by the qdisc (ENOBUFS).
        h.ip.tx_done(sk, SOCK_MIN_SNDBUF // 2 + 1, enobufs=1)
        r = await h.sock.reply(blocked)
        assert (r.errno, r.sendmsg.sent) == (0, 700)
        assert len((await h.ip.next_sent()).payload()) == 8 + 700
        assert await h.counters() == udp_mib(OutDatagrams=2, SndbufErrors=3)
        assert h.sock.duplicates == []


@async_test
async def test_a_blocking_send_with_a_timeout_is_eagain_through_the_service() -> None:
    async with TxHarness() as h:
        sk = await h.sock.create()
        assert await h.sock.setsockopt(sk, SOL_SOCKET, SO_SNDBUF, INT.pack(1)) == 0
        assert (await h.sock.call(sk, sendmsg=send_op(5000))).errno == 0
        r = await h.sock.call(sk, sendmsg=send_op(10, timeout_ns=50_000_000))
        assert r.errno == errno.EAGAIN
        assert await h.counters() == udp_mib(OutDatagrams=1, SndbufErrors=1)


@async_test
async def test_a_tx_completion_with_enobufs_is_a_sndbuf_error() -> None:
    """ip_send_skb()'s -ENOBUFS (the qdisc refused it) is counted whether or not
    IP_RECVERR would return it; the memory comes back with it."""
    async with TxHarness() as h:
        sk = await h.sock.create()
        assert (await h.sock.call(sk, sendmsg=send_op(100))).errno == 0
        skb = await h.ip.next_sent()
        h.ip.tx_done(sk, skb.wmem, enobufs=1)
        await eventually(lambda: h.layer.socks[sk].wmem_alloc == 0, "wmem given back")
        assert await h.counters() == udp_mib(OutDatagrams=1, SndbufErrors=1)
