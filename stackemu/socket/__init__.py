"""A drop-in for Python's socket module whose AF_INET/SOCK_DGRAM sockets live on an
emulated host: `import stackemu.socket as socket`.

The host is the one STACKEMU_HOST names (default alice) in the stack `stackemu up`
started, or the socket service at STACKEMU_SOCKET_ADDR=host:port. Everything that is
not a socket object (constants, inet_aton, htons, exceptions, getaddrinfo) is the
standard module's, plus the constants it lacks (SO_TIMESTAMPING, SOF_TIMESTAMPING_*,
UDP_SEGMENT, IP_RECVERR, ...: Linux's values, from services.core.socket_uapi,
services.core.tstamp and services.ip.sockglue). Errors are OSError subclasses with the Linux errno, as the
standard module raises them; ancillary data is msg_control byte for byte, parsed as
CPython parses it.

The Python process is one process of the emulated host, opened at its first socket
with the credentials of:
  - set_credentials(uid=..., caps=..., nofile=...), called before the first socket, or
  - the environment: STACKEMU_UID (decimal uid, default 0), STACKEMU_CAPS (a hex bit
    mask of CAP_* numbers, e.g. 0x3000 for CAP_NET_ADMIN and CAP_NET_RAW; unset: all of
    them, as root has) and STACKEMU_NOFILE (RLIMIT_NOFILE of the emulated fd table;
    unset: the kernel's default soft limit, 1024; this process's own limit is not used,
    as the emulated descriptors are not its own).
A daemon thread holds the socket service's KeepAlive stream, so that the host closes
the process's sockets when the Python process ends, even by SIGKILL.

When the socket service goes away (killed, restarted by `stackemu up`'s supervisor),
a call in progress fails with EIO; the emulated process and its descriptors are gone
with the service, so every later call on a socket opened before fails with EBADF
(close() quietly does nothing), and the next socket() opens a new emulated process.

Limits: an emulated socket has no real descriptor (fileno() is the emulated one, for
stackemu.select and socket(fileno=)); dup(), fromfd() and makefile() raise OSError
EOPNOTSUPP; a forked child shares the parent's emulated process (and gRPC channel),
as it would share descriptors, which gRPC does not support after fork.

Extras the standard module lacks: socket.sendmmsg(msgs, flags=0) and
socket.recvmmsg(vlen, bufsize, ancbufsize=0, flags=0, timeout=None) (sendmmsg(2),
recvmmsg(2)), fcntl(fd, cmd, arg=0) on an emulated descriptor, and the emulator's
per-socket tracing (socket.emu_trace, socket.emu_last_trace). Readiness is
stackemu.select and stackemu.selectors.
"""

from __future__ import annotations

import atexit
import ctypes
import itertools
import math
import operator
import os
import socket as _std
import struct
import sys
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from socket import *  # noqa: F403  (the drop-in re-exports the standard names)
from typing import Any, NoReturn, Self, TypeVar

import grpc

from services.core import errno as _errno
from services.core import socket_uapi as _uapi
from services.core import tstamp as _tstamp
from services.core.server import open_channel as _open_channel
from services.core.skbuff import TraceStep, trace_from_proto
from services.core.sockaddr import AF_INET as _AF_INET
from services.core.sockaddr import make_sockaddr_in, parse_sockaddr_in
from services.ip import sockglue as _ipglue
from stackemu import state as _state
from stackemu.socket._cmsg import SOCKLEN_T_LIMIT as _SOCKLEN_T_LIMIT
from stackemu.socket._cmsg import decode_ancdata as _decode_ancdata
from stackemu.socket._cmsg import encode_ancdata as _encode_ancdata
from stackemu.socket.v1 import socket_pb2 as _pb
from stackemu.socket.v1 import socket_pb2_grpc as _pb_grpc

error: type[OSError] = OSError  # type: ignore[no-redef]
timeout: type[TimeoutError] = TimeoutError  # type: ignore[no-redef]

