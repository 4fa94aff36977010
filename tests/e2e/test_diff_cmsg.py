"""Ancillary data and the error queue as a user of the socket module meets them,
compared between this machine's kernel and an emulated host (the differential suite,
issue 6): the receive cmsgs each option asks for and their order, a control buffer of
every size (put_cmsg's cuts and MSG_CTRUNC), SO_RXQ_OVFL, the send cmsgs with right and
wrong lengths and values (and what the receiver got), IP_RECVERR's port unreachable
and TX timestamps on the error queue. The harness is test_udp_kernel_send.py's: the
same script with `socket` in a network namespace of its own and with `stackemu.socket`
on alice, and every key must be the same. A timestamp is "ok" when it lies between the
wall clock before the send and after the receive (diff_common.Clock).

What 6.18 answered is written next to each comparison.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from typing import Any

import pytest

from services.core import errno
from tests.e2e.diff_common import Clock, call, settled
from tests.e2e.test_udp_kernel_send import (
    LO,
    MSG_DONTWAIT,
    PORT,
    SOL_IP,
    SOL_SOCKET,
    SOL_UDP,
    Both,
    Host,
    compare,
    main,
    run_both,
)

IP_TOS, IP_TTL, IP_RECVOPTS, IP_RETOPTS, IP_PKTINFO = 1, 2, 6, 7, 8
IP_RECVERR, IP_RECVTTL, IP_RECVTOS, IP_RECVORIGDSTADDR, IP_CHECKSUM, IP_RECVFRAGSIZE = 11, 12, 13, 20, 23, 25
SO_RCVBUF, SO_PRIORITY, SO_TIMESTAMP, SO_TIMESTAMPNS, SO_MARK, SO_TIMESTAMPING = 8, 12, 29, 35, 36, 37
SO_ERROR, SO_RXQ_OVFL, SO_TIMESTAMP_NEW, SO_TIMESTAMPNS_NEW, SO_TIMESTAMPING_NEW = 4, 40, 63, 64, 65
SO_TXTIME, SCM_RIGHTS, SCM_TXTIME, SO_RCVMARK, SCM_TS_OPT_ID, SO_RCVPRIORITY = 61, 1, 61, 75, 81, 82
UDP_SEGMENT = 103
MSG_CTRUNC, MSG_ERRQUEUE = 0x8, 0x2000
# include/uapi/linux/net_tstamp.h
TX_HARDWARE, TX_SOFTWARE, RX_SOFTWARE, SOFTWARE = 0x1, 0x2, 0x8, 0x10
OPT_ID, TX_SCHED, OPT_TSONLY = 0x80, 0x100, 0x800
INT, U32, U16, U64 = struct.Struct("=i"), struct.Struct("=I"), struct.Struct("=H"), struct.Struct("=Q")
PKTINFO = struct.Struct("=i4s4s")
# struct sock_extended_err and the offender's struct sockaddr_in after it
EE = struct.Struct("=IBBBBII")


def pktinfo(ifindex: int, spec_dst: str, addr: str = "0.0.0.0") -> bytes:
    return PKTINFO.pack(ifindex, bytes(map(int, spec_dst.split("."))), bytes(map(int, addr.split("."))))


RECEIVE_OPTS: dict[str, list[tuple[int, int, int]]] = {
    "none": [],
    "IP_PKTINFO": [(SOL_IP, IP_PKTINFO, 1)],
    "IP_RECVTTL": [(SOL_IP, IP_RECVTTL, 1)],
    "IP_RECVTOS": [(SOL_IP, IP_RECVTOS, 1)],
    "IP_RECVOPTS and IP_RETOPTS": [(SOL_IP, IP_RECVOPTS, 1), (SOL_IP, IP_RETOPTS, 1)],
    "IP_RECVORIGDSTADDR": [(SOL_IP, IP_RECVORIGDSTADDR, 1)],
    "IP_CHECKSUM": [(SOL_IP, IP_CHECKSUM, 1)],
    "IP_RECVFRAGSIZE": [(SOL_IP, IP_RECVFRAGSIZE, 1)],
    "SOL_IP in reverse": [(SOL_IP, o, 1) for o in (IP_RECVORIGDSTADDR, IP_RECVTOS, IP_RECVTTL, IP_PKTINFO)],
    "SO_TIMESTAMP": [(SOL_SOCKET, SO_TIMESTAMP, 1)],
    "SO_TIMESTAMPNS": [(SOL_SOCKET, SO_TIMESTAMPNS, 1)],
    "SO_TIMESTAMP_NEW": [(SOL_SOCKET, SO_TIMESTAMP_NEW, 1)],
    "SO_TIMESTAMPNS_NEW": [(SOL_SOCKET, SO_TIMESTAMPNS_NEW, 1)],
    "TIMESTAMP then TIMESTAMPNS": [(SOL_SOCKET, SO_TIMESTAMP, 1), (SOL_SOCKET, SO_TIMESTAMPNS, 1)],
    "TIMESTAMPNS then TIMESTAMP": [(SOL_SOCKET, SO_TIMESTAMPNS, 1), (SOL_SOCKET, SO_TIMESTAMP, 1)],
    "TIMESTAMPNS, TIMESTAMP off": [(SOL_SOCKET, SO_TIMESTAMPNS, 1), (SOL_SOCKET, SO_TIMESTAMP, 0)],
    "SO_TIMESTAMPING rx": [(SOL_SOCKET, SO_TIMESTAMPING, RX_SOFTWARE | SOFTWARE)],
    "SO_TIMESTAMPING report only": [(SOL_SOCKET, SO_TIMESTAMPING, SOFTWARE)],
    "SO_TIMESTAMPING_NEW rx": [(SOL_SOCKET, SO_TIMESTAMPING_NEW, RX_SOFTWARE | SOFTWARE)],
    "TIMESTAMPING and TIMESTAMP": [
        (SOL_SOCKET, SO_TIMESTAMPING, RX_SOFTWARE | SOFTWARE),
        (SOL_SOCKET, SO_TIMESTAMP, 1),
    ],
    "SO_RCVMARK": [(SOL_SOCKET, SO_RCVMARK, 1)],
    "SO_RCVPRIORITY": [(SOL_SOCKET, SO_RCVPRIORITY, 1)],
    "SO_RXQ_OVFL without drops": [(SOL_SOCKET, SO_RXQ_OVFL, 1)],
    "everything": [
        (SOL_SOCKET, SO_RCVPRIORITY, 1),
        (SOL_SOCKET, SO_RCVMARK, 1),
        (SOL_SOCKET, SO_TIMESTAMPING, RX_SOFTWARE | SOFTWARE),
        (SOL_SOCKET, SO_TIMESTAMPNS, 1),
        (SOL_IP, IP_RECVFRAGSIZE, 1),
        (SOL_IP, IP_RECVORIGDSTADDR, 1),
        (SOL_IP, IP_RECVTOS, 1),
        (SOL_IP, IP_RECVTTL, 1),
        (SOL_IP, IP_PKTINFO, 1),
        (SOL_IP, IP_RECVOPTS, 1),
        (SOL_IP, IP_RETOPTS, 1),
    ],
}
CONTROL_SIZES = (
    0,
    1,
    15,
    16,
    17,
    20,
    24,
    31,
    32,
    40,
    48,
    56,
    60,
    64,
    72,
    80,
    88,
    96,
    100,
    104,
    112,
    120,
    256,
)


def receiving(h: Host) -> dict[str, Any]:
    """The cmsgs of each receive option from a sender with SO_MARK 7, SO_PRIORITY 3 and
    IP_TOS 0x10 (test_receive_cmsgs), and a control buffer of each size
    (test_control_sizes)."""
    out: dict[str, Any] = {}
    clock = Clock()
    s = h.sock(1)
    s.setsockopt(SOL_SOCKET, SO_TIMESTAMP, 1)  # receive stamping on for the whole group
    s.setsockopt(SOL_SOCKET, SO_MARK, 7)
    s.setsockopt(SOL_SOCKET, SO_PRIORITY, 3)
    s.setsockopt(SOL_IP, IP_TOS, 0x10)

    def one(r: Any, port: int, ancbufsize: int = 1024) -> Any:
        clock.begin()
        s.sendto(b"hello", (LO, port))
        h.settle()
        got = call(lambda: r.recvmsg(100, ancbufsize, MSG_DONTWAIT))
        if not isinstance(got, tuple):
            return got
        data, anc, flags, addr = got
        return [data.hex(), clock.anc(anc), flags, h.port(addr)]

    out["receive stamping on"] = h.stamping_on(s, 9)

    for i, (name, opts) in enumerate(RECEIVE_OPTS.items()):
        r = h.sock(10 + i)
        setting = [call(r.setsockopt, level, opt, v) for level, opt, v in opts]
        out[f"receive {name}"] = [setting, one(r, PORT + 10 + i)]
        r.close()

    r = h.sock(50)
    for level, opt, v in (
        (SOL_SOCKET, SO_TIMESTAMP, 1),
        (SOL_IP, IP_PKTINFO, 1),
        (SOL_IP, IP_RECVTTL, 1),
        (SOL_IP, IP_RECVTOS, 1),
    ):
        r.setsockopt(level, opt, v)
    out["control sizes"] = [[n, one(r, PORT + 50, n)] for n in CONTROL_SIZES]
    r.close()
    s.close()
    return out


def overflow(h: Host) -> dict[str, Any]:
    """SO_RXQ_OVFL: the drop count a datagram was queued with (test_rxq_ovfl)."""
    s = h.sock(60)
    r = h.sock(61)
    r.setsockopt(SOL_SOCKET, SO_RCVBUF, 1)  # 2304: one 1000-byte datagram fits
    r.setsockopt(SOL_SOCKET, SO_RXQ_OVFL, 1)
    seq = []
    for _ in range(3):
        s.sendto(bytes(1000), (LO, PORT + 61))
    seq.append(h.got(r))
    s.sendto(b"after drops", (LO, PORT + 61))
    seq.append(h.got(r))
    r.setsockopt(SOL_SOCKET, SO_RXQ_OVFL, 0)
    s.sendto(b"off", (LO, PORT + 61))
    seq.append(h.got(r))
    r.close()
    s.close()
    return {"SO_RXQ_OVFL": seq}


SEND_CASES: dict[str, tuple[bytes, list[tuple[int, int, bytes]]]] = {
    "IP_TTL int 5": (b"ttl", [(SOL_IP, IP_TTL, INT.pack(5))]),
    "IP_TTL int 0": (b"ttl", [(SOL_IP, IP_TTL, INT.pack(0))]),
    "IP_TTL int 256": (b"ttl", [(SOL_IP, IP_TTL, INT.pack(256))]),
    "IP_TTL byte": (b"ttl", [(SOL_IP, IP_TTL, b"\x05")]),
    "IP_TTL 8 bytes": (b"ttl", [(SOL_IP, IP_TTL, U64.pack(5))]),
    "IP_TOS int": (b"tos", [(SOL_IP, IP_TOS, INT.pack(0x28))]),
    "IP_TOS byte": (b"tos", [(SOL_IP, IP_TOS, b"\x2b")]),
    "IP_TOS 2 bytes": (b"tos", [(SOL_IP, IP_TOS, b"\x28\x00")]),
    "IP_TOS int 256": (b"tos", [(SOL_IP, IP_TOS, INT.pack(256))]),
    "IP_TOS int -1": (b"tos", [(SOL_IP, IP_TOS, INT.pack(-1))]),
    "IP_PKTINFO spec_dst": (b"pktinfo", [(SOL_IP, IP_PKTINFO, pktinfo(0, "127.0.0.5"))]),
    "IP_PKTINFO ifindex 1": (b"pktinfo", [(SOL_IP, IP_PKTINFO, pktinfo(1, "0.0.0.0"))]),
    "IP_PKTINFO ifindex 99": (b"pktinfo", [(SOL_IP, IP_PKTINFO, pktinfo(99, "0.0.0.0"))]),
    "IP_PKTINFO addr only": (b"pktinfo", [(SOL_IP, IP_PKTINFO, pktinfo(0, "0.0.0.0", "127.0.0.6"))]),
    "IP_PKTINFO 11 bytes": (b"pktinfo", [(SOL_IP, IP_PKTINFO, pktinfo(0, "127.0.0.5")[:11])]),
    "IP_RETOPTS nops": (b"opts", [(SOL_IP, IP_RETOPTS, b"\x01\x01\x01\x00")]),
    "IP_RETOPTS 3 bytes": (b"opts", [(SOL_IP, IP_RETOPTS, b"\x01\x01\x01")]),
    "IP_RETOPTS 41 bytes": (b"opts", [(SOL_IP, IP_RETOPTS, b"\x01" * 41)]),
    "IP_RETOPTS bad option": (b"opts", [(SOL_IP, IP_RETOPTS, b"\x44\x02\x00\x00")]),
    "SOL_IP unknown type": (b"ip99", [(SOL_IP, 99, INT.pack(1))]),
    "SOL_IP IP_RECVTTL": (b"ip12", [(SOL_IP, IP_RECVTTL, INT.pack(1))]),
    "SOL_IP IP_TTL empty": (b"empty", [(SOL_IP, IP_TTL, b"")]),
    "SO_MARK": (b"mark", [(SOL_SOCKET, SO_MARK, U32.pack(9))]),
    "SO_MARK 2 bytes": (b"mark", [(SOL_SOCKET, SO_MARK, b"\x09\x00")]),
    "SO_PRIORITY": (b"prio", [(SOL_SOCKET, SO_PRIORITY, U32.pack(5))]),
    "SO_PRIORITY 8 bytes": (b"prio", [(SOL_SOCKET, SO_PRIORITY, U64.pack(5))]),
    "SO_TIMESTAMPING bad flag": (b"ts", [(SOL_SOCKET, SO_TIMESTAMPING, U32.pack(RX_SOFTWARE))]),
    "SO_TIMESTAMPING 8 bytes": (b"ts", [(SOL_SOCKET, SO_TIMESTAMPING, U64.pack(TX_SOFTWARE))]),
    "SCM_TXTIME": (b"txtime", [(SOL_SOCKET, SCM_TXTIME, U64.pack(1))]),
    "SCM_TXTIME 4 bytes": (b"txtime", [(SOL_SOCKET, SCM_TXTIME, U32.pack(1))]),
    "SCM_TS_OPT_ID without OPT_ID": (b"optid", [(SOL_SOCKET, SCM_TS_OPT_ID, U32.pack(1))]),
    "SCM_RIGHTS": (b"rights", [(SOL_SOCKET, SCM_RIGHTS, INT.pack(0))]),
    "SOL_SOCKET unknown type": (b"so99", [(SOL_SOCKET, 99, INT.pack(1))]),
    "UDP_SEGMENT": (bytes(2500), [(SOL_UDP, UDP_SEGMENT, U16.pack(1000))]),
    "UDP_SEGMENT one segment": (b"short", [(SOL_UDP, UDP_SEGMENT, U16.pack(1000))]),
    "UDP_SEGMENT int": (bytes(2500), [(SOL_UDP, UDP_SEGMENT, INT.pack(1000))]),
    "UDP_SEGMENT 128 segments": (bytes(12800), [(SOL_UDP, UDP_SEGMENT, U16.pack(100))]),
    "UDP_SEGMENT 129 segments": (bytes(12801), [(SOL_UDP, UDP_SEGMENT, U16.pack(100))]),
    "SOL_UDP unknown type": (b"udp1", [(SOL_UDP, 1, INT.pack(1))]),
    "unknown level": (b"level", [(999, 1, INT.pack(1))]),
    "two of them": (b"two", [(SOL_IP, IP_TTL, INT.pack(9)), (SOL_IP, IP_TOS, b"\x04")]),
    "good then bad": (b"good bad", [(SOL_IP, IP_TTL, INT.pack(9)), (SOL_IP, 99, INT.pack(1))]),
}


def sending(h: Host) -> dict[str, Any]:
    """sendmsg with each control message, and what the receiver got (IP_RECVTTL,
    IP_RECVTOS, IP_PKTINFO, IP_RECVOPTS, SO_RCVMARK, SO_RCVPRIORITY on)
    (test_send_cmsgs)."""
    out: dict[str, Any] = {}
    r = h.sock(70)
    for level, opt in (
        (SOL_IP, IP_RECVTTL),
        (SOL_IP, IP_RECVTOS),
        (SOL_IP, IP_PKTINFO),
        (SOL_IP, IP_RECVOPTS),
        (SOL_SOCKET, SO_RCVMARK),
        (SOL_SOCKET, SO_RCVPRIORITY),
    ):
        r.setsockopt(level, opt, 1)
    s = h.sock(71)
    for name, (payload, anc) in SEND_CASES.items():
        sent = call(s.sendmsg, [payload], anc, 0, (LO, PORT + 70))
        out[f"send {name}"] = [sent, runs(h.got(r))]
    # SCM_TXTIME needs SO_TXTIME on the socket (struct sock_txtime: CLOCK_MONOTONIC,
    # no flags).
    x = h.sock(72)
    txtime = [call(lambda: x.setsockopt(SOL_SOCKET, SO_TXTIME, struct.pack("=iI", 1, 0)))]
    for data in (U64.pack(1), U32.pack(1)):
        txtime.append(call(x.sendmsg, [b"txtime"], [(SOL_SOCKET, SCM_TXTIME, data)], 0, (LO, PORT + 70)))
    out["send SCM_TXTIME with SO_TXTIME"] = [txtime, h.got(r)]
    for y in (r, s, x):
        y.close()
    return out


def runs(items: list[Any]) -> list[Any]:
    """A list as [count, item] runs (the 128 segments of a UDP_SEGMENT send)."""
    out: list[Any] = []
    for item in items:
        if out and out[-1][1] == item:
            out[-1][0] += 1
        else:
            out.append([1, item])
    return out


def ee(data: bytes) -> list[Any]:
    """IP_RECVERR's sock_extended_err as [errno, origin, type, code, info, data] and
    the offender's sockaddr_in as hex."""
    if len(data) < EE.size:
        return ["short", data.hex()]
    e_errno, origin, type_, code, _, info, e_data = EE.unpack_from(data)
    return [e_errno, origin, type_, code, info, e_data, data[EE.size :].hex()]


