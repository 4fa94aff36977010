"""The ARP neighbour table as logic: a fake clock, a fake eth0, every frame it sends and
every skb it releases captured; exact bytes, exact times, exact counters.

Where a test says "the real kernel", the behaviour was checked on Linux 6.18.44 with
iproute2 6.1 between two network namespaces joined by a veth pair (10.0.0.1/24 on one
end, 10.0.0.2/24 on the other, MACs 02:00:00:00:00:01 and :02), with tcpdump -xx on the
far end and frames crafted on an AF_PACKET socket.
"""

from __future__ import annotations

import random

import pytest

from services.core import errno
from services.core.dropreason import DropStats, SkbDropReason
from services.core.netdev import LOOPBACK_IFINDEX
from services.core.skbuff import (
    PACKET_BROADCAST,
    PACKET_HOST,
    PACKET_OTHERHOST,
    SkBuff,
    alloc_skb,
    skb_truesize,
)
from services.core.wire.ethernet import ETH_P_IP
from services.core.wire.ipv4 import ip_from_str
from services.nic.device import IFF_NOARP, ether_dev, loopback_dev
from services.nic.neigh import (
    NUD_DELAY,
    NUD_FAILED,
    NUD_INCOMPLETE,
    NUD_NOARP,
    NUD_NONE,
    NUD_PERMANENT,
    NUD_PROBE,
    NUD_REACHABLE,
    NUD_STALE,
    Neigh,
    NeighTable,
)

ETH0 = 2
ALICE_MAC = bytes.fromhex("020000000001")
BOB_MAC = bytes.fromhex("020000000002")
ALICE = ip_from_str("10.0.0.1")
BOB = ip_from_str("10.0.0.2")
CAROL = ip_from_str("10.0.0.3")

# eth0 asks who has 10.0.0.2: byte for byte what the real kernel sent (ping-less: a UDP
# datagram to 10.0.0.2 port 9 from a fresh namespace).
REQUEST_FOR_BOB = bytes.fromhex(
    "ffffffffffff 020000000001 0806"  # broadcast, from alice, ARP
    " 0001 0800 06 04 0001"  # Ethernet, IPv4, 6, 4, request
    " 020000000001 0a000001 000000000000 0a000002"  # alice 10.0.0.1 asks for 10.0.0.2
)
# The unicast probe of a DELAY entry turned PROBE, as the real kernel sent it.
PROBE_FOR_BOB = bytes.fromhex(
    "020000000002 020000000001 0806"  # to bob's cached address
    " 0001 0800 06 04 0001"
    " 020000000001 0a000001 000000000000 0a000002"
)
REPLY_FROM_BOB = bytes.fromhex(
    "020000000001 020000000002 0806"
    " 0001 0800 06 04 0002"  # reply
    " 020000000002 0a000002 020000000001 0a000001"  # 10.0.0.2 is at bob, to alice
)
# A stranger (10.0.0.7, 02:..:07) asks for 10.0.0.1, padded to ETH_ZLEN as a NIC
# delivers it; and the answer the real kernel gave.
REQUEST_FROM_07 = bytes.fromhex(
    "ffffffffffff 020000000007 0806 0001 0800 06 04 0001 020000000007 0a000007 000000000000 0a000001"
) + bytes(18)
REPLY_TO_07 = bytes.fromhex(
    "020000000007 020000000001 0806"  # to the asker, from alice
    " 0001 0800 06 04 0002"
    " 020000000001 0a000001 020000000007 0a000007"  # 10.0.0.1 is at alice, to 10.0.0.7
)


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class MidRandom(random.Random):
    """get_random_u32_below(base) answers base / 2, so neigh_rand_reach_time(base) is
    base exactly: reachable_time 30 s."""

    def randrange(self, start: int, stop: int | None = None, step: int = 1) -> int:
        return start // 2


class Host:
    """alice: lo 127.0.0.1/8 and eth0 10.0.0.1/24, her neighbour table, and logs of
    what it sends (frames) and releases (skbs), in one ordered list too."""

    def __init__(self) -> None:
        self.clock = FakeClock()
        self.drops = DropStats()
        self.dev = ether_dev(ETH0, "eth0", ALICE_MAC)
        self.frames: list[bytes] = []
        self.sent: list[tuple[bytes, bytes]] = []
        self.events: list[str] = []
        self.failed: list[bytes] = []
        self.table = NeighTable(
            self.drops,
            clock=self.clock,
            send_frame=self._send_frame,
            xmit_resolved=self._xmit,
            rng=MidRandom(),
            link_failure=lambda dev, skb: self.failed.append(skb.payload()[20:]),
        )
        self.table.set_addrs([(LOOPBACK_IFINDEX, ip_from_str("127.0.0.1"), 8), (ETH0, ALICE, 24)])

    def _send_frame(self, dev: object, frame: bytes) -> None:
        self.frames.append(frame)
        self.events.append(f"frame {frame[20:22].hex()}")

    def _xmit(self, dev: object, skb: SkBuff, lladdr: bytes) -> None:
        payload = skb.payload()[20:]
        self.sent.append((lladdr, payload))
        self.events.append(f"xmit {payload.decode()}")

    def at(self, t: float) -> None:
        """Move the clock to t and run what came due, as the NIC's timer does."""
        self.clock.now = t
        self.table.run_timers()

    def send(self, dst: int, payload: bytes = b"x", src: int = ALICE) -> bytes | None:
        return self.table.output(self.dev, dst, ip_skb(src, dst, payload))

    def rcv(self, frame: bytes, pkt_type: int = PACKET_HOST) -> None:
        self.table.arp_rcv(self.dev, frame, pkt_type)

    def entry(self, address: int) -> Neigh:
        (n,) = [n for n in self.table.entries() if n.address == address]
        return n

    def state(self, address: int) -> int:
        found = [n.state for n in self.table.entries() if n.address == address]
        return found[0] if found else -1


