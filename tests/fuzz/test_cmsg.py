"""Hostile control buffers on send: udp_sendmsg's udp_cmsg_send (services/udp/output.py)
and ip_cmsg_send / __sock_cmsg_send (services/ip/sockglue.py), walked by
for_each_cmsghdr with CMSG_OK, then the datagram built with what they decided.

The fuzz: control buffers of messages at every level with known and unknown types,
payloads of every length, cmsg_len fields that disagree with them (shorter than a
header, past msg_controllen, off by one), trailing bytes, and raw bytes, sent with
sendmsg on an in-process UDP layer (LoopbackUdp: the datagram goes through IP's option
building and back up into udp_rcv). Property: the send succeeds or fails with an errno
udp_sendmsg can return, never another exception.

The comparison: hand-picked malformed buffers sent by this machine's kernel
(sendmsg(2) through ctypes on 127.0.0.1, so msg_control is exactly these bytes) and by
the emulator must give the same errno, or both succeed."""

from __future__ import annotations

import asyncio
import socket
import struct

from hypothesis import event, given
from hypothesis import strategies as st

from services.core import errno
from services.core.socket_uapi import SOL_IP, SOL_SOCKET, SOL_UDP
from services.ip.sockglue import (
    CMSG_HDR_LEN,
    IP_PKTINFO,
    IP_PROTOCOL,
    IP_RETOPTS,
    IP_TOS,
    IP_TTL,
    Ipcm,
    build_cmsgs,
    cmsg_align,
    ip_cmsg_send,
)
from services.udp.output import udp_cmsg_send
from tests.fuzz import fuzz_settings
from tests.services.fakes_udp import LoopbackUdp, real_sendmsg, sockaddr

SO_PRIORITY, SO_MARK, SO_TIMESTAMPING, SCM_TXTIME, SO_TIMESTAMPING_NEW, SCM_TS_OPT_ID = 12, 36, 37, 61, 65, 81
SCM_RIGHTS, SCM_CREDENTIALS = 1, 2
UDP_SEGMENT = 103
_CMSGHDR = struct.Struct("=Qii")
INT, U32, U16, U64 = struct.Struct("=i"), struct.Struct("=I"), struct.Struct("=H"), struct.Struct("=Q")

# What udp_sendmsg can answer a send with bad control messages or the datagram they
# shape: EINVAL (CMSG_OK, lengths, values, UDP_SEGMENT's limits), EPERM (SO_MARK and
# SO_PRIORITY without the capability, source routes), EMSGSIZE, ENOBUFS (a control
# buffer past optmem_max), and the route lookup's errors for an IP_PKTINFO device or
# source.
SEND_ERRNOS = {
    errno.EINVAL,
    errno.EPERM,
    errno.EMSGSIZE,
    errno.ENOBUFS,
    errno.ENODEV,
    errno.ENETUNREACH,
    errno.EHOSTUNREACH,
    errno.EADDRNOTAVAIL,
    errno.EACCES,
}

_TYPES = {
    SOL_IP: [IP_TOS, IP_TTL, IP_RETOPTS, IP_PKTINFO, IP_PROTOCOL, 3, 4, 99],
    SOL_SOCKET: [SO_MARK, SO_PRIORITY, SO_TIMESTAMPING, SO_TIMESTAMPING_NEW, SCM_TXTIME, SCM_TS_OPT_ID,
                 SCM_RIGHTS, SCM_CREDENTIALS, 0, 1234],
    SOL_UDP: [UDP_SEGMENT, 1, 102],
    41: [50, 2],
    0x7FFFFFFF: [0],
}  # fmt: skip


def cmsg(level: int, type_: int, data: bytes, length: int | None = None, pad: bool = True) -> bytes:
    """One message: a header whose cmsg_len is CMSG_LEN(len(data)) unless `length`
    says otherwise, the data, and padding to CMSG_SPACE unless pad is False."""
    n = CMSG_HDR_LEN + len(data) if length is None else length
    out = _CMSGHDR.pack(n & 0xFFFFFFFFFFFFFFFF, level, type_) + data
    return out + bytes(cmsg_align(len(out)) - len(out)) if pad else out


@st.composite
def one_cmsg(draw: st.DrawFn) -> bytes:
    level = draw(st.sampled_from(sorted(_TYPES)) | st.integers(-(2**31), 2**31 - 1))
    type_ = draw(st.sampled_from(_TYPES.get(level, [0])) | st.integers(-(2**31), 2**31 - 1))
    size = draw(st.sampled_from([0, 1, 2, 3, 4, 8, 11, 12, 13, 40, 41]) | st.integers(0, 64))
    data = draw(
        st.sampled_from([INT.pack(v) for v in (0, 1, 64, 255, 256, -1, 6, 7)]).map(lambda b: b[:size])
        | st.binary(min_size=size, max_size=size)
    )
    length = draw(st.none() | st.sampled_from([0, 1, 15, 16, 17]) | st.integers(0, 2**64 - 1))
    return cmsg(level, type_, data, length, draw(st.booleans()))


