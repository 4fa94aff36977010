"""Overload on every path (issue 10, part 2): senders far faster than receivers, which
read nothing while the flood lasts, on lo, over the wire into a host whose NIC, backlog
or qdisc is the bottleneck, with many flows at once, and with fragmented datagrams.

For every flow, what its sender's sendmmsg handed the stack equals what reached the
receiving socket plus the drops the stack counted for that flow, by reason and place,
exactly (the per-flow ledger of `stackemu dropwatch --check`); each drop is also in the
counter where the kernel counts it (UdpRcvbufErrors and the socket's sk_drops, softnet
dropped, rx_missed_errors, the qdisc's drops, the reassembly MIB). While the flood runs
every queue stays within its bound (sampled: sk_rmem_alloc against sk_rcvbuf, the RX
and TX rings, the backlog, the qdiscs). Afterwards the receiver reads exactly what was
queued, every datagram intact and in order, and a fresh exchange gets its exact bytes
back; a second flood leaves every service's memory where the first did.

The ledger names a flow from the packet a layer drops. A fragment past the first has
no ports, so fragmented datagrams balance per flow only if each lost datagram's first
fragment is dropped with its packet wherever that happens; their fragments balance in
the totals (IpFragCreates, rx_missed_errors, IpReasm*)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from services.core.dropreason import DropStats, SkbDropReason
from services.core.flowledger import FlowKey, FlowLedger
from services.core.wire.ethernet import ETH_P_IP, EthernetRepr
from services.core.wire.ipv4 import IP_MF
from services.nic.napi import RX_RING_MAX
from stackemu.tools.dropwatch import Conservation
from tests.e2e.overload_common import (
    Flood,
    Knobs,
    Peaks,
    Receiver,
    ethtool,
    flows_on,
    ledger,
    netem_stats,
    nstat,
    pointed_at,
    receiving,
    rss_kb,
    settle,
    sockets,
    softnet,
    static_neighbours,
    until,
)
from tests.e2e.stackrun import launched

# (reason, location, layer, host), as the ledger reports a drop.
Drop = tuple[str, str, str, str]
ALICE, BOB = "10.0.0.1", "10.0.0.2"
# SO_RCVBUF 4096: sk_rcvbuf 8192, room for a handful of small datagrams.
SMALL_RCVBUF = 4096
# netdev_max_backlog: enqueue_to_backlog() admits while qlen <= it.
BACKLOG = 8
# A memory bound on a service across a second flood like the first, in kB.
RSS_SLACK_KB = 10 * 1024


def rcvbuf(host: str) -> Drop:
    return ("SKB_DROP_REASON_SOCKET_RCVBUFF", "__udp_queue_rcv_skb", "udp", host)


def backlog(host: str) -> Drop:
    return ("SKB_DROP_REASON_CPU_BACKLOG", "enqueue_to_backlog", "nic", host)


RING = ("SKB_DROP_REASON_FULL_RING", "rx ring full", "nic", "bob")
NETEM_LIMIT = ("SKB_DROP_REASON_QDISC_OVERLIMIT", "netem_enqueue", "nic", "alice")
PFIFO = ("SKB_DROP_REASON_QDISC_DROP", "pfifo_fast_enqueue", "nic", "alice")
REASM_HEAD = ("SKB_DROP_REASON_FRAG_REASM_TIMEOUT", "ip_expire", "ip", "bob")
REASM_REST = ("SKB_DROP_REASON_FRAG_REASM_TIMEOUT", "inet_frag_rbtree_purge", "ip", "bob")


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    for env in launched(str(tmp_path_factory.mktemp("overload"))):
        with pointed_at(env):
            static_neighbours([("alice", "eth0", BOB, "bob"), ("bob", "eth0", ALICE, "alice")])
            yield env


def conserved(
    c: Conservation, sent: dict[FlowKey, int], read: dict[FlowKey, int], allowed: set[Drop]
) -> dict[Drop, int]:
    """Every flow's datagrams accounted for, exactly: what its sender counted went out of
    its UDP layer, and is what the receiver read plus the flow's drops, each of an
    allowed kind. The drops summed over the flows."""
    assert (c.off, c.untracked) == ([], 0)
    flows = {f.key: f for f in c.flows}
    assert set(flows) == set(sent)
    totals: dict[Drop, int] = {}
    for key, n in sent.items():
        f = flows[key]
        assert (f.sent, f.delivered, f.delivered + f.dropped) == (n, read.get(key, 0), n), f.to_json()
        assert set(f.drops) <= allowed, f.to_json()
        for d, k in f.drops.items():
            totals[d] = totals.get(d, 0) + k
    return totals


def delta(after: dict[str, int], before: dict[str, int], name: str) -> int:
    return after.get(name, 0) - before.get(name, 0)


def drained(r: Receiver, saddr: str) -> dict[FlowKey, int]:
    read, bad = r.drain(saddr)
    # Every datagram read was one of the flood's, intact, after the flow's previous one.
    assert bad == 0
    return read


def exchanged(r: Receiver, env: dict[str, str], host: str, src: str) -> None:
    assert r.exchange(env, host, src) == [f"after the flood {r.addr}:{p}" for p in r.ports]


def rcvbuf_drops(c: Conservation) -> dict[int, int]:
    """Drops at the socket's receive buffer, per receiving port."""
    out: dict[int, int] = {}
    for f in c.flows:
        out[f.key[4]] = out.get(f.key[4], 0) + sum(
            n for (reason, *_), n in f.drops.items() if reason == "SKB_DROP_REASON_SOCKET_RCVBUFF"
        )
    return out


