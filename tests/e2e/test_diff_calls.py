"""The socket calls as a user of the socket module makes them, compared between this
machine's kernel and an emulated host (the differential suite, issue 6): socket()'s
argument checks, bind/connect/getsockname/getpeername, the send and receive calls with
their flags and msg_flags, a closed socket, blocking modes and timeouts, shutdown, and
select readiness. The harness is test_udp_kernel_send.py's: the same script runs with
`socket` in a network namespace of its own and with `stackemu.socket` on alice (and
`select` or `stackemu.select` to go with it), and every key must be the same.

What 6.18 answered is written next to each comparison.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import pytest

from services.core import errno
from tests.e2e.diff_common import bounded, call, select_module, settled
from tests.e2e.test_udp_kernel_send import LO, PORT, SOL_SOCKET, Both, Host, compare, main, run_both

AF_UNSPEC, AF_INET, AF_MAX = 0, 2, 46
SOCK_STREAM, SOCK_DGRAM, SOCK_RAW, SOCK_RDM, SOCK_SEQPACKET, SOCK_MAX = 1, 2, 3, 4, 5, 11
SOCK_NONBLOCK, SOCK_CLOEXEC = 0o4000, 0o2000000
SO_TYPE, SO_ERROR, SO_PROTOCOL, SO_DOMAIN = 3, 4, 38, 39
MSG_PEEK, MSG_TRUNC, MSG_DONTWAIT, MSG_CTRUNC, MSG_ERRQUEUE = 0x2, 0x20, 0x40, 0x8, 0x2000
SHUT_RD, SHUT_WR, SHUT_RDWR = 0, 1, 2
TYPES = (SOCK_DGRAM, SOCK_STREAM, SOCK_RAW, SOCK_RDM, SOCK_SEQPACKET, 0, SOCK_MAX, 100)
PROTOS = (0, 17, 136, 6, 1, 255, 262, 263, 1000)
FLAGGED = (
    SOCK_DGRAM | SOCK_NONBLOCK,
    SOCK_DGRAM | SOCK_CLOEXEC,
    SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC,
    SOCK_DGRAM | 0x100,
    SOCK_DGRAM | 0x10000000,
    SOCK_DGRAM | SOCK_NONBLOCK | 0x40,
)


def created(h: Host, family: int, type_: int, proto: int) -> Any:
    """socket()'s outcome: the new socket's type, proto and timeout as Python sees them
    and SO_TYPE, SO_PROTOCOL and SO_DOMAIN as the kernel says, or the error."""

    def make() -> list[Any]:
        s = h.sk.socket(family, type_, proto)
        try:
            seen = [int(s.type), s.proto, s.gettimeout()]
            return seen + [call(s.getsockopt, SOL_SOCKET, o) for o in (SO_TYPE, SO_PROTOCOL, SO_DOMAIN)]
        finally:
            s.close()

    return call(make)


def creating(h: Host) -> dict[str, Any]:
    """socket(): __sys_socket, __sock_create, inet_create (test_socket_matrix)."""
    return {
        "socket families": [[f, created(h, f, SOCK_DGRAM, 0)] for f in (AF_UNSPEC, AF_MAX, 1000)],
        "socket types and protocols": [[t, p, created(h, AF_INET, t, p)] for t in TYPES for p in PROTOS],
        "socket flags": [[t, created(h, AF_INET, t, 0)] for t in FLAGGED],
    }


def addressing(h: Host) -> dict[str, Any]:
    """bind, connect, getsockname, getpeername (test_addresses)."""
    out: dict[str, Any] = {}
    s = h.sock()
    r = h.sock(1)
    out["unbound names"] = [call(s.getsockname), call(s.getpeername)]
    out["bind"] = [
        call(lambda: s.bind(("127.0.0.1", PORT + 2))),
        call(s.getsockname),
        call(lambda: s.bind(("127.0.0.1", PORT + 3))),
        call(lambda: h.sock().bind(("127.0.0.1", PORT + 2))),
        call(lambda: h.sock().bind(("192.0.2.1", PORT + 4))),
        call(lambda: h.sock().bind(("255.255.255.255", PORT + 4))),
        call(lambda: h.sock().bind(("224.0.0.1", PORT + 4))),
        call(lambda: h.sock().bind(("127.0.0.2", PORT + 2))),
    ]
    c = h.sock()
    out["connect"] = [
        call(lambda: c.connect((LO, PORT + 1))),
        h.port(c.getsockname()),
        call(c.getpeername),
        call(lambda: c.connect((LO, PORT + 5))),
        call(c.getpeername),
        settled(h, lambda: c.send(b"to 5")),
        call(lambda: c.connect(("192.0.2.1", 53))),
        call(c.getpeername),
        call(lambda: c.connect(("255.255.255.255", PORT + 1))),
        call(lambda: c.connect((LO, 0))),
        call(c.getpeername),
        call(lambda: c.send(b"to 0")),
        call(lambda: c.connect(("0.0.0.0", PORT + 1))),
        call(c.getpeername),
        call(lambda: c.send(b"to any")),
        call(lambda: c.connect_ex((LO, PORT + 1))),
        call(lambda: c.sendto(b"sendto on connected", (LO, PORT + 1))),
        h.got(r),
    ]
    for x in (s, r, c):
        x.close()
    return out


def transfer(h: Host) -> dict[str, Any]:
    """sendto/sendmsg/recvfrom/recvmsg/recv_into/recvmsg_into and their flags
    (test_send_and_receive)."""
    out: dict[str, Any] = {}
    r = h.sock(10)
    s = h.sock(11)
    to = (LO, PORT + 10)

    def msg(m: tuple[bytes, list[Any], int, Any]) -> list[Any]:
        return [m[0].hex(), len(m[1]), m[2], h.port(m[3])]

    def into(sizes: tuple[int, ...], anc: int, flags: int) -> list[Any]:
        bufs = [bytearray(n) for n in sizes]
        n, ancdata, msg_flags, addr = r.recvmsg_into(bufs, anc, flags)
        return [n, [b.hex() for b in bufs], len(ancdata), msg_flags, h.port(addr)]

    out["sends"] = [
        call(lambda: s.sendto(b"sendto", to)),
        call(lambda: s.sendto(b"sendto flags", MSG_DONTWAIT, to)),
        call(lambda: s.sendmsg([b"send", b"msg", b"", b"iov"], [], 0, to)),
        call(lambda: s.sendmsg([memoryview(b"view"), bytearray(b"array")], (), 0, to)),
        call(lambda: s.sendmsg([b"x"] * 1024, [], 0, to)),
        call(lambda: s.sendmsg([b"x"] * 1025, [], 0, to)),
        call(lambda: s.sendto(b"x", ("127.0.0.1", 65535))),
    ]
    h.settle()
    out["receives"] = [
        call(lambda: r.recvfrom(100, MSG_DONTWAIT)[0]),
        call(lambda: h.port(r.recvfrom(100, MSG_DONTWAIT)[1])),
        call(lambda: msg(r.recvmsg(5, 0, MSG_PEEK))),
        call(lambda: into((3, 4, 10), 0, 0)),
        call(lambda: into((2, 2), 64, MSG_PEEK)),
        call(lambda: into((2, 2), 64, MSG_TRUNC)),
        call(lambda: into((0,), 0, 0)),
        h.drain(r),  # what is left (nothing), so that a difference above stops here
    ]
    s.sendto(b"0123456789", to)
    s.sendto(b"abcdefghij", to)
    h.settle()
    buf = bytearray(16)
    out["recv_into and recvfrom_into"] = [
        call(lambda: [r.recv_into(buf, 4, MSG_PEEK), buf.hex()]),
        call(lambda: [r.recv_into(buf), buf.hex()]),
        call(lambda: (lambda n, a: [n, h.port(a), buf.hex()])(*r.recvfrom_into(buf, 3))),
        call(lambda: r.recv_into(buf, 4, MSG_DONTWAIT)),
        call(lambda: r.recvfrom(100, MSG_DONTWAIT)),
        call(lambda: r.recvmsg(100, 0, MSG_DONTWAIT | MSG_PEEK)),
        call(lambda: r.recvmsg(100, 0, MSG_ERRQUEUE)),
    ]
    s.sendto(b"ctrunc", to)
    s.sendto(b"no room", to)
    h.settle()
    r.setsockopt(0, 12, 1)  # IP_RECVTTL: a cmsg for a control buffer too small for it
    out["msg_flags out"] = [
        call(lambda: msg(r.recvmsg(100, 8, MSG_DONTWAIT))),
        call(lambda: msg(r.recvmsg(2, 0, MSG_DONTWAIT))),
    ]
    for x in (r, s):
        x.close()
    return out


def modes(h: Host) -> dict[str, Any]:
    """A closed socket, setblocking/settimeout and what an empty queue does then
    (test_closed_and_timeouts)."""
    out: dict[str, Any] = {}
    d = h.sock(20)
    d.close()
    out["closed"] = [
        d.fileno(),
        call(lambda: d.send(b"x")),
        call(lambda: d.sendto(b"x", (LO, PORT))),
        call(lambda: d.recv(1)),
        call(lambda: d.bind((LO, PORT + 21))),
        call(d.getsockname),
        call(lambda: d.getsockopt(SOL_SOCKET, SO_TYPE)),
        call(lambda: d.setsockopt(SOL_SOCKET, SO_TYPE, 1)),
        call(d.close),
        call(lambda: h.sock(20).getsockname()),
    ]
    r = h.sock(22)
    seq: list[Any] = [r.gettimeout(), r.getblocking()]
    r.setblocking(False)
    seq += [r.gettimeout(), r.getblocking(), call(lambda: r.recv(1)), call(lambda: r.recvmsg(1))]
    r.settimeout(0.05)
    seq += [r.gettimeout(), r.getblocking(), call(lambda: r.recv(1)), call(lambda: r.recvfrom(1))]
    r.settimeout(0)
    seq += [r.gettimeout(), call(lambda: r.recv(1))]
    r.setblocking(True)
    seq += [r.gettimeout(), call(lambda: r.recv(1, MSG_DONTWAIT))]
    h.sock(23).sendto(b"late", (LO, PORT + 22))
    seq += [bounded(lambda: r.recv(10))]
    out["blocking modes"] = seq
    r.close()

    # A blocking recv in a thread, released by a datagram.
    b = h.sock(24)
    got: list[Any] = []
    t = threading.Thread(target=lambda: got.append(call(lambda: b.recv(100))), daemon=True)
    t.start()
    h.sock(25).sendto(b"wake", (LO, PORT + 24))
    t.join(5)
    out["blocked recv woken"] = got
    b.close()
    return out


def shutting(h: Host) -> dict[str, Any]:
    """shutdown() on unconnected and connected sockets, and the calls after it
    (test_shutdown)."""
    out: dict[str, Any] = {}
    u = h.sock(30)
    out["shutdown unconnected"] = [
        call(lambda: u.shutdown(SHUT_RD)),
        bounded(lambda: u.recv(10)),
        call(lambda: u.recv(10, MSG_DONTWAIT)),
        call(lambda: u.shutdown(3)),
        call(lambda: u.shutdown(-1)),
        settled(h, u.sendto, b"after RD", (LO, PORT + 30)),
        bounded(lambda: u.recv(10)),
        bounded(lambda: u.recv(10)),
    ]
    c = h.sock(31)
    c.connect((LO, PORT + 32))
    p = h.sock(32)
    p.sendto(b"queued", (LO, PORT + 31))
    h.settle()
    out["shutdown connected"] = [
        call(lambda: c.shutdown(SHUT_WR)),
        call(lambda: c.send(b"after WR")),
        call(lambda: c.sendto(b"after WR", (LO, PORT + 32))),
        bounded(lambda: c.recv(10)),
        call(lambda: c.shutdown(SHUT_RD)),
        bounded(lambda: c.recv(10)),
        call(lambda: c.getsockopt(SOL_SOCKET, SO_ERROR)),
        call(c.getpeername),
        call(lambda: c.shutdown(SHUT_RDWR)),
        call(lambda: p.sendto(b"to shut", (LO, PORT + 31))),
        h.got(c),
        call(lambda: p.recv(10, MSG_DONTWAIT)),
    ]
    for x in (u, c, p):
        x.close()
    return out


def readiness(h: Host) -> dict[str, Any]:
    """select.select on the kernel, stackemu.select.select on the emulated host
    (test_select)."""
    sel = select_module(h)
    r = h.sock(40)
    s = h.sock(41)
    names = {id(r): "r", id(s): "s"}

    def ready(rl: list[Any], wl: list[Any], xl: list[Any], timeout: float = 0) -> Any:
        return call(lambda: [[names[id(x)] for x in got] for got in sel.select(rl, wl, xl, timeout)])

    out: dict[str, Any] = {}
    seq = [ready([r, s], [r, s], [r, s])]
    s.sendto(b"ready", (LO, PORT + 40))
    h.settle()
    seq += [ready([r, s], [], [r, s]), call(lambda: r.recv(10, MSG_DONTWAIT)), ready([r], [], [], 0.05)]
    r.setsockopt(0, 11, 1)  # IP_RECVERR: a port unreachable is queued on the error queue
    settled(h, lambda: r.sendto(b"nobody", (LO, PORT + 49)))
    seq += [
        ready([r], [r], [r]),
        call(lambda: r.getsockopt(SOL_SOCKET, SO_ERROR)),
        ready([r], [r], [r]),
        call(lambda: r.recvmsg(100, 100, MSG_ERRQUEUE | MSG_DONTWAIT)[2]),
        ready([r], [r], [r]),
    ]
    seq += [call(lambda: r.shutdown(SHUT_RD)), ready([r], [r], [r])]
    out["select"] = seq

    w = h.sock(42)
    names[id(w)] = "w"
    got: list[Any] = []
    t = threading.Thread(target=lambda: got.append(ready([w], [], [], 5)), daemon=True)
    t.start()
    s.sendto(b"wake", (LO, PORT + 42))
    t.join(6)
    out["select woken"] = got
    d = h.sock()
    d.close()
    out["select closed"] = ready([d], [], [])
    for x in (r, s, w):
        x.close()
    return out


# The tests.


@pytest.fixture(scope="module")
def both(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Both]:
    yield from run_both(__name__, str(tmp_path_factory.mktemp("state")))


def _err(name: str, n: int) -> list[Any]:
    return [name, n]


EINVAL, EAGAIN = _err("OSError", errno.EINVAL), _err("BlockingIOError", errno.EAGAIN)
ENOTCONN = _err("OSError", errno.ENOTCONN)


def test_socket_matrix(both: Both) -> None:
    kernel, emulated = both
    # 6.18: a family past AF_MAX or unregistered EAFNOSUPPORT; for AF_INET a type past
    # SOCK_MAX or flags other than SOCK_NONBLOCK|SOCK_CLOEXEC EINVAL (__sys_socket), a
    # type inet has no entry for (SOCK_RDM, SOCK_SEQPACKET, 0) ESOCKTNOSUPPORT, a
    # protocol the type does not carry EPROTONOSUPPORT and one past IPPROTO_MAX (263+)
    # EINVAL; SOCK_DGRAM takes 0/17 (UDP) and 136 (UDP-Lite), 1 is a ping socket
    # (EACCES: ping_group_range "1 0"); SOCK_STREAM is TCP (0, 6) or MPTCP (262);
    # SOCK_RAW takes any protocol but 0 (root has CAP_NET_RAW). SOCK_NONBLOCK gives
    # timeout 0.0; the type Python reports is without the flags.
    eaf = _err("OSError", errno.EAFNOSUPPORT)
    assert kernel["socket families"] == [[0, eaf], [AF_MAX, eaf], [1000, eaf]]
    matrix = {(t, p): v for t, p, v in kernel["socket types and protocols"]}
    assert matrix[(SOCK_DGRAM, 0)] == [2, 0, None, 2, 17, 2]
    assert matrix[(SOCK_DGRAM, 136)] == [2, 136, None, 2, 136, 2]
    assert matrix[(SOCK_DGRAM, 6)] == _err("OSError", errno.EPROTONOSUPPORT)
    assert matrix[(SOCK_DGRAM, 1)] == _err("PermissionError", errno.EACCES)
    assert matrix[(SOCK_DGRAM, 263)] == EINVAL
    assert matrix[(SOCK_STREAM, 0)] == [1, 0, None, 1, 6, 2]
    assert matrix[(SOCK_RAW, 0)] == _err("OSError", errno.EPROTONOSUPPORT)
    assert matrix[(SOCK_RAW, 255)] == [3, 255, None, 3, 255, 2]
    assert matrix[(SOCK_SEQPACKET, 0)] == _err("OSError", errno.ESOCKTNOSUPPORT)
    assert matrix[(SOCK_MAX, 0)] == EINVAL
    assert kernel["socket flags"] == [
        [FLAGGED[0], [2, 0, 0.0, 2, 17, 2]],
        [FLAGGED[1], [2, 0, None, 2, 17, 2]],
        [FLAGGED[2], [2, 0, 0.0, 2, 17, 2]],
        [FLAGGED[3], EINVAL],
        [FLAGGED[4], EINVAL],
        [FLAGGED[5], EINVAL],
    ]
    # The emulator has UDP and UDP-Lite only: where 6.18 creates a TCP, MPTCP or raw
    # socket, it refuses with ESOCKTNOSUPPORT (README: "Where this differs"); the rest
    # of the matrix is the kernel's.
    absent = _err("OSError", errno.ESOCKTNOSUPPORT)
    expected = dict(kernel)
    expected["socket types and protocols"] = [
        [t, p, absent if t in (SOCK_STREAM, SOCK_RAW) and not isinstance(v[0], str) else v]
        for t, p, v in kernel["socket types and protocols"]
    ]
    compare(expected, emulated, "socket families", "socket types and protocols", "socket flags")


def test_addresses(both: Both) -> None:
    kernel, emulated = both
    # 6.18: unbound 0.0.0.0:0 and ENOTCONN; a second bind EINVAL, a taken port
    # EADDRINUSE, 192.0.2.1 EADDRNOTAVAIL, broadcast, multicast and 127.0.0.2 bind.
    # connect autobinds; a connect that fails (192.0.2.1: ENETUNREACH; broadcast
    # without SO_BROADCAST: EACCES) keeps the old peer; a send to a closed port
    # leaves ECONNREFUSED for the next send; port 0 connects and getpeername is then
    # ENOTCONN (inet_getname: no dport); 0.0.0.0 is this host; sendto on a connected
    # socket goes where it says.
    assert kernel["unbound names"] == [["0.0.0.0", 0], ENOTCONN]
    assert kernel["bind"] == [
        None,
        [LO, PORT + 2],
        EINVAL,
        _err("OSError", errno.EADDRINUSE),
        _err("OSError", errno.EADDRNOTAVAIL),
        None,
        None,
        None,
    ]
    connect = kernel["connect"]
    assert connect[6] == _err("OSError", errno.ENETUNREACH)
    assert connect[8] == _err("PermissionError", errno.EACCES)
    assert connect[9:12] == [None, ENOTCONN, _err("ConnectionRefusedError", errno.ECONNREFUSED)]
    compare(kernel, emulated, "unbound names", "bind", "connect")


def test_send_and_receive(both: Both) -> None:
    kernel, emulated = both
    # 6.18: sendmsg gathers its iovecs (1024 of them; 1025 is EMSGSIZE: UIO_MAXIOV);
    # recvmsg_into scatters in order; MSG_TRUNC in gives the datagram's length; an
    # empty queue is EAGAIN with MSG_DONTWAIT and MSG_ERRQUEUE; a cmsg that does not
    # fit sets MSG_CTRUNC (8), a short data buffer MSG_TRUNC (32).
    assert kernel["sends"] == [6, 12, 10, 9, 1024, _err("OSError", errno.EMSGSIZE), 1]
    assert kernel["recv_into and recvfrom_into"][3:] == [EAGAIN] * 4
    assert kernel["msg_flags out"] == [
        [b"ctrunc".hex(), 0, MSG_CTRUNC, [LO, 11]],
        [b"no".hex(), 0, MSG_TRUNC | MSG_CTRUNC, [LO, 11]],
    ]
    compare(kernel, emulated, "sends", "receives", "recv_into and recvfrom_into", "msg_flags out")


def test_closed_and_timeouts(both: Both) -> None:
    kernel, emulated = both
    # 6.18 and CPython: a closed socket's fileno is -1 and every call EBADF (close
    # again is fine, and its port is free); non-blocking is BlockingIOError, a timeout
    # TimeoutError (errno None), MSG_DONTWAIT on a blocking socket BlockingIOError.
    ebadf = _err("OSError", errno.EBADF)
    assert kernel["closed"] == [-1, *[ebadf] * 7, None, [LO, PORT + 20]]
    timeout = ["TimeoutError", None]
    assert kernel["blocking modes"] == [
        None,
        True,
        0.0,
        False,
        EAGAIN,
        EAGAIN,
        0.05,
        True,
        timeout,
        timeout,
        0.0,
        EAGAIN,
        None,
        EAGAIN,
        b"late".hex(),
    ]
    assert kernel["blocked recv woken"] == [b"wake".hex()]
    compare(kernel, emulated, "closed", "blocking modes", "blocked recv woken")


def test_shutdown(both: Both) -> None:
    kernel, emulated = both
    # 6.18 (inet_shutdown): an unconnected socket is ENOTCONN but the shutdown is
    # recorded all the same, so a blocking recv on the empty queue returns b"" at once
    # (MSG_DONTWAIT still EAGAIN) and what arrives is still read; how outside 0..2
    # EINVAL. SHUT_WR makes send EPIPE (BrokenPipeError, no SIGPIPE for UDP); a
    # datagram queued before SHUT_RD and one arriving after it are still read.
    assert kernel["shutdown unconnected"] == [ENOTCONN, "", EAGAIN, EINVAL, EINVAL, 8, b"after RD".hex(), ""]
    epipe = _err("BrokenPipeError", errno.EPIPE)
    assert kernel["shutdown connected"][:6] == [None, epipe, epipe, b"queued".hex(), None, ""]
    compare(kernel, emulated, "shutdown unconnected", "shutdown connected")


def test_select(both: Both) -> None:
    kernel, emulated = both
    # 6.18 (udp_poll, datagram_poll): an empty socket is writable only; a datagram
    # makes it readable; a pending error or a queued error (IP_RECVERR) is EPOLLERR,
    # which select reports as readable and writable, until SO_ERROR is read and the
    # error queue emptied; SHUT_RD (ENOTCONN, recorded) makes it readable; a select
    # blocked in a thread wakes on a datagram; a closed socket is a ValueError.
    rw = [["r"], ["r"], []]
    assert kernel["select"] == [
        [[], ["r", "s"], []],
        [["r"], [], []],
        b"ready".hex(),
        [[], [], []],
        rw,
        errno.ECONNREFUSED,
        rw,
        MSG_ERRQUEUE,
        [[], ["r"], []],
        ENOTCONN,
        rw,
    ]
    assert kernel["select woken"] == [[["w"], [], []]]
    compare(kernel, emulated, "select", "select woken", "select closed")


if __name__ == "__main__":
    main(creating, addressing, transfer, modes, shutting, readiness)
