"""The NIC's transmit path as logic: ARP resolution and answers, the qdisc bound, the
TX ring, checksum and segmentation offload in "hardware" and in software, transmit
timestamps, netem on the egress, link control."""

from __future__ import annotations

from services.core.checksum import csum_partial, csum_tcpudp_nofold, ip_fast_csum
from services.core.dropreason import SkbDropReason
from services.core.skbuff import SKB_GSO_UDP_L4, SKBTX_HW_TSTAMP, SKBTX_SCHED_TSTAMP, SKBTX_SW_TSTAMP, SkBuff
from services.core.socket_uapi import SCM_TSTAMP_SCHED, SCM_TSTAMP_SND
from services.core.wire.arp import ArpRepr
from services.core.wire.ethernet import ETH_HLEN, ETH_P_ARP
from services.core.wire.ipv4 import IPPROTO_UDP
from services.nic.device import HWTSTAMP_FILTER_NONE, HWTSTAMP_TX_ON, NetDevice
from services.nic.layer import NicLayer
from services.nic.neigh import NUD_PERMANENT
from services.nic.netem import NetemConfig
from tests.services.nicframes import (
    ALICE,
    ALICE_MAC,
    BOB,
    BOB_MAC,
    BROADCAST,
    ETH0,
    Clock,
    eth_frame,
    new_layer,
    partial_csum,
    tx_skb,
    udp_packet,
)

ARP_REQUEST = 1
ARP_REPLY = 2


def eth0(layer: NicLayer, carrier: bool = True) -> NetDevice:
    dev = layer.devices[ETH0]
    layer.set_carrier(dev, carrier)
    return dev


def arp_frame(op: int, sha: bytes, spa: int, tha: bytes, tpa: int, dst: bytes) -> bytes:
    body = bytearray(28)
    ArpRepr(operation=op, sender_hw=sha, sender_ip=spa, target_hw=tha, target_ip=tpa).emit(body)
    return eth_frame(bytes(body), dst=dst, src=sha, ethertype=ETH_P_ARP)


def resolved(layer: NicLayer) -> NetDevice:
    """eth0 with carrier and bob in the neighbour table."""
    dev = eth0(layer)
    assert layer.neigh.add(dev, BOB, BOB_MAC, NUD_PERMANENT) == 0
    return dev


def padded(frame: bytes) -> bytes:
    """An Ethernet MAC pads short frames to ETH_ZLEN (60 bytes without the FCS)."""
    return frame + bytes(max(0, 60 - len(frame)))


def checksums_ok(frame: bytes) -> bool:
    ip = frame[ETH_HLEN:]
    ihl = (ip[0] & 0xF) * 4
    if ip_fast_csum(ip[:ihl]) != 0:
        return False
    tot = int.from_bytes(ip[2:4], "big")
    udp = ip[ihl:tot]
    src, dst = int.from_bytes(ip[12:16], "big"), int.from_bytes(ip[16:20], "big")
    s = csum_partial(udp, csum_tcpudp_nofold(src, dst, len(udp), IPPROTO_UDP))
    return (s & 0xFFFF) == 0xFFFF or s == 0xFFFF


def test_arp_resolves_then_the_held_packet_goes_out() -> None:
    layer = new_layer()
    dev = eth0(layer)
    packet = udp_packet(b"hello bob", src=ALICE, dst=BOB)
    layer.dev_queue_xmit(tx_skb(packet))
    # The packet waits; a broadcast who-has 10.0.0.2 tell 10.0.0.1 went out.
    [request] = layer.take_tx(dev)
    assert request == eth_frame(
        bytes(
            _arp(ARP_REQUEST, ALICE_MAC, ALICE, bytes(6), BOB),
        ),
        dst=BROADCAST,
        src=ALICE_MAC,
        ethertype=ETH_P_ARP,
    ) + bytes(60 - 42)
    # Bob answers; the held packet leaves with his address.
    layer.rx_frames(dev, [arp_frame(ARP_REPLY, BOB_MAC, BOB, ALICE_MAC, ALICE, ALICE_MAC)])
    assert layer.poll()[0] == []
    [frame] = layer.take_tx(dev)
    assert frame == padded(eth_frame(packet, dst=BOB_MAC, src=ALICE_MAC))
    assert (dev.stats.tx_packets, dev.stats.tx_bytes) == (2, 60 + 60)


def _arp(op: int, sha: bytes, spa: int, tha: bytes, tpa: int) -> bytes:
    body = bytearray(28)
    ArpRepr(operation=op, sender_hw=sha, sender_ip=spa, target_hw=tha, target_ip=tpa).emit(body)
    return bytes(body)