controls = st.one_of(
    st.lists(one_cmsg(), min_size=1, max_size=4).map(b"".join),
    st.tuples(st.lists(one_cmsg(), max_size=3).map(b"".join), st.binary(max_size=20)).map(
        lambda t: t[0] + t[1]
    ),
    st.binary(max_size=64),
)


@fuzz_settings(400)
@given(controls)
def test_cmsg_parsers_answer_with_an_errno(control: bytes) -> None:
    """udp_cmsg_send then, if other levels are left, ip_cmsg_send, as udp_sendmsg calls
    them: success, or EINVAL/EPERM (the only errors of for_each_cmsghdr's CMSG_OK,
    __udp_cmsg_send, ip_cmsg_send and __sock_cmsg_send, ip_options_get's included)."""
    ipc = Ipcm()
    try:
        if udp_cmsg_send(control, ipc):
            ip_cmsg_send(control, ipc)
    except OSError as err:
        assert err.errno in (errno.EINVAL, errno.EPERM), err
        event(f"errno {errno.errorcode[err.errno]}")
        return
    event("accepted")
    assert 0 <= ipc.gso_size <= 0xFFFF and (ipc.ttl == 0 or 1 <= ipc.ttl <= 255) and -1 <= ipc.tos <= 255


@fuzz_settings(300)
@given(controls, st.sampled_from([0, 1, 100, 3000]))
def test_sendmsg_with_hostile_control(control: bytes, size: int) -> None:
    """The whole send on a UDP layer whose datagrams loop back into it."""

    async def main() -> None:
        udp = LoopbackUdp()
        rx = await udp.create(17, 1, 3)
        await udp.bind(rx, 0x7F000001, 9000)
        tx = await udp.create(17, 1, 4)
        try:
            sent = await udp.sendmsg(tx, bytes(size), sockaddr("127.0.0.1", 9000), 0, False, control)
        except OSError as err:
            assert err.errno in SEND_ERRNOS, err
            event(f"errno {errno.errorcode[err.errno]}")
            return
        assert sent == size
        event("sent")

    asyncio.run(main())


