"""Transmit completions (sock_wfree across the services): the socket memory a charged
skb (skb.sk, skb.wmem) gives back wherever the layers below UDP free it, exactly once,
and the datagrams whose ip_send_skb the kernel fails with -ENOBUFS.

What the kernel returns at each drop point was checked on Linux 6.18.44 in a pair of
network namespaces joined by a veth (IP_RECVERR on the sender, so -ENOBUFS is not
swallowed by udp_send_skb; nstat around each run):
- a qdisc that refuses the skb (qdisc_drop: NET_XMIT_DROP; a tbf of 8 bit/s with a
  300-byte limit here, pfifo_fast_enqueue's qdisc_drop_cpu is the same): the send
  fails with ENOBUFS, IpOutDiscards and UdpSndbufErrors count one each and
  UdpOutDatagrams does not;
- the peer down (no carrier: the noop qdisc, NET_XMIT_CN): every send succeeds and no
  counter but tx_dropped moves;
- netem's loss (NET_XMIT_SUCCESS | __NET_XMIT_BYPASS) is read from sch_netem.c (the
  module is not built for this machine's kernel).
"""

from __future__ import annotations

import asyncio

from services.core.dropreason import SkbDropReason
from services.core.skbuff import SKB_GSO_UDP_L4, Dst, IpCork, SkBuff, alloc_skb, skb_truesize
from services.core.wmem import TxCompletions
from services.ip.layer import IpLayer
from services.nic.device import NetDevice
from services.nic.layer import NicLayer
from services.nic.neigh import NUD_PERMANENT
from services.nic.netem import NetemConfig
from stackemu.nic.v1 import nic_pb2
from stackemu.skb.v1 import skb_pb2
from tests.services.nicframes import (
    ALICE,
    ALICE_MAC,
    BOB,
    BOB_MAC,
    ETH0,
    LO,
    Clock,
    new_layer,
    partial_csum,
    tx_skb,
    udp_packet,
)
from tests.services.test_ip import ip_service
from tests.services.test_ip_paths import PEER0, counters, host, icmp_of, udp
from tests.services.test_neigh import arp

SK = 7
LOOPBACK = 0x7F000001


def charged(skb: SkBuff, sk: int = SK) -> SkBuff:
    """udp_sendmsg's skb_set_owner_w: the socket is charged the skb's truesize."""
    skb.sk = sk
    skb.wmem = skb.truesize
    return skb


def done(t: TxCompletions) -> list[tuple[int, int, int]]:
    return [(c.sk, c.wmem, c.enobufs) for c in t.drain()]


def resolved_eth0(layer: NicLayer) -> NetDevice:
    dev = layer.devices[ETH0]
    layer.set_carrier(dev, True)
    assert layer.neigh.add(dev, BOB, BOB_MAC, NUD_PERMANENT) == 0
    return dev


# The NIC.


def test_a_frame_gives_its_charge_back_when_the_link_takes_it() -> None:
    layer = new_layer()
    dev = resolved_eth0(layer)
    skb = charged(tx_skb(udp_packet(b"x" * 100, src=ALICE, dst=BOB)))
    truesize = skb.truesize
    layer.dev_queue_xmit(skb)
    # On the TX ring: still charged (sk_wmem_alloc holds it until TX completion).
    assert len(layer.tx_ring[ETH0]) == 1
    assert done(layer.tx_done) == []
    [frame] = layer.take_tx(dev)
    assert frame[:12] == BOB_MAC + ALICE_MAC
    assert done(layer.tx_done) == [(SK, truesize, 0)]
    assert done(layer.tx_done) == []


