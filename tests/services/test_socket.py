"""The socket service for real (SocketServicer over SocketLayer on a grpc.aio server),
its UDP layer an in-process UdpLayer looped back through a fake IP layer (LoopbackUdp).

The errno cases are asked of the machine's kernel too (stdlib sockets and libc calls
on 127.0.0.1) and must come out the same, except where the emulator says in advance it
differs (it has AF_INET/SOCK_DGRAM/UDP only, and no socket options yet).
"""

from __future__ import annotations

import os
import socket
import struct

import grpc
import pytest

from services.core import errno
from services.core.sockaddr import AF_INET, AF_INET6, AF_UNSPEC
from stackemu.socket.v1 import socket_pb2
from tests.services.fakes_udp import (
    MSG_DONTWAIT,
    MSG_TRUNC,
    SocketHarness,
    async_test,
    real_bind,
    real_connect,
    real_errno,
    real_sendto,
    real_socket,
    real_udp,
    sockaddr,
)

SOCK_STREAM = 1
SOCK_DGRAM = 2
SOCK_RDM = 4
SOCK_NONBLOCK = 0o4000
SOCK_CLOEXEC = 0o2000000
IPPROTO_TCP = 6
IPPROTO_UDP = 17
IPPROTO_UDPLITE = 136
SOL_IP = 0
SOL_SOCKET = 1
SOL_UDP = 17
SO_TYPE = 3
SO_PROTOCOL = 38
SO_DOMAIN = 39
NO_SUCH_OPTION = 9999
NO_SUCH_FD = 9999


@async_test
async def test_socket_creation_errors() -> None:
    async with SocketHarness() as h:
        pid = await h.process("app")
        assert pid >= 1
        # (domain, type, protocol): the same errno from this machine's kernel.
        for args, want in [
            ((AF_INET, SOCK_DGRAM | 0x100, 0), errno.EINVAL),  # a flag bit that is no flag
            ((AF_INET, 15, 0), errno.EINVAL),  # type >= SOCK_MAX
            ((99, 15, 0), errno.EAFNOSUPPORT),  # __sock_create: family before type
            ((46, SOCK_DGRAM, 0), errno.EAFNOSUPPORT),  # NPROTO
            ((AF_INET, SOCK_DGRAM, IPPROTO_TCP), errno.EPROTONOSUPPORT),
            ((AF_INET, SOCK_DGRAM, 300), errno.EINVAL),  # inet_create: >= IPPROTO_MAX
            ((AF_INET, SOCK_DGRAM, -1), errno.EINVAL),
            ((AF_INET, SOCK_RDM, 0), errno.ESOCKTNOSUPPORT),  # no inetsw entry
            ((AF_INET, SOCK_DGRAM, 0), 0),
            ((AF_INET, SOCK_DGRAM, IPPROTO_UDP), 0),
            ((AF_INET, SOCK_DGRAM, IPPROTO_UDPLITE), 0),
            ((AF_INET, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0), 0),
        ]:
            domain, type_, protocol = args
            assert real_socket(*args) == want, args
            assert (await h.socket(pid, type_, domain, protocol))[0] == want, args
        # What the emulator does not have (the kernel would create these).
        for args, want in [
            ((AF_INET6, SOCK_DGRAM, 0), errno.EAFNOSUPPORT),
            ((AF_INET, SOCK_STREAM, 0), errno.ESOCKTNOSUPPORT),
        ]:
            domain, type_, protocol = args
            assert await h.socket(pid, type_, domain, protocol) == (want, -1), args
        assert len(h.udp.layer.socks) == 4


@async_test
async def test_descriptors_start_at_3_and_reuse_the_lowest() -> None:
    async with SocketHarness() as h:
        pid = await h.process()
        assert [await h.udp_fd(pid) for _ in range(3)] == [3, 4, 5]
        assert await h.close(pid, 4) == 0
        assert await h.udp_fd(pid) == 4
        assert await h.udp_fd(pid) == 6
        # Another process has its own table.
        assert await h.udp_fd(await h.process()) == 3
        # close twice: EBADF, as the kernel says.
        fd = os.dup(0)
        os.close(fd)
        real = real_errno(lambda: os.close(fd))
        assert real == errno.EBADF
        assert await h.close(pid, 5) == 0
        assert await h.close(pid, 5) == real
        assert len(h.udp.layer.socks) == 4


