"""ICMP (services/ip/icmp.py) against net/ipv4/icmp.c: exact message bytes, the cork
and route handed to ip_send_skb, the Icmp/IcmpMsg counters, drop reasons, both rate
limits on an injected clock.

The byte strings marked "kernel" were captured on Linux 6.18.44 with an AF_PACKET
socket on lo in a network namespace of our own (tests/e2e/test_options_kernel.py does
it again live); the IP header is compared whole by emitting it from the cork with the
kernel's IP ID, as ip_send_skb would.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from dataclasses import dataclass, field

import pytest

from services.core.dropreason import DropStats, SkbDropReason
from services.core.ipcb import InetSkbParm, IpOptions, set_ipcb
from services.core.skbuff import (
    CHECKSUM_UNNECESSARY,
    HEADER_UNSET,
    PACKET_BROADCAST,
    PACKET_HOST,
    PACKET_MULTICAST,
    PACKET_OTHERHOST,
    Dst,
    SkBuff,
)
from services.core.snmp import SnmpMib
from services.core.sysctl import Sysctl
from services.core.wire.icmp import (
    ICMP_DEST_UNREACH,
    ICMP_ECHO,
    ICMP_ECHOREPLY,
    ICMP_ERR_CONVERT,
    ICMP_EXC_FRAGTIME,
    ICMP_EXC_TTL,
    ICMP_FRAG_NEEDED,
    ICMP_PARAMETERPROB,
    ICMP_PORT_UNREACH,
    ICMP_PROT_UNREACH,
    ICMP_REDIRECT,
    ICMP_SOURCE_QUENCH,
    ICMP_TIME_EXCEEDED,
    ICMP_TIMESTAMP,
)
from services.core.wire.ipv4 import Ipv4Repr, ip_from_str
from services.ip.fib import RTN_BROADCAST, RTN_LOCAL, RTN_UNICAST, Fib, InIfaddr
from services.ip.icmp import INADDR_DUMMY, Icmp
from services.ip.options import (
    OptionsError,
    ip_options_build,
    ip_options_compile,
    ip_options_from_cork,
)
from services.ip.route import RTCF_BROADCAST, RTCF_LOCAL, Router

LO, ETH0, ETH1 = 1, 2, 3
A = ip_from_str
LOOPBACK = A("127.0.0.1")
ALICE = A("10.0.0.1")
BOB = A("10.0.0.7")
CAROL = A("192.168.1.1")
FAR = A("198.51.100.9")
RTCF_MULTICAST = 0x20000000
ICMP_OWN = (
    "InMsgs",
    "InErrors",
    "InCsumErrors",
    "OutMsgs",
    "OutErrors",
    "OutRateLimitGlobal",
    "OutRateLimitHost",
)
START_NS = 1_000_000_000_000  # the injected monotonic clock: jiffies (HZ 1000) = ms
REALTIME_NS = (86_400 * 20_000 + 3_600) * 1_000_000_000 + 123_456_789  # 01:00:00.123 UT

# kernel: sendto(b"hello world") from 127.0.0.1:40000 to 127.0.0.1:9 (closed), the
# datagram and the port unreachable lo carried back.
KERNEL_UDP = bytes.fromhex("4500002743e340004011f8e07f0000017f0000019c4000090013fe2668656c6c6f20776f726c64")
KERNEL_PORT_UNREACH = bytes.fromhex("45c00043588900004001236f7f0000017f0000010303d0aa00000000") + KERNEL_UDP


def rfc1071(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    s: int = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF


def ip_packet(
    src: int,
    dst: int,
    proto: int,
    payload: bytes,
    *,
    tos: int = 0,
    ttl: int = 64,
    frag_off: int = 0,
    ident: int = 0x1111,
    opts: bytes = b"",
) -> bytes:
    ihl = 5 + len(opts) // 4
    h = bytearray(
        struct.pack(
            "!BBHHHBBHII", 0x40 | ihl, tos, ihl * 4 + len(payload), ident, frag_off, ttl, proto, 0, src, dst
        )
    )
    h += opts
    struct.pack_into("!H", h, 10, rfc1071(bytes(h)))
    return bytes(h) + payload


def icmp_msg(icmp_type: int, code: int, rest: bytes, data: bytes = b"") -> bytes:
    m = bytearray(struct.pack("!BBH", icmp_type, code, 0) + rest + data)
    struct.pack_into("!H", m, 2, rfc1071(bytes(m)))
    return bytes(m)


def udp(sport: int = 5000, dport: int = 9, data: bytes = b"data") -> bytes:
    return struct.pack("!HHHH", sport, dport, 8 + len(data), 0) + data


LOCAL_LO = Dst(LO, LOOPBACK, 65536, RTN_LOCAL, RTCF_LOCAL)
LOCAL_ETH0 = Dst(ETH0, ALICE, 0, RTN_LOCAL, RTCF_LOCAL)


def received(
    packet: bytes,
    *,
    dev: int = ETH0,
    dst: Dst | None = LOCAL_ETH0,
    pkt_type: int = PACKET_HOST,
    at: str = "transport",
    opt: IpOptions | None = None,
    spec_dst: int = 0,
) -> SkBuff:
    """A packet as the IP layer holds it after ip_rcv: network header at the IP header,
    data at the transport header (or at the network header), IPCB in cb."""
    headroom = 16
    skb = SkBuff(bytearray(headroom) + bytearray(packet))
    skb.data = skb.network_header = headroom
    skb.tail = headroom + len(packet)
    skb.len = len(packet)
    ihl = (packet[0] & 0x0F) * 4
    skb.transport_header = headroom + ihl
    if at == "transport":
        skb.pull(ihl)
    skb.dst = dst
    skb.pkt_type = pkt_type
    skb.dev_ifindex = skb.skb_iif = dev
    set_ipcb(skb.cb, InetSkbParm(iif=dev, opt=opt or IpOptions(), spec_dst=spec_dst))
    return skb


@dataclass
class Host:
    """A host with lo 127.0.0.1/8, eth0 10.0.0.1/24 and eth1 192.168.1.1/24."""

    sysctl: Sysctl
    mib: SnmpMib
    drops: DropStats
    router: Router
    icmp: Icmp
    sent: list[SkBuff] = field(default_factory=list)
    errors: list[tuple[SkBuff, int, int, int]] = field(default_factory=list)
    clock: list[int] = field(default_factory=lambda: [START_NS])
    credits: list[int] = field(default_factory=lambda: [1])

    def advance_ms(self, ms: int) -> None:
        self.clock[0] += ms * 1_000_000

    def icmp_counters(self) -> dict[str, int]:
        """The non-zero Icmp counters of its own (not the per-type views of IcmpMsg),
        then the non-zero IcmpMsg ones."""
        own = {k: v for k, v in self.mib.icmp.as_dict().items() if v and k in ICMP_OWN}
        return {**own, **self.mib.icmpmsg.as_dict()}


def make_host(router_cls: type[Router] = Router, **sysctl: int) -> Host:
    overrides = {f"net.ipv4.{k}": v for k, v in sysctl.items()}
    fib = Fib()
    fib.add_ifaddr(InIfaddr(LO, "lo", LOOPBACK, 8), loopback=True)
    fib.add_ifaddr(InIfaddr(ETH0, "eth0", ALICE, 24), loopback=False)
    fib.add_ifaddr(InIfaddr(ETH1, "eth1", CAROL, 24), loopback=False)
    mib = SnmpMib()
    router = router_cls(fib, mib)
    router.mtus.update({LO: 65536, ETH0: 1500, ETH1: 1500})
    host = Host(Sysctl(overrides), mib, DropStats(), router, icmp=None)  # type: ignore[arg-type]
    host.icmp = Icmp(
        host.sysctl,
        mib,
        host.drops,
        router,
        host.sent.append,
        lambda skb, t, c, i: host.errors.append((skb, t, c, i)),
        clock_ns=lambda: host.clock[0],
        realtime_ns=lambda: REALTIME_NS,
        rand_below=lambda n: host.credits[0],
    )
    return host


def wire(skb: SkBuff, ident: int) -> bytes:
    """What ip_send_skb puts on the wire for an skb Icmp handed it: the header from the
    cork (the kernel's IP ID given), the options built into it."""
    cork = skb.cork
    assert cork is not None and skb.dst is not None
    opt = ip_options_from_cork(skb.cb, cork.options)
    repr_ = Ipv4Repr(
        src=cork.saddr,
        dst=opt.faddr if opt.srr else cork.daddr,
        protocol=cork.protocol,
        payload_len=skb.len,
        ttl=cork.ttl,
        tos=cork.tos,
        ident=ident,
        dont_frag=False,
        options=cork.options,
    )
    h = bytearray(repr_.header_len)
    repr_.emit(h)
    if opt.optlen:
        ip_options_build(h, opt, cork.daddr, cork.saddr, 0)
        h[10:12] = b"\0\0"
        struct.pack_into("!H", h, 10, rfc1071(bytes(h)))
    return bytes(h) + skb.payload()


# __icmp_send(): what goes out.


def test_port_unreachable_on_lo_is_the_kernels() -> None:
    host = make_host()
    skb = received(KERNEL_UDP, dev=LO, dst=LOCAL_LO)
    host.icmp.icmp_send(skb, ICMP_DEST_UNREACH, ICMP_PORT_UNREACH, 0)
    (out,) = host.sent
    assert wire(out, 0x5889) == KERNEL_PORT_UNREACH
    cork = out.cork
    assert cork is not None
    assert (cork.saddr, cork.daddr, cork.protocol, cork.ttl, cork.tos, cork.pmtudisc, cork.options) == (
        LOOPBACK,
        LOOPBACK,
        1,
        64,
        0xC0,
        0,
        b"",
    )
    assert out.dst is not None and out.dst.ifindex == LO
    assert out.transport_header == out.data
    assert host.icmp_counters() == {"OutMsgs": 1, "OutType3": 1}
    assert host.mib.icmp.get("OutDestUnreachs") == 1


def test_protocol_unreachable_quotes_from_the_network_header() -> None:
    host = make_host()
    pkt = ip_packet(BOB, ALICE, 99, bytes(range(40)))
    host.icmp.icmp_send(received(pkt), ICMP_DEST_UNREACH, ICMP_PROT_UNREACH, 0)
    (out,) = host.sent
    assert out.payload() == icmp_msg(3, 2, bytes(4), pkt)
    assert out.cork is not None and (out.cork.saddr, out.cork.daddr) == (ALICE, BOB)


def test_time_exceeded_for_a_forwarded_packet() -> None:
    host = make_host()
    pkt = ip_packet(BOB, FAR, 17, udp(data=bytes(100)), tos=0x1F, ttl=1)
    fwd = Dst(ETH1, FAR, 1500, RTN_UNICAST, 0)
    host.icmp.icmp_send(received(pkt, dst=fwd, at="network"), ICMP_TIME_EXCEEDED, ICMP_EXC_TTL, 0)
    (out,) = host.sent
    assert out.payload() == icmp_msg(11, 0, bytes(4), pkt)
    cork = out.cork
    assert cork is not None
    # Not for us: the reply's route picks the source; errors get TOS bits and
    # precedence internetwork control, not the ECN bits.
    assert (cork.saddr, cork.daddr, cork.tos) == (ALICE, BOB, 0xDE)
    assert host.mib.icmp.get("OutTimeExcds") == 1


def test_errors_use_inbound_ifaddr() -> None:
    pkt = ip_packet(BOB, FAR, 17, udp())
    fwd = Dst(ETH0, FAR, 1500, RTN_UNICAST, 0)
    for setting, source in ((0, ALICE), (1, CAROL)):
        host = make_host(icmp_errors_use_inbound_ifaddr=setting)
        # It came in on eth1, though the way back to BOB is eth0.
        host.icmp.icmp_send(received(pkt, dev=ETH1, dst=fwd), ICMP_TIME_EXCEEDED, ICMP_EXC_TTL, 0)
        assert host.sent[0].cork is not None and host.sent[0].cork.saddr == source


def test_frag_needed_carries_the_mtu() -> None:
    host = make_host()
    pkt = ip_packet(BOB, FAR, 17, udp(data=bytes(1472)), frag_off=0x4000)
    fwd = Dst(ETH1, FAR, 1400, RTN_UNICAST, 0)
    host.icmp.icmp_send(received(pkt, dst=fwd, at="network"), ICMP_DEST_UNREACH, ICMP_FRAG_NEEDED, 1400)
    (out,) = host.sent
    # RFC 1812 4.3.2.3: 576 bytes at most, 548 of them the quoted packet.
    assert out.payload() == icmp_msg(3, 4, bytes([0, 0, 0x05, 0x78]), pkt[:548])
    assert out.len == 556


def test_parameter_problem_points_at_the_octet() -> None:
    host = make_host()
    pkt = ip_packet(BOB, ALICE, 17, udp(), opts=bytes([7, 7, 3, 0, 0, 0, 0, 0]))
    skb = received(pkt)
    opt = IpOptions(optlen=8)
    hdr = memoryview(skb.head)[skb.network_header : skb.network_header + 28]
    with pytest.raises(OptionsError) as e:
        ip_options_compile(hdr, opt, local_addr=ALICE)
    host.icmp.icmp_send(skb, ICMP_PARAMETERPROB, 0, e.value.info)
    (out,) = host.sent
    assert out.payload() == icmp_msg(12, 0, bytes([22, 0, 0, 0]), pkt)
    assert host.mib.icmp.get("OutParmProbs") == 1


def test_parameter_problem_about_cipso_echoes_it_as_the_kernel_did() -> None:
    # kernel: a UDP packet with CIPSO (DOI 1, none configured) sent to 127.0.0.1 got a
    # parameter problem pointing at the DOI, with the CIPSO option echoed.
    pkt = bytes.fromhex("47000028111100004011e3a87f0000017f000001860800000001000013880009000c000064617461")
    kernel = bytes.fromhex("47c0004c35d400004001be117f0000017f00000186080000000100000c00f19f16000000") + pkt
    host = make_host()
    skb = received(pkt, dev=LO, dst=LOCAL_LO, at="network")
    opt = IpOptions(optlen=8)
    with pytest.raises(OptionsError) as e:
        ip_options_compile(memoryview(skb.head)[16:44], opt, local_addr=LOOPBACK)
    # ip_options_compile() compiles into IPCB(skb)->opt: icmp_send sees what it got to.
    set_ipcb(skb.cb, InetSkbParm(iif=LO, opt=opt))
    host.icmp.icmp_send(skb, ICMP_PARAMETERPROB, 0, e.value.info)
    assert wire(host.sent[0], 0x35D4) == kernel


def test_error_echoes_the_received_timestamp_as_the_kernel_did() -> None:
    # kernel: a full timestamp with overflow 14 is taken (overflow becomes 15, the
    # checksum is not redone) and the port unreachable carries it back.
    pkt = bytearray.fromhex(
        "470000281111000040111bca7f0000017f000001440809e00000000013880009000c000064617461"
    )
    kernel = bytes.fromhex(
        "47c0004c36b300004001f5437f0000017f000001440809f0000000000303108d00000000"
        "470000281111000040111bca7f0000017f000001440809f00000000013880009000c000064617461"
    )
    opt = IpOptions(optlen=8)
    ip_options_compile(memoryview(pkt)[:28], opt, local_addr=LOOPBACK)
    host = make_host()
    host.icmp.icmp_send(received(bytes(pkt), dev=LO, dst=LOCAL_LO, opt=opt), 3, 3, 0)
    assert wire(host.sent[0], 0x36B3) == kernel


def test_error_reverses_a_source_route() -> None:
    host = make_host()
    opts = bytes([131, 11, 12, 10, 0, 0, 8, 10, 0, 0, 1, 0])
    pkt = bytearray(ip_packet(FAR, ALICE, 17, udp(), opts=opts))
    opt = IpOptions(optlen=12)
    ip_options_compile(memoryview(pkt)[:32], opt, local_addr=ALICE)
    host.icmp.icmp_send(received(bytes(pkt), opt=opt), ICMP_DEST_UNREACH, ICMP_PORT_UNREACH, 0)
    (out,) = host.sent
    cork = out.cork
    assert cork is not None and out.dst is not None
    # Routed to the first hop back (10.0.0.1 is us: the last recorded hop), the final
    # destination in the cork; ip_options_build() writes it into the last slot.
    assert out.dst.nexthop == ALICE and cork.daddr == FAR
    sent = wire(out, 1)
    assert sent[16:20] == ALICE.to_bytes(4, "big")
    assert sent[20:32] == bytes([131, 11, 4, 10, 0, 0, 8]) + FAR.to_bytes(4, "big") + b"\0"
    # The quote is smaller by the options: 576 - 20 - 12 - 8.
    assert len(out.payload()) == 8 + len(pkt)


def test_quote_shrinks_by_the_reply_options() -> None:
    host = make_host()
    opts = bytes([7, 11, 4]) + bytes(9)
    pkt = bytearray(ip_packet(BOB, ALICE, 17, udp(data=bytes(1000)), opts=opts))
    opt = IpOptions(optlen=12)
    ip_options_compile(memoryview(pkt)[:32], opt, local_addr=ALICE)
    host.icmp.icmp_send(received(bytes(pkt), opt=opt), 3, 3, 0)
    (out,) = host.sent
    assert out.len == 8 + 576 - 20 - 12 - 8
    assert out.payload()[8:] == bytes(pkt[: 576 - 20 - 12 - 8])


class NoSourceRouter(Router):
    def _output(
        self, daddr: int, saddr: int = 0, oif: int = 0, tos: int = 0, mark: int = 0
    ) -> tuple[Dst, int]:
        dst, _ = super()._output(daddr, saddr, oif, tos, mark)
        return dst, 0


def test_no_source_address_falls_back_to_inaddr_dummy() -> None:
    host = make_host(router_cls=NoSourceRouter)
    fwd = Dst(ETH1, FAR, 1500, RTN_UNICAST, 0)
    host.icmp.icmp_send(received(ip_packet(BOB, FAR, 17, udp()), dst=fwd), 11, 0, 0)
    assert host.sent[0].cork is not None and host.sent[0].cork.saddr == INADDR_DUMMY


# __icmp_send(): what is not sent.


def suppressed(host: Host, skb: SkBuff, icmp_type: int = 3, code: int = 3) -> bool:
    before = dict(host.mib.icmp.as_dict())
    host.icmp.icmp_send(skb, icmp_type, code, 0)
    assert host.mib.icmp.as_dict() == before or host.sent
    return not host.sent


@pytest.mark.parametrize("pkt_type", [PACKET_BROADCAST, PACKET_MULTICAST, PACKET_OTHERHOST])
def test_no_error_about_link_layer_broadcast_multicast_or_otherhost(pkt_type: int) -> None:
    host = make_host()
    assert suppressed(host, received(ip_packet(BOB, ALICE, 17, udp()), pkt_type=pkt_type))


@pytest.mark.parametrize(
    "dst",
    [
        Dst(ETH0, A("10.0.0.255"), 0, RTN_BROADCAST, RTCF_BROADCAST | RTCF_LOCAL),
        Dst(ETH0, A("224.0.0.9"), 0, 5, RTCF_MULTICAST | RTCF_LOCAL),
        Dst(ETH0, A("10.0.0.255"), 0, RTN_BROADCAST, RTCF_LOCAL),
        None,
    ],
)
def test_no_error_about_broadcast_or_multicast_routes_or_without_one(dst: Dst | None) -> None:
    host = make_host()
    assert suppressed(host, received(ip_packet(BOB, A("10.0.0.255"), 17, udp()), dst=dst))


def test_only_the_first_fragment_gets_an_error() -> None:
    host = make_host()
    assert suppressed(host, received(ip_packet(BOB, ALICE, 17, udp(), frag_off=0x2000 | 1)))
    assert not suppressed(host, received(ip_packet(BOB, ALICE, 17, udp(), frag_off=0x2000)))


def test_no_error_about_an_icmp_error_or_unknown_type() -> None:
    host = make_host()
    for inner in (3, 11, 5, 1, 19, 42):
        pkt = ip_packet(BOB, ALICE, 1, icmp_msg(inner, 0, bytes(4)))
        assert suppressed(host, received(pkt)), inner
    # The inner type must be there to be judged.
    truncated = ip_packet(BOB, ALICE, 1, b"")
    assert suppressed(host, received(truncated, at="network"))
    # Requests are not errors: an error about one is sent, and a reply about anything.
    assert not suppressed(host, received(ip_packet(BOB, ALICE, 1, icmp_msg(8, 0, bytes(4)))))
    host.icmp.icmp_send(received(ip_packet(BOB, ALICE, 1, icmp_msg(3, 0, bytes(4)))), ICMP_ECHOREPLY, 0, 0)
    assert len(host.sent) == 2


def test_no_error_without_a_header_in_the_buffer() -> None:
    host = make_host()
    skb = received(ip_packet(BOB, ALICE, 17, udp()))
    skb.network_header = HEADER_UNSET
    assert suppressed(host, skb)
    skb = received(ip_packet(BOB, ALICE, 17, udp()), at="network")
    skb.tail = skb.network_header + 19
    assert suppressed(host, skb)


def test_no_error_without_a_route_back_or_room_to_quote() -> None:
    host = make_host()
    assert suppressed(host, received(ip_packet(FAR, ALICE, 17, udp())))
    host.router.mtus[ETH0] = 48
    assert suppressed(host, received(ip_packet(BOB, ALICE, 17, udp())))
    host.router.mtus[ETH0] = 49
    assert not suppressed(host, received(ip_packet(BOB, ALICE, 17, udp())))
    assert host.sent[0].len == 8 + 21


def test_no_error_when_the_options_cannot_be_echoed() -> None:
    host = make_host()
    pkt = bytearray(ip_packet(BOB, ALICE, 17, udp(), opts=bytes([7, 14, 8]) + bytes(13)))
    opt = IpOptions(optlen=16)
    ip_options_compile(memoryview(pkt)[:36], opt, local_addr=ALICE)
    assert suppressed(host, received(bytes(pkt), opt=opt))
    assert host.icmp_counters() == {}


def test_no_error_when_ipcb_claims_more_options_than_the_header_has() -> None:
    host = make_host()
    pkt = ip_packet(BOB, ALICE, 17, udp(data=bytes([7, 7, 8]) + bytes(5)))
    assert suppressed(host, received(pkt, opt=IpOptions(optlen=8, rr=20, rr_needaddr=True)))


def test_reply_too_big_for_ip_is_an_out_error() -> None:
    # ip_append_data(): EMSGSIZE past 64 KiB with the header; icmp_push_reply counts
    # OutErrors. (A real request cannot be that big; the skb here is.)
    host = make_host()
    ping = icmp_msg(ICMP_ECHO, 0, bytes(4), bytes(65_508))
    host.icmp.icmp_rcv(received(ip_packet(BOB, ALICE, 1, b"") + ping))
    assert not host.sent
    assert host.icmp_counters() == {"InMsgs": 1, "OutErrors": 1, "InType8": 1}


def test_icmp_send_refuses_types_the_kernel_never_sends() -> None:
    host = make_host()
    with pytest.raises(ValueError):
        host.icmp.icmp_send(received(ip_packet(BOB, ALICE, 17, udp())), 19, 0, 0)


# Rate limits.


def send_from(host: Host, src: int, icmp_type: int = 3, code: int = 3, dev: int = ETH0) -> bool:
    n = len(host.sent)
    dst = LOCAL_LO if dev == LO else LOCAL_ETH0
    host.icmp.icmp_send(received(ip_packet(src, ALICE, 17, udp()), dev=dev, dst=dst), icmp_type, code, 0)
    return len(host.sent) > n


def test_global_limit_burst_then_refill() -> None:
    host = make_host()
    sources = [A(f"10.0.0.{i}") for i in range(10, 100)]
    # 50 credits (icmp_msgs_burst), one spent per message.
    assert [send_from(host, s) for s in sources[:51]] == [True] * 50 + [False]
    assert host.mib.icmp.get("OutRateLimitGlobal") == 1
    # No refill within HZ/50.
    host.advance_ms(19)
    assert not send_from(host, sources[51])
    # 20 ms is 20 credits at 1000/s.
    host.advance_ms(1)
    assert [send_from(host, s) for s in sources[52:73]] == [True] * 20 + [False]
    assert host.icmp_counters() == {"OutMsgs": 70, "OutType3": 70, "OutRateLimitGlobal": 3}


def test_global_credit_is_spent_at_random() -> None:
    host = make_host()
    host.credits[0] = 2
    sources = [A(f"10.0.0.{i}") for i in range(10, 50)]
    assert sum(send_from(host, s) for s in sources) == 25
    host = make_host()
    host.credits[0] = 0
    assert sum(send_from(host, s) for s in sources) == 40


def test_global_limit_spares_lo_frag_needed_and_unmasked_types() -> None:
    host = make_host(icmp_msgs_burst=1, icmp_ratelimit=0)
    assert send_from(host, BOB)
    assert not send_from(host, BOB)
    assert send_from(host, LOOPBACK, dev=LO)
    assert send_from(host, BOB, ICMP_DEST_UNREACH, ICMP_FRAG_NEEDED)
    # Parameter problem is in the default mask (0x1818); redirect is not.
    assert not send_from(host, BOB, ICMP_PARAMETERPROB, 0)
    assert send_from(host, BOB, ICMP_REDIRECT, 1)
    assert host.mib.icmp.get("OutRateLimitGlobal") == 2


def test_per_destination_limit_six_then_one_a_second() -> None:
    host = make_host()
    assert [send_from(host, BOB) for _ in range(7)] == [True] * 6 + [False]
    assert host.mib.icmp.get("OutRateLimitHost") == 1
    # Another destination has its own bucket.
    assert send_from(host, A("10.0.0.8"))
    host.advance_ms(999)
    assert not send_from(host, BOB)
    host.advance_ms(1)
    assert send_from(host, BOB)
    assert not send_from(host, BOB)
    assert host.icmp_counters() == {"OutMsgs": 8, "OutType3": 8, "OutRateLimitHost": 3}


def test_per_destination_limit_settings() -> None:
    host = make_host(icmp_ratelimit=0)
    assert all(send_from(host, BOB) for _ in range(20))
    host = make_host(icmp_ratemask=0)
    assert all(send_from(host, BOB) for _ in range(60))
    # A reply routed through lo is not limited per destination.
    host = make_host()
    assert all(send_from(host, ALICE) for _ in range(20))
    assert host.mib.icmp.get("OutRateLimitHost") == 0


# icmp_rcv().


def icmp_in(
    message: bytes, *, src: int = BOB, dst: int = ALICE, route: Dst = LOCAL_ETH0, **kw: object
) -> SkBuff:
    return received(ip_packet(src, dst, 1, message, **kw), dst=route)  # type: ignore[arg-type]


def test_echo_reply_on_lo_is_the_kernels() -> None:
    # kernel: an echo request with code 5 and TOS 0x2b to 127.0.0.1, and its reply.
    request = bytes.fromhex("452b002434fc4000400107b07f0000017f00000108055430123400016162636465666768")
    reply = bytes.fromhex("452b002434fd0000400147af7f0000017f00000100055c30123400016162636465666768")
    host = make_host()
    host.icmp.icmp_rcv(received(request, dev=LO, dst=LOCAL_LO))
    (out,) = host.sent
    assert wire(out, 0x34FD) == reply
    assert host.icmp_counters() == {"InMsgs": 1, "InType8": 1, "OutMsgs": 1, "OutType0": 1}
    assert host.drops.total() == 0


def test_echo_reply_with_record_route_is_the_kernels() -> None:
    # kernel: IP_OPTIONS record route on a raw ICMP socket, ping 127.0.0.1.
    request = bytearray.fromhex(
        "4f000047353b40004001ecd27f0000017f0000010727087f000001" + "00" * 33 + "0800c2624321000278797a"
    )
    reply = bytes.fromhex(
        "4f000047353c0000400121d47f0000017f0000010727107f0000017f0000017f000001"
        + "00" * 25
        + "0000ca624321000278797a"
    )
    opt = IpOptions(optlen=40)
    ip_options_compile(memoryview(request)[:60], opt, local_addr=LOOPBACK)
    host = make_host()
    host.icmp.icmp_rcv(received(bytes(request), dev=LO, dst=LOCAL_LO, opt=opt))
    assert wire(host.sent[0], 0x353C) == reply


def test_echo_ignored_and_broadcast_echo() -> None:
    ping = icmp_msg(ICMP_ECHO, 0, bytes([0, 1, 0, 1]), b"abc")
    host = make_host(icmp_echo_ignore_all=1)
    host.icmp.icmp_rcv(icmp_in(ping))
    assert not host.sent and host.drops.total() == 0
    bcast = Dst(ETH0, A("10.0.0.255"), 0, RTN_BROADCAST, RTCF_BROADCAST | RTCF_LOCAL)
    host = make_host()
    host.icmp.icmp_rcv(icmp_in(ping, dst=A("10.0.0.255"), route=bcast))
    assert not host.sent
    assert host.icmp_counters() == {"InMsgs": 1, "InErrors": 1, "InType8": 1}
    assert host.drops.get(SkbDropReason.INVALID_PROTO, "icmp_rcv") == 1
    host = make_host(icmp_echo_ignore_broadcasts=0)
    host.icmp.icmp_rcv(icmp_in(ping, dst=A("10.0.0.255"), route=bcast))
    # Answered from the address fib_compute_spec_dst() picks (here: none in IPCB, so
    # the receiving device's).
    assert host.sent[0].cork is not None and host.sent[0].cork.saddr == ALICE


def test_echo_reply_source_is_spec_dst() -> None:
    host = make_host()
    ping = icmp_msg(ICMP_ECHO, 0, bytes([0, 1, 0, 1]))
    host.icmp.icmp_rcv(received(ip_packet(BOB, A("10.0.0.255"), 1, ping), spec_dst=ALICE))
    assert host.sent[0].cork is not None and host.sent[0].cork.saddr == ALICE


def test_timestamp_reply() -> None:
    host = make_host()
    request = icmp_msg(ICMP_TIMESTAMP, 7, bytes([0x12, 0x34, 0, 9]), bytes([0, 0, 0, 42]) + bytes(8))
    host.icmp.icmp_rcv(icmp_in(request))
    (out,) = host.sent
    now = 3_600_123
    assert out.payload() == icmp_msg(14, 0, bytes([0x12, 0x34, 0, 9]), struct.pack("!III", 42, now, now))
    assert host.icmp_counters() == {"InMsgs": 1, "InType13": 1, "OutMsgs": 1, "OutType14": 1}
    host = make_host()
    host.icmp.icmp_rcv(icmp_in(icmp_msg(ICMP_TIMESTAMP, 0, bytes(4), b"\0\0")))
    assert not host.sent and host.drops.get(SkbDropReason.PKT_TOO_SMALL, "icmp_rcv") == 1
    assert host.mib.icmp.get("InErrors") == 1


def test_checksum_errors() -> None:
    host = make_host()
    bad = bytearray(icmp_msg(ICMP_ECHO, 0, bytes(4)))
    bad[2] ^= 1
    host.icmp.icmp_rcv(icmp_in(bytes(bad)))
    assert host.icmp_counters() == {"InMsgs": 1, "InErrors": 1, "InCsumErrors": 1}
    assert host.drops.by_reason() == {"ICMP_CSUM": 1}
    # Checked already (lo, a device's offload): not looked at again.
    skb = icmp_in(bytes(bad))
    skb.ip_summed = CHECKSUM_UNNECESSARY
    host.icmp.icmp_rcv(skb)
    assert len(host.sent) == 1


def test_short_unknown_and_echo_reply_messages() -> None:
    host = make_host()
    host.icmp.icmp_rcv(icmp_in(struct.pack("!BBH", 8, 0, rfc1071(bytes([8, 0, 0, 0])))))
    assert host.drops.get(SkbDropReason.NOT_SPECIFIED, "icmp_rcv") == 1
    host.icmp.icmp_rcv(icmp_in(icmp_msg(30, 0, bytes(4))))
    assert host.drops.get(SkbDropReason.UNHANDLED_PROTO, "icmp_rcv") == 1
    host.icmp.icmp_rcv(icmp_in(icmp_msg(0, 0, bytes(4))))
    assert host.drops.get(SkbDropReason.NO_SOCKET, "ping_rcv") == 1
    for discarded in (15, 16, 17, 18, 14, 1, 42):
        host.icmp.icmp_rcv(icmp_in(icmp_msg(discarded, 0, bytes(4))))
    assert host.icmp_counters() == {
        "InMsgs": 10,
        "InErrors": 2,
        "InType0": 1,
        "InType1": 1,
        "InType14": 1,
        "InType15": 1,
        "InType16": 1,
        "InType17": 1,
        "InType18": 1,
        "InType30": 1,
        "InType42": 1,
    }
    assert host.drops.total() == 3 and not host.sent and not host.errors


def test_errors_to_a_broadcast_route_are_refused() -> None:
    host = make_host()
    bcast = Dst(ETH0, A("10.0.0.255"), 0, RTN_BROADCAST, RTCF_BROADCAST | RTCF_LOCAL)
    err = icmp_msg(3, 3, bytes(4), ip_packet(ALICE, BOB, 17, udp()))
    host.icmp.icmp_rcv(icmp_in(err, dst=A("10.0.0.255"), route=bcast))
    assert not host.errors and host.drops.get(SkbDropReason.INVALID_PROTO, "icmp_rcv") == 1


# icmp_unreach() → deliver_err.


def test_port_unreachable_delivered_as_the_kernel_sent_it() -> None:
    host = make_host()
    skb = received(KERNEL_PORT_UNREACH, dev=LO, dst=LOCAL_LO)
    host.icmp.icmp_rcv(skb)
    ((got, t, c, info),) = host.errors
    assert (t, c, info) == (3, 3, 0)
    assert got.payload() == KERNEL_UDP
    assert got.head[got.transport_header] == 3 and got.network_header == 16
    assert host.icmp_counters() == {"InMsgs": 1, "InType3": 1}


def unreach(
    host: Host, icmp_type: int, code: int, rest: bytes = bytes(4), inner: bytes | None = None
) -> None:
    quoted = ip_packet(ALICE, BOB, 17, udp()) if inner is None else inner
    host.icmp.icmp_rcv(icmp_in(icmp_msg(icmp_type, code, rest, quoted)))


@pytest.mark.parametrize(("setting", "info"), [(0, 1400), (1, 0), (2, None), (3, None)])
def test_frag_needed_info_follows_ip_no_pmtu_disc(setting: int, info: int | None) -> None:
    host = make_host(ip_no_pmtu_disc=setting)
    unreach(host, 3, 4, bytes([0, 0, 0x05, 0x78]))
    assert [e[1:] for e in host.errors] == ([] if info is None else [(3, 4, info)])
    assert host.drops.total() == 0


def test_frag_needed_mode_3_trusts_tcp() -> None:
    host = make_host(ip_no_pmtu_disc=3)
    unreach(host, 3, 4, bytes([0, 0, 0x05, 0x78]), inner=ip_packet(ALICE, BOB, 6, bytes(20)))
    assert [e[1:] for e in host.errors] == [(3, 4, 1400)]


def test_error_infos_and_the_ones_not_delivered() -> None:
    host = make_host()
    unreach(host, ICMP_PARAMETERPROB, 0, bytes([22, 0, 0, 0]))
    unreach(host, ICMP_TIME_EXCEEDED, ICMP_EXC_TTL)
    unreach(host, ICMP_TIME_EXCEEDED, ICMP_EXC_FRAGTIME)
    unreach(host, ICMP_SOURCE_QUENCH, 0)
    unreach(host, 3, 15)
    unreach(host, 3, 16)
    unreach(host, ICMP_REDIRECT, 1, bytes([10, 0, 0, 254]))
    assert [e[1:] for e in host.errors] == [
        (12, 0, 22),
        (11, 0, 0),
        (4, 0, 0),
        (3, 15, 0),
        (5, 1, 0x0A0000FE),
    ]
    assert host.mib.icmp.get("InTimeExcds") == 2 and host.mib.icmp.get("InRedirects") == 1
    assert host.drops.total() == 0


def test_malformed_quotes() -> None:
    host = make_host()
    unreach(host, 3, 3, inner=bytes(19))
    assert host.drops.get(SkbDropReason.NOT_SPECIFIED, "icmp_rcv") == 1
    unreach(host, 3, 3, inner=bytes([0x44]) + bytes(27))
    assert host.drops.get(SkbDropReason.IP_INHDR, "icmp_rcv") == 1
    # Header there, 8 bytes of UDP not: InErrors, but consumed.
    unreach(host, 3, 3, inner=ip_packet(ALICE, BOB, 17, bytes(7)))
    unreach(host, ICMP_REDIRECT, 0, bytes(4), inner=bytes(12))
    assert host.drops.get(SkbDropReason.PKT_TOO_SMALL, "icmp_rcv") == 1
    assert host.mib.icmp.get("InErrors") == 4 and host.drops.total() == 3 and not host.errors


def test_bogus_error_responses_about_broadcasts() -> None:
    inner = ip_packet(ALICE, A("10.0.0.255"), 17, udp())
    host = make_host()
    unreach(host, 3, 3, inner=inner)
    assert len(host.errors) == 1
    host = make_host(icmp_ignore_bogus_error_responses=0)
    unreach(host, 3, 3, inner=inner)
    unreach(host, 3, 3, inner=ip_packet(ALICE, BOB, 17, udp()))
    assert len(host.errors) == 1 and host.drops.total() == 0


def test_err_convert_table() -> None:
    assert ICMP_ERR_CONVERT[ICMP_PORT_UNREACH] == (111, True)
    assert ICMP_ERR_CONVERT[ICMP_FRAG_NEEDED] == (90, False)
    assert len(ICMP_ERR_CONVERT) == 16


def test_constants_are_the_kernels() -> None:
    got: Callable[[str], int] = lambda name: getattr(__import__("services.ip.icmp", fromlist=[name]), name)  # noqa: E731
    assert [got(n) for n in ("ICMP_EXT_ECHO", "ICMP_EXT_ECHOREPLY", "NR_ICMP_TYPES", "NR_ICMP_UNREACH")] == [
        42,
        43,
        18,
        15,
    ]
    assert ICMP_EXC_FRAGTIME == 1
