"""The per-packet trace on a launched stack: the functions a delivered alice → bob
datagram passes, in order; the iptables TRACE target; sampling 1 in N; `stackemu trace`
and its Chrome trace-event export; and `stackemu demo`."""

from __future__ import annotations

import itertools
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from services.core.skbuff import trace_from_proto
from services.core.sockaddr import make_sockaddr_in, parse_sockaddr_in
from services.core.socket_uapi import SO_EMU_TRACE, SOL_SOCKET
from stackemu.demo import Process
from tests.e2e.stackrun import cli

ALICE, BOB = 0x0A000001, 0x0A000002

# (host, service, function) of a datagram from alice's socket to bob's, read by bob.
TRANSMIT = [
    ("alice", "udp", "udp_sendmsg"),
    ("alice", "ip", "ip_send_skb"),
    ("alice", "ip", "ip_local_out"),
    ("alice", "ip", "nf_hook(LOCAL_OUT)"),
    ("alice", "ip", "ip_output"),
    ("alice", "ip", "nf_hook(POST_ROUTING)"),
    ("alice", "nic", "dev_queue_xmit"),
    ("alice", "nic", "dev_hard_start_xmit"),
]
RECEIVE = [
    ("bob", "nic", "napi_gro_receive"),
    ("bob", "nic", "__netif_receive_skb_core"),
    ("bob", "ip", "ip_rcv"),
    ("bob", "ip", "nf_hook(PRE_ROUTING)"),
    ("bob", "ip", "ip_local_deliver"),
    ("bob", "ip", "nf_hook(LOCAL_IN)"),
    ("bob", "udp", "udp_rcv"),
    ("bob", "udp", "__udp4_lib_lookup"),
    ("bob", "udp", "sock_queue_rcv_skb"),
    ("bob", "udp", "udp_recvmsg"),
]


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    from tests.e2e.stackrun import launched

    for env in launched(str(tmp_path_factory.mktemp("state"))):
        # demo.Process (in this process) finds the stack as the CLI does.
        saved = os.environ.get("STACKEMU_STATE_DIR")
        os.environ["STACKEMU_STATE_DIR"] = env["STACKEMU_STATE_DIR"]
        try:
            yield env
        finally:
            if saved is None:
                del os.environ["STACKEMU_STATE_DIR"]
            else:
                os.environ["STACKEMU_STATE_DIR"] = saved


class Pair:
    """A socket on alice and a bound one on bob."""

    def __init__(self) -> None:
        self.tx, self.rx = Process("alice", "trace-tx"), Process("bob", "trace-rx")
        self.tfd, self.rfd = self.tx.socket(), self.rx.socket()
        self.rx.call("Bind", fd=self.rfd, addr=make_sockaddr_in(BOB, 0))
        self.port = parse_sockaddr_in(self.rx.call("GetSockName", fd=self.rfd).addr)[2]

    def send(self, data: bytes, trace: bool = False) -> Any:
        self.tx.call("SendMsg", fd=self.tfd, data=data, addr=make_sockaddr_in(BOB, self.port), trace=trace)
        return self.rx.call("RecvMsg", fd=self.rfd, bufsize=2048, timeout_ns=3_000_000_000)

    def close(self) -> None:
        self.tx.close()
        self.rx.close()


@pytest.fixture
def pair(stack: dict[str, str]) -> Iterator[Pair]:
    p = Pair()
    yield p
    p.close()


def journeys(env: dict[str, str], *args: str) -> list[dict[str, Any]]:
    r = cli(env, "trace", "--json", "--last", "0", *args)
    assert r.returncode == 0, r.stderr
    result: list[dict[str, Any]] = json.loads(r.stdout)
    return result


def steps(j: dict[str, Any]) -> list[tuple[str, str, str]]:
    return [(s["host"], s["service"], s["func"]) for s in j["steps"]]


