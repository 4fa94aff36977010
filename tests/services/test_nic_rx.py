"""The NIC's receive path as logic, with a clock the test moves: the RX ring and its
overflow, the IRQ masked while NAPI polls, interrupt coalescing, the budget and
time_squeeze, pkt_type and the MAC filter, timestamps, GRO on and off, RPS."""

from __future__ import annotations

from typing import Any

from services.core.dropreason import SkbDropReason
from services.core.skbuff import (
    PACKET_BROADCAST,
    PACKET_HOST,
    PACKET_MULTICAST,
    PACKET_OTHERHOST,
    SKB_GSO_UDP_L4,
)
from services.core.wire.ethernet import ETH_HLEN
from services.nic.control import ethtool_stats
from services.nic.device import HWTSTAMP_FILTER_ALL, HWTSTAMP_TX_OFF, NetDevice
from services.nic.layer import NicLayer
from tests.services.nicframes import (
    ALICE_MAC,
    BROADCAST,
    ETH0,
    OTHER_MAC,
    Clock,
    eth_frame,
    new_layer,
    tx_skb,
    udp_frame,
    udp_packet,
)


def eth0(layer: NicLayer) -> NetDevice:
    return layer.devices[ETH0]


def frames(n: int, size: int = 10, **kw: Any) -> list[bytes]:
    return [udp_frame(bytes([i]) * size, ident=i, **kw) for i in range(n)]


def no_gro(layer: NicLayer) -> NicLayer:
    assert eth0(layer).features.set({"gro": False}) is None
    return layer


def test_full_ring_drops_and_counts_rx_missed_errors() -> None:
    layer = no_gro(new_layer())
    dev = eth0(layer)
    assert layer.set_ring(dev, 4, None) == (0, "")
    layer.rx_frames(dev, frames(10))
    assert dev.napi is not None and len(dev.napi.ring) == 4
    assert dev.stats.rx_missed_errors == 6
    assert layer.drops.get(SkbDropReason.FULL_RING) == 6
    up, more = layer.poll()
    assert (len(up), more) == (4, False)
    assert [s.payload()[-1] for s in up] == [0, 1, 2, 3]
    # Room again: the next frames land.
    layer.rx_frames(dev, frames(2))
    assert len(layer.poll()[0]) == 2
    assert (dev.stats.rx_packets, dev.stats.rx_missed_errors) == (6, 6)


def test_ring_size_limits() -> None:
    layer = new_layer()
    dev = eth0(layer)
    assert layer.set_ring(dev, 4097, None)[0] == 22  # EINVAL above the pre-set maximum
    assert layer.set_ring(dev, 0, None)[0] == 22
    assert layer.set_ring(layer.devices[1], 64, None)[0] == 95  # lo: EOPNOTSUPP
    assert layer.set_ring(dev, 4096, 4096) == (0, "")


def test_irq_masked_during_poll_and_unmasked_after() -> None:
    layer = no_gro(new_layer())
    dev = eth0(layer)
    napi = dev.napi
    assert napi is not None
    assert layer.set_link(dev, napi_weight=2) == (0, "")
    layer.rx_frames(dev, frames(3))
    # The hard IRQ fired once, masked the line and scheduled NAPI.
    assert (napi.irqs, napi.irq_masked, napi.scheduled) == (1, True, True)
    # More frames while masked raise no interrupt.
    layer.rx_frames(dev, frames(2))
    assert napi.irqs == 1
    # One softirq polls each NAPI once: weight 2 used up, it stays scheduled and masked.
    up, more = layer.poll()
    assert (len(up), more, napi.irq_masked, napi.scheduled) == (2, True, True, True)
    up, more = layer.poll()
    assert (len(up), more, napi.irq_masked) == (2, True, True)
    # The last frame: the poll ends under its weight, napi_complete_done unmasks.
    up, more = layer.poll()
    assert (len(up), more, napi.irq_masked, napi.scheduled) == (1, False, False, False)
    assert (dev.driver.rx_napi_polls, dev.driver.rx_napi_complete, napi.irqs) == (3, 1, 1)
    # The next frame interrupts again.
    layer.rx_frames(dev, frames(1))
    assert (napi.irqs, napi.irq_masked) == (2, True)


