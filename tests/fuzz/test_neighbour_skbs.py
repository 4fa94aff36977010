"""SkBuffs a neighbour service hands a layer that SkBuff.from_proto accepts (their
offsets agree with each other) but that do not have the layout the handing-over
promises: the NIC's skbs for ip_rcv (data and network header at the IPv4 header), IP's
for udp_rcv (data and transport header at the UDP header, network header at the IPv4
header) and the quoted packets of IP's ICMP errors for udp_err. Each starts as a
received datagram of tests/fuzz/test_rx_path.py and has some of its offsets moved
(data, tail, len, the header marks), then goes through to_proto and from_proto as it
would between the services.

Property: every such skb that from_proto accepts ends, in the in-process host of
test_rx_path, in delivery or one counted drop (or is consumed by udp_err), never in an
exception, which would end the stream between the two services for every other packet
on it."""

from __future__ import annotations

import asyncio

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.core.skbuff import HEADER_UNSET, SkbError, SkBuff
from services.core.wire.icmp import ICMP_DEST_UNREACH, ICMP_PORT_UNREACH
from services.core.wire.ipv4 import ip_from_str
from services.udp.errors import IcmpError
from stackemu.skb.v1 import skb_pb2
from tests.fuzz import fuzz_settings
from tests.fuzz.test_rx_path import PORT, Host, valid_frames
from tests.services.nicframes import udp_packet
from tests.services.test_ip import frame as received

OFFSETS = ("data", "tail", "len", "mac_header", "network_header", "transport_header")


@st.composite
def neighbour_skbs(draw: st.DrawFn) -> tuple[str, skb_pb2.SkBuff]:
    """(the function the skb is for, the skb as its neighbour sends it)."""
    frame = draw(valid_frames()).frame
    skb = received(frame[14:], ifindex=draw(st.sampled_from([1, 2])))
    where = draw(st.sampled_from(["ip_rcv", "udp_rcv", "udp_err"]))
    if where != "ip_rcv":
        skb.transport_header = skb.network_header + 20
        if where == "udp_rcv":
            skb.pull(20)
    m = skb.to_proto()
    for name in draw(st.lists(st.sampled_from(OFFSETS), max_size=2)):
        old = getattr(m, name)
        near = [0, 1, HEADER_UNSET, old + 1, max(0, old - 1), old + 20, max(0, old - 20)]
        setattr(m, name, draw(st.sampled_from(near) | st.integers(0, 200)))
    return where, m


@fuzz_settings(400)
@given(neighbour_skbs())
def test_skbs_from_a_neighbour(case: tuple[str, skb_pb2.SkBuff]) -> None:
    where, m = case
    try:
        skb = SkBuff.from_proto(m)
    except SkbError:
        return

    async def main() -> None:
        h = Host()
        await h.bind()
        icmp_in = h.ip.mib.icmp.get("InMsgs")
        if where == "ip_rcv":
            h.ip.ip_rcv(skb)
            h.expire()
        elif where == "udp_rcv":
            h.udp.udp_rcv(skb)
        else:
            h.udp.udp_err(IcmpError(skb, ICMP_DEST_UNREACH, ICMP_PORT_UNREACH, 0))
            assert h.drops() == 0
            return
        got = await h.received()
        if h.ip.mib.icmp.get("InMsgs") > icmp_in:
            assert not got and h.drops() <= 1
        else:
            assert len(got) + h.drops() == 1, (got, h.ip.drops.by_reason(), h.udp.drops.by_reason())

    asyncio.run(main())


def _moved(where: str, **offsets: int) -> skb_pb2.SkBuff:
    skb = received(udp_packet(b"V", src=ip_from_str("10.0.0.2"), dport=PORT), ifindex=2)
    if where == "udp_rcv":
        skb.transport_header = skb.network_header + 20
        skb.pull(20)
    m = skb.to_proto()
    for name, value in offsets.items():
        setattr(m, name, value)
    return m


@pytest.mark.parametrize(
    ("where", "m"),
    [
        # An skb from the NIC whose network_header is not at data.
        ("ip_rcv", _moved("ip_rcv", network_header=HEADER_UNSET)),
        # An skb from IP without the 20 bytes of IPv4 header before the UDP one.
        ("udp_rcv", _moved("udp_rcv", network_header=HEADER_UNSET)),
    ],
    ids=["ip_rcv-network-header", "udp_rcv-no-iph"],
)
def test_contradicting_headers_are_one_counted_drop(where: str, m: skb_pb2.SkBuff) -> None:
    """Headers a neighbour set where its layer never would: the skb is not used, and
    counted as one drop."""
    skb = SkBuff.from_proto(m)

    async def main() -> None:
        h = Host()
        await h.bind()
        if where == "ip_rcv":
            h.ip.ip_rcv(skb)
            h._up()
        else:
            h.udp.udp_rcv(skb)
        assert (await h.received(), h.drops()) == ([], 1)

    asyncio.run(main())
