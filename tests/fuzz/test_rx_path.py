"""Hostile frames up the whole receive path, in-process as tests/services drive it: the
NIC (RX ring, NAPI poll, GRO, eth_type_trans, __netif_receive_skb_core) → IpLayer.ip_rcv
(ip_rcv_core, routing, options, ip_local_deliver, defrag, ICMP) → UdpLayer.udp_rcv
(__udp4_lib_rcv, the socket queue) → udp_recvmsg, on a host with alice's addresses
(eth0 10.0.0.1/24, lo) and a socket bound to port 9000.

Frames are valid UDP datagrams, the same with a header field set to a hostile value
(version and ihl, tot_len, the checksums, options, fragment bits, TTL, protocol,
addresses, UDP length), truncated or padded, or random bytes. The property, one frame
at a time: it ends in exactly one of
  - delivery: udp_recvmsg returns it (and a valid frame's payload and sender exactly),
  - a counted drop: one more in the drop tally of the NIC, IP or UDP layer (each such
    drop point also counts the kernel's MIB counter: IpInHdrErrors, IpInTruncatedPkts,
    IpExtInCsumErrors, UdpInErrors, UdpInCsumErrors, ...),
  - a fragment held for reassembly, which ip_expire() then drops and counts,
  - an ICMP or ARP message consumed by its handler (IcmpInMsgs counts the first),
and never in an exception. Several frames in one NAPI poll let GRO merge: every valid
datagram among hostile ones still arrives once, in order, byte for byte."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import pytest
from hypothesis import event, given
from hypothesis import strategies as st

from services.core import errno
from services.core.checksum import ip_fast_csum
from services.core.snmp import to_flat_dict
from services.core.socket_uapi import MSG_DONTWAIT
from services.core.sysctl import Sysctl
from services.core.wire.ethernet import ETH_HLEN, ETH_P_ARP, ETH_P_IP
from services.core.wire.ipv4 import IPPROTO_ICMP, ip_from_str
from services.ip.fib import InIfaddr
from services.ip.layer import IpLayer
from services.nic.layer import NicLayer
from services.udp.errors import IcmpError
from services.udp.layer import UdpLayer
from services.udp.sock import UdpSock
from tests.fuzz import fuzz_settings
from tests.services.nicframes import ALICE, ALICE_MAC, ETH0, Clock, eth_frame, new_layer, udp_packet

PORT = 9000
LOOPBACK = ip_from_str("127.0.0.1")
# Sources a frame may come from: neighbours on eth0's subnet.
PEERS = st.integers(2, 254).map(lambda i: ip_from_str(f"10.0.0.{i}"))
FAR_FUTURE_NS = 10**18


async def _no_route(daddr: int, saddr: int, oif: int, **kw: object) -> tuple[object, int, int]:
    raise errno.kernel_error(errno.ENETUNREACH)


class Host:
    """alice's NIC, IP and UDP layers wired as their services wire them, one socket."""

    def __init__(self) -> None:
        self.clock = Clock()
        self.nic: NicLayer = new_layer(self.clock)
        self.ip = IpLayer("alice", Sysctl())
        self.ip.router.set_devices([(1, "lo", 65536), (ETH0, "eth0", 1500)])
        self.ip.add_address(InIfaddr(1, "lo", LOOPBACK, 8))
        self.ip.add_address(InIfaddr(ETH0, "eth0", ALICE, 24))
        self.udp = UdpLayer("alice", Sysctl(), _no_route)  # type: ignore[arg-type]
        self.sock: UdpSock = self.udp.create(17, 1, 3)

    async def bind(self) -> None:
        await self.udp.bind(self.sock, 0, PORT)

    def drops(self) -> int:
        return self.nic.drops.total() + self.ip.drops.total() + self.udp.drops.total()

    def drop_points(self) -> list[tuple[str, str]]:
        """(reason, location) of every drop counted, once per drop."""
        return [
            (reason.name, location)
            for layer in (self.nic, self.ip, self.udp)
            for (reason, location), n in layer.drops.items()
            for _ in range(n)
        ]

    def counters(self) -> dict[str, int]:
        """The non-zero counters: /proc/net/snmp's (nstat names) of IP and UDP, and eth0's
        statistics (ethtool names)."""
        dev = self.nic.devices[ETH0]
        # Each layer keeps the groups it counts in (an SnmpMib has them all).
        out = {k: v for k, v in to_flat_dict(self.ip.mib).items() if k.startswith(("Ip", "Icmp"))}
        out.update((k, v) for k, v in to_flat_dict(self.udp.mib).items() if k.startswith("Udp"))
        out.update(rx_errors=dev.stats.rx_errors, rx_dropped=dev.stats.rx_dropped)
        out["rx_mac_filtered"] = dev.driver.rx_mac_filtered
        return {k: v for k, v in out.items() if v}

    def rx(self, frames: list[bytes]) -> None:
        """The frames land in eth0's ring in one go; then the softirq runs until done,
        and what IP hands on goes to UDP as the services ship it."""
        nic, ip = self.nic, self.ip
        nic.rx_frames(nic.devices[ETH0], frames)
        for _ in range(len(frames) + 2):
            up, more = nic.poll()
            for skb in up:
                ip.ip_rcv(skb)
            self._up()
            if not more:
                break
        else:
            raise AssertionError("NAPI still has work after every frame was polled")

    def expire(self) -> None:
        """Time passes: every reassembly queue times out (ip_expire)."""
        self.clock.now = FAR_FUTURE_NS
        self.ip.defrag.clock = self.clock
        self.ip.expire_frags()
        self._up()

    def _up(self) -> None:
        ip, udp = self.ip, self.udp
        while ip.to_transport or ip.to_transport_err or udp.icmp_out:
            batch, ip.to_transport = ip.to_transport, []
            for skb in batch:
                udp.udp_rcv(skb)
            errs, ip.to_transport_err = ip.to_transport_err, []
            for skb, icmp_type, code, info in errs:
                udp.udp_err(IcmpError(skb, icmp_type, code, info))
            sends, udp.icmp_out = udp.icmp_out, []
            for req in sends:
                ip.icmp_send(req.skb, req.type, req.code, req.info)
        ip.to_device.clear()

    async def received(self) -> list[tuple[bytes, int, int]]:
        """udp_recvmsg until EAGAIN: (data, saddr, sport) of each datagram."""
        got: list[tuple[bytes, int, int]] = []
        for _ in range(len(self.sock.receive_queue) + 1):
            try:
                d = await self.udp.udp_recvmsg(self.sock, 70000, MSG_DONTWAIT, 0)
            except OSError as err:
                assert err.errno == errno.EAGAIN
                return got
            got.append((d.data, d.saddr, d.sport))
        raise AssertionError("udp_recvmsg returned more datagrams than were queued")


