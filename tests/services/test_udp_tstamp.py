"""Socket timestamps in the UDP service for real (UdpService on a grpc.aio server), the IP
service faked, the test playing the socket layer and, for transmit timestamps, the NIC
(whose __skb_tstamp_tx clones IP relays up as AttachResponse.tx_timestamps).

Every expected value was read from 6.18 on this machine (over lo, stdlib sockets):
the options' values and errnos, the cmsgs' order, lengths and bytes, the error queue
entries (sock_extended_err, keys, payload, msg_name, msg_flags); tests/e2e/
test_tstamp_kernel.py compares the same scenarios with the kernel through the drop-in.
"""

from __future__ import annotations

import struct

from services.core import errno
from services.core.cred import CAP_FULL_SET, CAP_NET_ADMIN, CAP_NET_RAW
from services.core.skbuff import SKBTX_IN_PROGRESS, SkBuff
from services.core.socket_uapi import SCM_TSTAMP_SCHED, SCM_TSTAMP_SND, SOL_IP, SOL_SOCKET
from services.core.sysctl import Sysctl
from services.core.wire.ipv4 import IPPROTO_UDP, Ipv4Repr
from services.ip.sockglue import build_cmsgs
from stackemu.skb.v1 import skb_pb2
from stackemu.udp.v1 import udp_pb2
from tests.services.fakes_udp import (
    LOOPBACK,
    UdpHarness,
    async_test,
    delivered_skb,
    sockaddr,
    udp_segment,
)

SO_MARK, SO_PRIORITY, SO_RXQ_OVFL, SO_BINDTODEVICE = 36, 12, 40, 25
SO_TIMESTAMP, SO_TIMESTAMPNS, SO_TIMESTAMPING = 29, 35, 37
SO_TIMESTAMP_NEW, SO_TIMESTAMPNS_NEW, SO_TIMESTAMPING_NEW = 63, 64, 65
SO_TXTIME, SCM_TS_OPT_ID, SO_RCVMARK, SO_RCVPRIORITY = 61, 81, 75, 82
SCM_TIMESTAMPING_PKTINFO = 58
IP_PKTINFO, IP_RECVERR, IP_TTL, IP_RECVTTL = 8, 11, 2, 12
MSG_DONTWAIT, MSG_ERRQUEUE, MSG_MORE, MSG_CTRUNC, MSG_TRUNC = 0x40, 0x2000, 0x8000, 0x8, 0x20
TX_HW, TX_SW, RX_HW, RX_SW, SW, RAW_HW, OPT_ID = 1, 2, 4, 8, 16, 64, 128
SCHED, OPT_CMSG, TSONLY, STATS, PKTINFO = 256, 1 << 10, 1 << 11, 1 << 12, 1 << 13
TX_SWHW, BIND_PHC = 1 << 14, 1 << 15
OPT_ID_TCP, RX_FILTER, TX_COMPLETION = 1 << 16, 1 << 17, 1 << 18
INT, U32, II = struct.Struct("=i"), struct.Struct("=I"), struct.Struct("=ii")
TO_9001 = sockaddr("127.0.0.1", 9001)
# A receive time (CLOCK_REALTIME ns) and a hardware stamp, as the NIC would set them.
T_RX = 1_700_000_000_123_456_789
T_HW = 1_700_000_000_987_654_321
ENOMSG, SO_EE_ORIGIN_TIMESTAMPING = 42, 4


def cmsg(level: int, type_: int, data: bytes) -> bytes:
    return build_cmsgs([(level, type_, data)])


def ts3(sw: int = 0, hw: int = 0) -> bytes:
    """struct scm_timestamping: ts[0] software, ts[1] unused, ts[2] hardware."""
    return b"".join(struct.pack("=qq", *divmod(t, 10**9)) for t in (sw, 0, hw))


def recverr(tstype: int, key: int = 0, offender: bytes = bytes(16)) -> bytes:
    ee = struct.pack("=IBBBBII", ENOMSG, SO_EE_ORIGIN_TIMESTAMPING, 0, 0, 0, tstype, key)
    return cmsg(SOL_IP, IP_RECVERR, ee + offender)


