import os
import re
from pathlib import Path

import pytest

from services.core.dropreason import (
    OVERFLOW_LOCATION,
    SKB_DROP_REASON_MAX,
    DropStats,
    SkbDropReason,
    describe,
    parse,
)

R = SkbDropReason

KFREE_SKB_FORMATS = (
    Path("/sys/kernel/tracing/events/skb/kfree_skb/format"),
    Path("/sys/kernel/debug/tracing/events/skb/kfree_skb/format"),
)


def test_values_are_linux_6_18s() -> None:
    expected = {
        "NOT_DROPPED_YET": 0,
        "CONSUMED": 1,
        "NOT_SPECIFIED": 2,
        "NO_SOCKET": 3,
        "SOCKET_CLOSE": 4,
        "SOCKET_FILTER": 5,
        "SOCKET_RCVBUFF": 6,
        "PKT_TOO_SMALL": 9,
        "UDP_CSUM": 11,
        "NETFILTER_DROP": 12,
        "OTHERHOST": 13,
        "IP_CSUM": 14,
        "IP_INHDR": 15,
        "IP_RPFILTER": 16,
        "UNICAST_IN_L2_MULTICAST": 17,
        "XFRM_POLICY": 18,
        "IP_NOPROTO": 19,
        "PROTO_MEM": 20,
        "IP_OUTNOROUTES": 54,
        "NEIGH_FAILED": 58,
        "QDISC_DROP": 64,
        "CPU_BACKLOG": 71,
        "XDP": 72,
        "FULL_RING": 80,
        "NOMEM": 81,
        "HDR_TRUNC": 82,
        "IP_INADDRERRORS": 87,
        "IP_INNOROUTES": 88,
        "IP_INVALID_SOURCE": 90,
        "PKT_TOO_BIG": 93,
        "DUP_FRAG": 94,
        "FRAG_REASM_TIMEOUT": 95,
        "FRAG_TOO_FAR": 96,
        "QUEUE_PURGE": 104,
        "RECURSION_LIMIT": 127,
    }
    assert {name: SkbDropReason[name].value for name in expected} == expected
    assert SKB_DROP_REASON_MAX == 128


def test_enum_is_dense_and_ends_below_max() -> None:
    assert [int(r) for r in R] == list(range(SKB_DROP_REASON_MAX))


def test_full_name() -> None:
    assert R.NOT_DROPPED_YET.full_name == "SKB_NOT_DROPPED_YET"
    assert R.CONSUMED.full_name == "SKB_CONSUMED"
    assert R.NOT_SPECIFIED.full_name == "SKB_DROP_REASON_NOT_SPECIFIED"
    assert R.NO_SOCKET.full_name == "SKB_DROP_REASON_NO_SOCKET"
    assert R.SKB_CSUM.full_name == "SKB_DROP_REASON_SKB_CSUM"


def test_descriptions_are_the_kernel_comments() -> None:
    assert describe(R.OTHERHOST) == ("packet don't belong to current host (interface is in promisc mode)")
    assert describe(R.UDP_CSUM) == "UDP checksum error"
    assert describe(R.SOCKET_RCVBUFF) == "socket receive buff is full"
    assert R.CPU_BACKLOG.description == (
        "failed to enqueue the skb to the per CPU backlog queue. This can be caused by "
        "backlog queue full (see netdev_max_backlog in net.rst) or RPS flow limit"
    )
    assert describe(127) == "Dead loop on virtual device."
    for reason in R:
        text = describe(reason)
        assert text and text == " ".join(text.split()), reason


def test_is_drop() -> None:
    assert not R.NOT_DROPPED_YET.is_drop
    assert not R.CONSUMED.is_drop
    assert all(r.is_drop for r in R if r >= R.NOT_SPECIFIED)


def test_parse() -> None:
    assert parse("NO_SOCKET") is R.NO_SOCKET
    assert parse("SKB_DROP_REASON_NO_SOCKET") is R.NO_SOCKET
    assert parse("SKB_CONSUMED") is R.CONSUMED
    assert parse("CONSUMED") is R.CONSUMED
    assert parse("SKB_CSUM") is R.SKB_CSUM
    assert parse("SKB_DROP_REASON_SKB_CSUM") is R.SKB_CSUM
    for bad in ("no_socket", "SKB_DROP_REASON_CONSUMED", "SKB_NO_SOCKET", "MAX", ""):
        with pytest.raises(ValueError, match="unknown drop reason"):
            parse(bad)