# Hand-picked control buffers and what 6.18 answers (checked by the test itself).
_TTL64 = cmsg(SOL_IP, IP_TTL, INT.pack(64))
KERNEL_CASES: dict[str, tuple[bytes, int]] = {
    "cmsg_len 8, shorter than a header": (cmsg(SOL_IP, IP_TTL, INT.pack(64), length=8), errno.EINVAL),
    "cmsg_len 0": (cmsg(SOL_IP, IP_TTL, INT.pack(64), length=0), errno.EINVAL),
    "cmsg_len past msg_controllen": (cmsg(SOL_IP, IP_TTL, INT.pack(64), length=64), errno.EINVAL),
    "cmsg_len 2**64 - 1": (cmsg(SOL_IP, IP_TTL, INT.pack(64), length=2**64 - 1), errno.EINVAL),
    "cmsg_len one past, unpadded": (cmsg(SOL_IP, IP_TTL, INT.pack(64), length=21, pad=False), errno.EINVAL),
    "a good message, then one running past": (_TTL64 + cmsg(SOL_IP, IP_TOS, b"\0", length=40), errno.EINVAL),
    "8 bytes, less than a header": (bytes(8), 0),
    "a good message and 15 trailing bytes": (_TTL64 + bytes(15), 0),
    "IP_TTL with 2 bytes": (cmsg(SOL_IP, IP_TTL, b"\x40\0"), errno.EINVAL),
    "IP_TTL with 8 bytes": (cmsg(SOL_IP, IP_TTL, INT.pack(64) * 2), errno.EINVAL),
    "IP_TTL with no data": (cmsg(SOL_IP, IP_TTL, b""), errno.EINVAL),
    "IP_TTL 0": (cmsg(SOL_IP, IP_TTL, INT.pack(0)), errno.EINVAL),
    "IP_TTL 256": (cmsg(SOL_IP, IP_TTL, INT.pack(256)), errno.EINVAL),
    "IP_TTL 64": (_TTL64, 0),
    "IP_TOS as one byte": (cmsg(SOL_IP, IP_TOS, b"\x10"), 0),
    "IP_TOS with 2 bytes": (cmsg(SOL_IP, IP_TOS, b"\x10\0"), errno.EINVAL),
    "IP_TOS -1": (cmsg(SOL_IP, IP_TOS, INT.pack(-1)), errno.EINVAL),
    "IP_TOS 256": (cmsg(SOL_IP, IP_TOS, INT.pack(256)), errno.EINVAL),
    "IP_PKTINFO with 11 bytes": (cmsg(SOL_IP, IP_PKTINFO, bytes(11)), errno.EINVAL),
    "IP_PKTINFO with 16 bytes": (cmsg(SOL_IP, IP_PKTINFO, bytes(16)), errno.EINVAL),
    "IP_PKTINFO any": (cmsg(SOL_IP, IP_PKTINFO, bytes(12)), 0),
    "IP_PROTOCOL 0": (cmsg(SOL_IP, IP_PROTOCOL, INT.pack(0)), errno.EINVAL),
    "IP_PROTOCOL 17": (cmsg(SOL_IP, IP_PROTOCOL, INT.pack(17)), 0),
    "IP_RETOPTS with a length past the area": (cmsg(SOL_IP, IP_RETOPTS, bytes([7, 12, 4, 0])), errno.EINVAL),
    "IP_RETOPTS with 44 bytes of NOOP (cut to 40)": (cmsg(SOL_IP, IP_RETOPTS, b"\1" * 44), 0),
    "IP_RETOPTS record route": (cmsg(SOL_IP, IP_RETOPTS, bytes([7, 7, 4, 0, 0, 0, 0, 0])), 0),
    "SOL_IP type 99": (cmsg(SOL_IP, 99, INT.pack(1)), errno.EINVAL),
    "SOL_IP IP_OPTIONS (a sockopt, not a cmsg)": (cmsg(SOL_IP, 4, INT.pack(1)), errno.EINVAL),
    "SOL_SOCKET type 1234": (cmsg(SOL_SOCKET, 1234, INT.pack(1)), errno.EINVAL),
    "SOL_SOCKET SCM_RIGHTS (let through)": (cmsg(SOL_SOCKET, SCM_RIGHTS, b""), 0),
    "SO_MARK with 2 bytes": (cmsg(SOL_SOCKET, SO_MARK, b"\1\0"), errno.EINVAL),
    "SO_PRIORITY with 8 bytes": (cmsg(SOL_SOCKET, SO_PRIORITY, bytes(8)), errno.EINVAL),
    "SO_TIMESTAMPING with a receive flag": (cmsg(SOL_SOCKET, SO_TIMESTAMPING, U32.pack(0x8)), errno.EINVAL),
    "SCM_TXTIME without SO_TXTIME": (cmsg(SOL_SOCKET, SCM_TXTIME, U64.pack(1)), errno.EINVAL),
    "SCM_TS_OPT_ID without OPT_ID": (cmsg(SOL_SOCKET, SCM_TS_OPT_ID, U32.pack(1)), errno.EINVAL),
    "an unknown level": (cmsg(0x7FFFFFFF, 1, INT.pack(1)), 0),
    "SOL_UDP type 1": (cmsg(SOL_UDP, 1, U16.pack(100)), errno.EINVAL),
    "UDP_SEGMENT with 4 bytes": (cmsg(SOL_UDP, UDP_SEGMENT, U32.pack(100)), errno.EINVAL),
    "UDP_SEGMENT 0": (cmsg(SOL_UDP, UDP_SEGMENT, U16.pack(0)), 0),
    "UDP_SEGMENT after a bad SOL_IP message": (cmsg(SOL_IP, 99, b"") + cmsg(SOL_UDP, 1, b""), errno.EINVAL),
    "SOL_IP type 99 after UDP_SEGMENT 0": (cmsg(SOL_UDP, UDP_SEGMENT, U16.pack(0)) + cmsg(SOL_IP, 99, b""),
                                           errno.EINVAL),
}  # fmt: skip


def kernel_answers(cases: dict[str, tuple[bytes, int]]) -> dict[str, int]:
    """Each control buffer sent by this machine's kernel over 127.0.0.1: the errno."""
    out = {}
    with (
        socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as rx,
        socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as tx,
    ):
        rx.bind(("127.0.0.1", 0))
        rx.setblocking(False)
        name = sockaddr("127.0.0.1", rx.getsockname()[1])
        for case, (control, _) in cases.items():
            out[case] = real_sendmsg(tx, b"x" * 100, name, control)
            while True:
                try:
                    rx.recv(200)
                except BlockingIOError:
                    break
    return out


def emulator_answers(cases: dict[str, tuple[bytes, int]]) -> dict[str, int]:
    async def main() -> dict[str, int]:
        udp = LoopbackUdp()
        rx = await udp.create(17, 1, 3)
        await udp.bind(rx, 0x7F000001, 9000)
        tx = await udp.create(17, 1, 4)
        out = {}
        for case, (control, _) in cases.items():
            try:
                await udp.sendmsg(tx, b"x" * 100, sockaddr("127.0.0.1", 9000), 0, False, control)
                out[case] = 0
            except OSError as err:
                out[case] = err.errno or 0
        return out

    return asyncio.run(main())


def test_malformed_control_buffers_like_the_kernel() -> None:
    expected = {case: want for case, (_, want) in KERNEL_CASES.items()}
    assert kernel_answers(KERNEL_CASES) == expected
    assert emulator_answers(KERNEL_CASES) == expected


def test_cmsg_helpers_agree_with_build_cmsgs() -> None:
    """cmsg() here lays messages out as build_cmsgs() (the layout programs use) does."""
    msgs = [(SOL_IP, IP_TTL, INT.pack(9)), (SOL_UDP, UDP_SEGMENT, U16.pack(1400))]
    assert b"".join(cmsg(*m) for m in msgs) == build_cmsgs(msgs)