# The constants this Python's socket module lacks, with Linux's values, taken from where
# the emulator defines them (one definition each).
# services.core.socket_uapi: SOL_SOCKET and SOL_UDP options, cmsg types, msg flags.
SOL_UDPLITE = _uapi.SOL_UDPLITE
MSG_PROBE = _uapi.MSG_PROBE
MSG_WAITFORONE = _uapi.MSG_WAITFORONE
SO_NO_CHECK = _uapi.SO_NO_CHECK
SO_BSDCOMPAT = _uapi.SO_BSDCOMPAT
SO_RCVTIMEO_OLD = _uapi.SO_RCVTIMEO_OLD
SO_SNDTIMEO_OLD = _uapi.SO_SNDTIMEO_OLD
SO_ATTACH_FILTER = _uapi.SO_ATTACH_FILTER
SO_DETACH_FILTER = _uapi.SO_DETACH_FILTER
SO_GET_FILTER = _uapi.SO_GET_FILTER
SO_PEERNAME = _uapi.SO_PEERNAME
SO_TIMESTAMP_OLD = _uapi.SO_TIMESTAMP_OLD
SO_SNDBUFFORCE = _uapi.SO_SNDBUFFORCE
SO_RCVBUFFORCE = _uapi.SO_RCVBUFFORCE
SO_TIMESTAMPNS_OLD = _uapi.SO_TIMESTAMPNS_OLD
SO_TIMESTAMPING_OLD = _uapi.SO_TIMESTAMPING_OLD
SO_RXQ_OVFL = _uapi.SO_RXQ_OVFL
SO_WIFI_STATUS = _uapi.SO_WIFI_STATUS
SO_PEEK_OFF = _uapi.SO_PEEK_OFF
SO_NOFCS = _uapi.SO_NOFCS
SO_LOCK_FILTER = _uapi.SO_LOCK_FILTER
SO_SELECT_ERR_QUEUE = _uapi.SO_SELECT_ERR_QUEUE
SO_BUSY_POLL = _uapi.SO_BUSY_POLL
SO_MAX_PACING_RATE = _uapi.SO_MAX_PACING_RATE
SO_BPF_EXTENSIONS = _uapi.SO_BPF_EXTENSIONS
SO_ATTACH_BPF = _uapi.SO_ATTACH_BPF
SO_ATTACH_REUSEPORT_CBPF = _uapi.SO_ATTACH_REUSEPORT_CBPF
SO_ATTACH_REUSEPORT_EBPF = _uapi.SO_ATTACH_REUSEPORT_EBPF
SO_CNX_ADVICE = _uapi.SO_CNX_ADVICE
SO_MEMINFO = _uapi.SO_MEMINFO
SO_INCOMING_NAPI_ID = _uapi.SO_INCOMING_NAPI_ID
SO_COOKIE = _uapi.SO_COOKIE
SO_PEERGROUPS = _uapi.SO_PEERGROUPS
SO_ZEROCOPY = _uapi.SO_ZEROCOPY
SO_BINDTOIFINDEX = _uapi.SO_BINDTOIFINDEX
SO_TIMESTAMP_NEW = _uapi.SO_TIMESTAMP_NEW
SO_TIMESTAMPNS_NEW = _uapi.SO_TIMESTAMPNS_NEW
SO_TIMESTAMPING_NEW = _uapi.SO_TIMESTAMPING_NEW
SO_RCVTIMEO_NEW = _uapi.SO_RCVTIMEO_NEW
SO_SNDTIMEO_NEW = _uapi.SO_SNDTIMEO_NEW
SO_DETACH_REUSEPORT_BPF = _uapi.SO_DETACH_REUSEPORT_BPF
SO_PREFER_BUSY_POLL = _uapi.SO_PREFER_BUSY_POLL
SO_BUSY_POLL_BUDGET = _uapi.SO_BUSY_POLL_BUDGET
SO_NETNS_COOKIE = _uapi.SO_NETNS_COOKIE
SO_BUF_LOCK = _uapi.SO_BUF_LOCK
SO_RESERVE_MEM = _uapi.SO_RESERVE_MEM
SO_TXREHASH = _uapi.SO_TXREHASH
SO_RCVMARK = _uapi.SO_RCVMARK
SO_PASSPIDFD = _uapi.SO_PASSPIDFD
SO_PEERPIDFD = _uapi.SO_PEERPIDFD
SO_DEVMEM_LINEAR = _uapi.SO_DEVMEM_LINEAR
SO_DEVMEM_DMABUF = _uapi.SO_DEVMEM_DMABUF
SO_DEVMEM_DONTNEED = _uapi.SO_DEVMEM_DONTNEED
SO_RCVPRIORITY = _uapi.SO_RCVPRIORITY
SO_PASSRIGHTS = _uapi.SO_PASSRIGHTS
UDP_CORK = _uapi.UDP_CORK
UDP_ENCAP = _uapi.UDP_ENCAP
UDP_NO_CHECK6_TX = _uapi.UDP_NO_CHECK6_TX
UDP_NO_CHECK6_RX = _uapi.UDP_NO_CHECK6_RX
UDP_SEGMENT = _uapi.UDP_SEGMENT
UDP_GRO = _uapi.UDP_GRO
SCM_TIMESTAMP = _uapi.SCM_TIMESTAMP
SCM_TIMESTAMPNS = _uapi.SCM_TIMESTAMPNS
SCM_TIMESTAMPING = _uapi.SCM_TIMESTAMPING
SCM_TIMESTAMPING_OPT_STATS = _uapi.SCM_TIMESTAMPING_OPT_STATS
SCM_TIMESTAMPING_PKTINFO = _uapi.SCM_TIMESTAMPING_PKTINFO
SO_TXTIME = _uapi.SO_TXTIME
SCM_TXTIME = _uapi.SCM_TXTIME
SCM_TS_OPT_ID = _uapi.SCM_TS_OPT_ID
SO_TIMESTAMP = _uapi.SO_TIMESTAMP
SO_TIMESTAMPNS = _uapi.SO_TIMESTAMPNS
SO_TIMESTAMPING = _uapi.SO_TIMESTAMPING
SCM_TSTAMP_SND = _uapi.SCM_TSTAMP_SND
SCM_TSTAMP_SCHED = _uapi.SCM_TSTAMP_SCHED
SCM_TSTAMP_ACK = _uapi.SCM_TSTAMP_ACK
SCM_TSTAMP_COMPLETION = _uapi.SCM_TSTAMP_COMPLETION
SO_EE_ORIGIN_ICMP6 = _uapi.SO_EE_ORIGIN_ICMP6
SO_EE_ORIGIN_TXSTATUS = _uapi.SO_EE_ORIGIN_TXSTATUS
SO_EE_ORIGIN_ZEROCOPY = _uapi.SO_EE_ORIGIN_ZEROCOPY
SO_EE_ORIGIN_TXTIME = _uapi.SO_EE_ORIGIN_TXTIME
SO_EE_CODE_ZEROCOPY_COPIED = _uapi.SO_EE_CODE_ZEROCOPY_COPIED
SO_EE_CODE_TXTIME_INVALID_PARAM = _uapi.SO_EE_CODE_TXTIME_INVALID_PARAM
SO_EE_CODE_TXTIME_MISSED = _uapi.SO_EE_CODE_TXTIME_MISSED
# services.core.tstamp: SO_TIMESTAMPING and SO_TXTIME flags.
SOF_TIMESTAMPING_TX_HARDWARE = _tstamp.SOF_TIMESTAMPING_TX_HARDWARE
SOF_TIMESTAMPING_TX_SOFTWARE = _tstamp.SOF_TIMESTAMPING_TX_SOFTWARE
SOF_TIMESTAMPING_RX_HARDWARE = _tstamp.SOF_TIMESTAMPING_RX_HARDWARE
SOF_TIMESTAMPING_RX_SOFTWARE = _tstamp.SOF_TIMESTAMPING_RX_SOFTWARE
SOF_TIMESTAMPING_SOFTWARE = _tstamp.SOF_TIMESTAMPING_SOFTWARE
SOF_TIMESTAMPING_SYS_HARDWARE = _tstamp.SOF_TIMESTAMPING_SYS_HARDWARE
SOF_TIMESTAMPING_RAW_HARDWARE = _tstamp.SOF_TIMESTAMPING_RAW_HARDWARE
SOF_TIMESTAMPING_OPT_ID = _tstamp.SOF_TIMESTAMPING_OPT_ID
SOF_TIMESTAMPING_TX_SCHED = _tstamp.SOF_TIMESTAMPING_TX_SCHED
SOF_TIMESTAMPING_TX_ACK = _tstamp.SOF_TIMESTAMPING_TX_ACK
SOF_TIMESTAMPING_OPT_CMSG = _tstamp.SOF_TIMESTAMPING_OPT_CMSG
SOF_TIMESTAMPING_OPT_TSONLY = _tstamp.SOF_TIMESTAMPING_OPT_TSONLY
SOF_TIMESTAMPING_OPT_STATS = _tstamp.SOF_TIMESTAMPING_OPT_STATS
SOF_TIMESTAMPING_OPT_PKTINFO = _tstamp.SOF_TIMESTAMPING_OPT_PKTINFO
SOF_TIMESTAMPING_OPT_TX_SWHW = _tstamp.SOF_TIMESTAMPING_OPT_TX_SWHW
SOF_TIMESTAMPING_BIND_PHC = _tstamp.SOF_TIMESTAMPING_BIND_PHC
SOF_TIMESTAMPING_OPT_ID_TCP = _tstamp.SOF_TIMESTAMPING_OPT_ID_TCP
SOF_TIMESTAMPING_OPT_RX_FILTER = _tstamp.SOF_TIMESTAMPING_OPT_RX_FILTER
SOF_TIMESTAMPING_TX_COMPLETION = _tstamp.SOF_TIMESTAMPING_TX_COMPLETION
SOF_TIMESTAMPING_LAST = _tstamp.SOF_TIMESTAMPING_LAST
SOF_TIMESTAMPING_MASK = _tstamp.SOF_TIMESTAMPING_MASK
SOF_TIMESTAMPING_TX_RECORD_MASK = _tstamp.SOF_TIMESTAMPING_TX_RECORD_MASK
SOF_TXTIME_DEADLINE_MODE = _tstamp.SOF_TXTIME_DEADLINE_MODE
SOF_TXTIME_REPORT_ERRORS = _tstamp.SOF_TXTIME_REPORT_ERRORS
SOF_TXTIME_FLAGS_MASK = _tstamp.SOF_TXTIME_FLAGS_MASK
# services.ip.sockglue: SOL_IP options, sock_extended_err origins.
IP_ROUTER_ALERT = _ipglue.IP_ROUTER_ALERT
IP_PKTINFO = _ipglue.IP_PKTINFO
IP_PKTOPTIONS = _ipglue.IP_PKTOPTIONS
IP_MTU_DISCOVER = _ipglue.IP_MTU_DISCOVER
IP_RECVERR = _ipglue.IP_RECVERR
IP_RECVTTL = _ipglue.IP_RECVTTL
IP_MTU = _ipglue.IP_MTU
IP_RECVORIGDSTADDR = _ipglue.IP_RECVORIGDSTADDR
IP_ORIGDSTADDR = _ipglue.IP_ORIGDSTADDR
IP_NODEFRAG = _ipglue.IP_NODEFRAG
IP_RECVFRAGSIZE = _ipglue.IP_RECVFRAGSIZE
IP_RECVERR_RFC4884 = _ipglue.IP_RECVERR_RFC4884
IP_PROTOCOL = _ipglue.IP_PROTOCOL
IP_PMTUDISC_DONT = _ipglue.IP_PMTUDISC_DONT
IP_PMTUDISC_WANT = _ipglue.IP_PMTUDISC_WANT
IP_PMTUDISC_DO = _ipglue.IP_PMTUDISC_DO
IP_PMTUDISC_PROBE = _ipglue.IP_PMTUDISC_PROBE
IP_PMTUDISC_INTERFACE = _ipglue.IP_PMTUDISC_INTERFACE
IP_PMTUDISC_OMIT = _ipglue.IP_PMTUDISC_OMIT
SO_EE_ORIGIN_NONE = _uapi.SO_EE_ORIGIN_NONE
SO_EE_ORIGIN_LOCAL = _uapi.SO_EE_ORIGIN_LOCAL
SO_EE_ORIGIN_ICMP = _uapi.SO_EE_ORIGIN_ICMP
SO_EE_ORIGIN_TIMESTAMPING = _uapi.SO_EE_ORIGIN_TIMESTAMPING
SO_EE_RFC4884_FLAG_INVALID = _ipglue.SO_EE_RFC4884_FLAG_INVALID

