"""The receive queue of a UDP socket (SO_RCVBUF by truesize, drops, SO_RXQ_OVFL,
SO_MEMINFO), the checksum on lo (SO_NO_CHECK, CHECKSUM_PARTIAL), UDP_SEGMENT and
UDP_GRO, and UDP-Lite, through the drop-in module, compared with this machine's kernel:
the harness of test_udp_kernel_send.py, the kernel in a network namespace of its own,
the emulator on alice.

A datagram's truesize is what SO_MEMINFO's rmem_alloc says with it alone on the queue
(the numbers `ss -uamn` shows as skmem r): on the kernel's lo it is the skb that
ip_make_skb allocated for the send, which lo hands to the receiver unchanged. The drop
scenarios use 1000-byte datagrams (truesize 2304, the minimum rcvbuf), so that they
hold whatever a truesize a few bytes off does; test_truesize pins the sizes themselves.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from services.core import errno
from services.core.checksum import ip_fast_csum
from tests.e2e.test_udp_kernel_send import (
    IPPROTO_UDPLITE,
    LO,
    PORT,
    SOL_SOCKET,
    SOL_UDP,
    SOL_UDPLITE,
    Both,
    Host,
    compare,
    dgram,
    errno_of,
    get,
    main,
    put,
    run_both,
)

SO_RCVBUF, SO_NO_CHECK, SO_PROTOCOL, SO_RXQ_OVFL, SO_MEMINFO = 8, 11, 38, 40, 55
UDP_SEGMENT, UDP_GRO, UDP_MAX_SEGMENTS = 103, 104, 128
UDPLITE_SEND_CSCOV, UDPLITE_RECV_CSCOV = 10, 11
U16, INT = struct.Struct("=H"), struct.Struct("=i")
MEMINFO = struct.Struct("=9I")  # SK_MEMINFO_RMEM_ALLOC ... SK_MEMINFO_DROPS
SIZES = (0, 1, 100, 500, 1000, 1472, 2000, 4000, 8000, 16000, 32000, 60000, 65507)
FILL = (1, 500, 1000, 2000, 8000, 32000)


def meminfo(s: Any) -> Any:
    """SO_MEMINFO's rmem_alloc, rcvbuf and drops (the rest is the kernel's page
    accounting), or ["errno", n]."""
    v = errno_of(lambda: s.getsockopt(SOL_SOCKET, SO_MEMINFO, MEMINFO.size))
    if not isinstance(v, bytes):
        return v
    m = MEMINFO.unpack(v.ljust(MEMINFO.size, b"\0"))
    return [m[0], m[1], m[8]]


def split(p: bytes) -> list[Any]:
    """An IP packet as [IP header with ID and checksum zeroed, whether its checksum was
    right, transport header, payload] (the ID of a DF datagram from an unconnected
    socket comes from ip_idents, which differ from run to run)."""
    ihl = (p[0] & 0x0F) * 4
    hdr = bytearray(p[:ihl])
    hdr[4:6] = hdr[10:12] = b"\0\0"
    return [hdr.hex(), ip_fast_csum(p[:ihl]) == 0, p[ihl : ihl + 8].hex(), p[ihl + 8 :].hex()]


def rcvbuf(h: Host) -> dict[str, Any]:
    """test_truesize, test_rcvbuf_drops, test_rxq_ovfl, test_one_skb_always_fits. The
    drops use 1000-byte datagrams, whose truesize (2304) is the minimum rcvbuf: one
    fits, two do not, whatever a few bytes of difference in truesize."""
    out: dict[str, Any] = {}
    s = h.sock(30)
    r = h.sock(31)
    to = (LO, PORT + 31)
    sizes = []
    for n in SIZES:
        s.sendto(bytes(n), to)
        h.settle()
        sizes.append([n, meminfo(r), len(h.drain(r))])
    out["truesize"] = sizes

    # How many datagrams of n bytes an rcvbuf of 100000 holds: 100000 // truesize.
    r.setsockopt(SOL_SOCKET, SO_RCVBUF, 50000)
    fill = []
    for n in FILL:
        for _ in range(100000 // (n + 576) + 2):  # truesize > n + 576: more than fit
            s.sendto(bytes(n), to)
        h.settle()
        fill.append([n, len(h.drain(r))])
    out["fill 100000"] = fill

    m = h.sock(34)
    m.setsockopt(SOL_SOCKET, SO_RCVBUF, 1)
    before = h.counters()
    sent = [errno_of(lambda: s.sendto(bytes(1000), (LO, PORT + 34))) for _ in range(20)]
    h.settle()
    full = meminfo(m)
    out["20 x 1000 into 2304"] = [sent, [d[0] for d in h.drain(m)]]
    out["20 x 1000 meminfo"] = [full, meminfo(m)]
    out["20 x 1000 counts"] = h.moved(before)

    o = h.sock(32)
    o.setsockopt(SOL_SOCKET, SO_RCVBUF, 1)
    o.setsockopt(SOL_SOCKET, SO_RXQ_OVFL, 1)
    before = h.counters()
    for i in range(20):
        s.sendto(b"%02d" % i + bytes(998), (LO, PORT + 32))
    queued = h.got(o)
    s.sendto(b"next", (LO, PORT + 32))
    out["SO_RXQ_OVFL"] = [queued, h.got(o)]
    out["SO_RXQ_OVFL meminfo"] = meminfo(o)
    o.setsockopt(SOL_SOCKET, SO_RXQ_OVFL, 0)
    s.sendto(b"off", (LO, PORT + 32))
    out["SO_RXQ_OVFL off"] = h.got(o)
    out["SO_RXQ_OVFL counts"] = h.moved(before)

    b = h.sock(33)
    b.setsockopt(SOL_SOCKET, SO_RCVBUF, 1)
    before = h.counters()
    for n in (60000, 60000, 1):
        s.sendto(bytes(n), (LO, PORT + 33))
    h.settle()
    big = meminfo(b)
    out["one skb always fits"] = [d[0] for d in h.drain(b)]
    for n in (1000, 1000, 1000):
        s.sendto(bytes(n), (LO, PORT + 33))
    h.settle()
    out["one skb meminfo"] = [big, meminfo(b)]
    out["then 1000-byte ones"] = [d[0] for d in h.drain(b)]
    out["one skb counts"] = h.moved(before)
    for x in (s, r, m, o, b):
        x.close()
    return out


def no_check(h: Host) -> dict[str, Any]:
    """The packets on lo for a plain send and an SO_NO_CHECK one (test_no_check)."""
    s = h.sock(40)
    r = h.sock(41)
    to = (LO, PORT + 41)
    cap = h.capture()
    s.sendto(b"checksum", to)
    s.setsockopt(SOL_SOCKET, SO_NO_CHECK, 1)
    s.sendto(b"no check", to)
    s.sendto(b"", to)
    out = {"no check packets": [split(bytes.fromhex(p)) for p in cap.packets()], "no check got": h.drain(r)}
    for x in (s, r):
        x.close()
    return out


def segment(h: Host) -> dict[str, Any]:
    """UDP_SEGMENT and UDP_GRO on lo (test_udp_segment, test_udp_gro)."""
    out: dict[str, Any] = {}
    send = errno_of
    s = h.sock(50)
    r = h.sock(51)
    g = h.sock(52)
    to, to_gro = (LO, PORT + 51), (LO, PORT + 52)
    data = bytes(i % 251 for i in range(3500))
    out["UDP_GRO values"] = [
        get(g, SOL_UDP, UDP_GRO),
        put(g, SOL_UDP, UDP_GRO, 5),
        get(g, SOL_UDP, UDP_GRO),
        put(g, SOL_UDP, UDP_GRO, b"\x01"),
    ]
    out["UDP_SEGMENT values"] = [
        get(s, SOL_UDP, UDP_SEGMENT),
        put(s, SOL_UDP, UDP_SEGMENT, 1000),
        get(s, SOL_UDP, UDP_SEGMENT),
        put(s, SOL_UDP, UDP_SEGMENT, 65535),
        get(s, SOL_UDP, UDP_SEGMENT),
        put(s, SOL_UDP, UDP_SEGMENT, 65536),
        put(s, SOL_UDP, UDP_SEGMENT, -1),
        get(s, SOL_UDP, UDP_SEGMENT),
        put(s, SOL_UDP, UDP_SEGMENT, 1000),
        put(s, SOL_UDPLITE, UDP_SEGMENT, 1000),
        get(s, SOL_UDPLITE, UDP_SEGMENT),
    ]
    before = h.counters()
    cap = h.capture()
    out["3500 bytes, gso 1000"] = [send(lambda: s.sendto(data, to)), send(lambda: s.sendto(data, to_gro))]
    out["gso packets"] = [split(bytes.fromhex(p))[:3] for p in cap.packets()]
    out["segments truesize"] = [meminfo(r), meminfo(g)]
    out["segments"] = h.got(r, g)
    out["segment counts"] = h.moved(before)

    def gso(n: int, size: int, dest: tuple[str, int] = to) -> Any:
        return send(lambda: s.sendmsg([bytes(n)], [(SOL_UDP, UDP_SEGMENT, U16.pack(size))], 0, dest))

    s.setsockopt(SOL_UDP, UDP_SEGMENT, 0)
    before = h.counters()
    out["by cmsg"] = [
        gso(3500, 1000),
        gso(3500, 1000, to_gro),
        gso(1000, 1000),
        gso(999, 1000),
        gso(1001, 1000),
        send(lambda: s.sendmsg([bytes(3500)], [(SOL_UDP, UDP_SEGMENT, INT.pack(1000))], 0, to)),
        gso(3500, 0),
        h.got(r, g),
    ]

    def summary(n: int, size: int) -> list[Any]:
        """The send's value and what r got: how many, the first and last lengths."""
        sent, q = gso(n, size), h.got(r)
        return [sent, len(q), q[0][0] if q else None, q[-1][0] if q else None]

    out["segment limits"] = [
        summary(100 * UDP_MAX_SEGMENTS, 100),
        summary(100 * UDP_MAX_SEGMENTS + 1, 100),
        summary(64000, 1000),
        summary(65507, 1000),
        summary(65508, 1000),
        summary(3500, 65535),
        summary(3500, 1),
    ]
    s.setsockopt(SOL_SOCKET, SO_NO_CHECK, 1)
    out["SO_NO_CHECK and GSO"] = [gso(3500, 1000), gso(1000, 1000), h.got(r)]
    out["limit counts"] = h.moved(before)
    for x in (s, r, g):
        x.close()
    return out


