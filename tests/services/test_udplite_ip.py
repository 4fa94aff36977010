"""UDP-Lite (IPPROTO_UDPLITE, 136) in the IP layer: inet_protos[IPPROTO_UDPLITE] is
udplite_protocol, whose handler and err_handler are UDP's (udplite_rcv and udplite_err
call __udp4_lib_rcv and __udp4_lib_err), so IP hands UDP-Lite datagrams and the ICMP
errors quoting them to the UDP service as it does UDP's, and sends no protocol
unreachable for them. Linux 6.18.44 on this machine still has it (/proc/net/protocols
lists UDP-Lite; the socket logs "UDP-Lite is deprecated")."""

from __future__ import annotations

import struct

from services.core.skbuff import IpCork, alloc_skb
from services.core.wire.ipv4 import IPPROTO_UDPLITE
from tests.services.test_ip import (
    LOOPBACK,
    SENTINEL,
    delta,
    frame,
    ip_service,
    ipv4_header,
)
from tests.services.test_ip_paths import PEER0, ROUTER, _icmp_error, counters, host, rx


def udplite(payload: bytes, coverage: int = 8, sport: int = 40000, dport: int = 9) -> bytes:
    # UDP-Lite's length field is its checksum coverage (RFC 3828); IP does not read it.
    return struct.pack("!HHHH", sport, dport, coverage, 0x1234) + payload


def test_a_udplite_datagram_is_delivered_to_the_transport() -> None:
    ip = host()
    packet = ipv4_header(PEER0, ROUTER, 8 + 5, protocol=IPPROTO_UDPLITE) + udplite(b"lite!")
    ip.ip_rcv(rx(packet))
    [skb] = ip.to_transport
    assert skb.payload() == udplite(b"lite!")
    assert ip.to_device == []
    c = counters(ip)
    assert (c["IpInReceives"], c["IpInDelivers"]) == (1, 1)
    assert "IpInUnknownProtos" not in c and "IcmpOutDestUnreachs" not in c


def test_an_icmp_error_quoting_udplite_goes_to_the_transport() -> None:
    ip = host()
    ours = ipv4_header(ROUTER, PEER0, 8 + 3, protocol=IPPROTO_UDPLITE) + udplite(b"hey")
    ip.ip_rcv(rx(_icmp_error(3, 3, bytes(4), ours)))
    [(skb, icmp_type, code, info)] = ip.to_transport_err
    assert (icmp_type, code, info) == (3, 3, 0)
    assert skb.payload() == ours


def test_the_output_path_writes_protocol_136() -> None:
    ip = host()
    dst, saddr = ip.router.output(PEER0)
    seg = udplite(b"out", coverage=0)
    skb = alloc_skb(len(seg), 128)
    skb.put_data(seg)
    skb.cork = IpCork(saddr=saddr, daddr=PEER0, protocol=IPPROTO_UDPLITE, pmtudisc=2)
    skb.dst = dst
    ip.ip_send_skb(skb)
    [out] = ip.to_device
    # DF (IP_PMTUDISC_DO), so id 0; TTL 64; protocol 136.
    assert out.payload() == ipv4_header(ROUTER, PEER0, len(seg), frag_off=0x4000, protocol=136) + seg


def test_the_service_delivers_udplite_up_the_attach_stream(run_async, grpc_test_server, poll_until) -> None:
    seg = udplite(b"over the stream")
    packet = ipv4_header(LOOPBACK, LOOPBACK, len(seg), protocol=IPPROTO_UDPLITE) + seg

    async def scenario() -> None:
        async with ip_service(grpc_test_server, poll_until) as ip:
            before = await ip.counters()
            ip.nic.inject(frame(packet), frame(SENTINEL))
            skbs = await ip.udp.receive()
            while len(skbs) < 2:
                skbs += await ip.udp.receive()
            assert [s.payload() for s in skbs] == [seg, SENTINEL[20:]]
            assert delta(before, await ip.counters()) == {
                "IpInReceives": 2,
                "IpInDelivers": 2,
                "IpExtInOctets": len(packet) + len(SENTINEL),
                "IpExtInNoECTPkts": 2,
            }
            assert ip.nic.transmitted.empty()

    run_async(scenario())
