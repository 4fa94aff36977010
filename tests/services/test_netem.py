"""sch_netem over Ethernet frames: exact times, orders and counters for deterministic
configurations, binomial bounds for the random ones. The clock is the test's: every
enqueue and dequeue gets its `now`, nothing sleeps.
"""

from __future__ import annotations

import dataclasses
import math
import re
import struct

import pytest

from services.core.wire.ethernet import ETH_HLEN, ETH_P_IP, ETH_ZLEN
from services.nic.netem import (
    INT_MAX,
    U32_MAX,
    Netem,
    NetemConfig,
    percent_to_u32,
)

MS = 1_000_000
US = 1_000
DST = bytes.fromhex("020000000002")
SRC = bytes.fromhex("020000000001")
N = 20_000
SIGMAS = 5.0


def frame(seq: int, size: int = ETH_ZLEN) -> bytes:
    """An Ethernet frame whose payload starts with its sequence number."""
    head = DST + SRC + struct.pack("!H", ETH_P_IP) + struct.pack("!I", seq)
    return head + bytes(size - len(head))


def seq_of(f: bytes) -> int:
    return int(struct.unpack_from("!I", f, ETH_HLEN)[0])


def binomial_bounds(n: int, p: float) -> tuple[float, float]:
    """Mean +- SIGMAS standard deviations of Binomial(n, p)."""
    mean = n * p
    sd = math.sqrt(n * p * (1 - p))
    return mean - SIGMAS * sd, mean + SIGMAS * sd


def netem_probability(pct: float) -> float:
    """A netem event hits when a u32 draw r is <= percent_to_u32(pct)."""
    return (percent_to_u32(pct) + 1) / 2**32


def assert_within(observed: int, n: int, p: float) -> None:
    low, high = binomial_bounds(n, p)
    assert low <= observed <= high, f"{observed} of {n} outside [{low:.0f}, {high:.0f}] for p={p}"


def run_out(q: Netem) -> list[tuple[int, bytes]]:
    """Dequeue at each deadline until the queue is empty: (time sent, frame)."""
    sent: list[tuple[int, bytes]] = []
    while (deadline := q.next_deadline()) is not None:
        batch = q.dequeue(deadline)
        assert batch
        sent += [(deadline, f) for f in batch]
    return sent


def bit_difference(a: bytes, b: bytes) -> list[tuple[int, int]]:
    """(byte index, xor) for every byte that differs."""
    assert len(a) == len(b)
    return [(i, x ^ y) for i, (x, y) in enumerate(zip(a, b, strict=True)) if x != y]


# Configuration.


@pytest.mark.parametrize(
    ("config", "message"),
    [
        (NetemConfig(limit=-1), f"limit -1 out of range 0..{U32_MAX}"),
        (NetemConfig(limit=U32_MAX + 1), f"limit {U32_MAX + 1} out of range 0..{U32_MAX}"),
        (NetemConfig(loss_pct=100.5), "loss 100.5% out of range 0..100%"),
        (NetemConfig(loss_pct=-1.0), "loss -1.0% out of range 0..100%"),
        (NetemConfig(duplicate_pct=101.0), "duplicate 101.0% out of range 0..100%"),
        (NetemConfig(delay_us=1, reorder_pct=200.0), "reorder 200.0% out of range 0..100%"),
        (NetemConfig(corrupt_pct=math.nan), "corrupt nan% out of range 0..100%"),
        (NetemConfig(delay_us=-1), "negative latency"),
        (NetemConfig(jitter_us=-1), "negative jitter"),
        (NetemConfig(rate_bps=-8), "rate -8bit out of range"),
        (NetemConfig(seed=-1), f"seed -1 out of range 0..{2**64 - 1}"),
        (NetemConfig(gap=-1), f"gap -1 out of range 0..{U32_MAX}"),
        (NetemConfig(reorder_pct=25.0), "reordering not possible without specifying some delay"),
        # The jitter is no delay to tc: it tests latency alone.
        (
            NetemConfig(jitter_us=1000, reorder_pct=25.0),
            "reordering not possible without specifying some delay",
        ),
        (NetemConfig(delay_us=1000, gap=5), "gap specified without reorder probability"),
        # tc tests the scaled u32: a probability that rounds to 0 is no reorder at all.
        (NetemConfig(delay_us=1000, gap=5, reorder_pct=1e-9), "gap specified without reorder probability"),
    ],
)
def test_validate_refuses_what_tc_and_the_kernel_refuse(config: NetemConfig, message: str) -> None:
    assert config.validate() == message
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        Netem(config)


