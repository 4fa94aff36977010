"""A GRO skb through ip_rcv and udp_rcv to a socket: split back into its datagrams for a
socket without UDP_GRO (udp_queue_rcv_skb's udp_unexpected_gso → udp_rcv_segment),
whole for one with it. The layers run in-process: Gro → IpLayer.ip_rcv → UdpLayer."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any

import pytest

from services.core import errno
from services.core.datagram import Datagram
from services.core.dropreason import DropStats, SkbDropReason
from services.core.skbuff import CHECKSUM_PARTIAL, Dst, SkBuff
from services.core.socket_uapi import MSG_DONTWAIT
from services.core.sysctl import Sysctl
from services.ip.fib import InIfaddr
from services.ip.layer import IpLayer
from services.nic.gro import Gro
from services.udp.layer import UdpLayer
from services.udp.sock import UdpSock
from tests.services.test_gro import DADDR, DPORT, SADDR, SPORT, data, dgram, rx

LOOPBACK = 0x7F000001


class Host:
    def __init__(self) -> None:
        self.ip = IpLayer("bob", Sysctl())
        self.ip.add_address(InIfaddr(1, "lo", LOOPBACK, 8))
        self.ip.add_address(InIfaddr(2, "eth0", DADDR, 24))
        self.udp = UdpLayer("bob", Sysctl(), self._route)
        self.gro = Gro(DropStats())

    async def _route(self, daddr: int, saddr: int, oif: int) -> tuple[Dst, int, int]:
        raise errno.kernel_error(errno.ENETUNREACH)

    async def socket(self, gro_enabled: bool = False) -> UdpSock:
        s = self.udp.create(17, 1, 3)
        await self.udp.bind(s, 0, DPORT)
        s.gro_enabled = gro_enabled
        return s

    def deliver(self, frames: list[bytes], tstamp: int = 0) -> list[SkBuff]:
        """The NIC's poll: GRO, then each skb up through IP to UDP."""
        out: list[SkBuff] = []
        for f in frames:
            skb = rx(f)
            skb.tstamp = tstamp
            out += self.gro.receive(skb)
        out += self.gro.flush()
        for skb in out:
            self.ip.ip_rcv(skb)
        for skb in self.ip.to_transport:
            self.udp.udp_rcv(skb)
        self.ip.to_transport.clear()
        return out

    async def recv_all(self, s: UdpSock) -> list[Datagram]:
        got = []
        while True:
            try:
                got.append(await self.udp.recvmsg(s, 70000, MSG_DONTWAIT, 0))
            except OSError as e:
                assert e.errno == errno.EAGAIN
                return got

    def udp_mib(self) -> dict[str, int]:
        return {k: v for k, v in self.udp.mib.udp.as_dict().items() if v}


def run(coro: Coroutine[Any, Any, None]) -> None:
    asyncio.run(coro)


def test_merged_skb_is_split_for_a_socket_without_udp_gro() -> None:
    async def main() -> None:
        h = Host()
        s = await h.socket()
        payloads = [data(1000, i) for i in range(4)] + [data(500, 4)]
        [merged] = h.deliver([dgram(7 + i, p, ttl=9, tos=0x10) for i, p in enumerate(payloads)], tstamp=123)
        # One skb through IP: one InReceives and InDelivers, five segments by ECN.
        assert (merged.gso_segs, merged.data_len, merged.ip_summed) == (5, 3500, CHECKSUM_PARTIAL)
        assert (h.ip.mib.ip.get("InReceives"), h.ip.mib.ip.get("InDelivers")) == (1, 1)
        assert h.ip.mib.ipext.get("InNoECTPkts") == 5
        assert len(s.receive_queue) == 5
        queued = sum(skb.truesize for skb in s.receive_queue)
        assert s.rmem_alloc == queued
        assert h.udp_mib() == {}  # udp_recvmsg counts InDatagrams
        got = await h.recv_all(s)
        assert [d.data for d in got] == payloads
        for d in got:
            assert (d.saddr, d.sport, d.daddr, d.ttl, d.tos, d.ifindex) == (SADDR, SPORT, DADDR, 9, 0x10, 2)
            assert d.tstamp == 123
            assert d.ulen == len(d.data) and d.msg_flags == 0
        assert h.udp_mib() == {"InDatagrams": 5}
        assert (s.rmem_alloc, s.drops) == (0, 0)
        assert h.udp.drops.total() == 0

    run(main())