class Harness(UdpHarness):
    """UdpHarness whose IP side also relays TX timestamps up, as the IP service does."""

    async def stamped(self, clone: SkBuff, tstype: int) -> None:
        """The NIC's __skb_tstamp_tx clone reaching the UDP service, then a datagram to a
        port nobody has in a batch of its own: once udp_rcv took it, the stamp before it
        on the stream has been handled."""
        self.ip.up.put_nowait([skb_pb2.TxTimestamp(skb=clone.to_proto(), tstype=tstype)])
        await self.deliver(delivered_skb(LOOPBACK, LOOPBACK, udp_segment(LOOPBACK, LOOPBACK, 1, 7, b"")))


def harness(sysctl: Sysctl | None = None) -> Harness:
    return Harness(sysctl)


async def sock(h: UdpHarness, caps: int = CAP_FULL_SET, port: int = 9000) -> int:
    op = udp_pb2.CreateOp(protocol=IPPROTO_UDP, owner_pid=100, owner_fd=3, uid=0, capabilities=caps)
    r = await h.sock.call(create=op)
    sk = int(r.create.sk)
    assert await h.sock.bind(sk, "127.0.0.1", port) == 0
    return sk


async def setopt(h: UdpHarness, sk: int, optname: int, val: int | bytes, level: int = SOL_SOCKET) -> int:
    optval = INT.pack(val) if isinstance(val, int) else val
    return await h.sock.setsockopt(sk, level, optname, optval)


async def getopt(h: UdpHarness, sk: int, optname: int, optlen: int = 4) -> bytes | int:
    err, val = await h.sock.getsockopt(sk, SOL_SOCKET, optname, optlen)
    return -err if err else val


def frame_of(skb: SkBuff, payload: bytes, sport: int = 9000, dport: int = 9001) -> SkBuff:
    """What the NIC stamps: the datagram as a frame on lo (zero MACs, data at the
    Ethernet header), its owner, flags and key those of the skb UDP sent."""
    seg = udp_segment(LOOPBACK, LOOPBACK, sport, dport, payload)
    head = bytearray(14 + 20 + len(seg))
    head[12:14] = b"\x08\x00"
    Ipv4Repr(src=LOOPBACK, dst=LOOPBACK, protocol=IPPROTO_UDP, payload_len=len(seg), ttl=64).emit(head, 14)
    head[34:] = seg
    c = SkBuff(head)
    c.mac_header, c.network_header, c.transport_header = 0, 14, 34
    c.tail = c.len = len(head)
    c.sk, c.tx_flags, c.tskey, c.truesize = skb.sk, skb.tx_flags, skb.tskey, skb.truesize
    c.dev_ifindex = 1
    return c


def nic_clone(skb: SkBuff, payload: bytes, tstamp: int = T_RX, hw: int = 0) -> SkBuff:
    c = frame_of(skb, payload)
    c.tstamp, c.hwtstamp = (0, hw) if hw else (tstamp, 0)
    return c


async def errqueue(h: UdpHarness, sk: int, length: int = 200, controllen: int = 256) -> udp_pb2.ProtoReply:
    return await h.sock.recvmsg(sk, length, MSG_ERRQUEUE | MSG_DONTWAIT, controllen=controllen)


# Options.