def _fix_ip_checksum(pkt: bytearray) -> None:
    hlen = (pkt[0] & 0x0F) * 4
    if 20 <= hlen <= len(pkt):
        pkt[10:12] = b"\0\0"
        pkt[10:12] = ip_fast_csum(pkt[:hlen]).to_bytes(2, "big")


# The counters the kernel increments where it drops with each reason: the drop tally
# and the MIB must tell the same story.
MIB_OF_DROP = {
    ("IP_INHDR", "ip_rcv_core"): ["IpInHdrErrors"],
    ("IP_CSUM", "ip_rcv_core"): ["IpInHdrErrors", "IpExtInCsumErrors"],
    ("PKT_TOO_SMALL", "ip_rcv_core"): ["IpExtInTruncatedPkts"],
    ("IP_INHDR", "ip_rcv_options"): ["IpInHdrErrors"],
    ("IP_INADDRERRORS", "ip_error"): ["IpInAddrErrors"],
    ("IP_NOPROTO", "ip_protocol_deliver_rcu"): ["IpInUnknownProtos"],
    ("NOT_SPECIFIED", "ip_defrag"): ["IpReasmFails"],
    ("FRAG_REASM_TIMEOUT", "ip_expire"): ["IpReasmFails", "IpReasmTimeout"],
    ("FRAG_REASM_TIMEOUT", "inet_frag_rbtree_purge"): ["IpReasmFails", "IpReasmTimeout"],
    ("ICMP_CSUM", "icmp_rcv"): ["IcmpInCsumErrors", "IcmpInErrors"],
    ("UDP_CSUM", "__udp4_lib_rcv"): ["UdpInCsumErrors", "UdpInErrors"],
    ("PKT_TOO_SMALL", "__udp4_lib_rcv"): ["UdpInErrors"],
    ("NOT_SPECIFIED", "__udp4_lib_rcv"): ["UdpInErrors"],
    ("NO_SOCKET", "__udp4_lib_rcv"): ["UdpNoPorts"],
    ("NOT_SPECIFIED", "__udp4_lib_mcast_deliver"): ["UdpIgnoredMulti"],
    ("UDP_CSUM", "udp_recvmsg"): ["UdpInCsumErrors", "UdpInErrors"],
    ("PKT_TOO_SMALL", "eth_type_trans"): ["rx_errors"],
    ("OTHERHOST", "rx mac filter"): ["rx_mac_filtered"],
    ("UNHANDLED_PROTO", "__netif_receive_skb_core"): ["rx_dropped"],
}


IGMP_ALL_HOSTS = ip_from_str("224.0.0.1")


