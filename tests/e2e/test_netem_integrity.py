"""Netem on the wire never corrupts delivered data (issue 10, part 3): alice floods bob
through a netem qdisc on her eth0 (sch_netem's corrupt, duplicate, reorder, loss), and
every datagram bob's socket returns is byte for byte one that alice sent.

A flood datagram carries its sequence number and bytes derived from it
(overload_common.payload), so bob's receiver checks each one it reads exactly. netem
flips one bit anywhere in the frame (Ethernet header included, as netem_enqueue() does
on egress); the kernel's checksums catch every flip in the IPv4 or UDP header or the
payload (a one-bit change always changes the 16-bit one's complement sum): ip_rcv_core()
counts IpInHdrErrors (and IpExtInCsumErrors for a checksum), __udp4_lib_rcv() or
udp_recvmsg() UdpInErrors (and UdpInCsumErrors). A flipped destination MAC is
PACKET_OTHERHOST, a flipped EtherType has no handler; a flipped source MAC (or the group
bit of the destination, which makes it PACKET_MULTICAST) changes nothing delivered.

Stack-wide, with the per-flow ledger of `stackemu dropwatch --check` summed over every
flow (a corrupted address or port names another flow) and the drops no flow could be
named for: every copy netem puts on the wire is delivered or dropped, every datagram it
loses whole is a drop at alice, exactly.

One bit flipped at each of a dozen places of a frame, on this machine's kernel (raw
frames into a veth whose peer namespace receives) and on bob (the same frames on his
end of the wire): the same datagrams reach the socket (those with the source MAC or
the destination's group bit flipped, intact) and the same counters move by the same
amounts.

Run as `python -m tests.e2e.test_netem_integrity recv ADDR PORT SIZE` it is bob's
receiver (STACKEMU_HOST=bob); `flips MODULE ADDR PORT MARKER` is the receiver of the
flipped frames, with the socket module named (`socket` in the kernel's namespace).
The kernel of this machine has no sch_netem (CONFIG_NET_SCH_NETEM is not set), hence
flips written by hand for the comparison."""

from __future__ import annotations

import importlib
import json
import subprocess
import sys
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from services.core.server import open_channel
from services.core.wire.ethernet import mac_from_str
from services.core.wire.ipv4 import ip_from_str
from stackemu.nic.v1 import nic_pb2, nic_pb2_grpc
from stackemu.tools.dropwatch import Conservation
from tests.e2e.overload_common import (
    MAX_DRAIN,
    ROOT,
    Flood,
    Knobs,
    flows_on,
    ledger,
    netem_stats,
    nstat,
    payload,
    peer,
    pointed_at,
    static_neighbours,
    until,
)
from tests.e2e.stackrun import launched, service_addr
from tests.services.nicframes import eth_frame, udp_packet

ALICE, BOB = "10.0.0.1", "10.0.0.2"
SIZE = 64
# SO_RCVBUF: net.core.rmem_max, doubled: room for every datagram of a flood (and its
# duplicates) at the truesize of a 64-byte one, so that bob's socket drops none.
RCVBUF = 212992
# 10 rounds of 32: 320 datagrams, below what the send buffer holds in flight.
ROUNDS, BATCH = 10, 32
NETEM = "netem_enqueue"
# Where one bit is flipped in an Ethernet/IPv4/UDP frame: (what, byte offset, bit).
FLIPS = [
    ("nothing", None, 0),
    ("destination MAC, unicast", 5, 0),
    ("destination MAC, group bit", 0, 0),
    ("source MAC", 8, 3),
    ("EtherType", 12, 0),
    ("IP version", 14, 6),
    ("IP tot_len", 17, 2),
    ("IP TTL", 22, 1),
    ("UDP source port", 34, 1),
    ("UDP length", 39, 4),
    ("UDP checksum", 40, 0),
    ("payload", 50, 5),
]
# The counters a flip moves, by nstat's names.
FLIP_COUNTERS = (
    "IpInReceives",
    "IpInHdrErrors",
    "IpExtInCsumErrors",
    "IpInDelivers",
    "UdpInDatagrams",
    "UdpInErrors",
    "UdpInCsumErrors",
    "UdpNoPorts",
)
# What a corrupted frame's drop may be, by the ledger's (reason, location).
CORRUPTION_DROPS = {
    ("SKB_DROP_REASON_OTHERHOST", "rx mac filter"),
    ("SKB_DROP_REASON_UNHANDLED_PROTO", "__netif_receive_skb_core"),
    ("SKB_DROP_REASON_IP_CSUM", "ip_rcv_core"),
    ("SKB_DROP_REASON_IP_INHDR", "ip_rcv_core"),
    ("SKB_DROP_REASON_UDP_CSUM", "__udp4_lib_rcv"),
    ("SKB_DROP_REASON_UDP_CSUM", "udp_recvmsg"),
    ("SKB_DROP_REASON_PKT_TOO_SMALL", "__udp4_lib_rcv"),
}