# fcntl(2)'s commands and flags (include/uapi/asm-generic/fcntl.h), for fcntl() below.
F_GETFD = _uapi.F_GETFD
F_SETFD = _uapi.F_SETFD
F_GETFL = _uapi.F_GETFL
F_SETFL = _uapi.F_SETFL
FD_CLOEXEC = _uapi.FD_CLOEXEC
O_NONBLOCK = _uapi.O_NONBLOCK

# Python blocks in recv with the GIL released; poll the RPC this often so that
# KeyboardInterrupt gets through, as it does for the standard module.
_POLL_INTERVAL = 0.2
# How long to wait for the socket service to hold the process (KeepAlive's first
# response comes at once).
_KEEPALIVE_WAIT = 10.0
# The proto's bounds on OpenProcessRequest.nofile (files.c's NR_OPEN in the emulator).
_NOFILE_MAX = 65536

_R = TypeVar("_R")


def _rpc_error(err: grpc.RpcError) -> OSError:
    return OSError(_errno.EIO, f"emulated stack: {err.code().name}: {err.details()}")


def _raise(code: int) -> NoReturn:
    # OSError(errno, msg) picks the subclass (BlockingIOError, ConnectionRefusedError...)
    raise OSError(code, _errno.strerror(code))


class _Host:
    """The one connection a Python process keeps to its socket service: its emulated
    pid, the KeepAlive stream that ties the emulated process's life to this one, and
    the descriptors this process's sockets hold (fd → the generation of the socket
    that got it, so that stale registrations of a closed fd can be told apart)."""

    def __init__(self, addr: str, uid: int, caps: int | None, nofile: int) -> None:
        self.addr = addr
        # Set when the service no longer holds the process (its KeepAlive ended but
        # not by exit()): the pid may be another process's in a restarted service.
        self.lost = False
        self._exiting = False
        self.channel = _open_channel(addr)
        self.stub = _pb_grpc.SocketServiceStub(self.channel)
        self.files: dict[int, int] = {}
        self._generations = itertools.count(1)
        self.lock = threading.Lock()
        comm = os.path.basename(sys.argv[0]) if sys.argv and sys.argv[0] else "python3"
        req = _pb.OpenProcessRequest(comm=comm, uid=uid, nofile=nofile)
        if caps is not None:
            req.capabilities = caps
        try:
            self.pid: int = self.stub.OpenProcess(req, timeout=10).pid
        except grpc.RpcError as err:
            self.channel.close()
            raise OSError(
                _errno.ECONNREFUSED, f"no emulated socket service at {addr}: {err.code().name}"
            ) from None
        self._keepalive = self.stub.KeepAlive(_pb.KeepAliveRequest(pid=self.pid))
        held = threading.Event()
        threading.Thread(target=self._hold, args=(held,), name="stackemu-keepalive", daemon=True).start()
        held.wait(_KEEPALIVE_WAIT)

    def _hold(self, held: threading.Event) -> None:
        """Read the KeepAlive stream until it ends (the process exits, or the service
        went away): while it is open, the service keeps the process."""
        try:
            for _ in self._keepalive:
                held.set()
        except grpc.RpcError:
            pass
        if not self._exiting:
            self.lost = True
        held.set()

    def add_file(self, fd: int) -> None:
        with self.lock:
            self.files[fd] = next(self._generations)

    def drop_file(self, fd: int) -> None:
        with self.lock:
            self.files.pop(fd, None)

    def exit(self) -> None:
        self._exiting = True
        if not self.lost:
            # A lost process's pid is not ours to end in the service that replaced it.
            try:
                self.stub.ExitProcess(_pb.ExitProcessRequest(pid=self.pid), timeout=2)
            except grpc.RpcError:
                pass
        self._keepalive.cancel()
        self.channel.close()