def errqueue(h: Host, s: Any, clock: Clock, limit: int = 20) -> list[Any]:
    """Everything on s's error queue: [len, the last 8 bytes, cmsgs (IP_RECVERR
    parsed), msg_flags, msg_name], then the errno that ended it (EAGAIN)."""
    seen: list[Any] = []
    for _ in range(limit):
        got = call(lambda: s.recvmsg(2000, 1024, MSG_ERRQUEUE | MSG_DONTWAIT))
        if not isinstance(got, tuple):
            return [*seen, got]
        data, anc, flags, addr = got
        cmsgs = [
            [lv, t, ee(d)] if (lv, t) == (SOL_IP, IP_RECVERR) else clock.cmsg(lv, t, d) for lv, t, d in anc
        ]
        seen.append([len(data), data[-8:].hex(), cmsgs, flags, h.port(addr)])
    return seen


def errors(h: Host) -> dict[str, Any]:
    """IP_RECVERR and a port unreachable (test_icmp_errqueue); TX timestamps
    (test_tx_timestamps)."""
    out: dict[str, Any] = {}
    clock = Clock()
    nobody = (LO, PORT + 99 - 1)
    a = h.sock(80)

    def send(payload: bytes, to: tuple[str, int] = nobody) -> Any:
        return settled(h, lambda: a.sendto(payload, to))

    out["no IP_RECVERR"] = [
        send(b"nobody"),
        h.got(a),
        call(lambda: a.getsockopt(SOL_SOCKET, SO_ERROR)),
        call(lambda: a.recvmsg(100, 100, MSG_ERRQUEUE | MSG_DONTWAIT)),
        send(b"nobody"),
    ]
    a.setsockopt(SOL_IP, IP_RECVERR, 1)
    out["IP_RECVERR errqueue first"] = [
        send(b"nobody"),
        errqueue(h, a, clock),
        call(lambda: a.getsockopt(SOL_SOCKET, SO_ERROR)),
        call(lambda: a.recv(10, MSG_DONTWAIT)),
    ]
    out["IP_RECVERR SO_ERROR first"] = [
        send(b"nobody 2"),
        call(lambda: a.getsockopt(SOL_SOCKET, SO_ERROR)),
        call(lambda: a.getsockopt(SOL_SOCKET, SO_ERROR)),
        errqueue(h, a, clock),
    ]
    out["IP_RECVERR recv first"] = [
        send(b"nobody 3"),
        call(lambda: a.recv(10, MSG_DONTWAIT)),
        call(lambda: a.recv(10, MSG_DONTWAIT)),
        call(lambda: a.recvmsg(100, 0, MSG_ERRQUEUE | MSG_DONTWAIT)[1:3]),
        errqueue(h, a, clock),
    ]
    out["IP_RECVERR send first"] = [
        send(b"nobody 4"),
        send(b"nobody 5"),
        send(b"pending", (LO, PORT + 80)),
        send(b"after", (LO, PORT + 80)),
        errqueue(h, a, clock),
        h.got(a),
    ]
    a.close()

    r = h.sock(81)
    t = h.sock(82)
    flags = TX_SOFTWARE | TX_SCHED | SOFTWARE | OPT_ID | OPT_TSONLY
    seq: list[Any] = [call(lambda: t.setsockopt(SOL_SOCKET, SO_TIMESTAMPING, flags))]
    seq.append(call(lambda: t.getsockopt(SOL_SOCKET, SO_TIMESTAMPING)))
    clock.begin()
    seq += [settled(h, t.sendto, payload, (LO, PORT + 81)) for payload in (b"one", b"two", b"three")]
    seq.append(errqueue(h, t, clock))
    out["TX timestamps OPT_TSONLY"] = seq

    t.setsockopt(SOL_SOCKET, SO_TIMESTAMPING, TX_SOFTWARE | SOFTWARE | OPT_ID)
    clock.begin()
    settled(h, lambda: t.sendto(b"with data", (LO, PORT + 81)))
    out["TX timestamps with data"] = errqueue(h, t, clock)

    t.setsockopt(SOL_SOCKET, SO_TIMESTAMPING, SOFTWARE | OPT_ID | OPT_TSONLY)
    clock.begin()
    per_call = [
        call(lambda: t.sendto(b"plain", (LO, PORT + 81))),
        call(
            lambda: t.sendmsg(
                [b"stamped"], [(SOL_SOCKET, SO_TIMESTAMPING, U32.pack(TX_SOFTWARE))], 0, (LO, PORT + 81)
            )
        ),
        call(lambda: t.sendto(b"plain", (LO, PORT + 81))),
        call(
            lambda: t.sendmsg(
                [b"id 42"],
                [
                    (SOL_SOCKET, SO_TIMESTAMPING, U32.pack(TX_SOFTWARE)),
                    (SOL_SOCKET, SCM_TS_OPT_ID, U32.pack(42)),
                ],
                0,
                (LO, PORT + 81),
            )
        ),
        call(
            lambda: t.sendmsg(
                [b"stamped"], [(SOL_SOCKET, SO_TIMESTAMPING, U32.pack(TX_SOFTWARE))], 0, (LO, PORT + 81)
            )
        ),
    ]
    h.settle()
    h.settle()
    out["TX timestamps per call"] = [per_call, errqueue(h, t, clock)]
    out["TX timestamps receiver"] = len(h.got(r))
    for x in (r, t):
        x.close()
    return out


