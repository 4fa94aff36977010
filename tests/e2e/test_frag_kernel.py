"""services.ip.fragment and services.ip.defrag against this machine's kernel, in two
network namespaces made for the purpose and joined by a veth pair (MTU 1500).

Fragmentation: a UDP socket in namespace A sends 4000 bytes with IP_PMTUDISC_DONT
(and, in one case, IP_OPTIONS); an AF_PACKET socket in B captures the fragments;
ip_fragment of the datagram the emulator's transmit path builds for the same send
(the kernel's IP ID taken over) must give the same bytes.

Reassembly: crafted fragment sequences go out of A with AF_PACKET; a UDP socket in B
receives what the kernel reassembles, and B's /proc/net/snmp and /proc/net/netstat
give the Ip Reasm* counters, IpExt ReasmOverlaps and Icmp OutTimeExcds. IpDefrag fed
the same packets must count the same, return the same datagrams and, on expiry, hand
back a first fragment exactly where the kernel sent a time-exceeded. B's
ipfrag_time is 1 s so that a scenario that leaves queues behind waits for them.

The kernel was also watched with `perf record -e skb:kfree_skb -e skb:consume_skb`
while these ran (not part of the test, the tracepoint is global): duplicates and
contained fragments are DUP_FRAG at ip_defrag (ip_frag_queue inlined); the fragment
that overlaps or contradicts the end is NOT_SPECIFIED there, and the queued ones go
through inet_frag_rbtree_purge as consume_skb; timeouts are FRAG_REASM_TIMEOUT at
ip_expire (the first fragment, after its ICMP) and at inet_frag_rbtree_purge (the
rest); an oversized or ECN-mixed datagram's fragments are all consumed.
"""

from __future__ import annotations

import json
import os
import shutil
import struct
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from services.core.dropreason import DropStats
from services.core.ipcb import InetSkbParm, set_ipcb
from services.core.skbuff import NET_SKB_PAD, SkBuff, alloc_skb
from services.core.snmp import SnmpMib
from services.core.sysctl import Sysctl
from services.ip.defrag import IpDefrag
from services.ip.fragment import ip_fragment

MAC_A = bytes.fromhex("020000c70a01")
MAC_B = bytes.fromhex("020000c70b02")
ADDR_A, ADDR_B = "10.199.0.1", "10.199.0.2"
SRC, DST = 0x0AC70001, 0x0AC70002
SPORT, DPORT = 40000, 9000
FRAG_TIME = 1  # net.ipv4.ipfrag_time in B, seconds
SEC = 1_000_000_000

# One agent per namespace, driven by a JSON line per request on stdin. It holds the
# sockets so that a scenario costs no process start-up.
AGENT = r"""
import json, os, select, socket, sys, time
ifname, port = sys.argv[1], int(sys.argv[2])
udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
udp.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
udp.bind(("0.0.0.0", port))
udp.setblocking(False)
tx = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
tx.bind((ifname, 0))
cap = None

def proc(name):
    lines = open("/proc/net/" + name).read().splitlines()
    out = {}
    for head, values in zip(lines[::2], lines[1::2]):
        group = head.split(":")[0]
        for k, v in zip(head.split()[1:], values.split()[1:]):
            out[group + k] = int(v)
    return out

def datagrams():
    got = []
    while select.select([udp], [], [], 0)[0]:
        got.append(udp.recv(70000).hex())
    return got

print("ready", flush=True)
for line in sys.stdin:
    req = json.loads(line)
    op = req["op"]
    res = None
    if op == "counters":
        res = {**proc("snmp"), **proc("netstat")}
    elif op == "inject":
        for frame in req["frames"]:
            tx.send(bytes.fromhex(frame))
    elif op == "recv":
        time.sleep(req["wait"])
        res = datagrams()
    elif op == "sysctl":
        with open("/proc/sys/net/ipv4/" + req["name"], "w") as f:
            f.write(str(req["value"]))
    elif op == "capture":
        cap = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x0800))
        cap.bind((ifname, 0))
    elif op == "captured":
        res, end = [], time.monotonic() + 5
        while len(res) < req["count"] and select.select([cap], [], [], max(0, end - time.monotonic()))[0]:
            frame, addr = cap.recvfrom(70000)
            if addr[2] == socket.PACKET_HOST and frame[23] == 17:
                res.append(frame[14:].hex())
        cap.close()
    elif op == "send":
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.setsockopt(socket.IPPROTO_IP, 10, 0)  # IP_MTU_DISCOVER: IP_PMTUDISC_DONT
        if req["options"]:
            s.setsockopt(socket.IPPROTO_IP, socket.IP_OPTIONS, bytes.fromhex(req["options"]))
        s.bind((req["src"], req["sport"]))
        s.sendto(bytes.fromhex(req["data"]), (req["dst"], req["dport"]))
        s.close()
    print(json.dumps(res), flush=True)
"""