@pytest.mark.slow
def test_lo_receiver_that_reads_nothing(stack: dict[str, str]) -> None:
    """alice floods herself over lo (loopback_xmit → netif_rx → the backlog, shortened
    here) into two sockets with small receive buffers."""
    ports = (9200, 9201)
    with Knobs() as knobs, receiving(stack, "alice", "127.0.0.1", ports, SMALL_RCVBUF, 64) as r:
        knobs.sysctl("alice", "net.core.netdev_max_backlog", BACKLOG)
        before, sd_before = nstat(stack, "alice"), softnet("alice")
        flows_on()
        flood = Flood("127.0.0.1", r.targets, 64, rounds=20, batch=32, nsock=4)
        with Peaks(("alice",), devs=()) as peaks, flood.sending(stack, "alice") as sent:
            c = settle(sent)
        socks = sockets("alice")
        read = drained(r, "127.0.0.1")
        exchanged(r, stack, "alice", "127.0.0.1")
        after, sd_after = nstat(stack, "alice"), softnet("alice")
    drops = conserved(c, sent, read, {rcvbuf("alice"), backlog("alice")})
    assert c.unattributed == {}
    # EAGAIN (the send buffer full until the NIC's transmit completions come back) skips turns.
    assert 0 < sum(sent.values()) <= 4 * 20 * 32
    # The receiver's queue overflowed: every such drop is a UdpRcvbufErrors (and an
    # InErrors) and one of its socket's sk_drops; the backlog's are softnet drops.
    assert drops[rcvbuf("alice")] > 0
    assert delta(after, before, "UdpRcvbufErrors") == drops[rcvbuf("alice")]
    assert {p: socks[p].drops for p in ports} == rcvbuf_drops(c)
    assert sd_after["dropped"] - sd_before["dropped"] == drops.get(backlog("alice"), 0)
    # Within bounds while it filled: __udp_enqueue_schedule_skb() admits only while
    # rmem + truesize fits sk_rcvbuf (these datagrams are far smaller than it).
    assert {socks[p].rcvbuf for p in ports} == {2 * SMALL_RCVBUF}
    assert peaks.samples > 0
    assert all(peaks.peak[f"alice:{p} rmem_over_rcvbuf"] <= 0 for p in ports), peaks.peak
    assert peaks.peak["alice backlog_len"] <= BACKLOG + 1


def short_backlog(knobs: Knobs) -> None:
    """bob steers what eth0 receives through its backlog (RPS), BACKLOG long. Each frame
    is its own skb there (no GRO, which here merges any UDP flow, where the kernel
    merges only for a socket with UDP_GRO), and the ring is as long as it gets, so the
    backlog is where a burst is cut."""
    knobs.rps("bob", "eth0", 1)
    knobs.features("bob", "eth0", {"generic-receive-offload": False})
    knobs.ring("bob", "eth0", RX_RING_MAX)
    knobs.sysctl("bob", "net.core.netdev_max_backlog", BACKLOG)