_host: _Host | None = None
_host_lock = threading.Lock()
_credentials: dict[str, int | None] = {}


def set_credentials(*, uid: int | None = None, caps: int | None = None, nofile: int | None = None) -> None:
    """The credentials and fd limit this process opens its emulated process with, in
    place of STACKEMU_UID, STACKEMU_CAPS and STACKEMU_NOFILE: the uid (sk_uid of its
    sockets), the effective capabilities as a bit mask of CAP_* numbers (1 << 10
    CAP_NET_BIND_SERVICE, 1 << 12 CAP_NET_ADMIN, 1 << 13 CAP_NET_RAW), RLIMIT_NOFILE.
    Only before the first socket: a process's credentials are fixed when it opens."""
    with _host_lock:
        if _host is not None:
            raise RuntimeError(
                "stackemu.socket.set_credentials() must be called before the first socket: "
                f"this process already opened as pid {_host.pid}"
            )
        if uid is not None:
            _credentials["uid"] = _check_range("uid", uid, 0, 0xFFFFFFFF)
        if caps is not None:
            _credentials["caps"] = _check_range("caps", caps, 0, (1 << 64) - 1)
        if nofile is not None:
            _credentials["nofile"] = _check_range("nofile", nofile, 0, _NOFILE_MAX)


def _check_range(what: str, value: int, lo: int, hi: int) -> int:
    value = operator.index(value)
    if not lo <= value <= hi:
        raise ValueError(f"{what} must be in {lo}..{hi}, not {value}")
    return value


def _from_env(name: str, base: int, lo: int, hi: int) -> int | None:
    text = os.environ.get(name)
    if text is None or text == "":
        return None
    try:
        return _check_range(name, int(text, base), lo, hi)
    except ValueError:
        kind = "a hex bit mask of CAP_* numbers (e.g. 0x3000)" if base == 16 else f"an integer in {lo}..{hi}"
        raise ValueError(f"{name}={text!r}: must be {kind}") from None


def _get_host() -> _Host:
    global _host
    with _host_lock:
        if _host is not None and _host.lost:
            # The service that held this process went away: a new process of the
            # service there now (the sockets of the old one fail with EBADF).
            _host.exit()
            _host = None
        if _host is None:
            try:
                addr = _state.service_addr("socket")
            except _state.NoStack as err:
                raise OSError(_errno.ENETDOWN, str(err)) from None
            uid = _credentials.get("uid")
            if uid is None:
                uid = _from_env("STACKEMU_UID", 10, 0, 0xFFFFFFFF) or 0
            caps = _credentials.get("caps")
            if caps is None:
                caps = _from_env("STACKEMU_CAPS", 16, 0, (1 << 64) - 1)
            nofile = _credentials.get("nofile")
            if nofile is None:
                nofile = _from_env("STACKEMU_NOFILE", 10, 0, _NOFILE_MAX) or 0
            _host = _Host(addr, uid, caps, nofile)
            atexit.register(_host.exit)
        return _host


def _blocking(method: Any, request: Any) -> Any:
    """A call that may wait server-side, polled so that KeyboardInterrupt gets through
    (the RPC is cancelled then, as a signal interrupts the system call)."""
    future = method.future(request)
    try:
        while True:
            try:
                return future.result(timeout=_POLL_INTERVAL)
            except grpc.FutureTimeoutError:
                continue
    except grpc.RpcError as err:
        raise _rpc_error(err) from None
    except BaseException:
        future.cancel()
        raise


def _poll(
    fds: Sequence[tuple[int, int]], timeout: float | None, ready: Callable[[list[int]], bool]
) -> list[int]:
    """poll(2) over the socket service's Poll stream, one stream per call: the revents
    (one per fd, in order) of the first response for which `ready` holds, or all zero
    when `timeout` seconds (None: no limit; 0: just look) pass first. The stream is
    cancelled when the call returns."""
    if not fds:
        # Nothing to wait for: poll(2) with nfds 0 sleeps out its timeout.
        deadline = None if timeout is None else time.monotonic() + timeout
        while deadline is None or time.monotonic() < deadline:
            left = _POLL_INTERVAL if deadline is None else min(_POLL_INTERVAL, deadline - time.monotonic())
            time.sleep(max(left, 0))
        return []
    host = _get_host()
    req = _pb.PollRequest(pid=host.pid, fds=[_pb.PollFd(fd=fd, events=events) for fd, events in fds])
    if timeout is not None:
        req.timeout_ns = max(0, math.ceil(timeout * 1e9))
    call = host.stub.Poll(req)
    try:
        for resp in call:
            revents = list(resp.revents)
            if ready(revents):
                return revents
            if timeout == 0:
                break
    except grpc.RpcError as err:
        raise _rpc_error(err) from None
    finally:
        call.cancel()
    return [0] * len(fds)


def _resolve(host: str) -> int:
    """The IPv4 address Python's socket module would use for `host`."""
    if host == "":
        return 0
    if host == "<broadcast>":
        return 0xFFFFFFFF
    packed = _std.inet_aton(_std.gethostbyname(host))
    return int.from_bytes(packed, "big")


def _sockaddr(address: Any, what: str) -> bytes:
    """Python's getsockaddrarg() for AF_INET: a (host, port) tuple."""
    if not isinstance(address, tuple):
        raise TypeError(f"{what}(): AF_INET address must be tuple, not {type(address).__name__}")
    if len(address) != 2:
        raise TypeError("AF_INET address must be a pair (host, port)")
    host, port = address
    if not isinstance(host, str):
        raise TypeError(f"str, bytes or bytearray expected, not {type(host).__name__}")
    if not isinstance(port, int):
        raise TypeError(f"'{type(port).__name__}' object cannot be interpreted as an integer")
    if not 0 <= port <= 0xFFFF:
        raise OverflowError(f"{what}(): port must be 0-65535.")
    return make_sockaddr_in(_resolve(host), port)