@pytest.mark.parametrize(
    "config",
    [
        NetemConfig(),
        NetemConfig(limit=0),
        NetemConfig(loss_pct=100.0, duplicate_pct=0.0, corrupt_pct=100.0),
        NetemConfig(delay_us=10_000, reorder_pct=25.0),  # gap filled in as tc does
        NetemConfig(delay_us=10_000, reorder_pct=25.0, gap=5),
        NetemConfig(reorder_pct=1e-9),  # rounds to 0: nothing to refuse
        NetemConfig(jitter_us=5_000),  # `delay 0 5ms`
        NetemConfig(jitter_us=10**10),  # capped to INT_MAX ns, not refused
        NetemConfig(rate_bps=7),  # 0 bytes per second: no rate
        NetemConfig(seed=2**64 - 1),
    ],
)
def test_validate_accepts(config: NetemConfig) -> None:
    assert config.validate() is None
    Netem(config)


def test_percent_scaling_is_tcs() -> None:
    assert percent_to_u32(0.0) == 0
    assert percent_to_u32(100.0) == U32_MAX
    assert percent_to_u32(10.0) == round(0.1 * U32_MAX) == 429496730


# Delay and jitter.


def test_delay_only_sends_each_frame_after_exactly_the_delay() -> None:
    q = Netem(NetemConfig(delay_us=10_000))
    assert q.next_deadline() is None
    for i in range(3):
        assert q.enqueue(frame(i), i * MS)
    assert q.stats.backlog == 3
    assert q.stats.backlog_bytes == 3 * ETH_ZLEN
    assert q.next_deadline() == 10 * MS
    assert q.dequeue(10 * MS - 1) == []
    assert q.dequeue(10 * MS) == [frame(0)]
    assert q.next_deadline() == 11 * MS
    assert q.dequeue(12 * MS) == [frame(1), frame(2)]
    assert q.next_deadline() is None
    assert (q.stats.sent, q.stats.sent_bytes, q.stats.backlog, q.stats.backlog_bytes) == (3, 180, 0, 0)
    assert q.stats.dropped == q.stats.overlimits == q.stats.reordered == 0


def test_no_delay_sends_at_once() -> None:
    q = Netem(NetemConfig())
    assert q.enqueue(frame(1), 5)
    assert q.next_deadline() == 5
    assert q.dequeue(5) == [frame(1)]


def test_jitter_is_uniform_over_delay_plus_minus_jitter_upper_bound_excluded() -> None:
    # tabledist() without a table: (rnd % (2 * sigma)) + mu - sigma.
    q = Netem(NetemConfig(delay_us=10_000, jitter_us=2_000, seed=7))
    delays = []
    now = 0
    for i in range(5_000):
        q.enqueue(frame(i), now)
        deadline = q.next_deadline()
        assert deadline is not None
        delays.append(deadline - now)
        assert q.dequeue(deadline) == [frame(i)]
        now = deadline
    assert all(8 * MS <= d < 12 * MS for d in delays)
    # 5000 uniform draws come within 0.1% of the range of both ends.
    assert min(delays) < 8 * MS + 4 * US
    assert max(delays) > 12 * MS - 4 * US
    assert abs(sum(delays) / len(delays) - 10 * MS) < 0.05 * MS


def test_jitter_reorders_through_the_tfifo() -> None:
    # Frames leave by time_to_send, not by arrival: jitter alone reorders, as with netem.
    q = Netem(NetemConfig(delay_us=10_000, jitter_us=5_000, seed=3))
    for i in range(200):
        q.enqueue(frame(i), 0)
    sent = run_out(q)
    deadlines = [t for t, _ in sent]
    out = [seq_of(f) for _, f in sent]
    assert deadlines == sorted(deadlines)
    assert all(5 * MS <= d < 15 * MS for d in deadlines)
    assert sorted(out) == list(range(200))
    assert out != list(range(200))


