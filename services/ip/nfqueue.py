"""nfnetlink_queue: what NFQUEUE hands packets to, and how they come back.

Per queue number one instance, bound by one listener (the kernel's netlink peer, here a
gRPC stream): a bounded list of packets waiting for a verdict, packet ids counting up
from 1, the copy mode and range, the flags (fail-open, GSO), and the counters
/proc/net/netfilter/nfnetlink_queue shows. A verdict reinjects the packet through the
callback Netfilter gives (nf_reinject); a listener that goes away takes its waiting
packets with it (instance_destroy → nfqnl_flush, each one dropped).

What the listener is told is a QueuedPacket: a snapshot taken at enqueue time, as the
kernel copies the packet into the netlink message then.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Final, Protocol

from services.core import errno as E
from services.core.gso import GsoError, skb_checksum_help, skb_gso_segment
from services.core.skbuff import CHECKSUM_NONE, CHECKSUM_PARTIAL, CHECKSUM_UNNECESSARY, HEADER_UNSET, SkBuff
from services.core.skbuff import skb_truesize as _truesize
from services.core.wire.ethernet import ETH_P_IP

# net/netfilter/nfnetlink_queue.c
NFQNL_QMAX_DEFAULT: Final = 1024
# struct nlattr's 16-bit length, header included, caps what one attribute carries.
NFQNL_MAX_COPY_RANGE: Final = 0xFFFF - 4
# include/uapi/linux/netfilter/nfnetlink_queue.h
NFQNL_COPY_NONE, NFQNL_COPY_META, NFQNL_COPY_PACKET = 0, 1, 2
NFQA_CFG_F_FAIL_OPEN: Final = 1 << 0
NFQA_CFG_F_CONNTRACK: Final = 1 << 1
NFQA_CFG_F_GSO: Final = 1 << 2
NFQA_CFG_F_UID_GID: Final = 1 << 3
NFQA_CFG_F_SECCTX: Final = 1 << 4
NFQA_CFG_F_MAX: Final = 1 << 5
NFQA_SKB_CSUMNOTREADY: Final = 1 << 0
NFQA_SKB_GSO: Final = 1 << 1
NFQA_SKB_CSUM_NOTVERIFIED: Final = 1 << 2
# The emulator's bound on queue_maxlen (the kernel takes any u32 and lets memory decide).
NFQ_QUEUE_MAXLEN_LIMIT: Final = 65536
# The hooks up to NF_INET_FORWARD see received packets (timestamps, checksum state).
_NF_INET_FORWARD: Final = 2
_NF_INET_POST_ROUTING: Final = 4
# include/uapi/linux/netfilter.h, as nfqnl_recv_verdict checks them.
_NF_DROP, _NF_ACCEPT, _NF_STOLEN, _NF_MAX_VERDICT, _NF_VERDICT_MASK = 0, 1, 2, 5, 0xFF


class HookState(Protocol):
    """What a queued packet remembers of its hook (struct nf_hook_state)."""

    hook: int
    indev: int
    outdev: int


@dataclass(slots=True, eq=False)
class QueueEntry:
    """struct nf_queue_entry: the packet, where it was in the hook's table list, its id."""

    skb: SkBuff
    state: HookState
    hook_index: int
    id: int = 0


@dataclass(frozen=True, slots=True)
class QueuedPacket:
    """What nfqnl_build_packet_message() tells the listener about one packet."""

    queue_num: int
    id: int
    hook: int
    hw_protocol: int
    indev: int
    indev_name: str
    outdev: int
    outdev_name: str
    mark: int
    priority: int
    # Only for packets on the receive side (hook <= NF_INET_FORWARD), 0 when unset.
    tstamp_ns: int
    # The first copy_range bytes of the IP packet (empty in NFQNL_COPY_META).
    payload: bytes
    # The whole packet's length when payload is shorter (NFQA_CAP_LEN), else 0.
    cap_len: int
    # NFQA_SKB_* bits (NFQA_SKB_INFO).
    skb_info: int


class QueueListener(Protocol):
    def deliver(self, pkt: QueuedPacket) -> bool:
        """Take one packet message; False when there is no room (the netlink socket's
        receive buffer is full: nfnetlink_unicast fails)."""
        ...


class QueueError(Exception):
    def __init__(self, errno: int, message: str) -> None:
        super().__init__(message)
        self.errno = errno