def _address(name: bytes) -> tuple[str, int]:
    _, addr, port = parse_sockaddr_in(name)
    return _std.inet_ntoa(addr.to_bytes(4, "big")), port


def _name(name: bytes) -> tuple[str, int] | None:
    """makesockaddr(): None when the kernel left msg_name empty."""
    return _address(name) if name else None


def _parse_timeout(value: Any) -> float | None:
    """socket_parse_timeout(): None, or seconds as a non-negative float."""
    if value is None:
        return None
    if isinstance(value, float):
        if math.isnan(value):
            raise ValueError("Invalid value NaN (not a number)")
        seconds = value
    else:
        try:
            seconds = float(operator.index(value))
        except TypeError:
            raise TypeError(f"'{type(value).__name__}' object cannot be interpreted as an integer") from None
    if seconds < 0:
        raise ValueError("Timeout value out of range")
    return seconds


def _writable(buffer: Any, what: str) -> memoryview:
    """The "w*" conversion: a writable contiguous buffer, as bytes."""
    try:
        view = memoryview(buffer)
    except TypeError:
        raise TypeError(
            f"{what}() argument 'buffer' must be read-write bytes-like object, not {type(buffer).__name__}"
        ) from None
    if view.readonly:
        raise TypeError(
            f"{what}() argument 'buffer' must be read-write bytes-like object, not {type(buffer).__name__}"
        )
    return view.cast("B")


def _gather(buffers: Any, what: str) -> bytes:
    try:
        parts = list(buffers)
    except TypeError:
        raise TypeError(f"{what}() argument 1 must be an iterable") from None
    chunks = []
    for part in parts:
        try:
            chunks.append(bytes(memoryview(part)))
        except TypeError:
            raise TypeError(f"a bytes-like object is required, not '{type(part).__name__}'") from None
    if len(chunks) > _uapi.UIO_MAXIOV:
        # import_iovec(): more iovecs than UIO_MAXIOV is EMSGSIZE, before the call
        # looks at anything else (the service takes the data gathered).
        _raise(_errno.EMSGSIZE)
    return b"".join(chunks)


_AncData = list[tuple[int, int, bytes]]
_Message = tuple[bytes, _AncData, int, tuple[str, int] | None]