def ip_skb(src: int, dst: int, payload: bytes = b"x", head: int = 0) -> SkBuff:
    """An skb as IP hands it down: data at a 20-byte IPv4 header, room for the link
    header in front; head sets the buffer size (and so the truesize)."""
    total = 20 + len(payload)
    header = bytes((0x45, 0, total >> 8, total & 0xFF, 0, 0, 0x40, 0, 64, 17, 0, 0))
    header += src.to_bytes(4, "big") + dst.to_bytes(4, "big")
    skb = alloc_skb(max(head - 16, total), 16)
    skb.put_data(header + payload)
    skb.reset_network_header()
    skb.protocol = ETH_P_IP
    return skb


def arp(op: int, sha: bytes, spa: int, tha: bytes, tpa: int, dst: bytes = b"\xff" * 6) -> bytes:
    """An ARP frame for Ethernet/IPv4 sent by sha."""
    return (
        dst
        + sha
        + bytes.fromhex("0806 0001 0800 06 04")
        + op.to_bytes(2, "big")
        + sha
        + spa.to_bytes(4, "big")
        + tha
        + tpa.to_bytes(4, "big")
    )


def drop_counts(drops: DropStats) -> dict[tuple[str, str], int]:
    return {(reason.name, location): count for (reason, location), count in drops.items()}


# Resolution.


def test_first_packet_sends_a_broadcast_request_and_is_held() -> None:
    h = Host()
    h.at(10.0)
    assert h.send(BOB) is None
    assert h.frames == [REQUEST_FOR_BOB]
    # `ip -s neigh` on the real kernel right after: "probes 4 INCOMPLETE" (the count
    # starts at ucast_solicit, and one broadcast went).
    n = h.entry(BOB)
    assert (n.ifindex, n.state, n.lladdr, n.queued, n.probes) == (ETH0, NUD_INCOMPLETE, b"", 1, 4)
    assert h.table.next_timer() == 11.0
    assert h.table.arp_stats.requests_sent == 1
    stat = h.table.proc_stat()
    assert (stat["entries"], stat["allocs"], stat["lookups"], stat["hits"]) == (1, 1, 0, 0)
    assert h.drops.total() == 0


def test_reply_releases_the_queue_in_order_then_the_mac_is_used_at_once() -> None:
    h = Host()
    for word in (b"one", b"two", b"three"):
        assert h.send(BOB, word) is None
    assert h.frames == [REQUEST_FOR_BOB]  # one request, not one per packet
    h.at(0.25)
    h.rcv(REPLY_FROM_BOB)
    assert h.sent == [(BOB_MAC, b"one"), (BOB_MAC, b"two"), (BOB_MAC, b"three")]
    n = h.entry(BOB)
    assert (n.state, n.lladdr, n.queued, n.probes) == (NUD_REACHABLE, BOB_MAC, 0, 4)
    assert h.send(BOB, b"four") == BOB_MAC
    assert h.frames == [REQUEST_FOR_BOB]
    assert h.table.next_timer() == 30.25
    assert h.table.arp_stats.replies_received == 1
    assert h.drops.total() == 0


def test_unres_qlen_bytes_bounds_the_queue_by_truesize() -> None:
    h = Host()
    assert skb_truesize(1514) == 2112  # SKB_TRUESIZE(ETH_FRAME_LEN) here
    # 212992 bytes hold 100 such skbs (211200); the 101st pushes out the oldest.
    for i in range(101):
        assert h.table.output(h.dev, BOB, ip_skb(ALICE, BOB, str(i).encode(), head=1514)) is None
    assert h.entry(BOB).queued == 100
    assert drop_counts(h.drops) == {("NEIGH_QUEUEFULL", "__neigh_event_send"): 1}
    assert h.table.stats.unresolved_discards == 1
    h.rcv(REPLY_FROM_BOB)
    assert [p for _, p in h.sent] == [str(i).encode() for i in range(1, 101)]
    assert len(h.sent) + h.drops.total() == 101


