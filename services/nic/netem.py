"""sch_netem (net/sched/sch_netem.c, Linux 6.18) as the root egress qdisc of an emulated
device, `tc qdisc replace dev eth0 root netem ...`, over whole Ethernet frames.

The qdisc sits where __dev_queue_xmit() meets it: neigh_hh_output() has already pushed
the link header, so skb->data, and with it everything netem touches, starts at the
Ethernet header. Time is the caller's: enqueue and dequeue take `now_ns` (ktime_get_ns()
in the kernel) and next_deadline() is what qdisc_watchdog_schedule_ns() would be armed
with. Nothing here sleeps or reads a clock.

Not modelled, because NetemConfig has no way to ask for them: correlation (every
crndstate has rho 0, so get_crandom() is a plain prandom_u32_state()), distribution
tables (tabledist() without a table is uniform), the Gilbert-Elliott and 4-state loss
models, ECN marking instead of loss, slotting, the rate's packet/cell overhead, a child
qdisc, and GSO (netem_segment()). Frames are bytes, so their checksums must be complete:
netem_enqueue() would run skb_checksum_help() on a CHECKSUM_PARTIAL skb before
corrupting it. The random source is Python's, not the kernel's prandom, so a seed
replays this emulator, not a real kernel; unlike the kernel, which draws the corrupted
byte and bit from get_random_u32_below(), every draw comes from the seeded generator.
"""

from __future__ import annotations

import heapq
import itertools
import random
import secrets
from collections import deque
from dataclasses import dataclass
from typing import Final

from services.core.wmem import WmemCharge

U32_MAX: Final = 0xFFFF_FFFF
U64_MAX: Final = 0xFFFF_FFFF_FFFF_FFFF
S64_MAX: Final = 0x7FFF_FFFF_FFFF_FFFF
INT_MAX: Final = 0x7FFF_FFFF
NSEC_PER_USEC: Final = 1_000
NSEC_PER_SEC: Final = 1_000_000_000
# tc/q_netem.c netem_parse_opt(): struct tc_netem_qopt opt = { .limit = 1000 }.
NETEM_DEFAULT_LIMIT: Final = 1000


def percent_to_u32(pct: float) -> int:
    """tc's set_percent(): a probability scaled to the u32 netem compares its random
    numbers with, rint(per * UINT32_MAX); rint and round() both round half to even."""
    return round(pct / 100 * U32_MAX)


@dataclass(frozen=True, slots=True)
class NetemConfig:
    """The options of `tc qdisc ... netem`, in the units tc takes them.

    rate_bps is in bits per second (`rate 1mbit` is 1_000_000); tc hands the kernel
    bytes per second (get_rate64(): bps /= 8), so rates below 8 bit/s are no rate at
    all. seed 0 asks for a random seed, as netem_init() draws get_random_u64() when tc
    sends no TCA_NETEM_PRNG_SEED."""

    limit: int = NETEM_DEFAULT_LIMIT
    delay_us: int = 0
    jitter_us: int = 0
    loss_pct: float = 0.0
    duplicate_pct: float = 0.0
    reorder_pct: float = 0.0
    gap: int = 0
    corrupt_pct: float = 0.0
    rate_bps: int = 0
    seed: int = 0

    def validate(self) -> str | None:
        """Why tc or netem_change() would refuse this configuration (EINVAL), or None.

        Refusals and their wording follow tc's netem_parse_opt() and parse_percent(),
        and netem_change()'s validate_time(). A jitter above INT_MAX ns is not refused:
        netem_change() caps it for tabledist()."""
        if not 0 <= self.limit <= U32_MAX:
            return f"limit {self.limit} out of range 0..{U32_MAX}"
        for name, pct in (
            ("loss", self.loss_pct),
            ("duplicate", self.duplicate_pct),
            ("reorder", self.reorder_pct),
            ("corrupt", self.corrupt_pct),
        ):
            # parse_percent() refuses a fraction outside [0, 1]; NaN fails the test too.
            if not 0.0 <= pct <= 100.0:
                return f"{name} {pct}% out of range 0..100%"
        if not 0 <= self.gap <= U32_MAX:
            return f"gap {self.gap} out of range 0..{U32_MAX}"
        if self.delay_us < 0:
            return "negative latency"
        if self.jitter_us < 0:
            return "negative jitter"
        if self.delay_us * NSEC_PER_USEC > S64_MAX:
            return f"latency {self.delay_us}us does not fit TCA_NETEM_LATENCY64"
        if self.jitter_us * NSEC_PER_USEC > S64_MAX:
            return f"jitter {self.jitter_us}us does not fit TCA_NETEM_JITTER64"
        if not 0 <= self.rate_bps // 8 <= U64_MAX:
            return f"rate {self.rate_bps}bit out of range"
        if not 0 <= self.seed <= U64_MAX:
            return f"seed {self.seed} out of range 0..{U64_MAX}"
        # tc tests the scaled u32, so a percentage that rounds to 0 counts as none.
        if percent_to_u32(self.reorder_pct):
            if self.delay_us == 0:
                return "reordering not possible without specifying some delay"
        elif self.gap > 0:
            return "gap specified without reorder probability"
        return None