@async_test
async def test_so_timestamping_flags_and_errnos() -> None:
    async with harness() as h:
        sk = await sock(h)
        # 6.18: every bit up to TX_COMPLETION (1 << 18) is accepted alone but OPT_STATS
        # (needs OPT_TSONLY), BIND_PHC (unbound: EOPNOTSUPP) and OPT_ID_TCP (needs
        # OPT_ID); bits 19..31 are EINVAL.
        answers = {}
        for bit in range(32):
            answers[bit] = await setopt(h, sk, SO_TIMESTAMPING, U32.pack(1 << bit))
        assert answers == {
            **{b: 0 for b in range(19)},
            12: errno.EINVAL,
            15: errno.EOPNOTSUPP,
            16: errno.EINVAL,
            **{b: errno.EINVAL for b in range(19, 32)},
        }
        assert await setopt(h, sk, SO_TIMESTAMPING, OPT_ID_TCP | OPT_ID) == 0
        assert await setopt(h, sk, SO_TIMESTAMPING, STATS | TSONLY) == 0
        assert await setopt(h, sk, SO_TIMESTAMPING, STATS | BIND_PHC) == errno.EINVAL
        # Bound to lo: no PTP virtual clock, so any index is EINVAL; flags unchanged.
        h.layer.devices = {1: "lo"}
        assert await setopt(h, sk, SO_BINDTODEVICE, b"lo") == 0
        assert await setopt(h, sk, SO_TIMESTAMPING, II.pack(BIND_PHC, 0)) == errno.EINVAL
        assert await getopt(h, sk, SO_TIMESTAMPING, 8) == II.pack(STATS | TSONLY, 0)
        # optlen 3 is EINVAL; 4..7 and 9.. bytes are an int; 8 a struct so_timestamping.
        assert await setopt(h, sk, SO_TIMESTAMPING, b"\x10\0\0") == errno.EINVAL
        assert await setopt(h, sk, SO_TIMESTAMPING, U32.pack(SW) + bytes(5)) == 0
        assert await getopt(h, sk, SO_TIMESTAMPING, 8) == II.pack(SW, 0)
        assert await setopt(h, sk, SO_TIMESTAMPING, II.pack(SW | RX_SW, 7)) == 0
        got = [await getopt(h, sk, SO_TIMESTAMPING, n) for n in (1, 4, 5, 8, 16)]
        assert got == [b"\x18", b"\x18\0\0\0", b"\x18\0\0\0\0", II.pack(0x18, 0), II.pack(0x18, 0)]
        # SO_TIMESTAMPING_NEW reads zeros unless set through SO_TIMESTAMPING_NEW.
        assert await getopt(h, sk, SO_TIMESTAMPING_NEW, 8) == bytes(8)
        assert await setopt(h, sk, SO_TIMESTAMPING_NEW, 0x58) == 0
        assert await getopt(h, sk, SO_TIMESTAMPING_NEW, 8) == II.pack(0x58, 0)
        assert await getopt(h, sk, SO_TIMESTAMPING, 8) == II.pack(0x58, 0)
        assert await setopt(h, sk, SO_TIMESTAMPING, 0x58) == 0
        assert await getopt(h, sk, SO_TIMESTAMPING_NEW, 8) == bytes(8)


@async_test
async def test_so_timestamp_last_wins_and_off_clears_both() -> None:
    async with harness() as h:
        cases = [
            ([(SO_TIMESTAMP, 1)], [1, 0, 0, 0]),
            ([(SO_TIMESTAMPNS, 1)], [0, 1, 0, 0]),
            ([(SO_TIMESTAMP_NEW, 1)], [0, 0, 1, 0]),
            # SO_TIMESTAMP_NEW reads SOCK_RCVTSTAMP && SOCK_TSTAMP_NEW: 1 for NS too.
            ([(SO_TIMESTAMPNS_NEW, 1)], [0, 0, 1, 1]),
            ([(SO_TIMESTAMP, 1), (SO_TIMESTAMPNS, 1)], [0, 1, 0, 0]),
            ([(SO_TIMESTAMPNS, 1), (SO_TIMESTAMP, 1)], [1, 0, 0, 0]),
            ([(SO_TIMESTAMPNS_NEW, 1), (SO_TIMESTAMP, 1)], [1, 0, 0, 0]),
            ([(SO_TIMESTAMPNS, 1), (SO_TIMESTAMP, 0)], [0, 0, 0, 0]),
            ([(SO_TIMESTAMPNS, 1), (SO_TIMESTAMP_NEW, 0)], [0, 0, 0, 0]),
            # SO_TIMESTAMPING sets SOCK_TSTAMP_NEW to whether it was the _NEW option.
            ([(SO_TIMESTAMP_NEW, 1), (SO_TIMESTAMPING, 0)], [1, 0, 0, 0]),
            ([(SO_TIMESTAMP_NEW, 1), (SO_TIMESTAMPING_NEW, 0)], [0, 0, 1, 0]),
        ]
        for port, (seq, want) in enumerate(cases, 9100):
            sk = await sock(h, port=port)
            for opt, val in seq:
                assert await setopt(h, sk, opt, val) == 0
            got = [
                await getopt(h, sk, o)
                for o in (SO_TIMESTAMP, SO_TIMESTAMPNS, SO_TIMESTAMP_NEW, SO_TIMESTAMPNS_NEW)
            ]
            assert [INT.unpack(g)[0] for g in got] == want, seq  # type: ignore[arg-type]