def test_the_qdisc_holds_the_charge_and_a_full_one_is_enobufs() -> None:
    layer = new_layer()
    dev = resolved_eth0(layer)
    assert layer.set_ring(dev, None, 2) == (0, "")
    assert layer.set_link(dev, txqueuelen=3) == (0, "")
    skbs = [charged(tx_skb(udp_packet(bytes([i]), src=ALICE, dst=BOB))) for i in range(8)]
    truesize = skbs[0].truesize
    for skb in skbs:
        layer.dev_queue_xmit(skb)
    # 2 on the ring and 3 in pfifo_fast stay charged; the 3 refused ones are freed and
    # are NET_XMIT_DROP for their sender.
    assert done(layer.tx_done) == [(SK, 3 * truesize, 3)]
    assert layer.drops.get(SkbDropReason.QDISC_DROP, "pfifo_fast_enqueue") == 3
    # Each take completes the ring and the qdisc refills it.
    assert len(layer.take_tx(dev)) == 2
    assert done(layer.tx_done) == [(SK, 2 * truesize, 0)]
    assert len(layer.take_tx(dev)) == 2
    assert len(layer.take_tx(dev)) == 1
    assert done(layer.tx_done) == [(SK, 3 * truesize, 0)]


def test_noop_qdisc_and_a_down_device_free_without_enobufs() -> None:
    layer = new_layer()
    dev = layer.devices[ETH0]
    skb = charged(tx_skb(udp_packet(b"no carrier", src=ALICE, dst=BOB)))
    layer.dev_queue_xmit(skb)
    # noop_enqueue(): NET_XMIT_CN, which net_xmit_errno() makes 0.
    assert done(layer.tx_done) == [(SK, skb_truesize(64 + 38), 0)]
    assert layer.drops.get(SkbDropReason.QDISC_DROP, "noop_enqueue") == 1
    layer.set_carrier(dev, True)
    assert layer.set_link(dev, up=False) == (0, "")
    layer.dev_queue_xmit(charged(tx_skb(udp_packet(b"down", src=ALICE, dst=BOB)), sk=8))
    assert done(layer.tx_done) == [(8, skb_truesize(64 + 32), 0)]


def test_bringing_the_device_down_frees_what_the_qdisc_and_ring_held() -> None:
    layer = new_layer()
    dev = resolved_eth0(layer)
    assert layer.set_ring(dev, None, 1) == (0, "")
    skbs = [charged(tx_skb(udp_packet(bytes([i]), src=ALICE, dst=BOB))) for i in range(3)]
    for skb in skbs:
        layer.dev_queue_xmit(skb)
    assert done(layer.tx_done) == []
    assert layer.set_link(dev, up=False) == (0, "")
    assert done(layer.tx_done) == [(SK, 3 * skbs[0].truesize, 0)]


def test_loopback_orphans_the_skb_before_it_goes_up() -> None:
    layer = new_layer()
    packet = udp_packet(b"to myself", src=LOOPBACK, dst=LOOPBACK)
    skb = charged(tx_skb(packet, ifindex=LO, nexthop=LOOPBACK))
    truesize = skb.truesize
    layer.dev_queue_xmit(skb)
    # loopback_xmit(): skb_orphan() runs sock_wfree before netif_rx.
    assert done(layer.tx_done) == [(SK, truesize, 0)]
    [up], _ = layer.poll()
    assert (up.sk, up.wmem) == (0, 0)
    assert done(layer.tx_done) == []


def test_a_backlog_drop_after_loopback_does_not_release_twice() -> None:
    layer = new_layer(netdev_max_backlog=0)
    for _ in range(3):
        layer.dev_queue_xmit(charged(tx_skb(udp_packet(b"x", src=LOOPBACK, dst=LOOPBACK), ifindex=LO)))
    # max_backlog + 1 fit (qlen 0 <= 0); the other two are dropped, already orphaned.
    assert done(layer.tx_done) == [(SK, 3 * skb_truesize(64 + 29), 0)]
    assert layer.softnet.cpus[0].dropped == 2
    assert len(layer.poll()[0]) == 1
    assert done(layer.tx_done) == []


