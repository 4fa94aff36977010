"""The transmit side below the neighbour layer: the qdisc, validate_xmit_skb() and the
emulated driver's start_xmit with its offloads (net/core/dev.c, net/sched/sch_generic.c).

Who owns what: dev_queue_xmit hands an skb (data at the Ethernet header) to the
device's qdisc; qdisc_restart() dequeues it while the TX ring has room, validates it
for the device's features (software GSO and checksum when the feature is off) and the
driver turns it into frames on the TX ring, completing what the "hardware" offloads.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import NamedTuple

from services.core.gso import skb_checksum_help, skb_gso_segment
from services.core.skbuff import (
    CHECKSUM_PARTIAL,
    SKB_GSO_UDP_L4,
    SKBTX_HW_TSTAMP,
    SkBuff,
    TraceStep,
)
from services.core.wire.ethernet import ETH_ZLEN
from services.core.wmem import WmemCharge
from services.nic.device import HWTSTAMP_TX_ON, NetDevice
from services.nic.features import TX_CSUM, TX_SG, TX_UDP_SEG


class TxDesc(NamedTuple):
    """A TX ring descriptor: the frame, and the socket memory its skb holds until the
    TX completion frees it (on the last frame of an skb; None on the others); and the
    emulator's trace of its skb, when traced, which a wire carries to the peer."""

    frame: bytes
    charge: WmemCharge | None
    trace: list[TraceStep] | None = None


@dataclass(slots=True)
class QdiscStats:
    """struct gnet_stats_basic/queue as `tc -s qdisc` prints them."""

    bytes: int = 0
    packets: int = 0
    drops: int = 0
    overlimits: int = 0
    requeues: int = 0


class PfifoFast:
    """The default qdisc of a device with a queue (pfifo_fast), bounded by txqueuelen.
    One band: the emulator does not classify by priority."""

    kind = "pfifo_fast"

    def __init__(self) -> None:
        self.q: deque[SkBuff] = deque()
        self.stats = QdiscStats()

    def enqueue(self, skb: SkBuff, limit: int) -> bool:
        """pfifo_fast_enqueue(): qdisc_drop when the band holds txqueuelen skbs."""
        if len(self.q) >= limit:
            self.stats.drops += 1
            self.stats.overlimits += 1
            return False
        self.q.append(skb)
        return True

    def dequeue(self) -> SkBuff | None:
        if not self.q:
            return None
        skb = self.q.popleft()
        self.stats.packets += 1
        self.stats.bytes += skb.len
        return skb

    def reset(self) -> list[SkBuff]:
        out = list(self.q)
        self.q.clear()
        return out


def validate_xmit_skb(skb: SkBuff, dev: NetDevice) -> list[SkBuff]:
    """validate_xmit_skb(): segment in software what the device cannot segment, finish
    in software the checksum it cannot offload, linearize what it cannot gather.
    netif_skb_features() → harmonize_features(): without checksum offload the device
    cannot segment either."""
    feats = dev.features
    segs = [skb]
    if skb.gso_size and skb.gso_type & SKB_GSO_UDP_L4 and not (TX_UDP_SEG in feats and TX_CSUM in feats):
        segs = skb_gso_segment(skb, hw_csum=TX_CSUM in feats)
        dev.driver.tx_gso_sw_segments += len(segs)
    for seg in segs:
        if seg.ip_summed == CHECKSUM_PARTIAL and TX_CSUM not in feats:
            # skb_csum_hwoffload_help() → skb_checksum_help().
            skb_checksum_help(seg)
            dev.driver.tx_csum_sw += 1
        if seg.data_len and TX_SG not in feats:
            seg.linearize()
    return segs


def hard_start_xmit(skb: SkBuff, dev: NetDevice) -> list[bytes]:
    """The emulated driver's ndo_start_xmit: the "hardware" segments a GSO skb (as TSO
    would, every segment fully checksummed) and completes CHECKSUM_PARTIAL, then puts
    the frames on the wire padded to ETH_ZLEN as an Ethernet MAC does."""
    if skb.gso_size and skb.gso_type & SKB_GSO_UDP_L4:
        segs = skb_gso_segment(skb, hw_csum=False)
        dev.driver.tx_gso_hw_segments += len(segs)
    else:
        segs = [skb]
        if skb.ip_summed == CHECKSUM_PARTIAL:
            skb_checksum_help(skb)
            dev.driver.tx_csum_offload += 1
    frames = []
    for seg in segs:
        frame = seg.payload()
        if len(frame) < ETH_ZLEN:
            frame += bytes(ETH_ZLEN - len(frame))
        frames.append(frame)
    return frames


def wants_hw_tstamp(skb: SkBuff, dev: NetDevice) -> bool:
    """A driver stamps in hardware only when asked per skb and enabled by SIOCSHWTSTAMP."""
    return bool(skb.tx_flags & SKBTX_HW_TSTAMP) and dev.hwtstamp.tx_type == HWTSTAMP_TX_ON
