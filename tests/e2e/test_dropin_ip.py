"""The IP-level socket API through the drop-in module on a running stack (`stackemu up`),
compared with the machine's kernel: the same scenario runs once with `socket` and once
with `stackemu.socket` (this file is the script, its argument the module) and both
must print the same JSON. SOL_IP options (errno and values, char or int by buflen),
sendmsg ancillary data, recvmsg ancillary data as Python parses it, the local EMSGSIZE
error and the port unreachable a closed port sends back.

What 6.18 answered is written next to each comparison, so that a comparison cannot pass
because both sides went wrong the same way.
"""

from __future__ import annotations

import functools
import importlib
import json
import socket
import struct
import subprocess
import sys
import time
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from services.core import errno

HERE = Path(__file__)
SOL_IP = 0
IP_TOS, IP_TTL, IP_OPTIONS, IP_PKTINFO, IP_MTU_DISCOVER, IP_RECVERR = 1, 2, 4, 8, 10, 11
IP_RECVTTL, IP_RECVTOS, IP_MTU, IP_RECVORIGDSTADDR = 12, 13, 14, 20
MSG_ERRQUEUE = 0x2000


def _errno_of(f: Callable[[], object]) -> Any:
    try:
        return f()
    except OSError as e:
        return ["errno", e.errno]
    except ValueError as e:
        return ["ValueError", str(e)]


def _anc(items: list[tuple[int, int, bytes]]) -> list[list[Any]]:
    return [[level, type_, data.hex()] for level, type_, data in items]


def _msg(r: tuple[bytes, list[tuple[int, int, bytes]], int, Any]) -> list[Any]:
    data, anc, flags, addr = r
    return [data.hex(), _anc(anc), flags, list(addr) if addr else None]


# The scenarios, run in a process of their own with either module.


def sockopts(sk: Any, port: int) -> dict[str, Any]:
    """setsockopt/getsockopt at SOL_IP through Python's API: ints and byte strings."""
    out: dict[str, Any] = {}
    values: list[Any] = [-2, -1, 0, 1, 3, 64, 255, 256, 0x1FF, b"", b"\x05", b"\x07\x00", bytes(8)]
    for opt in (IP_TOS, IP_TTL, IP_PKTINFO, IP_MTU_DISCOVER, IP_RECVERR, IP_RECVTTL, IP_RECVTOS, 26, 9999):
        for v in values:
            s = sk.socket(sk.AF_INET, sk.SOCK_DGRAM)
            err = _errno_of(functools.partial(s.setsockopt, sk.SOL_IP, opt, v))
            reads = [_errno_of(functools.partial(s.getsockopt, sk.SOL_IP, opt))]
            for n in (1, 2, 4, 8):
                got = _errno_of(functools.partial(s.getsockopt, sk.SOL_IP, opt, n))
                reads.append(got.hex() if isinstance(got, bytes) else got)
            out[f"set {opt} {v!r}"] = [err, *reads]
            s.close()
    s = sk.socket(sk.AF_INET, sk.SOCK_DGRAM)
    out["IP_MTU unconnected"] = _errno_of(lambda: s.getsockopt(sk.SOL_IP, IP_MTU))
    out["SO_ERROR fresh"] = s.getsockopt(sk.SOL_SOCKET, sk.SO_ERROR)
    out["buflen 0 is an int"] = s.getsockopt(sk.SOL_IP, IP_TTL, 0)
    out["buflen 1025"] = _errno_of(lambda: s.getsockopt(sk.SOL_IP, IP_TTL, 1025))
    s.connect(("127.0.0.1", port))
    out["IP_MTU connected"] = s.getsockopt(sk.SOL_IP, IP_MTU)
    s.close()
    return out