def test_an_skb_larger_than_the_bound_still_waits_alone() -> None:
    # The eviction loop stops on an empty queue: the newest skb is always kept.
    h = Host()
    h.table.set_parm("unres_qlen_bytes", 0)
    h.send(BOB, b"a")
    h.send(BOB, b"b")
    assert h.entry(BOB).queued == 1
    h.rcv(REPLY_FROM_BOB)
    assert h.sent == [(BOB_MAC, b"b")]
    assert drop_counts(h.drops) == {("NEIGH_QUEUEFULL", "__neigh_event_send"): 1}


def test_three_broadcasts_a_second_apart_then_failed() -> None:
    h = Host()
    h.send(BOB, b"a")
    h.send(BOB, b"b")
    h.at(0.999)
    assert len(h.frames) == 1
    h.at(1.0)
    h.at(2.0)
    assert h.frames == [REQUEST_FOR_BOB] * 3
    assert h.state(BOB) == NUD_INCOMPLETE
    assert h.table.next_timer() == 3.0
    h.at(3.0)
    # The real kernel: requests at +0, +1.02, +2.05 s (its timer wheel runs late),
    # then "probes 6 FAILED"; each held datagram came back as ICMP host unreachable.
    n = h.entry(BOB)
    assert (n.state, n.queued, n.probes, n.lladdr) == (NUD_FAILED, 0, 6, b"")
    assert h.frames == [REQUEST_FOR_BOB] * 3
    assert h.failed == [b"a", b"b"]
    assert drop_counts(h.drops) == {("NEIGH_FAILED", "arp_error_report"): 2}
    assert h.table.stats.res_failed == 1
    assert h.table.next_timer() is None


def test_late_timer_run_replays_each_expiry_in_order() -> None:
    h = Host()
    h.send(BOB)
    h.at(10.0)
    assert h.frames == [REQUEST_FOR_BOB] * 3
    n = h.entry(BOB)
    # FAILED at 3.0, as punctual timers would have made it.
    assert (n.state, n.updated) == (NUD_FAILED, 7.0)


def test_a_failed_entry_starts_resolving_again_on_the_next_packet() -> None:
    # The real kernel: a datagram to a FAILED 10.0.0.9 made it INCOMPLETE ("probes 4")
    # and sent three more broadcasts.
    h = Host()
    h.send(BOB, b"a")
    h.at(3.0)
    assert h.state(BOB) == NUD_FAILED
    assert h.send(BOB, b"b") is None
    n = h.entry(BOB)
    assert (n.state, n.queued, n.probes) == (NUD_INCOMPLETE, 1, 4)
    assert h.frames == [REQUEST_FOR_BOB] * 4
    h.rcv(REPLY_FROM_BOB)
    assert h.sent == [(BOB_MAC, b"b")]


def test_without_multicast_probes_a_new_entry_fails_at_once() -> None:
    h = Host()
    h.table.set_parm("mcast_solicit", 0)
    assert h.send(BOB) is None
    assert h.frames == []
    assert h.state(BOB) == NUD_FAILED
    assert drop_counts(h.drops) == {("NEIGH_FAILED", "__neigh_event_send"): 1}


def test_reachable_stale_delay_probe_reachable_then_failed_exact_times() -> None:
    h = Host()
    h.send(BOB, b"a")
    h.at(0.5)
    h.rcv(REPLY_FROM_BOB)
    assert h.table.reachable_time(ETH0) == 30.0
    assert h.table.next_timer() == 30.5
    # Traffic while REACHABLE takes the header cache and does not refresh `used` (the
    # real kernel: "used" kept growing under a steady stream until the entry expired).
    h.at(28.0)
    assert h.send(BOB, b"b") == BOB_MAC
    # A timer that fires on the very jiffy finds now == confirmed + reachable_time,
    # "still alive", and looks again HZ/100 later.
    h.at(30.5)
    assert h.state(BOB) == NUD_REACHABLE
    assert h.table.next_timer() == 30.51
    h.at(30.51)
    assert h.state(BOB) == NUD_STALE
    assert h.table.next_timer() is None
    # STALE is usable; the use starts DELAY.
    h.at(40.0)
    assert h.send(BOB, b"c") == BOB_MAC
    assert h.state(BOB) == NUD_DELAY
    assert h.table.next_timer() == 45.0
    assert h.send(BOB, b"d") == BOB_MAC
    h.at(45.0)
    n = h.entry(BOB)
    assert (n.state, n.probes) == (NUD_PROBE, 1)
    assert h.frames == [REQUEST_FOR_BOB, PROBE_FOR_BOB]
    assert h.send(BOB, b"e") == BOB_MAC
    # The unicast reply confirms: REACHABLE, probes left as they were ("probes 1
    # REACHABLE" on the real kernel).
    h.at(45.25)
    h.rcv(REPLY_FROM_BOB)
    n = h.entry(BOB)
    assert (n.state, n.probes) == (NUD_REACHABLE, 1)
    assert h.table.next_timer() == 75.25

    # Round two: nobody answers the unicast probes.
    h.at(75.26)
    assert h.state(BOB) == NUD_STALE
    h.at(80.0)
    h.send(BOB, b"f")
    h.at(85.0)
    h.at(86.0)
    h.at(87.0)
    n = h.entry(BOB)
    assert (n.state, n.probes) == (NUD_PROBE, 3)
    assert h.frames == [REQUEST_FOR_BOB] + [PROBE_FOR_BOB] * 4
    h.at(88.0)
    assert h.state(BOB) == NUD_FAILED
    assert h.frames == [REQUEST_FOR_BOB] + [PROBE_FOR_BOB] * 4
    # Only the first packet waited; every later one left with the MAC at once.
    assert h.sent == [(BOB_MAC, b"a")]
    assert h.drops.total() == 0


