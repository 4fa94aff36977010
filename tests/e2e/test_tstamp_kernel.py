"""Socket timestamps through the drop-in module, compared with this machine's kernel (the
harness of test_udp_kernel_send.py: the kernel in a network namespace of its own, the
emulator on alice): SO_TIMESTAMP(NS)/SO_TIMESTAMPING/SO_TXTIME values and errnos, the
receive cmsgs' order, levels, types and lengths, and the error queue's TX timestamps
(sock_extended_err, OPT_ID keys, payload length, msg_flags, msg_name, the IP cmsgs of
OPT_CMSG), SCM_TS_OPT_ID and SCM_TXTIME.

The two runs' clocks differ, so a timestamp is printed as whether it lies between the
times read just before the send and just after the receive (and an all-zero field as
0); everything else is printed as it is. What 6.18 answered is written next to each
comparison.
"""

from __future__ import annotations

import functools
import struct
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from services.core import errno
from tests.e2e.test_udp_kernel_send import (
    LO,
    PORT,
    SOL_IP,
    SOL_SOCKET,
    Both,
    Host,
    compare,
    errno_of,
    get,
    main,
    put,
    run_both,
)

SO_MARK, SO_PRIORITY, SO_RCVBUF, SO_BINDTODEVICE = 36, 12, 8, 25
SO_TIMESTAMP, SO_TIMESTAMPNS, SO_TIMESTAMPING = 29, 35, 37
SO_TIMESTAMP_NEW, SO_TIMESTAMPNS_NEW, SO_TIMESTAMPING_NEW = 63, 64, 65
SO_TXTIME, SCM_TS_OPT_ID, SO_RCVMARK, SO_RCVPRIORITY = 61, 81, 75, 82
IP_PKTINFO, IP_RECVERR, IP_RECVTTL, IP_RECVTOS, IP_RECVORIGDSTADDR = 8, 11, 12, 13, 20
MSG_DONTWAIT, MSG_ERRQUEUE, MSG_MORE = 0x40, 0x2000, 0x8000
TX_HW, TX_SW, RX_SW, SW, OPT_ID, SCHED = 1, 2, 8, 16, 128, 256
OPT_CMSG, TSONLY, STATS, RX_FILTER, TX_COMPLETION = 1 << 10, 1 << 11, 1 << 12, 1 << 17, 1 << 18
U32, INT = struct.Struct("=I"), struct.Struct("=i")
TIMES = {SO_TIMESTAMP, SO_TIMESTAMP_NEW, SO_TIMESTAMPNS, SO_TIMESTAMPNS_NEW}
EINVAL = ["errno", errno.EINVAL]