def test_budget_exhaustion_counts_time_squeeze_and_reschedules() -> None:
    layer = no_gro(new_layer(netdev_budget=3))
    dev = eth0(layer)
    assert layer.set_link(dev, napi_weight=2) == (0, "")
    # lo's backlog and eth0's NAPI both have work.
    layer.rx_frames(dev, frames(4))
    for skb_packet in (udp_packet(b"lo1"), udp_packet(b"lo2")):
        layer.dev_queue_xmit(tx_skb(skb_packet, ifindex=1, nexthop=0))
    sd = layer.softnet.cpus[0]
    up, more = layer.poll()
    # eth0's poll (2) then the backlog's (2 of dev_rx_weight 64): budget 3 spent.
    assert (len(up), more, sd.time_squeeze) == (4, True, 1)
    # eth0's last 2: its poll used the whole weight, so it stays scheduled even though
    # the ring is now empty (a driver cannot know); the next softirq completes it.
    up, more = layer.poll()
    assert (len(up), more, sd.time_squeeze) == (2, True, 1)
    up, more = layer.poll()
    assert (len(up), more, sd.time_squeeze) == (0, False, 1)
    assert sd.processed == 6


def test_time_limit_counts_time_squeeze() -> None:
    clock = Clock()
    layer = no_gro(new_layer(clock))
    layer.sysctl.set("net.core.netdev_budget_usecs", 2000)
    dev = eth0(layer)
    assert layer.set_link(dev, napi_weight=1) == (0, "")
    layer.rx_frames(dev, frames(3))
    sd = layer.softnet.cpus[0]
    # Each clock read during the poll is 3 ms later: the limit passes after one poll.
    real = layer.softnet._clock

    def slow() -> int:
        clock.advance_us(3000)
        return real()

    layer.softnet._clock = slow
    up, more = layer.poll()
    assert (len(up), more, sd.time_squeeze) == (1, True, 1)


def test_coalescing_rx_usecs_delays_the_irq() -> None:
    clock = Clock()
    layer = no_gro(new_layer(clock))
    dev = eth0(layer)
    napi = dev.napi
    assert napi is not None
    assert layer.set_coalesce(dev, 100, None) == (0, "")
    layer.rx_frames(dev, frames(1))
    assert napi.irqs == 0
    assert layer.next_irq_deadline() == clock.now + 100_000
    clock.advance_us(99)
    layer.check_irqs()
    assert napi.irqs == 0
    clock.advance_us(1)
    layer.check_irqs()
    assert (napi.irqs, napi.scheduled) == (1, True)
    assert len(layer.poll()[0]) == 1


def test_coalescing_rx_frames_fires_at_the_count() -> None:
    clock = Clock()
    layer = no_gro(new_layer(clock))
    dev = eth0(layer)
    napi = dev.napi
    assert napi is not None
    assert layer.set_coalesce(dev, 1000, 3) == (0, "")
    layer.rx_frames(dev, frames(2))
    assert napi.irqs == 0
    layer.rx_frames(dev, frames(1))
    assert napi.irqs == 1
    assert layer.set_coalesce(layer.devices[1], 1, 1)[0] == 95


def test_pkt_type_mac_filter_and_promiscuous_mode() -> None:
    layer = no_gro(new_layer())
    dev = eth0(layer)
    packet = udp_packet(b"x")
    layer.rx_frames(
        dev,
        [
            eth_frame(packet, dst=ALICE_MAC),
            eth_frame(packet, dst=BROADCAST),
            eth_frame(packet, dst=bytes.fromhex("01005e000001")),
            eth_frame(packet, dst=OTHER_MAC),
        ],
    )
    up, _ = layer.poll()
    assert [s.pkt_type for s in up] == [PACKET_HOST, PACKET_BROADCAST, PACKET_MULTICAST]
    # The MAC's unicast filter kept the frame for another host out.
    assert dev.driver.rx_mac_filtered == 1
    assert layer.drops.get(SkbDropReason.OTHERHOST, "rx mac filter") == 1
    assert (dev.stats.rx_packets, dev.stats.multicast) == (3, 1)
    # Promiscuous: it is delivered as OTHERHOST (and IP drops it).
    assert layer.set_link(dev, promisc=True) == (0, "")
    layer.rx_frames(dev, [eth_frame(packet, dst=OTHER_MAC)])
    [skb] = layer.poll()[0]
    assert skb.pkt_type == PACKET_OTHERHOST
    assert skb.payload() == packet