# The tests.


@pytest.fixture(scope="module")
def both(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Both]:
    yield from run_both(__name__, str(tmp_path_factory.mktemp("state")))


EINVAL, EAGAIN = ["OSError", errno.EINVAL], ["BlockingIOError", errno.EAGAIN]
HELLO = b"hello".hex()


def test_receive_cmsgs(both: Both) -> None:
    kernel, emulated = both
    # 6.18: IP_PKTINFO is (ifindex 1, spec_dst, addr 127.0.0.1), IP_TTL an int (64),
    # IP_TOS one byte (0x10), IP_ORIGDSTADDR a sockaddr_in; no IP options, one
    # fragment and CHECKSUM_PARTIAL on lo give nothing for IP_RECVOPTS/RETOPTS,
    # IP_RECVFRAGSIZE and IP_CHECKSUM. The last of SO_TIMESTAMP/SO_TIMESTAMPNS wins and
    # switching either off clears both; SO_TIMESTAMPING's software stamp is the first
    # of three timespecs, reported with SOF_TIMESTAMPING_SOFTWARE alone too (without
    # OPT_RX_FILTER a stamp the skb has is reported, and the sender's SO_TIMESTAMP
    # keeps receive stamping on: net_enable_timestamp). SO_RCVMARK gives the
    # sender's mark (7); SO_RCVPRIORITY gives 6, not 3: the sender's IP_TOS 0x10 after
    # SO_PRIORITY set sk_priority to rt_tos2priority(0x10) = TC_PRIO_INTERACTIVE. The
    # order: timestamps (SO_TIMESTAMP* before SCM_TIMESTAMPING), mark, priority
    # (sock_recv_cmsgs), then SOL_IP's in ip_cmsg_recv_offset's fixed order whatever
    # the order they were set in.
    assert kernel["receive stamping on"] is True
    got = {name: kernel[f"receive {name}"][1] for name in RECEIVE_OPTS}
    assert got["none"] == [HELLO, [], 0, [LO, 1]]
    assert got["IP_PKTINFO"][1] == [[SOL_IP, IP_PKTINFO, pktinfo(1, LO, LO).hex()]]
    assert got["TIMESTAMP then TIMESTAMPNS"][1] == [[SOL_SOCKET, SO_TIMESTAMPNS, ["ok"]]]
    assert got["TIMESTAMPNS then TIMESTAMP"][1] == [[SOL_SOCKET, SO_TIMESTAMP, ["ok"]]]
    assert got["TIMESTAMPNS, TIMESTAMP off"][1] == []
    assert got["SO_TIMESTAMPING rx"][1] == [[SOL_SOCKET, SO_TIMESTAMPING, ["ok", "0", "0"]]]
    assert got["SO_RCVPRIORITY"][1] == [[SOL_SOCKET, SO_PRIORITY, U32.pack(6).hex()]]
    assert [c[:2] for c in got["everything"][1]] == [
        [SOL_SOCKET, SO_TIMESTAMPNS],
        [SOL_SOCKET, SO_TIMESTAMPING],
        [SOL_SOCKET, SO_MARK],
        [SOL_SOCKET, SO_PRIORITY],
        [SOL_IP, IP_PKTINFO],
        [SOL_IP, IP_TTL],
        [SOL_IP, IP_TOS],
        [SOL_IP, IP_RECVORIGDSTADDR],
    ]
    compare(kernel, emulated, "receive stamping on", *(f"receive {name}" for name in RECEIVE_OPTS))


