"""The per-flow ledger: a flow told from an skb's headers wherever a layer holds it,
drops attributed through DropStats, and the stack-wide conservation check that
`stackemu dropwatch --check` prints."""

from __future__ import annotations

import pytest

from services.core.dropmon import flow_to_proto
from services.core.dropreason import DropStats, SkbDropReason
from services.core.flowledger import FlowCounts, FlowLedger, datagrams, flow_of
from services.core.skbuff import IpCork, SkBuff, alloc_skb
from stackemu.skb.v1 import dropmon_pb2
from stackemu.tools.dropwatch import conservation

R = SkbDropReason
ETH = bytes.fromhex("020000000002 020000000001 0800")
# 10.0.0.1:40000 -> 10.0.0.2:9000, 4 bytes of payload; IP checksum left 0 (not read).
IP = bytes.fromhex("4500 0020 0001 0000 4011 0000 0a000001 0a000002")
UDP = bytes.fromhex("9c40 2328 000c 0000") + b"ping"
FLOW = (17, 0x0A000001, 40000, 0x0A000002, 9000)


def _skb(frame: bytes, headroom: int = 32) -> SkBuff:
    skb = alloc_skb(len(frame), headroom)
    skb.put_data(frame)
    return skb


def test_flow_at_every_layer() -> None:
    # NIC receive, before eth_type_trans: data at the Ethernet header, nothing set.
    assert flow_of(_skb(ETH + IP + UDP)) == FLOW
    # After eth_type_trans: mac_header set, data at the IP header.
    skb = _skb(ETH + IP + UDP)
    skb.reset_mac_header()
    skb.pull(14)
    assert flow_of(skb) == FLOW
    # ip_rcv onwards and the output path: network_header; data may be at UDP.
    skb.reset_network_header()
    skb.pull(20)
    assert flow_of(skb) == FLOW


def test_no_flow_without_the_headers() -> None:
    assert flow_of(_skb(ETH[:12] + b"\x08\x06" + IP + UDP)) is None  # ARP EtherType
    assert flow_of(_skb(ETH + IP[:16])) is None  # truncated IP header
    icmp = IP[:9] + b"\x01" + IP[10:]
    assert flow_of(_skb(ETH + icmp + UDP)) is None
    # A fragment past the first has no UDP header: offset 185 (1480 bytes).
    later = IP[:6] + bytes.fromhex("00b9") + IP[8:]
    assert flow_of(_skb(ETH + later + UDP)) is None
    # The first fragment (MF, offset 0) carries the ports.
    first = IP[:6] + bytes.fromhex("2000") + IP[8:]
    assert flow_of(_skb(ETH + first + UDP)) == FLOW
    udplite = IP[:9] + bytes([136]) + IP[10:]
    assert flow_of(_skb(ETH + udplite + UDP)) == (136, *FLOW[1:])


def test_a_udp_skb_without_an_ip_header_names_its_flow_by_its_cork() -> None:
    """Between udp_send_skb and ip_send_skb (the UDP service's queue to IP), the skb has
    the UDP header at transport_header and the addresses in its cork."""
    skb = _skb(UDP)
    skb.reset_transport_header()
    skb.cork = IpCork(saddr=0x0A000001, daddr=0x0A000002, protocol=17)
    assert flow_of(skb) == FLOW
    skb.cork = IpCork(saddr=0x0A000001, daddr=0x0A000002, protocol=1)
    assert flow_of(skb) is None
    skb.cork = IpCork(saddr=0x0A000001, daddr=0x0A000002, protocol=17)
    skb.transport_header = skb.tail - 2  # no room for the ports
    assert flow_of(skb) is None


def test_gso_skb_counts_its_segments() -> None:
    skb = _skb(ETH + IP + UDP)
    assert datagrams(skb) == 1
    skb.gso_size, skb.gso_segs = 1000, 3
    assert datagrams(skb) == 3