class Clock:
    """Timestamps as whether they fall between two readings of CLOCK_REALTIME."""

    def __init__(self) -> None:
        self.t0 = time.time_ns()

    def check(self, level: int, type_: int, data: bytes) -> Any:
        t1 = time.time_ns()
        if level == SOL_SOCKET and type_ in TIMES and len(data) == 16:
            sec, frac = struct.unpack("=qq", data)
            scale = 1000 if type_ in (SO_TIMESTAMP, SO_TIMESTAMP_NEW) else 1
            ns = sec * 10**9 + frac * scale
            return (self.t0 // 1000 * 1000 if scale == 1000 else self.t0) <= ns <= t1
        if level == SOL_SOCKET and type_ in (SO_TIMESTAMPING, SO_TIMESTAMPING_NEW) and len(data) != 48:
            return f"cut to {len(data)}"
        if level == SOL_SOCKET and type_ in (SO_TIMESTAMPING, SO_TIMESTAMPING_NEW):
            v = struct.unpack("=6q", data)
            return [
                0 if not (s or n) else self.t0 <= s * 10**9 + n <= t1
                for s, n in zip(v[::2], v[1::2], strict=True)
            ]
        return data.hex()


def anc(clock: Clock, items: list[tuple[int, int, bytes]]) -> list[Any]:
    return [[level, type_, len(data), clock.check(level, type_, data)] for level, type_, data in items]


def errqueue(h: Host, s: Any, clock: Clock, bufsize: int = 200, ancbufsize: int = 256) -> list[Any]:
    """Every error queue entry as [length, first 14 bytes, msg_flags, address, cmsgs],
    then the errno that ended the reading (EAGAIN)."""
    out: list[Any] = []
    for _ in range(50):
        try:
            data, items, flags, addr = s.recvmsg(bufsize, ancbufsize, MSG_ERRQUEUE | MSG_DONTWAIT)
        except OSError as e:
            return [*out, ["errno", e.errno]]
        out.append([len(data), data[:14].hex(), flags, h.port(addr), anc(clock, items)])
    return out


def options(h: Host) -> dict[str, Any]:
    out: dict[str, Any] = {}
    s = h.sock()
    out["SO_TIMESTAMPING bits"] = [put(s, SOL_SOCKET, SO_TIMESTAMPING, U32.pack(1 << b)) for b in range(32)]
    out["SO_TIMESTAMPING checks"] = [
        put(s, SOL_SOCKET, SO_TIMESTAMPING, (1 << 16) | OPT_ID),
        put(s, SOL_SOCKET, SO_TIMESTAMPING, STATS | TSONLY),
        put(s, SOL_SOCKET, SO_TIMESTAMPING, STATS | (1 << 15)),
        put(s, SOL_SOCKET, SO_TIMESTAMPING, b"\x10\0\0"),
        put(s, SOL_SOCKET, SO_TIMESTAMPING, U32.pack(SW) + bytes(5)),
        get(s, SOL_SOCKET, SO_TIMESTAMPING, 8),
        put(s, SOL_SOCKET, SO_TIMESTAMPING, struct.pack("=ii", SW | RX_SW, 7)),
        [get(s, SOL_SOCKET, SO_TIMESTAMPING, n) for n in (1, 4, 5, 8, 16)],
        get(s, SOL_SOCKET, SO_TIMESTAMPING_NEW, 8),
        put(s, SOL_SOCKET, SO_TIMESTAMPING_NEW, 0x58),
        get(s, SOL_SOCKET, SO_TIMESTAMPING_NEW, 8),
        get(s, SOL_SOCKET, SO_TIMESTAMPING, 8),
    ]
    b = h.sock()
    out["BIND_PHC"] = [
        put(b, SOL_SOCKET, SO_TIMESTAMPING, struct.pack("=ii", 1 << 15, 0)),
        put(b, SOL_SOCKET, SO_BINDTODEVICE, b"lo"),
        put(b, SOL_SOCKET, SO_TIMESTAMPING, struct.pack("=ii", 1 << 15, 0)),
        put(b, SOL_SOCKET, SO_TIMESTAMPING, 1 << 15),
    ]
    seqs = [
        [(SO_TIMESTAMP, 1)],
        [(SO_TIMESTAMPNS_NEW, 1)],
        [(SO_TIMESTAMP, 1), (SO_TIMESTAMPNS, 1)],
        [(SO_TIMESTAMPNS_NEW, 1), (SO_TIMESTAMP, 1)],
        [(SO_TIMESTAMPNS, 1), (SO_TIMESTAMP_NEW, 0)],
        [(SO_TIMESTAMP_NEW, 1), (SO_TIMESTAMPING, 0)],
        [(SO_TIMESTAMP_NEW, 1), (SO_TIMESTAMPING_NEW, 16)],
    ]
    got = []
    for seq in seqs:
        x = h.sock()
        for opt, val in seq:
            put(x, SOL_SOCKET, opt, val)
        got.append(
            [
                get(x, SOL_SOCKET, o)
                for o in (SO_TIMESTAMP, SO_TIMESTAMPNS, SO_TIMESTAMP_NEW, SO_TIMESTAMPNS_NEW)
            ]
        )
        x.close()
    out["SO_TIMESTAMP last wins"] = got
    t = h.sock()
    txt = struct.Struct("=iI").pack
    out["SO_TXTIME"] = [
        get(t, SOL_SOCKET, SO_TXTIME, 8),
        put(t, SOL_SOCKET, SO_TXTIME, txt(1, 3)),
        get(t, SOL_SOCKET, SO_TXTIME, 16),
        put(t, SOL_SOCKET, SO_TXTIME, txt(1, 4)),
        put(t, SOL_SOCKET, SO_TXTIME, txt(0, 0)),
        put(t, SOL_SOCKET, SO_TXTIME, txt(11, 0)),
        put(t, SOL_SOCKET, SO_TXTIME, txt(2, 0)),
        put(t, SOL_SOCKET, SO_TXTIME, txt(1, 0) + b"\0"),
        put(t, SOL_SOCKET, SO_TXTIME, b"\1\0\0"),
        get(t, SOL_SOCKET, SO_TXTIME, 3),
    ]
    for x in (s, b, t):
        x.close()
    return out


def receiving(h: Host) -> dict[str, Any]:
    out: dict[str, Any] = {}
    cases = {
        "SO_TIMESTAMP": [(SO_TIMESTAMP, 1)],
        "SO_TIMESTAMPNS": [(SO_TIMESTAMPNS, 1)],
        "SO_TIMESTAMP_NEW": [(SO_TIMESTAMP_NEW, 1)],
        "SO_TIMESTAMPNS_NEW": [(SO_TIMESTAMPNS_NEW, 1)],
        "SOFTWARE|RX_SOFTWARE": [(SO_TIMESTAMPING, SW | RX_SW)],
        "SOFTWARE": [(SO_TIMESTAMPING, SW)],
        "RX_SOFTWARE": [(SO_TIMESTAMPING, RX_SW)],
        "TIMESTAMPING_NEW": [(SO_TIMESTAMPING_NEW, SW | RX_SW)],
        "RX_FILTER": [(SO_TIMESTAMPING, SW | RX_FILTER)],
        "RX_FILTER|RX_SOFTWARE": [(SO_TIMESTAMPING, SW | RX_FILTER | RX_SW)],
        "both": [(SO_TIMESTAMP, 1), (SO_TIMESTAMPING, SW)],
        "hardware": [(SO_TIMESTAMPING, (1 << 6) | (1 << 2) | (1 << 13))],
        "mark priority": [(SO_RCVPRIORITY, 1), (SO_RCVMARK, 1), (40, 1), (SO_TIMESTAMP, 1)],
    }
    s = h.sock(1)
    put(s, SOL_SOCKET, SO_MARK, 7)
    put(s, SOL_SOCKET, SO_PRIORITY, 3)
    # SO_TIMESTAMP on the sender keeps receive stamping on throughout (a socket with
    # it holds net_enable_timestamp()), and the cases wait until it is.
    put(s, SOL_SOCKET, SO_TIMESTAMP, 1)
    out["rx stamping on"] = h.stamping_on(s, 9)
    for i, (name, opts) in enumerate(cases.items()):
        r = h.sock(10 + i)
        for opt, val in opts:
            put(r, SOL_SOCKET, opt, val)
        clock = Clock()
        s.sendto(b"abcd", (LO, PORT + 10 + i))
        h.settle()
        data, items, flags, _ = r.recvmsg(100, 256, MSG_DONTWAIT)
        out[f"rx {name}"] = [data.hex(), flags, anc(clock, items)]
        r.close()
    s.close()
    return out


def transmitting(h: Host) -> dict[str, Any]:
    out: dict[str, Any] = {}
    r = h.sock(0)  # the receiver, never read: what it gets is not the question here
    to = (LO, PORT)

    def case(
        name: str, tsflags: int, sends: list[Any], pre: Callable[[Any], object] | None = None, **kw: Any
    ) -> Any:
        s = h.sock()
        if pre is not None:
            pre(s)
        put(s, SOL_SOCKET, SO_TIMESTAMPING, tsflags)
        clock = Clock()
        sent = []
        for x in sends:
            data, control, flags = (
                (x, [], 0) if isinstance(x, bytes) else (x[0], x[1], x[2] if len(x) > 2 else 0)
            )
            sent.append(errno_of(functools.partial(s.sendmsg, [data], control, flags, to)))
        h.settle()
        out[f"tx {name}"] = [sent, errqueue(h, s, clock, **kw)]
        return s

    def ts(flags: int) -> list[tuple[int, int, bytes]]:
        return [(SOL_SOCKET, SO_TIMESTAMPING, U32.pack(flags))]

    # 6.18: entries of 46 bytes (the frame on lo: zero MACs, 0800, IP, UDP, "abcd"),
    # msg_flags MSG_ERRQUEUE, no address; SCM_TIMESTAMPING [ts0, 0, 0] then IP_RECVERR
    # (errno 42, origin 4, ee_info SCHED 1 / SND 0, ee_data the key).
    case("sched+snd id", TX_SW | SCHED | SW | OPT_ID, [b"abcd", b"efgh"])
    case("tsonly", TX_SW | SW | OPT_ID | TSONLY, [b"abcd"])
    case("no SOFTWARE", TX_SW, [b"abcd"])
    case("hardware only on lo", TX_HW | SW | (1 << 6), [b"abcd"])
    case("completion", TX_COMPLETION | SW | OPT_ID, [b"abcd"])
    case("trunc", TX_SW | SW, [b"abcd"], bufsize=10)
    case("ctrunc", TX_SW | SW, [b"abcd"], ancbufsize=40)
    case("SO_TIMESTAMPNS too", TX_SW | SW, [b"abcd"], pre=lambda s: put(s, SOL_SOCKET, SO_TIMESTAMPNS, 1))
    case(
        "OPT_CMSG pktinfo",
        TX_SW | SW | OPT_ID | OPT_CMSG,
        [b"abcd"],
        pre=lambda s: put(s, SOL_IP, IP_PKTINFO, 1),
    )
    case(
        "OPT_CMSG tsonly pktinfo",
        TX_SW | SW | OPT_CMSG | TSONLY,
        [b"abcd"],
        pre=lambda s: put(s, SOL_IP, IP_PKTINFO, 1),
    )
    case(
        "OPT_CMSG ttl tos origdst",
        TX_SW | SW | OPT_CMSG,
        [b"abcd"],
        pre=lambda s: [put(s, SOL_IP, o, 1) for o in (IP_RECVTTL, IP_RECVTOS, IP_RECVORIGDSTADDR)],
    )
    case("no OPT_CMSG ttl", TX_SW | SW, [b"abcd"], pre=lambda s: put(s, SOL_IP, IP_RECVTTL, 1))
    case("cmsg flags", SW | OPT_ID, [(b"a", ts(TX_SW)), b"b", (b"c", ts(SCHED))])
    case(
        "SCM_TS_OPT_ID",
        SW | OPT_ID | TX_SW,
        [(b"a", [(1, SCM_TS_OPT_ID, U32.pack(77))]), b"b", (b"c", [(1, SCM_TS_OPT_ID, U32.pack(0))]), b"d"],
    )
    case("SCM_TS_OPT_ID without OPT_ID", SW | TX_SW, [(b"a", [(1, SCM_TS_OPT_ID, U32.pack(77))])])
    case("SCM_TS_OPT_ID 8 bytes", SW | TX_SW | OPT_ID, [(b"a", [(1, SCM_TS_OPT_ID, struct.pack("=Q", 7))])])
    case("cmsg rx flags", SW, [(b"a", ts(RX_SW))])
    case("cmsg zero", TX_SW | SW | OPT_ID, [(b"a", ts(0)), b"b"])
    case("SCM_TXTIME without SO_TXTIME", SW, [(b"a", [(1, SO_TXTIME, struct.pack("=Q", 5))])])
    case(
        "SCM_TXTIME",
        SW | TX_SW,
        [(b"a", [(1, SO_TXTIME, struct.pack("=Q", 5))]), (b"b", [(1, SO_TXTIME, U32.pack(5))])],
        pre=lambda s: put(s, SOL_SOCKET, SO_TXTIME, struct.pack("=iI", 1, 0)),
    )
    case("cork", SW | TX_SW | OPT_ID | SCHED, [(b"a", [], MSG_MORE), (b"b", [], MSG_MORE), b"c", b"d"])
    case(
        "cork cmsg", SW | OPT_ID, [(b"a", ts(TX_SW), MSG_MORE), (b"b", ts(SCHED), MSG_MORE), (b"c", []), b"d"]
    )
    case("gso", SW | TX_SW | OPT_ID, [(b"x" * 3000, [(17, 103, struct.pack("=H", 1000))]), b"y"])
    case(
        "rcvbuf min",
        TX_SW | SCHED | SW | OPT_ID | TSONLY,
        [b"a" * 10] * 3,
        pre=lambda s: put(s, SOL_SOCKET, SO_RCVBUF, 1),
    )
    s = case("OPT_ID again", SW | TX_SW | OPT_ID, [b"a", b"b"])
    clock = Clock()
    # Settled after each send: the flags an entry is completed with are the socket's
    # when the stamp is taken (at once on the kernel's lo; when the NIC's clone comes
    # back up on the emulator).
    put(s, SOL_SOCKET, SO_TIMESTAMPING, SW | TX_SW | OPT_ID)
    s.sendto(b"c", to)
    h.settle()
    put(s, SOL_SOCKET, SO_TIMESTAMPING, SW | TX_SW)
    s.sendto(b"d", to)
    h.settle()
    put(s, SOL_SOCKET, SO_TIMESTAMPING, SW | TX_SW | OPT_ID)
    s.sendto(b"e", to)
    h.settle()
    out["tx OPT_ID again, off and on"] = errqueue(h, s, clock)
    # An ICMP error's entry carries the ICMP packet's receive time.
    e = h.sock()
    put(e, SOL_IP, IP_RECVERR, 1)
    put(e, SOL_SOCKET, SO_TIMESTAMP, 1)
    clock = Clock()
    e.sendto(b"x", (LO, PORT + 999))
    # Twice, as diff_common.settled() explains: the emulated host's ICMP error may come
    # after the first sentinel.
    h.settle()
    h.settle()
    out["icmp error with SO_TIMESTAMP"] = errqueue(h, e, clock)
    r.close()
    return out


@pytest.fixture(scope="module")
def both(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Both]:
    yield from run_both(__name__, str(tmp_path_factory.mktemp("state")))


def test_options(both: Both) -> None:
    kernel, emulated = both
    # 6.18: bits 0..18 alone but 12 (OPT_STATS without OPT_TSONLY: EINVAL), 15
    # (BIND_PHC unbound: EOPNOTSUPP) and 16 (OPT_ID_TCP without OPT_ID: EINVAL).
    bits = kernel["SO_TIMESTAMPING bits"]
    assert [i for i, v in enumerate(bits) if v is None] == [b for b in range(19) if b not in (12, 15, 16)]
    assert bits[15] == ["errno", errno.EOPNOTSUPP] and bits[19:] == [EINVAL] * 13
    assert kernel["SO_TIMESTAMPING checks"] == [
        None,
        None,
        EINVAL,
        EINVAL,
        None,
        "1000000000000000",
        None,
        ["18", "18000000", "1800000000", "1800000000000000", "1800000000000000"],
        "0000000000000000",
        None,
        "5800000000000000",
        "5800000000000000",
    ]
    assert kernel["BIND_PHC"] == [["errno", errno.EOPNOTSUPP], None, EINVAL, EINVAL]
    assert kernel["SO_TIMESTAMP last wins"] == [
        [1, 0, 0, 0],
        [0, 0, 1, 1],
        [0, 1, 0, 0],
        [1, 0, 0, 0],
        [0, 0, 0, 0],
        [1, 0, 0, 0],
        [0, 0, 1, 0],
    ]
    assert kernel["SO_TXTIME"] == [
        "0000000000000000",
        None,
        "0100000003000000",
        EINVAL,
        None,
        None,
        EINVAL,
        EINVAL,
        EINVAL,
        "0b0000",
    ]
    compare(
        kernel,
        emulated,
        "SO_TIMESTAMPING bits",
        "SO_TIMESTAMPING checks",
        "BIND_PHC",
        "SO_TIMESTAMP last wins",
        "SO_TXTIME",
    )


def test_receive_cmsgs(both: Both) -> None:
    kernel, emulated = both
    tv = [[SOL_SOCKET, SO_TIMESTAMP, 16, True]]
    ting = [[SOL_SOCKET, SO_TIMESTAMPING, 48, [True, 0, 0]]]
    # 6.18: the cmsg each option asks for, the stamp in the send-to-receive window;
    # RX_SOFTWARE alone and SOFTWARE with OPT_RX_FILTER nothing; no hardware on lo;
    # SO_TIMESTAMP, then SO_MARK (the sender's 7), then SO_PRIORITY (3) and no
    # SO_RXQ_OVFL without drops.
    assert kernel["rx stamping on"] is True
    assert kernel["rx SO_TIMESTAMP"] == ["61626364", 0, tv]
    assert kernel["rx SO_TIMESTAMPNS_NEW"] == ["61626364", 0, [[SOL_SOCKET, SO_TIMESTAMPNS_NEW, 16, True]]]
    assert kernel["rx SOFTWARE"] == ["61626364", 0, ting]
    assert kernel["rx RX_SOFTWARE"] == ["61626364", 0, []]
    assert kernel["rx RX_FILTER"] == ["61626364", 0, []]
    assert kernel["rx both"] == ["61626364", 0, tv + ting]
    assert kernel["rx hardware"] == ["61626364", 0, []]
    assert kernel["rx mark priority"] == [
        "61626364",
        0,
        [*tv, [SOL_SOCKET, SO_MARK, 4, "07000000"], [SOL_SOCKET, SO_PRIORITY, 4, "03000000"]],
    ]
    compare(kernel, emulated, *(k for k in kernel if k.startswith("rx ")))


def test_error_queue(both: Both) -> None:
    kernel, emulated = both
    frame = "0000000000000000000000000800"
    ting = [SOL_SOCKET, SO_TIMESTAMPING, 48, [True, 0, 0]]

    def recverr(tstype: int, key: int, offender: str = "00" * 16) -> list[Any]:
        ee = struct.pack("=IBBBBII", errno.ENOMSG, 4, 0, 0, 0, tstype, key).hex()
        return [SOL_IP, IP_RECVERR, 32, ee + offender]

    eagain = ["errno", errno.EAGAIN]
    assert kernel["tx sched+snd id"] == [
        [4, 4],
        [
            [46, frame, MSG_ERRQUEUE, None, [ting, recverr(1, 0)]],
            [46, frame, MSG_ERRQUEUE, None, [ting, recverr(0, 0)]],
            [46, frame, MSG_ERRQUEUE, None, [ting, recverr(1, 1)]],
            [46, frame, MSG_ERRQUEUE, None, [ting, recverr(0, 1)]],
            eagain,
        ],
    ]
    assert kernel["tx tsonly"] == [[4], [[0, "", MSG_ERRQUEUE, None, [ting, recverr(0, 0)]], eagain]]
    assert kernel["tx no SOFTWARE"] == [[4], [[46, frame, MSG_ERRQUEUE, None, [recverr(0, 0)]], eagain]]
    assert kernel["tx hardware only on lo"] == [[4], [eagain]]
    assert kernel["tx completion"] == [[4], [eagain]]
    lo = "7f000001"
    assert kernel["tx OPT_CMSG pktinfo"][1][0][4] == [
        ting,
        [SOL_IP, IP_PKTINFO, 12, "01000000" + lo + lo],
        recverr(0, 0, "02000000" + lo + "00" * 8),
    ]
    assert kernel["tx SCM_TS_OPT_ID"][1][0][4][1] == recverr(0, 77)
    assert [e[4][1][3][24:32] for e in kernel["tx SCM_TS_OPT_ID"][1][:4]] == [
        "4d000000",
        "00000000",
        "00000000",
        "01000000",
    ]
    for name in ("SCM_TS_OPT_ID without OPT_ID", "SCM_TS_OPT_ID 8 bytes", "cmsg rx flags"):
        assert kernel[f"tx {name}"] == [[EINVAL], [eagain]]
    assert kernel["tx SCM_TXTIME"][0] == [1, EINVAL]
    # A corked datagram is one entry and one key; the GSO datagram one entry on lo.
    assert [e[0] for e in kernel["tx cork"][1][:4]] == [45, 45, 43, 43]
    assert [e[0] for e in kernel["tx gso"][1][:2]] == [200, 43]
    # 40 bytes of control: SCM_TIMESTAMPING cut to 24 bytes of data, MSG_CTRUNC, and
    # no room left for IP_RECVERR.
    assert kernel["tx ctrunc"][1][0][2:] == [
        MSG_ERRQUEUE | 8,
        None,
        [[SOL_SOCKET, SO_TIMESTAMPING, 24, "cut to 24"]],
    ]
    # OPT_ID set again while set keeps counting (2); off, a stamp has ee_data 0; on
    # again, keys start from 0.
    assert [e[4][1][3][24:32] for e in kernel["tx OPT_ID again, off and on"][:3]] == [
        "02000000",
        "00000000",
        "00000000",
    ]
    # rcvbuf 2304: two entries of 832 fit, the third would reach it.
    assert len(kernel["tx rcvbuf min"][1]) == 3
    compare(kernel, emulated, *(k for k in kernel if k.startswith("tx ")))


def test_icmp_error_timestamp(both: Both) -> None:
    kernel, emulated = both
    # 6.18: SCM_TIMESTAMP (the ICMP packet's arrival) before IP_RECVERR, msg_name the
    # destination.
    entry = kernel["icmp error with SO_TIMESTAMP"][0]
    assert entry[3] == [LO, 999] and entry[4][0] == [SOL_SOCKET, SO_TIMESTAMP, 16, True]
    compare(kernel, emulated, "icmp error with SO_TIMESTAMP")


if __name__ == "__main__":
    main(options, receiving, transmitting)