@dataclass(frozen=True)
class Frame:
    frame: bytes
    # The payload and sender a valid frame must arrive with; None for a hostile one.
    expect: tuple[bytes, int, int] | None


@st.composite
def valid_frames(draw: st.DrawFn, tag: bytes = b"V") -> Frame:
    payload = tag + draw(st.binary(max_size=draw(st.sampled_from([16, 200, 1400]))))
    src, sport = draw(PEERS), draw(st.integers(1, 0xFFFF))
    packet = udp_packet(
        payload,
        src=src,
        dst=draw(st.sampled_from([ALICE, ALICE | 0xFF])),
        sport=sport,
        dport=PORT,
        ident=draw(st.integers(0, 0xFFFF)),
        ttl=draw(st.integers(1, 255)),
        dont_frag=draw(st.booleans()),
    )
    return Frame(eth_frame(packet), (payload, src, sport))


# Header fields of an IPv4 + UDP packet: (offset, size).
_FIELDS = {
    "ver_ihl": (0, 1),
    "tos": (1, 1),
    "tot_len": (2, 2),
    "frag_off": (6, 2),
    "ttl": (8, 1),
    "protocol": (9, 1),
    "check": (10, 2),
    "saddr": (12, 4),
    "daddr": (16, 4),
    "udp_len": (24, 2),
    "udp_check": (26, 2),
}
_SPECIAL = {
    1: [0, 1, 0x45, 0x46, 0x4F, 0x44, 0x35, 0x65, 0xFF, 17, 136, 6],
    2: [0, 1, 7, 8, 19, 20, 21, 28, 0x2000, 0x4000, 0x3FFF, 0xFFFF],
    4: [0, 0xFFFFFFFF, 0x7F000001, 0xE0000001, 0x0A000001, 0x0A0000FF, 0x0A000002],
}


@st.composite
def hostile_frames(draw: st.DrawFn) -> Frame:
    base = bytearray(draw(valid_frames(b"H")).frame)
    pkt = base[ETH_HLEN:]
    kinds = ["field", "udp", "frag", "options", "truncate", "pad", "flip", "random", "ethertype"]
    kind = draw(st.sampled_from(kinds))
    if kind == "udp":
        # Past a correct IPv4 header: UDP's length, checksum and port.
        off, size = draw(st.sampled_from([(22, 2), (24, 2), (26, 2)]))
        value = draw(st.sampled_from(_SPECIAL[2]) | st.integers(0, 0xFFFF))
        pkt[off : off + size] = value.to_bytes(size, "big")
    elif kind == "frag":
        # A fragment of a datagram that never completes: held, then timed out.
        pkt[6:8] = draw(st.sampled_from([0x2000, 0x2001, 0x0001, 0x1FFF, 0x3FFF, 0x6000])).to_bytes(2, "big")
    elif kind == "field":
        for _ in range(draw(st.integers(1, 3))):
            off, size = _FIELDS[draw(st.sampled_from(sorted(_FIELDS)))]
            value = draw(st.sampled_from(_SPECIAL[size]) | st.integers(0, (1 << (8 * size)) - 1))
            pkt[off : off + size] = value.to_bytes(size, "big")
    elif kind == "options":
        opts = draw(st.binary(max_size=40))
        opts += bytes(-len(opts) % 4)
        pkt[20:20] = opts
        pkt[0] = 0x40 | (20 + len(opts)) // 4
        pkt[2:4] = len(pkt).to_bytes(2, "big")
    elif kind == "truncate":
        del pkt[draw(st.integers(0, max(0, len(pkt) - 1))) :]
    elif kind == "pad":
        pkt += draw(st.binary(min_size=1, max_size=64))
    elif kind == "flip":
        for _ in range(draw(st.integers(1, 4))):
            i = draw(st.integers(0, len(pkt) - 1))
            pkt[i] ^= 1 << draw(st.integers(0, 7))
    elif kind == "random":
        pkt = bytearray(draw(st.binary(max_size=120)))
    else:
        base[12:14] = draw(st.sampled_from([ETH_P_ARP, 0x86DD, 0x8100, 0x0000, 0x05FF])).to_bytes(2, "big")
    if kind in ("udp", "frag") or (kind in ("field", "options", "flip") and draw(st.booleans())):
        # A correct header checksum lets the checks after it see the hostile field.
        _fix_ip_checksum(pkt)
    return Frame(bytes(base[:ETH_HLEN] + pkt), None)


frames = st.one_of(valid_frames(), hostile_frames(), st.binary(max_size=80).map(lambda b: Frame(b, None)))