class socket:  # type: ignore[no-redef]
    """An emulated socket with the standard socket object's methods."""

    def __init__(self, family: int = -1, type: int = -1, proto: int = -1, fileno: int | None = None) -> None:
        self._closed = True
        self._host = _get_host()
        if fileno is None:
            family = _AF_INET if family == -1 else int(family)
            type = _std.SOCK_STREAM if type == -1 else int(type)
            proto = 0 if proto == -1 else int(proto)
            # CPython opens every socket close-on-exec (PEP 446).
            try:
                resp = self._host.stub.Socket(
                    _pb.SocketRequest(
                        pid=self._host.pid, domain=family, type=type | _std.SOCK_CLOEXEC, protocol=proto
                    )
                )
            except grpc.RpcError as err:
                raise _rpc_error(err) from None
            if resp.errno:
                _raise(resp.errno)
            self._fd: int = resp.fd
            self._host.add_file(self._fd)
        else:
            # sock_initobj_impl(): an emulated descriptor of this process (one that
            # detach() gave back), its family, type and protocol asked of the socket.
            fd = operator.index(fileno)
            if fd < 0:
                raise ValueError("negative file descriptor")
            self._fd = fd
            self._closed = False
            if family == -1:
                family = self._int_option(_std.SO_DOMAIN)
            if type == -1:
                type = self._int_option(_std.SO_TYPE)
            if proto == -1:
                proto = self._int_option(_std.SO_PROTOCOL)
        self._closed = False
        self._family = family
        self._type = type & ~(_std.SOCK_NONBLOCK | _std.SOCK_CLOEXEC)
        self._proto = proto
        # init_sockobject(): SOCK_NONBLOCK is timeout 0; else the default timeout,
        # and a socket with a timeout is O_NONBLOCK (internal_setblocking).
        self._timeout: float | None
        if type & _std.SOCK_NONBLOCK:
            self._timeout = 0.0
        else:
            self._timeout = _std.getdefaulttimeout()
            if self._timeout is not None:
                self._setblocking(False)
        # Emulator extras: trace the datagrams this socket sends; the trace of the last
        # datagram received (when its sender traced it).
        self.emu_trace = False
        self.emu_last_trace: list[TraceStep] = []

    def _int_option(self, optname: int) -> int:
        value: int = self.getsockopt(_std.SOL_SOCKET, optname)
        return value

    # Identity.

    @property
    def family(self) -> _std.AddressFamily:
        return _std.AddressFamily(self._family)

    @property
    def type(self) -> _std.SocketKind:
        return _std.SocketKind(self._type)

    @property
    def proto(self) -> int:
        return self._proto

    @property
    def timeout(self) -> float | None:
        return self._timeout

    def fileno(self) -> int:
        """The emulated descriptor (not one of this process's real descriptors)."""
        return -1 if self._closed else self._fd

    def __repr__(self) -> str:
        closed = " [closed]" if self._closed else ""
        s = (
            f"<stackemu.socket.socket{closed} fd={self.fileno()}, family={self._family}, "
            f"type={self._type}, proto={self._proto}"
        )
        if not self._closed:
            try:
                s += f", laddr={self.getsockname()}"
            except OSError:
                pass
            try:
                s += f", raddr={self.getpeername()}"
            except OSError:
                pass
        return s + ">"

    def __getstate__(self) -> object:
        raise TypeError(f"cannot pickle {self.__class__.__name__!r} object")

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *args: object) -> None:
        self.close()

    def __del__(self) -> None:
        if not getattr(self, "_closed", True):
            try:
                self.close()
            except Exception:
                pass

    # Calls.

    def _check_open(self) -> None:
        if self._closed:
            _raise(_errno.EBADF)
        if self._host.lost:
            raise OSError(
                _errno.EBADF,
                f"{_errno.strerror(_errno.EBADF)}: the emulated socket service at {self._host.addr} "
                "went away, and this process's descriptors with it",
            )

    def _call(self, method: Callable[..., _R], request: Any, **kw: Any) -> _R:
        self._check_open()
        try:
            return method(request, **kw)
        except grpc.RpcError as err:
            raise _rpc_error(err) from None

    def _pid(self) -> int:
        return int(self._host.pid)

    def _timeout_ns(self) -> int | None:
        """What a timeout-mode socket's poll() gives a call (sock_call_ex); None in
        blocking and non-blocking mode, where the descriptor's O_NONBLOCK decides."""
        if self._timeout:
            return math.ceil(self._timeout * 1e9)
        return None

    def _check(self, code: int) -> NoReturn:
        """An errno as sock_call_ex() reports it: EAGAIN after a timeout-mode wait
        is TimeoutError("timed out")."""
        if code == _errno.EAGAIN and self._timeout:
            raise TimeoutError("timed out")
        _raise(code)

    def bind(self, address: Any) -> None:
        resp = self._call(
            self._host.stub.Bind,
            _pb.BindRequest(pid=self._pid(), fd=self._fd, addr=_sockaddr(address, "bind")),
        )
        if resp.errno:
            _raise(resp.errno)

    def connect(self, address: Any) -> None:
        err = self.connect_ex(address)
        if err:
            _raise(err)

    def connect_ex(self, address: Any) -> int:
        resp = self._call(
            self._host.stub.Connect,
            _pb.ConnectRequest(pid=self._pid(), fd=self._fd, addr=_sockaddr(address, "connect")),
        )
        return int(resp.errno)

    def listen(self, backlog: int = 0) -> None:
        """inet_dgram_ops has sock_no_listen."""
        self._check_open()
        _raise(_errno.EOPNOTSUPP)

    def accept(self) -> tuple[socket, tuple[str, int]]:
        """inet_dgram_ops has sock_no_accept."""
        self._check_open()
        _raise(_errno.EOPNOTSUPP)

    def getsockname(self) -> tuple[str, int]:
        resp = self._call(self._host.stub.GetSockName, _pb.GetSockNameRequest(pid=self._pid(), fd=self._fd))
        if resp.errno:
            _raise(resp.errno)
        return _address(resp.addr)

    def getpeername(self) -> tuple[str, int]:
        resp = self._call(self._host.stub.GetPeerName, _pb.GetPeerNameRequest(pid=self._pid(), fd=self._fd))
        if resp.errno:
            _raise(resp.errno)
        return _address(resp.addr)

    def shutdown(self, how: int) -> None:
        """shutdown(2): on an unconnected datagram socket the direction is shut down
        all the same and ENOTCONN raised, as inet_shutdown() does."""
        how = _c_int(how)
        resp = self._call(
            self._host.stub.Shutdown, _pb.ShutdownRequest(pid=self._pid(), fd=self._fd, how=how)
        )
        if resp.errno:
            _raise(resp.errno)

    def _sendmsg(self, data: bytes, flags: int, name: bytes, control: bytes = b"") -> int:
        req = _pb.SendMsgRequest(
            pid=self._pid(),
            fd=self._fd,
            data=data,
            addr=name,
            flags=flags,
            trace=self.emu_trace,
            control=control,
        )
        ns = self._timeout_ns()
        if ns is not None:
            req.timeout_ns = ns
        self._check_open()
        resp = _blocking(self._host.stub.SendMsg, req)
        if resp.errno:
            self._check(resp.errno)
        return int(resp.sent)

    def send(self, data: Any, flags: int = 0) -> int:
        return self._sendmsg(bytes(memoryview(data)), flags, b"")

    def sendall(self, data: Any, flags: int = 0) -> None:
        """A datagram goes whole or not at all: one send."""
        self._sendmsg(bytes(memoryview(data)), flags, b"")

    def sendto(self, data: Any, flags_or_addr: Any, address: Any = None) -> int:
        if address is None:
            flags, address = 0, flags_or_addr
        else:
            flags = flags_or_addr
        return self._sendmsg(bytes(memoryview(data)), flags, _sockaddr(address, "sendto"))

    def sendmsg(self, buffers: Any, ancdata: Any = (), flags: int = 0, address: Any = None) -> int:
        """sendmsg(): the buffers gathered, the ancillary data laid out as msg_control."""
        data = _gather(buffers, "sendmsg")
        control = _encode_ancdata(ancdata)
        name = b"" if address is None else _sockaddr(address, "sendmsg")
        return self._sendmsg(data, flags, name, control)

    def sendmmsg(self, msgs: Iterable[Any], flags: int = 0) -> list[int]:
        """sendmmsg(2), which the standard module lacks. Each message is a bytes-like
        object (a connected socket's datagram) or a tuple in sendmsg()'s order,
        (buffers[, ancdata[, address]]), where buffers may also be one bytes-like
        object. Returns each sent message's msg_len: as many
        as were sent (the syscall's return value is the list's length); raises the
        first message's error when none was."""
        vec = []
        for msg in msgs:
            try:
                data = bytes(memoryview(msg))
                vec.append(_pb.Mmsghdr(data=data))
                continue
            except TypeError:
                pass
            if not isinstance(msg, tuple) or not 1 <= len(msg) <= 3:
                raise TypeError(
                    "sendmmsg() messages must be bytes-like objects or (buffers[, ancdata[, address]]) tuples"
                )
            buffers, ancdata, address = (*msg, (), None)[:3]
            try:
                data = bytes(memoryview(buffers))
            except TypeError:
                data = _gather(buffers, "sendmmsg")
            vec.append(
                _pb.Mmsghdr(
                    data=data,
                    control=_encode_ancdata(ancdata),
                    addr=b"" if address is None else _sockaddr(address, "sendmmsg"),
                )
            )
        req = _pb.SendMmsgRequest(pid=self._pid(), fd=self._fd, msgs=vec, flags=flags)
        ns = self._timeout_ns()
        if ns is not None:
            req.timeout_ns = ns
        self._check_open()
        resp = _blocking(self._host.stub.SendMmsg, req)
        if resp.errno:
            self._check(resp.errno)
        return [int(n) for n in resp.sent]

    def _recvmsg(self, bufsize: int, flags: int, ancbufsize: int = 0) -> _pb.RecvMsgResponse:
        req = _pb.RecvMsgRequest(
            pid=self._pid(), fd=self._fd, bufsize=bufsize, flags=flags, controllen=ancbufsize
        )
        ns = self._timeout_ns()
        if ns is not None:
            req.timeout_ns = ns
        self._check_open()
        resp: _pb.RecvMsgResponse = _blocking(self._host.stub.RecvMsg, req)
        if resp.errno:
            self._check(resp.errno)
        self.emu_last_trace = trace_from_proto(resp.trace)
        return resp

    def recv(self, bufsize: int, flags: int = 0) -> bytes:
        if bufsize < 0:
            raise ValueError("negative buffersize in recv")
        return bytes(self._recvmsg(bufsize, flags).data)

    def recvfrom(self, bufsize: int, flags: int = 0) -> tuple[bytes, tuple[str, int] | None]:
        if bufsize < 0:
            raise ValueError("negative buffersize in recvfrom")
        resp = self._recvmsg(bufsize, flags)
        return bytes(resp.data), _name(resp.addr)

    def recv_into(self, buffer: Any, nbytes: int = 0, flags: int = 0) -> int:
        view = _writable(buffer, "recv_into")
        if nbytes < 0:
            raise ValueError("negative buffersize in recv_into")
        if nbytes == 0:
            nbytes = len(view)
        if len(view) < nbytes:
            raise ValueError("buffer too small for requested bytes")
        resp = self._recvmsg(nbytes, flags)
        view[: len(resp.data)] = resp.data
        return int(resp.length)

    def recvfrom_into(
        self, buffer: Any, nbytes: int = 0, flags: int = 0
    ) -> tuple[int, tuple[str, int] | None]:
        view = _writable(buffer, "recvfrom_into")
        if nbytes < 0:
            raise ValueError("negative buffersize in recvfrom_into")
        if nbytes == 0:
            nbytes = len(view)
        elif nbytes > len(view):
            raise ValueError("nbytes is greater than the length of the buffer")
        resp = self._recvmsg(nbytes, flags)
        view[: len(resp.data)] = resp.data
        return int(resp.length), _name(resp.addr)

    def recvmsg(self, bufsize: int, ancbufsize: int = 0, flags: int = 0) -> _Message:
        """recvmsg(): (data, ancdata, msg_flags, address), the ancillary data parsed from
        the msg_control bytes as CPython parses them (msg_controllen = ancbufsize)."""
        if bufsize < 0:
            raise ValueError("negative buffer size in recvmsg()")
        resp = self._recvmsg(bufsize, flags, _ancbufsize(ancbufsize))
        return bytes(resp.data), _decode_ancdata(resp.control), int(resp.msg_flags), _name(resp.addr)

    def recvmsg_into(
        self, buffers: Any, ancbufsize: int = 0, flags: int = 0
    ) -> tuple[int, _AncData, int, tuple[str, int] | None]:
        """recvmsg_into(): the data scattered into the buffers, in order."""
        try:
            items = list(buffers)
        except TypeError:
            raise TypeError("recvmsg_into() argument 1 must be an iterable") from None
        views = [_writable(b, "recvmsg_into") for b in items]
        resp = self._recvmsg(sum(len(v) for v in views), flags, _ancbufsize(ancbufsize))
        data, pos = bytes(resp.data), 0
        for v in views:
            chunk = data[pos : pos + len(v)]
            v[: len(chunk)] = chunk
            pos += len(chunk)
        return int(resp.length), _decode_ancdata(resp.control), int(resp.msg_flags), _name(resp.addr)

    def recvmmsg(
        self, vlen: int, bufsize: int, ancbufsize: int = 0, flags: int = 0, timeout: float | None = None
    ) -> list[_Message]:
        """recvmmsg(2), which the standard module lacks: up to vlen datagrams, each as
        recvmsg() returns it, (data, ancdata, msg_flags, address), with bufsize and
        ancbufsize for each. `timeout` is the syscall's timeout argument in seconds
        (checked after each datagram, as do_recvmmsg() does); a timeout-mode socket
        first waits for a datagram as long as its own timeout, as CPython's calls do."""
        if vlen < 0:
            raise ValueError("negative vlen in recvmmsg()")
        if bufsize < 0:
            raise ValueError("negative buffer size in recvmmsg()")
        req = _pb.RecvMmsgRequest(
            pid=self._pid(),
            fd=self._fd,
            vlen=vlen,
            bufsize=bufsize,
            controllen=_ancbufsize(ancbufsize),
            flags=flags,
        )
        if timeout is not None:
            if timeout < 0:
                # poll_select_set_timeout(): an invalid timespec.
                _raise(_errno.EINVAL)
            req.timeout_ns = math.ceil(timeout * 1e9)
        self._check_open()
        deadline = None if not self._timeout else time.monotonic() + self._timeout
        while True:
            if deadline is not None:
                # sock_call_ex(): wait for POLLIN, then call on the O_NONBLOCK file.
                left = max(deadline - time.monotonic(), 0.0)
                if not any(_poll([(self._fd, _POLLIN)], left, any)):
                    raise TimeoutError("timed out")
            resp = _blocking(self._host.stub.RecvMmsg, req)
            if resp.errno == _errno.EAGAIN and deadline is not None and time.monotonic() < deadline:
                continue
            break
        if resp.errno:
            self._check(resp.errno)
        return [
            (bytes(m.data), _decode_ancdata(m.control), int(m.msg_flags), _name(m.addr)) for m in resp.msgs
        ]

    # Modes and options.

    def _setblocking(self, block: bool) -> None:
        """internal_setblocking(): O_NONBLOCK on the descriptor whenever the socket is
        not in blocking mode (timeout 0 or a timeout), through F_GETFL/F_SETFL."""
        flags = self._fcntl(F_GETFL, 0)
        new = flags & ~O_NONBLOCK if block else flags | O_NONBLOCK
        if new != flags:
            self._fcntl(F_SETFL, new)

    def _fcntl(self, cmd: int, arg: int) -> int:
        resp = self._call(
            self._host.stub.Fcntl, _pb.FcntlRequest(pid=self._pid(), fd=self._fd, cmd=cmd, arg=arg)
        )
        if resp.errno:
            _raise(resp.errno)
        return int(resp.value)

    def settimeout(self, value: float | None) -> None:
        timeout = _parse_timeout(value)
        self._timeout = timeout
        self._setblocking(timeout is None)

    def gettimeout(self) -> float | None:
        return self._timeout

    def setblocking(self, flag: bool) -> None:
        self._timeout = None if flag else 0.0
        self._setblocking(bool(flag))

    def getblocking(self) -> bool:
        return self._timeout != 0.0

    def get_inheritable(self) -> bool:
        return not self._fcntl(F_GETFD, 0) & FD_CLOEXEC

    def set_inheritable(self, inheritable: bool) -> None:
        flags = self._fcntl(F_GETFD, 0)
        self._fcntl(F_SETFD, flags & ~FD_CLOEXEC if inheritable else flags | FD_CLOEXEC)

    def setsockopt(self, level: int, optname: int, value: Any, optlen: int | None = None) -> None:
        """setsockopt(level, optname, int | buffer) or (level, optname, None, optlen),
        parsed in CPython's order: an int that does not fit a C int falls through to the
        buffer form and is a TypeError. A None optval cannot be a NULL pointer across
        the RPC: it is sent as optlen zero bytes (the kernel would answer EFAULT for an
        option that reads it)."""
        if optlen is None and isinstance(value, int):
            try:
                optval = value.to_bytes(4, sys.byteorder, signed=True)
            except OverflowError:
                raise TypeError("a bytes-like object is required, not 'int'") from None
        elif optlen is not None:
            if value is not None:
                raise TypeError("setsockopt() takes exactly 3 arguments (4 given)")
            optval = bytes(operator.index(optlen))
        else:
            try:
                optval = bytes(memoryview(value))
            except TypeError:
                raise TypeError(f"a bytes-like object is required, not '{type(value).__name__}'") from None
        if level == _std.SOL_SOCKET and optname == SO_ATTACH_FILTER:
            optval = _fprog_instructions(optval)
        resp = self._call(
            self._host.stub.SetSockOpt,
            _pb.SetSockOptRequest(pid=self._pid(), fd=self._fd, level=level, optname=optname, optval=optval),
        )
        if resp.errno:
            _raise(resp.errno)

    def getsockopt(self, level: int, optname: int, buflen: int = 0) -> Any:
        if buflen and not 0 < buflen <= 1024:
            raise OSError("getsockopt buflen out of range")
        resp = self._call(
            self._host.stub.GetSockOpt,
            _pb.GetSockOptRequest(
                pid=self._pid(), fd=self._fd, level=level, optname=optname, optlen=buflen or 4
            ),
        )
        if resp.errno:
            _raise(resp.errno)
        if buflen:
            # Python returns the buffer cut to the optlen the kernel returned.
            return bytes(resp.optval)[: resp.optlen]
        # An int that starts as 0: what the kernel copied out lands on its first bytes.
        return int.from_bytes(bytes(resp.optval).ljust(4, b"\0"), sys.byteorder, signed=True)

    # The descriptor.

    def detach(self) -> int:
        """The socket object is closed, the descriptor left open and returned:
        socket(fileno=fd) takes it up again."""
        if self._closed:
            return -1
        self._closed = True
        return self._fd

    def dup(self) -> socket:
        raise OSError(
            _errno.EOPNOTSUPP, "emulated sockets cannot be duplicated: the socket service has no dup()"
        )

    def close(self) -> None:
        """close(2); EBADF when the descriptor was already closed by other means."""
        if self._closed:
            return
        self._closed = True
        self._host.drop_file(self._fd)
        if self._host.lost:
            # Nothing left to close: the descriptor went with the service.
            return
        try:
            resp = self._host.stub.Close(_pb.CloseRequest(pid=self._pid(), fd=self._fd), timeout=5)
        except (grpc.RpcError, ValueError):
            # The service went away, or the channel closed as the interpreter exits.
            return
        if resp.errno and resp.errno != _errno.ECONNRESET:
            _raise(resp.errno)

    def makefile(self, *args: Any, **kwargs: Any) -> Any:
        raise OSError(_errno.EOPNOTSUPP, "emulated sockets have no file object: use recv/send")

    def sendfile(self, file: Any, offset: int = 0, count: int | None = None) -> int:
        raise ValueError("only SOCK_STREAM type sockets are supported")


