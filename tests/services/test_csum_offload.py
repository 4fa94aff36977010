"""CHECKSUM_PARTIAL and GSO skbs from the transport through IP and the NIC, and the
device features the routes carry for the transport to decide on them.

The kernel, on this machine (Linux 6.18.44): `tcpdump -i lo -vv -X udp` on a datagram
sent to 127.0.0.1 shows the partial checksum, "bad udp cksum 0xfe20 -> 0xd98f!", and
so does tcpdump on the sending veth ("bad udp cksum 0x15ef -> 0x0b26!"): the taps see
the skb as the driver gets it, the hardware (or the peer, for lo and veth) finishes the
sum. The two packets below are what tcpdump printed, byte for byte.
"""

from __future__ import annotations

import struct

from services.core.netdev import NETIF_F_GSO_UDP_L4, NETIF_F_HW_CSUM, NETIF_F_SG
from services.core.skbuff import (
    CHECKSUM_NONE,
    CHECKSUM_PARTIAL,
    SKB_GSO_UDP_L4,
    Dst,
    IpCork,
    SkBuff,
    alloc_skb,
)
from services.ip.fib import RT_SCOPE_UNIVERSE
from services.nic.capture import Tap
from services.nic.layer import NicLayer
from services.nic.neigh import NUD_PERMANENT
from stackemu.ip.v1 import ip_pb2
from stackemu.nic.v1 import nic_pb2
from tests.services.nicframes import (
    ALICE_MAC,
    BOB,
    BOB_MAC,
    ETH0,
    LO,
    eth_frame,
    new_layer,
    tx_skb,
)
from tests.services.test_ip import ip_service, rfc1071
from tests.services.test_ip_paths import PEER0, host

# 127.0.0.1:58470 → 127.0.0.1:9 "hello", as udp_send_skb left it for lo.
KERNEL_LO = bytes.fromhex(
    "45000021abc040004011 9109 7f000001 7f000001 e4660009 000d fe20 68656c6c6f".replace(" ", "")
)
# 10.231.0.1:39682 → 10.231.0.2:9 "hello" on the veth: check 0x15ef, 0x0b26 on the wire.
KERNEL_VETH = bytes.fromhex(
    "4500002175f540004011 af06 0ae70001 0ae70002 9b020009 000d 15ef 68656c6c6f".replace(" ", "")
)


def partial(packet: bytes, ifindex: int, nexthop: int) -> SkBuff:
    """The kernel's packet as IP hands it to the device: CHECKSUM_PARTIAL from the UDP
    header, the pseudo-header sum already in the check field."""
    skb = tx_skb(packet, ifindex=ifindex, nexthop=nexthop)
    skb.ip_summed = CHECKSUM_PARTIAL
    skb.csum_start = skb.data + 20
    skb.csum_offset = 6
    return skb


def tcpdump(layer: NicLayer) -> Tap:
    """tcpdump -i any on the host."""
    tap = Tap(0, lambda: None)
    layer.taps.add(tap)
    return tap


def frames(tap: Tap) -> list[tuple[int, bytes]]:
    return [(c.pkt_type, c.frame) for c in tap.q]


def udp_sum_ok(ip_packet: bytes) -> bool:
    ihl = (ip_packet[0] & 0x0F) * 4
    udp = ip_packet[ihl:]
    pseudo = ip_packet[12:20] + struct.pack("!BBH", 0, 17, len(udp))
    return rfc1071(pseudo + udp) == 0


# The NIC.


def test_the_tap_on_the_sending_device_sees_the_partial_checksum_the_wire_the_full_one() -> None:
    layer = new_layer()
    dev = layer.devices[ETH0]
    layer.set_carrier(dev, True)
    nexthop = int.from_bytes(KERNEL_VETH[16:20], "big")
    assert layer.neigh.add(dev, nexthop, BOB_MAC, NUD_PERMANENT) == 0
    tap = tcpdump(layer)
    layer.dev_queue_xmit(partial(KERNEL_VETH, ETH0, nexthop))
    [wire] = layer.take_tx(dev)
    # The tap: the kernel's bytes (bad udp cksum 0x15ef), unpadded.
    assert frames(tap) == [(4, eth_frame(KERNEL_VETH, dst=BOB_MAC, src=ALICE_MAC))]
    # The wire: 0x0b26, what tcpdump said the checksum should be; padded to ETH_ZLEN.
    fixed = KERNEL_VETH[:26] + b"\x0b\x26" + KERNEL_VETH[28:]
    assert wire == eth_frame(fixed, dst=BOB_MAC, src=ALICE_MAC) + bytes(60 - 47)
    assert udp_sum_ok(fixed)
    assert dev.driver.tx_csum_offload == 1