@async_test
async def test_so_txtime() -> None:
    async with harness() as h:
        sk = await sock(h)
        assert await getopt(h, sk, SO_TXTIME, 8) == bytes(8)
        assert await getopt(h, sk, SO_TXTIME, 3) == bytes(3)
        txt = struct.Struct("=iI").pack
        # 6.18 as root: CLOCK_MONOTONIC, REALTIME and TAI; flags 0..3; optlen exactly 8.
        assert await setopt(h, sk, SO_TXTIME, txt(1, 3)) == 0
        assert await getopt(h, sk, SO_TXTIME, 16) == txt(1, 3)
        assert await setopt(h, sk, SO_TXTIME, txt(1, 4)) == errno.EINVAL
        assert await setopt(h, sk, SO_TXTIME, txt(11, 0)) == 0
        assert await setopt(h, sk, SO_TXTIME, txt(2, 0)) == errno.EINVAL
        assert await setopt(h, sk, SO_TXTIME, txt(-1, 0)) == errno.EINVAL
        assert await setopt(h, sk, SO_TXTIME, txt(1, 0) + b"\0") == errno.EINVAL
        assert await setopt(h, sk, SO_TXTIME, b"\1\0\0") == errno.EINVAL
        assert await getopt(h, sk, SO_TXTIME, 8) == txt(11, 0)
        # Without CAP_NET_ADMIN only CLOCK_MONOTONIC: the flags are checked first, the
        # clock's validity after the capability.
        user = await sock(h, caps=CAP_FULL_SET & ~(1 << CAP_NET_ADMIN), port=9002)
        assert await setopt(h, user, SO_TXTIME, txt(1, 0)) == 0
        assert await setopt(h, user, SO_TXTIME, txt(0, 0)) == errno.EPERM
        assert await setopt(h, user, SO_TXTIME, txt(2, 0)) == errno.EPERM
        assert await setopt(h, user, SO_TXTIME, txt(0, 4)) == errno.EINVAL


# Receive cmsgs.


async def received(h: UdpHarness, sk: int, skb: skb_pb2.SkBuff, controllen: int = 256) -> udp_pb2.ProtoReply:
    await h.deliver(skb)
    return await h.sock.recvmsg(sk, 100, MSG_DONTWAIT, controllen=controllen)


def stamped_skb(payload: bytes = b"abcd", mark: int = 7, priority: int = 3, hw: int = 0) -> skb_pb2.SkBuff:
    m = delivered_skb(LOOPBACK, LOOPBACK, udp_segment(LOOPBACK, LOOPBACK, 5000, 9000, payload))
    m.tstamp, m.hwtstamp, m.mark, m.priority = T_RX, hw, mark, priority
    return m