def udplite(h: Host) -> dict[str, Any]:
    """UDP-Lite: the coverage options, partial coverage on lo, and the tables apart from
    UDP's (test_udplite_*)."""
    out: dict[str, Any] = {}
    send = errno_of
    a = h.sock(60, IPPROTO_UDPLITE)
    b = h.sock(61, IPPROTO_UDPLITE)
    u = h.sock(62)
    for name, opt in (("UDPLITE_SEND_CSCOV", UDPLITE_SEND_CSCOV), ("UDPLITE_RECV_CSCOV", UDPLITE_RECV_CSCOV)):
        x = h.sock(None, IPPROTO_UDPLITE)
        seq: list[Any] = [get(x, SOL_UDPLITE, opt)]
        for v in (1, 7, 8, 20, 65535, 70000, -1, 0):
            seq += [put(x, SOL_UDPLITE, opt, v), get(x, SOL_UDPLITE, opt)]
        seq += [
            put(x, SOL_UDP, opt, 20),
            get(x, SOL_UDP, opt),
            put(u, SOL_UDPLITE, opt, 20),
            get(u, SOL_UDPLITE, opt),
        ]
        out[name] = seq
        x.close()
    out["identity"] = [get(a, SOL_SOCKET, SO_PROTOCOL), h.port(a.getsockname())]

    payload = bytes(range(100))
    before = h.counters()
    cap = h.capture()
    out["full coverage"] = [send(lambda: a.sendto(payload, (LO, PORT + 61))), h.got(b)]
    a.setsockopt(SOL_UDPLITE, UDPLITE_SEND_CSCOV, 20)
    out["coverage 20"] = [send(lambda: a.sendto(payload, (LO, PORT + 61))), h.got(b)]
    a.setsockopt(SOL_UDPLITE, UDPLITE_SEND_CSCOV, 200)
    out["coverage past the end"] = [send(lambda: a.sendto(payload, (LO, PORT + 61))), h.got(b)]
    out["lite packets"] = [split(bytes.fromhex(p))[:3] for p in cap.packets()]
    out["lite counts"] = h.moved(before)

    before = h.counters()
    a.setsockopt(SOL_UDPLITE, UDPLITE_SEND_CSCOV, 20)
    b.setsockopt(SOL_UDPLITE, UDPLITE_RECV_CSCOV, 30)
    out["receiver wants 30"] = [
        send(lambda: a.sendto(payload, (LO, PORT + 61))),
        send(lambda: a.sendto(payload[:10], (LO, PORT + 61))),
        h.got(b),
    ]
    a.setsockopt(SOL_UDPLITE, UDPLITE_SEND_CSCOV, 0)
    out["full coverage to it"] = [send(lambda: a.sendto(payload, (LO, PORT + 61))), h.got(b)]
    out["coverage drop counts"] = h.moved(before)

    before = h.counters()
    out["across the tables"] = [
        send(lambda: u.sendto(b"udp to lite", (LO, PORT + 61))),
        send(lambda: a.sendto(b"lite to udp", (LO, PORT + 62))),
        h.got(b, u),
    ]
    out["across counts"] = h.moved(before)
    out["UDP_SEGMENT on UDP-Lite"] = [
        put(a, SOL_UDP, UDP_SEGMENT, 10),
        send(lambda: a.sendto(payload, (LO, PORT + 61))),
        send(lambda: a.sendto(payload[:10], (LO, PORT + 61))),
        h.got(b),
    ]
    for x in (a, b, u):
        x.close()
    return out