def test_jitter_above_delay_can_send_at_once() -> None:
    # delay 1ms jitter 5ms: tabledist() goes as low as -4ms, a time_to_send in the past.
    q = Netem(NetemConfig(delay_us=1_000, jitter_us=5_000, seed=1))
    now = 100 * MS
    immediate = 0
    for i in range(1_000):
        q.enqueue(frame(i), now)
        deadline = q.next_deadline()
        assert deadline is not None
        assert now - 4 * MS <= deadline < now + 6 * MS
        immediate += deadline <= now
        q.dequeue(deadline)
    # 4 ms and 1 ns of the 10 ms range lie at or before now.
    assert_within(immediate, 1_000, (4 * MS + 1) / (10 * MS))


def test_jitter_is_capped_at_int_max_ns() -> None:
    # delay 10s jitter 10s: netem_change() caps the jitter to INT_MAX ns (2.147 s).
    q = Netem(NetemConfig(delay_us=10**7, jitter_us=10**7, seed=5))
    for i in range(1_000):
        q.enqueue(frame(i), 0)
    times = [t for t, _ in run_out(q)]
    assert all(10**10 - INT_MAX <= t < 10**10 + INT_MAX for t in times)
    assert min(times) < 10**10 - 2 * 10**9 and max(times) > 10**10 + 2 * 10**9


# Rate.


def test_rate_serializes_back_to_back_frames() -> None:
    # 1mbit is 125000 bytes/s: a 1000-byte frame takes 8 ms (packet_time_ns()).
    q = Netem(NetemConfig(rate_bps=1_000_000))
    for i in range(3):
        assert q.enqueue(frame(i, 1000), 0)
    assert q.next_deadline() == 8 * MS
    assert q.dequeue(16 * MS) == [frame(0, 1000), frame(1, 1000)]
    assert q.next_deadline() == 24 * MS
    # The queue's last frame (24 ms) is the reference for the next one.
    assert q.enqueue(frame(3, 1000), 16 * MS)
    assert q.dequeue(31 * MS) == [frame(2, 1000)]
    assert q.next_deadline() == 32 * MS


def test_rate_counts_from_now_once_the_queue_is_empty() -> None:
    # Only queued frames are a reference: once the last one left, serialization starts
    # at the enqueue time again.
    q = Netem(NetemConfig(rate_bps=1_000_000))
    q.enqueue(frame(0, 1000), 0)
    assert q.dequeue(8 * MS) == [frame(0, 1000)]
    q.enqueue(frame(1, 1000), 10 * MS)
    assert q.next_deadline() == 18 * MS


def test_rate_with_delay_delays_the_first_and_serializes_the_rest() -> None:
    # netem_enqueue(): delay -= last->time_to_send - now, floored at 0, from last on.
    q = Netem(NetemConfig(rate_bps=1_000_000, delay_us=5_000))
    for i in range(3):
        q.enqueue(frame(i, 1000), 0)
    assert [t for t, _ in run_out(q)] == [13 * MS, 21 * MS, 29 * MS]
    # A frame arriving after the queue emptied gets the whole delay again.
    q.enqueue(frame(3, 1000), 40 * MS)
    assert q.next_deadline() == 40 * MS + 5 * MS + 8 * MS


def test_rate_is_whole_bytes_per_second_and_time_rounds_down() -> None:
    # tc divides bits by 8 (1001 bit/s is 125 bytes/s); div64_u64 rounds down.
    q = Netem(NetemConfig(rate_bps=1001))
    q.enqueue(frame(0, 60), 0)
    assert q.next_deadline() == 60 * 1_000_000_000 // 125
    q = Netem(NetemConfig(rate_bps=24))  # 3 bytes/s
    q.enqueue(frame(0, 61), 0)
    assert q.next_deadline() == 61 * 1_000_000_000 // 3 == 20_333_333_333
    # Below 8 bit/s tc sends rate 0: no rate at all.
    q = Netem(NetemConfig(rate_bps=7))
    q.enqueue(frame(0), 0)
    assert q.next_deadline() == 0


# Limit.


def test_limit_drops_and_counts_drops_not_overlimits() -> None:
    q = Netem(NetemConfig(limit=3, delay_us=1_000))
    results = [q.enqueue(frame(i), 0) for i in range(5)]
    assert results == [True, True, True, False, False]
    assert q.stats.backlog == 3
    # qdisc_drop_all() bumps drops only; netem never counts an overlimit.
    assert (q.stats.dropped, q.stats.overlimits, q.stats.limit_dropped, q.stats.lost) == (2, 0, 2, 0)
    assert q.dequeue(1 * MS) == [frame(0), frame(1), frame(2)]
    assert q.enqueue(frame(5), 1 * MS)