def _run(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, capture_output=True, text=True, check=check, timeout=30)


def _why_not() -> str | None:
    if os.geteuid() != 0:
        return "needs root for network namespaces"
    if shutil.which("ip") is None:
        return "needs iproute2's ip"
    probe = f"fkprobe{os.getpid()}"
    if _run("ip", "netns", "add", probe, check=False).returncode:
        return "ip netns is unavailable"
    _run("ip", "netns", "del", probe, check=False)
    return None


_REASON = _why_not()
pytestmark = pytest.mark.skipif(_REASON is not None, reason=_REASON or "")


class Agent:
    def __init__(self, ns: str, ifname: str) -> None:
        self.proc = subprocess.Popen(
            ["ip", "netns", "exec", ns, sys.executable, "-c", AGENT, ifname, str(DPORT)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        assert line == "ready\n", self.proc.stderr.read() if self.proc.stderr else line

    def __call__(self, op: str, **args: Any) -> Any:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(json.dumps({"op": op, **args}) + "\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        assert line, self.proc.stderr.read() if self.proc.stderr else "agent died"
        return json.loads(line)

    def close(self) -> None:
        if self.proc.stdin is not None:
            self.proc.stdin.close()
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


@dataclass
class Pair:
    ns_a: str
    ns_b: str
    dev_a: str
    dev_b: str
    a: Agent | None = None
    b: Agent | None = None

    def mtu(self, mtu: int) -> None:
        _run("ip", "-n", self.ns_a, "link", "set", self.dev_a, "mtu", str(mtu))
        _run("ip", "-n", self.ns_b, "link", "set", self.dev_b, "mtu", str(mtu))


@pytest.fixture(scope="module")
def pair() -> Iterator[Pair]:
    tag = f"fk{os.getpid()}"
    p = Pair(f"{tag}a", f"{tag}b", f"{tag}a", f"{tag}b")
    try:
        _run("ip", "netns", "add", p.ns_a)
        _run("ip", "netns", "add", p.ns_b)
        _run("ip", "link", "add", p.dev_a, "type", "veth", "peer", "name", p.dev_b)
        _run("ip", "link", "set", p.dev_a, "address", MAC_A.hex(":"), "netns", p.ns_a)
        _run("ip", "link", "set", p.dev_b, "address", MAC_B.hex(":"), "netns", p.ns_b)
        for ns, dev, addr, peer, mac in (
            (p.ns_a, p.dev_a, ADDR_A, ADDR_B, MAC_B),
            (p.ns_b, p.dev_b, ADDR_B, ADDR_A, MAC_A),
        ):
            _run("ip", "netns", "exec", ns, "sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1")
            _run("ip", "-n", ns, "addr", "add", f"{addr}/24", "dev", dev)
            _run("ip", "-n", ns, "link", "set", dev, "mtu", "1500", "up")
            _run("ip", "-n", ns, "link", "set", "lo", "up")
            # No ARP in the way of the first frames or of B's ICMP errors.
            neigh = f"ip -n {ns} neigh replace {peer} lladdr {mac.hex(':')} dev {dev} nud permanent"
            _run(*neigh.split())
        _run("ip", "netns", "exec", p.ns_b, "sysctl", "-qw", f"net.ipv4.ipfrag_time={FRAG_TIME}")
        p.a = Agent(p.ns_a, p.dev_a)
        p.b = Agent(p.ns_b, p.dev_b)
        yield p
    finally:
        for agent in (p.a, p.b):
            if agent is not None:
                agent.close()
        _run("ip", "netns", "del", p.ns_a, check=False)
        _run("ip", "netns", "del", p.ns_b, check=False)


def rfc1071(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    s: int = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF


def udp(payload: bytes) -> bytes:
    """A UDP header for SPORT → DPORT with its checksum, then the payload."""
    size = 8 + len(payload)
    pseudo = struct.pack("!IIBBH", SRC, DST, 0, 17, size)
    seg = struct.pack("!HHHH", SPORT, DPORT, size, 0) + payload
    return seg[:6] + struct.pack("!H", rfc1071(pseudo + seg) or 0xFFFF) + seg[8:]


def ip_header(payload_len: int, frag_off: int, ident: int, *, tos: int = 0, options: bytes = b"") -> bytes:
    hlen = 20 + len(options)
    h = bytearray(
        struct.pack(
            "!BBHHHBBHII", 0x40 | hlen // 4, tos, hlen + payload_len, ident, frag_off, 64, 17, 0, SRC, DST
        )
    )
    h += options
    h[10:12] = struct.pack("!H", rfc1071(bytes(h)))
    return bytes(h)


# Fragmentation.


@pytest.mark.parametrize(
    ("mtu", "options", "sizes"),
    [
        (1500, "", [1500, 1500, 1068]),
        (576, "", [572] * 7 + [164]),
        # Record route with room for one address (not copied) and a stream ID
        # (copied); ip_options_get pads them with END to 12 bytes.
        (1500, "0707040000000088040102", [1496, 1496, 1112]),
    ],
    ids=["mtu1500", "mtu576", "options"],
)
def test_fragments_match_the_kernel(pair: Pair, mtu: int, options: str, sizes: list[int]) -> None:
    assert pair.a is not None and pair.b is not None
    payload = bytes(i % 251 for i in range(4000))
    pair.mtu(mtu)
    try:
        pair.b("capture")
        pair.a("send", src=ADDR_A, sport=SPORT, dst=ADDR_B, dport=DPORT, data=payload.hex(), options=options)
        kernel = [bytes.fromhex(h) for h in pair.b("captured", count=len(sizes))]
        pair.b("recv", wait=0)
    finally:
        pair.mtu(1500)

    # What the kernel did (6.18): (mtu - hlen) & ~7 bytes of payload per fragment
    # (1480 at 1500, 552 at 576, 1464 with 12 bytes of options), MF on all but the
    # last, DF clear, TTL 64, TOS 0. With options, the first fragment carries record
    # route filled with 10.199.0.1 (pointer 8) and the stream ID; the later ones
    # seven NOOPs where record route was, then the stream ID and the END pad.
    assert [len(f) for f in kernel] == sizes
    ident = struct.unpack_from("!H", kernel[0], 4)[0]
    opts = kernel[0][20 : (kernel[0][0] & 0x0F) * 4]
    if options:
        assert opts == bytes([7, 7, 8, 10, 199, 0, 1, 0x88, 4, 1, 2, 0])
        assert kernel[1][20:32] == bytes([1] * 7) + bytes([0x88, 4, 1, 2, 0])

    # The datagram as ip_send_skb builds it: the kernel's ID, DF clear, options
    # with record route filled (ip_options_build).
    l4 = udp(payload)
    packet = ip_header(len(l4), 0, ident, options=opts) + l4
    skb = alloc_skb(len(packet), 64)
    skb.put_data(packet)
    skb.reset_network_header()
    skb.sk = 1
    mib = SnmpMib()
    frags = ip_fragment(skb, mtu, mib, DropStats())
    assert [f.payload() for f in frags] == kernel
    assert (mib.ip.get("FragOKs"), mib.ip.get("FragCreates"), mib.ip.get("FragFails")) == (1, len(sizes), 0)


# Reassembly.

PAYLOAD = bytes((i * 7 + 3) & 0xFF for i in range(3992))
L4 = udp(PAYLOAD)  # 4000 bytes after the IP header
SMALL = udp(bytes(range(40)))  # 48 bytes: three fragments of 16
_next_ident = [0x4000]


def new_ident() -> int:
    _next_ident[0] += 1
    return _next_ident[0]


def frag(
    ident: int, off: int, length: int, mf: bool, *, l4: bytes = L4, tos: int = 0, df: bool = False
) -> bytes:
    chunk = l4[off : off + length]
    fo = off >> 3 | (0x2000 if mf else 0) | (0x4000 if df else 0)
    return ip_header(len(chunk), fo, ident, tos=tos) + chunk


def three(ident: int, *, df: bool = False) -> list[bytes]:
    """The kernel's fragments of the 4020-byte datagram at MTU 1500."""
    return [
        frag(ident, 0, 1480, True, df=df),
        frag(ident, 1480, 1480, True, df=df),
        frag(ident, 2960, 1040, False, df=df),
    ]


def rx(packet: bytes) -> SkBuff:
    skb = alloc_skb(14 + len(packet), NET_SKB_PAD)
    skb.put_data(MAC_B + MAC_A + b"\x08\x00" + packet)
    skb.reset_mac_header()
    skb.pull(14)
    skb.reset_network_header()
    skb.protocol = 0x0800
    skb.dev_ifindex = skb.skb_iif = 2
    set_ipcb(skb.cb, InetSkbParm(iif=2))
    return skb


KEYS = (
    "IpReasmReqds",
    "IpReasmOKs",
    "IpReasmFails",
    "IpReasmTimeout",
    "IpExtReasmOverlaps",
    "IcmpOutTimeExcds",
)


def model(packets: list[bytes], **sysctls: int) -> tuple[dict[str, int], list[bytes], bool]:
    """IpDefrag on the packets, then past every queue's expiry: its counters, the UDP
    payloads it delivers, and whether queues were left to time out."""
    sysctl = Sysctl({"net.ipv4.ipfrag_time": FRAG_TIME, **{f"net.ipv4.{k}": v for k, v in sysctls.items()}})
    mib = SnmpMib()
    now = [1000 * SEC]
    defrag = IpDefrag(sysctl, mib, DropStats(), lambda: now[0])
    delivered = []
    for p in packets:
        out = defrag.ip_defrag(rx(p))
        if out is not None:
            delivered.append(out.payload()[(out.payload()[0] & 0x0F) * 4 + 8 :])
    left = defrag.inuse > 0
    icmp = len(defrag.expire(now[0] + FRAG_TIME * SEC))
    counts = {
        "IpReasmReqds": mib.ip.get("ReasmReqds"),
        "IpReasmOKs": mib.ip.get("ReasmOKs"),
        "IpReasmFails": mib.ip.get("ReasmFails"),
        "IpReasmTimeout": mib.ip.get("ReasmTimeout"),
        "IpExtReasmOverlaps": mib.ipext.get("ReasmOverlaps"),
        "IcmpOutTimeExcds": icmp,
    }
    return {k: v for k, v in counts.items() if v}, delivered, left


def kernel(pair: Pair, packets: list[bytes], wait_timeouts: bool) -> tuple[dict[str, int], list[bytes]]:
    """The same packets into B: counter deltas and the UDP payloads delivered."""
    assert pair.a is not None and pair.b is not None
    before = pair.b("counters")
    frames = [(MAC_B + MAC_A + b"\x08\x00" + p).hex() for p in packets]
    pair.a("inject", frames=frames)
    got = pair.b("recv", wait=FRAG_TIME + 0.4 if wait_timeouts else 0.05)
    after = pair.b("counters")
    deltas = {k: after[k] - before[k] for k in KEYS}
    return {k: v for k, v in deltas.items() if v}, [bytes.fromhex(h) for h in got]


def small(ident: int, off: int, length: int, mf: bool) -> bytes:
    return frag(ident, off, length, mf, l4=SMALL)


# What the kernel (6.18) did with each, B's counter deltas after its queues' expiry
# (Reqds/OKs/Fails/Timeout of Ip, Overlaps of IpExt, OutTimeExcds of Icmp) and the
# UDP payloads delivered; IpDefrag does the same:
#   in-order, reverse, contained         3-4/1/-/-/-/-, 3992 bytes
#   duplicates (a a b c b)               5/1/1/1/-/-: the late b starts a queue
#   span-in-order                        4/1/-/-/-/-: the spanning one a duplicate
#   span-reverse                         4/-/2/1/1/-: an overlap; the last fragment's
#                                        new queue times out
#   overlap-back                         4/-/2/1/1/-
#   overlap-front                        4/-/2/1/1/1: a and c make a new queue that
#                                        has fragment 0, so its timeout sends ICMP
#   timeout-with-first / -without-first  2/-/1/1/-/1 and 2/-/1/1/-/-
#   duplicate-after-completion           4/1/1/1/-/1, 3992 bytes
#   zero-length, shorter-than-8,
#   last-contradicts-end, beyond-the-end 4/-/2/1/-/-: the queue killed, the rest of
#                                        the fragments in a new one that times out
#   odd-length-trimmed, ecn-ect0-and-ce,
#   all-df                               3/1/-/-/-/-, 3992 bytes
#   ecn-not-ect-and-ce                   3/-/1/-/-/-
#   65535-bytes                          45/1/-/-/-/-, 65507 bytes
#   oversized (66620 bytes)              45/-/1/-/-/-
#   max-dist-63                          66/1/63/63/-/-, 3992 bytes
#   max-dist-64                          67/-/66/65/-/-: too far (fragment 0 thrown
#                                        away), the rest of it times out


def _scenarios() -> dict[str, list[bytes]]:
    n = new_ident
    s: dict[str, list[bytes]] = {}
    a, b, c = three(i := n())
    s["in-order"] = [a, b, c]
    a, b, c = three(i := n())
    s["reverse"] = [c, b, a]
    a, b, c = three(i := n())
    s["duplicates"] = [a, a, b, c, b]
    a, b, c = three(i := n())
    s["contained"] = [a, frag(i, 8, 16, True), b, c]
    i = n()
    # Two adjacent fragments, then one covering both: a duplicate when they came in
    # order (one run), an overlap when not (two runs).
    s["span-in-order"] = [
        small(i, 0, 16, True),
        small(i, 16, 16, True),
        small(i, 0, 32, True),
        small(i, 32, 16, False),
    ]
    i = n()
    s["span-reverse"] = [
        small(i, 16, 16, True),
        small(i, 0, 16, True),
        small(i, 0, 32, True),
        small(i, 32, 16, False),
    ]
    a, b, c = three(i := n())
    s["overlap-back"] = [a, frag(i, 1472, 1480, True), b, c]
    a, b, c = three(i := n())
    s["overlap-front"] = [b, frag(i, 8, 1480, True), a, c]
    a, b, c = three(i := n())
    s["timeout-with-first"] = [a, b]
    a, b, c = three(i := n())
    s["timeout-without-first"] = [b, c]
    a, b, c = three(i := n())
    s["duplicate-after-completion"] = [a, b, c, a]
    a, b, c = three(i := n())
    s["zero-length"] = [a, frag(i, 1480, 0, True), b, c]
    a, b, c = three(i := n())
    s["shorter-than-8"] = [a, frag(i, 1480, 4, True), b, c]
    i = n()
    # 1475 bytes with MF: only the first 1472 count, the rest is trimmed.
    s["odd-length-trimmed"] = [frag(i, 0, 1475, True), frag(i, 1472, 1480, True), frag(i, 2952, 1048, False)]
    a, b, c = three(i := n())
    s["last-contradicts-end"] = [c, a, frag(i, 2952, 1000, False), b]
    a, b, c = three(i := n())
    s["beyond-the-end"] = [c, a, frag(i, 4000, 8, True, l4=L4 + bytes(8)), b]
    i = n()
    s["ecn-not-ect-and-ce"] = [
        frag(i, 0, 1480, True),
        frag(i, 1480, 1480, True, tos=3),
        frag(i, 2960, 1040, False),
    ]
    i = n()
    s["ecn-ect0-and-ce"] = [
        frag(i, 0, 1480, True, tos=2),
        frag(i, 1480, 1480, True, tos=3),
        frag(i, 2960, 1040, False, tos=2),
    ]
    a, b, c = three(i := n(), df=True)
    s["all-df"] = [b, c, a]
    big = udp(bytes(i % 256 for i in range(65507)))
    i = n()
    s["65535-bytes"] = [frag(i, off, 1480, off + 1480 < len(big), l4=big) for off in range(0, len(big), 1480)]
    # 45 fragments, the last at offset 65120 (8140 units; the field holds 8191 at
    # most): 66600 bytes after the header, 66620 in all.
    huge = (L4 * 17)[:66600]
    i = n()
    s["oversized"] = [
        frag(i, off, 1480, off + 1480 < len(huge), l4=huge) for off in range(0, len(huge), 1480)
    ]
    for between in (63, 64):
        # Fragments of other datagrams from the same source between two of one, none
        # of them a first fragment (no ICMP from their timeouts).
        a, b, c = three(i := n())
        others = [frag(n(), 8, 8, True) for _ in range(between)]
        s[f"max-dist-{between}"] = [a, *others, b, c]
    return s


SCENARIOS = _scenarios()


@pytest.mark.parametrize("name", list(SCENARIOS))
def test_reassembly_matches_the_kernel(pair: Pair, name: str) -> None:
    packets = SCENARIOS[name]
    want_counts, want_data, left = model(packets)
    got_counts, got_data = kernel(pair, packets, left)
    assert got_counts == want_counts
    assert got_data == want_data


def test_above_high_thresh_existing_queues_are_refused_too(pair: Pair) -> None:
    # What the kernel did with ipfrag_high_thresh 1: the first fragment made a queue
    # (inet_frag_find() compares before charging), every later one was refused
    # (ReasmFails) though its queue existed, and the queue timed out with its ICMP.
    assert pair.b is not None
    packets = three(new_ident())
    want_counts, want_data, left = model(packets, ipfrag_low_thresh=0, ipfrag_high_thresh=1)
    assert want_counts == {
        "IpReasmReqds": 3,
        "IpReasmFails": 3,
        "IpReasmTimeout": 1,
        "IcmpOutTimeExcds": 1,
    }
    pair.b("sysctl", name="ipfrag_low_thresh", value=0)
    pair.b("sysctl", name="ipfrag_high_thresh", value=1)
    try:
        got_counts, got_data = kernel(pair, packets, left)
    finally:
        pair.b("sysctl", name="ipfrag_high_thresh", value=4 << 20)
        pair.b("sysctl", name="ipfrag_low_thresh", value=3 << 20)
    assert (got_counts, got_data) == (want_counts, want_data)


def test_every_scenario_is_timed(pair: Pair) -> None:
    """Queues left by a scenario must have timed out before the next one counts: the
    model's `left` drives the wait, so check the kernel holds none now."""
    assert pair.b is not None
    before = pair.b("counters")
    pair.b("recv", wait=FRAG_TIME + 0.3)
    after = pair.b("counters")
    assert {k: after[k] - before[k] for k in KEYS if after[k] != before[k]} == {}