SocketType = socket  # type: ignore[misc,assignment]

_POLLIN = 0x1


def _c_int(value: Any) -> int:
    """PyArg "i": an int that fits a C int."""
    value = operator.index(value)
    if value > 0x7FFFFFFF:
        raise OverflowError("signed integer is greater than maximum")
    if value < -0x80000000:
        raise OverflowError("signed integer is less than minimum")
    return int(value)


def _ancbufsize(ancbufsize: int) -> int:
    if ancbufsize < 0 or ancbufsize > _SOCKLEN_T_LIMIT:
        raise ValueError("invalid ancillary data buffer length")
    return ancbufsize


def close(fd: int) -> None:  # type: ignore[no-redef]
    """close(fd) on an emulated descriptor (one that detach() gave back)."""
    fd = operator.index(fd)
    host = _get_host()
    host.drop_file(fd)
    try:
        resp = host.stub.Close(_pb.CloseRequest(pid=host.pid, fd=fd), timeout=5)
    except grpc.RpcError as err:
        raise _rpc_error(err) from None
    if resp.errno and resp.errno != _errno.ECONNRESET:
        _raise(resp.errno)


def dup(fd: int) -> int:  # type: ignore[no-redef]
    raise OSError(_errno.EOPNOTSUPP, "emulated sockets cannot be duplicated: the socket service has no dup()")