def test_software_gso_segments_release_the_charge_once() -> None:
    payload = bytes(range(256)) * 16
    for udp_seg in (True, False):
        layer = new_layer()
        dev = resolved_eth0(layer)
        assert dev.features.set({"tx-udp-segmentation": udp_seg}) is None
        skb = partial_csum(tx_skb(udp_packet(payload, src=ALICE, dst=BOB)))
        skb.gso_size, skb.gso_type, skb.gso_segs = 1400, SKB_GSO_UDP_L4, 3
        charged(skb)
        truesize = skb.truesize
        layer.dev_queue_xmit(skb)
        assert done(layer.tx_done) == []
        assert len(layer.take_tx(dev)) == 3
        assert done(layer.tx_done) == [(SK, truesize, 0)]


def test_the_arp_queue_holds_the_charge_until_the_neighbour_resolves_or_fails() -> None:
    clock = Clock()
    layer = new_layer(clock)
    dev = layer.devices[ETH0]
    layer.set_carrier(dev, True)
    skb = charged(tx_skb(udp_packet(b"wait", src=ALICE, dst=BOB)))
    truesize = skb.truesize
    layer.dev_queue_xmit(skb)
    [request] = layer.take_tx(dev)
    # The ARP request is the host's own frame: nothing owed for it, the datagram waits.
    assert request[12:14] == b"\x08\x06"
    assert done(layer.tx_done) == []
    layer.rx_frames(dev, [arp(2, BOB_MAC, BOB, ALICE_MAC, ALICE, dst=ALICE_MAC)])
    layer.poll()
    assert done(layer.tx_done) == []
    assert len(layer.take_tx(dev)) == 1
    assert done(layer.tx_done) == [(SK, truesize, 0)]

    # Nobody answers for 10.0.0.3: three requests a second apart, then arp_error_report.
    carol = ALICE + 2
    layer.dev_queue_xmit(charged(tx_skb(udp_packet(b"lost", src=ALICE, dst=carol), nexthop=carol)))
    for _ in range(3):
        clock.advance_us(1_000_000)
        layer.neigh.run_timers()
    assert done(layer.tx_done) == [(SK, skb_truesize(64 + 32), 0)]
    assert layer.drops.get(SkbDropReason.NEIGH_FAILED, "arp_error_report") == 1


def test_netem_loss_frees_quietly_a_full_netem_is_enobufs_delay_holds_the_charge() -> None:
    clock = Clock()
    layer = new_layer(clock)
    dev = resolved_eth0(layer)
    assert layer.set_netem(dev, NetemConfig(loss_pct=100.0, seed=1)) == (0, "")
    layer.dev_queue_xmit(charged(tx_skb(udp_packet(b"lost", src=ALICE, dst=BOB))))
    assert done(layer.tx_done) == [(SK, skb_truesize(64 + 32), 0)]

    assert layer.set_netem(dev, NetemConfig(delay_us=1000, limit=1, seed=1)) == (0, "")
    first = charged(tx_skb(udp_packet(b"first", src=ALICE, dst=BOB)))
    second = charged(tx_skb(udp_packet(b"second", src=ALICE, dst=BOB)), sk=8)
    truesizes = (first.truesize, second.truesize)
    layer.dev_queue_xmit(first)
    layer.dev_queue_xmit(second)
    # qdisc_drop_all(): NET_XMIT_DROP for the second; the first waits in the tfifo.
    assert done(layer.tx_done) == [(8, truesizes[1], 1)]
    assert layer.drops.get(SkbDropReason.QDISC_OVERLIMIT, "netem_enqueue") == 1
    clock.advance_us(1000)
    layer.netem_run(dev)
    assert done(layer.tx_done) == []
    assert len(layer.take_tx(dev)) == 1
    assert done(layer.tx_done) == [(SK, truesizes[0], 0)]
    # Replacing the qdisc frees what it held.
    layer.dev_queue_xmit(charged(tx_skb(udp_packet(b"held", src=ALICE, dst=BOB))))
    assert layer.set_netem(dev, None) == (0, "")
    assert done(layer.tx_done) == [(SK, skb_truesize(64 + 32), 0)]


# IP.