@async_test
async def test_unknown_pid_is_invalid_argument() -> None:
    async with SocketHarness() as h:
        with pytest.raises(grpc.aio.AioRpcError) as exc:
            await h.socket(4242)
        assert exc.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert exc.value.details() == "no process 4242: call OpenProcess first"
        with pytest.raises(grpc.aio.AioRpcError) as exc:
            await h.bind(4242, 3, sockaddr("127.0.0.1", 0))
        assert exc.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        with pytest.raises(grpc.aio.AioRpcError) as exc:
            await h.stub.ExitProcess(socket_pb2.ExitProcessRequest(pid=4242))
        assert exc.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "4242" in (exc.value.details() or "")


@async_test
async def test_a_descriptor_that_is_not_open_is_ebadf() -> None:
    name = sockaddr("127.0.0.1", 9)
    real = [
        real_bind(NO_SUCH_FD, name),
        real_connect(NO_SUCH_FD, name),
        real_bind(NO_SUCH_FD, name + bytes(200)),  # the descriptor is looked at first
    ]
    assert real == [errno.EBADF] * 3
    async with SocketHarness() as h:
        pid = await h.process()
        fd = NO_SUCH_FD
        assert await h.bind(pid, fd, name) == errno.EBADF
        assert await h.connect(pid, fd, name) == errno.EBADF
        assert await h.bind(pid, fd, name + bytes(200)) == errno.EBADF
        assert (await h.sendmsg(pid, fd, b"x", name))[0] == errno.EBADF
        assert (await h.recvmsg(pid, fd, flags=MSG_DONTWAIT)).errno == errno.EBADF
        assert (await h.getsockname(pid, fd))[0] == errno.EBADF
        assert (await h.getpeername(pid, fd))[0] == errno.EBADF
        assert (await h.getsockopt(pid, fd, SOL_SOCKET, SO_TYPE))[0] == errno.EBADF
        assert await h.setsockopt(pid, fd, SOL_SOCKET, SO_TYPE, bytes(4)) == errno.EBADF
        assert await h.close(pid, fd) == errno.EBADF


@async_test
async def test_bind_sockaddr_checks_match_the_kernel() -> None:
    cases = [
        ("15 bytes", sockaddr("127.0.0.1", 0)[:15], errno.EINVAL),
        ("more than a sockaddr_storage", sockaddr("127.0.0.1", 0) + bytes(113), errno.EINVAL),
        ("AF_INET6", sockaddr("127.0.0.1", 0, AF_INET6), errno.EAFNOSUPPORT),
        ("AF_UNSPEC with an address", sockaddr("127.0.0.1", 0, AF_UNSPEC), errno.EAFNOSUPPORT),
        ("AF_UNSPEC with INADDR_ANY is AF_INET", sockaddr("0.0.0.0", 0, AF_UNSPEC), 0),
        ("a whole sockaddr_storage", sockaddr("127.0.0.1", 0) + bytes(112), 0),
        ("not a local address", sockaddr("10.255.255.254", 0), errno.EADDRNOTAVAIL),
    ]
    async with SocketHarness() as h:
        pid = await h.process()
        for what, name, want in cases:
            real = real_udp()
            fd = await h.udp_fd(pid)
            assert (real_bind(real, name), await h.bind(pid, fd, name)) == (want, want), what
            if not want:
                # getsockname says AF_INET whatever family bind was given.
                err, addr = await h.getsockname(pid, fd)
                assert err == 0 and addr[:2] == struct.pack("<H", AF_INET)
            real.close()
        fd = await h.udp_fd(pid)
        assert await h.bind(pid, fd, sockaddr("127.0.0.1", 7000)) == 0
        assert await h.getsockname(pid, fd) == (0, sockaddr("127.0.0.1", 7000))
        assert await h.bind(pid, fd, sockaddr("127.0.0.1", 7001)) == errno.EINVAL
        assert await h.bind(pid, await h.udp_fd(pid), sockaddr("127.0.0.1", 7000)) == errno.EADDRINUSE


@async_test
async def test_connect_sockaddr_checks_and_peer_name() -> None:
    real = real_udp()
    real_results = [
        real_connect(real, b"\x02"),  # shorter than sa_family
        real_connect(real, sockaddr("127.0.0.1", 9) + bytes(200)),
        real_errno(real.getpeername),
        real_connect(real, sockaddr("127.0.0.1", 9)),
        real_connect(real, sockaddr("0.0.0.0", 0, AF_UNSPEC)),
        real_errno(real.getpeername),
    ]
    real.close()
    assert real_results == [errno.EINVAL, errno.EINVAL, errno.ENOTCONN, 0, 0, errno.ENOTCONN]
    async with SocketHarness() as h:
        pid = await h.process()
        fd = await h.udp_fd(pid)
        results = [
            await h.connect(pid, fd, b"\x02"),
            await h.connect(pid, fd, sockaddr("127.0.0.1", 9) + bytes(200)),
            (await h.getpeername(pid, fd))[0],
        ]
        results.append(await h.connect(pid, fd, sockaddr("127.0.0.1", 9)))
        assert await h.getpeername(pid, fd) == (0, sockaddr("127.0.0.1", 9))
        results.append(await h.connect(pid, fd, sockaddr("0.0.0.0", 0, AF_UNSPEC)))
        results.append((await h.getpeername(pid, fd))[0])
        assert results == real_results