def sendmsg_ancdata(sk: Any, port: int) -> dict[str, Any]:
    """sendmsg() ancillary data: which the kernel refuses, and what the receiver's
    IP_RECVTTL/IP_RECVTOS/IP_RECVORIGDSTADDR cmsgs then show (recvmsg's parse, for
    several ancbufsize values)."""
    out: dict[str, Any] = {}
    r = sk.socket(sk.AF_INET, sk.SOCK_DGRAM)
    r.bind(("127.0.0.1", port))
    r.settimeout(5)
    for opt in (IP_RECVTTL, IP_RECVTOS, IP_RECVORIGDSTADDR):
        r.setsockopt(sk.SOL_IP, opt, 1)
    s = sk.socket(sk.AF_INET, sk.SOCK_DGRAM)
    s.bind(("127.0.0.1", port + 1))
    i = struct.Struct("=i").pack
    cases: dict[str, list[tuple[int, int, bytes]]] = {
        "none": [],
        "ttl 9": [(SOL_IP, IP_TTL, i(9))],
        "ttl 0": [(SOL_IP, IP_TTL, i(0))],
        "ttl byte": [(SOL_IP, IP_TTL, b"\x09")],
        "tos byte": [(SOL_IP, IP_TOS, b"\x04")],
        "tos int": [(SOL_IP, IP_TOS, i(0xFF))],
        "tos 256": [(SOL_IP, IP_TOS, i(256))],
        "ttl and tos": [(SOL_IP, IP_TTL, i(200)), (SOL_IP, IP_TOS, b"\x10")],
        "pktinfo src": [(SOL_IP, IP_PKTINFO, struct.pack("=i4s4s", 0, bytes([127, 0, 0, 1]), bytes(4)))],
        "pktinfo short": [(SOL_IP, IP_PKTINFO, bytes(8))],
        "unknown SOL_IP": [(SOL_IP, 99, i(1))],
        "other level": [(99, 1, b"")],
        "SO_MARK": [(sk.SOL_SOCKET, 36, i(7))],
        "SOL_SOCKET unknown": [(sk.SOL_SOCKET, 99, i(1))],
    }
    for name, anc in cases.items():
        sent = _errno_of(functools.partial(s.sendmsg, [b"ab", b"cd"], anc, 0, ("127.0.0.1", port)))
        got: Any = None
        if sent == 4:
            got = _msg(r.recvmsg(10, 1024))
        out[name] = [sent, got]
    s.setsockopt(sk.SOL_IP, IP_TTL, 33)
    s.setsockopt(sk.SOL_IP, IP_TOS, 0x2D)
    for n in (0, 15, 16, 20, 24, 40, 41, 48, 64, 80):
        s.sendto(b"x", ("127.0.0.1", port))
        with warnings.catch_warnings(record=True) as w:
            warnings.simplefilter("always")
            out[f"ancbufsize {n}"] = [_msg(r.recvmsg(10, n)), [str(x.message) for x in w]]
    out["recvmsg_into"] = None
    s.sendto(b"scattered", ("127.0.0.1", port))
    a, b = bytearray(4), bytearray(10)
    n, anc, flags, _ = r.recvmsg_into([a, b], 100)
    out["recvmsg_into"] = [n, bytes(a).hex(), bytes(b[: n - 4]).hex(), _anc(anc), flags]
    out["ancbufsize -1"] = _errno_of(lambda: r.recvmsg(10, -1))
    r.close()
    s.close()
    return out


def recv_pktinfo(sk: Any, port: int) -> dict[str, Any]:
    """IP_PKTINFO on receive: the arrival interface (lo, 1) and spec_dst (the local
    address the datagram was for), and ipi_addr, for 127.0.0.1 and 127.0.0.5."""
    out: dict[str, Any] = {}
    r = sk.socket(sk.AF_INET, sk.SOCK_DGRAM)
    r.bind(("0.0.0.0", port))
    r.settimeout(5)
    r.setsockopt(sk.SOL_IP, IP_PKTINFO, 1)
    s = sk.socket(sk.AF_INET, sk.SOCK_DGRAM)
    for dst in ("127.0.0.1", "127.0.0.5"):
        s.sendto(b"x", (dst, port))
        out[dst] = _msg(r.recvmsg(10, 100))[1]
    r.close()
    s.close()
    return out


def local_emsgsize(sk: Any, port: int) -> dict[str, Any]:
    """The local EMSGSIZE error of a socket that may not fragment (IP_PMTUDISC_DO)."""
    out: dict[str, Any] = {}
    r = sk.socket(sk.AF_INET, sk.SOCK_DGRAM)
    r.bind(("127.0.0.1", port))
    for recverr in (0, 1):
        for connected in (False, True):
            s = sk.socket(sk.AF_INET, sk.SOCK_DGRAM)
            s.setsockopt(sk.SOL_IP, IP_MTU_DISCOVER, 2)
            s.setsockopt(sk.SOL_IP, IP_RECVERR, recverr)
            if connected:
                s.connect(("127.0.0.1", port))
            sent = _errno_of(functools.partial(s.sendto, bytes(65508), ("127.0.0.1", port)))
            try:
                queued = _msg(s.recvmsg(100, 1024, MSG_ERRQUEUE))
            except OSError as e:
                queued = ["errno", e.errno]
            out[f"recverr {recverr} connected {connected}"] = [sent, queued]
            s.close()
    r.close()
    return out