def test_small_merged_datagrams_need_no_checksum_check() -> None:
    """Merged and split skbs are CHECKSUM_PARTIAL: skb_csum_unnecessary() says yes, so
    even datagrams within CHECKSUM_BREAK are not summed again (the field holds only the
    pseudo-header sum)."""

    async def main() -> None:
        h = Host()
        s = await h.socket()
        payloads = [data(18, i) for i in range(3)]
        [merged] = h.deliver([dgram(0, p) for p in payloads])
        th = merged.transport_header
        assert merged.gso_segs == 3 and int.from_bytes(merged.head[th + 4 : th + 6], "big") == 8 + 54
        got = await h.recv_all(s)
        assert [d.data for d in got] == payloads
        assert h.udp_mib() == {"InDatagrams": 3}

    run(main())


def test_a_udp_gro_socket_gets_the_merged_skb_whole() -> None:
    async def main() -> None:
        h = Host()
        s = await h.socket(gro_enabled=True)
        payloads = [data(1000, i) for i in range(3)]
        h.deliver([dgram(i, p) for i, p in enumerate(payloads)])
        assert len(s.receive_queue) == 1
        [d] = await h.recv_all(s)
        assert (d.data, d.ulen) == (b"".join(payloads), 3000)
        assert h.udp_mib() == {"InDatagrams": 1}

    run(main())


def test_segments_meet_the_receive_buffer_one_by_one() -> None:
    async def main() -> None:
        h = Host()
        s = await h.socket()
        s.rcvbuf = 1
        h.deliver([dgram(i, data(1000, i)) for i in range(4)])
        # 6.18's __udp_enqueue_schedule_skb: past sk_rcvbuf only an empty queue takes one.
        assert len(s.receive_queue) == 1
        assert s.drops == 3
        assert h.udp_mib() == {"RcvbufErrors": 3, "InErrors": 3}
        assert h.udp.drops.get(SkbDropReason.SOCKET_RCVBUFF, "__udp_queue_rcv_skb") == 3
        [d] = await h.recv_all(s)
        assert d.data == data(1000, 0)

    run(main())


def test_a_merged_skb_that_cannot_be_split_drops_every_segment() -> None:
    async def main() -> None:
        h = Host()
        s = await h.socket()
        assert h.gro.receive(rx(dgram(0, data(100)))) == []
        assert h.gro.receive(rx(dgram(1, data(100, 1)))) == []
        [merged] = h.gro.flush()
        # A gso_size the whole datagram fits in: __udp_gso_segment refuses it.
        merged.gso_size = 200
        h.ip.ip_rcv(merged)
        for skb in h.ip.to_transport:
            h.udp.udp_rcv(skb)
        assert not s.receive_queue
        assert s.drops == 2
        assert h.udp_mib() == {"InErrors": 2}
        assert h.udp.drops.get(SkbDropReason.NOT_SPECIFIED, "udp_queue_rcv_skb") == 1

    run(main())


@pytest.mark.parametrize("gro_enabled", [False, True])
def test_an_skb_gro_left_alone_is_an_ordinary_datagram(gro_enabled: bool) -> None:
    async def main() -> None:
        h = Host()
        s = await h.socket(gro_enabled)
        [skb] = h.deliver([dgram(0, data(300))])
        assert skb.gso_size == 0
        [d] = await h.recv_all(s)
        assert d.data == data(300)
        assert h.udp_mib() == {"InDatagrams": 1}

    run(main())
