"""The IP layer's paths wired together, without gRPC: forwarding (TTL, DF, fragments),
ICMP answers and errors, reassembly on local delivery and its timer, errors handed
to the transport, PMTU learnt from ICMP. Exact bytes and exact counters.

The host is a router: eth0 10.0.0.1/24 (MTU 1500), eth1 10.1.0.1/24 (MTU 1000),
lo 127.0.0.1/8, net.ipv4.ip_forward = 1 where a test says so."""

from __future__ import annotations

import struct

import pytest

from services.core.dropreason import SkbDropReason
from services.core.skbuff import PACKET_HOST, IpCork, SkBuff, alloc_skb
from services.core.snmp import to_flat_dict
from services.core.sysctl import Sysctl
from services.core.wire.ethernet import ETH_HLEN, ETH_P_IP
from services.core.wire.ipv4 import ip_from_str
from services.ip.fib import InIfaddr
from services.ip.layer import IpLayer
from tests.services.test_ip import ipv4_header, rfc1071

A = ip_from_str
LO, ETH0, ETH1 = 1, 2, 3
ROUTER, PEER0, FAR = A("10.0.0.1"), A("10.0.0.7"), A("10.1.0.9")


def host(forward: bool = False) -> IpLayer:
    sysctl = Sysctl()
    if forward:
        sysctl.set("net.ipv4.ip_forward", "1")
    ip = IpLayer("router", sysctl)
    links = [(LO, "lo", 65536), (ETH0, "eth0", 1500), (ETH1, "eth1", 1000)]
    ip.router.set_devices(links)
    ip.add_address(InIfaddr(LO, "lo", A("127.0.0.1"), 8))
    ip.add_address(InIfaddr(ETH0, "eth0", ROUTER, 24))
    ip.add_address(InIfaddr(ETH1, "eth1", A("10.1.0.1"), 24))
    return ip


def udp(payload: bytes, sport: int = 5000, dport: int = 9000) -> bytes:
    return struct.pack("!HHHH", sport, dport, 8 + len(payload), 0) + payload


def rx(packet: bytes, ifindex: int = ETH0) -> SkBuff:
    raw = bytes(12) + b"\x08\x00" + packet
    skb = SkBuff(bytearray(raw))
    skb.tail = len(raw)
    skb.len = len(packet)
    skb.mac_header = 0
    skb.data = skb.network_header = ETH_HLEN
    skb.protocol = ETH_P_IP
    skb.pkt_type = PACKET_HOST
    skb.skb_iif = skb.dev_ifindex = ifindex
    return skb


def counters(ip: IpLayer) -> dict[str, int]:
    return {k: v for k, v in to_flat_dict(ip.mib).items() if v > 0}


def icmp_of(skb: SkBuff) -> bytes:
    """The ICMP message of a packet IP sent (IP header at data)."""
    data = skb.payload()
    return data[(data[0] & 0x0F) * 4 :]


def test_forwarded_datagram_loses_one_ttl_and_keeps_a_valid_checksum() -> None:
    ip = host(forward=True)
    packet = ipv4_header(PEER0, FAR, 8 + 100, ttl=64, ident=7) + udp(bytes(100))
    ip.ip_rcv(rx(packet))
    [out] = ip.to_device
    sent = out.payload()
    assert sent[8] == 63
    assert rfc1071(sent[:20]) == 0
    assert sent[:8] + sent[9:10] + sent[12:] == packet[:8] + packet[9:10] + packet[12:]
    assert out.dst is not None and (out.dst.ifindex, out.dst.nexthop) == (ETH1, FAR)
    assert counters(ip) == {
        "IpForwarding": 1,  # RFC 1213: 1 forwarding, 2 not
        "IpDefaultTTL": 64,
        "IpInReceives": 1,
        "IpForwDatagrams": 1,
        "IpOutTransmits": 1,
        "IpExtInOctets": 128,
        "IpExtOutOctets": 128,
        "IpExtInNoECTPkts": 1,
    }
    assert ip.to_transport == []


