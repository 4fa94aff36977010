"""struct udp_sock: one UDP socket's addresses, IP options, receive and error queues and
their accounting, and the datagram it is corking."""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from services.core import errno
from services.core.bpf import BpfProg
from services.core.cred import ROOT, Cred
from services.core.skbuff import Dst, SkBuff
from services.core.socket_uapi import SO_EE_ORIGIN_ICMP
from services.ip.cork import InetCork
from services.ip.sockglue import InetOpts, SockExterrSkb

# include/net/tcp_states.h: UDP uses these two for "unconnected" and "connected".
TCP_ESTABLISHED = 1
TCP_CLOSE = 7

# include/net/sock.h sk_shutdown
RCV_SHUTDOWN = 1
SEND_SHUTDOWN = 2
SHUTDOWN_MASK = 3

# include/net/sock.h sk_userlocks
SOCK_SNDBUF_LOCK = 1
SOCK_RCVBUF_LOCK = 2
SOCK_BINDADDR_LOCK = 4
SOCK_BINDPORT_LOCK = 8

# include/linux/udp.h: UDP-Lite's up->pcflag bits (which coverage options were set).
UDPLITE_SEND_CC = 0x1
UDPLITE_RECV_CC = 0x2


async def sk_wait(
    waiters: deque[asyncio.Future[None]],
    remaining: float | None,
    woken_unused: Callable[[], None] | None = None,
) -> None:
    """prepare_to_wait() / schedule_timeout() / finish_wait() on one of a socket's wait
    queues: sleep until woken or `remaining` seconds pass (EAGAIN), always leaving the
    queue. A wait abandoned (cancelled) after its wake-up came calls `woken_unused`, so
    an exclusive wake-up can be passed on."""
    w: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    waiters.append(w)
    try:
        await asyncio.wait_for(w, remaining)
    except TimeoutError:
        raise errno.kernel_error(errno.EAGAIN) from None
    except asyncio.CancelledError:
        if woken_unused is not None and w.done() and not w.cancelled():
            woken_unused()
        raise
    finally:
        if not w.done():
            w.cancel()
        if w in waiters:
            waiters.remove(w)


def _wake(q: deque[asyncio.Future[None]], exclusive: bool = False) -> None:
    """__wake_up_common(): the waiters of one queue, in order; an exclusive wake-up
    stops at the first still waiting (one that gave up already does not count)."""
    while q:
        w = q.popleft()
        if not w.done():
            w.set_result(None)
            if exclusive:
                return


@dataclass(slots=True)
class CachedRoute:
    """sk_dst_cache: the route of a connected socket, valid while the FIB generation
    it was looked up under is current."""

    dst: Dst
    saddr: int
    genid: int


