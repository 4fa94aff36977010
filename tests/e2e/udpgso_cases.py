"""The IPv4 half of the kernel selftest tools/testing/selftests/net/udpgso.c, ported to
Python so that one script runs it on this machine's kernel and on an emulated host. The
version ported is linux-netdev/testing's at 8a3330596390 (with udpgso.sh at
0344f2a75576): UDP_MAX_SEGMENTS 128 and the "datalen <= MSS < gso_len" case, which the
older torvalds/linux copy at 1382e3b6a350 lacks.

udpgso.sh runs it for IPv4 as `udpgso -4 -C` (cmsg), `-4 -C -s` (setsockopt), `-4 -c`
(connected: the test_route_mtu setup, the MTU on the local route) and `-4 -C -m`
(MSG_MORE), each in a fresh namespace whose lo has MTU 1500 (test_dev_mtu) except the
connected run. Every case: set UDP_SEGMENT (setsockopt, or a cmsg on every sendmsg),
send tlen bytes with IP_PMTUDISC_DO on the sender, then receive r_num_mss datagrams of
mss (gso_len, or CONST_MSS_V4 without GSO) and one of r_len_last, and nothing more; a
tfail case must fail with EMSGSIZE, ENOMEM or EINVAL (__send_one()).

Run as a script (python -m tests.e2e.udpgso_cases):
  kernel ADDR PORT VARIANT...   both sides in this process (the standard socket module),
                                one JSON list of records out;
  send ADDR PORT VARIANT...     the sender on an emulated host: a JSON record per case
                                on stdout, then waits for a line on stdin;
  recv ADDR PORT                the receiver: reads a sender's record per line on stdin,
                                prints it back with what arrived; "end" checks that a
                                last datagram from another socket is all that is left.
The receiver of a variant with gro binds PORT + 1 and sets UDP_GRO (not in udpgso.c).
"""

from __future__ import annotations

import json
import struct
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

# include/uapi/linux/if_ether.h, include/uapi/linux/udp.h, include/linux/udp.h (6.18)
ETH_MAX_MTU = 0xFFFF
UDP_SEGMENT = 103
UDP_GRO = 104
UDP_MAX_SEGMENTS = 1 << 7
SOL_IP, SOL_UDP = 0, 17
IP_MTU_DISCOVER, IP_MTU, IP_PMTUDISC_DO = 10, 14, 2
MSG_DONTWAIT, MSG_MORE = 0x40, 0x8000
EINVAL, EMSGSIZE = 22, 90  # include/uapi/asm-generic/errno-base.h, errno.h

CONST_MTU_TEST = 1500
CONST_HDRLEN_V4 = 20 + 8  # sizeof(struct iphdr) + sizeof(struct udphdr)
CONST_MSS_V4 = CONST_MTU_TEST - CONST_HDRLEN_V4  # 1472
CONST_MAX_SEGS_V4 = ETH_MAX_MTU // CONST_MSS_V4  # 44

# run_test()'s SO_RCVTIMEO is 100 ms; the emulated receiver waits longer for a slow host.
KERNEL_RCVTIMEO = 1.0
EMULATED_RCVTIMEO = 10.0


@dataclass(frozen=True, slots=True)
class Case:
    """struct testcase, and what 6.18 answers where udpgso.c accepts several errnos."""

    what: str
    tlen: int
    gso_len: int = 0
    tfail: bool = False
    r_num_mss: int = 0
    r_len_last: int = 0
    errno: int = 0

    @property
    def mss(self) -> int:
        """run_one(): the length of a full datagram."""
        return self.gso_len or CONST_MSS_V4

    def segments(self) -> list[int]:
        """The datagram lengths run_one() receives, in order."""
        return [self.mss] * self.r_num_mss + ([self.r_len_last] if self.r_len_last else [])


