"""Every SOL_SOCKET option of a UDP socket through the drop-in module, compared with this
machine's kernel (6.18): the sweep of tests/services/test_udp_sockopt_sweep.py (names 0
to 90 but helper A1's timestamp ones, each set to 0, 1, nothing and 2 bytes, and read as
an int, with 8 bytes and with 256), the values of the options that are more than a flag,
and the capability checks of tests/services/test_udp_caps.py with the credentials cut
down on both sides.

The harness is test_udp_kernel_send.py's (Host, compare), but the script is started here:
the kernel side in a network namespace of its own, lo brought up and then the
capabilities dropped by setpriv (uid 0 with a smaller bounding set); the emulator side on
alice of a stack of its own, with STACKEMU_UID and STACKEMU_CAPS (a hex mask of CAP_*
bits) in its environment, which the drop-in module gives the process it opens.

What 6.18 answered is the tables of the two in-process test files (imported), asserted
of the kernel here before each comparison.
"""

from __future__ import annotations

import importlib
import json
import os
import shutil
import struct
import subprocess
import sys
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from services.core.socket_uapi import (
    SO_BUSY_POLL_BUDGET,
    SO_COOKIE,
    SO_DETACH_REUSEPORT_BPF,
    SO_INCOMING_CPU,
    SO_LINGER,
    SO_MAX_PACING_RATE,
    SO_NETNS_COOKIE,
    SO_PEERCRED,
    SO_PEERNAME,
    SO_RCVLOWAT,
    SO_REUSEPORT,
    SOL_SOCKET,
)
from tests.e2e.test_udp_kernel_send import LO, PORT, ROOT, Both, Host, compare, errno_of, get, put
from tests.services.test_udp_caps import CASES, STEPS
from tests.services.test_udp_sockopt_sweep import EMULATED, KERNEL, NAMES, NOT_EMULATED, U64

CAN_RUN = os.geteuid() == 0 and all(shutil.which(t) for t in ("unshare", "setpriv", "ip"))
INT = struct.Struct("=i")
MSG_DONTWAIT = 0x40


def _u64(v: Any) -> Any:
    """A cookie's value (its hex) as U64: only its being 8 bytes is compared."""
    return U64 if isinstance(v, str) and len(v) == 16 else v


def _setlen0(s: Any, n: int) -> Any:
    """setsockopt with a NULL optval and optlen 0."""
    return errno_of(lambda: s.setsockopt(SOL_SOCKET, n, None, 0))


def sweep(h: Host) -> dict[str, Any]:
    """Each name's row, as test_udp_sockopt_sweep.py's, but through the socket module:
    an int getsockopt reads the int (optlen 4), 8 and 256 the bytes (hex)."""
    out: dict[str, Any] = {}
    for n in NAMES:
        row: dict[str, Any] = {}
        for key, value in (("set0", 0), ("set1", 1), ("setlen0", None), ("setlen2", b"\1\0")):
            s = h.sock()
            row[key] = _setlen0(s, n) if value is None else put(s, SOL_SOCKET, n, value)
            row[key + "get"] = get(s, SOL_SOCKET, n)
            s.close()
        s = h.sock()
        row["get4"] = get(s, SOL_SOCKET, n)
        row["get8"], row["get256"] = get(s, SOL_SOCKET, n, 8), get(s, SOL_SOCKET, n, 256)
        if n in (SO_COOKIE, SO_NETNS_COOKIE):
            row["get8"], row["get256"] = _u64(row["get8"]), _u64(row["get256"])
        s.close()
        out[f"sweep {n}"] = row
    return out


