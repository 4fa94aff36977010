"""Every option number of SOL_SOCKET (0..90), SOL_IP (0..80) and SOL_UDP (0..110) on a
UDP socket, compared between this machine's kernel and an emulated host (the
differential suite, issue 6): for each, on a fresh socket, getsockopt's default,
setsockopt of int 1, getsockopt, setsockopt of int 0, getsockopt; and for each option
whose getsockopt succeeds, getsockopt with buflen 1, 4, 8, 16 and 64 (what sk_getsockopt,
do_ip_getsockopt and udp_lib_getsockopt copy for a short or long buffer). The harness is
test_udp_kernel_send.py's: the same script with `socket` in a network namespace of its
own and with `stackemu.socket` on alice, and every key must be the same.

A few values are this host's, not the stack's: those are normalised (VOLATILE) to what
must hold of them.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from typing import Any

import pytest

from services.core import errno
from tests.e2e.diff_common import call
from tests.e2e.test_udp_kernel_send import SOL_IP, SOL_SOCKET, SOL_UDP, Both, Host, compare, main, run_both

EINVAL, ENOPROTOOPT = ["OSError", errno.EINVAL], ["OSError", errno.ENOPROTOOPT]

LEVELS = {"SOL_SOCKET": (SOL_SOCKET, 91), "SOL_IP": (SOL_IP, 81), "SOL_UDP": (SOL_UDP, 111)}
BUFLENS = (1, 4, 8, 16, 64)
SO_PEERCRED, SO_COOKIE, SO_MEMINFO, SO_INCOMING_NAPI_ID, SO_NETNS_COOKIE = 17, 57, 55, 56, 71
SO_ATTACH_BPF, SO_ATTACH_REUSEPORT_EBPF = 50, 52
IP_IPSEC_POLICY, IP_XFRM_POLICY = 16, 17
# Values that are this host's and differ between the runs: SO_COOKIE and
# SO_NETNS_COOKIE are per-boot counters (a nonzero u64 is what must hold); SO_PEERCRED
# on a UDP socket is (pid 0, uid -1, gid -1) and stays as it is.
VOLATILE = {(SOL_SOCKET, SO_COOKIE), (SOL_SOCKET, SO_NETNS_COOKIE)}
# Options whose int 1 would name a resource of this process (an fd: SO_ATTACH_BPF's
# 1 is stdout here and some other fd on the emulated host) or an xfrm policy parsed
# by whatever key manager modules this kernel has loaded: not the stack's behaviour.
SKIPPED = {
    (SOL_SOCKET, SO_ATTACH_BPF),
    (SOL_SOCKET, SO_ATTACH_REUSEPORT_EBPF),
    (SOL_IP, IP_IPSEC_POLICY),
    (SOL_IP, IP_XFRM_POLICY),
}


def value(level: int, name: int, v: Any) -> Any:
    if (level, name) not in VOLATILE or isinstance(v, list):
        return v
    if isinstance(v, int):
        return "nonzero" if v else 0
    raw = bytes.fromhex(v)
    return ["nonzero" if any(raw) else "zero", len(raw)]


def get(s: Any, level: int, name: int, buflen: int = 0) -> Any:
    return value(level, name, call(s.getsockopt, level, name, buflen))


def sweep(h: Host, level: int, count: int) -> dict[str, Any]:
    """[default, set 1, after, set 0, after] per option; buflen reads of those that
    read, or that refuse an int's 4 bytes with EINVAL (SO_COOKIE wants 8)."""
    table: dict[str, Any] = {}
    buflens: dict[str, Any] = {}
    for name in range(count):
        if (level, name) in SKIPPED:
            continue
        s = h.sock()
        default = get(s, level, name)
        table[str(name)] = [
            default,
            call(s.setsockopt, level, name, 1),
            get(s, level, name),
            call(s.setsockopt, level, name, 0),
            get(s, level, name),
        ]
        s.close()
        if not isinstance(default, list) or default == EINVAL:
            s = h.sock()
            buflens[str(name)] = [get(s, level, name, n) for n in BUFLENS]
            s.close()
    return {"table": table, "buflens": buflens}


def options(h: Host) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for label, (level, count) in LEVELS.items():
        got = sweep(h, level, count)
        out[label] = got["table"]
        out[label + " buflens"] = got["buflens"]
    return out