@dataclass(eq=False, slots=True)
class UdpSock:
    sk: int
    protocol: int
    rcvbuf: int
    sndbuf: int
    inet: InetOpts
    owner_pid: int = 0
    owner_fd: int = 0
    state: int = TCP_CLOSE
    # inet_rcv_saddr (bound address), inet_saddr (source used), inet_num (local port)
    rcv_saddr: int = 0
    saddr: int = 0
    num: int = 0
    daddr: int = 0
    dport: int = 0
    userlocks: int = 0
    broadcast: bool = False
    # SO_REUSEADDR (sk_reuse, SK_CAN_REUSE 1), SO_REUSEPORT (sk_reuseport) and the
    # group the table put the socket in (sk_reuseport_cb), SO_BINDTODEVICE
    # (sk_bound_dev_if), and the owner's uid (sk_uid: reuseport groups are per uid).
    reuse: int = 0
    reuseport: bool = False
    reuseport_cb: object | None = None
    bound_dev_if: int = 0
    uid: int = 0
    # The owner's credentials: the capability checks the kernel makes against the
    # calling task (only the owning process reaches its sockets).
    cred: Cred = ROOT
    # SO_DONTROUTE (SOCK_LOCALROUTE), SO_NO_CHECK (sk_no_check_tx), SO_RXQ_OVFL
    # (SOCK_RXQ_OVFL), SO_MARK (sk_mark), SO_PEEK_OFF (sk_peek_off, -1: off), the socket filter
    # (sk_filter, a services.core.bpf program) and SO_LOCK_FILTER (SOCK_FILTER_LOCKED).
    mark: int = 0
    localroute: bool = False
    no_check_tx: bool = False
    rxq_ovfl: bool = False
    peek_off: int = -1
    sk_filter: BpfProg | None = None
    filter_locked: bool = False
    # sk_omem_alloc: option memory (the socket filter's bpf_prog_size).
    omem_alloc: int = 0
    # UDP_SEGMENT (up->gso_size), UDP_NO_CHECK6_TX/RX (kept, IPv6 reads them), and
    # UDP-Lite's coverage (up->pcflag, pcslen for sending, pcrlen the least accepted).
    gso_size: int = 0
    no_check6_tx: bool = False
    no_check6_rx: bool = False
    pcflag: int = 0
    pcslen: int = 0
    pcrlen: int = 0
    # UDP_GRO (udp_sk(sk)->gro_enabled with ACCEPT_L4): GRO skbs are queued whole
    # instead of being split by udp_unexpected_gso().
    gro_enabled: bool = False
    # UDP_CORK (udp_sk(sk)->corkflag), and up->pending: the datagram a corked send
    # (UDP_CORK or MSG_MORE) started, appended to until it is pushed or flushed.
    corkflag: bool = False
    pending: InetCork | None = None
    inet_id: int = 0
    rmem_alloc: int = 0
    # sk_forward_alloc: bytes of udp_mem pages charged to this socket, not yet used.
    forward_alloc: int = 0
    drops: int = 0
    # sk_wmem_alloc less its initial 1: truesize of the datagrams sent and not yet freed
    # below (sock_wfree), SOCK_NOSPACE, and the senders waiting for room.
    wmem_alloc: int = 0
    nospace: bool = False
    write_waiters: deque[asyncio.Future[None]] = field(default_factory=deque)
    dst_cache: CachedRoute | None = None
    # sk_priority (IP_TOS sets it, rt_tos2priority) and sk_err, the pending error the
    # next call that checks sock_error() returns.
    priority: int = 0
    sk_err: int = 0
    # Timestamping (net/core/sock.c sock_set_timestamp, sock_set_timestamping): the
    # SOCK_RCVTSTAMP, SOCK_RCVTSTAMPNS and SOCK_TSTAMP_NEW flags, sk_tsflags
    # (SOF_TIMESTAMPING_*), sk_tskey (the OPT_ID counter) and sk_bind_phc; SO_TXTIME
    # (SOCK_TXTIME, sk_clockid, sk_txtime_deadline_mode, sk_txtime_report_errors).
    rcvtstamp: bool = False
    rcvtstampns: bool = False
    tstamp_new: bool = False
    tsflags: int = 0
    tskey: int = 0
    bind_phc: int = 0
    txtime: bool = False
    txtime_clockid: int = 0
    txtime_deadline_mode: bool = False
    txtime_report_errors: bool = False
    # SO_RCVLOWAT (sk_rcvlowat), SO_RCVMARK (SOCK_RCVMARK), SO_RCVPRIORITY
    # (SOCK_RCVPRIORITY), SO_SELECT_ERR_QUEUE (SOCK_SELECT_ERR_QUEUE).
    rcvlowat: int = 1
    rcvmark: bool = False
    rcvpriority: bool = False
    # SO_EMU_TRACE: the emulator traces every datagram this socket sends.
    emu_trace: bool = False
    select_err_queue: bool = False
    # The struct sock options that only keep a value on a UDP socket (sk_setsockopt):
    # SO_DEBUG (SOCK_DBG), SO_KEEPALIVE (SOCK_KEEPOPEN), SO_OOBINLINE (SOCK_URGINLINE),
    # SO_LINGER (SOCK_LINGER, sk_lingertime in jiffies), SO_WIFI_STATUS, SO_NOFCS,
    # SO_BUSY_POLL (sk_ll_usec), SO_PREFER_BUSY_POLL, SO_BUSY_POLL_BUDGET,
    # SO_MAX_PACING_RATE (sk_max_pacing_rate, ~0UL: unlimited), SO_INCOMING_CPU
    # (sk_incoming_cpu, -1: none) and sk_cookie (0 until sock_gen_cookie() gives one).
    dbg: bool = False
    keepopen: bool = False
    urginline: bool = False
    linger: bool = False
    lingertime: int = 0
    wifi_status: bool = False
    nofcs: bool = False
    ll_usec: int = 0
    prefer_busy_poll: bool = False
    busy_poll_budget: int = 0
    max_pacing_rate: int = (1 << 64) - 1
    incoming_cpu: int = -1
    cookie: int = 0
    # sk_shutdown (RCV_SHUTDOWN 1, SEND_SHUTDOWN 2), and the pollers waiting on the
    # socket's wait queue (woken, all of them, by every event: sk_data_ready,
    # sk_write_space, sk_error_report, sk_state_change).
    shutdown: int = 0
    poll_waiters: deque[asyncio.Future[None]] = field(default_factory=deque)
    receive_queue: deque[SkBuff] = field(default_factory=deque)
    error_queue: deque[SockExterrSkb] = field(default_factory=deque)
    waiters: deque[asyncio.Future[None]] = field(default_factory=deque)
    dead: bool = False

    @property
    def pmtudisc(self) -> int:
        return self.inet.pmtudisc

    def sock_error(self) -> int:
        """sock_error(): the pending error, taken (xchg with 0)."""
        err, self.sk_err = self.sk_err, 0
        return err

    def error_report(self) -> None:
        """sk_error_report(): sock_def_error_report wakes a waiting reader, which then
        finds sk_err (or an error queued) at its next sock_error()."""
        self.data_ready()

    def queue_err_skb(self, serr: SockExterrSkb) -> bool:
        """sock_queue_err_skb() (net/core/skbuff.c): charged to sk_rmem_alloc like a
        datagram, refused (the skb freed) when that would reach sk_rcvbuf."""
        if self.rmem_alloc + serr.truesize >= self.rcvbuf:
            return False
        self.rmem_alloc += serr.truesize
        self.error_queue.append(serr)
        if not self.dead:
            self.error_report()
        return True

    def dequeue_err_skb(self) -> SockExterrSkb | None:
        """sock_dequeue_err_skb(): the oldest error; sk_err becomes the next one's errno
        when that is an ICMP error, and 0 when an ICMP error leaves none behind it."""
        if not self.error_queue:
            return None
        serr = self.error_queue.popleft()
        self.rmem_alloc -= serr.truesize
        nxt = self.error_queue[0] if self.error_queue else None
        icmp_next = nxt is not None and nxt.ee.ee_origin == SO_EE_ORIGIN_ICMP
        if icmp_next:
            assert nxt is not None
            self.sk_err = nxt.ee.ee_errno
        elif serr.ee.ee_origin == SO_EE_ORIGIN_ICMP:
            self.sk_err = 0
        if nxt is not None:
            self.error_report()
        return serr

    def purge_error_queue(self) -> None:
        """skb_errqueue_purge()."""
        while self.error_queue:
            self.rmem_alloc -= self.error_queue.popleft().truesize

    def poll_wake(self) -> None:
        """The pollers on the socket's wait queue: every wake-up reaches all of them
        (poll's entries are not exclusive), and each looks at udp_poll() again."""
        _wake(self.poll_waiters)

    def data_ready(self) -> None:
        """sk_data_ready(): wake every poller and the first reader waiting (an exclusive
        wake-up)."""
        self.poll_wake()
        _wake(self.waiters, exclusive=True)

    def wake_all(self) -> None:
        """sk_state_change() (sock_def_wakeup: wake_up_interruptible_all), and release:
        readers, senders and pollers, every one."""
        for q in (self.waiters, self.write_waiters, self.poll_waiters):
            _wake(q)

    def wmem_full(self) -> bool:
        """No room to allocate a datagram: sock_alloc_send_pskb() waits while
        sk_wmem_alloc is not below sk_sndbuf."""
        return self.wmem_alloc >= self.sndbuf

    def write_space(self) -> None:
        """sock_def_write_space(): once sk_wmem_alloc is at most half of sk_sndbuf,
        every sender waiting for room is woken."""
        if self.wmem_alloc << 1 <= self.sndbuf:
            self.poll_wake()
            _wake(self.write_waiters)
