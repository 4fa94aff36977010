"""Corking (MSG_MORE, UDP_CORK) through the drop-in module on a running stack (`stackemu
up`), compared with the machine's kernel over 127.0.0.1: the same script runs once with
`socket` and once with `stackemu.socket` (this file is the script, its argument the
module) and both must print the same JSON: what each call returned (or its errno) and
what the receivers got (recvmsg data, sender address, IP_TTL/IP_TOS cmsgs).

A receiver's "got" is every datagram that came before a sentinel sent to it from a
socket of its own afterwards, so "nothing arrived" needs no timeout.

What 6.18 answered is written next to each comparison, so that a comparison cannot pass
because both sides went wrong the same way. A disconnect (connect to AF_UNSPEC) cannot
be asked for through Python's socket API; tests/services/test_udp_cork.py has it.
"""

from __future__ import annotations

import importlib
import json
import socket
import struct
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from services.core import errno

HERE = Path(__file__)
SOL_IP, SOL_UDP, SOL_UDPLITE = 0, 17, 136
IP_TOS, IP_TTL, IP_RECVERR, IP_RECVTTL, IP_RECVTOS = 1, 2, 11, 12, 13
UDP_CORK = 1
MSG_OOB, MSG_PROBE, MSG_ERRQUEUE, MSG_MORE = 0x1, 0x10, 0x2000, 0x8000
PORTS = 7
INT = struct.Struct("=i")


def _errno_of(f: Callable[[], object]) -> Any:
    try:
        return f()
    except OSError as e:
        return ["errno", e.errno]


def _anc(items: list[tuple[int, int, bytes]]) -> list[list[Any]]:
    return [[level, type_, data.hex()] for level, type_, data in items]