def test_arp_request_for_our_address_is_answered() -> None:
    layer = new_layer()
    dev = eth0(layer)
    layer.rx_frames(dev, [arp_frame(ARP_REQUEST, BOB_MAC, BOB, bytes(6), ALICE, BROADCAST)])
    assert layer.poll()[0] == []
    [reply] = layer.take_tx(dev)
    assert reply == eth_frame(
        _arp(ARP_REPLY, ALICE_MAC, ALICE, BOB_MAC, BOB), dst=BOB_MAC, src=ALICE_MAC, ethertype=ETH_P_ARP
    ) + bytes(18)


def test_no_carrier_drops_in_the_noop_qdisc() -> None:
    layer = new_layer()
    dev = eth0(layer, carrier=False)
    layer.dev_queue_xmit(tx_skb(udp_packet(b"x", src=ALICE, dst=BOB)))
    assert dev.stats.tx_dropped == 1
    assert layer.drops.get(SkbDropReason.QDISC_DROP, "noop_enqueue") == 1


def test_qdisc_bounded_by_txqueuelen_behind_a_full_tx_ring() -> None:
    layer = new_layer()
    dev = resolved(layer)
    assert layer.set_ring(dev, None, 2) == (0, "")
    assert layer.set_link(dev, txqueuelen=3) == (0, "")
    for i in range(8):
        layer.dev_queue_xmit(tx_skb(udp_packet(bytes([i]), src=ALICE, dst=BOB)))
    # 2 on the ring, 3 in pfifo_fast, 3 dropped by the qdisc.
    assert len(layer.tx_ring[ETH0]) == 2
    assert len(layer.qdiscs[ETH0].q) == 3
    assert layer.drops.get(SkbDropReason.QDISC_DROP, "pfifo_fast_enqueue") == 3
    assert layer.qdiscs[ETH0].stats.drops == 3
    # The qdisc found the ring full with skbs waiting for each of the three it holds.
    assert dev.driver.tx_ring_full == 3
    # The link takes the ring; TX completion refills it from the qdisc.
    assert [f[ETH_HLEN + 28] for f in layer.take_tx(dev)] == [0, 1]
    assert [f[ETH_HLEN + 28] for f in layer.take_tx(dev)] == [2, 3]
    assert [f[ETH_HLEN + 28] for f in layer.take_tx(dev)] == [4]
    assert layer.take_tx(dev) == []
    assert dev.stats.tx_packets == 5


def test_checksum_offload_in_hardware_and_in_software() -> None:
    packet = udp_packet(b"checksum me", src=ALICE, dst=BOB)
    frames = []
    for tx_csum in (True, False):
        layer = new_layer()
        dev = resolved(layer)
        assert dev.features.set({"tx-checksumming": tx_csum}) is None
        layer.dev_queue_xmit(partial_csum(tx_skb(packet)))
        [frame] = layer.take_tx(dev)
        frames.append(frame)
        assert (dev.driver.tx_csum_offload, dev.driver.tx_csum_sw) == ((1, 0) if tx_csum else (0, 1))
    # Both put exactly what udp_send_skb's software checksum gives on the wire.
    assert frames[0] == frames[1] == padded(eth_frame(packet, dst=BOB_MAC, src=ALICE_MAC))