def test_a_delivered_datagram_names_the_kernel_functions_in_order(stack: dict[str, str], pair: Pair) -> None:
    pair.tx.setsockopt(pair.tfd, SOL_SOCKET, SO_EMU_TRACE, 1)
    got = pair.send(b"traced")
    assert got.data == b"traced"
    trace = [(s.host, s.service, s.func) for s in trace_from_proto(got.trace)]
    assert trace == [*TRANSMIT, *RECEIVE, ("bob", "socket", "sock_recvmsg")]
    # The same journey from the services' rings, on bob alone (the wire carried it).
    js = journeys(stack, "--host", "bob", "--flow", f"udp dst port {pair.port}")
    assert [steps(j) for j in js] == [TRANSMIT + RECEIVE]
    sport = parse_sockaddr_in(pair.tx.call("GetSockName", fd=pair.tfd).addr)[2]
    assert js[0]["packet"] == f"UDP 10.0.0.1.{sport} > 10.0.0.2.{pair.port}, length 6"
    # Off again: the next datagram carries no trace.
    pair.tx.setsockopt(pair.tfd, SOL_SOCKET, SO_EMU_TRACE, 0)
    assert list(pair.send(b"plain").trace) == []


def test_a_trace_rule_traces_only_the_packets_it_matches(stack: dict[str, str], pair: Pair) -> None:
    other = Pair()
    try:
        rule = ["-t", "raw", "-A", "PREROUTING", "-p", "udp", "--dport", str(pair.port), "-j", "TRACE"]
        r = cli(stack, "iptables", "--host", "bob", *rule)
        assert r.returncode == 0, r.stderr
        for i in range(2):
            assert pair.send(b"match %d" % i).data == b"match %d" % i
            assert other.send(b"other %d" % i).data == b"other %d" % i
        r = cli(stack, "iptables", "--host", "bob", "-t", "raw", "-D", *rule[3:])
        assert r.returncode == 0, r.stderr
        js = journeys(stack, "--flow", f"udp dst port {pair.port}")
        # Traced from the rule's hook on: nothing of alice, nor of bob before it.
        assert [steps(j) for j in js] == [RECEIVE[3:]] * 2
        r = cli(stack, "trace", "--flow", f"udp dst port {other.port}")
        assert r.returncode == 1
        assert r.stderr == "no traced packet matches the filter: trace some first (see --help)\n"
    finally:
        other.close()


def _sample(env: dict[str, str], host: str, n: int) -> None:
    r = cli(env, "trace", "--host", host, "--sample", str(n))
    assert r.returncode == 0, r.stderr
    assert r.stdout == f"net.core.emu_trace_sample = {n} on {host}\n"


@pytest.mark.parametrize(("host", "journey"), [("alice", TRANSMIT + RECEIVE), ("bob", RECEIVE)])
def test_sampling_one_in_n_traces_exactly_k(
    stack: dict[str, str], pair: Pair, host: str, journey: list[tuple[str, str, str]]
) -> None:
    """alice samples at udp_sendmsg (the whole way is traced), bob at its NIC's receive
    (from napi_gro_receive on). A counter, not a coin: N*k sends, exactly k traces."""
    n, k = 3, 4
    pair.send(b"warm up: the neighbour entry")
    _sample(stack, host, n)
    try:
        for i in range(n * k):
            assert pair.send(b"%02d" % i).data == b"%02d" % i
    finally:
        _sample(stack, host, 0)
    js = journeys(stack, "--flow", f"udp dst port {pair.port}")
    assert [steps(j) for j in js] == [journey] * k
    assert {j["packet"].rsplit(", ", 1)[1] for j in js} == {"length 2"}