def out_skb(ip: IpLayer, payload: bytes, *, pmtudisc: int = 1, sk: int = SK) -> SkBuff:
    """udp_send_skb's skb for PEER0: data at the UDP header, the route, the cork."""
    dst, saddr = ip.router.output(PEER0)
    skb = alloc_skb(8 + len(payload), 128)
    skb.put_data(udp(payload))
    skb.reset_transport_header()
    skb.cork = IpCork(saddr=saddr, daddr=PEER0, protocol=17, pmtudisc=pmtudisc)
    skb.dst = dst
    return charged(skb, sk)


def test_fragments_carry_the_charge_on_the_first_one() -> None:
    ip = host()
    skb = out_skb(ip, bytes(3000))
    truesize = skb.truesize
    ip.ip_send_skb(skb)
    assert [(f.len, f.sk, f.wmem) for f in ip.to_device] == [(1500, SK, truesize), (1500, SK, 0), (68, SK, 0)]
    assert done(ip.tx_done) == []


def test_ip_drops_give_the_charge_back() -> None:
    ip = host()
    # DF and too big for the route (its MTU shrank after UDP checked): FragNeeded.
    skb = out_skb(ip, bytes(3000), pmtudisc=2)
    truesize = skb.truesize
    ip.ip_send_skb(skb)
    assert done(ip.tx_done) == [(SK, truesize, 0)]
    # ip_fragment's -EMSGSIZE reaches ip_send_skb: OutDiscards.
    c = counters(ip)
    assert (c["IpFragFails"], c["IpOutDiscards"]) == (1, 1)
    # The frag-needed ip_fragment sent about it, to ourselves.
    [icmp] = ip.to_device
    assert icmp_of(icmp)[:2] == bytes([3, 4]) and icmp.wmem == 0
    ip.to_device.clear()
    # No route in the skb (ip_send_skb's OutDiscards).
    skb = out_skb(ip, b"x")
    skb.dst = None
    ip.ip_send_skb(skb)
    assert done(ip.tx_done) == [(SK, skb_truesize(128 + 9), 0)]
    # A netfilter DROP in OUTPUT (-EPERM for the sender, not -ENOBUFS).
    ip.nf.tables["filter"].chains["OUTPUT"].policy = 0  # NF_DROP
    before = counters(ip)
    ip.ip_send_skb(out_skb(ip, b"y", sk=9))
    assert done(ip.tx_done) == [(9, skb_truesize(128 + 9), 0)]
    assert ip.to_device == []
    # Linux 6.18 (iptables -A OUTPUT -p udp -j DROP in a namespace): the send fails
    # with EPERM, and nstat shows IpOutRequests 1, IpOutDiscards 1.
    after = counters(ip)
    assert {k: after[k] - before.get(k, 0) for k in after if after[k] != before.get(k, 0)} == {
        "IpOutRequests": 1,
        "IpOutDiscards": 1,
    }


def test_a_gso_skb_too_big_for_the_route_is_segmented_and_fragmented_charge_once() -> None:
    ip = host()
    dst, saddr = ip.router.output(PEER0)
    payload = bytes(i % 251 for i in range(3000))
    skb = out_skb(ip, payload)
    skb.gso_size, skb.gso_type, skb.gso_segs = 1480, SKB_GSO_UDP_L4, 3
    # The route's MTU went down to 1000 after udp_sendmsg built 1480-byte segments.
    skb.dst = type(dst)(dst.ifindex, dst.nexthop, 1000, dst.rt_type, dst.flags, dst.dev_features)
    partial = _partial_udp(skb, saddr)
    truesize = partial.truesize
    ip.ip_send_skb(partial)
    # 1480 + 1480 + 40 bytes of payload: 1488-byte segments in two fragments each
    # (976 + 512 of UDP), the last one (48 bytes) in one.
    assert [f.len for f in ip.to_device] == [996, 532, 996, 532, 68]
    assert [f.wmem for f in ip.to_device] == [truesize, 0, 0, 0, 0]
    c = counters(ip)
    assert (c["IpFragOKs"], c["IpFragCreates"], c["IpOutTransmits"]) == (3, 5, 5)


