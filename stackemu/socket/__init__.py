"""A drop-in for Python's socket module whose AF_INET/SOCK_DGRAM sockets live on an
emulated host: `import stackemu.socket as socket`.

The host is the one STACKEMU_HOST names (default alice) in the stack `stackemu up`
started, or the socket service at STACKEMU_SOCKET_ADDR=host:port. Everything that is
not a socket object (constants, inet_aton, htons, exceptions, getaddrinfo) is the
standard module's, plus the SOL_IP constants and UDP_CORK it may lack (Linux's values).
Errors are OSError subclasses with the Linux errno, as the standard module raises them;
ancillary data is msg_control byte for byte, parsed as CPython parses it.
"""

from __future__ import annotations

import atexit
import ctypes
import os
import socket as _std
import struct
import sys
import threading
from collections.abc import Callable
from socket import *  # noqa: F403  (the drop-in re-exports the standard names)
from typing import Any, Self, TypeVar

import grpc

from services.core import errno as _errno
from services.core.skbuff import TraceStep, trace_from_proto
from services.core.sockaddr import AF_INET as _AF_INET
from services.core.sockaddr import make_sockaddr_in, parse_sockaddr_in
from services.core.socket_uapi import SO_ATTACH_FILTER as _SO_ATTACH_FILTER
from stackemu import state as _state
from stackemu.socket._cmsg import SOCKLEN_T_LIMIT as _SOCKLEN_T_LIMIT
from stackemu.socket._cmsg import decode_ancdata as _decode_ancdata
from stackemu.socket._cmsg import encode_ancdata as _encode_ancdata
from stackemu.socket.v1 import socket_pb2 as _pb
from stackemu.socket.v1 import socket_pb2_grpc as _pb_grpc

error: type[OSError] = OSError  # type: ignore[no-redef]
timeout: type[TimeoutError] = TimeoutError  # type: ignore[no-redef]

# Linux's SOL_IP options and their values (include/uapi/linux/in.h, errqueue.h) that
# the standard module of this Python may not name yet; the kernel's numbers either way.
IP_PKTINFO = 8
IP_MTU_DISCOVER = 10
IP_RECVERR = 11
IP_RECVTTL = 12
IP_MTU = 14
IP_RECVORIGDSTADDR = 20
IP_ORIGDSTADDR = 20
IP_RECVFRAGSIZE = 25
IP_RECVERR_RFC4884 = 26
IP_PROTOCOL = 52
IP_PMTUDISC_DONT = 0
IP_PMTUDISC_WANT = 1
IP_PMTUDISC_DO = 2
IP_PMTUDISC_PROBE = 3
IP_PMTUDISC_INTERFACE = 4
IP_PMTUDISC_OMIT = 5
SO_EE_ORIGIN_NONE = 0
SO_EE_ORIGIN_LOCAL = 1
SO_EE_ORIGIN_ICMP = 2
# include/uapi/linux/udp.h: the SOL_UDP option CPython does not name.
UDP_CORK = 1

# Python blocks in recv with the GIL released; poll the RPC this often so that
# KeyboardInterrupt gets through, as it does for the standard module.
_POLL_INTERVAL = 0.2

_R = TypeVar("_R")


class _Host:
    """The one connection a process keeps to its socket service, and its emulated pid."""

    def __init__(self, addr: str) -> None:
        self.addr = addr
        self.channel = grpc.insecure_channel(addr)
        self.stub = _pb_grpc.SocketServiceStub(self.channel)
        comm = os.path.basename(sys.argv[0]) if sys.argv and sys.argv[0] else "python3"
        try:
            self.pid = self.stub.OpenProcess(_pb.OpenProcessRequest(comm=comm), timeout=10).pid
        except grpc.RpcError as err:
            self.channel.close()
            raise OSError(
                _errno.ECONNREFUSED, f"no emulated socket service at {addr}: {err.code().name}"
            ) from None

    def exit(self) -> None:
        try:
            self.stub.ExitProcess(_pb.ExitProcessRequest(pid=self.pid), timeout=2)
        except grpc.RpcError:
            pass
        self.channel.close()


_host: _Host | None = None
_host_lock = threading.Lock()


def _get_host() -> _Host:
    global _host
    with _host_lock:
        if _host is None or _host.pid == 0:
            try:
                addr = _state.service_addr("socket")
            except _state.NoStack as err:
                raise OSError(_errno.ENETDOWN, str(err)) from None
            _host = _Host(addr)
            atexit.register(_host.exit)
        return _host


def _raise(code: int) -> None:
    # OSError(errno, msg) picks the subclass (BlockingIOError, ConnectionRefusedError...)
    raise OSError(code, _errno.strerror(code))


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