def test_the_chrome_export_has_the_events(stack: dict[str, str], pair: Pair, tmp_path: Path) -> None:
    for i in range(2):
        pair.send(b"chrome %d" % i, trace=True)
    out = tmp_path / "trace.json"
    r = cli(stack, "trace", "--last", "2", "--flow", f"udp dst port {pair.port}", "--export", str(out))
    assert r.returncode == 0, r.stderr
    doc = json.loads(out.read_text())
    events = doc["traceEvents"]
    meta = [(e["name"], e["pid"], e["tid"], e["args"]["name"]) for e in events if e["ph"] == "M"]
    assert meta == [
        ("process_name", 1, 0, "alice"),
        ("thread_name", 1, 1, "nic"),
        ("thread_name", 1, 2, "ip"),
        ("thread_name", 1, 3, "udp"),
        ("process_name", 2, 0, "bob"),
        ("thread_name", 2, 1, "nic"),
        ("thread_name", 2, 2, "ip"),
        ("thread_name", 2, 3, "udp"),
    ]
    hosts, tids = {"alice": 1, "bob": 2}, {"nic": 1, "ip": 2, "udp": 3}
    expect = [(f, hosts[h], tids[s]) for h, s, f in TRANSMIT + RECEIVE]
    for packet in (1, 2):
        mine = [e for e in events if e["ph"] != "M" and e["args"]["packet"] == packet]
        assert [(e["name"], e["pid"], e["tid"]) for e in mine] == expect
        assert [e["ph"] for e in mine] == ["X"] * (len(expect) - 1) + ["i"]
        for a, b in itertools.pairwise(mine):
            assert a["ts"] + a["dur"] == pytest.approx(b["ts"])
    # The terminal view: a header and one line per step.
    lines = r.stdout.splitlines()
    assert lines[0].startswith("packet 1/2: UDP 10.0.0.1.")
    assert [ln.split()[2:] for ln in lines[1 : 1 + len(expect)]] == [
        [h, s, f] for h, s, f in TRANSMIT + RECEIVE
    ]
    assert lines[1].split()[:2] == ["+0.0", "us"]


def test_the_demo_prints_each_section(stack: dict[str, str]) -> None:
    r = cli(stack, "demo", timeout=30)
    assert r.returncode == 0, r.stderr
    out = r.stdout
    heads = [
        "stackemu demo: 3 UDP datagrams alice → bob over the wire",
        "Set up",
        "Sent and received",
        "The journey of datagram #3 through every layer (kernel functions; +us since the first)",
        "The cmsgs recvmsg() returned with it (96 bytes of control data)",
        "Counters that moved (nstat and ip -s link names; alice, bob)",
        "bob's rule (iptables -L INPUT -v -n -x)",
    ]
    lines = out.splitlines()
    assert [ln for ln in lines if ln in heads] == heads
    start = lines.index(heads[3]) + 1
    trip = [ln.split()[2:] for ln in lines[start : start + len(TRANSMIT) + len(RECEIVE) + 1]]
    assert trip == [[h, s, f] for h, s, f in TRANSMIT + RECEIVE] + [["bob", "socket", "sock_recvmsg"]]
    cm = lines[lines.index(heads[4]) + 1 : lines.index(heads[4]) + 3]
    assert cm[0].startswith("  SOL_SOCKET SCM_TIMESTAMPING: software ")
    assert cm[0].endswith(", hardware 0.000000000")
    assert cm[1] == "  SOL_IP IP_PKTINFO: ipi_ifindex 2 (eth0), ipi_spec_dst 10.0.0.2, ipi_addr 10.0.0.2"
    moved = {tuple(ln.split()) for ln in lines[lines.index(heads[5]) + 1 : lines.index(heads[6])] if ln}
    for row in [
        ("alice", "UdpOutDatagrams", "+3"),
        ("alice", "IpOutRequests", "+3"),
        ("bob", "UdpInDatagrams", "+3"),
        ("bob", "IpInDelivers", "+3"),
        ("bob", "IpExtInOctets", "+138"),  # three 46-byte packets: ip_rcv counts the Ethernet padding
    ]:
        assert row in moved
    rule = lines[-1].split()
    assert rule[:3] == ["3", "120", "ACCEPT"]