@dataclass(slots=True)
class NetemStats:
    """What `tc -s qdisc show` prints for netem, and per-event counts of our own.

    sent/sent_bytes are bstats, dropped/overlimits/qlen/backlog_bytes are qstats, kept
    as the kernel keeps them. netem never counts an overlimit: a full queue goes through
    qdisc_drop_all(), which only bumps drops, so overlimits stays 0 as tc shows it.
    `reordered` is what tc prints as requeues (netem_enqueue() bumps qstats.requeues
    for each frame it puts at the head).

    The kernel has no counters for the rest; each counts events, so that
    enqueued + duplicated == sent + lost + limit_dropped + backlog (+ whatever drain()
    handed back):
    lost: loss_event() hits; each removes one copy (a duplicate's or the frame's).
    duplicated: duplication hits; each adds one copy.
    corrupted: frames with a bit flipped.
    limit_dropped: copies freed because the queue was full (a frame and its duplicate
    are freed together and count 2, though drops counts the event once)."""

    sent: int = 0
    sent_bytes: int = 0
    dropped: int = 0
    overlimits: int = 0
    qlen: int = 0
    backlog_bytes: int = 0
    lost: int = 0
    duplicated: int = 0
    reordered: int = 0
    corrupted: int = 0
    limit_dropped: int = 0

    @property
    def backlog(self) -> int:
        """Frames queued (sch->q.qlen)."""
        return self.qlen


