"""SkBuff protobufs from a hostile neighbour (services/core/skbuff.py SkBuff.from_proto,
services/core/convert.py skbs_from_proto): offsets that contradict each other (data
beyond tail, tail beyond end, header marks outside the buffer, huge values, len and
data_len that disagree with the frags and the frag_list), nested frag_lists, and raw
bytes that may not even decode.

Property: from_proto refuses with SkbError, or gives an skb whose geometry holds
(data <= tail <= end, len = headlen + data_len, the header marks inside the buffer or
unset) and which every helper the layers call on received skbs handles; a batch with
one bad skb is refused whole by skbs_from_proto as BadMessage, its message naming
where and what, and counted as that many drops."""

from __future__ import annotations

import pytest
from google.protobuf.message import DecodeError
from hypothesis import event, given
from hypothesis import strategies as st

from services.core.convert import skbs_from_proto
from services.core.dropreason import DropStats, SkbDropReason
from services.core.skbuff import HEADER_UNSET, SKB_CB_SIZE, SkbError, SkBuff
from services.core.stream import BadMessage
from stackemu.skb.v1 import skb_pb2
from tests.fuzz import fuzz_settings

U32 = 0xFFFFFFFF


_OFFSETS = (
    "data",
    "tail",
    "len",
    "data_len",
    "mac_header",
    "network_header",
    "transport_header",
    "csum_start",
)
_HOSTILE = st.one_of(
    st.sampled_from([0, 1, HEADER_UNSET, U32, U32 - 1]), st.integers(0, 200), st.integers(0, U32)
)


@st.composite
def skb_protos(draw: st.DrawFn, depth: int = 0) -> skb_pb2.SkBuff:
    """A consistent skb (headroom, data, tailroom, frags, frag_list), then up to three
    of its offsets replaced by hostile values: one off, zero, unset, huge, anything."""
    head = draw(st.binary(max_size=96))
    end = len(head)
    data = draw(st.integers(0, end))
    tail = draw(st.integers(data, end))
    frags = draw(st.lists(st.binary(max_size=16), max_size=3))
    children = draw(st.lists(skb_protos(depth + 1), max_size=2)) if depth < 3 and draw(st.booleans()) else []
    data_len = sum(map(len, frags)) + sum(c.len for c in children)
    m = skb_pb2.SkBuff(
        head=head,
        data=data,
        tail=tail,
        len=min(U32, tail - data + data_len),
        data_len=min(U32, data_len),
        frags=frags,
        frag_list=children,
        mac_header=max(0, data - 14),
        network_header=data,
        transport_header=min(end, data + 20),
        cb=draw(st.binary(max_size=SKB_CB_SIZE + 2)),
        ip_summed=draw(st.integers(0, 4)),
        csum_start=data,
        csum_offset=draw(st.sampled_from([6, 16, U32])),
        gso_size=draw(st.sampled_from([0, 1, 1472, U32])),
        gso_segs=draw(st.sampled_from([0, 1, 64, U32])),
        gso_type=draw(st.sampled_from([0, 1 << 17, U32])),
        protocol=draw(st.sampled_from([0x0800, 0x0806, 0, U32])),
        pkt_type=draw(st.sampled_from([0, 3, 7, U32])),
        truesize=draw(st.integers(0, U32)),
    )
    for name in draw(st.lists(st.sampled_from(_OFFSETS), max_size=3)):
        value = draw(_HOSTILE)
        setattr(
            m,
            name,
            draw(st.sampled_from([value, min(U32, getattr(m, name) + 1), max(0, getattr(m, name) - 1)])),
        )
    return m


def check_geometry(skb: SkBuff, depth: int = 0) -> None:
    assert 0 <= skb.data <= skb.tail <= skb.end == len(skb.head)
    assert skb.len == skb.tail - skb.data + skb.data_len
    assert skb.data_len == sum(map(len, skb.frags)) + sum(c.len for c in skb.frag_list)
    for mark in (skb.mac_header, skb.network_header, skb.transport_header):
        assert mark == HEADER_UNSET or 0 <= mark <= skb.end
    assert len(skb.cb) == SKB_CB_SIZE
    assert depth <= 2
    for c in skb.frag_list:
        check_geometry(c, depth + 1)


def use_like_a_layer(skb: SkBuff) -> None:
    """What the receive path does with an skb it is handed: read it whole, look for a
    header, trim it, make it linear, copy it, pull into it."""
    assert len(skb.payload()) == skb.len
    skb.may_pull(20)
    copy = skb.copy()
    assert copy.payload() == skb.payload()
    skb.trim(skb.len // 2)
    assert len(skb.payload()) == skb.len
    skb.linearize()
    assert not skb.is_nonlinear() and len(skb.linear()) == skb.len
    assert skb.pull(min(skb.len, 8))
    SkBuff.from_proto(skb.to_proto())


@fuzz_settings(600)
@given(skb_protos())
def test_from_proto_refuses_or_gives_a_consistent_skb(m: skb_pb2.SkBuff) -> None:
    try:
        skb = SkBuff.from_proto(skb_pb2.SkBuff.FromString(m.SerializeToString()))
    except SkbError as err:
        assert str(err).startswith("skb: ")
        event("refused")
        return
    event("accepted")
    check_geometry(skb)
    again = SkBuff.from_proto(skb.to_proto())
    assert again.to_proto() == skb.to_proto()
    use_like_a_layer(skb)


@fuzz_settings(600)
@given(st.binary(max_size=200))
def test_from_raw_bytes(raw: bytes) -> None:
    try:
        m = skb_pb2.SkBuff.FromString(raw)
    except DecodeError:
        return
    try:
        skb = SkBuff.from_proto(m)
    except SkbError:
        return
    check_geometry(skb)
    use_like_a_layer(skb)


@fuzz_settings(150)
@given(st.lists(skb_protos(), min_size=1, max_size=4))
def test_a_batch_is_refused_whole_and_counted(batch: list[skb_pb2.SkBuff]) -> None:
    drops = DropStats()
    bad = []
    for m in batch:
        try:
            SkBuff.from_proto(m)
        except SkbError as err:
            bad.append(str(err))
    if not bad:
        assert len(skbs_from_proto(batch, drops, "ip_rcv")) == len(batch)
        assert drops.total() == 0
        return
    with pytest.raises(BadMessage) as info:
        skbs_from_proto(batch, drops, "ip_rcv")
    assert str(info.value) == f"ip_rcv: {bad[0]}"
    assert dict(drops.items()) == {(SkbDropReason.NOT_SPECIFIED, "ip_rcv"): len(batch)}
