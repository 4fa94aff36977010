"""IP options (services/ip/options.py) against net/ipv4/ip_options.c, byte for byte.

The setsockopt(IP_OPTIONS) table, the getsockopt bytes, the wire bytes of built options
and the IP_RECVOPTS/IP_RETOPTS cmsgs below were read from Linux 6.18.44 (in a network
namespace of our own, as root and as nobody); tests/e2e/test_options_kernel.py asks the
running kernel the same questions.
"""

from __future__ import annotations

import errno
import struct

import pytest

from services.core.ipcb import InetSkbParm, IpOptions, set_ipcb
from services.core.skbuff import PACKET_BROADCAST, PACKET_HOST
from services.ip.fib import RTN_BROADCAST, RTN_LOCAL, RTN_UNICAST
from services.ip.options import (
    RTN_MULTICAST,
    AddrType,
    OptionsError,
    SourceRouteDrop,
    inet_current_timestamp,
    ip_forward_options,
    ip_options_build,
    ip_options_compile,
    ip_options_echo,
    ip_options_fragment,
    ip_options_from_cork,
    ip_options_get,
    ip_options_rcv_srr,
    ip_options_undo,
    ip_options_undo_bytes,
)

A = 0x7F000001  # 127.0.0.1
B = 0x0A000001  # 10.0.0.1
C = 0x0A000007  # 10.0.0.7
NOW = 0x0321C562  # ms since midnight, as the kernel stamped in the capture below


