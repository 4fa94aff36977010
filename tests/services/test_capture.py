"""The taps' filters: programs libpcap compiled (the real tcpdump -dd) run by the
emulator's classic BPF on the NIC's frames and on the packets crossing the IP/UDP
boundary; they keep exactly what tcpdump -r keeps of the same packets."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import dpkt  # type: ignore[import-untyped]
import pytest

from services.core.skbuff import (
    CHECKSUM_PARTIAL,
    PACKET_BROADCAST,
    PACKET_HOST,
    PACKET_OUTGOING,
    SkBuff,
    alloc_skb,
)
from services.ip.capture import BoundaryTap, BoundaryTaps
from services.ip.capture import filter_from_proto as ip_filter_from_proto
from services.nic.capture import ARPHRD_ETHER, ARPHRD_LOOPBACK, Captured, Tap, Taps, filter_from_proto
from stackemu.nic.v1 import nic_pb2
from stackemu.tools.pcapfilter import compile_filter
from tests.cli import frames as F

pytestmark = pytest.mark.skipif(
    shutil.which("tcpdump") is None, reason="tcpdump is not installed (scripts/bootstrap.sh installs it)"
)

LO, ETH0 = 1, 2


def _reply() -> bytes:
    """10.0.0.2.9000 > 10.0.0.1.40000"""
    seg = F.udp(F.IP_B, F.IP_A, 9000, 40000, b"r")
    return F.eth(F.MAC_A, F.MAC_B, 0x0800, F.ipv4(F.IP_B, F.IP_A, 17, seg))


def _frames() -> list[tuple[bytes, int, int]]:
    """(frame, ifindex, pkt_type)"""
    return [
        (F.udp_frame(), ETH0, PACKET_OUTGOING),  # 10.0.0.1.40000 > 10.0.0.2.9000
        (F.arp_request(), ETH0, PACKET_BROADCAST),
        (F.port_unreachable(), ETH0, PACKET_HOST),  # ICMP quoting a datagram to 9001
        (F.need_frag(), ETH0, PACKET_HOST),  # ICMP quoting a datagram to 9000
        (F.last_fragment(), ETH0, PACKET_OUTGOING),  # no UDP header in it
        (F.first_fragment(), ETH0, PACKET_OUTGOING),  # ports of a datagram to 9000
        (F.loopback_udp(), LO, PACKET_HOST),  # 54095 > 49410
        (_reply(), ETH0, PACKET_HOST),
    ]


def _tap(expr: str) -> tuple[Tap, list[int]]:
    prog, _ = compile_filter(expr.split(), "EN10MB")
    woken: list[int] = []
    hatypes = {LO: ARPHRD_LOOPBACK, ETH0: ARPHRD_ETHER}
    tap = Tap(0, lambda: woken.append(1), prog=filter_from_proto(prog), hatype=hatypes.__getitem__)
    return tap, woken


def _kept(expr: str) -> list[int]:
    tap, _ = _tap(expr)
    taps = Taps()
    taps.add(tap)
    frames = _frames()
    for i, (frame, ifindex, pkt_type) in enumerate(frames):
        taps.deliver(ifindex, i, pkt_type, frame)
    return [c.tstamp for c in tap.q]


def _libpcap_kept(tmp_path: Path, expr: str) -> list[int]:
    """Which of the same frames tcpdump -r keeps (their timestamps are their indices)."""
    path = tmp_path / "f.pcap"
    with path.open("wb") as f:
        w = dpkt.pcap.Writer(f, snaplen=262144, linktype=dpkt.pcap.DLT_EN10MB)
        for i, (frame, _, _) in enumerate(_frames()):
            w.writepkt(frame, ts=i)
    out = subprocess.run(
        ["tcpdump", "-r", str(path), "-tt", "-n", *expr.split()],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    ).stdout
    return [int(line.split(".")[0]) for line in out.splitlines()]


@pytest.mark.parametrize(
    ("expr", "kept"),
    [
        ("udp port 9000", [0, 5, 7]),
        ("udp", [0, 4, 5, 6, 7]),
        ("arp", [1]),
        ("icmp[icmptype] == icmp-unreach", [2, 3]),
        ("ip[6:2] & 0x1fff != 0", [4]),
        ("dst host 10.0.0.2 and udp", [0, 4, 5]),
        ("ether broadcast", [1]),
        ("src port 9000", [7]),
    ],
)
def test_nic_tap_keeps_exactly_what_libpcap_keeps(tmp_path: Path, expr: str, kept: list[int]) -> None:
    assert _kept(expr) == kept
    assert _libpcap_kept(tmp_path, expr) == kept


def test_direction_and_device_come_from_the_skb() -> None:
    # libpcap compiles these to SKF_AD_PKTTYPE loads, which tcpdump -r cannot answer.
    assert _kept("inbound") == [1, 2, 3, 6, 7]
    assert _kept("outbound") == [0, 4, 5]
    assert _kept("ifindex 1") == [6]


def test_refused_frames_are_neither_queued_nor_counted_as_drops() -> None:
    tap, woken = _tap("udp port 9000")
    tap.limit = 1
    for i, (frame, ifindex, pkt_type) in enumerate(_frames()):
        tap.offer(Captured(ifindex, i, pkt_type, frame))
    # frames 0, 5 and 7 match: the first is queued, the other two overflow the queue
    assert [c.tstamp for c in tap.q] == [0]
    assert (tap.dropped, len(woken)) == (2, 1)


def test_a_program_the_kernel_refuses_is_refused() -> None:
    with pytest.raises(OSError, match="last instruction is not a return"):
        filter_from_proto([nic_pb2.SockFilter(code=0x28, k=12)])
    with pytest.raises(ValueError, match="too wide"):
        filter_from_proto([nic_pb2.SockFilter(code=0x6, jt=256)])
    assert filter_from_proto([]) is None


def _crossing(packet: bytes, data_at: int) -> SkBuff:
    """An skb whose network header is `packet`'s IP header and data is `data_at` bytes in."""
    skb = alloc_skb(len(packet), headroom=64)
    skb.put_data(packet)
    skb.reset_network_header()
    skb.pull(data_at)
    return skb


