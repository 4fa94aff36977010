"""udp_recvmsg() (net/ipv4/udp.c udp_recvmsg, __skb_recv_udp; net/core/datagram.c
__skb_try_recv_from_queue; include/net/sock.h sk_peek_offset and sock_recv_cmsgs):
the first datagram, or with MSG_PEEK and SO_PEEK_OFF the one the peek offset reaches,
its checksum verified before it is copied, MSG_TRUNC both ways, the waits, and the
receive cmsgs in the kernel's order."""

from __future__ import annotations

import struct
import time

from services.core import errno
from services.core.dropreason import DropStats, SkbDropReason
from services.core.skbuff import SKB_GSO_UDP_L4, SkBuff
from services.core.snmp import MibGroup
from services.core.socket_uapi import (
    MSG_DONTWAIT,
    MSG_ERRQUEUE,
    MSG_PEEK,
    MSG_TRUNC,
    SO_MARK,
    SO_PRIORITY,
    SO_RXQ_OVFL,
    SOL_SOCKET,
    SOL_UDP,
    UDP_GRO,
)
from services.core.trace import Tracer
from services.core.tstamp import sock_recv_timestamp
from services.core.wire.ipv4 import Ipv4Packet
from services.core.wire.udp import UDP_HLEN, UdpPacket
from services.ip import sockglue
from services.ip.sockglue import MsgControl, RecvMsg
from services.udp.input import sock_skb_dropcount, udp_lib_checksum_complete
from services.udp.sock import RCV_SHUTDOWN, UdpSock, sk_wait

_U32 = struct.Struct("=I")


def sock_recv_cmsgs(msg: MsgControl, s: UdpSock, skb: SkBuff) -> None:
    """sock_recv_cmsgs() → __sock_recv_cmsgs(): the SOL_SOCKET cmsgs, first of all, in
    its order: the timestamps (sock_recv_timestamp), SO_RXQ_OVFL (sock_recv_drops: the
    socket's drops when the datagram was queued, and only when there were some), SO_MARK
    (sock_recv_mark: SO_RCVMARK, the skb's mark) and SO_PRIORITY (sock_recv_priority:
    SO_RCVPRIORITY, the skb's priority)."""
    for level, type_, data in sock_recv_timestamp(s, skb, err_queue=False):
        msg.put(level, type_, data)
    if s.rxq_ovfl:
        dropcount = sock_skb_dropcount(skb)
        if dropcount:
            msg.put(SOL_SOCKET, SO_RXQ_OVFL, _U32.pack(dropcount))
    if s.rcvmark:
        msg.put(SOL_SOCKET, SO_MARK, _U32.pack(skb.mark & 0xFFFFFFFF))
    if s.rcvpriority:
        msg.put(SOL_SOCKET, SO_PRIORITY, _U32.pack(skb.priority & 0xFFFFFFFF))


def _try_recv_from_queue(s: UdpSock, flags: int) -> tuple[SkBuff, int] | None:
    """__skb_try_recv_from_queue() with sk_peek_offset(): without MSG_PEEK the first
    datagram (offset 0); with it and SO_PEEK_OFF set, the datagram the offset falls in
    (whole datagrams it passes are skipped; an empty one only once peeked... here never
    skipped at offset 0) and the offset within it."""
    if not s.receive_queue:
        return None
    if not flags & MSG_PEEK or s.peek_off < 0:
        return s.receive_queue[0], 0
    off = s.peek_off
    for skb in s.receive_queue:
        length = skb.len - UDP_HLEN
        if off >= length and off:
            off -= length
            continue
        return skb, off
    return None


def _pass_on(s: UdpSock) -> None:
    if s.receive_queue or s.sk_err:
        s.data_ready()