@pytest.mark.slow
def test_wire_into_a_short_backlog(stack: dict[str, str]) -> None:
    """alice → bob over the wire into bob's short backlog, with a NAPI budget far below
    a poll's weight."""
    ports = (9210, 9211)
    with Knobs() as knobs, receiving(stack, "bob", BOB, ports, SMALL_RCVBUF, 64) as r:
        short_backlog(knobs)
        knobs.sysctl("bob", "net.core.netdev_budget", 16)
        before, sd_before, eth_before = nstat(stack, "bob"), softnet("bob"), ethtool("bob", "eth0")
        flows_on()
        flood = Flood(ALICE, r.targets, 64, rounds=20, batch=32, nsock=4)
        with Peaks() as peaks, flood.sending(stack, "alice") as sent:
            c = settle(sent)
        socks = sockets("bob")
        read = drained(r, ALICE)
        exchanged(r, stack, "alice", ALICE)
        after, sd_after, eth_after = nstat(stack, "bob"), softnet("bob"), ethtool("bob", "eth0")
    drops = conserved(c, sent, read, {rcvbuf("bob"), backlog("bob"), PFIFO})
    assert c.unattributed == {}
    assert drops[backlog("bob")] > 0 and drops[rcvbuf("bob")] > 0
    # enqueue_to_backlog(): softnet_stat's dropped and the device's rx_dropped.
    assert sd_after["dropped"] - sd_before["dropped"] == drops[backlog("bob")]
    assert eth_after["rx_dropped"] - eth_before["rx_dropped"] == drops[backlog("bob")]
    # net_rx_action() ran out of budget (time_squeeze) and came back for the rest.
    assert sd_after["time_squeeze"] > sd_before["time_squeeze"]
    assert delta(after, before, "UdpRcvbufErrors") == drops[rcvbuf("bob")]
    assert {p: socks[p].drops for p in ports} == rcvbuf_drops(c)
    assert all(peaks.peak[f"bob:{p} rmem_over_rcvbuf"] <= 0 for p in ports), peaks.peak
    assert peaks.peak["bob backlog_len"] <= BACKLOG + 1
    assert peaks.peak["bob:eth0 rx_ring_used"] <= RX_RING_MAX
    assert peaks.peak["alice:eth0 tx_ring_used"] <= 256
    assert peaks.peak["alice:eth0 qdisc_backlog"] <= 1000


@pytest.mark.slow
def test_wire_through_netem_rate_and_limit(stack: dict[str, str]) -> None:
    """alice's eth0 sends through netem at 1 Mbit/s with room for 8 frames: the qdisc
    refuses the rest of each burst (qdisc_drop_all, NET_XMIT_DROP)."""
    ports = (9220, 9221)
    with Knobs() as knobs, receiving(stack, "bob", BOB, ports, SMALL_RCVBUF, 64) as r:
        knobs.netem("alice", "eth0", rate_bps=1_000_000, limit=8)
        before, before_bob = nstat(stack, "alice"), nstat(stack, "bob")
        flows_on()
        flood = Flood(ALICE, r.targets, 64, rounds=20, batch=32, nsock=2)
        with Peaks() as peaks, flood.sending(stack, "alice") as sent:
            c = settle(sent)
            # Each refusal is the -ENOBUFS udp_send_skb() turns into UdpSndbufErrors
            # (without IP_RECVERR the sender sees success); the emulator's comes back
            # with the NIC's transmit completion, to the socket that is still open.
            # A send that found the send buffer full (EAGAIN) is one too.
            errors = sum(f.drops.get(NETEM_LIMIT, 0) for f in c.flows) + sent.eagain
            after = until(
                lambda: nstat(stack, "alice"), lambda a: delta(a, before, "UdpSndbufErrors") >= errors
            )
            after_bob = nstat(stack, "bob")
        read = drained(r, ALICE)
        qdisc = netem_stats("alice", "eth0")
        exchanged(r, stack, "alice", ALICE)
    drops = conserved(c, sent, read, {NETEM_LIMIT, rcvbuf("bob")})
    assert c.unattributed == {}
    assert drops[NETEM_LIMIT] > 0
    # tc -s qdisc: netem's own drops.
    assert (qdisc.dropped, qdisc.sent) == (drops[NETEM_LIMIT], sum(sent.values()) - drops[NETEM_LIMIT])
    assert delta(after, before, "UdpSndbufErrors") == drops[NETEM_LIMIT] + sent.eagain
    assert delta(after_bob, before_bob, "UdpRcvbufErrors") == drops.get(rcvbuf("bob"), 0)
    assert peaks.peak["alice:eth0 netem_backlog"] <= 8