@dataclass(slots=True, eq=False)
class NfqnlInstance:
    """struct nfqnl_instance."""

    queue_num: int
    listener: QueueListener
    peer_portid: int
    queue_maxlen: int = NFQNL_QMAX_DEFAULT
    copy_mode: int = NFQNL_COPY_NONE
    copy_range: int = NFQNL_MAX_COPY_RANGE
    flags: int = 0
    queue_dropped: int = 0
    queue_user_dropped: int = 0
    id_sequence: int = 0
    # The waiting packets by id, oldest first (queue_list).
    entries: dict[int, QueueEntry] = field(default_factory=dict)

    @property
    def queue_total(self) -> int:
        return len(self.entries)

    def set_mode(self, mode: int, copy_range: int) -> None:
        """nfqnl_set_mode()."""
        if mode not in (NFQNL_COPY_NONE, NFQNL_COPY_META, NFQNL_COPY_PACKET):
            raise QueueError(E.EINVAL, f"copy mode {mode} is not NONE (0), META (1) or PACKET (2)")
        self.copy_mode = mode
        if mode != NFQNL_COPY_PACKET:
            self.copy_range = 0
        elif copy_range == 0 or copy_range > NFQNL_MAX_COPY_RANGE:
            self.copy_range = NFQNL_MAX_COPY_RANGE
        else:
            self.copy_range = copy_range

    def set_maxlen(self, maxlen: int) -> None:
        self.queue_maxlen = min(maxlen, NFQ_QUEUE_MAXLEN_LIMIT)

    def set_flags(self, flags: int, mask: int) -> None:
        """NFQA_CFG_FLAGS under NFQA_CFG_MASK; conntrack, uid/gid and secctx are not
        built here."""
        if flags >= NFQA_CFG_F_MAX:
            raise QueueError(E.EOPNOTSUPP, f"queue flags {flags:#x} include unknown bits")
        unsupported = flags & mask & (NFQA_CFG_F_CONNTRACK | NFQA_CFG_F_UID_GID | NFQA_CFG_F_SECCTX)
        if unsupported:
            raise QueueError(E.EOPNOTSUPP, f"queue flags {unsupported:#x} are not built in stackemu")
        self.flags = (self.flags & ~mask) | (flags & mask)


def _nfq_id_after(a: int, b: int) -> bool:
    """nfq_id_after(): (int)(a - b) > 0, ids wrapping at 2^32."""
    d = (a - b) & 0xFFFFFFFF
    return 0 < d < 0x80000000