def test_skb_fields_timestamps_and_hw_rx_timestamp() -> None:
    clock = Clock()
    layer = no_gro(new_layer(clock))
    dev = eth0(layer)
    frame = udp_frame(b"stamp")
    layer.rx_frames(dev, [frame])
    clock.advance_us(5)
    [skb] = layer.poll()[0]
    assert skb.payload() == frame[ETH_HLEN:]
    assert bytes(skb.head[skb.mac_header : skb.data]) == frame[:ETH_HLEN]
    assert (skb.network_header, skb.skb_iif, skb.dev_ifindex, skb.protocol) == (skb.data, 2, 2, 0x0800)
    # skb->tstamp at netif_receive_skb; no hardware stamp unless SIOCSHWTSTAMP asked.
    assert (skb.tstamp, skb.hwtstamp) == (clock.now, 0)
    assert layer.set_hwtstamp(dev, HWTSTAMP_TX_OFF, HWTSTAMP_FILTER_ALL) == (0, "")
    arrival = clock.now
    layer.rx_frames(dev, [frame])
    clock.advance_us(7)
    [skb] = layer.poll()[0]
    assert (skb.hwtstamp, skb.tstamp) == (arrival, clock.now)
    assert layer.set_hwtstamp(dev, 9, 0)[0] == 34  # ERANGE


def test_runt_and_oversized_frames_are_errors() -> None:
    layer = no_gro(new_layer())
    dev = eth0(layer)
    layer.rx_frames(dev, [b"\x00" * 10, udp_frame(b"z" * 1473)])
    assert layer.poll()[0] == []
    assert dev.stats.rx_errors == 2
    assert layer.drops.get(SkbDropReason.PKT_TOO_SMALL) == 1
    assert layer.drops.get(SkbDropReason.PKT_TOO_BIG) == 1


def test_unknown_ethertype_is_rx_dropped() -> None:
    layer = no_gro(new_layer())
    dev = eth0(layer)
    layer.rx_frames(dev, [eth_frame(b"\x60" + bytes(47), ethertype=0x86DD)])
    assert layer.poll()[0] == []
    assert (dev.stats.rx_dropped, dev.stats.rx_nohandler) == (1, 0)
    assert layer.drops.get(SkbDropReason.UNHANDLED_PROTO) == 1


def test_gro_merges_one_flow_and_not_with_gro_off() -> None:
    layer = new_layer()
    dev = eth0(layer)
    payloads = [bytes([i]) * 1000 for i in range(4)]
    flow = [udp_frame(p, ident=i) for i, p in enumerate(payloads)]
    layer.rx_frames(dev, flow)
    [merged] = layer.poll()[0]
    assert (merged.gso_segs, merged.gso_size, merged.gso_type & SKB_GSO_UDP_L4) == (4, 1000, SKB_GSO_UDP_L4)
    assert merged.len == 20 + 8 + 4000
    assert merged.payload()[28:] == b"".join(payloads)
    assert layer.softnet.cpus[0].processed == 1
    stats = dict(ethtool_stats(layer, dev))
    assert (stats["rx_gro_merged"], stats["rx_gro_packets"], stats["rx_packets"]) == (3, 1, 4)
    no_gro(layer)
    layer.rx_frames(dev, flow)
    up = layer.poll()[0]
    assert [s.gso_segs for s in up] == [0, 0, 0, 0]
    assert [s.payload()[28:] for s in up] == payloads


def test_rps_steers_to_the_backlog_of_another_cpu() -> None:
    layer = no_gro(new_layer(ncpus=2, netdev_max_backlog=2))
    dev = eth0(layer)
    assert layer.set_link(dev, rps_cpus=0b100)[0] == 22  # CPU 2 does not exist
    assert layer.set_link(dev, rps_cpus=0b10) == (0, "")
    layer.rx_frames(dev, frames(5))
    up, more = layer.poll()
    cpu0, cpu1 = layer.softnet.cpus
    # eth0's NAPI ran on CPU 0 and enqueued to CPU 1's backlog: max_backlog + 1 fit.
    assert (cpu1.received_rps, cpu1.dropped, cpu1.processed, cpu0.processed) == (1, 2, 3, 0)
    assert len(up) == 3
    assert dev.stats.rx_dropped == 2
    assert layer.drops.get(SkbDropReason.CPU_BACKLOG) == 2
    assert not more
    # Every skb of the flow hashes the same: all on CPU 1, in order.
    assert [s.payload()[-1] for s in up] == [0, 1, 2]
    assert len({s.hash for s in up}) == 1


def test_device_down_receives_nothing() -> None:
    layer = new_layer()
    dev = eth0(layer)
    assert layer.set_link(dev, up=False) == (0, "")
    assert layer.link_events == {ETH0}
    layer.rx_frames(dev, frames(2))
    assert layer.poll()[0] == []
    assert dev.stats.rx_dropped == 2
    assert layer.drops.get(SkbDropReason.DEV_READY) == 2