def test_control_sizes(both: Both) -> None:
    kernel, emulated = both
    # 6.18 (put_cmsg): SCM_TIMESTAMP (CMSG_SPACE 32), IP_PKTINFO (32), IP_TTL (24),
    # IP_TOS (24): 112 bytes hold all of them. Below a cmsghdr (16) nothing is written;
    # a cmsg that does not fit is cut to what is left (its cmsg_len says so, CPython
    # returns the cut data) and MSG_CTRUNC set; the next ones are dropped.
    sizes = dict(kernel["control sizes"])
    assert sizes[15] == [HELLO, [], MSG_CTRUNC, [LO, 1]]
    assert sizes[16] == [HELLO, [[SOL_SOCKET, SO_TIMESTAMP, []]], MSG_CTRUNC, [LO, 1]]
    assert sizes[31][1] == [[SOL_SOCKET, SO_TIMESTAMP, ["cut", 15]]]
    assert sizes[48][1] == [[SOL_SOCKET, SO_TIMESTAMP, ["ok"]], [SOL_IP, IP_PKTINFO, ""]]
    assert sizes[104][2] == MSG_CTRUNC
    assert sizes[112][2] == 0 and len(sizes[112][1]) == 4
    compare(kernel, emulated, "control sizes")


def test_rxq_ovfl(both: Both) -> None:
    kernel, emulated = both
    # 6.18 (sock_recv_drops): the cmsg carries the drop count a datagram was queued
    # with, and only when it is nonzero: the one that fit was queued before the drops
    # (none), the next after two (2); off, none.
    assert kernel["SO_RXQ_OVFL"] == [
        [[1000, bytes(8).hex(), [LO, 60], []]],
        [[11, b"after dr".hex(), [LO, 60], [[SOL_SOCKET, SO_RXQ_OVFL, U32.pack(2).hex()]]]],
        [[3, b"off".hex(), [LO, 60], []]],
    ]
    compare(kernel, emulated, "SO_RXQ_OVFL")