class Netem:
    """One netem qdisc. The caller owns it like the device's root qdisc lock: enqueue()
    takes the frame over (a dropped one is gone), dequeue() hands frames back for the
    wire, drain() empties it on qdisc reset or replacement."""

    def __init__(self, config: NetemConfig) -> None:
        error = config.validate()
        if error is not None:
            raise ValueError(error)
        self.config = config
        self.stats = NetemStats()
        # netem_init() seeds from get_random_u64() unless TCA_NETEM_PRNG_SEED is given.
        self.seed: int = config.seed or secrets.randbits(64)
        self._rng = random.Random(self.seed)
        # netem_change(): the scaled values tc sends and the kernel keeps.
        self._limit = config.limit
        self._latency = config.delay_us * NSEC_PER_USEC
        # "capping jitter to the range acceptable by tabledist()"
        self._jitter = min(config.jitter_us * NSEC_PER_USEC, INT_MAX)
        self._loss = percent_to_u32(config.loss_pct)
        self._duplicate = percent_to_u32(config.duplicate_pct)
        self._corrupt = percent_to_u32(config.corrupt_pct)
        self._reorder = percent_to_u32(config.reorder_pct)
        # tc: "if (opt.gap == 0) opt.gap = 1" when a reorder probability is given.
        self._gap = config.gap or (1 if self._reorder else 0)
        self._rate = config.rate_bps // 8  # bytes per second, as tc's get_rate64()
        self._counter = 0
        # sch->q: reordered frames, put at the head (__qdisc_enqueue_head), so the last
        # one in is the first out. Entries are (time_to_send, frame, charge): the
        # socket memory the frame's skb still holds (sock_wfree runs when it leaves).
        self._head_q: deque[tuple[int, bytes, WmemCharge | None]] = deque()
        # The tfifo (t_head..t_tail list plus t_root rbtree). Together they hand frames
        # out by time_to_send, equal times in arrival order: the rbtree sends ties right
        # and netem_peek() prefers t_head on a tie, and a list frame can only tie with a
        # tree frame if it was queued first. A heap keyed (time_to_send, arrival) is
        # that order.
        self._tfifo: list[tuple[int, int, bytes, WmemCharge | None]] = []
        self._tfifo_last: int | None = None  # the latest time_to_send in the tfifo
        self._arrival = itertools.count()

    def enqueue(self, frame: bytes, now_ns: int, charge: WmemCharge | None = None) -> bool:
        """netem_enqueue(). False when the frame was dropped (lost, or the queue full);
        stats counts it, and the caller frees its charge. True when it was queued,
        whatever became of a duplicate (a clone, which owes its socket nothing)."""
        return self._enqueue(frame, now_ns, charge, is_duplicate=False)

    def dequeue(self, now_ns: int) -> list[bytes]:
        """netem_dequeue() until it returns NULL: the reordered frames first, newest
        first, then tfifo frames whose time_to_send has come."""
        return [frame for frame, _ in self.dequeue_charged(now_ns)]

    def dequeue_charged(self, now_ns: int) -> list[tuple[bytes, WmemCharge | None]]:
        """dequeue(), each frame with the charge it was queued with."""
        out: list[tuple[bytes, WmemCharge | None]] = []
        while True:
            if self._head_q:
                _, frame, charge = self._head_q.popleft()
            elif self._tfifo and self._tfifo[0][0] <= now_ns:
                _, _, frame, charge = heapq.heappop(self._tfifo)
                if not self._tfifo:
                    self._tfifo_last = None
            else:
                return out
            self._account_dequeue(frame)
            out.append((frame, charge))

    def next_deadline(self) -> int | None:
        """The earliest time_to_send queued, for the caller's timer (the qdisc watchdog).
        Reordered frames are due at once; theirs is the time they were queued."""
        times = [t for t, _, _ in self._head_q]
        if self._tfifo:
            times.append(self._tfifo[0][0])
        return min(times, default=None)

    def drain(self) -> list[bytes]:
        """netem_reset(): qdisc_reset_queue() and tfifo_reset() free everything queued
        without counting a drop; the frames come back, in send order, for the caller to
        account. q->counter survives a reset, as in the kernel."""
        return [frame for frame, _ in self.drain_charged()]

    def drain_charged(self) -> list[tuple[bytes, WmemCharge | None]]:
        """drain(), each frame with the charge it was queued with."""
        frames = [(frame, charge) for _, frame, charge in self._head_q]
        frames += [(frame, charge) for _, _, frame, charge in sorted(self._tfifo, key=lambda e: e[:2])]
        self._head_q.clear()
        self._tfifo.clear()
        self._tfifo_last = None
        self.stats.qlen = 0
        self.stats.backlog_bytes = 0
        return frames

    def _enqueue(self, frame: bytes, now: int, charge: WmemCharge | None, *, is_duplicate: bool) -> bool:
        count = 1
        # "Random duplication"; skb2->tc_depth++ keeps a duplicate from duplicating.
        if self._duplicate and not is_duplicate and self._duplicate >= self._random_u32():
            count += 1
            self.stats.duplicated += 1
        # loss_event(), CLG_RANDOM. A hit on a frame about to be duplicated only cancels
        # the duplicate.
        if self._loss and self._loss >= self._random_u32():
            count -= 1
            self.stats.lost += 1
        if count == 0:
            self.stats.dropped += 1
            return False

        # skb_clone() before corruption: the duplicate carries the frame as it came.
        duplicate = frame if count > 1 else None

        if self._corrupt and self._corrupt >= self._random_u32() and frame:
            # skb->data[get_random_u32_below(skb_headlen(skb))] ^= 1 << get_random_u32_below(8);
            # on egress data is the Ethernet header, so every byte of the frame is fair game.
            corrupted = bytearray(frame)
            corrupted[self._rng.randrange(len(frame))] ^= 1 << self._rng.randrange(8)
            frame = bytes(corrupted)
            self.stats.corrupted += 1

        if self.stats.qlen >= self._limit:
            # qdisc_drop_all() counts one drop; skb2 goes with __qdisc_drop(), uncounted.
            self.stats.dropped += 1
            self.stats.limit_dropped += count
            return False

        if duplicate is not None:
            # rootq->enqueue(skb2, ...): netem is the root, so the duplicate goes through
            # netem_enqueue() again (its own loss, corruption and limit check) before the
            # original is queued. That check has not counted the original yet, so the
            # queue can end one frame over the limit, as the kernel's can.
            self._enqueue(duplicate, now, None, is_duplicate=True)

        self.stats.backlog_bytes += len(frame)
        self.stats.qlen += 1
        if self._gap == 0 or self._counter < self._gap - 1 or self._reorder < self._random_u32():
            delay = self._tabledist()
            if self._rate:
                last = self._last_time_to_send()
                if last is not None:
                    # "Last packet in queue is reference point (now), calculate this
                    # time bonus and subtract from delay."
                    delay = max(0, delay - (last - now))
                    now = last
                delay += self._packet_time_ns(len(frame))
            self._counter += 1
            self._tfifo_enqueue(now + delay, frame, charge)
        else:
            # "Do re-ordering by putting one out of N packets at the front of the queue."
            self._counter = 0
            self._head_q.appendleft((now, frame, charge))
            self.stats.reordered += 1
        return True

    def _random_u32(self) -> int:
        """get_crandom() with no correlation: prandom_u32_state()."""
        return self._rng.getrandbits(32)

    def _tabledist(self) -> int:
        """tabledist(latency, jitter) without a distribution table: uniform over
        [latency - jitter, latency + jitter), from one u32 modulo 2 * jitter."""
        if self._jitter == 0:
            return self._latency
        return (self._random_u32() % (2 * self._jitter)) + self._latency - self._jitter

    def _packet_time_ns(self, length: int) -> int:
        """packet_time_ns() with no packet or cell overhead: the frame's serialization
        time at q->rate bytes per second, rounded down (div64_u64)."""
        return length * NSEC_PER_SEC // self._rate

    def _last_time_to_send(self) -> int | None:
        """The reference netem_enqueue() takes for a rated frame: the latest
        time_to_send among sch->q's tail, the rbtree's last and t_tail."""
        times = [self._head_q[-1][0]] if self._head_q else []
        if self._tfifo_last is not None:
            times.append(self._tfifo_last)
        return max(times, default=None)

    def _tfifo_enqueue(self, time_to_send: int, frame: bytes, charge: WmemCharge | None) -> None:
        """tfifo_enqueue()."""
        heapq.heappush(self._tfifo, (time_to_send, next(self._arrival), frame, charge))
        if self._tfifo_last is None or time_to_send > self._tfifo_last:
            self._tfifo_last = time_to_send

    def _account_dequeue(self, frame: bytes) -> None:
        # qdisc_qstats_backlog_dec(), qdisc_bstats_update(), qdisc_qlen_dec()
        self.stats.qlen -= 1
        self.stats.backlog_bytes -= len(frame)
        self.stats.sent += 1
        self.stats.sent_bytes += len(frame)