class NfQueue:
    """The queue handler (nfqh) and its instances for one host."""

    def __init__(self, reinject: Callable[[QueueEntry, int], None], ifname: Callable[[int], str]) -> None:
        self._reinject = reinject
        self._ifname = ifname
        self.instances: dict[int, NfqnlInstance] = {}
        self._portids = itertools.count(1)

    # Configuration (nfqnl_recv_config).

    def bind(self, queue_num: int, listener: QueueListener) -> NfqnlInstance:
        """NFQNL_CFG_CMD_BIND: a new instance in copy mode NONE, as the kernel makes it
        (packets are refused until the listener sets a copy mode)."""
        if not 0 <= queue_num <= 0xFFFF:
            raise QueueError(E.EINVAL, f"queue number {queue_num} is not in 0-65535")
        if queue_num in self.instances:
            raise QueueError(E.EBUSY, f"queue {queue_num} is bound by another listener")
        inst = NfqnlInstance(queue_num, listener, next(self._portids))
        self.instances[queue_num] = inst
        return inst

    def unbind(self, inst: NfqnlInstance) -> None:
        """instance_destroy(): the instance goes, and nfqnl_flush() drops what waited."""
        if self.instances.get(inst.queue_num) is inst:
            del self.instances[inst.queue_num]
        self._flush(inst, None)

    def _flush(self, inst: NfqnlInstance, keep: Callable[[QueueEntry], bool] | None) -> None:
        gone = [e for e in inst.entries.values() if keep is None or not keep(e)]
        for e in gone:
            del inst.entries[e.id]
        for e in gone:
            self._reinject(e, _NF_DROP)

    def dev_drop(self, ifindex: int) -> None:
        """nfqnl_dev_drop() on NETDEV_DOWN: packets in or out through the device go."""
        for inst in list(self.instances.values()):
            self._flush(inst, lambda e: ifindex not in (e.state.indev, e.state.outdev))

    # Enqueue (nfqnl_enqueue_packet).

    def enqueue(self, entry: QueueEntry, queuenum: int) -> int:
        """0 when the packet is queued (or reinjected by fail-open), else -errno: ESRCH
        with nobody bound (the caller may bypass), EINVAL in copy mode NONE, ENOBUFS
        for a full queue or listener."""
        inst = self.instances.get(queuenum)
        if inst is None:
            return -E.ESRCH
        if inst.copy_mode == NFQNL_COPY_NONE:
            return -E.EINVAL
        skb = entry.skb
        skb.protocol = ETH_P_IP
        if not skb.gso_size or inst.flags & NFQA_CFG_F_GSO:
            return self._enqueue_one(inst, entry)
        # A GSO skb the listener did not ask for whole goes as its segments.
        try:
            segs = skb_gso_segment(skb, hw_csum=False)
        except GsoError:
            return -E.ENOBUFS
        queued = 0
        err = 0
        for seg in segs:
            if err == 0:
                # The first segment queued takes over what the original owed its socket
                # (until then the original keeps it, for the caller's drop to free).
                if not queued:
                    seg.wmem, skb.wmem = skb.wmem, 0
                err = self._enqueue_one(inst, QueueEntry(seg, entry.state, entry.hook_index))
                if err and not queued:
                    skb.wmem, seg.wmem = seg.wmem, 0
            if err == 0:
                queued += 1
        # The original became its segments; what could not be queued is lost with it,
        # counted once by the caller when nothing was queued.
        return 0 if queued else err

    def _enqueue_one(self, inst: NfqnlInstance, entry: QueueEntry) -> int:
        """__nfqnl_enqueue_packet()."""
        msg = self._build_message(inst, entry)
        if msg is None:
            return -E.ENOMEM
        fail_open = bool(inst.flags & NFQA_CFG_F_FAIL_OPEN)
        if inst.queue_total >= inst.queue_maxlen:
            if fail_open:
                self._reinject(entry, _NF_ACCEPT)
                return 0
            inst.queue_dropped += 1
            return -E.ENOBUFS
        inst.id_sequence = (inst.id_sequence + 1) & 0xFFFFFFFF
        entry.id = inst.id_sequence
        if not inst.listener.deliver(_with_id(msg, entry.id)):
            if fail_open:
                self._reinject(entry, _NF_ACCEPT)
                return 0
            inst.queue_user_dropped += 1
            return -E.ENOBUFS
        inst.entries[entry.id] = entry
        return 0

    def _build_message(self, inst: NfqnlInstance, entry: QueueEntry) -> QueuedPacket | None:
        """nfqnl_build_packet_message(), without the id (set once the packet is in)."""
        skb = entry.skb
        hook = entry.state.hook
        gso = inst.flags & NFQA_CFG_F_GSO
        csum_verify = (hook <= _NF_INET_FORWARD or (hook == _NF_INET_POST_ROUTING and not skb.sk)) and (
            skb.ip_summed != CHECKSUM_UNNECESSARY
        )
        payload = b""
        cap_len = 0
        if inst.copy_mode == NFQNL_COPY_PACKET:
            if not gso and skb.ip_summed == CHECKSUM_PARTIAL:
                # nf_queue_checksum_help(): the listener sees a finished checksum.
                try:
                    skb_checksum_help(skb)
                except GsoError:
                    return None
            data_len = min(inst.copy_range, skb.len)
            payload = skb.payload()[:data_len]
            if skb.len > data_len:
                cap_len = skb.len
        info = 0
        if skb.ip_summed == CHECKSUM_PARTIAL:
            info = NFQA_SKB_CSUMNOTREADY
        elif csum_verify:
            info = NFQA_SKB_CSUM_NOTVERIFIED
        if skb.gso_size:
            info |= NFQA_SKB_GSO
        st = entry.state
        return QueuedPacket(
            queue_num=inst.queue_num,
            id=0,
            hook=hook,
            hw_protocol=skb.protocol,
            indev=st.indev,
            indev_name=self._ifname(st.indev) if st.indev else "",
            outdev=st.outdev,
            outdev_name=self._ifname(st.outdev) if st.outdev else "",
            mark=skb.mark,
            priority=skb.priority,
            tstamp_ns=skb.tstamp if hook <= _NF_INET_FORWARD else 0,
            payload=payload,
            cap_len=cap_len,
            skb_info=info,
        )

    # Verdicts (nfqnl_recv_verdict, nfqnl_recv_verdict_batch).

    def verdict(
        self,
        inst: NfqnlInstance,
        pkt_id: int,
        verdict: int,
        payload: bytes | None = None,
        mark: int | None = None,
    ) -> int:
        """0, or -EINVAL for a verdict that is not one, -ENOENT for an id not waiting.
        A replacement packet that nfqnl_mangle() refuses turns the verdict into DROP."""
        if not _verdict_ok(verdict):
            return -E.EINVAL
        entry = inst.entries.pop(pkt_id, None)
        if entry is None:
            return -E.ENOENT
        if payload is not None and nfqnl_mangle(entry.skb, payload) < 0:
            verdict = _NF_DROP
        if mark is not None:
            entry.skb.mark = mark & 0xFFFFFFFF
        self._reinject(entry, verdict)
        return 0

    def verdict_batch(self, inst: NfqnlInstance, maxid: int, verdict: int, mark: int | None = None) -> int:
        """Every waiting packet up to and including id maxid, oldest first."""
        if not _verdict_ok(verdict):
            return -E.EINVAL
        batch = []
        for pkt_id, entry in inst.entries.items():
            if _nfq_id_after(pkt_id, maxid):
                break
            batch.append(entry)
        if not batch:
            return -E.ENOENT
        for entry in batch:
            del inst.entries[entry.id]
        for entry in batch:
            if mark is not None:
                entry.skb.mark = mark & 0xFFFFFFFF
            self._reinject(entry, verdict)
        return 0

    def proc(self) -> str:
        """/proc/net/netfilter/nfnetlink_queue (seq_show): queue, peer portid, waiting,
        copy mode, copy range, dropped (queue full), dropped (listener full), last id, 1."""
        return "".join(
            f"{i.queue_num:5d} {i.peer_portid:6d} {i.queue_total:5d} {i.copy_mode:1d} {i.copy_range:5d} "
            f"{i.queue_dropped:5d} {i.queue_user_dropped:5d} {i.id_sequence:8d} {1:2d}\n"
            for i in sorted(self.instances.values(), key=lambda i: i.queue_num)
        )


