"""socket(), shutdown(), non-blocking files and poll() through the drop-in module on a
running stack, compared with this machine's kernel: the harness of
test_udp_kernel_send.py (run_both), the kernel in a network namespace of its own, the
emulator on alice. Only what the stdlib's socket and select modules can call is
compared here (sendmmsg, recvmmsg and fcntl's other flags are pinned against the kernel
in tests/services/test_socket_syscalls.py).

What 6.18 answered is written next to each comparison.
"""

from __future__ import annotations

import importlib
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from services.core import errno
from tests.e2e.test_udp_kernel_send import LO, PORT, Both, Host, compare, main, run_both

SOCK_DGRAM, SOCK_RAW, SOCK_RDM, SOCK_NONBLOCK = 2, 3, 4, 0o4000
IPPROTO_ICMP, IPPROTO_UDP = 1, 17
SHUT_RD, SHUT_WR, SHUT_RDWR = 0, 1, 2
MSG_PROBE, MSG_DONTWAIT = 0x10, 0x40
ALL_EVENTS = 0x23FF


def outcome(f: Callable[[], object]) -> Any:
    """f()'s value (bytes as hex), or [exception class name, errno]."""
    try:
        v = f()
    except OSError as e:
        return [type(e).__name__, e.errno]
    if isinstance(v, tuple):
        v = list(v)
    if isinstance(v, list):
        return [x.hex() if isinstance(x, bytes) else x for x in v]
    return v.hex() if isinstance(v, bytes) else v


def creating(h: Host) -> dict[str, Any]:
    """socket()'s checks and SOCK_NONBLOCK (test_socket_creation)."""
    sk = h.sk
    out: dict[str, Any] = {}

    def make(type_: int, proto: int) -> Any:
        def f() -> Any:
            s = sk.socket(sk.AF_INET, type_, proto)
            s.close()
            return "created"

        return outcome(f)

    out["socket"] = [
        make(SOCK_RAW, 0),
        make(SOCK_DGRAM, IPPROTO_ICMP),
        make(SOCK_RDM, 0),
        make(SOCK_DGRAM, 300),
        make(SOCK_DGRAM | 0x100, 0),
    ]
    nb = sk.socket(sk.AF_INET, SOCK_DGRAM | SOCK_NONBLOCK)
    nb.bind((LO, PORT))
    out["SOCK_NONBLOCK"] = [nb.getblocking(), nb.gettimeout(), outcome(lambda: nb.recv(10))]
    nb.setblocking(True)
    out["setblocking"] = [nb.getblocking(), nb.gettimeout()]
    nb.close()
    return out


def shutting(h: Host) -> dict[str, Any]:
    """shutdown() on unconnected and connected sockets (test_shutdown_*)."""
    out: dict[str, Any] = {}
    u = h.sock(10)
    s = h.sock(11)
    out["bad how"] = [outcome(lambda: u.shutdown(3)), outcome(lambda: u.shutdown(-1))]
    out["SHUT_RD unconnected"] = outcome(lambda: u.shutdown(SHUT_RD))
    out["read after SHUT_RD"] = [
        outcome(lambda: u.recvfrom(10)),
        outcome(lambda: u.recv(10, MSG_DONTWAIT)),
        outcome(lambda: u.recvmsg(10, 64)),
    ]
    s.sendto(b"hi", (LO, PORT + 10))
    h.settle()
    got = outcome(lambda: u.recvfrom(10))
    out["a datagram after SHUT_RD"] = [got[0], h.port(tuple(got[1]))]
    out["SHUT_WR unconnected"] = outcome(lambda: u.shutdown(SHUT_WR))
    out["send after SHUT_WR"] = [
        outcome(lambda: u.sendto(b"x", (LO, PORT + 11))),
        outcome(lambda: u.sendto(b"x", MSG_PROBE, (LO, PORT + 11))),
    ]
    fresh = h.sock()
    out["fresh SHUT_RDWR"] = [
        outcome(lambda: fresh.shutdown(SHUT_RDWR)),
        outcome(lambda: fresh.sendto(b"x", (LO, PORT + 11))),
        fresh.getsockname()[1] != 0,
    ]
    c = h.sock(12)
    c.connect((LO, PORT + 11))
    out["connected"] = [
        outcome(lambda: c.shutdown(SHUT_WR)),
        outcome(lambda: c.send(b"x")),
        outcome(lambda: c.shutdown(SHUT_RD)),
        outcome(lambda: c.recv(10)),
    ]
    # A read blocked in another thread is woken by SHUT_RD: 0 bytes, no sender.
    d = h.sock(13)
    res: list[Any] = []
    t = threading.Thread(target=lambda: res.append(outcome(lambda: d.recvfrom(10))), daemon=True)
    t.start()
    time.sleep(0.3)
    out["blocked read"] = [outcome(lambda: d.shutdown(SHUT_RD))]
    t.join(5)
    out["blocked read"].append(res)
    # A timeout-mode read polls and then reads without waiting: it times out.
    e = h.sock(14)
    outcome(lambda: e.shutdown(SHUT_RD))
    e.settimeout(0.05)
    out["timeout-mode read after SHUT_RD"] = outcome(lambda: e.recv(10))
    for x in (u, s, fresh, c, d, e):
        x.close()
    return out