def test_without_tx_checksumming_the_tap_already_sees_the_software_checksum() -> None:
    layer = new_layer()
    dev = layer.devices[ETH0]
    layer.set_carrier(dev, True)
    nexthop = int.from_bytes(KERNEL_VETH[16:20], "big")
    assert layer.neigh.add(dev, nexthop, BOB_MAC, NUD_PERMANENT) == 0
    assert layer.set_features(dev, {"tx": False}) is None
    tap = tcpdump(layer)
    layer.dev_queue_xmit(partial(KERNEL_VETH, ETH0, nexthop))
    fixed = KERNEL_VETH[:26] + b"\x0b\x26" + KERNEL_VETH[28:]
    # validate_xmit_skb() ran skb_checksum_help() before the tap.
    assert frames(tap) == [(4, eth_frame(fixed, dst=BOB_MAC, src=ALICE_MAC))]
    assert dev.driver.tx_csum_sw == 1


def test_a_hardware_gso_skb_is_one_frame_to_the_tap_and_three_on_the_wire() -> None:
    from tests.services.test_nic_tx import gso_skb

    layer = new_layer()
    dev = layer.devices[ETH0]
    layer.set_carrier(dev, True)
    assert layer.neigh.add(dev, BOB, BOB_MAC, NUD_PERMANENT) == 0
    tap = tcpdump(layer)
    skb = gso_skb(bytes(range(256)) * 16, 1400)
    whole = skb.payload()
    layer.dev_queue_xmit(skb)
    # As tcpdump shows a TSO/USO send: the whole super-packet, checksum partial.
    assert frames(tap) == [(4, eth_frame(whole, dst=BOB_MAC, src=ALICE_MAC))]
    assert len(layer.take_tx(dev)) == 3


def test_loopback_hands_checksum_partial_up_unchanged() -> None:
    layer = new_layer()
    tap = tcpdump(layer)
    layer.dev_queue_xmit(partial(KERNEL_LO, LO, 0x7F000001))
    [up], _ = layer.poll()
    # The receiver trusts it (skb_csum_unnecessary() is true for CHECKSUM_PARTIAL): the
    # check field keeps the pseudo-header sum 0xfe20.
    assert up.ip_summed == CHECKSUM_PARTIAL
    assert up.payload() == KERNEL_LO
    assert (up.csum_start - up.data, up.csum_offset) == (20, 6)
    # tcpdump -i lo: the outgoing copy and the incoming one, both "bad udp cksum 0xfe20".
    frame = bytes(12) + b"\x08\x00" + KERNEL_LO
    assert frames(tap) == [(4, frame), (0, frame)]


# IP.