@pytest.mark.slow
def test_gso_through_netem_rate_and_limit(stack: dict[str, str]) -> None:
    """The same netem, fed GSO datagrams (UDP_SEGMENT, 8 segments each) that alice's
    driver segments: netem refuses the frames of a burst one by one."""
    ports = (9225,)
    with Knobs() as knobs, receiving(stack, "bob", BOB, ports, SMALL_RCVBUF, 64) as r:
        knobs.netem("alice", "eth0", rate_bps=1_000_000, limit=8)
        flows_on()
        flood = Flood(ALICE, r.targets, 64, rounds=10, batch=8, nsock=2, segs=8)
        with flood.sending(stack, "alice") as sent:
            c = settle(sent)
        read = drained(r, ALICE)
        qdisc = netem_stats("alice", "eth0")
        exchanged(r, stack, "alice", ALICE)
    assert qdisc.dropped > 0
    drops = conserved(c, sent, read, {NETEM_LIMIT, rcvbuf("bob")})
    assert (c.unattributed, drops[NETEM_LIMIT]) == ({}, qdisc.dropped)


@pytest.mark.slow
def test_wire_into_a_short_ring(stack: dict[str, str]) -> None:
    """bob's RX ring holds 4 frames and its interrupt waits 20 ms: the ring overflows
    (rx_missed_errors)."""
    ports = (9230,)
    with Knobs() as knobs, receiving(stack, "bob", BOB, ports, 0, 64) as r:
        knobs.ring("bob", "eth0", 4)
        knobs.coalesce("bob", "eth0", 20_000)
        eth_before = ethtool("bob", "eth0")
        flows_on()
        flood = Flood(ALICE, r.targets, 64, rounds=10, batch=32, nsock=2)
        with Peaks() as peaks, flood.sending(stack, "alice") as sent:
            c = settle(sent)
        read = drained(r, ALICE)
        exchanged(r, stack, "alice", ALICE)
        eth_after = ethtool("bob", "eth0")
    missed = eth_after["rx_missed_errors"] - eth_before["rx_missed_errors"]
    assert missed > 0
    assert peaks.peak["bob:eth0 rx_ring_used"] <= 4
    drops = conserved(c, sent, read, {RING, rcvbuf("bob")})
    assert (c.unattributed, drops[RING]) == ({}, missed)


@pytest.mark.slow
def test_many_flows_twice_memory_flat(stack: dict[str, str]) -> None:
    """Four processes of alice's, five sockets each, flood five sockets of bob's (each
    from four flows) through bob's short backlog, twice: per-flow accounting with many
    flows, and no service keeps more memory after the second flood than after the
    first."""
    ports = (9240, 9241, 9242, 9243, 9244)
    rss = [rss_kb(stack)]
    with Knobs() as knobs, receiving(stack, "bob", BOB, ports, SMALL_RCVBUF, 64) as r:
        short_backlog(knobs)
        flood = Flood(ALICE, r.targets, 64, rounds=8, batch=16, nsock=5, procs=4)
        for _ in range(2):
            sk_before = sockets("bob")
            flows_on()
            with Peaks() as peaks, flood.sending(stack, "alice") as sent:
                c = settle(sent)
            sk_after = sockets("bob")
            read = drained(r, ALICE)
            drops = conserved(c, sent, read, {rcvbuf("bob"), backlog("bob"), PFIFO})
            assert c.unattributed == {}
            assert len(sent) == 20 and 0 < sum(sent.values()) <= 20 * 8 * 16
            assert drops[rcvbuf("bob")] > 0
            assert {p: sk_after[p].drops - sk_before[p].drops for p in ports} == rcvbuf_drops(c)
            assert all(peaks.peak[f"bob:{p} rmem_over_rcvbuf"] <= 0 for p in ports), peaks.peak
            assert peaks.peak["bob backlog_len"] <= BACKLOG + 1
            rss.append(rss_kb(stack))
        exchanged(r, stack, "alice", ALICE)
    grown = {name: rss[2][name] - rss[1][name] for name in rss[0]}
    assert all(kb <= RSS_SLACK_KB for kb in grown.values()), rss