def lengths(h: Host) -> dict[str, Any]:
    """setsockopt with optvals of 0..8 bytes for the int options of each level
    (test_optlen): EINVAL below an int, the first int of a longer one; SOL_IP's byte
    options take one byte (ip_setsockopt's optlen >= 1 for the ones that do)."""
    opts = {
        SOL_SOCKET: (2, 6, 8, 12, 36, 40, 42),
        SOL_IP: (1, 2, 8, 10, 11, 12, 13),
        SOL_UDP: (1, 103, 104),
    }
    out: dict[str, Any] = {}
    for level, names in opts.items():
        for name in names:
            seq = []
            for n in range(9):
                s = h.sock()
                raw = struct.pack("=q", 0x0202020202020202)[:n]
                seq.append([call(s.setsockopt, level, name, raw), get(s, level, name)])
                s.close()
            out[f"optlen {level} {name}"] = seq
    return out


# The tests.


@pytest.fixture(scope="module")
def both(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Both]:
    yield from run_both(__name__, str(tmp_path_factory.mktemp("state")))


# Where the emulator answers otherwise on purpose (README, "Where this differs from
# Linux"), what it answers instead: an option whose effect is not emulated refuses
# with ENOPROTOOPT rather than pretending. SO_ZEROCOPY (60): MSG_ZEROCOPY's
# completions are not emulated. SOL_IP 32-49: the multicast options (no group
# membership yet); 64-67: iptables' own sockopts (the emulator's
# netfilter is configured through its NetfilterService). A getsockopt refused on the
# emulator leaves the option out of its buflens table (None).
ABSENT = [ENOPROTOOPT] * 5
NOT_EMULATED_IP = (*range(32, 50), 64, 65, 66, 67)
DIFFERS: dict[str, Any] = {
    "SOL_SOCKET 60": [0, ENOPROTOOPT, 0, None, 0],
    **{f"SOL_IP {n}": ABSENT for n in NOT_EMULATED_IP},
    **{f"SOL_IP buflens {n}": None for n in NOT_EMULATED_IP},
}


def _per_option(kernel: dict[str, Any], emulated: dict[str, Any], key: str) -> None:
    """compare() of one table, one option per line: the keys are "<table> <option>";
    a key in DIFFERS must give that on the emulator instead."""
    k = {f"{key} {name}": v for name, v in kernel[key].items()}
    k |= {n: v for n, v in DIFFERS.items() if n in k}
    e = {f"{key} {name}": v for name, v in (emulated.get(key) or {}).items()}
    e |= {n: v for n, v in emulated.items() if n.endswith(" raised")}
    compare(k, e, *k)


def test_sol_socket_sweep(both: Both) -> None:
    kernel, emulated = both
    # 6.18 (a few of the 91): a boolean reads 0, 1, 0 (SO_REUSEADDR 2); SO_TYPE (3)
    # is read-only (ENOPROTOOPT to set); SO_SNDBUF (7) and SO_RCVBUF (8) read 212992
    # and then their floors 4608 and 2304; SO_LINGER (13) and SO_RCVTIMEO (20) EINVAL
    # for an int; SO_RCVLOWAT (18) reads 1 at first and for 0 too; SO_PEEK_OFF (42)
    # -1 at first; SO_LOCK_FILTER (44) cannot be unset (EPERM); SO_DETACH_FILTER (27)
    # ENOENT without a filter; SO_PEERGROUPS (59) ENODATA; SO_RESERVE_MEM (73)
    # EOPNOTSUPP; an unknown number is ENOPROTOOPT both ways (0 and the holes).
    table = kernel["SOL_SOCKET"]
    assert table["0"] == [ENOPROTOOPT] * 5
    assert table["2"] == [0, None, 1, None, 0]
    assert table["3"] == [2, ENOPROTOOPT, 2, ENOPROTOOPT, 2]
    assert table["7"] == [212992, None, 4608, None, 4608]
    assert table["8"] == [212992, None, 2304, None, 2304]
    assert table["13"] == [0, EINVAL, 0, EINVAL, 0]
    assert table["18"] == [1, None, 1, None, 1]
    assert table["27"] == [ENOPROTOOPT, ["FileNotFoundError", errno.ENOENT]] * 2 + [ENOPROTOOPT]
    assert table["42"] == [-1, None, 1, None, 0]
    assert table["44"] == [0, None, 1, ["PermissionError", errno.EPERM], 1]
    _per_option(kernel, emulated, "SOL_SOCKET")