def fromfd(fd: int, family: int, type: int, proto: int = 0) -> socket:  # type: ignore[no-redef]
    """fromfd() dups the descriptor, which emulated ones cannot be."""
    raise OSError(_errno.EOPNOTSUPP, "emulated sockets cannot be duplicated: use socket(fileno=fd)")


def fcntl(fd: Any, cmd: int, arg: int = 0) -> int:
    """fcntl(2) on an emulated descriptor (an int, or an object with fileno()) for
    F_GETFD, F_SETFD (FD_CLOEXEC), F_GETFL and F_SETFL (O_NONBLOCK): the call's value.
    An extra: fcntl.fcntl() would reach a descriptor of this process of the same number.
    Setting O_NONBLOCK here does not change a socket object's timeout, as with the
    standard module."""
    num = fd if isinstance(fd, int) else fd.fileno()
    host = _get_host()
    try:
        resp = host.stub.Fcntl(_pb.FcntlRequest(pid=host.pid, fd=num, cmd=cmd, arg=arg))
    except grpc.RpcError as err:
        raise _rpc_error(err) from None
    if resp.errno:
        _raise(resp.errno)
    return int(resp.value)


_SOCK_FPROG = struct.Struct("=HxxxxxxQ")


def _fprog_instructions(optval: bytes) -> bytes:
    """SO_ATTACH_FILTER's struct sock_fprog {unsigned short len; struct sock_filter
    *filter} points into this process, which the stack cannot read: the instructions it
    points to are sent instead (the socket service's SetSockOpt takes the array). A
    length other than sizeof(struct sock_fprog) is EINVAL (copy_bpf_fprog_from_user),
    and a NULL pointer sends nothing, which the stack refuses with EINVAL as
    __get_filter() does."""
    if len(optval) != _SOCK_FPROG.size:
        _raise(_errno.EINVAL)
    count, ptr = _SOCK_FPROG.unpack(optval)
    if not ptr or not count:
        return b""
    return ctypes.string_at(ptr, count * 8)