def port_unreachable(sk: Any, port: int) -> dict[str, Any]:
    """A closed port answers with ICMP port unreachable: a connected socket gets
    ECONNREFUSED once; an IP_RECVERR socket has it queued."""
    out: dict[str, Any] = {}
    c = sk.socket(sk.AF_INET, sk.SOCK_DGRAM)
    c.connect(("127.0.0.1", port))
    steps = []
    for f in (lambda: c.send(b"hello"), lambda: c.send(b"x"), lambda: c.send(b"y")):
        steps.append(_errno_of(f))
        time.sleep(0.2)
    steps.append(_errno_of(lambda: c.recv(10, sk.MSG_DONTWAIT)))
    steps.append(_errno_of(lambda: c.recv(10, sk.MSG_DONTWAIT)))
    steps.append(c.getsockopt(sk.SOL_SOCKET, sk.SO_ERROR))
    out["connected"] = steps
    c.close()
    u = sk.socket(sk.AF_INET, sk.SOCK_DGRAM)
    u.setsockopt(sk.SOL_IP, IP_RECVERR, 1)
    for opt in (IP_PKTINFO, IP_RECVTTL, IP_RECVTOS):
        u.setsockopt(sk.SOL_IP, opt, 1)
    u.sendto(b"abcdef", ("127.0.0.1", port))
    time.sleep(0.2)
    out["errqueue"] = _errno_of(lambda: _msg(u.recvmsg(100, 1024, MSG_ERRQUEUE)))
    out["after"] = [
        u.getsockopt(sk.SOL_SOCKET, sk.SO_ERROR),
        _errno_of(lambda: u.recvmsg(10, 0, MSG_ERRQUEUE)),
    ]
    u.close()
    return out


SCENARIOS: dict[str, Callable[[Any, int], dict[str, Any]]] = {
    "sockopts": sockopts,
    "sendmsg_ancdata": sendmsg_ancdata,
    "recv_pktinfo": recv_pktinfo,
    "local_emsgsize": local_emsgsize,
    "port_unreachable": port_unreachable,
}


# The tests.


def _free_port() -> int:
    """A port such that it and the next one are free on this machine (the scenarios bind
    both, on the kernel and on the emulated host, so the numbers they print agree)."""
    for _ in range(100):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.bind(("127.0.0.1", 0))
            port: int = s.getsockname()[1]
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            try:
                s.bind(("127.0.0.1", port + 1))
            except OSError:
                continue
        return port
    raise RuntimeError("no two free ports in a row")


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    from tests.e2e.stackrun import launched

    yield from launched(str(tmp_path_factory.mktemp("state")))


