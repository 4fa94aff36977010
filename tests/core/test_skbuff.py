"""SkBuff: the kernel's buffer helpers and the lossless protobuf form."""

from __future__ import annotations

import re

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from services.core.skbuff import (
    HEADER_UNSET,
    SKB_CB_SIZE,
    Dst,
    IpCork,
    SkbError,
    SkBuff,
    TraceStep,
    alloc_skb,
    skb_truesize,
)
from stackemu.skb.v1 import skb_pb2


def test_reserve_put_push_pull_keep_the_kernel_geometry() -> None:
    skb = alloc_skb(100)
    assert (skb.data, skb.tail, skb.end, skb.len) == (0, 0, 100, 0)
    skb.reserve(32)
    assert skb.headroom() == 32 and skb.tailroom() == 68
    skb.put_data(b"payload")
    assert skb.len == 7 and skb.tail == 39
    hdr = skb.push(8)
    hdr[:] = b"UDPHEADR"
    assert skb.data == 24 and skb.len == 15 and skb.headroom() == 24
    assert skb.payload() == b"UDPHEADRpayload"
    skb.reset_transport_header()
    assert skb.transport_header == 24
    assert skb.pull(8) is True
    assert skb.payload() == b"payload" and skb.transport_offset() == -8
    # skb_pull() returns NULL when asked for more than len.
    assert skb.pull(8) is False
    assert skb.len == 7


def test_over_and_under_panics_are_errors() -> None:
    skb = alloc_skb(10, headroom=4)
    with pytest.raises(SkbError, match="skb_over_panic"):
        skb.put(11)
    with pytest.raises(SkbError, match="skb_under_panic"):
        skb.push(5)
    skb.put(2)
    with pytest.raises(SkbError, match="skb_reserve"):
        skb.reserve(1)


def test_trim_drops_padding() -> None:
    skb = alloc_skb(60)
    skb.put_data(bytes(range(60)))
    skb.trim(28)
    assert skb.len == 28 and skb.payload() == bytes(range(28))
    skb.trim(100)  # longer than len: nothing happens
    assert skb.len == 28


def test_nonlinear_skb_has_no_tailroom_and_linearizes() -> None:
    skb = alloc_skb(8, headroom=2)
    skb.put_data(b"headhead")
    skb.frags = [b"page"]
    skb.frag_list = [alloc_skb(4)]
    skb.frag_list[0].put_data(b"list")
    skb.data_len = 8
    skb.len += 8
    assert skb.tailroom() == 0 and skb.headlen() == 8 and skb.is_nonlinear()
    assert skb.payload() == b"headheadpagelist"
    assert not skb.may_pull(9)
    skb.linearize()
    assert skb.payload() == b"headheadpagelist" and not skb.is_nonlinear() and skb.may_pull(16)


def test_clone_shares_data_copy_does_not() -> None:
    skb = alloc_skb(4)
    skb.put_data(b"abcd")
    clone, copy = skb.clone(), skb.copy()
    skb.head[0] = ord("X")
    assert clone.payload() == b"Xbcd"
    assert copy.payload() == b"abcd"
    clone.cb[0] = 1
    assert skb.cb[0] == 0  # the control block is the clone's own


def test_truesize_is_the_kernel_formula() -> None:
    # SKB_TRUESIZE(SKB_DATA_ALIGN(100)) on x86_64: 128 + 256 + 320.
    assert skb_truesize(100) == 704
    assert alloc_skb(100).truesize == 704