def rfc1071(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    s: int = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF


def header(opts: bytes, src: int = C, dst: int = B, payload: int = 8) -> bytearray:
    """An IPv4 header with `opts` (a multiple of 4 long) and a right checksum."""
    ihl = 5 + len(opts) // 4
    h = bytearray(struct.pack("!BBHHHBBHII", 0x40 | ihl, 0, ihl * 4 + payload, 1, 0, 64, 17, 0, src, dst))
    h += opts
    struct.pack_into("!H", h, 10, rfc1071(bytes(h)))
    return h


def rcv(opts: bytes, local: int = B, addr_type: AddrType | None = None) -> tuple[bytearray, IpOptions]:
    """ip_rcv_options(): compile a received header's options with our address."""
    h = header(opts)
    opt = IpOptions(optlen=len(opts))
    ip_options_compile(h, opt, local_addr=local, now_ms=NOW, addr_type=addr_type)
    return h, opt


def rcv_error(opts: bytes, addr_type: AddrType | None = None) -> int:
    with pytest.raises(OptionsError) as e:
        rcv(opts, addr_type=addr_type)
    return e.value.pointer


def local_127(addr: int) -> int:
    """inet_addr_type() of a host owning 127/8 and 10.0.0.1."""
    if addr >> 24 == 127 or addr == B:
        return RTN_LOCAL
    return RTN_UNICAST


# __ip_options_compile() on receive.


def test_end_turns_the_rest_into_end_and_marks_the_header_changed() -> None:
    h, opt = rcv(bytes([1, 0, 5, 6]))
    assert h[20:24] == bytes([1, 0, 0, 0])
    assert opt.is_changed
    h, opt = rcv(bytes([1, 1, 0, 0]))
    assert not opt.is_changed


def test_record_route_gets_our_address() -> None:
    h, opt = rcv(bytes([1, 7, 11, 4]) + bytes(8))
    assert h[20:32] == bytes([1, 7, 11, 8, 10, 0, 0, 1, 0, 0, 0, 0])
    assert (opt.rr, opt.rr_needaddr, opt.is_changed) == (21, True, True)
    # The checksum is not redone on receive: is_changed says it no longer holds.
    assert rfc1071(bytes(h)) != 0


def test_full_record_route_is_left_alone() -> None:
    h, opt = rcv(bytes([7, 11, 12]) + bytes(8) + b"\0")
    assert h[22] == 12
    assert (opt.rr, opt.rr_needaddr, opt.is_changed) == (20, False, False)


@pytest.mark.parametrize(
    ("opts", "pointer"),
    [
        (bytes([7, 2, 0, 0]), 21),  # shorter than type, length and pointer
        (bytes([7, 7, 3]) + bytes(5), 22),  # pointer below 4
        (bytes([7, 9, 8]) + bytes(5) + bytes(3), 22),  # a slot that runs past the option
        (bytes([7, 3, 4, 7, 3, 4, 0, 0]), 23),  # a second record route
        (bytes([7, 9, 4]) + bytes(5), 20),  # longer than what is left
        (bytes([1, 1, 1, 0x99]), 23),  # a type octet with no length after it
        (bytes([0x99, 1, 0, 0]), 20),  # length below 2
    ],
)
def test_record_route_and_framing_errors_point_at_the_octet(opts: bytes, pointer: int) -> None:
    assert rcv_error(opts) == pointer


def test_timestamp_only() -> None:
    h, opt = rcv(bytes([68, 12, 5, 0]) + bytes(8))
    assert h[20:32] == bytes([68, 12, 9, 0]) + struct.pack("!I", NOW) + bytes(4)
    assert (opt.ts, opt.ts_needtime, opt.ts_needaddr, opt.is_changed) == (20, True, False, True)


def test_timestamp_and_address() -> None:
    h, opt = rcv(bytes([68, 20, 5, 1]) + bytes(16))
    assert h[20:40] == bytes([68, 20, 13, 1]) + bytes([10, 0, 0, 1]) + struct.pack("!I", NOW) + bytes(8)
    assert (opt.ts_needtime, opt.ts_needaddr) == (True, True)
    assert rcv_error(bytes([68, 8, 5, 1, 0, 0, 0, 0])) == 22


def test_prespecified_timestamp_only_where_the_slot_names_us() -> None:
    opts = bytes([68, 20, 5, 3, 10, 0, 0, 1, 0, 0, 0, 0, 10, 9, 9, 9, 0, 0, 0, 0])
    h, opt = rcv(opts, addr_type=local_127)
    assert h[20:40] == opts[:2] + bytes([13, 3, 10, 0, 0, 1]) + struct.pack("!I", NOW) + opts[12:]
    assert opt.ts_needtime
    # The next slot is someone else's: nothing changes, but the option is noted.
    h, opt = rcv(bytes(h[20:40]), addr_type=local_127)
    assert h[22] == 13
    assert (opt.ts, opt.ts_needtime, opt.is_changed) == (20, False, False)
    assert rcv_error(bytes([68, 8, 5, 3, 0, 0, 0, 0])) == 22


def test_prespecified_broadcast_and_multicast_slots_are_stamped() -> None:
    # inet_addr_type() != RTN_UNICAST: 0.0.0.0 is RTN_BROADCAST even with no addresses.
    h, opt = rcv(bytes([68, 12, 5, 3]) + bytes(8))
    assert h[22] == 13 and opt.ts_needtime


def test_timestamp_overflow_counts_up_to_15() -> None:
    h, opt = rcv(bytes([68, 8, 9, 0xE0, 0, 0, 0, 0]))
    assert h[23] == 0xF0 and opt.is_changed and opt.ts == 20
    assert rcv_error(bytes([68, 8, 9, 0xF0, 0, 0, 0, 0])) == 23
    # A full prespecified timestamp keeps its counter.
    h, opt = rcv(bytes([68, 12, 13, 0x33]) + bytes(8))
    assert h[23] == 0x33 and not opt.is_changed


def test_timestamp_errors() -> None:
    assert rcv_error(bytes([68, 3, 5, 0])) == 21
    assert rcv_error(bytes([68, 8, 4, 0, 0, 0, 0, 0])) == 22
    assert rcv_error(bytes([68, 10, 9, 0]) + bytes(6) + bytes([1, 1])) == 22
    assert rcv_error(bytes([68, 8, 5, 0, 0, 0, 0, 0, 68, 8, 5, 0, 0, 0, 0, 0])) == 28


def test_unknown_timestamp_flags_are_kept_on_receive() -> None:
    h, opt = rcv(bytes([68, 8, 5, 2, 0, 0, 0, 0]))
    assert h[22] == 5 and opt.ts == 20 and not opt.ts_needtime


def test_source_route_on_receive_is_noted_not_changed() -> None:
    opts = bytes([131, 11, 4, 10, 0, 0, 9, 10, 0, 0, 8, 0])
    h, opt = rcv(opts)
    assert h[20:32] == opts
    assert (opt.srr, opt.is_strictroute, opt.faddr) == (20, False, 0)
    _, opt = rcv(bytes([137, 7, 4, 10, 0, 0, 9, 0]))
    assert opt.is_strictroute
    assert rcv_error(bytes([131, 2, 0, 0])) == 21
    assert rcv_error(bytes([131, 7, 3, 0, 0, 0, 0, 0])) == 22
    assert rcv_error(bytes([131, 3, 4, 137, 3, 4, 0, 0])) == 23


def test_router_alert() -> None:
    _, opt = rcv(bytes([148, 4, 0, 0]))
    assert opt.router_alert == 20
    _, opt = rcv(bytes([148, 4, 0, 1]))
    assert opt.router_alert == 0
    assert rcv_error(bytes([148, 3, 0, 0])) == 21


def test_cipso_is_refused_without_a_doi_but_noted_first() -> None:
    # cipso_v4_validate(): shorter than 8 points at the length, else at the DOI.
    h = header(bytes([134, 8, 0, 0, 0, 1, 0, 0]))
    opt = IpOptions(optlen=8)
    with pytest.raises(OptionsError) as e:
        ip_options_compile(h, opt, local_addr=B)
    assert (e.value.pointer, e.value.info, opt.cipso) == (22, 22 << 24, 20)
    assert rcv_error(bytes([134, 6, 0, 0, 0, 1, 0, 0])) == 21


def test_unknown_options_are_skipped_on_receive() -> None:
    h, opt = rcv(bytes([0x99, 4, 1, 2, 130, 3, 0, 0]))
    assert h[20:28] == bytes([0x99, 4, 1, 2, 130, 3, 0, 0]) and opt == IpOptions(optlen=8)


def test_compile_needs_the_whole_option_area() -> None:
    with pytest.raises(ValueError):
        ip_options_compile(bytearray(23), IpOptions(optlen=4), local_addr=B)


def test_partial_compile_leaves_what_it_found() -> None:
    # icmp_send() echoes IPCB as far as compiling got: the record route here.
    h = header(bytes([7, 7, 4, 0, 0, 0, 0, 0x99, 1, 0, 0, 0]))
    opt = IpOptions(optlen=12)
    with pytest.raises(OptionsError):
        ip_options_compile(h, opt, local_addr=B)
    assert (opt.rr, opt.rr_needaddr) == (20, True)
    assert h[20:27] == bytes([7, 7, 8, 10, 0, 0, 1])


# setsockopt(IP_OPTIONS): ip_options_get(), and getsockopt(IP_OPTIONS).

# name: (optval, root answer, nobody answer): errno or the getsockopt bytes, as Linux
# 6.18.44 gave them.
KERNEL_TABLE: dict[str, tuple[bytes, int | str, int | str]] = {
    "empty": (b"", "", ""),
    "nop": (bytes([1]), "01000000", "01000000"),
    "end_junk": (bytes([0, 5, 6, 7]), "00000000", "00000000"),
    "rr9": (bytes([7, 39, 4]) + bytes(36), "0727" + "04" + "00" * 37, "0727" + "04" + "00" * 37),
    "rr_ptr3": (bytes([7, 7, 3, 0, 0, 0, 0]), 22, 22),
    "rr_ptr5": (bytes([7, 7, 5, 0, 0, 0, 0]), 22, 22),
    "rr_len2": (bytes([7, 2]), 22, 22),
    "rr_len3": (bytes([7, 3, 4]), "07030400", "07030400"),
    "rr_full": (bytes([7, 7, 8, 1, 2, 3, 4]), "0707080102030400", "0707080102030400"),
    "rr_twice": (bytes([7, 7, 4, 0, 0, 0, 0, 7, 7, 4, 0, 0, 0, 0]), 22, 22),
    "ts_only": (bytes([68, 12, 5, 0]) + bytes(8), "440c05000000000000000000", "440c05000000000000000000"),
    "ts_addr": (bytes([68, 12, 5, 1]) + bytes(8), "440c05010000000000000000", "440c05010000000000000000"),
    "ts_prespec_other": (
        bytes([68, 12, 5, 3, 10, 1, 2, 3, 0, 0, 0, 0]),
        "440c05030a01020300000000",
        "440c05030a01020300000000",
    ),
    "ts_prespec_local": (
        bytes([68, 12, 5, 3, 127, 0, 0, 1, 0, 0, 0, 0]),
        "440c05037f00000100000000",
        "440c05037f00000100000000",
    ),
    "ts_flag2": (bytes([68, 8, 5, 2, 0, 0, 0, 0]), "4408050200000000", 22),
    "ts_ptr4": (bytes([68, 8, 4, 0, 0, 0, 0, 0]), 22, 22),
    "ts_len3": (bytes([68, 3, 5]), 22, 22),
    "ts_full_ovf15": (bytes([68, 8, 9, 0xF0, 0, 0, 0, 0]), 22, 22),
    "ts_full_ovf14": (bytes([68, 8, 9, 0xE0, 0, 0, 0, 0]), "440809e000000000", "440809e000000000"),
    "ts_addr_short": (bytes([68, 8, 5, 1, 0, 0, 0, 0]), 22, 22),
    "lsrr": (bytes([131, 11, 4, 10, 0, 0, 1, 10, 0, 0, 2]), "830b040a0000010a00000200", 1),
    "ssrr": (bytes([137, 7, 4, 10, 0, 0, 1]), "8907040a00000100", 1),
    "lsrr_ptr8": (bytes([131, 11, 8, 10, 0, 0, 1, 10, 0, 0, 2]), 22, 22),
    "lsrr_len9": (bytes([131, 9, 4, 10, 0, 0, 1, 0, 0]), 22, 22),
    "lsrr_len6": (bytes([131, 6, 4, 10, 0, 0]), 22, 22),
    "lsrr_twice": (bytes([131, 7, 4, 10, 0, 0, 1, 137, 7, 4, 10, 0, 0, 2]), 22, 22),
    "ra": (bytes([148, 4, 0, 0]), "94040000", "94040000"),
    "ra_nonzero": (bytes([148, 4, 0, 1]), "94040001", "94040001"),
    "ra_len3": (bytes([148, 3, 0]), 22, 22),
    "cipso": (bytes([134, 8, 0, 0, 0, 1, 0, 0]), 22, 22),
    "sec": (bytes([130, 11]) + bytes(9), "820b00000000000000000000", 22),
    "unknown": (bytes([0x99, 4, 0, 0]), "99040000", 22),
    "bad_len": (bytes([0x99, 9, 0, 0]), 22, 22),
    "lone_type": (bytes([1, 1, 1, 0x99]), 22, 22),
    "len41": (bytes([1]) * 41, 22, 22),
    "len40": (bytes([1]) * 40, "01" * 40, "01" * 40),
}


def setsockopt_ip_options(optval: bytes, cap_net_raw: bool) -> int | str:
    """setsockopt(IP_OPTIONS) then getsockopt(IP_OPTIONS), as the probe did."""
    try:
        opt = ip_options_get(optval, cap_net_raw=cap_net_raw, addr_type=local_127)
    except OSError as e:
        assert e.errno is not None
        return e.errno
    return ip_options_undo_bytes(opt).hex()


@pytest.mark.parametrize("name", sorted(KERNEL_TABLE))
def test_ip_options_get_matches_the_kernel_table(name: str) -> None:
    optval, root, nobody = KERNEL_TABLE[name]
    assert setsockopt_ip_options(optval, cap_net_raw=True) == root
    assert setsockopt_ip_options(optval, cap_net_raw=False) == nobody


def test_ip_options_get_compiles_for_sending() -> None:
    opt = ip_options_get(bytes([7, 7, 4]) + bytes(4), addr_type=local_127)
    assert (opt.optlen, opt.rr, opt.rr_needaddr, opt.data) == (8, 20, True, bytes([7, 7, 8, 0, 0, 0, 0, 0]))
    opt = ip_options_get(bytes([131, 11, 4, 10, 0, 0, 1, 10, 0, 0, 2]), cap_net_raw=True)
    # The first hop moves to faddr; the rest shifts left (the last slot keeps a copy
    # until ip_options_build() puts the destination there).
    assert opt.faddr == 0x0A000001
    assert opt.data == bytes([131, 11, 4, 10, 0, 0, 2, 10, 0, 0, 2, 0])
    assert ip_options_get(b"") == IpOptions()


def test_ip_options_get_errors_are_oserrors() -> None:
    with pytest.raises(OSError) as e:
        ip_options_get(bytes([7, 7, 3]))
    assert e.value.errno == errno.EINVAL
    with pytest.raises(OSError) as e:
        ip_options_get(bytes([137, 7, 4, 1, 2, 3, 4]))
    assert e.value.errno == errno.EPERM


# ip_options_build(): what a socket's options look like on the wire.


def test_build_record_route_as_the_kernel_sent_it() -> None:
    # setsockopt(IP_OPTIONS, RR with 9 slots) on a raw ICMP socket, then ping
    # 127.0.0.1: the request carried 0727087f000001 and zeros.
    opt = ip_options_get(bytes([7, 39, 4]) + bytes(36) + b"\0")
    h = header(bytes(40), src=A, dst=A)
    ip_options_build(h, opt, A, A, NOW)
    assert h[20:60].hex() == "0727087f000001" + "00" * 33


def test_build_timestamp_as_the_kernel_sent_it() -> None:
    opt = ip_options_get(bytes([68, 36, 5, 0]) + bytes(32))
    h = header(bytes(36), src=A, dst=A)
    ip_options_build(h, opt, A, A, 0x0320DD9E + 86_400_000 * 20000)
    assert h[20:56].hex() == "442409000320dd9e" + "00" * 28


def test_build_source_route_puts_the_destination_last() -> None:
    # sendto(127.0.0.2) with LSRR via 127.0.0.1: the kernel sent the packet to
    # 127.0.0.1 with 8307047f000002.
    opt = ip_options_get(bytes([131, 7, 4, 127, 0, 0, 1]), cap_net_raw=True)
    assert opt.faddr == A
    h = header(bytes(8), src=A, dst=opt.faddr)
    ip_options_build(h, opt, 0x7F000002, A, NOW)
    assert h[20:28].hex() == "8307047f00000200"


def test_build_timestamp_with_address_and_prespecified() -> None:
    opt = ip_options_get(bytes([68, 12, 5, 1]) + bytes(8))
    h = header(bytes(12))
    ip_options_build(h, opt, C, B, NOW)
    assert h[20:32] == bytes([68, 12, 13, 1, 10, 0, 0, 1]) + struct.pack("!I", NOW)
    opt = ip_options_get(bytes([68, 12, 5, 3, 127, 0, 0, 1, 0, 0, 0, 0]), addr_type=local_127)
    h = header(bytes(12))
    ip_options_build(h, opt, C, B, NOW)
    assert h[20:32] == bytes([68, 12, 13, 3, 127, 0, 0, 1]) + struct.pack("!I", NOW)


def test_build_as_a_later_fragment_drops_record_route_and_timestamp() -> None:
    opt = ip_options_get(bytes([7, 7, 4, 0, 0, 0, 0, 1, 68, 8, 5, 0, 0, 0, 0, 0, 148, 4, 0, 0]))
    h = header(bytes(20))
    ip_options_build(h, opt, C, B, NOW, is_frag=True)
    assert h[20:40] == bytes([1] * 7 + [1] + [1] * 8 + [148, 4, 0, 0])
    assert (opt.rr, opt.ts, opt.rr_needaddr, opt.ts_needtime, opt.router_alert) == (0, 0, False, False, 36)


# __ip_options_echo(), ip_options_undo() and the cmsgs.


def test_echo_reply_record_route_as_the_kernel_answered() -> None:
    # The ping above: the request arrived with 127.0.0.1 recorded once; ip_rcv_options
    # recorded it again; the reply carried a third (0727107f0000017f0000017f000001).
    req = bytes.fromhex("0727087f000001") + bytes(32) + b"\0"
    h, sopt = rcv(req, local=A)
    dopt = ip_options_echo(h, sopt)
    assert (dopt.optlen, dopt.rr, dopt.rr_needaddr) == (40, 20, True)
    reply = header(bytes(40), src=A, dst=A)
    ip_options_build(reply, dopt, A, A, NOW)
    assert reply[20:60].hex() == "0727107f0000017f0000017f000001" + "00" * 25


def test_echo_reply_timestamp_as_the_kernel_answered() -> None:
    req = bytes.fromhex("442409000320dd9e") + bytes(28)
    h, sopt = rcv(req, local=A)
    dopt = ip_options_echo(h, sopt)
    reply = header(bytes(36), src=A, dst=A)
    ip_options_build(reply, dopt, A, A, NOW)
    assert reply[20:56].hex() == "44241100" + "0320dd9e" + f"{NOW:08x}" * 2 + "00" * 20


def test_recvopts_and_retopts_as_the_kernel_delivered_them() -> None:
    # sender IP_OPTIONS, receiver IP_RECVOPTS and IP_RETOPTS over 127.0.0.1:
    # (sender's option, RECVOPTS = RETOPTS the kernel gave).
    cases = [
        (bytes([7, 15, 4]) + bytes(12), "070f0c7f0000017f0000010000000000"),
        (bytes([7, 7, 4]) + bytes(4), "0707087f00000100"),
        (bytes([68, 16, 5, 0]) + bytes(12), "44100d00" + f"{NOW:08x}" * 2 + "00000000"),
        (bytes([68, 28, 5, 1]) + bytes(24), "441c1501" + f"7f000001{NOW:08x}" * 2 + "00" * 8),
        (
            bytes([68, 20, 5, 3, 127, 0, 0, 1, 0, 0, 0, 0, 10, 9, 9, 9, 0, 0, 0, 0]),
            f"44140d037f000001{NOW:08x}0a09090900000000",
        ),
    ]
    for sent, kernel in cases:
        opt = ip_options_get(sent, addr_type=local_127)
        pkt = header(bytes(opt.optlen), src=A, dst=A)
        ip_options_build(pkt, opt, A, A, NOW)
        sopt = IpOptions(optlen=opt.optlen)
        ip_options_compile(pkt, sopt, local_addr=A, now_ms=NOW, addr_type=local_127)
        recvopts = bytes(pkt[20 : 20 + sopt.optlen])
        retopts = ip_options_undo_bytes(ip_options_echo(pkt, sopt, addr_type=local_127))
        assert (recvopts.hex(), retopts.hex()) == (kernel, kernel), sent.hex()


def test_echo_reverses_the_source_route() -> None:
    # A packet from C that went C → 10.0.0.8 → 10.0.0.9 → us: each hop overwrote its
    # slot with its own address and moved the pointer on.
    opts = bytes([131, 15, 16, 10, 0, 0, 8, 10, 0, 0, 9, 10, 0, 0, 1, 0])
    h, sopt = rcv(opts)
    dopt = ip_options_echo(h, sopt)
    # Back: first hop 10.0.0.1 (the last recorded), then 10.0.0.9, 10.0.0.8, then the
    # slot for the final destination (C, filled by ip_options_build).
    assert dopt.faddr == 0x0A000001
    assert dopt.data == bytes([131, 15, 4, 10, 0, 0, 9, 10, 0, 0, 8, 0, 0, 0, 0, 0])
    assert (dopt.srr, dopt.optlen, dopt.is_strictroute) == (20, 16, False)
    reply = header(bytes(16), src=B, dst=dopt.faddr)
    ip_options_build(reply, dopt, C, B, NOW)
    assert reply[20:36] == bytes([131, 15, 4, 10, 0, 0, 9, 10, 0, 0, 8, 10, 0, 0, 7, 0])
    # And in user form (IP_RETOPTS): the first hop in front again.
    assert ip_options_undo_bytes(dopt) == bytes([131, 15, 4, 10, 0, 0, 1, 10, 0, 0, 9, 10, 0, 0, 8, 0])


def test_echo_drops_a_route_that_starts_at_the_sender() -> None:
    # RFC 1812 5.2.4.1: the sender's own address first is not sent back to it.
    opts = bytes([137, 11, 12, 10, 0, 0, 7, 10, 0, 0, 1, 0])
    h, sopt = rcv(opts)
    dopt = ip_options_echo(h, sopt)
    assert dopt.data == bytes([137, 7, 4, 0, 0, 0, 0, 0]) and dopt.faddr == B and dopt.is_strictroute
    # A route not yet travelled has nothing to reverse.
    h, sopt = rcv(bytes([131, 7, 4, 10, 0, 0, 9, 0]))
    assert ip_options_echo(h, sopt) == IpOptions()


def test_echo_errors_when_there_is_no_room() -> None:
    h, sopt = rcv(bytes([7, 14, 8]) + bytes(11) + bytes(2))
    assert h[22] == 12
    with pytest.raises(OSError) as e:
        ip_options_echo(h, sopt)
    assert e.value.errno == errno.EINVAL
    h, sopt = rcv(bytes([68, 14, 5, 1]) + bytes(10) + bytes(2))
    with pytest.raises(OSError):
        ip_options_echo(h, sopt)


def test_echo_refuses_an_ipcb_that_does_not_fit() -> None:
    with pytest.raises(OSError):
        ip_options_echo(header(bytes(4)), IpOptions(optlen=4, rr=30, rr_needaddr=True))
    with pytest.raises(OSError):
        ip_options_echo(header(b""), IpOptions(optlen=8, rr=20))


def test_echo_copies_cipso_and_pads() -> None:
    h = header(bytes([134, 6, 0, 0, 0, 1, 0, 0]))
    dopt = ip_options_echo(h, IpOptions(optlen=8, cipso=20))
    assert (dopt.data, dopt.cipso) == (bytes([134, 6, 0, 0, 0, 1, 0, 0]), 20)


def test_undo_restores_setsockopt_form() -> None:
    raw = bytes([131, 11, 4, 10, 0, 0, 1, 10, 0, 0, 2, 1, 7, 7, 4, 0, 0, 0, 0, 0])
    opt = ip_options_get(raw, cap_net_raw=True)
    back = ip_options_undo(opt)
    assert back.data == raw and opt.data != raw
    assert ip_options_get(back.data, cap_net_raw=True).data == opt.data


# ip_options_fragment (kept from before).


def test_fragment_noops_the_uncopied_options() -> None:
    h = header(bytes([7, 7, 8, 10, 0, 0, 1, 148, 4, 0, 0, 1]))
    opt = IpOptions(optlen=12, rr=20, rr_needaddr=True)
    ip_options_fragment(h, opt)
    assert h[20:32] == bytes([1] * 7 + [148, 4, 0, 0, 1])
    assert (opt.rr, opt.rr_needaddr) == (0, False)


# ip_options_rcv_srr() and ip_forward_options().


def test_rcv_srr_loose_route_through_a_router_goes_on() -> None:
    h, opt = rcv(bytes([131, 7, 4, 10, 0, 0, 9, 0]))
    assert (
        ip_options_rcv_srr(h, opt, pkt_type=PACKET_HOST, rt_type=RTN_UNICAST, route_input=local_127) is None
    )


def test_rcv_srr_strict_route_through_a_router_is_a_parameter_problem() -> None:
    h, opt = rcv(bytes([137, 7, 4, 10, 0, 0, 9, 0]))
    with pytest.raises(OptionsError) as e:
        ip_options_rcv_srr(h, opt, pkt_type=PACKET_HOST, rt_type=RTN_UNICAST, route_input=local_127)
    assert e.value.pointer == 16


def test_rcv_srr_drops() -> None:
    h, opt = rcv(bytes([131, 7, 4, 10, 0, 0, 9, 0]))
    with pytest.raises(SourceRouteDrop):
        ip_options_rcv_srr(h, opt, pkt_type=PACKET_BROADCAST, rt_type=RTN_LOCAL, route_input=local_127)
    with pytest.raises(SourceRouteDrop):
        ip_options_rcv_srr(h, opt, pkt_type=PACKET_HOST, rt_type=RTN_BROADCAST, route_input=local_127)
    with pytest.raises(SourceRouteDrop):
        ip_options_rcv_srr(h, opt, pkt_type=PACKET_HOST, rt_type=RTN_LOCAL, route_input=lambda a: None)
    with pytest.raises(SourceRouteDrop):
        ip_options_rcv_srr(
            h, opt, pkt_type=PACKET_HOST, rt_type=RTN_LOCAL, route_input=lambda a: RTN_MULTICAST
        )


def test_rcv_srr_takes_local_hops_and_names_the_next_one() -> None:
    opts = bytes([131, 15, 4, 127, 0, 0, 5, 10, 0, 0, 9, 10, 0, 0, 8, 0])
    h, opt = rcv(opts)
    nexthop = ip_options_rcv_srr(h, opt, pkt_type=PACKET_HOST, rt_type=RTN_LOCAL, route_input=local_127)
    assert nexthop == 0x0A000009
    assert h[16:20] == bytes([127, 0, 0, 5]) and h[22] == 4
    assert (opt.srr_is_hit, opt.nexthop, opt.is_changed) == (True, 0x0A000009, True)
    # ip_forward: our outgoing address into the hop's slot, the destination to the hop.
    ip_forward_options(h, opt, 0x0A000002)
    assert h[20:36] == bytes([131, 15, 12, 127, 0, 0, 5, 10, 0, 0, 2, 10, 0, 0, 8, 0])
    assert h[16:20] == bytes([10, 0, 0, 9])
    assert rfc1071(bytes(h)) == 0 and not opt.is_changed


def test_rcv_srr_all_hops_local_delivers_here() -> None:
    h, opt = rcv(bytes([131, 7, 4, 127, 0, 0, 5, 0]))
    assert ip_options_rcv_srr(h, opt, pkt_type=PACKET_HOST, rt_type=RTN_LOCAL, route_input=local_127) is None
    assert h[16:20] == bytes([127, 0, 0, 5]) and opt.is_changed and not opt.srr_is_hit


def test_rcv_srr_with_no_room_left_points_at_the_pointer() -> None:
    h, opt = rcv(bytes([131, 9, 8, 127, 0, 0, 5, 0, 0, 0, 0, 0]))
    with pytest.raises(OptionsError) as e:
        ip_options_rcv_srr(h, opt, pkt_type=PACKET_HOST, rt_type=RTN_LOCAL, route_input=local_127)
    assert e.value.pointer == 22


def test_forward_options_records_route_and_fixes_the_checksum() -> None:
    h, opt = rcv(bytes([7, 11, 4]) + bytes(9))
    ip_forward_options(h, opt, 0x0A000002)
    assert h[20:32] == bytes([7, 11, 8, 10, 0, 0, 2]) + bytes(5)
    assert rfc1071(bytes(h)) == 0


# ip_options_from_cork(): what ip_send_skb reads back.


def test_from_cork_reads_ipcb_and_the_compiled_bytes() -> None:
    opt = ip_options_get(bytes([7, 7, 4, 0, 0, 0, 0]))
    cb = bytearray(48)
    set_ipcb(cb, InetSkbParm(opt=opt))
    back = ip_options_from_cork(cb, opt.data)
    assert back == opt and back.data == opt.data


def test_from_cork_compiles_user_form_when_ipcb_is_empty() -> None:
    raw = bytes([137, 7, 4, 10, 0, 0, 1])
    got = ip_options_from_cork(bytes(48), raw)
    assert (got.srr, got.faddr, got.data) == (20, 0x0A000001, bytes([137, 7, 4, 10, 0, 0, 1, 0]))
    assert ip_options_from_cork(bytes(48), b"") == IpOptions()


@pytest.mark.parametrize(
    "opt",
    [
        IpOptions(optlen=12, rr=20),
        IpOptions(optlen=8, rr=40),
        IpOptions(optlen=8, rr=20, rr_needaddr=True),
        IpOptions(optlen=8, ts=20, ts_needtime=True),
        IpOptions(optlen=8, srr=20),
    ],
)
def test_from_cork_refuses_an_ipcb_that_does_not_fit(opt: IpOptions) -> None:
    cb = bytearray(48)
    set_ipcb(cb, InetSkbParm(opt=opt))
    data = bytes([7, 7, 12, 0, 0, 0, 0, 0]) if opt.rr else bytes([68, 4, 5, 0, 131, 3, 4, 0])
    with pytest.raises(OSError) as e:
        ip_options_from_cork(cb, data)
    assert e.value.errno == errno.EINVAL


def test_inet_current_timestamp_is_ms_since_midnight() -> None:
    assert inet_current_timestamp(86_400_000_000_000 * 3 + 1_234_567_891) == 1234