def _verdict_ok(verdict: int) -> bool:
    """verdicthdr_get(): NF_STOLEN and anything past NF_STOP are not verdicts."""
    v = verdict & _NF_VERDICT_MASK
    return 0 <= verdict <= 0xFFFFFFFF and v <= _NF_MAX_VERDICT and v != _NF_STOLEN


def _with_id(msg: QueuedPacket, pkt_id: int) -> QueuedPacket:
    return QueuedPacket(
        msg.queue_num,
        pkt_id,
        msg.hook,
        msg.hw_protocol,
        msg.indev,
        msg.indev_name,
        msg.outdev,
        msg.outdev_name,
        msg.mark,
        msg.priority,
        msg.tstamp_ns,
        msg.payload,
        msg.cap_len,
        msg.skb_info,
    )


def nfqnl_mangle(skb: SkBuff, data: bytes) -> int:
    """nfqnl_mangle(): the listener's packet replaces skb's from skb.data on. Shorter is
    refused below the transport header, longer above 64 KiB; the IP header checksum is
    not recomputed (the listener must leave it right), and the skb's checksum state
    becomes CHECKSUM_NONE so the transport checksum is checked again."""
    n = len(data)
    if n < skb.len:
        min_len = skb.transport_header - skb.data if skb.transport_header != HEADER_UNSET else 0
        if n < min_len:
            return -E.EINVAL
    elif n > 0xFFFF:
        return -E.EINVAL
    grew = n > skb.len and n - skb.len > skb.tailroom()
    head = bytearray(skb.head[: skb.data])
    head += data
    skb.head = head
    skb.tail = len(head)
    skb.len = n
    skb.data_len = 0
    skb.frags = []
    skb.frag_list = []
    if grew:
        # skb_copy_expand(): a bigger buffer, charged as one.
        skb.truesize = _truesize(len(head))
    skb.ip_summed = CHECKSUM_NONE
    return 0
