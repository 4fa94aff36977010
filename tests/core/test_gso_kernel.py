"""Byte-exact checks of services.core.gso and services.nic.gro against this machine's
kernel, on a veth pair between two network namespaces made for the purpose.

GSO: a UDP_SEGMENT send (gso_size 1400, 5000 bytes) leaves a sender whose veth has
tx-udp-segmentation off, so validate_xmit_skb segments it in software; the frames are
captured with AF_PACKET on the peer and compared with skb_gso_segment of the skb
udp_send_skb built for the same send.

GRO: hand-made frames are sent with AF_PACKET into the sender's veth while the peer's
threaded NAPI cannot run (the sender is SCHED_FIFO on the NAPI thread's CPU), so one
poll sees them all; a UDP_GRO socket on the peer makes udp4_gro_receive merge, and the
peer's AF_PACKET capture (after GRO) is compared with Gro.receive/flush on the same
frames. Every GRO case keeps one 4-tuple: the kernel hashes flows into gro_hash buckets
with a per-boot key, which the model (hash 0) cannot reproduce across flows.
"""

from __future__ import annotations

import os
import shutil
import struct
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from services.core.checksum import csum_tcpudp_nofold, ip_fast_csum
from services.core.dropreason import DropStats
from services.core.gso import skb_gso_segment
from services.core.skbuff import (
    CHECKSUM_NONE,
    CHECKSUM_PARTIAL,
    HEADER_UNSET,
    SKB_GSO_UDP_L4,
    SkBuff,
)
from services.core.wire.ethernet import ETH_HLEN, ETH_P_IP
from services.core.wire.ipv4 import Ipv4Repr
from services.core.wire.udp import UdpRepr, udp_checksum_ok
from services.nic.gro import Gro

MAC_A = bytes.fromhex("020000000a01")
MAC_B = bytes.fromhex("020000000b02")
ADDR_A = "192.0.2.1"
ADDR_B = "192.0.2.2"
SADDR = 0xC0000201
DADDR = 0xC0000202
SPORT = 40000
DPORT = 40001
GSO_SIZE = 1400
GSO_LEN = 5000

CAPTURE = r"""
import select, socket, sys, time
ifname, count, gro_port, timeout = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
if gro_port:
    u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    u.setsockopt(17, 104, 1)  # SOL_UDP, UDP_GRO
    u.bind(("0.0.0.0", gro_port))
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(3))  # ETH_P_ALL
s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
s.bind((ifname, 0))
print("READY", flush=True)
deadline = time.monotonic() + timeout
sentinel = None
frames = []
while not count or len(frames) < count:
    end = deadline if sentinel is None else min(deadline, sentinel + 0.3)
    left = end - time.monotonic()
    if left <= 0 or not select.select([s], [], [], left)[0]:
        break
    data, addr = s.recvfrom(1 << 17)
    if addr[2] == socket.PACKET_OUTGOING or data[12:14] != b"\x08\x00":
        continue
    if data[23] == 253:  # the sentinel: IP protocol 253 (RFC 3692 experiments)
        sentinel = time.monotonic()
        continue
    frames.append(data.hex())
print("\n".join(frames), flush=True)
"""

SEND_GSO = r"""
import socket, sys
src, dst, sport, dport, gso_size, n = sys.argv[1], sys.argv[2], *map(int, sys.argv[3:7])
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(17, 103, gso_size)  # SOL_UDP, UDP_SEGMENT
s.bind((src, sport))
s.sendto(bytes((i * 7 + 3) & 0xFF for i in range(n)), (dst, dport))
"""

INJECT = r"""
import os, socket, sys, time
ifname, cpu = sys.argv[1], int(sys.argv[2])
frames = [bytes.fromhex(h) for h in sys.stdin.read().split()]
sentinel, frames = frames[-1], frames[:-1]
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
s.bind((ifname, 0))
os.sched_setaffinity(0, {cpu})
try:
    os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(10))
except PermissionError:
    sys.exit(3)
for f in frames:
    s.send(f)
time.sleep(0.05)  # the NAPI thread polls, and flushes, everything sent so far
s.send(sentinel)
"""


