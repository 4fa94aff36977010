"""Batches of skbs to and from their protobuf form at a service boundary."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from services.core.dropreason import DropStats, SkbDropReason
from services.core.skbuff import SkbError, SkBuff
from services.core.stream import BadMessage
from stackemu.skb.v1 import skb_pb2


def skbs_from_proto(msgs: Sequence[skb_pb2.SkBuff], drops: DropStats, where: str) -> list[SkBuff]:
    """Every skb of a batch, or BadMessage for the first that contradicts itself (the
    whole batch is refused and counted, so nothing disappears uncounted)."""
    out = []
    for m in msgs:
        try:
            out.append(SkBuff.from_proto(m))
        except SkbError as err:
            drops.drop(SkbDropReason.NOT_SPECIFIED, where, len(msgs))
            raise BadMessage(f"{where}: {err}") from None
    return out


def skbs_to_proto(skbs: Iterable[SkBuff]) -> list[skb_pb2.SkBuff]:
    return [s.to_proto() for s in skbs]


def drops_to_proto(drops: DropStats) -> list[skb_pb2.DropCount]:
    return [
        skb_pb2.DropCount(reason=reason.full_name, location=location, count=count)
        for (reason, location), count in drops.items()
    ]