def test_reachable_used_within_delay_first_probe_time_goes_to_delay() -> None:
    # The real kernel with base_reachable_time_ms 2000 and a steady stream: REACHABLE
    # went straight to DELAY, then a unicast probe, then REACHABLE again.
    h = Host()
    h.table.set_parm("base_reachable_time_ms", 4000)
    h.send(BOB)
    h.at(0.5)
    h.rcv(REPLY_FROM_BOB)
    h.at(4.5)
    h.at(4.51)
    assert h.state(BOB) == NUD_DELAY
    assert h.table.next_timer() == 9.51
    h.at(9.51)
    assert h.state(BOB) == NUD_PROBE
    assert h.frames == [REQUEST_FOR_BOB, PROBE_FOR_BOB]


def test_a_confirmation_counts_as_use() -> None:
    # neigh_add_timer(): `used` is brought up to `confirmed`, so an entry confirmed
    # without being used still goes to DELAY, not STALE, if it expires soon after.
    h = Host()
    h.table.set_parm("base_reachable_time_ms", 4000)
    seven = ip_from_str("10.0.0.7")
    h.rcv(REQUEST_FROM_07, PACKET_BROADCAST)
    h.at(3.0)
    h.rcv(arp(2, bytes.fromhex("020000000007"), seven, ALICE_MAC, ALICE, dst=ALICE_MAC))
    assert h.state(seven) == NUD_REACHABLE
    h.at(7.01)
    assert h.state(seven) == NUD_DELAY


def test_first_reply_wins_for_locktime() -> None:
    h = Host()
    other = bytes.fromhex("0200000000ee")
    h.send(BOB)
    h.at(0.2)
    h.rcv(REPLY_FROM_BOB)
    h.at(0.7)
    h.rcv(arp(2, other, BOB, ALICE_MAC, ALICE, dst=ALICE_MAC))
    assert h.entry(BOB).lladdr == BOB_MAC
    h.at(1.5)
    h.rcv(arp(2, other, BOB, ALICE_MAC, ALICE, dst=ALICE_MAC))
    n = h.entry(BOB)
    assert (n.state, n.lladdr) == (NUD_REACHABLE, other)


def test_a_broadcast_reply_only_makes_the_entry_stale() -> None:
    h = Host()
    h.send(BOB, b"a")
    h.rcv(arp(2, BOB_MAC, BOB, ALICE_MAC, ALICE), PACKET_BROADCAST)
    # STALE, then the held packet's use makes it DELAY.
    assert h.state(BOB) == NUD_DELAY
    assert h.sent == [(BOB_MAC, b"a")]


# Answering.


def test_request_for_our_address_is_answered_and_the_asker_learned_stale() -> None:
    h = Host()
    h.at(5.0)
    h.rcv(REQUEST_FROM_07, PACKET_BROADCAST)
    assert h.frames == [REPLY_TO_07]
    # The real kernel: "10.0.0.7 lladdr 02:00:00:00:00:07 used 1/61/1 probes 0 STALE".
    n = h.entry(ip_from_str("10.0.0.7"))
    assert (n.state, n.lladdr, n.probes, n.confirmed) == (NUD_STALE, bytes.fromhex("020000000007"), 0, 60.0)
    assert h.table.next_timer() is None
    assert (h.table.arp_stats.requests_received, h.table.arp_stats.replies_sent) == (1, 1)
    assert h.drops.total() == 0


def test_request_for_an_address_on_another_device_is_answered() -> None:
    # arp_ignore 0: any local address, whichever device holds it.
    h = Host()
    h.table.set_addrs([(ETH0, ALICE, 24), (3, ip_from_str("192.168.7.1"), 24)])
    h.rcv(arp(1, BOB_MAC, BOB, bytes(6), ip_from_str("192.168.7.1")))
    assert h.frames == [arp(2, ALICE_MAC, ip_from_str("192.168.7.1"), BOB_MAC, BOB, dst=BOB_MAC)]


