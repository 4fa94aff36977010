"""SOL_SOCKET options of a UDP socket and the bind rules (SO_REUSEADDR, SO_REUSEPORT,
wildcard and specific addresses, a reuseport group's delivery) through the drop-in
module, compared with this machine's kernel: the harness of test_udp_kernel_send.py,
the kernel in a network namespace of its own, the emulator on alice.

The buffer sizes read back follow the machine's net.core.rmem_max and wmem_max
(4194304 here) and rmem_default and wmem_default (212992), which the tests read from
/proc/sys: the emulator's defaults must be the same.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from services.core import errno
from tests.e2e.test_udp_kernel_send import (
    INT,
    LO,
    PORT,
    SOL_SOCKET,
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

SO_REUSEADDR, SO_TYPE, SO_ERROR, SO_DONTROUTE, SO_BROADCAST = 2, 3, 4, 5, 6
SO_SNDBUF, SO_RCVBUF, SO_NO_CHECK, SO_REUSEPORT = 7, 8, 11, 15
SO_BINDTODEVICE, SO_SNDBUFFORCE, SO_RCVBUFFORCE = 25, 32, 33
SO_PROTOCOL, SO_DOMAIN, SO_RXQ_OVFL, SO_PEEK_OFF, SO_BINDTOIFINDEX = 38, 39, 40, 42, 62
FLAGS = {
    "SO_REUSEADDR": SO_REUSEADDR,
    "SO_REUSEPORT": SO_REUSEPORT,
    "SO_BROADCAST": SO_BROADCAST,
    "SO_DONTROUTE": SO_DONTROUTE,
    "SO_NO_CHECK": SO_NO_CHECK,
    "SO_RXQ_OVFL": SO_RXQ_OVFL,
    "SO_PEEK_OFF": SO_PEEK_OFF,
}
BUFFERS = (("SO_RCVBUF", SO_RCVBUF, SO_RCVBUFFORCE), ("SO_SNDBUF", SO_SNDBUF, SO_SNDBUFFORCE))
SIZES = (1, 1000, 2303, 2304, 100000, 10**7, -1, 0)
FORCED = (1, 10**7, 2**30, -1, -(2**31))
ADDRS = ("0.0.0.0", "127.0.0.1", "127.0.0.2")
REUSE = {"": (), "A": (SO_REUSEADDR,), "P": (SO_REUSEPORT,), "AP": (SO_REUSEADDR, SO_REUSEPORT)}
BIND_PAIRS = [
    (a1, o1, a2, o2)
    for o1, o2 in (("", ""), ("A", "A"), ("P", "P"), ("AP", "AP"), ("A", ""), ("", "A"), ("P", ""), ("", "P"))
    for a1 in ADDRS
    for a2 in ADDRS
]
GROUP, SENDERS = 4, 40


def bind(s: Any, addr: str, port: int) -> Any:
    return errno_of(lambda: s.bind((addr, port)))


def sockopts(h: Host) -> dict[str, Any]:
    """setsockopt/getsockopt at SOL_SOCKET (test_flag_options, test_buffer_sizes,
    test_bindtodevice, test_optlen_and_unknown)."""
    out: dict[str, Any] = {}
    s = h.sock()
    for name, opt in FLAGS.items():
        seq: list[Any] = [get(s, SOL_SOCKET, opt)]
        for v in (1, 7, -1, 0):
            seq += [put(s, SOL_SOCKET, opt, v), get(s, SOL_SOCKET, opt)]
        out[name] = seq
    out["identity"] = [get(s, SOL_SOCKET, o) for o in (SO_TYPE, SO_PROTOCOL, SO_DOMAIN, SO_ERROR)]

    for name, opt, force in BUFFERS:
        b = h.sock()
        seq = [get(b, SOL_SOCKET, opt)]
        for v in SIZES:
            seq += [put(b, SOL_SOCKET, opt, v), get(b, SOL_SOCKET, opt)]
        out[name] = seq
        seq = []
        for v in FORCED:
            seq += [put(b, SOL_SOCKET, force, v), get(b, SOL_SOCKET, opt)]
        seq.append(get(b, SOL_SOCKET, force))
        out[name + "FORCE"] = seq
        b.close()

    d = h.sock()
    out["SO_BINDTODEVICE"] = [
        get(d, SOL_SOCKET, SO_BINDTODEVICE, 16),
        get(d, SOL_SOCKET, SO_BINDTOIFINDEX),
        put(d, SOL_SOCKET, SO_BINDTODEVICE, b"lo"),
        get(d, SOL_SOCKET, SO_BINDTODEVICE, 16),
        get(d, SOL_SOCKET, SO_BINDTODEVICE, 2),
        get(d, SOL_SOCKET, SO_BINDTOIFINDEX),
        put(d, SOL_SOCKET, SO_BINDTODEVICE, b""),
        get(d, SOL_SOCKET, SO_BINDTODEVICE, 16),
        put(d, SOL_SOCKET, SO_BINDTODEVICE, b"nosuchdev"),
        put(d, SOL_SOCKET, SO_BINDTODEVICE, b"lo\0junk"),
        get(d, SOL_SOCKET, SO_BINDTODEVICE, 16),
        put(d, SOL_SOCKET, SO_BINDTODEVICE, b"x" * 20),
        put(d, SOL_SOCKET, SO_BINDTOIFINDEX, 0),
        get(d, SOL_SOCKET, SO_BINDTODEVICE, 16),
        put(d, SOL_SOCKET, SO_BINDTOIFINDEX, 1),
        get(d, SOL_SOCKET, SO_BINDTODEVICE, 16),
        put(d, SOL_SOCKET, SO_BINDTOIFINDEX, 99),
        get(d, SOL_SOCKET, SO_BINDTOIFINDEX),
        get(d, SOL_SOCKET, SO_BINDTODEVICE, 16),
        put(d, SOL_SOCKET, SO_BINDTOIFINDEX, -1),
        get(d, SOL_SOCKET, SO_BINDTOIFINDEX),
    ]
    d.close()

    out["optlen and unknown names"] = [
        put(s, SOL_SOCKET, SO_REUSEADDR, b"\x01\x00"),
        put(s, SOL_SOCKET, SO_RCVBUF, b"\x00\x10\x00"),
        put(s, SOL_SOCKET, SO_REUSEADDR, b"\x00\x00\x00\x00\x01"),
        get(s, SOL_SOCKET, SO_REUSEADDR),
        get(s, SOL_SOCKET, SO_RCVBUF, 1),
        get(s, SOL_SOCKET, SO_RCVBUF, 8),
        put(s, SOL_SOCKET, 9999, 1),
        get(s, SOL_SOCKET, 9999),
        put(s, SOL_SOCKET, SO_TYPE, 1),
    ]
    s.close()
    return out


def binding(h: Host) -> dict[str, Any]:
    """bind() of a second socket to a port a first one holds (test_bind_rules)."""
    out: dict[str, Any] = {}
    table = []
    for i, (a1, o1, a2, o2) in enumerate(BIND_PAIRS):
        pair = []
        for addr, opts in ((a1, o1), (a2, o2)):
            x = h.sock()
            for o in REUSE[opts]:
                x.setsockopt(SOL_SOCKET, o, 1)
            pair.append((x, bind(x, addr, PORT + 100 + i)))
        table.append([a1, o1, a2, o2, pair[0][1], pair[1][1]])
        for x, _ in pair:
            x.close()
    out["bind table"] = table

    s, t, y = h.sock(), h.sock(), h.sock()
    out["bind errors"] = [
        bind(s, LO, PORT + 5),
        bind(s, LO, PORT + 6),
        bind(t, "192.0.2.1", PORT + 7),
        bind(y, LO, 0),
        h.port(y.getsockname()),
    ]
    for x in (s, t, y):
        x.close()

    # Two SO_REUSEADDR sockets on one address: the one that gets a datagram.
    r1, r2 = h.sock(), h.sock()
    for r in (r1, r2):
        r.setsockopt(SOL_SOCKET, SO_REUSEADDR, 1)
        r.bind((LO, PORT + 8))
    w = h.sock()
    w.setsockopt(SOL_SOCKET, SO_REUSEADDR, 1)
    w.bind(("0.0.0.0", PORT + 8))
    t = h.sock(9)
    t.sendto(b"which", (LO, PORT + 8))
    t.sendto(b"which 2", ("127.0.0.2", PORT + 8))
    out["SO_REUSEADDR delivery"] = h.got(r1, r2, w)
    for x in (r1, r2, w, t):
        x.close()
    return out


def reuseport(h: Host) -> dict[str, Any]:
    """A reuseport group of GROUP receivers, SENDERS senders of two datagrams each
    (test_reuseport_group). Which receiver a flow hashes to is random (a per-boot
    secret); what must hold is that each datagram arrives once, a flow sticks to one
    receiver, and 40 flows use every receiver."""
    rs = []
    for _ in range(GROUP):
        r = h.sock()
        r.setsockopt(SOL_SOCKET, SO_REUSEPORT, 1)
        r.bind((LO, PORT + 200))
        rs.append(r)
    before = h.counters()
    for i in range(SENDERS):
        s = h.sock(300 + i)
        s.sendto(b"%d a" % i, (LO, PORT + 200))
        s.sendto(b"%d b" % i, (LO, PORT + 200))
        s.close()
    got = h.got(*rs)
    where: dict[int, set[int]] = {}
    datagrams = []
    for n, queue in enumerate(got):
        for _, data, (_, sender), _ in queue:
            datagrams.append(bytes.fromhex(data).decode())
            where.setdefault(sender - 300, set()).add(n)
    out = {
        "reuseport datagrams": sorted(datagrams) == sorted(f"{i} {x}" for i in range(SENDERS) for x in "ab"),
        "reuseport one receiver a flow": sorted(where) == list(range(SENDERS))
        and all(len(v) == 1 for v in where.values()),
        "reuseport receivers used": sum(1 for queue in got if queue),
        "reuseport counts": h.moved(before),
    }
    for r in rs:
        r.close()
    return out


# The tests.


@pytest.fixture(scope="module")
def both(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Both]:
    yield from run_both(__name__, str(tmp_path_factory.mktemp("state")))


def _sysctl(name: str) -> int:
    return int(Path("/proc/sys/net/core", name).read_text())


EINVAL, ENODEV, ENOPROTOOPT = ["errno", errno.EINVAL], ["errno", errno.ENODEV], ["errno", errno.ENOPROTOOPT]


def test_flag_options(both: Both) -> None:
    kernel, emulated = both
    # 6.18: every boolean reads 0 at first and 1 for any nonzero value (-1 too);
    # SO_PEEK_OFF is an int: -1 (off) at first, then what was set. A new socket is
    # SOCK_DGRAM, IPPROTO_UDP, AF_INET with no pending error.
    for name in FLAGS:
        if name == "SO_PEEK_OFF":
            assert kernel[name] == [-1, None, 1, None, 7, None, -1, None, 0]
        else:
            assert kernel[name] == [0, None, 1, None, 1, None, 1, None, 0], name
    assert kernel["identity"] == [2, 17, 2, 0]
    compare(kernel, emulated, *FLAGS, "identity")


def _doubled(v: int, least: int, most: int) -> int:
    """What SO_RCVBUF/SO_SNDBUF reads after setting v: sk_setsockopt's
    max(min_t(u32, v, sysctl) * 2, SOCK_MIN_*)."""
    return max(min(v & 0xFFFFFFFF, most // 2) * 2, least)


def test_buffer_sizes(both: Both) -> None:
    kernel, emulated = both
    # 6.18 (this machine: rmem/wmem_default 212992, rmem/wmem_max 4194304): 212992 at
    # first; set 1, 1000, 2303, 2304, 100000, 10**7, -1, 0 reads 2304, 2304, 4606,
    # 4608, 200000, 8388608, 8388608, 2304 (SO_SNDBUF: at least 4608). The FORCE
    # variants (CAP_NET_ADMIN) skip the sysctl but stop at INT_MAX / 2 * 2; negative is
    # the minimum; getsockopt does not know them.
    for name, default, most, least in (
        ("SO_RCVBUF", _sysctl("rmem_default"), 2 * _sysctl("rmem_max"), 2304),
        ("SO_SNDBUF", _sysctl("wmem_default"), 2 * _sysctl("wmem_max"), 4608),
    ):
        want: list[Any] = [default]
        for v in SIZES:
            want += [None, _doubled(v, least, most)]
        assert kernel[name] == want, name
        forced = [None, least, None, 20000000, None, 2147483646, None, least, None, least, ENOPROTOOPT]
        assert kernel[name + "FORCE"] == forced, name
    compare(kernel, emulated, "SO_RCVBUF", "SO_SNDBUF", "SO_RCVBUFFORCE", "SO_SNDBUFFORCE")


def test_bindtodevice(both: Both) -> None:
    kernel, emulated = both
    # 6.18: unbound reads "" and ifindex 0; "lo" reads "lo\0" (strlen + 1 bytes; a
    # 2-byte buffer is EINVAL) and ifindex 1; "" unbinds; an unknown name and a
    # 20-byte one (cut to IFNAMSIZ - 1) are ENODEV and keep the binding; the name ends
    # at its NUL ("lo\0junk" is lo). SO_BINDTOIFINDEX 0 unbinds, 1 is lo, and 99 is
    # taken without a device (sock_bindtoindex_locked() checks none), after which the
    # name cannot be read (ENODEV); -1 EINVAL.
    lo = b"lo\0".hex()
    assert kernel["SO_BINDTODEVICE"] == [
        "",
        0,
        None,
        lo,
        EINVAL,
        1,
        None,
        "",
        ENODEV,
        None,
        lo,
        ENODEV,
        None,
        "",
        None,
        lo,
        None,
        99,
        ENODEV,
        EINVAL,
        99,
    ]
    compare(kernel, emulated, "SO_BINDTODEVICE")


def test_optlen_and_unknown(both: Both) -> None:
    kernel, emulated = both
    # 6.18: an optval shorter than an int is EINVAL, a longer one is read as its first
    # int; getsockopt copies min(len, 4) bytes of the int; an unknown SOL_SOCKET name
    # is ENOPROTOOPT both ways, and so is setting a read-only one (SO_TYPE).
    default = INT.pack(_sysctl("rmem_default"))
    assert kernel["optlen and unknown names"] == [
        EINVAL,
        EINVAL,
        None,
        0,
        default[:1].hex(),
        default.hex(),
        ENOPROTOOPT,
        ENOPROTOOPT,
        ENOPROTOOPT,
    ]
    compare(kernel, emulated, "optlen and unknown names")


def _second_bind(a1: str, o1: str, a2: str, o2: str) -> Any:
    """What 6.18 answered for the second bind: with SO_REUSEADDR on both, or
    SO_REUSEPORT on both (same uid), anything goes; otherwise only two different
    specific addresses share a port (udp_lib_lport_inuse)."""
    if o1 == o2 != "" or (a1 != a2 and "0.0.0.0" not in (a1, a2)):
        return None
    return ["errno", errno.EADDRINUSE]


def test_bind_rules(both: Both) -> None:
    kernel, emulated = both
    assert kernel["bind table"] == [[*pair, None, _second_bind(*pair)] for pair in BIND_PAIRS]
    # 6.18: a bound socket's second bind is EINVAL; an address not on the host
    # EADDRNOTAVAIL; port 0 picks one. Of two SO_REUSEADDR sockets on 127.0.0.1 the
    # last bound gets the datagram (its score ties and it comes first in the hash
    # chain); 127.0.0.2 reaches the wildcard one.
    assert kernel["bind errors"] == [None, EINVAL, ["errno", errno.EADDRNOTAVAIL], None, [LO, "other"]]
    assert kernel["SO_REUSEADDR delivery"] == [[], [dgram(b"which", 9)], [dgram(b"which 2", 9)]]
    compare(kernel, emulated, "bind table", "bind errors", "SO_REUSEADDR delivery")


def test_reuseport_group(both: Both) -> None:
    kernel, emulated = both
    # 6.18: 80 datagrams of 40 flows, each once, each flow to one of the 4 receivers,
    # all 4 used (a receiver left out by 40 random flows: 4 * 0.75 ** 40, about 4e-5).
    assert kernel["reuseport datagrams"] is True
    assert kernel["reuseport one receiver a flow"] is True
    assert kernel["reuseport receivers used"] == GROUP
    assert kernel["reuseport counts"] == {"UdpInDatagrams": 82, "UdpOutDatagrams": 82}
    compare(
        kernel,
        emulated,
        "reuseport datagrams",
        "reuseport one receiver a flow",
        "reuseport receivers used",
        "reuseport counts",
    )


if __name__ == "__main__":
    main(sockopts, binding, reuseport)