def _partial_udp(skb: SkBuff, saddr: int) -> SkBuff:
    """udp4_hwcsum(): the pseudo-header sum in the check field, CHECKSUM_PARTIAL."""
    from services.core.checksum import csum_tcpudp_magic
    from services.core.skbuff import CHECKSUM_PARTIAL

    ulen = skb.len
    pseudo = (~csum_tcpudp_magic(saddr, PEER0, ulen, 17, 0)) & 0xFFFF
    skb.head[skb.data + 6 : skb.data + 8] = pseudo.to_bytes(2, "big")
    skb.ip_summed = CHECKSUM_PARTIAL
    skb.csum_start = skb.data
    skb.csum_offset = 6
    return skb


# The services.


def test_ip_relays_the_nics_completions_and_timestamps_with_its_own(
    run_async, grpc_test_server, poll_until
) -> None:
    async def scenario() -> None:
        async with ip_service(grpc_test_server, poll_until) as ip:
            before = await ip.counters()
            stamp = skb_pb2.TxTimestamp(skb=skb_pb2.SkBuff(sk=SK, tskey=4), tstype=0)
            ip.nic.send_response(
                nic_pb2.AttachResponse(
                    tx_done=[
                        skb_pb2.TxCompletion(sk=SK, wmem=1000),
                        skb_pb2.TxCompletion(sk=9, wmem=700, enobufs=1),
                    ],
                    tx_timestamps=[stamp],
                )
            )
            resp = await ip.udp.read()
            assert list(resp.tx_timestamps) == [stamp]
            assert {(c.sk, c.wmem, c.enobufs) for c in resp.tx_done} == {(SK, 1000, 0), (9, 700, 1)}
            # The refused datagram is ip_send_skb's -ENOBUFS: IPSTATS_MIB_OUTDISCARDS.
            after = await ip.counters()
            assert after["IpOutDiscards"] - before.get("IpOutDiscards", 0) == 1

            # IP's own free (a cork-less skb) and the NIC's, for the same socket, in one
            # entry of one message.
            layer = ip.service.servicer.layer
            bad = charged(alloc_skb(100, 64))
            layer.tx_done.release(SK, 50)
            await ip.udp.send(bad)
            resp = await ip.udp.read()
            assert [(c.sk, c.wmem, c.enobufs) for c in resp.tx_done] == [(SK, 50 + bad.truesize, 0)]
            assert not resp.skbs and not resp.errors

    run_async(scenario())


def test_the_nic_sends_completions_up_without_waiting_for_traffic(
    run_async, grpc_test_server, poll_until
) -> None:
    from tests.services.test_nic import IpSide, ip_packet, ip_skb, nic_service

    async def scenario() -> None:
        async with nic_service(grpc_test_server) as nic:
            side = IpSide(nic.stub)
            dev = nic.layer.devices[ETH0]
            nic.layer.set_carrier(dev, True)
            assert nic.layer.neigh.add(dev, BOB, BOB_MAC, NUD_PERMANENT) == 0
            skb = charged(ip_skb(ip_packet(b"out", src=ALICE, dst=BOB), ifindex=ETH0))
            skb.dst.nexthop = BOB  # type: ignore[union-attr]
            truesize = skb.truesize
            await side.send(skb)
            # The frame sits on the ring of a device no link drains: nothing yet.
            await poll_until(lambda: bool(nic.layer.tx_ring[ETH0]), "the frame on the ring")
            assert not nic.layer.tx_done
            # The link takes it: the completion goes up on its own.
            nic.layer.take_tx(dev)
            nic.service.servicer.kick()
            # (The carrier change went up first, as a link.)
            resp = await asyncio.wait_for(side.call.read(), 5.0)
            while resp.links:
                assert not resp.tx_done
                resp = await asyncio.wait_for(side.call.read(), 5.0)
            assert [(c.sk, c.wmem, c.enobufs) for c in resp.tx_done] == [(SK, truesize, 0)]
            assert not resp.skbs
            side.close()

    run_async(scenario())