def test_request_from_the_awaited_host_releases_its_queue_before_the_answer() -> None:
    h = Host()
    h.send(BOB, b"a")
    h.at(0.1)
    h.rcv(arp(1, BOB_MAC, BOB, bytes(6), ALICE))
    assert h.events == ["frame 0001", "xmit a", "frame 0002"]
    # neigh_event_ns made it STALE with confirmed 60 s back; the held packet's use made
    # it DELAY, and DELAY will probe.
    n = h.entry(BOB)
    assert (n.state, n.lladdr) == (NUD_DELAY, BOB_MAC)
    assert h.table.next_timer() == 5.1
    h.at(5.1)
    assert h.state(BOB) == NUD_PROBE


def test_a_request_from_a_reachable_neighbour_leaves_it_reachable() -> None:
    # The real kernel: bob's unicast probe for 10.0.0.1 left alice's REACHABLE entry for
    # bob as it was (neigh_event_ns asks for STALE, but the address is the same).
    h = Host()
    h.send(BOB)
    h.rcv(REPLY_FROM_BOB)
    h.at(10.0)
    h.rcv(arp(1, BOB_MAC, BOB, bytes(6), ALICE, dst=ALICE_MAC))
    n = h.entry(BOB)
    assert (n.state, n.confirmed) == (NUD_REACHABLE, 10.0)
    assert h.table.next_timer() == 30.0
    # A new address in a request does override: STALE with it.
    other = bytes.fromhex("0200000000ee")
    h.rcv(arp(1, other, BOB, bytes(6), ALICE, dst=ALICE_MAC))
    n = h.entry(BOB)
    assert (n.state, n.lladdr) == (NUD_STALE, other)


def test_requests_not_for_us_are_ignored() -> None:
    # The real kernel neither answered nor learned 10.0.0.8 asking for 10.0.0.99.
    h = Host()
    h.rcv(arp(1, bytes.fromhex("020000000008"), ip_from_str("10.0.0.8"), bytes(6), ip_from_str("10.0.0.99")))
    # Nor for the subnet broadcast, nor from a martian 127.0.0.5 for our address.
    h.rcv(arp(1, bytes.fromhex("020000000006"), ip_from_str("10.0.0.6"), bytes(6), ip_from_str("10.0.0.255")))
    h.rcv(arp(1, bytes.fromhex("020000000005"), ip_from_str("127.0.0.5"), bytes(6), ALICE))
    # Nor from one claiming our own address as its source (fib_validate_source).
    h.rcv(arp(1, bytes.fromhex("020000000009"), ALICE, bytes(6), ALICE))
    assert h.frames == []
    assert h.table.entries() == []
    assert h.drops.total() == 0
    assert h.table.arp_stats.requests_received == 4


def test_an_unsolicited_reply_creates_no_entry() -> None:
    h = Host()
    h.rcv(arp(2, bytes.fromhex("020000000009"), ip_from_str("10.0.0.9"), ALICE_MAC, ALICE, dst=ALICE_MAC))
    assert h.table.entries() == []
    assert h.frames == []


def test_gratuitous_arp_updates_an_entry_but_creates_none() -> None:
    h = Host()
    seven = ip_from_str("10.0.0.7")
    h.rcv(REQUEST_FROM_07, PACKET_BROADCAST)
    h.at(0.5)
    new_mac = bytes.fromhex("020000000077")
    h.rcv(arp(1, new_mac, seven, bytes(6), seven), PACKET_BROADCAST)
    n = h.entry(seven)
    assert (n.state, n.lladdr) == (NUD_STALE, new_mac)
    eight = ip_from_str("10.0.0.8")
    h.rcv(arp(1, bytes.fromhex("020000000008"), eight, bytes(6), eight), PACKET_BROADCAST)
    assert [e.address for e in h.table.entries()] == [seven]
    assert h.frames == [REPLY_TO_07]


def test_duplicate_address_probe_is_answered_to_0_0_0_0() -> None:
    h = Host()
    asker = bytes.fromhex("02000000000a")
    h.rcv(arp(1, asker, 0, bytes(6), ALICE))
    # Byte for byte the real kernel's answer; nothing learned.
    assert h.frames == [
        bytes.fromhex(
            "02000000000a 020000000001 0806"
            " 0001 0800 06 04 0002"
            " 020000000001 0a000001 02000000000a 00000000"  # 10.0.0.1 is at alice, to 0.0.0.0
        )
    ]
    assert h.table.entries() == []