# testcases_v4[], in order.
CASES: tuple[Case, ...] = (
    Case("no GSO: send a single byte", 1, r_len_last=1),
    Case("no GSO: send a single MSS", CONST_MSS_V4, r_num_mss=1),
    Case("no GSO: send a single MSS + 1B: fail", CONST_MSS_V4 + 1, tfail=True, errno=EMSGSIZE),
    Case("send a single MSS: will fall back to no GSO", CONST_MSS_V4, CONST_MSS_V4, r_num_mss=1),
    Case(
        "datalen <= MSS < gso_len: will fall back to no GSO",
        CONST_MSS_V4,
        CONST_MSS_V4 + 1,
        r_num_mss=0,
        r_len_last=CONST_MSS_V4,
    ),
    Case("send a single MSS + 1B", CONST_MSS_V4 + 1, CONST_MSS_V4, r_num_mss=1, r_len_last=1),
    Case("send exactly 2 MSS", CONST_MSS_V4 * 2, CONST_MSS_V4, r_num_mss=2),
    Case("send 2 MSS + 1B", CONST_MSS_V4 * 2 + 1, CONST_MSS_V4, r_num_mss=2, r_len_last=1),
    Case(
        "send MAX segs",
        (ETH_MAX_MTU // CONST_MSS_V4) * CONST_MSS_V4,
        CONST_MSS_V4,
        r_num_mss=ETH_MAX_MTU // CONST_MSS_V4,
    ),
    Case(
        "send MAX bytes",
        ETH_MAX_MTU - CONST_HDRLEN_V4,
        CONST_MSS_V4,
        r_num_mss=CONST_MAX_SEGS_V4,
        r_len_last=ETH_MAX_MTU - CONST_HDRLEN_V4 - CONST_MAX_SEGS_V4 * CONST_MSS_V4,
    ),
    Case("send MAX + 1: fail", ETH_MAX_MTU - CONST_HDRLEN_V4 + 1, CONST_MSS_V4, tfail=True, errno=EMSGSIZE),
    Case("send a single 1B MSS: will fall back to no GSO", 1, 1, r_num_mss=1),
    Case("send 2 1B segments", 2, 1, r_num_mss=2),
    Case("send 2B + 2B + 1B segments", 5, 2, r_num_mss=2, r_len_last=1),
    Case("send max number of min sized segments", UDP_MAX_SEGMENTS, 1, r_num_mss=UDP_MAX_SEGMENTS),
    Case(
        "send max number + 1 of min sized segments: fail",
        UDP_MAX_SEGMENTS + 1,
        1,
        tfail=True,
        errno=EINVAL,
    ),
)


@dataclass(frozen=True, slots=True)
class Variant:
    """One udpgso run: its label in udpgso.sh and its options."""

    name: str
    flags: str
    setsockopt: bool = False
    connected: bool = False
    msgmore: bool = False
    gro: bool = False


VARIANTS: dict[str, Variant] = {
    v.name: v
    for v in (
        Variant("ipv4 cmsg", "-4 -C"),
        Variant("ipv4 setsockopt", "-4 -C -s", setsockopt=True),
        Variant("ipv4 connected", "-4 -c", connected=True),
        Variant("ipv4 msg_more", "-4 -C -m", msgmore=True),
        # Not in udpgso.sh: the cmsg run towards a receiver with UDP_GRO.
        Variant("ipv4 cmsg, UDP_GRO receiver", "-4 -C", gro=True),
    )
}
SELFTEST_VARIANTS = ("ipv4 cmsg", "ipv4 setsockopt", "ipv4 connected", "ipv4 msg_more")


def expected_calls(case: Case, variant: Variant) -> list[int]:
    """send_one(): each sendmsg's return, -errno for the one that fails (with MSG_MORE,
    1 byte corked first, then the rest)."""
    lens = [1, case.tlen - 1] if variant.msgmore and case.tlen > 1 else [case.tlen]
    if case.tfail:
        lens[-1] = -case.errno
    return lens


def expected(case: Case, variant: Variant) -> dict[str, Any]:
    """The record run_one() passes with, for a receiver without UDP_GRO."""
    return {
        "variant": variant.name,
        "case": CASES.index(case),
        "ip_mtu": CONST_MTU_TEST if variant.connected else None,
        "setsockopt": 0 if variant.setsockopt else None,
        "calls": expected_calls(case, variant),
        "recv": [] if case.tfail else [[n, 0] for n in case.segments()],
        "timed_out": False,
    }


def gro_grouping_ok(case: Case, recv: list[list[int]]) -> bool:
    """Whether `recv` ([length, UDP_GRO cmsg or 0] per datagram) is the case's segments,
    in order, merged into runs as GRO merges them: a run of several carries the first
    segment's length as gso_size (napi_gro_complete() zeroes it for a run of one)."""
    segs = [] if case.tfail else case.segments()
    i = 0
    for length, gso_size in recv:
        j, total = i, 0
        while j < len(segs) and total < length:
            total += segs[j]
            j += 1
        if j == i or total != length or gso_size != (segs[i] if j - i > 1 else 0):
            return False
        i = j
    return i == len(segs)


def _ret(f: Callable[[], Any]) -> int:
    try:
        f()
    except OSError as e:
        return -(e.errno or 0)
    return 0


def send_case(fdt: Any, case: Case, variant: Variant, dst: tuple[str, int]) -> tuple[int | None, list[int]]:
    """run_one()'s UDP_SEGMENT setsockopt (0 or -errno, None when the run sets none) and
    send_one(): each sendmsg's return, or -errno (and no further call) when one fails.
    The selftest stops at a failing setsockopt; this sends anyway, to show more."""
    opt = None
    if variant.setsockopt:
        opt = _ret(lambda: fdt.setsockopt(SOL_UDP, UDP_SEGMENT, case.gso_len))
    anc = []
    if case.gso_len and not variant.setsockopt:
        anc = [(SOL_UDP, UDP_SEGMENT, struct.pack("=H", case.gso_len))]
    buf = bytes(case.tlen)
    chunks = [buf[:1], buf[1:]] if variant.msgmore and case.tlen > 1 else [buf]
    calls: list[int] = []
    for n, chunk in enumerate(chunks):
        flags = MSG_MORE if n < len(chunks) - 1 else 0
        try:
            if variant.connected:
                calls.append(fdt.sendmsg([chunk], anc, flags))
            else:
                calls.append(fdt.sendmsg([chunk], anc, flags, dst))
        except OSError as e:
            calls.append(-(e.errno or 0))
            break
    return opt, calls


def sent_bytes(calls: list[int]) -> int:
    """What the receiver must get: nothing when a call failed (udp_sendmsg() flushes
    what MSG_MORE had corked)."""
    return 0 if any(c < 0 for c in calls) else sum(calls)


def collect(sk: Any, fdr: Any, total: int) -> tuple[list[list[int]], bool]:
    """run_one()'s receive loop, counting bytes instead of datagrams (so that it is the
    same for a UDP_GRO receiver): [length, UDP_GRO cmsg or 0] per datagram until `total`
    bytes came, then one MSG_DONTWAIT recv that must find nothing; and whether a recv
    timed out."""
    got: list[list[int]] = []
    n = 0
    while n < total and len(got) <= total:
        try:
            data, anc, _, _ = fdr.recvmsg(ETH_MAX_MTU, sk.CMSG_SPACE(4))
        except TimeoutError:
            return got, True
        gso = [struct.unpack("=i", d)[0] for lvl, t, d in anc if (lvl, t) == (SOL_UDP, UDP_GRO)]
        got.append([len(data), gso[0] if gso else 0])
        n += len(data)
    # Python polls for its timeout before any recv, MSG_DONTWAIT or not: non-blocking.
    timeout = fdr.gettimeout()
    fdr.settimeout(0.0)
    try:
        got.append([len(fdr.recv(ETH_MAX_MTU, MSG_DONTWAIT)), 0])
    except BlockingIOError:
        pass
    finally:
        fdr.settimeout(timeout)
    return got, False


def receivers(sk: Any, addr: str, port: int, timeout: float) -> tuple[Any, Any, int]:
    """The plain receiver on port and the UDP_GRO one on port + 1, and what setting
    UDP_GRO returned (0 or -errno)."""
    plain = sk.socket(sk.AF_INET, sk.SOCK_DGRAM)
    plain.bind((addr, port))
    gro = sk.socket(sk.AF_INET, sk.SOCK_DGRAM)
    gro.bind((addr, port + 1))
    gro_ret = _ret(lambda: gro.setsockopt(SOL_UDP, UDP_GRO, 1))
    for r in (plain, gro):
        r.settimeout(timeout)
    return plain, gro, gro_ret


def run_variant(sk: Any, variant: Variant, addr: str, port: int) -> Iterator[dict[str, Any]]:
    """The sender side of one run: a record per case (generator; the caller receives
    between cases)."""
    dst = (addr, port + 1 if variant.gro else port)
    fdt = sk.socket(sk.AF_INET, sk.SOCK_DGRAM)
    # run_test(): "Do not fragment these datagrams: only succeed if GSO works".
    fdt.setsockopt(SOL_IP, IP_MTU_DISCOVER, IP_PMTUDISC_DO)
    ip_mtu = None
    if variant.connected:
        fdt.connect(dst)
        ip_mtu = fdt.getsockopt(SOL_IP, IP_MTU)
    for i, case in enumerate(CASES):
        opt, calls = send_case(fdt, case, variant, dst)
        yield {"variant": variant.name, "case": i, "ip_mtu": ip_mtu, "setsockopt": opt, "calls": calls}
    fdt.close()


def _kernel(addr: str, port: int, names: list[str]) -> list[dict[str, Any]]:
    import socket as sk

    plain, gro, gro_ret = receivers(sk, addr, port, KERNEL_RCVTIMEO)
    assert gro_ret == 0, gro_ret
    out = []
    for name in names:
        variant = VARIANTS[name]
        fdr = gro if variant.gro else plain
        for rec in run_variant(sk, variant, addr, port):
            rec["recv"], rec["timed_out"] = collect(sk, fdr, sent_bytes(rec["calls"]))
            out.append(rec)
    return out


def _send(addr: str, port: int, names: list[str]) -> None:
    import stackemu.socket as sk

    for name in names:
        for rec in run_variant(sk, VARIANTS[name], addr, port):
            print(json.dumps(rec), flush=True)
            if sys.stdin.readline().strip() != "next":
                return
    # The last datagram, from a socket of its own: what the receiver must find last.
    with sk.socket(sk.AF_INET, sk.SOCK_DGRAM) as z:
        z.sendto(b"end", (addr, port))
    print(json.dumps({"end": True}), flush=True)


def _recv(addr: str, port: int) -> None:
    import stackemu.socket as sk

    plain, gro, gro_ret = receivers(sk, addr, port, EMULATED_RCVTIMEO)
    print(json.dumps({"udp_gro": gro_ret}), flush=True)
    for line in sys.stdin:
        rec = json.loads(line)
        if rec.get("end"):
            try:
                last = plain.recv(ETH_MAX_MTU)
            except TimeoutError:
                last = b"timeout"
            print(json.dumps({"end": last.decode(errors="replace")}), flush=True)
            return
        r = gro if VARIANTS[rec["variant"]].gro else plain
        rec["recv"], rec["timed_out"] = collect(sk, r, sent_bytes(rec["calls"]))
        print(json.dumps(rec), flush=True)


def main(argv: list[str]) -> None:
    mode, addr, port, *names = argv
    if mode == "kernel":
        print(json.dumps(_kernel(addr, int(port), names)))
    elif mode == "send":
        _send(addr, int(port), names)
    elif mode == "recv":
        _recv(addr, int(port))
    else:
        raise SystemExit(f"unknown mode {mode!r}")


if __name__ == "__main__":
    main(sys.argv[1:])
