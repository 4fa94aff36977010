"""Transmit completions: sock_wfree() across a process boundary.

The UDP layer charges each datagram it sends to its socket (skb->sk, skb->wmem =
truesize, as skb_set_owner_w adds it to sk_wmem_alloc). Whoever frees such an skb
below UDP (the driver once the frame has left, loopback_xmit's skb_orphan, or a drop
anywhere) gives the charge back here, and the layer sends what it gathered up in its
next message: one TxCompletion per socket with the bytes released and how many of the
socket's datagrams met ip_send_skb's -ENOBUFS (a qdisc's NET_XMIT_DROP, a neighbour that
could not be created). A charge moves with the skb (a clone does not take it, as
skb_clone leaves the destructor behind); the pieces an skb is cut into (fragments, GSO
segments, frames on the TX ring) carry it on one piece, so it is released once.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import NamedTuple

from services.core.skbuff import SkBuff
from stackemu.skb.v1 import skb_pb2


class WmemCharge(NamedTuple):
    """An skb's charge detached from it: what a frame on the TX ring or in a qdisc
    still owes its socket."""

    sk: int
    wmem: int


def take_charge(skb: SkBuff) -> WmemCharge | None:
    """Move the skb's charge out of it (the skb no longer owes anything)."""
    if not skb.sk or not skb.wmem:
        return None
    charge = WmemCharge(skb.sk, skb.wmem)
    skb.wmem = 0
    return charge


class TxCompletions:
    """sk → (bytes released, -ENOBUFS datagrams) since the last drain()."""

    def __init__(self) -> None:
        self._by_sk: dict[int, list[int]] = {}

    def __bool__(self) -> bool:
        return bool(self._by_sk)

    def add(self, skb: SkBuff, enobufs: bool = False) -> None:
        """sock_wfree() for a freed skb: its charge (once: the skb's wmem is cleared)
        and, with enobufs, one datagram the socket's ip_send_skb saw fail with
        -ENOBUFS."""
        if skb.sk:
            self.release(skb.sk, skb.wmem, int(enobufs))
        skb.wmem = 0

    def release(self, sk: int, wmem: int, enobufs: int = 0) -> None:
        if not sk or not (wmem or enobufs):
            return
        entry = self._by_sk.setdefault(sk, [0, 0])
        entry[0] += wmem
        entry[1] += enobufs

    def release_charge(self, charge: WmemCharge | None, enobufs: bool = False) -> None:
        if charge is not None:
            self.release(charge.sk, charge.wmem, int(enobufs))

    def merge(self, msgs: Iterable[skb_pb2.TxCompletion]) -> int:
        """Take in what a lower layer reported; returns its -ENOBUFS datagrams."""
        enobufs = 0
        for m in msgs:
            self.release(m.sk, m.wmem, m.enobufs)
            enobufs += m.enobufs
        return enobufs

    def drain(self) -> list[skb_pb2.TxCompletion]:
        out = [
            skb_pb2.TxCompletion(sk=sk, wmem=wmem, enobufs=enobufs)
            for sk, (wmem, enobufs) in self._by_sk.items()
        ]
        self._by_sk = {}
        return out