@async_test
async def test_getsockopt_and_setsockopt_match_the_kernel() -> None:
    real = real_udp()

    def real_get(level: int, optname: int, optlen: int = 4) -> tuple[int, bytes]:
        try:
            return 0, real.getsockopt(level, optname, optlen)
        except OSError as err:
            return err.errno or 0, b""

    def real_set(level: int, optname: int, optval: bytes) -> int:
        return real_errno(lambda: real.setsockopt(level, optname, optval))

    gets = [
        (SOL_SOCKET, SO_TYPE, 4),
        (SOL_SOCKET, SO_PROTOCOL, 4),
        (SOL_SOCKET, SO_DOMAIN, 4),
        (SOL_SOCKET, SO_TYPE, 2),  # min(optlen, sizeof(int)) bytes
        (SOL_SOCKET, SO_TYPE, 8),
        (SOL_SOCKET, NO_SUCH_OPTION, 4),
        (SOL_IP, NO_SUCH_OPTION, 4),
        (SOL_UDP, NO_SUCH_OPTION, 4),
        (IPPROTO_UDPLITE, NO_SUCH_OPTION, 4),
        (IPPROTO_TCP, 1, 4),  # a level UDP does not have: do_ip_getsockopt's EOPNOTSUPP
        (999, 1, 4),
    ]
    sets = [
        (SOL_SOCKET, NO_SUCH_OPTION, bytes(4)),
        (SOL_SOCKET, NO_SUCH_OPTION, b""),  # sk_setsockopt wants an int first
        (SOL_UDP, NO_SUCH_OPTION, bytes(4)),
        (SOL_UDP, NO_SUCH_OPTION, b"\0"),
        (SOL_IP, NO_SUCH_OPTION, b""),  # ip_setsockopt does not
        (IPPROTO_TCP, 1, bytes(4)),
        (999, 1, bytes(4)),
    ]
    real_gets = [real_get(*g) for g in gets]
    real_sets = [real_set(*s) for s in sets]
    real.close()
    assert real_gets[:5] == [
        (0, struct.pack("=i", SOCK_DGRAM)),
        (0, struct.pack("=i", IPPROTO_UDP)),
        (0, struct.pack("=i", AF_INET)),
        (0, struct.pack("=i", SOCK_DGRAM)[:2]),
        (0, struct.pack("=i", SOCK_DGRAM)),
    ]
    assert [e for e, _ in real_gets[5:]] == [errno.ENOPROTOOPT] * 4 + [errno.EOPNOTSUPP] * 2
    assert (
        real_sets
        == [errno.ENOPROTOOPT, errno.EINVAL, errno.ENOPROTOOPT, errno.EINVAL] + [errno.ENOPROTOOPT] * 3
    )
    async with SocketHarness() as h:
        pid = await h.process()
        fd = await h.udp_fd(pid)
        assert [await h.getsockopt(pid, fd, *g) for g in gets] == real_gets
        assert [await h.setsockopt(pid, fd, *s) for s in sets] == real_sets
        # SO_RCVBUF 65536 reads back doubled, as sock.c's __sock_set_rcvbuf() leaves it.
        assert await h.setsockopt(pid, fd, SOL_SOCKET, 8, struct.pack("=i", 65536)) == 0
        assert await h.getsockopt(pid, fd, SOL_SOCKET, 8) == (0, struct.pack("=i", 131072))