# 3000 bytes of payload: a 3008-byte UDP datagram, three fragments at MTU 1500.
FRAG_SIZE, FRAGS = 3000, 3


def fragment_flood(r: Receiver, rounds: int) -> Flood:
    return Flood(ALICE, r.targets, FRAG_SIZE, rounds=rounds, batch=16, nsock=2)


def reassembly_done(stack: dict[str, str], before: dict[str, int]) -> tuple[Conservation, dict[str, int]]:
    """The ledger and bob's counters once every fragment that reached ip_defrag is in a
    reassembled datagram or was freed with its timed-out queue (ipfrag_time is 1 s
    here), and every reassembled datagram reached the socket or was refused by its
    buffer. The ledger is read first: counts only grow, so the counters read after it
    matching it means nothing was still on the way."""

    def done(snapshot: tuple[Conservation, dict[str, int]]) -> bool:
        c, now = snapshot
        oks = delta(now, before, "IpReasmOKs")
        at_udp = sum(f.delivered + f.drops.get(rcvbuf("bob"), 0) for f in c.flows)
        return at_udp == oks and delta(now, before, "IpReasmReqds") == FRAGS * oks + _frag_timeouts(c)

    until(lambda: (ledger(), nstat(stack, "bob")), done, tries=100, pause=0.1)
    return ledger(), nstat(stack, "bob")


def everywhere(c: Conservation, drop: Drop) -> int:
    """Drops of a kind, whether or not the ledger could name their flows."""
    return c.unattributed.get(drop, 0) + sum(f.drops.get(drop, 0) for f in c.flows)


def _frag_timeouts(c: Conservation) -> int:
    """Fragments freed by a reassembly timeout."""
    return everywhere(c, REASM_HEAD) + everywhere(c, REASM_REST)


@pytest.mark.slow
def test_fragments_under_overload_balance_in_the_totals(stack: dict[str, str]) -> None:
    """Datagrams of three fragments into bob's short ring: a datagram missing a fragment
    waits in its reassembly queue until ipfrag_time (1 s here) and is dropped. Per flow
    the ledger has what reached the socket and what its buffer refused; what was lost
    below UDP shows in the totals, fragment by fragment."""
    ports = (9250, 9251)
    with Knobs() as knobs, receiving(stack, "bob", BOB, ports, 16384, FRAG_SIZE) as r:
        knobs.ring("bob", "eth0", 32)
        knobs.coalesce("bob", "eth0", 10_000)
        knobs.sysctl("bob", "net.ipv4.ipfrag_time", 1)
        before, before_alice, eth_before = nstat(stack, "bob"), nstat(stack, "alice"), ethtool("bob", "eth0")
        flows_on()
        with Peaks() as peaks, fragment_flood(r, rounds=8).sending(stack, "alice") as sent:
            c, after = reassembly_done(stack, before)
        read = drained(r, ALICE)
        exchanged(r, stack, "alice", ALICE)
        after_alice, eth_after = nstat(stack, "alice"), ethtool("bob", "eth0")
    total = sum(sent.values())
    assert 0 < total <= 2 * 8 * 16
    # alice cut every datagram in three (ip_do_fragment).
    cut = [delta(after_alice, before_alice, name) for name in ("IpFragOKs", "IpFragCreates")]
    assert cut == [total, FRAGS * total]
    # Every fragment: refused by bob's full ring, or handed to ip_defrag.
    missed = eth_after["rx_missed_errors"] - eth_before["rx_missed_errors"]
    assert missed > 0
    assert FRAGS * total == missed + delta(after, before, "IpReasmReqds")
    # Every fragment ip_defrag took: in a reassembled datagram, or freed when its queue
    # timed out (ip_expire frees the head, inet_frag_rbtree_purge the rest); and every
    # failed reassembly here is a timeout.
    oks = delta(after, before, "IpReasmOKs")
    timeouts = delta(after, before, "IpReasmTimeout")
    assert delta(after, before, "IpReasmFails") == timeouts
    # Every reassembled datagram: read, or refused by the full receive buffer.
    assert oks == sum(read.values()) + delta(after, before, "UdpRcvbufErrors")
    # Per flow: sent and delivered exact, the receive buffer's drops attributed. The
    # rest of each flow's datagrams were lost below UDP: no fragment reached ip_defrag,
    # or their queue timed out. The ledger names the flow of such a drop only if the
    # first fragment was dropped with its packet (test_..._balance_per_flow).
    assert (c.off, c.untracked) == ([], 0)
    flows = {f.key: f for f in c.flows}
    assert set(flows) == set(sent)
    for key, f in flows.items():
        assert (f.sent, f.delivered) == (sent[key], read.get(key, 0)), f.to_json()
        assert set(f.drops) <= {rcvbuf("bob"), RING, REASM_HEAD}, f.to_json()
    assert everywhere(c, rcvbuf("bob")) == delta(after, before, "UdpRcvbufErrors")
    lost_below_udp = sum(f.sent - f.delivered - f.drops.get(rcvbuf("bob"), 0) for f in c.flows)
    assert lost_below_udp == total - oks
    assert lost_below_udp >= timeouts
    # The fragments' drops, attributed or not: the ring's are rx_missed_errors; the
    # timed-out queues', what ip_defrag took and did not reassemble; a queue's head is
    # freed once, by ip_expire, if it came.
    assert set(c.unattributed) <= {RING, REASM_HEAD, REASM_REST}
    assert everywhere(c, RING) == missed
    assert everywhere(c, REASM_HEAD) + everywhere(c, REASM_REST) == (
        delta(after, before, "IpReasmReqds") - FRAGS * oks
    )
    assert everywhere(c, REASM_HEAD) <= timeouts
    assert peaks.peak["bob:eth0 rx_ring_used"] <= 32
    assert all(peaks.peak[f"bob:{p} rmem_over_rcvbuf"] <= 0 for p in ports), peaks.peak