def test_not_forwarding_counts_in_addr_errors_and_sends_nothing() -> None:
    ip = host()
    ip.ip_rcv(rx(ipv4_header(PEER0, FAR, 8) + udp(b"")))
    assert ip.to_device == [] and ip.to_transport == []
    assert counters(ip)["IpInAddrErrors"] == 1
    assert dict(ip.drops.items()) == {(SkbDropReason.IP_INADDRERRORS, "ip_error"): 1}


def test_ttl_1_is_answered_with_time_exceeded_quoting_the_packet() -> None:
    ip = host(forward=True)
    packet = ipv4_header(PEER0, FAR, 8 + 4, ttl=1) + udp(b"ping")
    ip.ip_rcv(rx(packet))
    [err] = ip.to_device
    hdr = err.payload()[:20]
    # icmp_send(): TOS 0xc0 (precedence internetwork control), TTL 64, from the address
    # of the device the packet came in on, back to its source.
    assert (hdr[1], hdr[8], hdr[9]) == (0xC0, 64, 1)
    assert hdr[12:20] == struct.pack("!II", ROUTER, PEER0)
    msg = icmp_of(err)
    assert msg[:2] == bytes([11, 0]) and msg[4:8] == bytes(4)
    assert msg[8:] == packet
    assert rfc1071(msg) == 0
    c = counters(ip)
    assert (c["IpInHdrErrors"], c["IcmpOutTimeExcds"], c["IcmpOutMsgs"]) == (1, 1, 1)
    assert "IpForwDatagrams" not in c


def test_df_packet_too_big_for_the_next_hop_gets_frag_needed_with_its_mtu() -> None:
    ip = host(forward=True)
    packet = ipv4_header(PEER0, FAR, 8 + 1172, frag_off=0x4000) + udp(bytes(1172))
    ip.ip_rcv(rx(packet))
    [err] = ip.to_device
    msg = icmp_of(err)
    # Destination unreachable, fragmentation needed, next-hop MTU 1000 (RFC 1191).
    assert msg[:2] == bytes([3, 4]) and msg[4:8] == struct.pack("!HH", 0, 1000)
    assert msg[8:36] == packet[:28]
    c = counters(ip)
    assert (c["IpFragFails"], c["IcmpOutDestUnreachs"]) == (1, 1)
    assert dict(ip.drops.items()) == {(SkbDropReason.PKT_TOO_BIG, "ip_forward"): 1}


def test_forwarded_packet_without_df_is_fragmented_for_the_next_hop() -> None:
    ip = host(forward=True)
    payload = bytes(i % 251 for i in range(1172))
    packet = ipv4_header(PEER0, FAR, 8 + 1172, ident=0x1234) + udp(payload)
    ip.ip_rcv(rx(packet))
    frags = [s.payload() for s in ip.to_device]
    assert [len(f) for f in frags] == [996, 224]
    assert [struct.unpack("!H", f[6:8])[0] for f in frags] == [0x2000, 122]
    assert frags[0][20:] + frags[1][20:] == packet[20:]
    c = counters(ip)
    assert (c["IpForwDatagrams"], c["IpFragOKs"], c["IpFragCreates"], c["IpOutTransmits"]) == (1, 1, 2, 2)


def test_echo_request_is_answered() -> None:
    ip = host()
    body = struct.pack("!BBHHH", 8, 0, 0, 0x42, 1) + b"abcdefgh"
    body = body[:2] + struct.pack("!H", rfc1071(body)) + body[4:]
    ip.ip_rcv(rx(ipv4_header(PEER0, ROUTER, len(body), protocol=1) + body))
    [reply] = ip.to_device
    assert reply.payload()[12:20] == struct.pack("!II", ROUTER, PEER0)
    msg = icmp_of(reply)
    assert msg[0] == 0 and msg[4:] == body[4:] and rfc1071(msg) == 0
    c = counters(ip)
    assert (c["IcmpInEchos"], c["IcmpOutEchoReps"], c["IpInDelivers"]) == (1, 1, 1)


def _icmp_error(icmp_type: int, code: int, info: bytes, quoted: bytes) -> bytes:
    body = bytes([icmp_type, code, 0, 0]) + info + quoted
    body = body[:2] + struct.pack("!H", rfc1071(body)) + body[4:]
    return ipv4_header(PEER0, ROUTER, len(body), protocol=1) + body