def values(h: Host) -> dict[str, Any]:
    """The options that keep more than a flag, and the peer ones."""
    out: dict[str, Any] = {}
    linger = struct.Struct("=ii").pack
    s = h.sock()
    out["SO_LINGER"] = [
        put(s, SOL_SOCKET, SO_LINGER, linger(1, 10)),
        get(s, SOL_SOCKET, SO_LINGER, 8),
        put(s, SOL_SOCKET, SO_LINGER, linger(0, 5)),
        get(s, SOL_SOCKET, SO_LINGER, 8),
        put(s, SOL_SOCKET, SO_LINGER, linger(1, -1)),
        get(s, SOL_SOCKET, SO_LINGER, 8),
        put(s, SOL_SOCKET, SO_LINGER, linger(1, 3) + INT.pack(9)),
        get(s, SOL_SOCKET, SO_LINGER, 12),
        put(s, SOL_SOCKET, SO_LINGER, INT.pack(1) + b"\0\0"),
    ]
    out["SO_MAX_PACING_RATE"] = [
        put(s, SOL_SOCKET, SO_MAX_PACING_RATE, 1000),
        get(s, SOL_SOCKET, SO_MAX_PACING_RATE, 8),
        put(s, SOL_SOCKET, SO_MAX_PACING_RATE, -2),
        get(s, SOL_SOCKET, SO_MAX_PACING_RATE, 8),
        put(s, SOL_SOCKET, SO_MAX_PACING_RATE, struct.pack("=Q", 1 << 40)),
        get(s, SOL_SOCKET, SO_MAX_PACING_RATE),
        get(s, SOL_SOCKET, SO_MAX_PACING_RATE, 8),
        put(s, SOL_SOCKET, SO_MAX_PACING_RATE, -1),
        get(s, SOL_SOCKET, SO_MAX_PACING_RATE, 8),
    ]
    out["ints"] = [
        put(s, SOL_SOCKET, SO_RCVLOWAT, -1),
        get(s, SOL_SOCKET, SO_RCVLOWAT),
        put(s, SOL_SOCKET, SO_INCOMING_CPU, -5),
        get(s, SOL_SOCKET, SO_INCOMING_CPU),
        put(s, SOL_SOCKET, SO_BUSY_POLL_BUDGET, 65536),
    ]
    s.close()

    # SO_RCVLOWAT does nothing for UDP: a 10-byte datagram is read under 100.
    r, t = h.sock(0), h.sock(1)
    r.setsockopt(SOL_SOCKET, SO_RCVLOWAT, 100)
    t.sendto(bytes(10), (LO, PORT))
    h.settle()
    out["SO_RCVLOWAT 100"] = errno_of(lambda: len(r.recv(100, MSG_DONTWAIT)))

    t.connect((LO, PORT))
    out["peer"] = [
        get(r, SOL_SOCKET, SO_PEERNAME, 16),
        get(t, SOL_SOCKET, SO_PEERNAME, 16),
        get(t, SOL_SOCKET, SO_PEERNAME, 8),
        get(t, SOL_SOCKET, SO_PEERNAME, 17),
        get(t, SOL_SOCKET, SO_PEERCRED, 12),
    ]
    cookie = get(t, SOL_SOCKET, SO_COOKIE, 8)
    out["cookies"] = [
        len(cookie) == 16,
        cookie == get(t, SOL_SOCKET, SO_COOKIE, 16),
        cookie != get(r, SOL_SOCKET, SO_COOKIE, 8),
        get(t, SOL_SOCKET, SO_COOKIE, 7),
        _u64(get(t, SOL_SOCKET, SO_NETNS_COOKIE, 8)),
        get(t, SOL_SOCKET, SO_NETNS_COOKIE, 9),
    ]
    r.close()
    t.close()

    u = h.sock()
    seq = [put(u, SOL_SOCKET, SO_DETACH_REUSEPORT_BPF, 0), put(u, SOL_SOCKET, SO_REUSEPORT, 1)]
    seq.append(put(u, SOL_SOCKET, SO_DETACH_REUSEPORT_BPF, 0))
    u.bind((LO, PORT + 2))
    seq.append(put(u, SOL_SOCKET, SO_DETACH_REUSEPORT_BPF, 0))
    out["SO_DETACH_REUSEPORT_BPF"] = seq
    u.close()
    return out


def _bind(s: Any, addr: str, port: int) -> Any:
    return errno_of(lambda: s.bind((addr, port)))


def _sendmsg(s: Any, control: bytes) -> Any:
    """A byte to 127.0.0.1:PORT with this SOL_SOCKET control message (x86_64 layout):
    None when sent."""
    anc = [(SOL_SOCKET, INT.unpack_from(control, 12)[0], control[16 : int.from_bytes(control[:8], "little")])]
    sent = errno_of(lambda: s.sendmsg([b"c"], anc, 0, (LO, PORT)))
    return None if sent == 1 else sent


def caps(h: Host) -> dict[str, Any]:
    """test_udp_caps.py's steps through the socket module."""
    out: dict[str, Any] = {}
    s = None
    for label, op, *args in STEPS:
        if op == "new":
            s = h.sock()
            continue
        assert s is not None
        if op == "set":
            out[label] = put(s, SOL_SOCKET, args[0], bytes.fromhex(args[1]))
        elif op == "get":
            out[label] = get(s, SOL_SOCKET, args[0])
        elif op == "bind":
            out[label] = _bind(s, args[0], args[1])
        else:
            out[label] = _sendmsg(s, bytes.fromhex(args[0]))
    return out


GROUPS: dict[str, Callable[[Host], dict[str, Any]]] = {"sweep": sweep, "values": values, "caps": caps}


def main() -> None:
    """The script: argv[1] the module, argv[2] the groups (comma-separated). The kernel
    side's lo is up already (before its capabilities were dropped)."""
    h = Host(importlib.import_module(sys.argv[1]))
    out: dict[str, Any] = {}
    for name in sys.argv[2].split(","):
        try:
            out |= GROUPS[name](h)
        except Exception as e:
            out[f"{name} raised"] = repr(e)
    print(json.dumps(out))