def run(*cmd: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run a command; a single argument is split at spaces."""
    args = cmd[0].split() if len(cmd) == 1 else list(cmd)
    return subprocess.run(args, capture_output=True, text=True, check=check, timeout=30)


def _why_not() -> str | None:
    if os.geteuid() != 0:
        return "needs root for network namespaces"
    if shutil.which("ip") is None or shutil.which("ethtool") is None:
        return "needs ip and ethtool"
    probe = f"gsoprobe{os.getpid()}"
    if run("ip", "netns", "add", probe, check=False).returncode:
        return "ip netns is unavailable"
    run("ip", "netns", "del", probe, check=False)
    return None


_REASON = _why_not()
pytestmark = pytest.mark.skipif(_REASON is not None, reason=_REASON or "")


@dataclass(frozen=True)
class Pair:
    ns_a: str
    ns_b: str
    dev_a: str
    dev_b: str

    def a(self, *cmd: str) -> subprocess.CompletedProcess[str]:
        return run("ip", "netns", "exec", self.ns_a, *cmd)

    def b(self, *cmd: str) -> subprocess.CompletedProcess[str]:
        return run("ip", "netns", "exec", self.ns_b, *cmd)


@pytest.fixture(scope="module")
def pair() -> Iterator[Pair]:
    tag = f"gk{os.getpid()}"
    p = Pair(f"{tag}a", f"{tag}b", f"{tag}a", f"{tag}b")
    try:
        run("ip", "netns", "add", p.ns_a)
        run("ip", "netns", "add", p.ns_b)
        # One queue each way, so that every frame meets the same NAPI instance.
        q = "numtxqueues 1 numrxqueues 1"
        run(f"ip link add {p.dev_a} {q} type veth peer name {p.dev_b} {q}")
        run(f"ip link set {p.dev_a} address {MAC_A.hex(':')} netns {p.ns_a}")
        run(f"ip link set {p.dev_b} address {MAC_B.hex(':')} netns {p.ns_b}")
        for ns, dev, addr, peer, mac in (
            (p.ns_a, p.dev_a, ADDR_A, ADDR_B, MAC_B),
            (p.ns_b, p.dev_b, ADDR_B, ADDR_A, MAC_A),
        ):
            run(f"ip netns exec {ns} sysctl -qw net.ipv6.conf.all.disable_ipv6=1")
            run(f"ip -n {ns} addr add {addr}/24 dev {dev}")
            run(f"ip -n {ns} link set {dev} up")
            run(f"ip -n {ns} link set lo up")
            # No ARP exchange in the captures.
            run(f"ip -n {ns} neigh replace {peer} lladdr {mac.hex(':')} dev {dev} nud permanent")
        yield p
    finally:
        run("ip", "netns", "del", p.ns_a, check=False)
        run("ip", "netns", "del", p.ns_b, check=False)


def capture(p: Pair, count: int, gro_port: int = 0, timeout: float = 5.0) -> subprocess.Popen[str]:
    args = [p.dev_b, str(count), str(gro_port), str(timeout)]
    proc = subprocess.Popen(
        ["ip", "netns", "exec", p.ns_b, sys.executable, "-c", CAPTURE, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    assert line == "READY\n", proc.stderr.read() if proc.stderr else line
    return proc


def captured(proc: subprocess.Popen[str]) -> list[bytes]:
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    return [bytes.fromhex(h) for h in out.split()]


# GSO.


def udp_send_skb(ident: int, hw_csum: bool) -> SkBuff:
    """The skb validate_xmit_skb got for the sender's UDP_SEGMENT send: udp_send_skb
    (gso_size, SKB_GSO_UDP_L4, udp4_hwcsum's pseudo-header sum; CHECKSUM_PARTIAL when
    the device offloads checksums, else CHECKSUM_NONE), __ip_make_skb (no DF: 5028
    bytes exceed the MTU; TTL 64; the ID the kernel picked) and the Ethernet header of
    neigh_output; data at the Ethernet header."""
    payload = bytes((i * 7 + 3) & 0xFF for i in range(GSO_LEN))
    ulen = 8 + GSO_LEN
    head = bytearray(64 + ETH_HLEN + 20 + ulen)
    head[64:78] = MAC_B + MAC_A + b"\x08\x00"
    Ipv4Repr(src=SADDR, dst=DADDR, protocol=17, payload_len=ulen, ttl=64, ident=ident).emit(head, 78)
    struct.pack_into("!HHHH", head, 98, SPORT, DPORT, ulen, csum_tcpudp_nofold(SADDR, DADDR, ulen, 17))
    head[106:] = payload
    skb = SkBuff(head)
    skb.data = skb.mac_header = 64
    skb.tail = len(head)
    skb.len = len(head) - 64
    skb.network_header = 78
    skb.transport_header = skb.csum_start = 98
    skb.csum_offset = 6
    skb.protocol = ETH_P_IP
    skb.ip_summed = CHECKSUM_PARTIAL if hw_csum else CHECKSUM_NONE
    skb.gso_size = GSO_SIZE
    skb.gso_segs = 4
    skb.gso_type = SKB_GSO_UDP_L4
    return skb


@pytest.mark.parametrize("hw_csum", [True, False], ids=["tx-csum-on", "tx-csum-off"])
def test_gso_segments_match_the_kernel(pair: Pair, hw_csum: bool) -> None:
    if hw_csum:
        pair.a("ethtool", "-K", pair.dev_a, "tx", "on", "tx-udp-segmentation", "off")
    else:
        # Without checksum offload the kernel also turns UDP segmentation off.
        pair.a("ethtool", "-K", pair.dev_a, "tx", "off")
    proc = capture(pair, 4)
    pair.a(
        sys.executable, "-c", SEND_GSO, ADDR_A, ADDR_B, str(SPORT), str(DPORT), str(GSO_SIZE), str(GSO_LEN)
    )
    kernel = captured(proc)

    # What the kernel did (6.18): four frames of 1400, 1400, 1400 and 800 payload bytes;
    # IP IDs consecutive from the one __ip_select_ident gave the send; DF clear, TTL
    # 64; every header checksum recomputed. With tx-checksumming on each segment stays
    # CHECKSUM_PARTIAL and veth passes it on as is, so the UDP field on the wire holds
    # the segment's pseudo-header sum; with it off, the full checksum.
    assert [len(f) for f in kernel] == [1442, 1442, 1442, 842]
    first_id = struct.unpack_from("!H", kernel[0], 18)[0]
    for i, f in enumerate(kernel):
        assert struct.unpack_from("!HH", f, 18) == ((first_id + i) & 0xFFFF, 0)
        assert f[22] == 64 and ip_fast_csum(f[14:34]) == 0
        udp = f[34:]
        if hw_csum:
            assert struct.unpack_from("!H", udp, 6)[0] == csum_tcpudp_nofold(SADDR, DADDR, len(udp), 17)
        else:
            assert udp_checksum_ok(SADDR, DADDR, udp)

    segs = skb_gso_segment(udp_send_skb(first_id, hw_csum), hw_csum=hw_csum)
    assert [s.payload() for s in segs] == kernel


# GRO.


@dataclass
class GroRx:
    pair: Pair
    cpu: int


@pytest.fixture
def gro_rx(pair: Pair) -> Iterator[GroRx]:
    p = pair
    # veth NAPI (and its GRO) is used only for skbs from a peer without TSO.
    p.a("ethtool", "-K", p.dev_a, "tso", "off")
    p.b("ethtool", "-K", p.dev_b, "gro", "on")
    p.b("sh", "-c", f"echo 1 > /sys/class/net/{p.dev_b}/threaded")
    cpu = min(os.sched_getaffinity(0))
    threads = [
        int(pid) for pid in os.listdir("/proc") if pid.isdigit() and _comm(pid).startswith(f"napi/{p.dev_b}-")
    ]
    try:
        if not threads:
            pytest.skip("no threaded NAPI kthread for the veth")
        for pid in threads:
            os.sched_setaffinity(pid, {cpu})
        yield GroRx(p, cpu)
    finally:
        p.b("sh", "-c", f"echo 0 > /sys/class/net/{p.dev_b}/threaded")
        p.b("ethtool", "-K", p.dev_b, "gro", "off")


def _comm(pid: str) -> str:
    try:
        with open(f"/proc/{pid}/comm") as f:
            return f.read().strip()
    except OSError:
        return ""


def inj_frame(
    ident: int,
    payload_len: int,
    *,
    df: bool = True,
    ttl: int = 64,
    tos: int = 0,
    csum: str = "good",
    pad: int = 0,
    options: bytes = b"",
    frag: int = 0,
    bad_ip_csum: bool = False,
    seed: int = 0,
) -> bytes:
    payload = bytes((i + seed * 13) & 0xFF for i in range(payload_len))
    udp = bytearray(8 + payload_len)
    udp[8:] = payload
    UdpRepr(SPORT, DPORT).emit(udp, 0, payload_len, SADDR, DADDR)
    if csum == "zero":
        udp[6:8] = b"\x00\x00"
    elif csum == "bad":
        udp[6:8] = (int.from_bytes(udp[6:8], "big") ^ 0x0101).to_bytes(2, "big")
    r = Ipv4Repr(
        src=SADDR,
        dst=DADDR,
        protocol=17,
        payload_len=len(udp),
        ttl=ttl,
        tos=tos,
        ident=ident,
        options=options,
    )
    iph = bytearray(r.header_len)
    r.emit(iph)
    iph[6:8] = ((0x4000 if df else 0) | frag).to_bytes(2, "big")
    iph[10:12] = b"\x00\x00"
    iph[10:12] = (ip_fast_csum(iph) ^ (0x0100 if bad_ip_csum else 0)).to_bytes(2, "big")
    return MAC_B + MAC_A + b"\x08\x00" + bytes(iph) + bytes(udp) + bytes(pad)


def _sentinel() -> bytes:
    r = Ipv4Repr(src=SADDR, dst=DADDR, protocol=253, payload_len=0, ident=1)
    iph = bytearray(20)
    r.emit(iph)
    return MAC_B + MAC_A + b"\x08\x00" + bytes(iph)


def driver_skb(frame: bytes) -> SkBuff:
    """What a driver hands napi_gro_receive: the frame linear, eth_type_trans done."""
    skb = SkBuff(bytearray(64) + bytearray(frame))
    skb.data = skb.mac_header = 64
    skb.tail = 64 + len(frame)
    skb.len = len(frame)
    skb.pull(ETH_HLEN)
    skb.protocol = ETH_P_IP
    skb.dev_ifindex = skb.skb_iif = 2
    return skb


def model(frames: list[bytes]) -> list[bytes]:
    gro = Gro(DropStats())
    out: list[SkBuff] = []
    for f in frames:
        out += gro.receive(driver_skb(f))
    out += gro.flush()
    return [bytes(s.head[s.mac_header : s.data]) + s.payload() for s in out if s.mac_header != HEADER_UNSET]


def kernel_gro(rx: GroRx, frames: list[bytes]) -> list[bytes]:
    p = rx.pair
    proc = capture(p, 0, DPORT)
    sender = subprocess.run(
        ["ip", "netns", "exec", p.ns_a, sys.executable, "-c", INJECT, p.dev_a, str(rx.cpu)],
        input="\n".join(f.hex() for f in [*frames, _sentinel()]),
        capture_output=True,
        text=True,
        timeout=30,
    )
    if sender.returncode == 3:
        proc.kill()
        proc.communicate()
        pytest.skip("SCHED_FIFO is not permitted here")
    assert sender.returncode == 0, sender.stderr
    return captured(proc)


GRO_CASES: dict[str, list[bytes]] = {
    # Consecutive IDs with DF: one skb of three segments.
    "incrementing": [inj_frame(100 + i, 100) for i in range(3)],
    # 6.18's inet_gro_flush: a second segment with the first one's ID makes the flow
    # fixed-ID, with or without DF.
    "fixed-id-no-df": [inj_frame(100, 100, df=False) for _ in range(3)],
    "fixed-id-then-step": [inj_frame(7, 100), inj_frame(7, 100), inj_frame(8, 100)],
    "id-gap": [inj_frame(7, 100), inj_frame(8, 100), inj_frame(8, 100)],
    "ttl": [inj_frame(5, 100), inj_frame(6, 100, ttl=63), inj_frame(7, 100)],
    "tos": [inj_frame(5, 100), inj_frame(6, 100, tos=4), inj_frame(7, 100, tos=4)],
    "df-flip": [inj_frame(5, 100), inj_frame(6, 100, df=False), inj_frame(7, 100)],
    # A bad UDP checksum is passed up alone; the held skb stays and merges on.
    "bad-udp-csum": [inj_frame(0, 100), inj_frame(0, 100, csum="bad"), inj_frame(0, 100)],
    "zero-udp-csum": [inj_frame(0, 100), inj_frame(0, 100, csum="zero"), inj_frame(0, 100)],
    "bad-ip-csum": [inj_frame(0, 100), inj_frame(0, 100, bad_ip_csum=True), inj_frame(0, 100)],
    "ip-options": [inj_frame(0, 100), inj_frame(0, 100, options=bytes([1, 1, 1, 0])), inj_frame(0, 100)],
    "fragment": [inj_frame(0, 100), inj_frame(0, 100, frag=0x2000), inj_frame(0, 100)],
    # Padding past tot_len: not merged, not flushing.
    "padded": [inj_frame(0, 100), inj_frame(0, 100, pad=6), inj_frame(0, 100)],
    # The reserved bit: flushes the held skb, passed up itself.
    "reserved-bit": [inj_frame(0, 100), inj_frame(0, 100, frag=0x8000), inj_frame(0, 100)],
    # A bigger datagram completes the held skb and starts anew; a shorter one is merged
    # as the last.
    "bigger": [inj_frame(5, 100), inj_frame(6, 120), inj_frame(7, 120)],
    "shorter": [inj_frame(5, 100), inj_frame(6, 80), inj_frame(7, 100)],
    "count-limit": [inj_frame(i, 100) for i in range(70)],
    "size-limit": [inj_frame(i, 1400) for i in range(50)],
}


@pytest.mark.parametrize("case", list(GRO_CASES))
def test_gro_matches_the_kernel(gro_rx: GroRx, case: str) -> None:
    frames = GRO_CASES[case]
    assert kernel_gro(gro_rx, frames) == model(frames)