def test_arp_validation_drops_with_the_kernels_reasons() -> None:
    h = Host()
    good = arp(1, BOB_MAC, BOB, bytes(6), ALICE)
    h.rcv(good[:41])
    h.rcv(good[:18] + b"\x08" + good[19:])  # ar_hln 8
    h.rcv(good[:14] + b"\x03\x00" + good[16:])  # ar_hrd ARPHRD_LOOPBACK
    h.rcv(good[:20] + b"\x00\x03" + good[22:])  # ar_op 3 (RARP)
    h.rcv(arp(1, BOB_MAC, BOB, bytes(6), ip_from_str("224.0.0.1")))
    h.rcv(arp(1, BOB_MAC, BOB, bytes(6), ip_from_str("127.0.0.1")))
    assert drop_counts(h.drops) == {
        ("PKT_TOO_SMALL", "arp_rcv"): 1,
        ("NOT_SPECIFIED", "arp_rcv"): 1,
        ("NOT_SPECIFIED", "arp_process"): 4,
    }
    # ar_hrd ARPHRD_IEEE802 is as good as Ethernet (RFC 2625).
    h.rcv(good[:14] + b"\x00\x06" + good[16:])
    # Frames for another host, and ARP on a NOARP device, are consumed, not dropped.
    h.rcv(good, PACKET_OTHERHOST)
    noarp = ether_dev(3, "eth1", ALICE_MAC)
    noarp.flags |= IFF_NOARP
    h.table.arp_rcv(noarp, good, PACKET_HOST)
    assert h.drops.total() == 6
    assert h.frames == [arp(2, ALICE_MAC, ALICE, BOB_MAC, BOB, dst=BOB_MAC)]


def test_request_source_is_the_packets_if_local_on_the_device_else_selected() -> None:
    h = Host()
    lan2 = ip_from_str("192.168.7.1")
    h.table.set_addrs([(LOOPBACK_IFINDEX, ip_from_str("127.0.0.1"), 8), (ETH0, ALICE, 24), (ETH0, lan2, 24)])
    # A forwarded packet's foreign source: inet_select_addr picks the address in the
    # target's subnet.
    h.send(ip_from_str("192.168.7.9"), src=ip_from_str("172.16.0.1"))
    # A local source on this device is kept even off the target's subnet.
    h.send(ip_from_str("192.168.7.10"), src=ALICE)
    assert [f[28:32] for f in h.frames] == [lan2.to_bytes(4, "big"), ALICE.to_bytes(4, "big")]


# Addresses that need no ARP.


def test_broadcast_and_multicast_nexthops_resolve_without_arp() -> None:
    h = Host()
    assert h.send(ip_from_str("10.0.0.255")) == b"\xff" * 6
    assert h.send(ip_from_str("255.255.255.255")) == b"\xff" * 6
    assert h.send(ip_from_str("224.0.0.251")) == bytes.fromhex("01005e0000fb")
    assert h.frames == []
    assert {n.state for n in h.table.entries()} == {NUD_NOARP}


def test_loopback_and_noarp_devices_are_the_callers() -> None:
    h = Host()
    with pytest.raises(ValueError):
        h.table.output(loopback_dev(), ip_from_str("127.0.0.1"), ip_skb(ALICE, BOB))
    noarp = ether_dev(3, "tun0", bytes(6))
    noarp.flags |= IFF_NOARP
    with pytest.raises(ValueError):
        h.table.output(noarp, BOB, ip_skb(ALICE, BOB))


# ip neigh.


def test_permanent_entry_is_untouched_by_timers_replies_and_flush() -> None:
    h = Host()
    assert h.table.add(h.dev, BOB, BOB_MAC, NUD_PERMANENT) == 0
    assert h.send(BOB) == BOB_MAC
    h.at(1000.0)
    h.rcv(arp(2, bytes.fromhex("0200000000ee"), BOB, ALICE_MAC, ALICE, dst=ALICE_MAC))
    assert h.table.flush(h.dev) == 0
    n = h.entry(BOB)
    assert (n.state, n.lladdr) == (NUD_PERMANENT, BOB_MAC)
    assert h.table.next_timer() is None
    assert h.frames == []
    assert h.table.delete(h.dev, BOB) == 0
    assert h.table.delete(h.dev, BOB) == errno.ENOENT
    assert h.table.entries() == []


def test_add_checks_lladdr_and_state_as_iproute2_and_the_kernel_do() -> None:
    h = Host()
    # The real kernel: "Invalid link address" for 4 bytes; 7 bytes are cut to 6.
    assert h.table.add(h.dev, BOB, BOB_MAC[:4], NUD_PERMANENT) == errno.EINVAL
    assert h.table.add(h.dev, BOB, bytes(33), NUD_PERMANENT) == errno.ERANGE
    assert h.table.add(h.dev, BOB, BOB_MAC + b"\x99", NUD_PERMANENT) == 0
    assert h.entry(BOB).lladdr == BOB_MAC
    # nud_state_a2n(): one bit below 0x100.
    assert h.table.add(h.dev, CAROL, BOB_MAC, NUD_STALE | NUD_REACHABLE) == errno.EINVAL
    assert h.table.add(h.dev, CAROL, BOB_MAC, 0x100) == errno.EINVAL
    # A valid state needs an address ("No link layer address given"); like the real
    # kernel, the entry it created stays, in NUD_NONE.
    assert h.table.add(h.dev, CAROL, b"", NUD_REACHABLE) == errno.EINVAL
    assert h.state(CAROL) == NUD_NONE
    assert h.table.add(h.dev, CAROL, BOB_MAC, NUD_REACHABLE) == 0
    assert h.state(CAROL) == NUD_REACHABLE
    assert h.table.next_timer() == 30.0