def _skbs() -> st.SearchStrategy[SkBuff]:
    u32 = st.integers(0, 2**32 - 1)

    @st.composite
    def build(draw: st.DrawFn) -> SkBuff:
        head = draw(st.binary(max_size=256))
        end = len(head)
        data = draw(st.integers(0, end))
        tail = draw(st.integers(data, end))
        skb = SkBuff(bytearray(head))
        skb.data, skb.tail = data, tail
        header = st.one_of(st.just(HEADER_UNSET), st.integers(0, end))
        skb.mac_header = draw(header)
        skb.network_header = draw(header)
        skb.transport_header = draw(header)
        skb.frags = draw(st.lists(st.binary(min_size=1, max_size=32), max_size=3))
        skb.data_len = sum(len(f) for f in skb.frags)
        skb.len = tail - data + skb.data_len
        for name in (
            "protocol", "pkt_type", "ip_summed", "csum", "csum_start", "csum_offset", "mark",
            "priority", "skb_iif", "dev_ifindex", "hash", "queue_mapping", "vlan_tci", "gso_size",
            "gso_segs", "gso_type", "tx_flags", "tskey", "truesize",
        ):  # fmt: skip
            setattr(skb, name, draw(u32))
        skb.tstamp = draw(st.integers(-(2**63), 2**63 - 1))
        skb.hwtstamp = draw(st.integers(-(2**63), 2**63 - 1))
        skb.sk = draw(st.integers(0, 2**64 - 1))
        skb.cb = bytearray(draw(st.binary(min_size=SKB_CB_SIZE, max_size=SKB_CB_SIZE)))
        skb.ignore_df = draw(st.booleans())
        if draw(st.booleans()):
            skb.dst = Dst(draw(u32), draw(u32), draw(u32), draw(u32), draw(u32))
        if draw(st.booleans()):
            skb.cork = IpCork(
                draw(u32), draw(u32), draw(u32), draw(u32), draw(u32), draw(u32),
                draw(st.binary(max_size=40)), draw(st.one_of(st.none(), u32)),
            )  # fmt: skip
        if draw(st.booleans()):
            skb.trace = draw(
                st.lists(
                    st.builds(TraceStep, st.text(max_size=8), st.text(max_size=4), st.text(max_size=4),
                              st.integers(0, 2**62)),
                    max_size=3,
                )
            )  # fmt: skip
        return skb

    return build()


def _state(skb: SkBuff) -> dict[str, object]:
    out = {name: getattr(skb, name) for name in SkBuff.__slots__ if name != "frag_list"}
    out["frag_list"] = [_state(s) for s in skb.frag_list]
    return out


@settings(max_examples=200, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(_skbs())
def test_proto_round_trip_is_lossless(skb: SkBuff) -> None:
    wire = skb.to_proto().SerializeToString()
    back = SkBuff.from_proto(skb_pb2.SkBuff.FromString(wire))
    assert _state(back) == _state(skb)


def test_frag_list_round_trips() -> None:
    skb = alloc_skb(4)
    skb.put_data(b"head")
    seg = alloc_skb(3)
    seg.put_data(b"seg")
    skb.frag_list = [seg]
    skb.data_len = 3
    skb.len = 7
    back = SkBuff.from_proto(skb.to_proto())
    assert back.payload() == b"headseg" and _state(back) == _state(skb)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"data": 10, "tail": 5}, "need data <= tail <= end"),
        ({"tail": 99}, "need data <= tail <= end"),
        ({"network_header": 41}, "network_header 41 beyond end 40"),
        ({"len": 3}, "len 3 != linear 8 + data_len 0"),
        ({"data_len": 4}, "data_len 4 but frags and frag_list hold 0"),
        ({"cb": bytes(49)}, "cb of 49 bytes, at most 48"),
    ],
)
def test_contradictory_protos_are_refused_with_the_reason(change: dict[str, object], message: str) -> None:
    skb = alloc_skb(32, headroom=8)
    skb.put_data(b"8 bytes!")
    m = skb.to_proto()
    for k, v in change.items():
        setattr(m, k, v)
    with pytest.raises(SkbError, match=re.escape(message)):
        SkBuff.from_proto(m)


def test_deeply_nested_frag_lists_are_refused() -> None:
    inner = skb_pb2.SkBuff(head=b"x", data=0, tail=1, len=1)
    mid = skb_pb2.SkBuff(head=b"", len=1, data_len=1, frag_list=[inner])
    outer = skb_pb2.SkBuff(head=b"", len=1, data_len=1, frag_list=[mid])
    top = skb_pb2.SkBuff(head=b"", len=1, data_len=1, frag_list=[outer])
    with pytest.raises(SkbError, match="nested"):
        SkBuff.from_proto(top)