class UdpRecv:
    """The recvmsg half of UdpLayer (which provides these attributes)."""

    drops: DropStats
    trace: Tracer

    def _sk_mib(self, s: UdpSock) -> MibGroup:
        raise NotImplementedError

    def udp_rmem_release(self, s: UdpSock, size: int, partial: int = 1) -> None:
        raise NotImplementedError

    def _unlink(self, s: UdpSock, skb: SkBuff) -> None:
        s.receive_queue.remove(skb)
        self.udp_rmem_release(s, skb.truesize)
        if not s.receive_queue:
            # Not a kernel wake-up: the Poll stream reports EPOLLIN going away.
            s.poll_wake()

    async def udp_recvmsg(
        self, s: UdpSock, length: int, flags: int, timeout_ns: int, controllen: int = 0
    ) -> RecvMsg:
        """udp_recvmsg(): a datagram, waiting up to timeout_ns (negative: no limit)
        unless MSG_DONTWAIT, with the cmsgs that fit in `controllen` bytes. A pending
        socket error is returned first, once (__skb_recv_udp's sock_error). A datagram
        whose checksum fails is dropped where the kernel verifies it, and the next one
        is taken. MSG_ERRQUEUE reads the error queue instead (ip_recv_error)."""
        if flags & MSG_ERRQUEUE:
            return self._recv_error(s, length, controllen)
        # time.monotonic(), the clock asyncio's timers run on: no get_running_loop()
        # (a getpid() each) on this per-datagram path.
        deadline = None if timeout_ns < 0 else time.monotonic() + timeout_ns / 1e9
        while True:
            found = await self._skb_recv_udp(s, flags, timeout_ns, deadline)
            if found is None:
                # Shut down for reading: 0, before msg_name is filled (no daddr).
                return RecvMsg(data=b"", ulen=0, msg_flags=0, saddr=0, sport=0)
            skb, off = found
            if not udp_lib_checksum_complete(skb):
                # csum_copy_err: __sk_queue_drop_skb() (counted in sk_drops), then
                # "goto try_again", which takes the next datagram even with MSG_DONTWAIT.
                self._unlink(s, skb)
                s.drops += 1
                self._sk_mib(s).inc("InCsumErrors")
                self._sk_mib(s).inc("InErrors")
                self.drops.drop(SkbDropReason.UDP_CSUM, "udp_recvmsg", skb=skb, queued=True)
                continue
            return self._copy_out(s, skb, off, length, flags, controllen)

    async def recvmmsg(
        self, s: UdpSock, length: int, flags: int, timeout_ns: int, controllen: int, vlen: int
    ) -> tuple[list[RecvMsg], int]:
        """do_recvmmsg()'s loop over udp_recvmsg() for up to vlen datagrams: the first
        as flags and timeout_ns say (its error is raised), the others with
        MSG_DONTWAIT, until one fails: its errno is returned with those read (EAGAIN:
        nothing more is queued)."""
        got = [await self.udp_recvmsg(s, length, flags, timeout_ns, controllen)]
        err = 0
        while len(got) < vlen:
            try:
                got.append(await self.udp_recvmsg(s, length, flags | MSG_DONTWAIT, 0, controllen))
            except OSError as e:
                err = e.errno or errno.EIO
                break
        return got, err

    async def _skb_recv_udp(
        self, s: UdpSock, flags: int, timeout_ns: int, deadline: float | None
    ) -> tuple[SkBuff, int] | None:
        """__skb_recv_udp(): sock_error() first, then the queue, then a wait for
        sk_data_ready (exclusive wake-up) until the deadline. None when a call that
        would wait finds the socket shut down for reading
        (__skb_wait_for_more_packets: RCV_SHUTDOWN ends the wait with no error)."""
        while True:
            err = s.sock_error()
            if err:
                raise errno.kernel_error(err)
            found = _try_recv_from_queue(s, flags)
            if found is not None:
                return found
            if s.dead:
                raise errno.kernel_error(errno.EBADF)
            if flags & MSG_DONTWAIT or timeout_ns == 0:
                raise errno.kernel_error(errno.EAGAIN)
            if s.shutdown & RCV_SHUTDOWN:
                return None
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                raise errno.kernel_error(errno.EAGAIN)
            # Woken (sk_data_ready's or sk_error_report's exclusive wake-up) but
            # abandoned: the wake-up is passed on, or the next reader sleeps with a
            # datagram or an error waiting.
            await sk_wait(s.waiters, remaining, lambda: _pass_on(s))

    def _copy_out(
        self, s: UdpSock, skb: SkBuff, off: int, length: int, flags: int, controllen: int
    ) -> RecvMsg:
        """The copy (from `off` for a peek at an offset), MSG_TRUNC when the buffer is
        shorter than the datagram, the return value (the datagram's length with
        MSG_TRUNC asked for), the cmsgs, then skb_consume_udp(): a read gives back the
        memory and moves a peek offset back, a peek moves it forward."""
        peeking = bool(flags & MSG_PEEK)
        # A UDP_GRO socket gets a GRO skb whole: its payload is in frags too.
        payload = (memoryview(skb.payload()) if skb.data_len else skb.linear())[UDP_HLEN:]
        ulen = len(payload)
        copied = length
        msg_flags = 0
        if copied > ulen - off:
            copied = ulen - off
        elif copied < ulen:
            msg_flags |= MSG_TRUNC
        if not peeking:
            self._unlink(s, skb)
            self._sk_mib(s).inc("InDatagrams")
            if s.receive_queue:
                s.data_ready()  # let the next waiting reader take the next one
        self.trace(skb, "udp_recvmsg")
        nh = skb.network_header
        iph = Ipv4Packet(memoryview(skb.head)[nh : skb.transport_header])
        uh = UdpPacket(skb.linear())
        msg = MsgControl(controllen)
        # sock_recv_cmsgs() comes first; then udp_cmsg_recv() for a UDP_GRO socket, then
        # ip_cmsg_recv_offset().
        sock_recv_cmsgs(msg, s, skb)
        if s.gro_enabled and skb.gso_type & SKB_GSO_UDP_L4:
            msg.put(SOL_UDP, UDP_GRO, struct.pack("=i", skb.gso_size))
        if s.inet.cmsg_flags:
            sockglue.ip_cmsg_recv_offset(
                msg,
                s.inet.cmsg_flags,
                skb.cb,
                skb.head[nh : skb.transport_header],
                skb.head[skb.transport_header : skb.transport_header + 4],
                sockglue.ip_retopts(skb.head[nh : skb.transport_header], skb.cb),
            )
        ret = ulen if flags & MSG_TRUNC else copied
        if s.peek_off >= 0:
            # skb_consume_udp() → sk_peek_offset_bwd(sk, peeking ? -ret : ret).
            s.peek_off = s.peek_off + ret if peeking else max(s.peek_off - ret, 0)
        return RecvMsg(
            data=bytes(payload[off : off + copied]),
            ulen=ulen,
            msg_flags=msg_flags | msg.flags,
            saddr=iph.src,
            sport=uh.src_port,
            daddr=iph.dst,
            tstamp=skb.tstamp,
            ttl=iph.ttl,
            tos=iph.tos,
            mark=skb.mark,
            ifindex=skb.skb_iif,
            trace=skb.trace or [],
            control=msg.control(),
        )

    def _recv_error(self, s: UdpSock, length: int, controllen: int) -> RecvMsg:
        """ip_recv_error(): EAGAIN when the error queue is empty; never waits."""
        serr = s.dequeue_err_skb()
        if serr is None:
            raise errno.kernel_error(errno.EAGAIN)
        return sockglue.ip_recv_error(serr, length, controllen, s.inet.cmsg_flags, s)