def test_limit_zero_drops_everything() -> None:
    q = Netem(NetemConfig(limit=0))
    assert not any(q.enqueue(frame(i), 0) for i in range(10))
    assert (q.stats.dropped, q.stats.backlog, q.dequeue(0)) == (10, 0, [])


def test_limit_counts_reordered_frames_too() -> None:
    q = Netem(NetemConfig(limit=2, delay_us=1_000, reorder_pct=100.0))
    assert q.enqueue(frame(0), 0)
    assert q.enqueue(frame(1), 0)
    assert not q.enqueue(frame(2), 0)
    assert q.stats.reordered == 2


# Duplication.


def test_duplicate_100_sends_every_frame_twice_duplicate_first() -> None:
    q = Netem(NetemConfig(duplicate_pct=100.0))
    for i in range(5):
        assert q.enqueue(frame(i), i)
        assert q.stats.backlog == 2
        # rootq->enqueue(skb2) runs before the original is queued.
        assert q.dequeue(i) == [frame(i), frame(i)]
    assert (q.stats.duplicated, q.stats.sent, q.stats.dropped) == (5, 10, 0)


def test_duplicate_is_not_duplicated_again() -> None:
    q = Netem(NetemConfig(duplicate_pct=100.0, delay_us=1_000))
    q.enqueue(frame(0), 0)
    assert q.stats.backlog == 2
    assert q.dequeue(MS) == [frame(0), frame(0)]


def test_duplicate_can_leave_the_queue_one_over_the_limit() -> None:
    # The limit check runs once for the pair before the duplicate goes in, so, as in
    # the kernel, a frame and its duplicate may take the queue from limit - 1 to limit + 1.
    q = Netem(NetemConfig(limit=3, duplicate_pct=100.0, delay_us=1_000))
    assert q.enqueue(frame(0), 0)
    assert q.stats.backlog == 2
    assert q.enqueue(frame(1), 0)
    assert q.stats.backlog == 4
    assert not q.enqueue(frame(2), 0)
    # One drop event; the frame and its clone both freed.
    assert (q.stats.dropped, q.stats.limit_dropped, q.stats.duplicated) == (1, 2, 3)
    assert q.dequeue(MS) == [frame(0)] * 2 + [frame(1)] * 2


# Corruption.


def test_corrupt_100_flips_exactly_one_bit_anywhere_in_the_frame() -> None:
    # On egress skb->data is the Ethernet header (neigh_hh_output() pushed it before
    # dev_queue_xmit()), so netem picks the byte from the whole frame.
    q = Netem(NetemConfig(corrupt_pct=100.0, seed=11))
    positions = []
    for i in range(2_000):
        original = frame(i)
        assert q.enqueue(original, 0)
        (out,) = q.dequeue(0)
        diff = bit_difference(original, out)
        assert len(diff) == 1
        index, xor = diff[0]
        assert xor.bit_count() == 1
        positions.append(index)
    assert q.stats.corrupted == 2_000
    assert min(positions) == 0
    assert max(positions) == ETH_ZLEN - 1
    in_header = sum(p < ETH_HLEN for p in positions)
    assert_within(in_header, 2_000, ETH_HLEN / ETH_ZLEN)


def test_duplicate_is_cloned_before_corruption() -> None:
    # skb_clone() precedes the corruption of the original; the duplicate takes its own
    # corruption draw in the nested netem_enqueue(). With corrupt 100% both are
    # corrupted, independently.
    q = Netem(NetemConfig(duplicate_pct=100.0, corrupt_pct=100.0, seed=2))
    original = frame(1)
    q.enqueue(original, 0)
    dup, orig = q.dequeue(0)
    assert len(bit_difference(original, dup)) == 1
    assert len(bit_difference(original, orig)) == 1
    assert q.stats.corrupted == 2


# Loss.


def test_loss_100_drops_everything() -> None:
    q = Netem(NetemConfig(loss_pct=100.0, delay_us=1_000))
    assert not any(q.enqueue(frame(i), 0) for i in range(10))
    assert (q.stats.lost, q.stats.dropped, q.stats.backlog, q.stats.overlimits) == (10, 10, 0, 0)
    assert q.dequeue(10 * MS) == []
    assert q.next_deadline() is None