def test_send_cmsgs(both: Both) -> None:
    kernel, emulated = both
    # 6.18 (ip_cmsg_send, __sock_cmsg_send, udp_cmsg_send): IP_TTL wants an int in
    # 1..255; IP_TOS an int or a byte in 0..255; IP_PKTINFO 12 bytes (spec_dst becomes
    # the source, ifindex 99 ENODEV, ipi_addr is ignored); IP_RETOPTS is cut to 40
    # bytes, padded to 4 and must parse (a bad timestamp option EINVAL); any other
    # SOL_IP type EINVAL, an empty one too; SO_MARK and SO_PRIORITY a u32;
    # SO_TIMESTAMPING a u32 of TX record flags only; SCM_TXTIME a u64 on a socket with
    # SO_TXTIME (EINVAL without); SCM_TS_OPT_ID EINVAL without OPT_ID; SCM_RIGHTS is
    # ignored; another SOL_SOCKET type EINVAL; UDP_SEGMENT a u16, at most 128
    # segments; another SOL_UDP type EINVAL; an unknown level is ignored; the first bad
    # cmsg fails the whole call.
    send = {name: kernel[f"send {name}"] for name in SEND_CASES}
    for name in ("IP_TTL int 0", "IP_TTL byte", "IP_TOS 2 bytes", "SOL_IP unknown type", "SCM_TXTIME"):
        assert send[name] == [EINVAL, []], name
    assert send["IP_PKTINFO ifindex 99"] == [["OSError", errno.ENODEV], []]
    assert send["IP_PKTINFO spec_dst"][1][0][1][2] == ["127.0.0.5", 71]
    assert send["UDP_SEGMENT 128 segments"][0] == 12800
    assert send["UDP_SEGMENT 128 segments"][1][0][0] == 128
    assert send["UDP_SEGMENT 129 segments"] == [EINVAL, []]
    assert send["SCM_RIGHTS"][0] == 6
    assert kernel["send SCM_TXTIME with SO_TXTIME"][0] == [None, 6, EINVAL]
    compare(kernel, emulated, *(f"send {name}" for name in SEND_CASES), "send SCM_TXTIME with SO_TXTIME")