def test_dropstats_feeds_the_ledger_only_when_on() -> None:
    drops = DropStats()
    skb = _skb(ETH + IP + UDP)
    drops.drop(R.NO_SOCKET, "__udp4_lib_rcv", skb=skb)
    assert drops.flows is None
    ledger = drops.flows = FlowLedger()
    ledger.sent(FLOW, 3)
    drops.drop(R.NETFILTER_DROP, "nf_hook_slow", skb=skb)
    ledger.delivered(skb)
    ledger.delivered(skb)
    # Dropped from the socket's queue: no longer delivered.
    drops.drop(R.NOT_SPECIFIED, "udp_destruct_common", skb=skb, queued=True)
    drops.drop(R.FULL_RING, "rx ring full")  # a frame, no skb
    c = ledger.flows[FLOW]
    assert (c.sent, c.delivered, c.dropped, c.balanced) == (3, 1, 2, True)
    assert c.drops == {(R.NETFILTER_DROP, "nf_hook_slow"): 1, (R.NOT_SPECIFIED, "udp_destruct_common"): 1}
    assert ledger.unattributed == {(R.FULL_RING, "rx ring full"): 1}
    # DropStats counted all of them, the one before the ledger too.
    assert drops.total() == 4


def test_ledger_is_bounded() -> None:
    ledger = FlowLedger(max_flows=1)
    ledger.sent(FLOW)
    other = (17, 0x0A000001, 40001, 0x0A000002, 9000)
    ledger.sent(other, 2)
    assert list(ledger.flows) == [FLOW]
    assert ledger.untracked.sent == 2
    with pytest.raises(ValueError):
        FlowLedger(max_flows=0)


def _answer(ledger: FlowLedger) -> dropmon_pb2.GetFlowLedgerResponse:
    return dropmon_pb2.GetFlowLedgerResponse(
        enabled=True,
        flows=[flow_to_proto(k, c) for k, c in ledger.flows.items()],
        untracked=flow_to_proto(None, ledger.untracked),
    )


def test_conservation_across_services() -> None:
    alice_udp, bob_ip, bob_udp = FlowLedger(), FlowLedger(), FlowLedger()
    alice_udp.sent(FLOW, 10)
    bob_ip.flows[FLOW] = FlowCounts(drops={(R.NETFILTER_DROP, "nf_hook_slow"): 4})
    bob_udp.flows[FLOW] = FlowCounts(delivered=2, drops={(R.SOCKET_RCVBUFF, "__udp_queue_rcv_skb"): 4})
    answers = [
        ("alice", "udp", _answer(alice_udp)),
        ("bob", "ip", _answer(bob_ip)),
        ("bob", "udp", _answer(bob_udp)),
    ]
    c = conservation(answers)
    assert c.ok
    (f,) = c.flows
    assert (f.sent, f.delivered, f.dropped) == (10, 2, 8)
    assert f.drops == {
        ("SKB_DROP_REASON_NETFILTER_DROP", "nf_hook_slow", "ip", "bob"): 4,
        ("SKB_DROP_REASON_SOCKET_RCVBUFF", "__udp_queue_rcv_skb", "udp", "bob"): 4,
    }
    assert f.name() == "udp 10.0.0.1:40000 > 10.0.0.2:9000"


def test_conservation_fails_for_an_uncounted_drop() -> None:
    # A layer that frees a datagram without DropStats: bob's IP lost one silently.
    alice_udp, bob_ip, bob_udp = FlowLedger(), FlowLedger(), FlowLedger()
    alice_udp.sent(FLOW, 10)
    bob_ip.flows[FLOW] = FlowCounts(drops={(R.NETFILTER_DROP, "nf_hook_slow"): 3})
    bob_udp.flows[FLOW] = FlowCounts(delivered=6)
    answers = [
        ("alice", "udp", _answer(alice_udp)),
        ("bob", "ip", _answer(bob_ip)),
        ("bob", "udp", _answer(bob_udp)),
    ]
    c = conservation(answers)
    assert not c.ok
    assert [(f.sent, f.delivered, f.dropped, f.balanced) for f in c.flows] == [(10, 6, 3, False)]


def test_conservation_fails_with_a_ledger_off() -> None:
    ledger = FlowLedger()
    ledger.sent(FLOW)
    ledger.delivered(_skb(ETH + IP + UDP))
    c = conservation(
        [("alice", "udp", _answer(ledger)), ("bob", "ip", dropmon_pb2.GetFlowLedgerResponse(enabled=False))]
    )
    assert c.flows[0].balanced
    assert not c.ok
    assert c.off == ["ip bob"]