@async_test
async def test_receive_timestamp_cmsgs() -> None:
    tv = struct.pack("=qq", T_RX // 10**9, T_RX % 10**9 // 1000)
    ts = struct.pack("=qq", *divmod(T_RX, 10**9))
    cases = [
        ([(SO_TIMESTAMP, 1)], cmsg(1, SO_TIMESTAMP, tv)),
        ([(SO_TIMESTAMPNS, 1)], cmsg(1, SO_TIMESTAMPNS, ts)),
        ([(SO_TIMESTAMP_NEW, 1)], cmsg(1, SO_TIMESTAMP_NEW, tv)),
        ([(SO_TIMESTAMPNS_NEW, 1)], cmsg(1, SO_TIMESTAMPNS_NEW, ts)),
        ([(SO_TIMESTAMPING, RX_SW | SW)], cmsg(1, SO_TIMESTAMPING, ts3(T_RX))),
        ([(SO_TIMESTAMPING, SW)], cmsg(1, SO_TIMESTAMPING, ts3(T_RX))),
        # RX_SOFTWARE without SOFTWARE (reporting) gives nothing; OPT_RX_FILTER keeps the
        # software stamp to sockets that asked for RX_SOFTWARE.
        ([(SO_TIMESTAMPING, RX_SW)], b""),
        ([(SO_TIMESTAMPING_NEW, RX_SW | SW)], cmsg(1, SO_TIMESTAMPING_NEW, ts3(T_RX))),
        ([(SO_TIMESTAMPING, SW | RX_FILTER)], b""),
        ([(SO_TIMESTAMPING, SW | RX_FILTER | RX_SW)], cmsg(1, SO_TIMESTAMPING, ts3(T_RX))),
        # SO_TIMESTAMP's cmsg before SCM_TIMESTAMPING.
        (
            [(SO_TIMESTAMP, 1), (SO_TIMESTAMPING, SW)],
            cmsg(1, SO_TIMESTAMP, tv) + cmsg(1, SO_TIMESTAMPING, ts3(T_RX)),
        ),
        # No hardware stamp on the datagram: nothing for RAW_HARDWARE.
        ([(SO_TIMESTAMPING, RAW_HW | RX_HW | PKTINFO)], b""),
        # SO_RXQ_OVFL without drops says nothing; then SO_MARK, then SO_PRIORITY.
        ([(SO_RXQ_OVFL, 1), (SO_TIMESTAMP, 1)], cmsg(1, SO_TIMESTAMP, tv)),
        ([(SO_RCVMARK, 1), (SO_TIMESTAMP, 1)], cmsg(1, SO_TIMESTAMP, tv) + cmsg(1, SO_MARK, U32.pack(7))),
        ([(SO_RCVPRIORITY, 1)], cmsg(1, SO_PRIORITY, U32.pack(3))),
        (
            [(SO_RCVPRIORITY, 1), (SO_RCVMARK, 1), (SO_RXQ_OVFL, 1), (SO_TIMESTAMP, 1)],
            cmsg(1, SO_TIMESTAMP, tv) + cmsg(1, SO_MARK, U32.pack(7)) + cmsg(1, SO_PRIORITY, U32.pack(3)),
        ),
    ]
    async with harness() as h:
        for i, (opts, want) in enumerate(cases):
            sk = await sock(h, port=9000)
            for opt, val in opts:
                assert await setopt(h, sk, opt, val) == 0
            r = await received(h, sk, stamped_skb())
            assert (r.recvmsg.data, r.recvmsg.control, r.recvmsg.msg_flags) == (b"abcd", want, 0), (i, opts)
            assert (await h.sock.call(sk, release=udp_pb2.ReleaseOp())).errno == 0


@async_test
async def test_receive_hardware_timestamp_and_pktinfo() -> None:
    async with harness() as h:
        sk = await sock(h)
        assert await setopt(h, sk, SO_TIMESTAMPING, RAW_HW | RX_HW | SW | RX_SW | PKTINFO) == 0
        skb = stamped_skb(hw=T_HW)
        r = await received(h, sk, skb)
        # SCM_TIMESTAMPING_PKTINFO first: lo's backlog has no NAPI id (if_index 0), the
        # frame's length from its MAC header (14 + 20 + 8 + 4).
        want = cmsg(1, SCM_TIMESTAMPING_PKTINFO, struct.pack("=II8x", 0, 46)) + cmsg(
            1, SO_TIMESTAMPING, ts3(T_RX, T_HW)
        )
        assert r.recvmsg.control == want
        # A NAPI device's index; OPT_RX_FILTER without RX_HARDWARE drops the hardware one.
        skb.skb_iif = 2
        assert await setopt(h, sk, SO_TIMESTAMPING, RAW_HW | PKTINFO | RX_FILTER) == 0
        assert (await received(h, sk, skb)).recvmsg.control == b""
        assert await setopt(h, sk, SO_TIMESTAMPING, RAW_HW | RX_HW | PKTINFO | RX_FILTER) == 0
        want = cmsg(1, SCM_TIMESTAMPING_PKTINFO, struct.pack("=II8x", 2, 46)) + cmsg(
            1, SO_TIMESTAMPING, ts3(0, T_HW)
        )
        assert (await received(h, sk, skb)).recvmsg.control == want
        # Cut to the control buffer: put_cmsg() truncates and says MSG_CTRUNC.
        # Cut to the control buffer: SCM_TIMESTAMPING_PKTINFO fits, then less than a
        # header is left: nothing more, and MSG_CTRUNC (put_cmsg).
        r = await received(h, sk, skb, controllen=40)
        assert (r.recvmsg.control, r.recvmsg.msg_flags) == (want[:32], MSG_CTRUNC)


# Transmit timestamps.


@async_test
async def test_tx_flags_keys_and_error_queue_entries() -> None:
    async with harness() as h:
        sk = await sock(h)
        assert await setopt(h, sk, SO_TIMESTAMPING, TX_SW | SCHED | SW | OPT_ID) == 0
        sent = []
        for payload in (b"abcd", b"efgh"):
            assert (await h.sock.sendmsg(sk, payload, TO_9001)).sendmsg.sent == 4
            sent.append(await h.ip.next_sent())
        # SKBTX_SW_TSTAMP | SKBTX_SCHED_TSTAMP, keys 0 and 1.
        assert [(s.tx_flags, s.tskey) for s in sent] == [(0x42, 0), (0x42, 1)]
        for s, payload in zip(sent, (b"abcd", b"efgh"), strict=True):
            await h.stamped(nic_clone(s, payload, T_RX), SCM_TSTAMP_SCHED)
            await h.stamped(nic_clone(s, payload, T_RX + 1), SCM_TSTAMP_SND)
        got = []
        for _ in range(4):
            r = (await errqueue(h, sk)).recvmsg
            got.append((len(r.data), r.msg_flags, r.saddr, r.sport, r.daddr, r.control))
        # 6.18 on lo: the whole frame (zero MACs, ETH_P_IP), MSG_ERRQUEUE, no msg_name;
        # SCM_TIMESTAMPING then IP_RECVERR (ENOMSG, SO_EE_ORIGIN_TIMESTAMPING, ee_info
        # the type, ee_data the key), a zero offender.
        assert got == [
            (46, MSG_ERRQUEUE, 0, 0, 0, cmsg(1, SO_TIMESTAMPING, ts3(T_RX)) + recverr(SCM_TSTAMP_SCHED, 0)),
            (46, MSG_ERRQUEUE, 0, 0, 0, cmsg(1, SO_TIMESTAMPING, ts3(T_RX + 1)) + recverr(SCM_TSTAMP_SND, 0)),
            (46, MSG_ERRQUEUE, 0, 0, 0, cmsg(1, SO_TIMESTAMPING, ts3(T_RX)) + recverr(SCM_TSTAMP_SCHED, 1)),
            (46, MSG_ERRQUEUE, 0, 0, 0, cmsg(1, SO_TIMESTAMPING, ts3(T_RX + 1)) + recverr(SCM_TSTAMP_SND, 1)),
        ]
        assert (await errqueue(h, sk)).errno == errno.EAGAIN
        # The frame itself, cut to the buffer with MSG_TRUNC.
        await h.stamped(nic_clone(sent[0], b"abcd"), SCM_TSTAMP_SND)
        r = (await errqueue(h, sk, length=10)).recvmsg
        assert (r.data, r.msg_flags) == (bytes(12)[:10], MSG_ERRQUEUE | MSG_TRUNC)


@async_test
async def test_tsonly_cmsg_pktinfo_and_so_timestamp() -> None:
    async with harness() as h:
        sk = await sock(h)
        assert await setopt(h, sk, SO_TIMESTAMPING, TX_SW | SW | OPT_ID | OPT_CMSG) == 0
        assert await setopt(h, sk, IP_PKTINFO, 1, level=SOL_IP) == 0
        assert await setopt(h, sk, IP_RECVTTL, 1, level=SOL_IP) == 0
        assert (await h.sock.sendmsg(sk, b"abcd", TO_9001)).errno == 0
        skb = await h.ip.next_sent()
        await h.stamped(nic_clone(skb, b"abcd"), SCM_TSTAMP_SND)
        r = (await errqueue(h, sk)).recvmsg
        lo = bytes([127, 0, 0, 1])
        # OPT_CMSG on a stamp with a device: IP_PKTINFO (lo, spec_dst the source), then
        # the other IP cmsgs of its header, and the offender the packet's source.
        offender = struct.pack("=H2x4s8x", 2, lo)
        assert r.control == (
            cmsg(1, SO_TIMESTAMPING, ts3(T_RX))
            + cmsg(SOL_IP, IP_PKTINFO, INT.pack(1) + lo + lo)
            + cmsg(SOL_IP, IP_TTL, INT.pack(64))
            + recverr(SCM_TSTAMP_SND, 0, offender)
        )
        # OPT_TSONLY: an empty skb, no device (so no IP cmsgs, a zero offender), charged
        # 832 (alloc_skb(0)); SO_TIMESTAMPNS is reported too (before SCM_TIMESTAMPING).
        assert await setopt(h, sk, SO_TIMESTAMPING, TX_SW | SW | OPT_ID | OPT_CMSG | TSONLY) == 0
        assert await setopt(h, sk, SO_TIMESTAMPNS, 1) == 0
        assert (await h.sock.sendmsg(sk, b"abcd", TO_9001)).errno == 0
        skb = await h.ip.next_sent()
        await h.stamped(nic_clone(skb, b"abcd"), SCM_TSTAMP_SND)
        assert h.layer.sock(sk).rmem_alloc == 832
        r = (await errqueue(h, sk)).recvmsg
        assert (r.data, r.msg_flags) == (b"", MSG_ERRQUEUE)
        ts = struct.pack("=qq", *divmod(T_RX, 10**9))
        assert r.control == cmsg(1, SO_TIMESTAMPNS, ts) + cmsg(1, SO_TIMESTAMPING, ts3(T_RX)) + recverr(0, 1)


@async_test
async def test_send_cmsgs_for_timestamps() -> None:
    async with harness() as h:
        sk = await sock(h)
        assert await setopt(h, sk, SO_TIMESTAMPING, SW | OPT_ID) == 0
        ts = SO_TIMESTAMPING

        async def send(control: bytes, flags: int = 0) -> int:
            r = await h.sock.sendmsg(sk, b"x", TO_9001, flags, control)
            return -r.errno if r.errno else int(r.sendmsg.sent)

        # __sock_cmsg_send(): TX record flags only; SCM_TXTIME needs SO_TXTIME and 8
        # bytes; SCM_TS_OPT_ID needs OPT_ID on the socket and 4 bytes.
        assert await send(cmsg(1, ts, U32.pack(RX_SW))) == -errno.EINVAL
        assert await send(cmsg(1, 61, struct.pack("=Q", 5))) == -errno.EINVAL
        assert await send(cmsg(1, SCM_TS_OPT_ID, struct.pack("=Q", 77))) == -errno.EINVAL
        # A message's flags replace the socket's TX record flags for one send; a send
        # without any takes no key.
        assert await send(cmsg(1, ts, U32.pack(TX_SW))) == 1
        assert await send(b"") == 1
        assert await send(cmsg(1, SO_TIMESTAMPING_NEW, U32.pack(SCHED))) == 1
        assert await send(cmsg(1, SCM_TS_OPT_ID, U32.pack(77)) + cmsg(1, ts, U32.pack(TX_SW))) == 1
        assert await send(cmsg(1, ts, U32.pack(TX_SW))) == 1
        sent = [await h.ip.next_sent() for _ in range(5)]
        assert [(s.tx_flags, s.tskey) for s in sent] == [(0x02, 0), (0, 0), (0x40, 1), (0x02, 77), (0x02, 2)]
        assert await setopt(h, sk, SO_TIMESTAMPING, SW) == 0
        assert await send(cmsg(1, SCM_TS_OPT_ID, U32.pack(77))) == -errno.EINVAL
        # SCM_TXTIME: the skb's tstamp (ns on the SO_TXTIME clock).
        assert await setopt(h, sk, SO_TXTIME, struct.pack("=iI", 1, 0)) == 0
        assert await send(cmsg(1, 61, struct.pack("=I", 5))) == -errno.EINVAL
        assert await send(cmsg(1, 61, struct.pack("=Q", 123456789))) == 1
        assert (await h.ip.next_sent()).tstamp == 123456789


@async_test
async def test_corked_datagram_takes_one_key() -> None:
    async with harness() as h:
        sk = await sock(h)
        assert await setopt(h, sk, SO_TIMESTAMPING, TX_SW | SW | OPT_ID) == 0
        for data, flags in ((b"a", MSG_MORE), (b"b", MSG_MORE), (b"c", 0), (b"d", 0)):
            assert (await h.sock.sendmsg(sk, data, TO_9001, flags)).errno == 0
        sent = [await h.ip.next_sent() for _ in range(2)]
        assert [(s.payload()[8:], s.tx_flags, s.tskey) for s in sent] == [(b"abc", 2, 0), (b"d", 2, 1)]
        # A corked datagram's flags are its first send's (a later message is not read).
        assert await setopt(h, sk, SO_TIMESTAMPING, SW | OPT_ID) == 0
        ts = cmsg(1, SO_TIMESTAMPING, U32.pack(SCHED))
        assert (await h.sock.sendmsg(sk, b"a", TO_9001, MSG_MORE)).errno == 0
        assert (await h.sock.sendmsg(sk, b"b", TO_9001, 0, ts)).errno == 0
        skb = await h.ip.next_sent()
        assert (skb.payload()[8:], skb.tx_flags) == (b"ab", 0)
        # OPT_ID set again while set: no reset; off and on: from 0.
        assert await setopt(h, sk, SO_TIMESTAMPING, TX_SW | SW | OPT_ID) == 0
        assert (await h.sock.sendmsg(sk, b"e", TO_9001)).errno == 0
        assert (await h.ip.next_sent()).tskey == 2
        assert await setopt(h, sk, SO_TIMESTAMPING, TX_SW | SW) == 0
        assert await setopt(h, sk, SO_TIMESTAMPING, TX_SW | SW | OPT_ID) == 0
        assert (await h.sock.sendmsg(sk, b"f", TO_9001)).errno == 0
        assert (await h.ip.next_sent()).tskey == 0


@async_test
async def test_who_gets_a_tx_timestamp() -> None:
    sysctl = Sysctl()
    sysctl.set("net.core.tstamp_allow_data", "0")
    async with harness(sysctl) as h:
        # Without net.core.tstamp_allow_data the payload takes CAP_NET_RAW; OPT_TSONLY
        # needs nothing.
        user = await sock(h, caps=CAP_FULL_SET & ~(1 << CAP_NET_RAW))
        assert await setopt(h, user, SO_TIMESTAMPING, TX_SW | SW) == 0
        assert (await h.sock.sendmsg(user, b"abcd", TO_9001)).errno == 0
        skb = await h.ip.next_sent()
        await h.stamped(nic_clone(skb, b"abcd"), SCM_TSTAMP_SND)
        assert (await errqueue(h, user)).errno == errno.EAGAIN
        assert await setopt(h, user, SO_TIMESTAMPING, TX_SW | SW | TSONLY) == 0
        await h.stamped(nic_clone(skb, b"abcd"), SCM_TSTAMP_SND)
        assert (await errqueue(h, user)).recvmsg.data == b""
        root = await sock(h, port=9002)
        assert await setopt(h, root, SO_TIMESTAMPING, TX_SW | SW | TX_HW | RAW_HW) == 0
        assert (await h.sock.sendmsg(root, b"abcd", TO_9001)).errno == 0
        skb = await h.ip.next_sent()
        assert skb.tx_flags == 0x03
        # A software stamp while the hardware's is in progress is dropped, unless
        # OPT_TX_SWHW; the hardware one is ts[2].
        skb.tx_flags |= SKBTX_IN_PROGRESS
        await h.stamped(nic_clone(skb, b"abcd"), SCM_TSTAMP_SND)
        await h.stamped(nic_clone(skb, b"abcd", hw=T_HW), SCM_TSTAMP_SND)
        r = (await errqueue(h, root)).recvmsg
        assert r.control == cmsg(1, SO_TIMESTAMPING, ts3(0, T_HW)) + recverr(SCM_TSTAMP_SND)
        assert (await errqueue(h, root)).errno == errno.EAGAIN
        assert await setopt(h, root, SO_TIMESTAMPING, TX_SW | SW | TX_HW | RAW_HW | TX_SWHW) == 0
        await h.stamped(nic_clone(skb, b"abcd"), SCM_TSTAMP_SND)
        r = (await errqueue(h, root)).recvmsg
        assert r.control == cmsg(1, SO_TIMESTAMPING, ts3(T_RX)) + recverr(SCM_TSTAMP_SND)
        # A closed socket's stamps go nowhere.
        assert (await h.sock.call(root, release=udp_pb2.ReleaseOp())).errno == 0
        await h.stamped(nic_clone(skb, b"abcd"), SCM_TSTAMP_SND)


@async_test
async def test_error_queue_charges_and_refuses_when_full() -> None:
    async with harness() as h:
        sk = await sock(h)
        assert await setopt(h, sk, SO_TIMESTAMPING, TX_SW | SW | TSONLY) == 0
        assert await setopt(h, sk, 8, 1) == 0  # SO_RCVBUF: the minimum, 2304
        assert (await h.sock.sendmsg(sk, b"abcd", TO_9001)).errno == 0
        skb = await h.ip.next_sent()
        for _ in range(3):
            await h.stamped(nic_clone(skb, b"abcd"), SCM_TSTAMP_SND)
        # 6.18: 832 + 832 < 2304, a third would reach it (sock_queue_err_skb).
        assert h.layer.sock(sk).rmem_alloc == 1664
        assert (await errqueue(h, sk)).errno == 0
        assert (await errqueue(h, sk)).errno == 0
        assert (await errqueue(h, sk)).errno == errno.EAGAIN
        assert h.layer.sock(sk).rmem_alloc == 0