def _refused(payload: bytes) -> list[Any]:
    """A port unreachable on the error queue as errqueue() prints it: ECONNREFUSED,
    SO_EE_ORIGIN_ICMP, ICMP_DEST_UNREACH, ICMP_PORT_UNREACH, offender 127.0.0.1, and
    msg_name the destination."""
    offender = struct.pack("=H", 2) + bytes([0, 0, 127, 0, 0, 1]) + bytes(8)
    recverr = [SOL_IP, IP_RECVERR, [errno.ECONNREFUSED, 2, 3, 3, 0, 0, offender.hex()]]
    return [len(payload), payload[-8:].hex(), [recverr], MSG_ERRQUEUE, [LO, 98]]


def test_icmp_errqueue(both: Both) -> None:
    kernel, emulated = both
    # 6.18: without IP_RECVERR an unconnected socket learns nothing; with it the error
    # is queued with the datagram and sk_err is set: reading the queue clears sk_err,
    # reading SO_ERROR does not empty the queue, a recv reports sk_err once, a
    # recvmsg(MSG_ERRQUEUE) without control room gives MSG_CTRUNC, and the next send
    # reports it (ECONNREFUSED, nothing sent) before the ones after go out.
    refused = ["ConnectionRefusedError", errno.ECONNREFUSED]
    assert kernel["no IP_RECVERR"] == [6, [], 0, EAGAIN, 6]
    assert kernel["IP_RECVERR errqueue first"] == [6, [_refused(b"nobody"), EAGAIN], 0, EAGAIN]
    assert kernel["IP_RECVERR SO_ERROR first"] == [8, errno.ECONNREFUSED, 0, [_refused(b"nobody 2"), EAGAIN]]
    assert kernel["IP_RECVERR recv first"] == [8, refused, EAGAIN, [[], MSG_ERRQUEUE | MSG_CTRUNC], [EAGAIN]]
    assert kernel["IP_RECVERR send first"] == [
        8,
        refused,
        7,
        5,
        [_refused(b"nobody 4"), EAGAIN],
        [[7, b"pending".hex(), [LO, 80], []], [5, b"after".hex(), [LO, 80], []]],
    ]
    compare(
        kernel,
        emulated,
        "no IP_RECVERR",
        "IP_RECVERR errqueue first",
        "IP_RECVERR SO_ERROR first",
        "IP_RECVERR recv first",
        "IP_RECVERR send first",
    )