def test_loss_100_with_duplicate_100_sends_each_frame_once() -> None:
    # netem_enqueue(): count = 1 + duplicate - loss; one copy survives.
    q = Netem(NetemConfig(loss_pct=100.0, duplicate_pct=100.0))
    for i in range(5):
        assert q.enqueue(frame(i), 0)
    assert q.dequeue(0) == [frame(i) for i in range(5)]
    assert (q.stats.duplicated, q.stats.lost, q.stats.dropped, q.stats.sent) == (5, 5, 0, 5)


# Reordering.


def test_reorder_100_without_gap_sends_every_frame_at_once_newest_first() -> None:
    # tc fills in gap 1; every frame goes to the head of sch->q (__qdisc_enqueue_head).
    q = Netem(NetemConfig(delay_us=10_000, reorder_pct=100.0))
    for i in range(3):
        q.enqueue(frame(i), 0)
    assert q.next_deadline() == 0
    assert q.dequeue(0) == [frame(2), frame(1), frame(0)]
    assert q.stats.reordered == 3


def test_reorder_with_gap_sends_every_gapth_frame_ahead() -> None:
    # q->counter: frames 1..gap-1 are delayed, the gap-th draws and, at 100%, jumps ahead.
    q = Netem(NetemConfig(delay_us=100_000, reorder_pct=100.0, gap=5))
    immediate: list[int] = []
    for i in range(1, 21):
        q.enqueue(frame(i), i * MS)
        immediate += [seq_of(f) for f in q.dequeue(i * MS)]
    delayed = [seq_of(f) for f in q.dequeue(200 * MS)]
    assert immediate == [5, 10, 15, 20]
    assert delayed == [i for i in range(1, 21) if i % 5]
    assert q.stats.reordered == 4


def test_reordered_frames_overtake_delayed_ones() -> None:
    q = Netem(NetemConfig(delay_us=10_000, reorder_pct=100.0, gap=3))
    for i in range(1, 4):
        q.enqueue(frame(i), 0)
    assert q.dequeue(20 * MS) == [frame(3), frame(1), frame(2)]


def test_reordered_frames_skip_the_rate() -> None:
    # A reordered frame is due at once, unserialized; the rated ones queue behind each
    # other around it.
    q = Netem(NetemConfig(delay_us=1_000, reorder_pct=100.0, gap=2, rate_bps=1_000_000))
    q.enqueue(frame(0, 1000), 0)  # delayed: 1 ms + 8 ms
    q.enqueue(frame(1, 1000), 0)  # reordered
    q.enqueue(frame(2, 1000), 0)  # behind the 9 ms frame: 17 ms
    assert run_out(q) == [(0, frame(1, 1000)), (9 * MS, frame(0, 1000)), (17 * MS, frame(2, 1000))]


# Statistics over many frames: each event count within 5 sigma of Binomial(N, p), and
# equal to what comes out.


def test_loss_10_percent() -> None:
    q = Netem(NetemConfig(loss_pct=10.0, seed=101))
    sent = 0
    refused = 0
    for i in range(N):
        if not q.enqueue(frame(i), i):
            refused += 1
        sent += len(q.dequeue(i))
    assert_within(q.stats.lost, N, netem_probability(10.0))
    assert q.stats.lost == q.stats.dropped == refused == N - sent
    assert q.stats.sent == sent


def test_duplicate_5_percent() -> None:
    q = Netem(NetemConfig(duplicate_pct=5.0, seed=102))
    twice = 0
    for i in range(N):
        assert q.enqueue(frame(i), i)
        out = q.dequeue(i)
        assert out in ([frame(i)], [frame(i)] * 2)
        twice += len(out) == 2
    assert_within(q.stats.duplicated, N, netem_probability(5.0))
    assert q.stats.duplicated == twice
    assert q.stats.sent == N + twice


def test_corrupt_2_percent() -> None:
    q = Netem(NetemConfig(corrupt_pct=2.0, seed=103))
    changed = 0
    for i in range(N):
        original = frame(i)
        q.enqueue(original, i)
        (out,) = q.dequeue(i)
        diff = bit_difference(original, out)
        assert len(diff) <= 1
        if diff:
            assert diff[0][1].bit_count() == 1
            changed += 1
    assert_within(q.stats.corrupted, N, netem_probability(2.0))
    assert q.stats.corrupted == changed