def out_skb(payload_len: int, *, gso_size: int = 0, mtu: int | None = None) -> tuple[SkBuff, object]:
    """udp_send_skb's CHECKSUM_PARTIAL skb to PEER0 from the test host."""
    ip = host()
    dst, saddr = ip.router.output(PEER0)
    if mtu is not None:
        dst = Dst(dst.ifindex, dst.nexthop, mtu, dst.rt_type, dst.flags, dst.dev_features)
    payload = bytes((i * 7 + 3) & 0xFF for i in range(payload_len))
    ulen = 8 + payload_len
    skb = alloc_skb(ulen, 128)
    # The check field: the folded pseudo-header sum (~csum_tcpudp_magic(..., 0)).
    pseudo = struct.pack("!IIBBH", saddr, PEER0, 0, 17, ulen)
    psum = (~rfc1071(pseudo)) & 0xFFFF
    skb.put_data(struct.pack("!HHHH", 40000, 9000, ulen, psum) + payload)
    skb.reset_transport_header()
    skb.ip_summed = CHECKSUM_PARTIAL
    skb.csum_start = skb.data
    skb.csum_offset = 6
    if gso_size:
        skb.gso_size, skb.gso_type = gso_size, SKB_GSO_UDP_L4
        skb.gso_segs = -(-payload_len // gso_size)
    skb.cork = IpCork(saddr=saddr, daddr=PEER0, protocol=17, pmtudisc=0)
    skb.dst = dst
    ip.ip_send_skb(skb)
    return skb, ip


def test_a_partial_datagram_over_the_mtu_is_checksummed_before_fragmenting() -> None:
    _, ip = out_skb(2000)
    frags = ip.to_device  # type: ignore[attr-defined]
    assert [f.len for f in frags] == [1500, 548]
    assert [f.ip_summed for f in frags] == [CHECKSUM_NONE, CHECKSUM_NONE]
    first, second = (f.payload() for f in frags)
    whole = first[:20] + first[20:] + second[20:]
    whole = whole[:2] + struct.pack("!H", len(whole)) + whole[4:]
    assert udp_sum_ok(whole)


def test_a_partial_datagram_that_fits_goes_to_the_device_partial() -> None:
    skb, ip = out_skb(100)
    [out] = ip.to_device  # type: ignore[attr-defined]
    assert out is skb and out.ip_summed == CHECKSUM_PARTIAL
    # csum_start still at the UDP header, behind the 20-byte header IP pushed.
    assert out.csum_start - out.data == 20


def test_a_gso_skb_whose_segments_fit_is_left_whole_for_the_device() -> None:
    skb, ip = out_skb(4000, gso_size=1472)
    [out] = ip.to_device  # type: ignore[attr-defined]
    assert out is skb
    assert (out.len, out.gso_size, out.gso_segs, out.ip_summed) == (4028, 1472, 3, CHECKSUM_PARTIAL)


def test_a_gso_skb_whose_segments_exceed_the_mtu_is_segmented_then_fragmented() -> None:
    _, ip = out_skb(3000, gso_size=1472, mtu=1000)
    frags = ip.to_device  # type: ignore[attr-defined]
    # Segments of 1472 + 1472 + 56 bytes; each through ip_fragment (976-byte pieces).
    assert [f.len for f in frags] == [996, 524, 996, 524, 84]
    assert all(f.ip_summed == CHECKSUM_NONE and not f.gso_size for f in frags)
    # Each segment, reassembled, is a datagram with its own length and a right sum.
    for a, b in ((frags[0], frags[1]), (frags[2], frags[3])):
        seg = a.payload() + b.payload()[20:]
        assert struct.unpack("!H", seg[24:26])[0] == 8 + 1472
        assert udp_sum_ok(seg)
    assert udp_sum_ok(frags[4].payload())


# Device features in routes.


def test_routes_carry_the_output_devices_features_and_a_change_renews_them() -> None:
    ip = host()
    eth0 = NETIF_F_SG | NETIF_F_HW_CSUM | NETIF_F_GSO_UDP_L4
    assert ip.router.set_devices([(2, "eth0", 1500, eth0, 0x1043)])
    genid = ip.fib.genid
    dst, _ = ip.router.output(PEER0)
    assert dst.dev_features == eth0
    # Nothing new: no change, no flush.
    assert not ip.router.set_devices([(2, "eth0", 1500, eth0, 0x1043)])
    assert ip.fib.genid == genid
    # ethtool -K eth0 tx off: HW_CSUM and (netdev_fix_features) GSO_UDP_L4 go.
    assert ip.router.set_devices([(2, "eth0", 1500, NETIF_F_SG, 0x1043)])
    assert ip.fib.genid == genid + 1
    assert ip.router.output(PEER0)[0].dev_features == NETIF_F_SG
    # A flags change alone is news for the transport but flushes nothing.
    assert ip.router.set_devices([(2, "eth0", 1500, NETIF_F_SG, 0x1003)])
    assert ip.fib.genid == genid + 1
    assert ip.router.output(PEER0, scope=RT_SCOPE_UNIVERSE)[0].dev_features == NETIF_F_SG


def test_ethtool_tx_off_reaches_the_transport_through_ip(run_async, grpc_test_server, poll_until) -> None:
    eth0_on = NETIF_F_SG | NETIF_F_HW_CSUM | NETIF_F_GSO_UDP_L4

    async def scenario() -> None:
        async with ip_service(grpc_test_server, poll_until) as ip:
            layer = ip.service.servicer.layer
            # The first message had every device (the fake NIC's links carry no
            # features); now the NIC reports eth0's, then `ethtool -K eth0 tx off`.
            link = nic_pb2.Link(ifindex=ETH0, name="eth0", mtu=1500, flags=0x1003, features=eth0_on)
            genid = layer.fib.genid
            ip.nic.send_response(nic_pb2.AttachResponse(links=[link]))
            resp = await ip.udp.read()
            assert [(d.name, d.features) for d in resp.devices] == [("lo", 0), ("eth0", eth0_on)]
            assert resp.fib_genid == genid + 1
            link.features = NETIF_F_SG
            ip.nic.send_response(nic_pb2.AttachResponse(links=[link]))
            resp = await ip.udp.read()
            assert resp.devices[1] == ip_pb2.Device(
                ifindex=ETH0, name="eth0", mtu=1500, features=NETIF_F_SG, flags=0x1003
            )
            assert resp.fib_genid == genid + 2
            route = await ip.stub.RouteOutput(ip_pb2.RouteOutputRequest(daddr=0x0A000007))
            assert route.dst.dev_features == NETIF_F_SG
            assert route.fib_genid == genid + 2

    run_async(scenario())


def test_the_nic_reports_a_feature_change_as_a_link_change(run_async, grpc_test_server) -> None:
    from tests.services.test_nic import IpSide, nic_service

    async def scenario() -> None:
        async with nic_service(grpc_test_server) as nic:
            side = IpSide(nic.stub)
            await side.send()
            resp = await nic.stub.SetFeatures(
                nic_pb2.SetFeaturesRequest(device="eth0", features={"tx": False})
            )
            assert resp.errno == 0
            msg = await side.call.read()
            [link] = msg.links
            # SG, GSO and GRO stay; HW_CSUM and GSO_UDP_L4 went.
            assert (link.name, link.features) == ("eth0", (1 << 0) | (1 << 11) | (1 << 14))
            # Asking again changes nothing and says nothing.
            await nic.stub.SetFeatures(nic_pb2.SetFeaturesRequest(device="eth0", features={"tx": False}))
            assert nic.layer.link_events == set()
            side.close()

    run_async(scenario())