def test_delete_drops_the_held_packets_as_failed() -> None:
    h = Host()
    h.send(BOB, b"a")
    h.send(BOB, b"b")
    assert h.table.delete(h.dev, BOB) == 0
    assert drop_counts(h.drops) == {("NEIGH_FAILED", "arp_error_report"): 2}
    assert h.failed == [b"a", b"b"]
    assert h.table.entries() == []
    assert h.table.next_timer() is None
    assert h.table.delete(h.dev, BOB) == errno.ENOENT


def test_flush_leaves_permanent_and_noarp_entries() -> None:
    # The real kernel with iproute2 6.1: `ip neigh flush dev va` deleted the FAILED,
    # STALE and NONE entries and kept PERMANENT and NOARP ones.
    h = Host()
    four, five, six = (ip_from_str(f"10.0.0.{i}") for i in (4, 5, 6))
    assert h.table.add(h.dev, BOB, BOB_MAC, NUD_PERMANENT) == 0
    assert h.table.add(h.dev, CAROL, BOB_MAC, NUD_NOARP) == 0
    assert h.table.add(h.dev, four, BOB_MAC, NUD_STALE) == 0
    assert h.table.add(h.dev, five, b"", NUD_NONE) == 0
    h.send(six, b"held")
    h.send(ip_from_str("10.0.0.7"))
    h.at(3.0)
    h.send(six, b"held")
    assert h.state(ip_from_str("10.0.0.7")) == NUD_FAILED
    assert h.table.flush(h.dev) == 4
    assert sorted(n.address for n in h.table.entries()) == [BOB, CAROL]
    assert drop_counts(h.drops) == {("NEIGH_FAILED", "arp_error_report"): 3}


def test_ifdown_takes_permanent_entries_too_carrier_down_does_not() -> None:
    h = Host()
    h.table.add(h.dev, BOB, BOB_MAC, NUD_PERMANENT)
    h.send(CAROL, b"held")
    assert h.table.carrier_down(h.dev) == 1
    assert drop_counts(h.drops) == {("QUEUE_PURGE", "neigh_destroy"): 1}
    assert [n.address for n in h.table.entries()] == [BOB]
    assert h.table.ifdown(h.dev) == 1
    assert h.table.entries() == []


# The table's bound.


def test_the_table_is_bounded_by_gc_thresh3() -> None:
    h = Host()
    h.at(1.0)
    others = [ip_from_str(f"10.1.{i // 256}.{i % 256}") for i in range(1025)]
    for addr in others[:1024]:
        h.send(addr)
    # Every entry is resolving, held by its timer: nothing to collect.
    assert h.send(others[1024]) is None
    assert drop_counts(h.drops) == {("NEIGH_CREATEFAIL", "ip_finish_output2"): 1}
    stat = h.table.proc_stat()
    assert (stat["entries"], stat["table_fulls"], stat["forced_gc_runs"]) == (1024, 1, 1)
    # neigh_hash_grow: 8 buckets doubled each time the entries outgrew them, to 1024.
    assert stat["hash_grows"] == 7

    h.at(4.0)
    assert {n.state for n in h.table.entries()} == {NUD_FAILED}
    # The forced gc frees FAILED entries, oldest first, down to gc_thresh2.
    assert h.send(others[1024]) is None
    stat = h.table.proc_stat()
    assert (stat["entries"], stat["destroys"], stat["forced_gc_runs"]) == (512, 513, 2)
    assert h.entry(others[1024]).state == NUD_INCOMPLETE
    assert [n.address for n in h.table.entries()][:2] == [others[513], others[514]]

    # From gc_thresh1 entries on, neigh_periodic_work runs every 15 s; its first run
    # comes base_reachable_time after the table was made and frees the FAILED ones.
    assert h.table.next_timer() == 5.0
    h.at(30.0)
    stat = h.table.proc_stat()
    assert (stat["entries"], stat["periodic_gc_runs"]) == (0, 1)
    assert h.table.next_timer() is None
    assert h.drops.get(SkbDropReason.NEIGH_FAILED) == 1025
    assert h.drops.total() == 1026