def _recv(addr: str, port: str, size: str) -> None:
    """A socket bound to addr:port that reads nothing until told `drain`: then every
    datagram queued, each checked against the payload its sequence number names;
    prints the sequence numbers in the order read and how many were not intact."""
    import stackemu.socket as socket

    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RCVBUF)
    s.bind((addr, int(port)))
    print("ready", flush=True)
    assert sys.stdin.readline() == "drain\n"
    s.setblocking(False)
    seqs: list[int] = []
    bad = 0
    for _ in range(MAX_DRAIN):
        try:
            data = s.recv(int(size) + 1)
        except BlockingIOError:
            break
        seq = int.from_bytes(data[:4], "big")
        seqs.append(seq)
        bad += data != payload(seq, int(size))
    print(json.dumps({"seqs": seqs, "bad": bad}), flush=True)


def _flips(module: str, addr: str, port: str, marker: str) -> None:
    """A socket of `module` bound to addr:port: reads until the datagram numbered
    `marker`, then whatever else is queued; prints the numbers read and how many were
    not intact."""
    socket: Any = importlib.import_module(module)
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind((addr, int(port)))
    s.settimeout(10)
    print("ready", flush=True)
    seqs: list[int] = []
    bad = 0
    while not seqs or seqs[-1] != int(marker):
        data = s.recv(SIZE + 1)
        seqs.append(int.from_bytes(data[:4], "big"))
        bad += data != payload(seqs[-1], SIZE)
    s.setblocking(False)
    for _ in range(len(FLIPS)):
        try:
            data = s.recv(SIZE + 1)
        except BlockingIOError:
            break
        seqs.append(int.from_bytes(data[:4], "big"))
        bad += data != payload(seqs[-1], SIZE)
    print(json.dumps({"seqs": seqs, "bad": bad}), flush=True)


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    for env in launched(str(tmp_path_factory.mktemp("netem"))):
        with pointed_at(env):
            # No ARP frame joins the flood (and its corruption) at a random moment.
            static_neighbours([("alice", "eth0", BOB, "bob"), ("bob", "eth0", ALICE, "alice")])
            yield env


def _receiver(env: dict[str, str], port: int) -> subprocess.Popen[str]:
    proc = peer(env, "bob", "recv", BOB, port, SIZE, module="tests.e2e.test_netem_integrity")
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if line != "ready\n":
        proc.kill()
        raise AssertionError(f"receiver: {line!r} {proc.communicate(timeout=10)}")
    return proc