def gso_skb(payload: bytes, gso_size: int, ident: int = 0x1234) -> SkBuff:
    """udp_send_skb for a UDP_SEGMENT send: one IP packet over the whole payload,
    CHECKSUM_PARTIAL, gso_size and SKB_GSO_UDP_L4."""
    skb = partial_csum(tx_skb(udp_packet(payload, src=ALICE, dst=BOB, ident=ident), headroom=64))
    skb.gso_size = gso_size
    skb.gso_type = SKB_GSO_UDP_L4
    skb.gso_segs = -(-len(payload) // gso_size)
    return skb


def test_gso_segmented_by_hardware_or_software_gives_the_same_frames() -> None:
    payload = bytes(range(256)) * 16  # 4096 bytes → 1400 + 1400 + 1296
    results = []
    for udp_seg in (True, False):
        layer = new_layer()
        dev = resolved(layer)
        assert dev.features.set({"tx-udp-segmentation": udp_seg}) is None
        layer.dev_queue_xmit(gso_skb(payload, 1400))
        frames = layer.take_tx(dev)
        results.append(frames)
        assert (dev.driver.tx_gso_hw_segments, dev.driver.tx_gso_sw_segments) == (
            (3, 0) if udp_seg else (0, 3)
        )
        assert dev.stats.tx_packets == 3
    hw, sw = results
    assert hw == sw
    for i, (frame, chunk) in enumerate(
        zip(hw, (payload[:1400], payload[1400:2800], payload[2800:]), strict=True)
    ):
        ip = frame[ETH_HLEN:]
        assert int.from_bytes(ip[4:6], "big") == 0x1234 + i
        assert int.from_bytes(ip[2:4], "big") == 28 + len(chunk)
        assert ip[28:] == chunk
        assert checksums_ok(frame)


def test_tx_checksumming_off_turns_udp_segmentation_off() -> None:
    layer = new_layer()
    dev = resolved(layer)
    assert dev.features.set({"tx": False}) is None
    shown = {f.name: f.active for f in dev.features.show()}
    assert (shown["tx-checksumming"], shown["tx-udp-segmentation"]) == (False, False)
    assert dev.features.set({"tx": True}) is None
    shown = {f.name: f.active for f in dev.features.show()}
    assert shown["tx-udp-segmentation"] is True
    assert dev.features.set({"no-such-feature": True}) == "unknown feature 'no-such-feature'"


def test_tx_timestamps_sched_software_and_hardware() -> None:
    clock = Clock()
    layer = new_layer(clock)
    dev = resolved(layer)
    skb = tx_skb(udp_packet(b"stamp", src=ALICE, dst=BOB))
    skb.sk = 7
    skb.tskey = 3
    skb.tx_flags = SKBTX_SCHED_TSTAMP | SKBTX_SW_TSTAMP
    layer.dev_queue_xmit(skb)
    stamps = layer.tx_timestamps
    assert [(c.sk, c.tskey, t, c.tstamp, c.hwtstamp) for c, t in stamps] == [
        (7, 3, SCM_TSTAMP_SCHED, clock.now, 0),
        (7, 3, SCM_TSTAMP_SND, clock.now, 0),
    ]
    layer.tx_timestamps = []
    # Hardware stamps only once SIOCSHWTSTAMP turned them on.
    skb = tx_skb(udp_packet(b"hw", src=ALICE, dst=BOB))
    skb.sk, skb.tx_flags = 7, SKBTX_HW_TSTAMP
    layer.dev_queue_xmit(skb)
    assert layer.tx_timestamps == []
    assert layer.set_hwtstamp(dev, HWTSTAMP_TX_ON, HWTSTAMP_FILTER_NONE) == (0, "")
    skb = tx_skb(udp_packet(b"hw", src=ALICE, dst=BOB))
    skb.sk, skb.tx_flags = 7, SKBTX_HW_TSTAMP
    layer.dev_queue_xmit(skb)
    [(c, t)] = layer.tx_timestamps
    assert (t, c.tstamp, c.hwtstamp) == (SCM_TSTAMP_SND, 0, clock.now)
    assert dev.driver.tx_hwtstamps == 1


def test_netem_loss_on_the_egress_is_counted() -> None:
    layer = new_layer()
    dev = resolved(layer)
    assert layer.set_netem(dev, NetemConfig(loss_pct=100.0, seed=1)) == (0, "")
    for i in range(5):
        layer.dev_queue_xmit(tx_skb(udp_packet(bytes([i]), src=ALICE, dst=BOB)))
    assert layer.take_tx(dev) == []
    assert layer.netem[ETH0].stats.lost == 5
    assert layer.drops.get(SkbDropReason.QDISC_DROP, "netem_enqueue") == 5
    assert layer.set_netem(dev, NetemConfig(loss_pct=101.0))[0] == 22
    assert layer.set_netem(layer.devices[1], NetemConfig())[0] == 95
    assert layer.set_netem(dev, None) == (0, "")
    layer.dev_queue_xmit(tx_skb(udp_packet(b"through", src=ALICE, dst=BOB)))
    assert len(layer.take_tx(dev)) == 1


def test_netem_delay_holds_frames_until_their_time() -> None:
    clock = Clock()
    layer = new_layer(clock)
    dev = resolved(layer)
    assert layer.set_netem(dev, NetemConfig(delay_us=500, seed=1)) == (0, "")
    layer.dev_queue_xmit(tx_skb(udp_packet(b"later", src=ALICE, dst=BOB)))
    assert layer.take_tx(dev) == []
    assert layer.next_netem_deadline() == clock.now + 500_000
    clock.advance_us(500)
    layer.netem_run(dev)
    assert len(layer.take_tx(dev)) == 1


def test_mtu_and_link_down() -> None:
    layer = new_layer()
    dev = resolved(layer)
    assert layer.set_link(dev, mtu=67)[0] == 22
    assert layer.set_link(dev, mtu=9001)[0] == 22
    assert layer.set_link(dev, mtu=9000) == (0, "")
    assert layer.link_events == {ETH0}
    assert layer.set_link(dev, up=False) == (0, "")
    layer.dev_queue_xmit(tx_skb(udp_packet(b"down", src=ALICE, dst=BOB)))
    assert dev.stats.tx_dropped == 1
    assert layer.drops.get(SkbDropReason.DEV_READY, "__dev_queue_xmit") == 1