def test_periodic_gc_frees_stale_entries_unused_for_gc_stale_time() -> None:
    h = Host()
    h.table.set_parm("gc_thresh1", 2)
    h.table.add(h.dev, BOB, BOB_MAC, NUD_STALE)
    h.table.add(h.dev, CAROL, BOB_MAC, NUD_PERMANENT)
    h.at(30.0)
    assert h.table.stats.periodic_gc_runs == 1
    h.at(59.999)
    assert len(h.table.entries()) == 2
    # Runs every 15 s from 30 s; at 60 s `used` (0) is gc_stale_time old and the STALE
    # entry goes; the PERMANENT one stays.
    h.at(60.0)
    assert [n.address for n in h.table.entries()] == [CAROL]
    assert h.table.stats.periodic_gc_runs == 3


# MSG_CONFIRM (skb->dst_pending_confirm) and freeing.


def test_msg_confirm_takes_a_delay_entry_back_to_reachable_without_a_probe() -> None:
    """Checked on Linux 6.18.44 between two namespaces (delay_first_probe_time 1 s, the
    peer's ARP off so a probe goes unanswered; `ip -s neigh` and tcpdump on the peer): a
    STALE entry, a send at t0 → DELAY "used 0/60/0"; a second send 0.3 s later
    WITH MSG_CONFIRM → DELAY "used 0/0/0" (confirmed now), and 1.5 s after t0 REACHABLE
    "probes 0" with no ARP seen; the same second send WITHOUT it → 1.5 s after t0
    PROBE "probes 1" and one unicast who-has 10.231.0.2. (On the kernel a confirmation
    in the jiffy of the STALE→DELAY send itself does not count: its timer fires a jiffy
    or more late, after confirmed + delay; here timers are punctual.)"""
    outcomes = []
    for confirm in (False, True):
        h = Host()
        h.at(100.0)
        assert h.table.add(h.dev, BOB, BOB_MAC, NUD_STALE) == 0
        assert h.send(BOB, b"one") == BOB_MAC
        n = h.entry(BOB)
        assert (n.state, n.confirmed) == (NUD_DELAY, 60.0)
        assert h.table.next_timer() == 105.0
        h.at(101.0)
        skb = ip_skb(ALICE, BOB, b"two")
        skb.dst_pending_confirm = confirm
        assert h.table.output(h.dev, BOB, skb) == BOB_MAC
        n = h.entry(BOB)
        assert (n.state, n.confirmed) == (NUD_DELAY, 0.0 if confirm else 61.0)
        h.at(105.0)
        n = h.entry(BOB)
        outcomes.append((n.state, n.probes, list(h.frames), h.table.next_timer()))
    assert outcomes == [
        # Not confirmed within delay_first_probe_time: PROBE, a unicast request.
        (NUD_PROBE, 1, [PROBE_FOR_BOB], 106.0),
        # Confirmed at 101: REACHABLE until confirmed + reachable_time (30 s).
        (NUD_REACHABLE, 0, [], 131.0),
    ]


def test_a_confirmation_on_a_reachable_entry_keeps_it_alive() -> None:
    # neigh_confirm() before neigh_hh_output(): the cached header path confirms too, and
    # the REACHABLE timer finds the entry "still alive".
    h = Host()
    h.send(BOB)
    h.rcv(REPLY_FROM_BOB)
    assert h.state(BOB) == NUD_REACHABLE
    h.at(20.0)
    skb = ip_skb(ALICE, BOB)
    skb.dst_pending_confirm = True
    assert h.table.output(h.dev, BOB, skb) == BOB_MAC
    h.at(30.0)
    assert h.state(BOB) == NUD_REACHABLE
    assert h.table.next_timer() == 50.0


def test_every_skb_the_table_drops_is_freed_once_enobufs_only_for_createfail() -> None:
    freed: list[tuple[bytes, bool]] = []
    h = Host()
    h.table = NeighTable(
        h.drops,
        clock=h.clock,
        send_frame=h._send_frame,
        xmit_resolved=h._xmit,
        rng=MidRandom(),
        free=lambda skb, enobufs: freed.append((skb.payload()[20:], enobufs)),
    )
    h.table.set_addrs([(ETH0, ALICE, 24)])
    h.table.parms.unres_qlen_bytes = 2 * skb_truesize(64)
    for word in (b"a", b"b", b"c"):
        h.send(BOB, word)
    # The arp_queue holds two: the oldest made room (NEIGH_QUEUEFULL).
    assert freed == [(b"a", False)]
    # No entry can be made while the resolving one holds the only place: the one drop
    # the sender hears of (-ENOBUFS from __neigh_create).
    h.table.parms.gc_thresh3 = 1
    h.send(CAROL, b"e")
    assert freed[-1] == (b"e", True)
    h.at(3.0)
    # Resolution failed: the held ones go (arp_error_report).
    assert freed[-2:] == [(b"b", False), (b"c", False)]
    # A FAILED entry drops the next packet at once (__neigh_event_send).
    h.table.parms.mcast_solicit = 0
    h.send(BOB, b"d")
    assert freed[-1] == (b"d", False)
    assert h.drops.total() == len(freed) == 5