def _run(module: str, scenario: str, port: int, env: dict[str, str]) -> dict[str, Any]:
    out = subprocess.run(
        [sys.executable, str(HERE), module, scenario, str(port)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    result: dict[str, Any] = json.loads(out.stdout)
    return result


def _compare(stack: dict[str, str], scenario: str) -> tuple[dict[str, Any], dict[str, Any]]:
    port = _free_port()
    return _run("socket", scenario, port, stack), _run("stackemu.socket", scenario, port, stack)


def test_sockopts_match_the_kernel(stack: dict[str, str]) -> None:
    kernel, emulated = _compare(stack, "sockopts")
    # 6.18: IP_TTL -1 resets (64 reads back), 0 and 256 are EINVAL; IP_TOS 0x1ff reads
    # 255; a 1-byte getsockopt buffer gets a char; IP_MTU is ENOTCONN until connected,
    # lo's 65536 read as 65535.
    assert kernel["set 2 -1"] == [None, 64, "40", "40", "40000000", "40000000"]
    assert kernel["set 2 0"][0] == ["errno", errno.EINVAL]
    assert kernel["set 1 511"][1] == 255
    assert kernel["IP_MTU unconnected"] == ["errno", errno.ENOTCONN]
    assert kernel["IP_MTU connected"] == 65535
    assert kernel["set 9999 1"][0] == ["errno", errno.ENOPROTOOPT]
    assert emulated == kernel


def test_sendmsg_and_recvmsg_ancdata_match_the_kernel(stack: dict[str, str]) -> None:
    kernel, emulated = _compare(stack, "sendmsg_ancdata")
    # 6.18: a cmsg TTL of 9 and TOS 0x10 reach the header; ttl 0 and tos 256 EINVAL;
    # ancbufsize 16 gets an IP_TTL cut to no data, 41 a TOS cut to 1 byte... as CPython
    # parses what put_cmsg left.
    assert kernel["ttl 0"][0] == ["errno", errno.EINVAL]
    assert kernel["ttl and tos"][1][1][:2] == [[SOL_IP, IP_TTL, "c8000000"], [SOL_IP, IP_TOS, "10"]]
    assert kernel["ancbufsize 16"][0][1] == [[SOL_IP, IP_TTL, ""]]
    assert emulated == kernel


def test_recv_pktinfo_matches_the_kernel(stack: dict[str, str]) -> None:
    kernel, emulated = _compare(stack, "recv_pktinfo")
    # 6.18: ifindex 1 (lo), ipi_spec_dst and ipi_addr the destination.
    assert kernel["127.0.0.5"] == [[SOL_IP, IP_PKTINFO, "010000007f0000057f000005"]]
    assert emulated == kernel


def test_local_emsgsize_matches_the_kernel(stack: dict[str, str]) -> None:
    kernel, emulated = _compare(stack, "local_emsgsize")
    # 6.18: EMSGSIZE either way; with IP_RECVERR an SO_EE_ORIGIN_LOCAL error, ee_info
    # 65535, no data, msg_name the destination with inet_dport.
    assert kernel["recverr 0 connected False"] == [["errno", errno.EMSGSIZE], ["errno", errno.EAGAIN]]
    assert kernel["recverr 1 connected False"][1][1][0][:2] == [SOL_IP, IP_RECVERR]
    assert emulated == kernel


def test_port_unreachable_matches_the_kernel(stack: dict[str, str]) -> None:
    kernel, emulated = _compare(stack, "port_unreachable")
    # 6.18: [5, ECONNREFUSED, 1, ECONNREFUSED, EAGAIN, 0]; the queued error is
    # {111, SO_EE_ORIGIN_ICMP, 3, 3} from 127.0.0.1, with the ICMP packet's cmsgs.
    assert kernel["connected"] == [5, ["errno", 111], 1, ["errno", 111], ["errno", 11], 0]
    assert emulated == kernel


def test_ancdata_parsing_matches_cpython() -> None:
    """The drop-in's parse of msg_control is CPython's (with this glibc's CMSG_NXTHDR):
    for every ancbufsize the real kernel's raw msg_control, parsed by the drop-in,
    equals what socket.recvmsg parsed from the same kernel answer; and the drop-in's
    sendmsg layout is what CPython hands the kernel."""
    from stackemu.socket._cmsg import decode_ancdata, encode_ancdata
    from tests.services.fakes_udp import real_recvmsg

    rx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    rx.bind(("127.0.0.1", 0))
    tx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    for opt in (IP_PKTINFO, IP_RECVTTL, IP_RECVTOS, IP_RECVORIGDSTADDR):
        rx.setsockopt(SOL_IP, opt, 1)
    for n in range(0, 121):
        tx.sendto(b"x", rx.getsockname())
        tx.sendto(b"x", rx.getsockname())
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            parsed = rx.recvmsg(10, n)[1]
            raw = real_recvmsg(rx, 10, n)[2]
            assert decode_ancdata(raw) == parsed, n
    # A control buffer cut inside a header: CPython warns and stops.
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        assert decode_ancdata(struct.pack("=Qii", 28, 0, 8) + bytes(4)) == [(0, 8, bytes(4))]
        assert decode_ancdata(struct.pack("=Qii", 8, 0, 8)) == []
    assert [str(x.message) for x in w] == ["received malformed or improperly-truncated ancillary data"] * 2
    anc = [(SOL_IP, IP_TTL, struct.pack("=i", 9)), (SOL_IP, IP_TOS, b"\x10"), (1, 1, b"")]
    assert encode_ancdata(anc) == (
        struct.pack("=Qii", 20, SOL_IP, IP_TTL)
        + struct.pack("=i", 9)
        + bytes(4)
        + struct.pack("=Qii", 17, SOL_IP, IP_TOS)
        + b"\x10"
        + bytes(7)
        + struct.pack("=Qii", 16, 1, 1)
    )
    bads: list[Any] = [5, [5], [(1, 2)], [(1, 2, "x")]]
    for bad in bads:
        with pytest.raises(TypeError) as ours:
            encode_ancdata(bad)
        with pytest.raises(TypeError) as cpython:
            tx.sendmsg([b"x"], bad, 0, rx.getsockname())
        assert str(ours.value) == str(cpython.value)
    rx.close()
    tx.close()


if __name__ == "__main__":
    mod = importlib.import_module(sys.argv[1])
    print(json.dumps(SCENARIOS[sys.argv[2]](mod, int(sys.argv[3]))))