def _stamp(info: int, key: int, length: int = 0, tail: bytes = b"") -> list[Any]:
    """A TX timestamp as errqueue() prints it: SCM_TIMESTAMPING (software stamp only),
    then IP_RECVERR with ENOMSG, SO_EE_ORIGIN_TIMESTAMPING, ee_info the SCM_TSTAMP_*
    and ee_data the OPT_ID key, no offender; MSG_ERRQUEUE and no msg_name."""
    recverr = [SOL_IP, IP_RECVERR, [errno.ENOMSG, 4, 0, 0, info, key, bytes(16).hex()]]
    return [
        length,
        tail.hex(),
        [[SOL_SOCKET, SO_TIMESTAMPING, ["ok", "0", "0"]], recverr],
        MSG_ERRQUEUE,
        None,
    ]


def test_tx_timestamps(both: Both) -> None:
    kernel, emulated = both
    # 6.18: SOF_TIMESTAMPING_TX_SCHED and TX_SOFTWARE each queue one entry per
    # datagram, SCHED (1) before SND (0), keyed 0, 1, 2 by OPT_ID; OPT_TSONLY leaves
    # the data out. Without it the data is the frame as lo sent it (14 + 20 + 8 + 9
    # bytes). With only report flags on the socket, a SO_TIMESTAMPING cmsg stamps
    # that datagram alone and the key counts stamped datagrams only (4, then 5 after
    # SCM_TS_OPT_ID's 42 for one). 9 datagrams reached the receiver.
    assert kernel["TX timestamps OPT_TSONLY"] == [
        None,
        TX_SOFTWARE | TX_SCHED | SOFTWARE | OPT_ID | OPT_TSONLY,
        3,
        3,
        5,
        [_stamp(info, key) for key in range(3) for info in (1, 0)] + [EAGAIN],
    ]
    assert kernel["TX timestamps with data"] == [_stamp(0, 3, 51, b"ith data"), EAGAIN]
    assert kernel["TX timestamps per call"] == [
        [5, 7, 5, 5, 7],
        [_stamp(0, 4), _stamp(0, 42), _stamp(0, 5), EAGAIN],
    ]
    assert kernel["TX timestamps receiver"] == 9
    compare(
        kernel,
        emulated,
        "TX timestamps OPT_TSONLY",
        "TX timestamps with data",
        "TX timestamps per call",
        "TX timestamps receiver",
    )


if __name__ == "__main__":
    main(receiving, overflow, sending, errors)