def test_sol_socket_buflens(both: Both) -> None:
    kernel, emulated = both
    # 6.18: an int option copies min(len, 4) bytes: SO_TYPE reads 02, then 02000000
    # for 4, 8, 16, 64; SO_PEERCRED (17) is 12 bytes (pid 0, uid and gid -1) cut to
    # the buffer; SO_MEMINFO (55) 36 (rcvbuf and sndbuf 212992); SO_COOKIE (57) 8
    # nonzero bytes, EINVAL below 8; SO_NETNS_COOKIE (71) wants exactly 8.
    buflens = kernel["SOL_SOCKET buflens"]
    assert buflens["3"] == ["02"] + ["02000000"] * 4
    peercred = "00000000ffffffffffffffff"
    assert buflens["17"] == ["00", "00000000", peercred[:16], peercred, peercred]
    assert buflens["57"] == [EINVAL, EINVAL] + [["nonzero", 8]] * 3
    assert buflens["71"] == [EINVAL, EINVAL, ["nonzero", 8], EINVAL, EINVAL]
    _per_option(kernel, emulated, "SOL_SOCKET buflens")


def test_sol_ip_sweep(both: Both) -> None:
    kernel, emulated = both
    # 6.18: IP_TOS (1) reads 0, 1, 0; IP_TTL (2) reads 64, takes 1 and refuses 0
    # (EINVAL); IP_HDRINCL (3) is raw-only (ENOPROTOOPT); IP_MTU_DISCOVER (10) reads 1
    # (IP_PMTUDISC_WANT); IP_MTU (14) ENOTCONN unconnected; IP_MULTICAST_IF (32) and
    # IP_UNICAST_IF (50) take int 1 as an address or a big-endian ifindex that names
    # nothing (EADDRNOTAVAIL); the membership options are EINVAL for an int and
    # cannot be read (ENOPROTOOPT).
    table = kernel["SOL_IP"]
    assert table["1"] == [0, None, 1, None, 0]
    assert table["2"] == [64, None, 1, EINVAL, 1]
    assert table["3"] == [0, ENOPROTOOPT, 0, ENOPROTOOPT, 0]
    assert table["10"] == [1, None, 1, None, 0]
    assert table["14"] == [["OSError", errno.ENOTCONN], ENOPROTOOPT] * 2 + [["OSError", errno.ENOTCONN]]
    assert table["32"] == [0, ["OSError", errno.EADDRNOTAVAIL], 0, None, 0]
    assert table["35"] == [ENOPROTOOPT, EINVAL] * 2 + [ENOPROTOOPT]
    _per_option(kernel, emulated, "SOL_IP")


def test_sol_ip_buflens(both: Both) -> None:
    kernel, emulated = both
    # 6.18: do_ip_getsockopt gives an int option in 0..255 as one byte for a buffer
    # shorter than an int: IP_TTL reads 40, then 40000000 for 4, 8, 16, 64.
    assert kernel["SOL_IP buflens"]["2"] == ["40"] + ["40000000"] * 4
    _per_option(kernel, emulated, "SOL_IP buflens")


def test_sol_udp_sweep(both: Both) -> None:
    kernel, emulated = both
    # 6.18: UDP_CORK (1), UDP_NO_CHECK6_TX/RX (101, 102), UDP_SEGMENT (103) and
    # UDP_GRO (104) read 0, 1, 0; UDP_ENCAP (100) refuses 1 (ESPINUDP_NON_IKE is gone:
    # ENOPROTOOPT) and takes 0; UDP-Lite's 10 and 11 read 0 and cannot be set on UDP.
    table = kernel["SOL_UDP"]
    for name in ("1", "101", "102", "103", "104"):
        assert table[name] == [0, None, 1, None, 0], name
    assert table["100"] == [0, ENOPROTOOPT, 0, None, 0]
    assert table["10"] == [0, ENOPROTOOPT, 0, ENOPROTOOPT, 0]
    assert table["0"] == [ENOPROTOOPT] * 5
    _per_option(kernel, emulated, "SOL_UDP")
    _per_option(kernel, emulated, "SOL_UDP buflens")


def test_optlen(both: Both) -> None:
    kernel, emulated = both
    # 6.18: SOL_SOCKET and SOL_UDP want a whole int (EINVAL below 4 bytes, the first
    # int of more: 0x02020202); SOL_IP's IP_TOS, IP_TTL and the other int options take
    # one byte too (ip_setsockopt reads a u8 for optlen 1..3), so IP_TTL takes 2 from
    # 1..3 bytes and refuses 0x02020202 (EINVAL); UDP_SEGMENT refuses 0x02020202.
    assert kernel[f"optlen {SOL_IP} 2"] == [[EINVAL, 64]] + [[None, 2]] * 3 + [[EINVAL, 64]] * 5
    assert kernel[f"optlen {SOL_SOCKET} 2"] == [[EINVAL, 0]] * 4 + [[None, 1]] * 5
    keys = [k for k in kernel if k.startswith("optlen ")]
    compare(kernel, emulated, *keys)


if __name__ == "__main__":
    main(options, lengths)