def cork(sk: Any, port: int) -> dict[str, Any]:
    """Every scenario, on one module; `port` and the next PORTS - 1 are free."""
    out: dict[str, Any] = {}
    lo = "127.0.0.1"
    r1 = sk.socket(sk.AF_INET, sk.SOCK_DGRAM)
    r1.bind((lo, port))
    r2 = sk.socket(sk.AF_INET, sk.SOCK_DGRAM)
    r2.bind((lo, port + 1))
    for r in (r1, r2):
        r.settimeout(5)
        r.setsockopt(sk.SOL_IP, IP_RECVTTL, 1)
        r.setsockopt(sk.SOL_IP, IP_RECVTOS, 1)
    z = sk.socket(sk.AF_INET, sk.SOCK_DGRAM)
    z.bind((lo, port + 2))
    to1, to2 = (lo, port), (lo, port + 1)

    def got(r: Any) -> list[Any]:
        z.sendto(b"sentinel", r.getsockname())
        seen: list[Any] = []
        while True:
            data, anc, _, addr = r.recvmsg(70000, 256)
            if data == b"sentinel" and addr[1] == port + 2:
                return seen
            seen.append([len(data), data[:12].hex(), [addr[0], addr[1] - port], _anc(anc)])

    def sender(offset: int) -> Any:
        s = sk.socket(sk.AF_INET, sk.SOCK_DGRAM)
        s.bind((lo, port + offset))
        return s

    s = sender(3)
    send = _errno_of

    out["msg_more"] = [
        send(lambda: s.sendto(b"ab", MSG_MORE, to1)),
        send(lambda: s.sendto(b"cd", MSG_MORE, to1)),
        send(lambda: s.sendto(b"ef", to1)),
        got(r1),
    ]
    out["second address"] = [
        send(lambda: s.sendto(b"ab", MSG_MORE, to1)),
        send(lambda: s.sendto(b"cd", to2)),
        got(r1),
        got(r2),
    ]
    out["appends look at no name or cmsg"] = [
        send(lambda: s.sendto(b"a", MSG_MORE, to1)),
        send(lambda: s.sendto(b"b", MSG_MORE, (lo, 0))),
        send(lambda: s.send(b"c", MSG_MORE)),
        send(lambda: s.sendmsg([b"d"], [(SOL_IP, 99, INT.pack(1))], MSG_MORE)),
        send(lambda: s.sendmsg([b"e"], [(SOL_IP, IP_TTL, INT.pack(9))])),
        got(r1),
    ]

    out["UDP_CORK values"] = [
        s.getsockopt(SOL_UDP, UDP_CORK),
        send(lambda: s.setsockopt(SOL_UDP, UDP_CORK, b"\x01")),
        send(lambda: s.setsockopt(SOL_UDP, UDP_CORK, -5)),
        s.getsockopt(SOL_UDP, UDP_CORK),
        s.getsockopt(SOL_UDP, UDP_CORK, 1).hex(),
        s.getsockopt(SOL_UDP, UDP_CORK, 8).hex(),
        send(lambda: s.setsockopt(SOL_UDPLITE, UDP_CORK, 0)),
        s.getsockopt(SOL_UDPLITE, UDP_CORK),
        send(lambda: s.setsockopt(SOL_UDP, 99, 1)),
        send(lambda: s.getsockopt(SOL_UDP, 99)),
        got(r1),
    ]
    s.setsockopt(SOL_UDP, UDP_CORK, 1)
    corked = [send(lambda: s.sendto(b"1", to1)), send(lambda: s.sendto(b"22", to1))]
    corked += [send(lambda: s.sendto(b"333", to1)), got(r1)]
    s.setsockopt(SOL_UDP, UDP_CORK, 0)
    out["UDP_CORK three sends"] = [*corked, got(r1)]
    s.setsockopt(SOL_UDP, UDP_CORK, 0)
    out["UDP_CORK off with nothing pending"] = got(r1)
    s.sendto(b"zz", MSG_MORE, to1)
    s.setsockopt(SOL_UDP, UDP_CORK, 0)
    out["UDP_CORK off pushes MSG_MORE"] = got(r1)

    out["EMSGSIZE across appends"] = [
        send(lambda: s.sendto(bytes(60000), MSG_MORE, to1)),
        send(lambda: s.sendto(bytes(5508), MSG_MORE, to1)),
        send(lambda: s.sendto(b"x", to1)),
        got(r1),
        send(lambda: s.sendto(bytes(60000), MSG_MORE, to1)),
        send(lambda: s.sendto(bytes(5507), to1)),
        got(r1),
    ]
    out["errors before the append keep it"] = [
        send(lambda: s.sendto(b"ab", MSG_MORE, to1)),
        send(lambda: s.sendto(bytes(65536), MSG_MORE, to1)),
        send(lambda: s.sendto(b"cd", MSG_MORE | MSG_OOB, to1)),
        send(lambda: s.sendto(b"ef", to1)),
        got(r1),
    ]
    u = sk.socket(sk.AF_INET, sk.SOCK_DGRAM)
    u.setsockopt(sk.SOL_IP, IP_RECVERR, 1)
    out["EMSGSIZE local error"] = [
        send(lambda: u.sendto(bytes(60000), MSG_MORE, to1)),
        send(lambda: u.sendto(bytes(6000), MSG_MORE, to2)),
        send(lambda: _msg(u.recvmsg(100, 1024, MSG_ERRQUEUE))),
        got(r1),
        got(r2),
    ]
    u.close()

    out["zero length"] = [
        send(lambda: s.sendto(b"", MSG_MORE, to1)),
        send(lambda: s.sendto(b"", to1)),
        got(r1),
    ]
    s.setsockopt(SOL_UDP, UDP_CORK, 1)
    zero = [send(lambda: s.sendto(b"", to1)), send(lambda: s.sendto(b"", to1))]
    s.setsockopt(SOL_UDP, UDP_CORK, 0)
    out["zero length under UDP_CORK"] = [*zero, got(r1)]

    out["MSG_PROBE"] = [
        send(lambda: s.sendto(b"pp", MSG_PROBE, to1)),
        send(lambda: s.sendto(bytes(65508), MSG_PROBE, to1)),
        got(r1),
        send(lambda: s.sendto(b"ab", MSG_MORE, to1)),
        send(lambda: s.sendto(b"cd", MSG_PROBE, to1)),
        got(r1),
        send(lambda: s.sendto(b"ab", MSG_MORE | MSG_PROBE, to1)),
        send(lambda: s.sendto(b"cd", to1)),
        got(r1),
    ]
    s.close()

    t = sender(4)
    t.setsockopt(sk.SOL_IP, IP_TOS, 0x10)
    t.setsockopt(sk.SOL_IP, IP_TTL, 33)
    t.sendto(b"t1", MSG_MORE, to1)
    t.setsockopt(sk.SOL_IP, IP_TOS, 0x08)
    t.setsockopt(sk.SOL_IP, IP_TTL, 44)
    t.sendto(b"t2", to1)
    out["TOS and TTL changed while corked"] = got(r1)
    cmsgs = [(SOL_IP, IP_TTL, INT.pack(9)), (SOL_IP, IP_TOS, b"\x04")]
    out["cmsgs of the first send"] = [
        send(lambda: t.sendmsg([b"c1"], cmsgs, MSG_MORE, to1)),
        send(lambda: t.setsockopt(sk.SOL_IP, IP_TTL, 55)),
        send(lambda: t.sendto(b"c2", to1)),
        got(r1),
    ]
    t.close()

    c = sender(5)
    out["connect while corked"] = [
        send(lambda: c.sendto(b"e1", MSG_MORE, to1)),
        send(lambda: c.connect(to2)),
        send(lambda: c.setsockopt(SOL_UDP, UDP_CORK, 0)),
        got(r1),
        got(r2),
        send(lambda: c.send(b"c1", MSG_MORE)),
        send(lambda: c.send(b"c2")),
        got(r1),
        got(r2),
    ]
    c.close()

    d = sender(6)
    d.sendto(b"closed", MSG_MORE, to1)
    d.close()
    out["close while corked"] = got(r1)

    for x in (r1, r2, z):
        x.close()
    return out