def test_port_unreachable_about_our_datagram_goes_to_the_transport() -> None:
    ip = host()
    ours = ipv4_header(ROUTER, PEER0, 8 + 3) + udp(b"hey", sport=40000, dport=9)
    ip.ip_rcv(rx(_icmp_error(3, 3, bytes(4), ours)))
    [(skb, icmp_type, code, info)] = ip.to_transport_err
    assert (icmp_type, code, info) == (3, 3, 0)
    # Data at the quoted IP header, as icmp_unreach hands it to udp_err.
    assert skb.payload() == ours
    assert counters(ip)["IcmpInDestUnreachs"] == 1


def test_frag_needed_lowers_the_path_mtu_towards_the_quoted_destination() -> None:
    ip = host()
    genid = ip.fib.genid
    ours = ipv4_header(ROUTER, PEER0, 8 + 1400, frag_off=0x4000) + udp(bytes(1400))
    ip.ip_rcv(rx(_icmp_error(3, 4, struct.pack("!HH", 0, 1280), ours[:28])))
    [(_, _, _, info)] = ip.to_transport_err
    assert info == 1280
    dst, _ = ip.router.output(PEER0)
    assert dst.mtu == 1280
    assert ip.fib.genid > genid


def test_fragments_are_reassembled_before_delivery() -> None:
    ip = host()
    payload = bytes(i % 251 for i in range(2000))
    whole = udp(payload)
    first = ipv4_header(PEER0, ROUTER, 1480, ident=9, frag_off=0x2000) + whole[:1480]
    second = ipv4_header(PEER0, ROUTER, len(whole) - 1480, ident=9, frag_off=185) + whole[1480:]
    ip.ip_rcv(rx(second))
    assert ip.to_transport == []
    ip.ip_rcv(rx(first))
    [skb] = ip.to_transport
    assert skb.payload() == whole
    c = counters(ip)
    assert (c["IpReasmReqds"], c["IpReasmOKs"], c["IpInDelivers"]) == (2, 1, 1)


def test_reassembly_timeout_with_fragment_zero_sends_time_exceeded() -> None:
    ip = host()
    now = [0]
    ip.defrag.clock = lambda: now[0]
    first = ipv4_header(PEER0, ROUTER, 1480, ident=9, frag_off=0x2000) + udp(bytes(1472))
    ip.ip_rcv(rx(first))
    now[0] = 31 * 10**9
    ip.expire_frags()
    [err] = ip.to_device
    msg = icmp_of(err)
    assert msg[:2] == bytes([11, 1])
    assert msg[8:36] == first[:28]
    c = counters(ip)
    assert (c["IpReasmTimeout"], c["IpReasmFails"], c["IcmpOutTimeExcds"]) == (1, 1, 1)


def test_local_send_larger_than_the_mtu_is_fragmented() -> None:
    ip = host()
    dst, saddr = ip.router.output(PEER0)
    skb = alloc_skb(8 + 3000, 128)
    skb.put_data(udp(bytes(3000)))
    skb.cork = IpCork(saddr=saddr, daddr=PEER0, protocol=17, pmtudisc=1)
    skb.dst = dst
    ip.ip_send_skb(skb)
    assert [s.len for s in ip.to_device] == [1500, 1500, 68]
    c = counters(ip)
    assert (c["IpOutRequests"], c["IpFragOKs"], c["IpFragCreates"], c["IpOutTransmits"]) == (1, 1, 3, 3)
    # Octets are counted per fragment, as Linux 6.18 did for the same send (nstat:
    # IpOutRequests 1, IpOutTransmits 3, IpExtOutOctets 3068).
    assert c["IpExtOutOctets"] == 3068


@pytest.mark.parametrize("protocol", [6, 99])
def test_unknown_protocol_gets_protocol_unreachable(protocol: int) -> None:
    ip = host()
    packet = ipv4_header(PEER0, ROUTER, 4, protocol=protocol) + b"abcd"
    ip.ip_rcv(rx(packet))
    [err] = ip.to_device
    msg = icmp_of(err)
    assert msg[:2] == bytes([3, 2]) and msg[8:] == packet
    assert counters(ip)["IpInUnknownProtos"] == 1