def _run(module: str, groups: str, env: dict[str, str], bounding: str, caps_mask: int) -> dict[str, Any]:
    script = [sys.executable, "-m", __name__, module, groups]
    if module == "socket":
        spec = [f"--bounding-set={bounding}"] if bounding else []
        cmd = ["unshare", "--net", "sh", "-c", 'ip link set lo up && exec setpriv "$@"', "sh", *spec, *script]
    else:
        cmd = script
        env = {**env, "STACKEMU_UID": "0", "STACKEMU_CAPS": hex(caps_mask)}
    out = subprocess.run(cmd, env=env, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    result: dict[str, Any] = json.loads(out.stdout)
    return result


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Both]]:
    """(kernel, emulated) for every CASES entry: all groups with every capability, the
    capability steps alone for the others."""
    if not CAN_RUN:
        pytest.skip("needs root, unshare, setpriv and iproute2")
    from tests.e2e.stackrun import cli, stack_env

    env = stack_env(str(tmp_path_factory.mktemp("state")))
    up = cli(env, "up")
    assert up.returncode == 0, up.stderr
    try:
        out: dict[str, Both] = {}
        for name, (bounding, mask, _) in CASES.items():
            groups = "sweep,values,caps" if name == "all" else "caps"
            kernel = _run("socket", groups, env, bounding, mask)
            assert not [k for k in kernel if k.endswith(" raised")], kernel
            out[name] = kernel, _run("stackemu.socket", groups, env, bounding, mask)
        yield out
    finally:
        cli(env, "down")


def e(n: int) -> list[Any]:
    return ["errno", n]


def _stdlib_row(row: dict[str, Any]) -> dict[str, Any]:
    """A sweep row as the socket module shows it: an int getsockopt gives the int the
    first 4 bytes make (0 for fewer), 8 and 256 bytes the hex; no optlen 0."""

    def as_int(v: Any) -> Any:
        if v[0] == "errno":
            return v
        return INT.unpack(bytes.fromhex(v[0]).ljust(4, b"\0")[:4])[0]

    out = {k: as_int(v) if k.endswith("get") or k == "get4" else v for k, v in row.items() if k != "get0"}
    for k in ("get8", "get256"):
        out[k] = row[k] if row[k][0] == "errno" else row[k][0]
    return out


def test_every_option_name_answers_as_the_kernel(runs: dict[str, Both]) -> None:
    kernel, emulated = runs["all"]
    # 6.18's answers: tests/services/test_udp_sockopt_sweep.py KERNEL.
    for n in NAMES:
        assert kernel[f"sweep {n}"] == _stdlib_row(KERNEL[n]), n
    # Where the emulator refuses what it has not (eBPF programs, MSG_ZEROCOPY).
    differ = {f"sweep {n}" for n in NOT_EMULATED}
    for n in NOT_EMULATED:
        assert emulated[f"sweep {n}"] == _stdlib_row(EMULATED[n]), n
    compare(kernel, emulated, *(f"sweep {n}" for n in NAMES if f"sweep {n}" not in differ))


def test_option_values_match_the_kernel(runs: dict[str, Both]) -> None:
    kernel, emulated = runs["all"]
    # 6.18 (HZ 250): l_linger -1 reads LONG_MAX / HZ cut to an int; off keeps the time;
    # a 6-byte struct is EINVAL. SO_MAX_PACING_RATE: -2 is a u32, a u64 is taken from
    # optlen 8, an int read is min(~0U, rate). SO_RCVLOWAT -1 is INT_MAX and a 10-byte
    # datagram is still read under 100. SO_PEERNAME: ENOTCONN unconnected, the address
    # (its first 8 bytes for 8), EINVAL for 17; SO_PEERCRED {0, -1, -1}. Cookies are 8
    # bytes, kept, one per socket, EINVAL below 8 (SO_NETNS_COOKIE: exactly 8).
    # SO_DETACH_REUSEPORT_BPF: EINVAL without SO_REUSEPORT, ENOENT with it.
    assert kernel["SO_LINGER"] == [
        None,
        "010000000a000000",
        None,
        "000000000a000000",
        None,
        "01000000df4f8d97",
        None,
        "0100000003000000",
        e(22),
    ]
    assert kernel["SO_MAX_PACING_RATE"] == [
        None,
        "e803000000000000",
        None,
        "feffffff00000000",
        None,
        -1,
        "0000000000010000",
        None,
        "ffffffffffffffff",
    ]
    assert kernel["ints"] == [None, 0x7FFFFFFF, None, -5, e(22)]
    assert kernel["SO_RCVLOWAT 100"] == 10
    peer = "02004e207f000001"
    assert kernel["peer"] == [e(107), peer + "0000000000000000", peer, e(22), "00000000ffffffffffffffff"]
    assert kernel["cookies"] == [True, True, True, e(22), U64, e(22)]
    assert kernel["SO_DETACH_REUSEPORT_BPF"] == [e(22), None, e(2), e(2)]
    compare(kernel, emulated, "SO_LINGER", "SO_MAX_PACING_RATE", "ints", "SO_RCVLOWAT 100", "peer", "cookies")
    compare(kernel, emulated, "SO_DETACH_REUSEPORT_BPF")


@pytest.mark.parametrize("name", list(CASES))
def test_capability_checks_match_the_kernel(runs: dict[str, Both], name: str) -> None:
    kernel, emulated = runs[name]
    # 6.18's answers: tests/services/test_udp_caps.py CASES.
    want = CASES[name][2]
    assert {k: kernel[k] for k in want} == want
    compare(kernel, emulated, *want)


if __name__ == "__main__":
    main()