# The pieces.


def test_completions_add_up_per_socket_and_an_skb_releases_once() -> None:
    t = TxCompletions()
    skb = charged(alloc_skb(100))
    t.add(skb)
    t.add(skb)  # already released: wmem is 0 now
    t.add(charged(alloc_skb(100), sk=9), enobufs=True)
    t.release(SK, 10)
    assert t.merge([skb_pb2.TxCompletion(sk=9, wmem=5, enobufs=2)]) == 2
    assert done(t) == [(SK, skb_truesize(100) + 10, 0), (9, skb_truesize(100) + 5, 3)]
    assert not t and done(t) == []


def test_the_new_fields_cross_the_wire_and_a_clone_owes_nothing() -> None:
    skb = charged(alloc_skb(10, 4))
    skb.dst_pending_confirm = True
    skb.dst = Dst(2, BOB, 1500, 1, 0, 1 << 33)
    back = SkBuff.from_proto(skb.to_proto())
    assert (back.sk, back.wmem, back.dst_pending_confirm, back.dst) == (SK, skb.truesize, True, skb.dst)
    c = skb.clone()
    assert (c.sk, c.wmem, c.dst_pending_confirm, skb.wmem) == (SK, 0, True, skb.truesize)


def test_a_gso_skb_queued_to_nfqueue_as_segments_keeps_one_charge() -> None:
    from services.ip.netfilter import NF_DROP, NF_INET_LOCAL_OUT
    from tests.services.test_netfilter import Harness
    from tests.services.test_nfqueue import _gso, bind, queue_rule

    h = Harness()
    freed = TxCompletions()
    h.nf.free = freed.add
    h.add("OUTPUT", queue_rule(0))
    # Nobody listening: the skb is dropped in nf_queue, charge and all.
    skb = charged(_gso())
    truesize = skb.truesize
    h.hook(NF_INET_LOCAL_OUT, skb, indev=0, outdev=2)
    assert done(freed) == [(SK, truesize, 0)]
    inst, _ = bind(h)
    skb = charged(_gso())
    truesize = skb.truesize
    h.hook(NF_INET_LOCAL_OUT, skb, indev=0, outdev=2)
    entries = list(inst.entries.values())
    assert [e.skb.wmem for e in entries] == [truesize, 0, 0]
    # The segment that carries the charge is dropped by the listener: given back.
    h.nf.queue.verdict(inst, entries[0].id, NF_DROP)
    assert done(freed) == [(SK, truesize, 0)]


def test_options_ip_options_build_cannot_fill_in_are_dropped_with_the_charge() -> None:
    ip = host()
    skb = out_skb(ip, b"opt")
    assert skb.cork is not None
    skb.cork.options = bytes(44)  # longer than MAX_IPOPTLEN
    truesize = skb.truesize
    ip.ip_send_skb(skb)
    assert ip.to_device == []
    assert done(ip.tx_done) == [(SK, truesize, 0)]
    assert counters(ip)["IpOutDiscards"] == 1


def test_a_datagram_whose_fragments_the_qdisc_refuses_fails_once() -> None:
    ip = host()
    skb = out_skb(ip, bytes(5000))
    truesize = skb.truesize
    ip.ip_send_skb(skb)
    frags = ip.to_device
    assert len(frags) == 4
    layer = new_layer()
    dev = resolved_eth0(layer)
    assert layer.set_ring(dev, None, 1) == (0, "")
    assert layer.set_link(dev, txqueuelen=1) == (0, "")
    for frag in frags:
        frag.dst = tx_skb(b"", nexthop=BOB).dst
        layer.dev_queue_xmit(frag)
    # One on the ring, one queued, two refused: ip_do_fragment() would have returned
    # -ENOBUFS once and freed the rest.
    assert done(layer.tx_done) == [(SK, 0, 1)]
    layer.take_tx(dev)
    layer.take_tx(dev)
    assert done(layer.tx_done) == [(SK, truesize, 0)]