def polling(h: Host) -> dict[str, Any]:
    """select.poll masks (test_poll_masks): the drop-in's own select module."""
    sel = importlib.import_module("select" if h.kernel else "stackemu.select")
    out: dict[str, Any] = {}

    def mask(s: Any) -> Any:
        p = sel.poll()
        p.register(s, ALL_EVENTS)
        return [ev for _, ev in p.poll(0)]

    u = h.sock()
    steps = [mask(u)]
    u.bind((LO, PORT + 20))
    steps.append(mask(u))
    w = h.sock(21)
    w.sendto(b"x", (LO, PORT + 20))
    h.settle()
    steps.append(mask(u))
    u.recv(10)
    steps.append(mask(u))
    outcome(lambda: u.shutdown(SHUT_RD))
    steps.append(mask(u))
    outcome(lambda: u.shutdown(SHUT_WR))
    steps.append(mask(u))
    out["poll masks"] = steps
    out["select"] = [[len(x) for x in sel.select([u, w], [u, w], [u, w], 0)]]
    for x in (u, w):
        x.close()
    return out


@pytest.fixture(scope="module")
def both(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Both]:
    yield from run_both(__name__, str(tmp_path_factory.mktemp("state")))


def test_socket_creation(both: Both) -> None:
    kernel, emulated = both
    # 6.18 as root: SOCK_RAW with protocol 0 EPROTONOSUPPORT (the wildcard entry takes
    # none), a ping socket EACCES (ping_group_range "1 0"), SOCK_RDM ESOCKTNOSUPPORT,
    # protocol 300 EINVAL, a bad flag bit EINVAL. SOCK_NONBLOCK: not blocking, timeout
    # 0.0, a read BlockingIOError.
    assert kernel["socket"] == [
        ["OSError", errno.EPROTONOSUPPORT],
        ["PermissionError", errno.EACCES],
        ["OSError", errno.ESOCKTNOSUPPORT],
        ["OSError", errno.EINVAL],
        ["OSError", errno.EINVAL],
    ]
    assert kernel["SOCK_NONBLOCK"] == [False, 0.0, ["BlockingIOError", errno.EAGAIN]]
    assert kernel["setblocking"] == [True, None]
    compare(kernel, emulated, "socket", "SOCK_NONBLOCK", "setblocking")


def test_shutdown_unconnected(both: Both) -> None:
    kernel, emulated = both
    # 6.18: how 3 and -1 EINVAL; SHUT_RD of an unconnected socket ENOTCONN but done: a
    # blocking read returns (b'', None) at once, MSG_DONTWAIT EAGAIN, a datagram that
    # comes is still read; SHUT_WR: EPIPE for a send, MSG_PROBE still 1; a fresh
    # socket shut down both ways is EPIPE and autobound by the send.
    notconn = ["OSError", errno.ENOTCONN]
    assert kernel["bad how"] == [["OSError", errno.EINVAL], ["OSError", errno.EINVAL]]
    assert kernel["SHUT_RD unconnected"] == notconn
    assert kernel["read after SHUT_RD"] == [["", None], ["BlockingIOError", errno.EAGAIN], ["", [], 0, None]]
    assert kernel["a datagram after SHUT_RD"] == ["6869", [LO, 11]]
    assert kernel["SHUT_WR unconnected"] == notconn
    assert kernel["send after SHUT_WR"] == [["BrokenPipeError", errno.EPIPE], 1]
    assert kernel["fresh SHUT_RDWR"] == [notconn, ["BrokenPipeError", errno.EPIPE], True]
    compare(
        kernel,
        emulated,
        "bad how",
        "SHUT_RD unconnected",
        "read after SHUT_RD",
        "a datagram after SHUT_RD",
        "SHUT_WR unconnected",
        "send after SHUT_WR",
        "fresh SHUT_RDWR",
    )


def test_shutdown_connected_and_blocked(both: Both) -> None:
    kernel, emulated = both
    # 6.18: a connected socket's shutdown is 0; a blocked read woken by SHUT_RD returns
    # (b'', None); a timeout-mode read of a socket shut for reading times out (poll
    # says readable, the read finds nothing, until the timeout).
    assert kernel["connected"] == [None, ["BrokenPipeError", errno.EPIPE], None, ""]
    assert kernel["blocked read"] == [["OSError", errno.ENOTCONN], [["", None]]]
    assert kernel["timeout-mode read after SHUT_RD"] == ["TimeoutError", None]
    compare(kernel, emulated, "connected", "blocked read", "timeout-mode read after SHUT_RD")


def test_poll_masks(both: Both) -> None:
    kernel, emulated = both
    # 6.18 (every event asked): a fresh socket POLLOUT|POLLWRNORM|POLLWRBAND (0x304),
    # bound the same, a datagram queued adds POLLIN|POLLRDNORM (0x345), gone when read;
    # SHUT_RD POLLRDHUP|POLLIN|POLLRDNORM on top (0x2345), SHUT_RDWR POLLHUP too
    # (0x2355). select(): u readable (shut down) and both writable.
    assert kernel["poll masks"] == [[0x304], [0x304], [0x345], [0x304], [0x2345], [0x2355]]
    assert kernel["select"] == [[1, 2, 0]]
    compare(kernel, emulated, "poll masks", "select")


if __name__ == "__main__":
    main(creating, shutting, polling)