@fuzz_settings(1000)
@given(frames)
def test_every_frame_is_delivered_or_counted(f: Frame) -> None:

    async def main() -> None:
        h = Host()
        await h.bind()
        icmp_in = h.ip.mib.icmp.get("InMsgs")
        h.rx([f.frame])
        held = h.ip.defrag.inuse
        h.expire()
        got = await h.received()
        dropped = h.drops()
        consumed_by = _consumer(f.frame, h.ip.mib.icmp.get("InMsgs") - icmp_in)
        if f.expect is not None:
            assert (got, dropped, held) == ([f.expect], 0, 0)
        elif consumed_by:
            # icmp_rcv or arp_rcv took it: consumed, or dropped and counted.
            assert not got and dropped <= 1, (consumed_by, got, dropped)
        else:
            assert len(got) + dropped == 1, (got, h.drop_points())
        assert h.ip.defrag.inuse == 0 and h.ip.defrag.mem == 0
        if dropped == 1:
            [point] = h.drop_points()
            counters = h.counters()
            for name in MIB_OF_DROP.get(point, []):
                assert counters.get(name, 0) >= 1, (point, name, counters)
            event(f"dropped: {point[0]} at {point[1]}")
        else:
            event("delivered" if got else f"consumed by {consumed_by}")

    asyncio.run(main())


def _consumer(frame: bytes, icmp_in: int) -> str | None:
    if len(frame) >= ETH_HLEN and (frame[:6] == ALICE_MAC or frame[0] & 1):
        ethertype = int.from_bytes(frame[12:14], "big")
        if ethertype == ETH_P_ARP:
            return "arp_rcv"
        if ethertype == ETH_P_IP and icmp_in:
            assert icmp_in == 1 and frame[ETH_HLEN + 9] == IPPROTO_ICMP
            return "icmp_rcv"
    return None


@fuzz_settings(200)
@given(st.lists(st.one_of(valid_frames(), hostile_frames()), min_size=2, max_size=12))
def test_gro_keeps_every_valid_datagram_among_hostile_ones(batch: list[Frame]) -> None:
    """One NAPI poll of mixed frames (GRO merges what it can): the valid ones arrive,
    each once, byte for byte, in their order within their flow (GRO flushes a flow's
    merged skb when it flushes the oldest, as the kernel does, so flows may pass each
    other); nothing raises."""

    async def main() -> None:
        h = Host()
        await h.bind()
        h.rx([f.frame for f in batch])
        h.expire()
        got = await h.received()
        valid = [f.expect for f in batch if f.expect is not None]
        got = [g for g in got if g[0][:1] == b"V"]
        assert sorted(got) == sorted(valid)
        for flow in {v[1:] for v in valid}:
            assert [g for g in got if g[1:] == flow] == [v for v in valid if v[1:] == flow]

    asyncio.run(main())


def test_the_harness_delivers_a_plain_datagram() -> None:
    """The property above is only as good as its harness: a plain datagram arrives."""

    async def main() -> None:
        h = Host()
        await h.bind()
        h.rx([eth_frame(udp_packet(b"Vhello", src=ip_from_str("10.0.0.2"), sport=4000, dport=PORT))])
        assert await h.received() == [(b"Vhello", ip_from_str("10.0.0.2"), 4000)]
        assert h.drops() == 0

    asyncio.run(main())


def test_the_harness_counts_a_bad_checksum() -> None:
    async def main() -> None:
        h = Host()
        await h.bind()
        pkt = bytearray(udp_packet(b"Vhello", src=ip_from_str("10.0.0.2"), dport=PORT))
        pkt[10] ^= 1
        h.rx([eth_frame(bytes(pkt))])
        assert await h.received() == []
        assert (h.ip.mib.ipext.get("InCsumErrors"), h.ip.mib.ip.get("InHdrErrors"), h.drops()) == (1, 1, 1)
        assert h.ip.drops.by_reason() == {"IP_CSUM": 1}

    asyncio.run(main())


@pytest.mark.parametrize(
    "mac", [ALICE_MAC, bytes.fromhex("01005e000001")], ids=["unicast-mac", "multicast-mac"]
)
def test_all_hosts_multicast_reaches_the_socket(mac: bytes) -> None:
    """A datagram to 224.0.0.1:9000 reaches the socket bound to 0.0.0.0:9000, with a
    multicast MAC or the host's own: ip_route_input_mc() gives a group the device joined
    ip_local_deliver (6.18 in a namespace of veths delivers both)."""
    frame = eth_frame(
        udp_packet(b"Vmc", src=ip_from_str("10.0.0.2"), dst=IGMP_ALL_HOSTS, dport=PORT), dst=mac
    )

    async def main() -> None:
        h = Host()
        await h.bind()
        h.rx([frame])
        assert await h.received() == [(b"Vmc", ip_from_str("10.0.0.2"), 4000)]

    asyncio.run(main())