class Run:
    """One flood from alice to bob's port through netem on alice's eth0: what alice's
    senders handed the stack, what bob's socket returned, what netem did, and what the
    stack counted (the ledger, bob's nstat)."""

    def __init__(self, env: dict[str, str], port: int, **netem: Any) -> None:
        proc = _receiver(env, port)
        try:
            with Knobs() as knobs:
                # A seed of its own per test: the same flips and draws each run.
                knobs.netem("alice", "eth0", seed=port, **netem)
                self.before = nstat(env, "bob")
                flows_on()
                flood = Flood(ALICE, f"{BOB}:{port}", SIZE, rounds=ROUNDS, batch=BATCH)
                with flood.sending(env, "alice") as sent:
                    self.sent = dict(sent)
                    # Every datagram sent has reached netem (it took as many frames as
                    # were sent: enqueued + duplicated = sent + lost + backlog), and the
                    # delayed and reordered ones have left it.
                    total = self.total_sent
                    self.netem = until(
                        lambda: netem_stats("alice", "eth0"),
                        lambda q: q.backlog == 0 and q.sent + q.lost - q.duplicated == total,
                    )
                    # Bob's layers have seen every frame once the ledger stops moving.
                    until(ledger, lambda c: self._past_netem(c) == self.netem.sent)
                    out, err = proc.communicate("drain\n", timeout=30)
                    assert proc.returncode == 0, err
                    doc = json.loads(out)
                    self.seqs: list[int] = doc["seqs"]
                    self.bad: int = doc["bad"]
                    # After the drain: udp_recvmsg's checksum drops are in it too.
                    self.ledger: Conservation = ledger()
                    self.after = nstat(env, "bob")
            q = self.netem
            print(
                f"\nnetem {netem}: {self.total_sent} sent, {len(self.seqs)} read ({self.bad} not intact); "
                f"netem lost {q.lost}, duplicated {q.duplicated}, reordered {q.reordered}, corrupted "
                f"{q.corrupted}; drops {dict(self.drops())}"
            )
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.communicate(timeout=10)

    @property
    def total_sent(self) -> int:
        return sum(self.sent.values())

    @staticmethod
    def _past_netem(c: Conservation) -> int:
        """Datagrams a socket got or a layer dropped after netem, over every flow and
        none: every copy netem put on the wire ends as one of them."""
        drops = (n for f in c.flows for k, n in f.drops.items() if k[1] != NETEM)
        unattributed = (n for k, n in c.unattributed.items() if k[1] != NETEM)
        return sum(f.delivered for f in c.flows) + sum(drops) + sum(unattributed)

    def drops(self) -> Counter[tuple[str, str]]:
        """Every drop, of every flow and of none, by (reason, location)."""
        out: Counter[tuple[str, str]] = Counter()
        for f in self.ledger.flows:
            for (reason, location, _, _), n in f.drops.items():
                out[reason, location] += n
        for (reason, location, _, _), n in self.ledger.unattributed.items():
            out[reason, location] += n
        return out

    def delta(self, name: str) -> int:
        return self.after.get(name, 0) - self.before.get(name, 0)

    def conserved(self) -> int:
        """Stack-wide conservation: the ledger's sends are the senders' own count; netem
        put on the wire what it took and duplicated less what it lost (a loss takes a
        frame or only its duplicate: netem_enqueue()'s count goes to 0 or to 1); each
        copy on the wire was read by bob or dropped on the way; the ledger's deliveries
        are what bob read. The drops of whole datagrams at netem_enqueue(), returned."""
        c, q = self.ledger, self.netem
        assert (c.off, c.untracked) == ([], 0)
        assert sum(f.sent for f in c.flows) == self.total_sent
        assert self.total_sent + q.duplicated == q.sent + q.lost
        assert self._past_netem(c) == q.sent
        assert sum(f.delivered for f in c.flows) == len(self.seqs)
        lost = self.drops()["SKB_DROP_REASON_QDISC_DROP", NETEM]
        assert lost <= q.lost
        return lost


def test_corruption_is_caught_by_checksums_and_counted(stack: dict[str, str]) -> None:
    run = Run(stack, 9400, corrupt_pct=30.0)
    # Nothing bob's socket returned differs from what alice sent.
    assert run.bad == 0
    assert set(run.seqs) <= set(range(run.total_sent))
    assert len(run.seqs) == len(set(run.seqs))
    assert run.conserved() == 0
    drops = run.drops()
    assert set(drops) <= CORRUPTION_DROPS, drops
    # netem flipped bits; every flip the checksums can see was dropped (those in the
    # source MAC or the destination's group bit were harmless and delivered).
    assert 0 < sum(drops.values()) <= run.netem.corrupted
    assert run.total_sent - len(run.seqs) == sum(drops.values())
    # Each drop is where the kernel counts it too.
    udp_csum = (
        drops["SKB_DROP_REASON_UDP_CSUM", "__udp4_lib_rcv"] + drops["SKB_DROP_REASON_UDP_CSUM", "udp_recvmsg"]
    )
    assert run.delta("UdpInCsumErrors") == udp_csum
    assert run.delta("IpExtInCsumErrors") == drops["SKB_DROP_REASON_IP_CSUM", "ip_rcv_core"]
    assert run.delta("IpInHdrErrors") == (
        drops["SKB_DROP_REASON_IP_CSUM", "ip_rcv_core"] + drops["SKB_DROP_REASON_IP_INHDR", "ip_rcv_core"]
    )


