"""Frames and layers for the NIC tests: Ethernet/IPv4/UDP built with the wire modules,
checksums correct unless a test breaks them on purpose, and a NicLayer with a clock
the test moves."""

from __future__ import annotations

from typing import Any

from services.core.skbuff import CHECKSUM_PARTIAL, Dst, SkBuff, alloc_skb
from services.core.sysctl import Sysctl
from services.core.wire.ethernet import ETH_HLEN, ETH_P_IP, EthernetRepr
from services.core.wire.ipv4 import IPPROTO_UDP, Ipv4Repr, ip_from_str
from services.core.wire.udp import UdpRepr
from services.nic.device import ether_dev, loopback_dev
from services.nic.layer import NicLayer

LO = 1
ETH0 = 2
ALICE_MAC = bytes.fromhex("02000a000001")
BOB_MAC = bytes.fromhex("02000a000002")
OTHER_MAC = bytes.fromhex("02000a0000ee")
BROADCAST = b"\xff" * 6
ALICE = ip_from_str("10.0.0.1")
BOB = ip_from_str("10.0.0.2")
RTN_UNICAST = 1
NO_TIME_LIMIT = 10_000_000


class Clock:
    """Monotonic and real time the test moves by hand (nanoseconds)."""

    def __init__(self, start: int = 1_000_000_000) -> None:
        self.now = start

    def __call__(self) -> int:
        return self.now

    def advance_us(self, us: int) -> None:
        self.now += us * 1000


def new_layer(clock: Clock | None = None, ncpus: int = 1, **sysctls: int) -> NicLayer:
    sysctl = Sysctl({"net.core.netdev_budget_usecs": NO_TIME_LIMIT})
    for name, value in sysctls.items():
        sysctl.set(f"net.core.{name}", value)
    clk = clock or Clock()
    layer = NicLayer(
        "alice",
        [loopback_dev(), ether_dev(ETH0, "eth0", ALICE_MAC)],
        sysctl,
        ncpus=ncpus,
        realtime=clk,
        mono=clk,
    )
    layer.set_addrs([(LO, ip_from_str("127.0.0.1"), 8), (ETH0, ALICE, 24)])
    return layer


def udp_packet(
    payload: bytes,
    src: int = BOB,
    dst: int = ALICE,
    sport: int = 4000,
    dport: int = 9000,
    ident: int = 0,
    ttl: int = 64,
    dont_frag: bool = True,
) -> bytes:
    ip = Ipv4Repr(
        src=src,
        dst=dst,
        protocol=IPPROTO_UDP,
        payload_len=8 + len(payload),
        ttl=ttl,
        ident=ident,
        dont_frag=dont_frag,
    )
    buf = bytearray(ip.total_len)
    ip.emit(buf)
    buf[ip.header_len + 8 :] = payload
    UdpRepr(sport, dport).emit(buf, ip.header_len, len(payload), src, dst)
    return bytes(buf)


def eth_frame(
    packet: bytes, dst: bytes = ALICE_MAC, src: bytes = BOB_MAC, ethertype: int = ETH_P_IP
) -> bytes:
    hdr = bytearray(ETH_HLEN)
    EthernetRepr(dst=dst, src=src, ethertype=ethertype).emit(hdr)
    return bytes(hdr) + packet


def udp_frame(payload: bytes, dst_mac: bytes = ALICE_MAC, **kw: Any) -> bytes:
    return eth_frame(udp_packet(payload, **kw), dst=dst_mac)


def tx_skb(packet: bytes, ifindex: int = ETH0, nexthop: int = BOB, headroom: int = 64) -> SkBuff:
    """What ip_finish_output2 hands dev_queue_xmit: data at the IP header, the route in dst."""
    skb = alloc_skb(len(packet), headroom)
    skb.put_data(packet)
    skb.reset_network_header()
    skb.protocol = ETH_P_IP
    skb.dst = Dst(ifindex=ifindex, nexthop=nexthop, mtu=1500, rt_type=RTN_UNICAST)
    return skb


def partial_csum(skb: SkBuff, ihl: int = 20) -> SkBuff:
    """Leave the UDP checksum to the device as udp4_hwcsum does: the folded pseudo-header
    sum in the check field, CHECKSUM_PARTIAL from the UDP header on."""
    from services.core.checksum import csum_tcpudp_magic

    data = skb.linear()
    saddr = int.from_bytes(data[12:16], "big")
    daddr = int.from_bytes(data[16:20], "big")
    ulen = int.from_bytes(data[ihl + 4 : ihl + 6], "big")
    pseudo = (~csum_tcpudp_magic(saddr, daddr, ulen, IPPROTO_UDP, 0)) & 0xFFFF
    data[ihl + 6 : ihl + 8] = pseudo.to_bytes(2, "big")
    skb.ip_summed = CHECKSUM_PARTIAL
    skb.csum_start = skb.data + ihl
    skb.csum_offset = 6
    return skb