@pytest.mark.slow
def test_fragments_under_overload_balance_per_flow(stack: dict[str, str]) -> None:
    """The same flood: each lost datagram's first fragment names its flow where it is
    dropped (the ring, or ip_expire freeing the queue's head), so every flow balances;
    the other fragments' drops stay unattributed."""
    ports = (9260,)
    with Knobs() as knobs, receiving(stack, "bob", BOB, ports, 16384, FRAG_SIZE) as r:
        knobs.ring("bob", "eth0", 32)
        knobs.coalesce("bob", "eth0", 10_000)
        knobs.sysctl("bob", "net.ipv4.ipfrag_time", 1)
        before = nstat(stack, "bob")
        flows_on()
        with fragment_flood(r, rounds=4).sending(stack, "alice") as sent:
            c, _ = reassembly_done(stack, before)
        read = drained(r, ALICE)
        exchanged(r, stack, "alice", ALICE)
    conserved(c, sent, read, {RING, REASM_HEAD, rcvbuf("bob")})


def test_a_dropped_frame_names_its_flow_if_it_carries_the_ports() -> None:
    """DropStats.drop_frame, for a frame no skb was built for: the ledger reads the flow
    from the frame, of a whole datagram or a first fragment; a later fragment has no
    ports and stays unattributed."""
    drops = DropStats()
    ledger_ = drops.flows = FlowLedger()
    eth = bytearray(14)
    EthernetRepr(dst=b"\x02" * 6, src=b"\x04" * 6, ethertype=ETH_P_IP).emit(eth)
    ip = bytes.fromhex("4500 0020 0001 0000 4011 0000 0a000001 0a000002")
    udp = bytes.fromhex("9c40 2328 000c 0000") + b"ping"
    first = ip[:6] + IP_MF.to_bytes(2, "big") + ip[8:]
    later = ip[:6] + (IP_MF | 185).to_bytes(2, "big") + ip[8:]
    for frame in (eth + ip + udp, eth + first + udp, eth + later + udp):
        drops.drop_frame(SkbDropReason.FULL_RING, "rx ring full", bytes(frame))
    flow = (17, 0x0A000001, 40000, 0x0A000002, 9000)
    assert ledger_.flows[flow].drops == {(SkbDropReason.FULL_RING, "rx ring full"): 2}
    assert ledger_.unattributed == {(SkbDropReason.FULL_RING, "rx ring full"): 1}
    assert drops.get(SkbDropReason.FULL_RING) == 3