def test_duplicates_and_reordering_deliver_only_what_was_sent(stack: dict[str, str]) -> None:
    run = Run(stack, 9401, duplicate_pct=20.0, reorder_pct=25.0, delay_us=5000)
    assert run.bad == 0
    counts = Counter(run.seqs)
    # A subset of what was sent, each at most twice (a duplicate does not duplicate).
    assert set(counts) <= set(range(run.total_sent))
    assert max(counts.values()) <= 2
    assert sum(n - 1 for n in counts.values()) == run.netem.duplicated > 0
    assert run.netem.reordered > 0
    assert run.seqs != sorted(run.seqs)
    assert run.conserved() == 0
    assert run.drops() == Counter()


def test_loss_corruption_duplication_and_reordering_at_once(stack: dict[str, str]) -> None:
    run = Run(
        stack, 9402, loss_pct=10.0, corrupt_pct=10.0, duplicate_pct=10.0, reorder_pct=10.0, delay_us=5000
    )
    assert run.bad == 0
    counts = Counter(run.seqs)
    assert set(counts) <= set(range(run.total_sent))
    assert max(counts.values()) <= 2
    # Whole datagrams lost in netem: one drop each, at alice.
    assert run.conserved() > 0
    drops = run.drops()
    assert set(drops) <= CORRUPTION_DROPS | {("SKB_DROP_REASON_QDISC_DROP", NETEM)}, drops


def _flipped(dst_mac: bytes, src_mac: bytes, port: int) -> list[bytes]:
    """The frames of FLIPS from ALICE to BOB:port, datagram i with FLIPS[i]'s bit
    flipped, then an intact marker numbered len(FLIPS)."""
    out = []
    for i in range(len(FLIPS) + 1):
        packet = udp_packet(payload(i, SIZE), src=ip_from_str(ALICE), dst=ip_from_str(BOB), dport=port)
        frame = bytearray(eth_frame(packet, dst=dst_mac, src=src_mac))
        if i < len(FLIPS) and (where := FLIPS[i][1]) is not None:
            frame[where] ^= 1 << FLIPS[i][2]
        out.append(bytes(frame))
    return out