def _msg(r: tuple[bytes, list[tuple[int, int, bytes]], int, Any]) -> list[Any]:
    data, anc, flags, addr = r
    return [data.hex(), _anc(anc), flags, list(addr) if addr else None]


# The tests.


def _free_ports() -> int:
    """A port such that it and the next PORTS - 1 are free on this machine (the
    scenarios bind them on the kernel and on the emulated host, so the numbers agree)."""
    for _ in range(100):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.bind(("127.0.0.1", 0))
            port: int = s.getsockname()[1]
        if port + PORTS > 65535:
            continue
        try:
            for p in range(port + 1, port + PORTS):
                with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
                    s.bind(("127.0.0.1", p))
        except OSError:
            continue
        return port
    raise RuntimeError("no free run of ports")


def _run(module: str, port: int, env: dict[str, str]) -> dict[str, Any]:
    out = subprocess.run(
        [sys.executable, str(HERE), module, str(port)], env=env, capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr
    result: dict[str, Any] = json.loads(out.stdout)
    return result


@pytest.fixture(scope="module")
def both(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[dict[str, Any], dict[str, Any]]]:
    """(kernel, emulated): the scenarios run with `socket`, then with `stackemu.socket`
    on alice of a stack of the test's own."""
    from tests.e2e.stackrun import cli, stack_env

    env = stack_env(str(tmp_path_factory.mktemp("state")))
    up = cli(env, "up")
    assert up.returncode == 0, up.stderr
    try:
        port = _free_ports()
        yield _run("socket", port, env), _run("stackemu.socket", port, env)
    finally:
        cli(env, "down")


TTL64 = [SOL_IP, IP_TTL, "40000000"]
TOS0 = [SOL_IP, IP_TOS, "00"]


def _dgram(payload: bytes, sender: int = 3, anc: list[list[Any]] | None = None) -> list[Any]:
    """A datagram as got() prints it, from 127.0.0.1:port + sender."""
    return [len(payload), payload[:12].hex(), ["127.0.0.1", sender], anc or [TTL64, TOS0]]


def test_msg_more_and_second_addresses(both: tuple[dict[str, Any], dict[str, Any]]) -> None:
    kernel, emulated = both
    # 6.18: one datagram "abcdef"; a corked send naming port+1 appended to the datagram
    # for port; with data pending, port 0, no name on an unconnected socket and an
    # unknown SOL_IP cmsg are all accepted and appended; the TTL cmsg of the push is
    # not looked at (TTL 64).
    assert kernel["msg_more"] == [2, 2, 2, [_dgram(b"abcdef")]]
    assert kernel["second address"] == [2, 2, [_dgram(b"abcd")], []]
    assert kernel["appends look at no name or cmsg"] == [1, 1, 1, 1, 1, [_dgram(b"abcde")]]
    for key in ("msg_more", "second address", "appends look at no name or cmsg"):
        assert emulated[key] == kernel[key], key


def test_udp_cork(both: tuple[dict[str, Any], dict[str, Any]]) -> None:
    kernel, emulated = both
    # 6.18: 0 at first; a 1-byte optval EINVAL; -5 corks (reads 1; a 1-byte buffer gets
    # "01", an 8-byte one the int); SOL_UDPLITE is the same option on a UDP socket;
    # another SOL_UDP name ENOPROTOOPT both ways. Three corked sends, nothing until
    # UDP_CORK 0, then "122333"; UDP_CORK 0 with nothing pending sends nothing, and
    # pushes what MSG_MORE started.
    assert kernel["UDP_CORK values"] == [
        0,
        ["errno", errno.EINVAL],
        None,
        1,
        "01",
        "01000000",
        None,
        0,
        ["errno", errno.ENOPROTOOPT],
        ["errno", errno.ENOPROTOOPT],
        [],
    ]
    assert kernel["UDP_CORK three sends"] == [1, 2, 3, [], [_dgram(b"122333")]]
    assert kernel["UDP_CORK off with nothing pending"] == []
    assert kernel["UDP_CORK off pushes MSG_MORE"] == [_dgram(b"zz")]
    for key in (
        "UDP_CORK values",
        "UDP_CORK three sends",
        "UDP_CORK off with nothing pending",
        "UDP_CORK off pushes MSG_MORE",
    ):
        assert emulated[key] == kernel[key], key


def test_emsgsize_across_appends(both: tuple[dict[str, Any], dict[str, Any]]) -> None:
    kernel, emulated = both
    # 6.18: 60008 + 5508 > 65515 is EMSGSIZE and flushes the 60000 bytes ("x" alone
    # arrives); 60008 + 5507 fits (65507 bytes arrive). len > 0xFFFF and MSG_OOB fail
    # before the append and keep "ab". With IP_RECVERR the append's EMSGSIZE is a local
    # error: no data, ee_info 65535, msg_name 127.0.0.1 port 0, the 60000 bytes gone.
    assert kernel["EMSGSIZE across appends"] == [
        60000,
        ["errno", errno.EMSGSIZE],
        1,
        [_dgram(b"x")],
        60000,
        5507,
        [_dgram(bytes(65507))],
    ]
    assert kernel["errors before the append keep it"] == [
        2,
        ["errno", errno.EMSGSIZE],
        ["errno", errno.EOPNOTSUPP],
        2,
        [_dgram(b"abef")],
    ]
    ee = struct.pack("=IBBBBII", errno.EMSGSIZE, 1, 0, 0, 0, 65535, 0) + bytes(16)
    assert kernel["EMSGSIZE local error"] == [
        60000,
        ["errno", errno.EMSGSIZE],
        ["", [[SOL_IP, IP_RECVERR, ee.hex()]], MSG_ERRQUEUE, ["127.0.0.1", 0]],
        [],
        [],
    ]
    for key in ("EMSGSIZE across appends", "errors before the append keep it", "EMSGSIZE local error"):
        assert emulated[key] == kernel[key], key


def test_zero_length_and_msg_probe(both: tuple[dict[str, Any], dict[str, Any]]) -> None:
    kernel, emulated = both
    # 6.18: an empty corked send then an empty plain one is one empty datagram, as under
    # UDP_CORK. MSG_PROBE sends nothing and returns the length (65508 too); a probe
    # that is not corked pushes what is pending ("ab"); a corked first probe leaves
    # nothing pending ("cd" alone).
    assert kernel["zero length"] == [0, 0, [_dgram(b"")]]
    assert kernel["zero length under UDP_CORK"] == [0, 0, [_dgram(b"")]]
    assert kernel["MSG_PROBE"] == [2, 65508, [], 2, 2, [_dgram(b"ab")], 2, 2, [_dgram(b"cd")]]
    for key in ("zero length", "zero length under UDP_CORK", "MSG_PROBE"):
        assert emulated[key] == kernel[key], key


def test_ttl_tos_connect_and_close(both: tuple[dict[str, Any], dict[str, Any]]) -> None:
    kernel, emulated = both
    # 6.18: IP_TOS is the cork's (0x10, set before the first send), IP_TTL is read at
    # push time (44); cmsgs of the first send are the cork's (TTL 9, TOS 4), IP_TTL 55
    # set meanwhile does not count. connect() while corked sends the pending datagram
    # to the new peer (ip_route_connect rewrites inet->cork.fl). close() throws it away.
    assert kernel["TOS and TTL changed while corked"] == [
        _dgram(b"t1t2", 4, [[SOL_IP, IP_TTL, "2c000000"], [SOL_IP, IP_TOS, "10"]])
    ]
    assert kernel["cmsgs of the first send"] == [
        2,
        None,
        2,
        [_dgram(b"c1c2", 4, [[SOL_IP, IP_TTL, "09000000"], [SOL_IP, IP_TOS, "04"]])],
    ]
    to_new_peer = [2, None, None, [], [_dgram(b"e1", 5)]]
    assert kernel["connect while corked"] == [*to_new_peer, 2, 2, [], [_dgram(b"c1c2", 5)]]
    assert kernel["close while corked"] == []
    for key in (
        "TOS and TTL changed while corked",
        "cmsgs of the first send",
        "connect while corked",
        "close while corked",
    ):
        assert emulated[key] == kernel[key], key
    assert emulated == kernel


def test_the_dropin_names_udp_cork() -> None:
    import stackemu.socket

    assert stackemu.socket.UDP_CORK == UDP_CORK
    assert stackemu.socket.SOL_UDP == socket.SOL_UDP == SOL_UDP


if __name__ == "__main__":
    mod = importlib.import_module(sys.argv[1])
    print(json.dumps(cork(mod, int(sys.argv[2]))))