def _live_reasons() -> list[tuple[int, str]] | None:
    for path in KFREE_SKB_FORMATS:
        try:
            text = path.read_text()
        except OSError:
            continue
        return [(int(v), n) for v, n in re.findall(r'\{ (\d+), "([A-Z0-9_]+)" \}', text)]
    return None


def test_matches_the_running_kernels_tracepoint() -> None:
    live = _live_reasons()
    if live is None:
        pytest.skip("no readable skb:kfree_skb tracepoint format (tracefs not mounted)")
    expected = [(int(r), r.name) for r in R if r.is_drop] + [(SKB_DROP_REASON_MAX, "MAX")]
    if live != expected and not os.uname().release.startswith("6.18."):
        pytest.skip(f"kernel {os.uname().release} numbers its drop reasons differently")
    assert live == expected


def test_drop_stats_counts_per_reason_and_location() -> None:
    stats = DropStats()
    stats.drop(R.IP_CSUM, "ip_rcv_core")
    stats.drop(R.IP_CSUM, "ip_rcv_core", 2)
    stats.drop(R.NO_SOCKET, "__udp4_lib_rcv")
    stats.drop(R.SOCKET_RCVBUFF, "__udp_queue_rcv_skb", 4)
    stats.drop(R.IP_INHDR, "ip_rcv_core")
    assert stats.total() == 9
    assert stats.get(R.IP_CSUM, "ip_rcv_core") == 3
    assert stats.get(R.IP_CSUM, "ip_rcv_finish") == 0
    assert stats.get(R.IP_CSUM) == 3
    assert stats.by_reason() == {
        "NO_SOCKET": 1,
        "SOCKET_RCVBUFF": 4,
        "IP_CSUM": 3,
        "IP_INHDR": 1,
    }
    assert list(stats.by_reason()) == ["NO_SOCKET", "SOCKET_RCVBUFF", "IP_CSUM", "IP_INHDR"]
    assert stats.by_location() == {
        "ip_rcv_core": 4,
        "__udp4_lib_rcv": 1,
        "__udp_queue_rcv_skb": 4,
    }
    assert list(stats.items()) == [
        ((R.IP_CSUM, "ip_rcv_core"), 3),
        ((R.NO_SOCKET, "__udp4_lib_rcv"), 1),
        ((R.SOCKET_RCVBUFF, "__udp_queue_rcv_skb"), 4),
        ((R.IP_INHDR, "ip_rcv_core"), 1),
    ]
    stats.clear()
    assert stats.total() == 0
    assert list(stats.items()) == []


def test_drop_stats_accepts_the_kernel_number() -> None:
    stats = DropStats()
    stats.drop(R(3), "__udp4_lib_rcv")
    stats.drop(3, "__udp4_lib_rcv")  # type: ignore[arg-type]
    assert list(stats.items()) == [((R.NO_SOCKET, "__udp4_lib_rcv"), 2)]
    assert type(next(stats.items())[0][0]) is R


@pytest.mark.parametrize("reason", [R.NOT_DROPPED_YET, R.CONSUMED])
def test_drop_stats_refuses_non_drops(reason: R) -> None:
    with pytest.raises(ValueError, match="is not a drop reason"):
        DropStats().drop(reason, "udp_recvmsg")


def test_drop_stats_refuses_bad_input() -> None:
    stats = DropStats()
    with pytest.raises(ValueError):
        stats.drop(R.NO_SOCKET, "")
    with pytest.raises(ValueError):
        stats.drop(R.NO_SOCKET, "x", -1)
    with pytest.raises(ValueError):
        stats.drop(SKB_DROP_REASON_MAX, "x")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        DropStats(max_keys=0)
    assert stats.total() == 0


def test_drop_stats_memory_is_bounded() -> None:
    stats = DropStats(max_keys=3)
    for i in range(100):
        stats.drop(R.NOMEM, f"fn{i}")
        stats.drop(R.FULL_RING, f"fn{i}")
    pairs = dict(stats.items())
    assert pairs == {
        (R.NOMEM, "fn0"): 1,
        (R.FULL_RING, "fn0"): 1,
        (R.NOMEM, "fn1"): 1,
        (R.FULL_RING, OVERFLOW_LOCATION): 99,
        (R.NOMEM, OVERFLOW_LOCATION): 98,
    }
    assert stats.total() == 200 == sum(pairs.values())