def _flips_receiver(
    python: list[str], module: str, port: int, env: dict[str, str] | None
) -> subprocess.Popen[str]:
    """`flips` with `module` on BOB:port, run by the `python` command line."""
    proc = subprocess.Popen(
        [*python, "-m", "tests.e2e.test_netem_integrity", "flips", module, BOB, str(port), str(len(FLIPS))],
        env=env,
        cwd=ROOT,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    if proc.stdout.readline() != "ready\n":
        raise AssertionError(proc.communicate(timeout=10))
    return proc


def _read(proc: subprocess.Popen[str]) -> tuple[list[str], int]:
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    doc = json.loads(out)
    return sorted(FLIPS[i][0] for i in doc["seqs"] if i < len(FLIPS)), doc["bad"]


def _kernel_nstat(ns: str) -> dict[str, int]:
    out = subprocess.run(
        ["ip", "netns", "exec", ns, "nstat", "-a", "-z", "-s", "-j"],
        capture_output=True,
        text=True,
        timeout=10,
    )
    assert out.returncode == 0, out.stderr
    counters: dict[str, int] = json.loads(out.stdout)["kernel"]
    return counters


@pytest.fixture
def kernel_pair() -> Iterator[tuple[str, str]]:
    """(sender's namespace, receiver's): netns.veth_netns()'s pair, the receiver found
    by the sender's eth0 link-netnsid."""
    from tests.netns import ip_in, veth_netns

    for ns in veth_netns("flips"):
        link = json.loads(ip_in(ns, "-j", "link", "show", "eth0").stdout)[0]
        ids = ip_in(ns, "netns", "list-id").stdout
        (peer,) = [
            line.split("iproute2 netns name: ")[1].rstrip(")")
            for line in ids.splitlines()
            if line.startswith(f"nsid {link['link_netnsid']} ")
        ]
        yield ns, peer


def _mac(ns: str) -> bytes:
    from tests.netns import ip_in

    return mac_from_str(json.loads(ip_in(ns, "-j", "link", "show", "eth0").stdout)[0]["address"])


def test_one_bit_flips_are_caught_and_counted_as_the_kernel_does(
    stack: dict[str, str], kernel_pair: tuple[str, str]
) -> None:
    port = 9403
    # The kernel: raw frames out of the sender's eth0, into the peer's socket.
    ns, peer = kernel_pair
    before = _kernel_nstat(peer)
    proc = _flips_receiver(["ip", "netns", "exec", peer, sys.executable], "socket", port, None)
    frames = _flipped(_mac(peer), _mac(ns), port)
    send = (
        "import socket, sys\n"
        "s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)\n"
        "s.bind(('eth0', 0))\n"
        "for line in sys.stdin:\n"
        "    s.send(bytes.fromhex(line))\n"
    )
    sent = subprocess.run(
        ["ip", "netns", "exec", ns, sys.executable, "-c", send],
        input="".join(f.hex() + "\n" for f in frames),
        capture_output=True,
        text=True,
        timeout=10,
    )
    assert sent.returncode == 0, sent.stderr
    kernel_read = _read(proc)
    after = _kernel_nstat(peer)
    kernel = {k: after.get(k, 0) - before.get(k, 0) for k in FLIP_COUNTERS}
    # bob: the same frames on his end of the wire. GRO off: the emulator's merges every
    # UDP flow, and a merged skb is one IpInReceives (README, "Where this differs").
    with Knobs() as knobs:
        knobs.features("bob", "eth0", {"generic-receive-offload": False})
        bob_before = nstat(stack, "bob")
        proc = _flips_receiver([sys.executable], "stackemu.socket", port, {**stack, "STACKEMU_HOST": "bob"})
        mac = {h: bytes(lk.address) for h in ("alice", "bob") for lk in _links(stack, h) if lk.name == "eth0"}
        with open_channel(service_addr(stack, "bob", "nic")) as channel:
            stub = nic_pb2_grpc.NicServiceStub(channel)
            stub.Wire(
                iter([nic_pb2.WireRequest(device="eth0", frames=_flipped(mac["bob"], mac["alice"], port))])
            )
        emulated_read = _read(proc)
        bob_after = nstat(stack, "bob")
    emulated = {k: bob_after.get(k, 0) - bob_before.get(k, 0) for k in FLIP_COUNTERS}
    # 13 frames: two never reach IP (PACKET_OTHERHOST, no handler for the EtherType);
    # the version flip is a header error, TTL and tot_len flips checksum errors; the
    # UDP length flip is a short packet, three more UDP checksum errors; four read.
    assert kernel_read == (["destination MAC, group bit", "nothing", "source MAC"], 0)
    assert kernel == {
        "IpInReceives": 11,
        "IpInHdrErrors": 3,
        "IpExtInCsumErrors": 2,
        "IpInDelivers": 8,
        "UdpInDatagrams": 4,
        "UdpInErrors": 4,
        "UdpInCsumErrors": 3,
        "UdpNoPorts": 0,
    }
    assert emulated_read == kernel_read
    assert emulated == kernel


def _links(env: dict[str, str], host: str) -> list[Any]:
    with open_channel(service_addr(env, host, "nic")) as channel:
        return list(nic_pb2_grpc.NicServiceStub(channel).ListLinks(nic_pb2.ListLinksRequest()).links)


if __name__ == "__main__":
    role, *args = sys.argv[1:]
    roles: dict[str, Callable[..., None]] = {"recv": _recv, "flips": _flips}
    roles[role](*args)