# The tests.


@pytest.fixture(scope="module")
def both(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Both]:
    yield from run_both(__name__, str(tmp_path_factory.mktemp("state")))


EINVAL = ["errno", errno.EINVAL]
# 6.18's truesize on lo for a payload of n bytes. Up to SKB_MAX_ALLOC (16064 with
# 4 KiB pages) __ip_append_data allocates one linear head of n + 28 (headers) + 31
# (hh_len 16 + 15) bytes; __alloc_skb adds skb_shared_info (320) after aligning to 64,
# takes the object from the small-head cache (576) or kmalloc (1024, 2048, ... 16384),
# and truesize is that object plus struct sk_buff (256). Past it (n >= 16005) the head
# holds only the headers (576) and the data goes in page frags, charged byte for byte:
# n + 832.
TRUESIZE = {
    0: 832,
    1: 832,
    100: 832,
    500: 1280,
    1000: 2304,
    1472: 2304,
    2000: 4352,
    4000: 8448,
    8000: 16640,
    16000: 16640,
    32000: 32832,
    60000: 60832,
    65507: 66339,
}


def _rmem_default() -> int:
    return int(Path("/proc/sys/net/core/rmem_default").read_text())


def test_truesize(both: Both) -> None:
    kernel, emulated = both
    # SO_MEMINFO with one datagram queued (see TRUESIZE), and how many datagrams of a
    # size an rcvbuf of 100000 holds: 100000 // truesize, the same table seen from
    # the queue.
    assert kernel["truesize"] == [[n, [TRUESIZE[n], _rmem_default(), 0], 1] for n in SIZES]
    assert kernel["fill 100000"] == [[n, 100000 // TRUESIZE[n]] for n in FILL]
    compare(kernel, emulated, "truesize", "fill 100000")


def test_rcvbuf_drops(both: Both) -> None:
    kernel, emulated = both
    # 6.18: SO_RCVBUF 1 is 2304; the first 1000-byte datagram (truesize 2304) fits
    # exactly, every later one is dropped: __udp_enqueue_schedule_skb() drops past
    # sk_rcvbuf unless the queue is empty ("if (rmem) goto drop"), counting
    # RcvbufErrors and InErrors; SO_MEMINFO shows rmem_alloc 2304 and 19 drops.
    # InDatagrams counts reads (the datagram and two sentinels).
    assert kernel["20 x 1000 into 2304"] == [[1000] * 20, [1000]]
    assert kernel["20 x 1000 meminfo"] == [[2304, 2304, 19], [0, 2304, 19]]
    assert kernel["20 x 1000 counts"] == {
        "UdpInDatagrams": 3,
        "UdpInErrors": 19,
        "UdpOutDatagrams": 22,
        "UdpRcvbufErrors": 19,
    }
    compare(kernel, emulated, "20 x 1000 into 2304", "20 x 1000 counts", "20 x 1000 meminfo")


def test_rxq_ovfl(both: Both) -> None:
    kernel, emulated = both
    # 6.18: of 20 datagrams of 1000 bytes one is queued, before any drop, so it has
    # no cmsg (sock_recv_drops() puts one only for a nonzero count); the next one
    # carries SO_RXQ_OVFL: sk_drops when it was queued, the u32 19. Off, no cmsg.
    ovfl = [[SOL_SOCKET, SO_RXQ_OVFL, struct.pack("=I", 19).hex()]]
    assert kernel["SO_RXQ_OVFL"] == [[dgram(b"00" + bytes(998), 30)], [dgram(b"next", 30, ovfl)]]
    assert kernel["SO_RXQ_OVFL meminfo"] == [0, 2304, 19]
    assert kernel["SO_RXQ_OVFL off"] == [dgram(b"off", 30)]
    assert kernel["SO_RXQ_OVFL counts"] == {
        "UdpInDatagrams": 7,
        "UdpInErrors": 19,
        "UdpOutDatagrams": 26,
        "UdpRcvbufErrors": 19,
    }
    compare(kernel, emulated, "SO_RXQ_OVFL", "SO_RXQ_OVFL off", "SO_RXQ_OVFL counts", "SO_RXQ_OVFL meminfo")


def test_one_skb_always_fits(both: Both) -> None:
    kernel, emulated = both
    # 6.18: an empty queue takes a 60000-byte datagram (truesize 60832) into 2304;
    # the next 60000 and a 1-byte one are dropped; emptied, it takes one 1000-byte
    # datagram and drops two more.
    assert kernel["one skb always fits"] == [60000]
    assert kernel["then 1000-byte ones"] == [1000]
    assert kernel["one skb meminfo"] == [[60832, 2304, 2], [2304, 2304, 4]]
    assert kernel["one skb counts"] == {
        "UdpInDatagrams": 5,
        "UdpInErrors": 4,
        "UdpOutDatagrams": 9,
        "UdpRcvbufErrors": 4,
    }
    compare(
        kernel, emulated, "one skb always fits", "then 1000-byte ones", "one skb counts", "one skb meminfo"
    )


def test_no_check(both: Both) -> None:
    kernel, emulated = both
    # 6.18 on lo: DF, TTL 64, a right IP header checksum. A plain send leaves the UDP
    # checksum to the device (CHECKSUM_PARTIAL; lo never completes it): the field
    # holds the pseudo-header sum, not complemented, fe23 = 7f00 + 0001 + 7f00 + 0001
    # + 0011 + 0010 (tcpdump: "bad udp cksum"); SO_NO_CHECK sends 0 (the empty
    # datagram too). The receiver takes all three (lo's CHECKSUM_PARTIAL needs no check).
    ip = "45000024" + "00004000" + "40110000" + "7f000001" * 2
    assert kernel["no check packets"] == [
        [ip, True, "4e484e490010fe23", b"checksum".hex()],
        [ip, True, "4e484e4900100000", b"no check".hex()],
        ["4500001c" + ip[8:], True, "4e484e4900080000", ""],
    ]
    assert kernel["no check got"] == [dgram(b"checksum", 40), dgram(b"no check", 40), dgram(b"", 40)]
    compare(kernel, emulated, "no check packets", "no check got")


def test_udp_segment(both: Both) -> None:
    kernel, emulated = both
    data = bytes(i % 251 for i in range(3500))
    # 6.18: UDP_GRO reads 1 for any nonzero int, a 1-byte optval EINVAL; UDP_SEGMENT
    # takes 0..65535 (65536 and -1 EINVAL, the value kept), SOL_UDPLITE too on a
    # UDP socket.
    assert kernel["UDP_GRO values"] == [0, None, 1, EINVAL]
    assert kernel["UDP_SEGMENT values"] == [
        0,
        None,
        1000,
        None,
        65535,
        EINVAL,
        EINVAL,
        65535,
        None,
        None,
        1000,
    ]
    # 3500 bytes with gso_size 1000 cross lo as one packet (lo has NETIF_F_GSO_UDP_L4):
    # UDP length 3508, the pseudo-header sum for it. The receiver without UDP_GRO gets
    # it segmented (udp_unexpected_gso: 1000, 1000, 1000, 500, each a new 832-byte
    # head and its share of the frags: 4 * 832 + 3500 = 6828); the UDP_GRO one gets
    # it whole (a GSO send is paged: 832 + 3500) with UDP_GRO = gso_size. One
    # OutDatagrams a send, one InDatagrams a read.
    ip = "45000dc8" + "00004000" + "40110000" + "7f000001" * 2
    assert kernel["3500 bytes, gso 1000"] == [3500, 3500]
    assert kernel["gso packets"] == [[ip, True, "4e524e530db40bc8"], [ip, True, "4e524e540db40bc8"]]
    assert kernel["segments truesize"] == [[6828, _rmem_default(), 0], [4332, _rmem_default(), 0]]
    gro = [[SOL_UDP, UDP_GRO, INT.pack(1000).hex()]]
    assert kernel["segments"] == [
        [dgram(data[i : i + 1000], 50) for i in range(0, 3500, 1000)],
        [dgram(data, 50, gro)],
    ]
    assert kernel["segment counts"] == {"UdpInDatagrams": 8, "UdpOutDatagrams": 5}
    compare(
        kernel,
        emulated,
        "UDP_GRO values",
        "UDP_SEGMENT values",
        "3500 bytes, gso 1000",
        "gso packets",
        "segments",
        "segment counts",
    )
    # A difference, pinned: the kernel builds a GSO datagram with its payload in page
    # frags, so each segment udp_rcv_segment() splits off for a socket without UDP_GRO
    # charges a small head (832) and its payload; the emulator's GSO skb is linear, and
    # its segments charge linear heads. The UDP_GRO socket's whole skb charges the same.
    assert emulated["segments truesize"] == [[6400, _rmem_default(), 0], [4332, _rmem_default(), 0]]


def test_udp_segment_cmsg_and_limits(both: Both) -> None:
    kernel, emulated = both
    zeros = [dgram(bytes(n), 50) for n in (1000, 1000, 1000, 500)]
    # 6.18: the u16 cmsg does what the option does; a datagram no longer than
    # gso_size goes as it is, 1001 is 1000 + 1; an int-sized cmsg EINVAL; gso_size 0
    # is off.
    assert kernel["by cmsg"] == [
        3500,
        3500,
        1000,
        999,
        1001,
        EINVAL,
        3500,
        [
            [*zeros, *(dgram(bytes(n), 50) for n in (1000, 999, 1000, 1, 3500))],
            [dgram(bytes(3500), 50, [[SOL_UDP, UDP_GRO, INT.pack(1000).hex()]])],
        ],
    ]
    # UDP_MAX_SEGMENTS is 128 in 6.18: 128 segments go, 129 EINVAL (gso_size 1 for
    # 3500 bytes too); 65507 bytes is still the most (65 x 1000 + 507); gso_size
    # 65535 for 3500 bytes is one datagram. SO_NO_CHECK with a gso_size is EINVAL
    # for any length; UDP-Lite with one EIO (test_udplite_segment).
    assert kernel["segment limits"] == [
        [12800, 128, 100, 100],
        [EINVAL, 0, None, None],
        [64000, 64, 1000, 1000],
        [65507, 66, 1000, 507],
        [["errno", errno.EMSGSIZE], 0, None, None],
        [3500, 1, 3500, 3500],
        [EINVAL, 0, None, None],
    ]
    assert kernel["SO_NO_CHECK and GSO"] == [EINVAL, EINVAL, []]
    assert kernel["limit counts"] == {"UdpInDatagrams": 279, "UdpOutDatagrams": 20}
    compare(kernel, emulated, "by cmsg", "segment limits", "SO_NO_CHECK and GSO", "limit counts")


def test_udplite_options(both: Both) -> None:
    kernel, emulated = both
    # 6.18: 0 (full coverage) at first; 1..7 and negative values are 8, past 65535 is
    # 65535; SOL_UDP works on a UDP-Lite socket; a UDP socket cannot set them
    # (ENOPROTOOPT) but reads 0.
    cscov: list[Any] = [0, None, 8, None, 8, None, 8, None, 20, None, 65535, None, 65535, None, 8, None, 0]
    cscov += [None, 20, ["errno", errno.ENOPROTOOPT], 0]
    assert kernel["UDPLITE_SEND_CSCOV"] == cscov
    assert kernel["UDPLITE_RECV_CSCOV"] == cscov
    assert kernel["identity"] == [IPPROTO_UDPLITE, [LO, 60]]
    compare(kernel, emulated, "UDPLITE_SEND_CSCOV", "UDPLITE_RECV_CSCOV", "identity")


def test_udplite_coverage(both: Both) -> None:
    kernel, emulated = both
    payload = bytes(range(100))
    got = [100, [dgram(payload, 60)]]
    # 6.18: full coverage puts the whole length (108) in the length field, coverage
    # 20 puts 20, a coverage past the end is full; the checksum is computed in
    # software (no CHECKSUM_PARTIAL for UDP-Lite) and complemented.
    assert kernel["full coverage"] == got
    assert kernel["coverage 20"] == got
    assert kernel["coverage past the end"] == got
    ip = "45000080" + "00004000" + "40880000" + "7f000001" * 2
    assert kernel["lite packets"] == [
        [ip, True, "4e5c4e5d006cc815"],
        [ip, True, "4e5c4e5d00144617"],
        [ip, True, "4e5c4e5d006cc815"],
    ]
    assert kernel["lite counts"] == {
        "UdpInDatagrams": 5,
        "UdpOutDatagrams": 5,
        "UdpLiteInDatagrams": 3,
        "UdpLiteOutDatagrams": 3,
    }
    # A receiver with UDPLITE_RECV_CSCOV 30 drops coverage 20 (UdpLiteInErrors) and
    # takes 10 bytes sent with coverage 20 (full: 18 <= 20) and full coverage.
    assert kernel["receiver wants 30"] == [100, 10, [dgram(payload[:10], 60)]]
    assert kernel["full coverage to it"] == got
    assert kernel["coverage drop counts"] == {
        "UdpInDatagrams": 3,
        "UdpOutDatagrams": 3,
        "UdpLiteInDatagrams": 2,
        "UdpLiteInErrors": 1,
        "UdpLiteOutDatagrams": 3,
    }
    compare(
        kernel,
        emulated,
        "full coverage",
        "coverage 20",
        "coverage past the end",
        "lite packets",
        "lite counts",
        "receiver wants 30",
        "full coverage to it",
        "coverage drop counts",
    )


def test_udplite_tables_and_segment(both: Both) -> None:
    kernel, emulated = both
    # 6.18: UDP and UDP-Lite have separate tables: UDP to a UDP-Lite socket's port is
    # UdpNoPorts, UDP-Lite to a UDP socket's port UdpLiteNoPorts. UDP_SEGMENT can be
    # set on UDP-Lite, but a send with it is EIO (udp_send_skb), short or not.
    assert kernel["across the tables"] == [11, 11, [[], []]]
    assert kernel["across counts"] == {
        "UdpInDatagrams": 2,
        "UdpNoPorts": 1,
        "UdpOutDatagrams": 3,
        "UdpLiteNoPorts": 1,
        "UdpLiteOutDatagrams": 1,
    }
    assert kernel["UDP_SEGMENT on UDP-Lite"] == [None, ["errno", errno.EIO], ["errno", errno.EIO], []]
    compare(kernel, emulated, "across the tables", "across counts", "UDP_SEGMENT on UDP-Lite")


if __name__ == "__main__":
    main(rcvbuf, no_check, segment, udplite)