def test_reorder_25_percent() -> None:
    # One frame a millisecond, 10 ms delay: a reordered frame comes out when it is
    # queued, ahead of the ten still waiting; every other one exactly 10 ms later.
    q = Netem(NetemConfig(delay_us=10_000, reorder_pct=25.0, seed=104))
    sent_at: dict[int, int] = {}
    order: list[int] = []
    for i in range(N):
        now = i * MS
        q.enqueue(frame(i), now)
        for f in q.dequeue(now):
            sent_at[seq_of(f)] = now
            order.append(seq_of(f))
    for f in q.dequeue(N * MS + 10 * MS):
        sent_at[seq_of(f)] = -1
        order.append(seq_of(f))
    at_once = [i for i in range(N) if sent_at[i] == i * MS]
    assert all(sent_at[i] in (i * MS + 10 * MS, -1) for i in range(N) if sent_at[i] != i * MS)
    assert_within(q.stats.reordered, N, netem_probability(25.0))
    assert q.stats.reordered == len(at_once)
    # Each went out ahead of every delayed frame queued in the 10 ms before it (the one
    # queued exactly 10 ms before is due in the same dequeue, after sch->q).
    position = {s: k for k, s in enumerate(order)}
    reordered = set(at_once)
    for i in at_once:
        waiting = [j for j in range(max(0, i - 10), i) if j not in reordered]
        assert all(position[j] > position[i] for j in waiting)


def test_conservation_with_everything_on() -> None:
    config = NetemConfig(
        limit=40,
        delay_us=5_000,
        jitter_us=3_000,
        loss_pct=10.0,
        duplicate_pct=5.0,
        reorder_pct=25.0,
        gap=3,
        corrupt_pct=2.0,
        rate_bps=100_000_000,
        seed=105,
    )
    q = Netem(config)
    out: list[bytes] = []
    refused = 0
    for i in range(N):
        now = i * 100 * US  # one frame each 100 us, dequeue every 300 us
        if not q.enqueue(frame(i, 100 + i % 1400), now):
            refused += 1
        assert q.stats.backlog <= config.limit + 1
        if i % 3 == 0:
            out += q.dequeue(now)
        s = q.stats
        assert i + 1 + s.duplicated == s.sent + s.lost + s.limit_dropped + s.backlog
    s = q.stats
    assert s.limit_dropped > 0 and s.lost > 0 and s.reordered > 0 and s.corrupted > 0
    assert len(out) == s.sent
    assert s.sent_bytes == sum(map(len, out))
    # Every refusal is one drop event; drops of duplicates add to them.
    assert s.dropped >= refused
    backlog, backlog_bytes = s.backlog, s.backlog_bytes
    drained = q.drain()
    assert (len(drained), sum(map(len, drained))) == (backlog, backlog_bytes)
    assert (s.backlog, s.backlog_bytes, q.next_deadline()) == (0, 0, None)
    assert N + s.duplicated == len(out) + s.lost + s.limit_dropped + len(drained)


def test_drain_returns_the_queue_in_send_order_without_counting_drops() -> None:
    q = Netem(NetemConfig(delay_us=10_000, jitter_us=5_000, reorder_pct=50.0, seed=9))
    for i in range(50):
        q.enqueue(frame(i), 0)
    twin = Netem(NetemConfig(delay_us=10_000, jitter_us=5_000, reorder_pct=50.0, seed=9))
    for i in range(50):
        twin.enqueue(frame(i), 0)
    assert q.drain() == twin.dequeue(10**12)
    assert (q.stats.dropped, q.stats.sent, q.stats.backlog) == (0, 0, 0)
    assert q.dequeue(10**12) == []


def test_a_seed_replays_and_seed_0_draws_one() -> None:
    config = NetemConfig(delay_us=1_000, jitter_us=900, loss_pct=20.0, duplicate_pct=20.0, corrupt_pct=20.0)
    q1 = Netem(config)
    q2 = Netem(dataclasses.replace(config, seed=q1.seed))
    assert q1.seed != 0
    assert Netem(config).seed != q1.seed
    for q in (q1, q2):
        for i in range(1_000):
            q.enqueue(frame(i), i * US)
    assert q1.dequeue(10**9) == q2.dequeue(10**9)
    assert q1.stats == q2.stats