class socket:  # type: ignore[no-redef]
    """An emulated socket with the standard socket object's methods."""

    def __init__(self, family: int = -1, type: int = -1, proto: int = -1, fileno: int | None = None) -> None:
        if fileno is not None:
            raise OSError(_errno.EOPNOTSUPP, "emulated sockets cannot wrap a file descriptor")
        family = _AF_INET if family == -1 else int(family)
        type = _std.SOCK_STREAM if type == -1 else int(type)
        proto = 0 if proto == -1 else int(proto)
        self._host = _get_host()
        resp = self._host.stub.Socket(
            _pb.SocketRequest(pid=self._host.pid, domain=family, type=type, protocol=proto)
        )
        if resp.errno:
            _raise(resp.errno)
        self._fd = resp.fd
        self._family = family
        self._type = type & 0xF
        self._proto = proto
        self._timeout: float | None = _std.getdefaulttimeout()
        if type & _std.SOCK_NONBLOCK:
            self._timeout = 0.0
        self._closed = False
        # Emulator extras: trace the datagrams this socket sends; the trace of the last
        # datagram received (when its sender traced it).
        self.emu_trace = False
        self.emu_last_trace: list[TraceStep] = []

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

    def fileno(self) -> int:
        """The emulated descriptor (not one of this process's real descriptors)."""
        return -1 if self._closed else self._fd

    def __repr__(self) -> str:
        s = (
            f"<stackemu.socket.socket fd={self.fileno()}, family={self._family}, "
            f"type={self._type}, proto={self._proto}"
        )
        if not self._closed:
            try:
                s += f", laddr={self.getsockname()}"
            except OSError:
                pass
        return s + ">"

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

    def _call(self, method: Callable[..., _R], request: Any, **kw: Any) -> _R:
        if self._closed:
            _raise(_errno.EBADF)
        try:
            return method(request, **kw)
        except grpc.RpcError as err:
            raise OSError(_errno.EIO, f"emulated stack: {err.code().name}: {err.details()}") from None

    def _pid(self) -> int:
        return int(self._host.pid)

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

    def _sendmsg(self, data: Any, flags: int, name: bytes, control: bytes = b"") -> int:
        payload = bytes(memoryview(data))
        if self._timeout == 0.0:
            flags |= _std.MSG_DONTWAIT
        resp = self._call(
            self._host.stub.SendMsg,
            _pb.SendMsgRequest(
                pid=self._pid(),
                fd=self._fd,
                data=payload,
                addr=name,
                flags=flags,
                trace=self.emu_trace,
                control=control,
            ),
        )
        if resp.errno:
            _raise(resp.errno)
        return int(resp.sent)

    def send(self, data: Any, flags: int = 0) -> int:
        return self._sendmsg(data, flags, b"")

    def sendall(self, data: Any, flags: int = 0) -> None:
        self._sendmsg(data, flags, b"")

    def sendto(self, data: Any, flags_or_addr: Any, address: Any = None) -> int:
        if address is None:
            flags, address = 0, flags_or_addr
        else:
            flags = flags_or_addr
        return self._sendmsg(data, flags, _sockaddr(address, "sendto"))

    def sendmsg(self, buffers: Any, ancdata: Any = (), flags: int = 0, address: Any = None) -> int:
        """sendmsg(): the buffers gathered, the ancillary data laid out as msg_control."""
        try:
            parts = list(buffers)
        except TypeError:
            raise TypeError("sendmsg() argument 1 must be an iterable") from None
        chunks = []
        for part in parts:
            try:
                chunks.append(bytes(memoryview(part)))
            except TypeError:
                raise TypeError(f"a bytes-like object is required, not '{type(part).__name__}'") from None
        control = _encode_ancdata(ancdata)
        name = b"" if address is None else _sockaddr(address, "sendmsg")
        return self._sendmsg(b"".join(chunks), flags, name, control)

    def _recvmsg(self, bufsize: int, flags: int, what: str, ancbufsize: int = 0) -> _pb.RecvMsgResponse:
        if bufsize < 0:
            raise ValueError(f"negative buffersize in {what}")
        req = _pb.RecvMsgRequest(
            pid=self._pid(), fd=self._fd, bufsize=bufsize, flags=flags, controllen=ancbufsize
        )
        if self._timeout == 0.0:
            req.flags |= _std.MSG_DONTWAIT
        elif self._timeout is not None:
            req.timeout_ns = int(self._timeout * 1e9)
        if self._closed:
            _raise(_errno.EBADF)
        future = self._host.stub.RecvMsg.future(req)
        try:
            while True:
                try:
                    resp: _pb.RecvMsgResponse = future.result(timeout=_POLL_INTERVAL)
                    break
                except grpc.FutureTimeoutError:
                    continue
        except grpc.RpcError as err:
            raise OSError(_errno.EIO, f"emulated stack: {err.code().name}: {err.details()}") from None
        except BaseException:
            future.cancel()
            raise
        if resp.errno:
            if resp.errno == _errno.EAGAIN and self._timeout:
                raise TimeoutError("timed out")
            _raise(resp.errno)
        self.emu_last_trace = trace_from_proto(resp.trace)
        return resp

    def recv(self, bufsize: int, flags: int = 0) -> bytes:
        return bytes(self._recvmsg(bufsize, flags, "recv").data)

    def recvfrom(self, bufsize: int, flags: int = 0) -> tuple[bytes, tuple[str, int]]:
        resp = self._recvmsg(bufsize, flags, "recvfrom")
        return bytes(resp.data), _address(resp.addr)

    def recv_into(self, buffer: Any, nbytes: int = 0, flags: int = 0) -> int:
        view = memoryview(buffer).cast("B")
        n = nbytes or len(view)
        resp = self._recvmsg(n, flags, "recv_into")
        view[: len(resp.data)] = resp.data
        return int(resp.length)

    def recvfrom_into(self, buffer: Any, nbytes: int = 0, flags: int = 0) -> tuple[int, tuple[str, int]]:
        view = memoryview(buffer).cast("B")
        n = nbytes or len(view)
        resp = self._recvmsg(n, flags, "recvfrom_into")
        view[: len(resp.data)] = resp.data
        return int(resp.length), _address(resp.addr)

    def recvmsg(
        self, bufsize: int, ancbufsize: int = 0, flags: int = 0
    ) -> tuple[bytes, list[tuple[int, int, bytes]], int, tuple[str, int] | None]:
        """recvmsg(): (data, ancdata, msg_flags, address), the ancillary data parsed from
        the msg_control bytes as CPython parses them (msg_controllen = ancbufsize)."""
        if bufsize < 0:
            raise ValueError("negative buffer size in recvmsg()")
        resp = self._recvmsg_anc(bufsize, ancbufsize, flags)
        return bytes(resp.data), _decode_ancdata(resp.control), int(resp.msg_flags), _name(resp.addr)

    def recvmsg_into(
        self, buffers: Any, ancbufsize: int = 0, flags: int = 0
    ) -> tuple[int, list[tuple[int, int, bytes]], int, tuple[str, int] | None]:
        """recvmsg_into(): the data scattered into the buffers, in order."""
        try:
            views = [memoryview(b).cast("B") for b in buffers]
        except TypeError:
            raise TypeError("recvmsg_into() argument 1 must be an iterable") from None
        resp = self._recvmsg_anc(sum(len(v) for v in views), ancbufsize, flags)
        data, pos = bytes(resp.data), 0
        for v in views:
            chunk = data[pos : pos + len(v)]
            v[: len(chunk)] = chunk
            pos += len(chunk)
        return int(resp.length), _decode_ancdata(resp.control), int(resp.msg_flags), _name(resp.addr)

    def _recvmsg_anc(self, bufsize: int, ancbufsize: int, flags: int) -> _pb.RecvMsgResponse:
        if ancbufsize < 0 or ancbufsize > _SOCKLEN_T_LIMIT:
            raise ValueError("invalid ancillary data buffer length")
        return self._recvmsg(bufsize, flags, "recvmsg", ancbufsize)

    # Modes and options.

    def settimeout(self, value: float | None) -> None:
        if value is not None:
            value = float(value)
            if value < 0:
                raise ValueError("Timeout value out of range")
        self._timeout = value

    def gettimeout(self) -> float | None:
        return self._timeout

    def setblocking(self, flag: bool) -> None:
        self._timeout = None if flag else 0.0

    def getblocking(self) -> bool:
        return self._timeout != 0.0

    def setsockopt(self, level: int, optname: int, value: Any, optlen: int | None = None) -> None:
        if isinstance(value, int):
            optval = value.to_bytes(4, sys.byteorder, signed=True)
        elif value is None:
            optval = bytes(optlen or 0)
        else:
            optval = bytes(value)
        if level == _std.SOL_SOCKET and optname == _SO_ATTACH_FILTER:
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

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            self._host.stub.Close(_pb.CloseRequest(pid=self._pid(), fd=self._fd), timeout=5)
        except grpc.RpcError:
            pass


SocketType = socket  # type: ignore[misc,assignment]

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