def test_boundary_tap_copies_the_packet_from_its_ip_header_and_filters_it() -> None:
    to_9000 = F.ipv4(F.IP_B, F.IP_A, 17, F.udp(F.IP_B, F.IP_A, 40000, 9000, b"hello"))
    to_9001 = F.ipv4(F.IP_B, F.IP_A, 17, F.udp(F.IP_B, F.IP_A, 40000, 9001, b"other"))
    icmp = F.port_unreachable()[14:]
    prog, _ = compile_filter(["udp", "port", "9000"], "IPV4")
    tap = BoundaryTap(lambda: None, prog=ip_filter_from_proto(prog))
    every = BoundaryTap(lambda: None)
    taps = BoundaryTaps()
    taps.add(tap)
    taps.add(every)
    up = _crossing(to_9000, 20)  # ip_local_deliver_finish pulled the IP header
    up.pkt_type = PACKET_HOST
    taps.deliver(up, up.pkt_type, ETH0)
    taps.deliver(_crossing(to_9001, 20), PACKET_HOST, ETH0)
    down = _crossing(to_9000, 0)  # ip_send_skb: data at the header just pushed
    down.ip_summed = CHECKSUM_PARTIAL
    taps.deliver(down, PACKET_OUTGOING, ETH0)
    taps.deliver(_crossing(icmp, 0), PACKET_OUTGOING, ETH0)  # IP's own ICMP: not at this boundary
    assert [(c.packet, c.pkt_type, c.ifindex, c.ip_summed) for c in tap.q] == [
        (to_9000, PACKET_HOST, ETH0, 0),
        (to_9000, PACKET_OUTGOING, ETH0, CHECKSUM_PARTIAL),
    ]
    assert [c.packet for c in every.q] == [to_9000, to_9001, to_9000]