@async_test
async def test_sendmsg_and_recvmsg_round_trip() -> None:
    real_rx, real_tx = real_udp(), real_udp()
    real_rx.bind(("127.0.0.1", 0))
    real_tx.sendto(b"hello world", real_rx.getsockname())
    buf = bytearray(5)
    real_trunc = real_rx.recvmsg_into([buf], 0, MSG_TRUNC)
    real_rx.close()
    real_tx.close()
    assert (bytes(buf), real_trunc[0], real_trunc[2]) == (b"hello", 11, MSG_TRUNC)
    async with SocketHarness() as h:
        pid = await h.process()
        rx, tx = await h.udp_fd(pid), await h.udp_fd(pid)
        assert await h.bind(pid, rx, sockaddr("127.0.0.1", 7000)) == 0
        assert await h.sendmsg(pid, tx, b"hello", sockaddr("127.0.0.1", 7000)) == (0, 5)
        err, tx_name = await h.getsockname(pid, tx)
        assert err == 0 and tx_name[4:8] == bytes(4)  # autobound on the wildcard
        r = await h.recvmsg(pid, rx, 100)
        assert (r.errno, r.data, r.length, r.msg_flags) == (0, b"hello", 5, 0)
        assert r.addr == sockaddr("127.0.0.1", struct.unpack_from("!H", tx_name, 2)[0])
        # MSG_TRUNC: the copy is cut to the buffer, the length is the datagram's.
        assert await h.sendmsg(pid, tx, b"hello world", sockaddr("127.0.0.1", 7000)) == (0, 11)
        r = await h.recvmsg(pid, rx, 5, MSG_TRUNC)
        assert (r.errno, r.data, r.length, r.msg_flags) == (0, bytes(buf), real_trunc[0], real_trunc[2])
        # Connected: send without a name, the reply comes back.
        assert await h.connect(pid, tx, sockaddr("127.0.0.1", 7000)) == 0
        assert await h.sendmsg(pid, tx, b"again") == (0, 5)
        r = await h.recvmsg(pid, rx, 100, timeout_ns=-1)
        assert (r.errno, r.data) == (0, b"again")
        assert h.udp.layer.mib.udp.as_dict()["InDatagrams"] == 3
        assert h.udp.layer.mib.udp.as_dict()["OutDatagrams"] == 3
        # A send that udp_sendmsg refuses, with the kernel's errno.
        real = real_udp()
        want = real_sendto(real, b"x", None)
        real.close()
        fd = await h.udp_fd(pid)
        assert (await h.sendmsg(pid, fd, b"x"))[0] == want == errno.EDESTADDRREQ


@async_test
async def test_receive_on_an_empty_queue() -> None:
    real = socket.socket(socket.AF_INET, socket.SOCK_DGRAM | SOCK_NONBLOCK)
    real.bind(("127.0.0.1", 0))
    real_nonblock = real_errno(lambda: real.recv(10))
    real.close()
    real = real_udp()
    real.bind(("127.0.0.1", 0))
    real_dontwait = real_errno(lambda: real.recv(10, MSG_DONTWAIT))
    real.close()
    assert real_nonblock == real_dontwait == errno.EAGAIN
    async with SocketHarness() as h:
        pid = await h.process()
        nb = await h.udp_fd(pid, SOCK_DGRAM | SOCK_NONBLOCK)
        await h.bind(pid, nb, sockaddr("127.0.0.1", 7000))
        # A non-blocking socket does not wait, whatever timeout the caller allows.
        assert (await h.recvmsg(pid, nb, timeout_ns=-1)).errno == real_nonblock
        fd = await h.udp_fd(pid)
        await h.bind(pid, fd, sockaddr("127.0.0.1", 7001))
        assert (await h.recvmsg(pid, fd, flags=MSG_DONTWAIT)).errno == real_dontwait
        # A blocking socket waits as long as the caller's timeout (a Python timeout-mode
        # socket's poll), then EAGAIN.
        assert (await h.recvmsg(pid, fd, timeout_ns=1_000_000)).errno == errno.EAGAIN


@async_test
async def test_exit_process_releases_its_sockets() -> None:
    async with SocketHarness() as h:
        pid, other = await h.process(), await h.process()
        for port in (7000, 7001):
            assert await h.bind(pid, await h.udp_fd(pid), sockaddr("127.0.0.1", port)) == 0
        kept = await h.udp_fd(other)
        assert {s.owner_pid for s in h.udp.layer.socks.values()} == {pid, other}
        await h.stub.ExitProcess(socket_pb2.ExitProcessRequest(pid=pid))
        assert [s.owner_pid for s in h.udp.layer.socks.values()] == [other]
        assert len(h.udp.layer.table) == 0
        with pytest.raises(grpc.aio.AioRpcError) as exc:
            await h.socket(pid)
        assert exc.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        # The ports are free again.
        assert await h.bind(other, kept, sockaddr("127.0.0.1", 7000)) == 0
        await h.stub.ExitProcess(socket_pb2.ExitProcessRequest(pid=other))
        assert h.udp.layer.socks == {}
