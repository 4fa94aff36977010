"""The drop-in's calls beyond send and receive on a running stack (`stackemu up`):
stackemu.select's select/poll/epoll and stackemu.selectors with data arriving from
another socket, timeouts, shutdown, fcntl and the blocking modes, sendmmsg/recvmmsg,
EBADF after close, detach, the process's life (a SIGKILLed client's sockets are
closed) and its credentials from the environment.

Each scenario runs in a Python process of its own (this file is the script; a fresh
process is a fresh emulated process, whose descriptors start at 3) and prints JSON.
What 6.18 answered for the same calls with the standard socket and select modules on
127.0.0.1 is written next to each expected value.
"""

from __future__ import annotations

import importlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

HERE = Path(__file__)
O_RDWR, O_NONBLOCK = 0o2, 0o4000
POLLIN, POLLPRI, POLLOUT, POLLHUP, POLLNVAL = 0x1, 0x2, 0x4, 0x10, 0x20
MSG_TRUNC = 0x20


def _err(f: Callable[[], object]) -> Any:
    """What a call returned, or its exception as [type, errno or message]."""
    try:
        return f()
    except OSError as e:
        return [type(e).__name__, e.errno if e.errno is not None else str(e)]
    except (TypeError, ValueError, KeyError, RuntimeError) as e:
        return [type(e).__name__, str(e)]


def _sk() -> Any:
    """stackemu.socket, untyped: to mypy its socket is the standard module's class,
    which the drop-in's redefinition cannot replace under `from socket import *`."""
    return importlib.import_module("stackemu.socket")


def _later(f: Callable[[], object]) -> threading.Timer:
    """Send from another thread once the caller is waiting."""
    t = threading.Timer(0.1, f)
    t.start()
    return t


def _pair() -> tuple[Any, Any, tuple[str, int]]:
    sk = _sk()

    r = sk.socket(sk.AF_INET, sk.SOCK_DGRAM)
    r.bind(("127.0.0.1", 0))
    s = sk.socket(sk.AF_INET, sk.SOCK_DGRAM)
    return r, s, r.getsockname()


# The scenarios, each in a process of its own.


def selecting() -> dict[str, Any]:
    import socket as std

    from stackemu import select

    r, s, dst = _pair()
    out: dict[str, Any] = {"fds": [r.fileno(), s.fileno()]}

    def names(ready: tuple[list[Any], ...]) -> list[list[str]]:
        return [["r" if x in (r, r.fileno()) else "s" for x in lst] for lst in ready]

    out["fresh"] = names(select.select([r, s], [r, s], [r, s], 0))
    out["timeout"] = names(select.select([r], [], [], 0.05))
    t = _later(lambda: s.sendto(b"ab", dst))
    out["data arrives"] = names(select.select([r], [], [r], 5))
    t.join()
    out["duplicates"] = names(select.select([r, r.fileno(), r], [], [], 0))
    out["recv"] = r.recv(10).decode()
    fd = r.fileno()
    r.close()
    out["closed fd"] = _err(lambda: select.select([fd], [], [], 0))
    out["closed object"] = _err(lambda: select.select([r], [], [], 0))
    with std.socket(std.AF_INET, std.SOCK_DGRAM) as real:
        out["real socket"] = _err(lambda: select.select([real], [], [], 0))[0]
    out["negative timeout"] = _err(lambda: select.select([s], [], [], -1))
    out["not a list"] = _err(lambda: select.select(3, [], [], 0))  # type: ignore[arg-type]
    return out


def polling() -> dict[str, Any]:
    sk = _sk()
    from stackemu import select

    r, s, dst = _pair()
    rfd = r.fileno()
    out: dict[str, Any] = {}
    p = select.poll()
    p.register(r)
    p.register(s, select.POLLIN)
    out["fresh"] = p.poll(0)
    p.modify(r, select.POLLIN)
    out["timeout"] = p.poll(50)
    t = _later(lambda: s.sendto(b"xyz", dst))
    out["data arrives"] = p.poll(5000)
    t.join()
    out["drained"] = [r.recv(10).decode(), p.poll(0)]
    out["modify unregistered"] = _err(lambda: p.modify(99, select.POLLIN))
    out["unregister unregistered"] = _err(lambda: p.unregister(99))
    out["shutdown unconnected"] = _err(lambda: r.shutdown(sk.SHUT_RDWR))
    q = select.poll()
    q.register(r)
    out["shut down"] = q.poll(0)
    r.close()
    out["closed"] = q.poll(0)
    p.unregister(rfd)
    out["nothing ready"] = p.poll(0)
    return out


def epolling() -> dict[str, Any]:
    sk = _sk()
    from stackemu import select

    r, s, dst = _pair()
    a, b, c = (sk.socket(sk.AF_INET, sk.SOCK_DGRAM) for _ in range(3))
    name = {x.fileno(): n for x, n in ((r, "r"), (s, "s"), (a, "a"), (b, "b"), (c, "c"))}
    out: dict[str, Any] = {}

    def names(events: list[tuple[int, int]]) -> list[list[Any]]:
        return [[name[fd], ev] for fd, ev in events]

    ep = select.epoll()
    ep.register(r, select.EPOLLIN)
    out["nothing"] = names(ep.poll(0.05))
    t = _later(lambda: s.sendto(b"hi", dst))
    out["data arrives"] = names(ep.poll(5))
    t.join()
    out["level triggered"] = names(ep.poll(0))
    r.recv(10)
    out["drained"] = names(ep.poll(0))
    out["twice"] = _err(lambda: ep.register(r))
    out["modify unregistered"] = _err(lambda: ep.modify(s, select.EPOLLIN))
    out["unregister unregistered"] = _err(lambda: ep.unregister(s))
    out["exclusive oneshot"] = _err(
        lambda: ep.register(s, select.EPOLLIN | select.EPOLLEXCLUSIVE | select.EPOLLONESHOT)
    )
    out["edge triggered"] = _err(lambda: ep.register(s, select.EPOLLIN | select.EPOLLET))
    out["maxevents 0"] = _err(lambda: ep.poll(0, 0))
    ep.unregister(r)

    rr = select.epoll()
    for x in (a, b, c):
        rr.register(x, select.EPOLLOUT)
    out["round robin 1"] = [names(rr.poll(0, 1)) for _ in range(4)]
    out["round robin 2"] = [names(rr.poll(0, 2)) for _ in range(3)]
    bfd = b.fileno()
    b.close()
    out["closed leaves the set"] = names(rr.poll(0))
    out["unregister closed"] = _err(lambda: rr.unregister(bfd))
    d = sk.socket(sk.AF_INET, sk.SOCK_DGRAM)
    name[d.fileno()] = "d"
    out["same fd, new file"] = [d.fileno() == bfd, _err(lambda: rr.modify(d, select.EPOLLIN))]

    one = select.epoll()
    one.register(s, select.EPOLLOUT | select.EPOLLONESHOT)
    out["oneshot"] = [names(one.poll(0)), names(one.poll(0))]
    one.modify(s, select.EPOLLOUT)
    out["rearmed"] = names(one.poll(0))
    one.close()
    out["closed epoll"] = [one.closed, _err(lambda: one.poll(0))]
    return out


def selecting_selectors() -> dict[str, Any]:
    import socket as std

    from stackemu import selectors

    r, s, dst = _pair()
    out: dict[str, Any] = {}
    sel = selectors.DefaultSelector()
    sel.register(r, selectors.EVENT_READ, "reader")
    sel.register(s, selectors.EVENT_WRITE, "writer")

    def got(timeout: float) -> list[list[Any]]:
        return sorted([k.data, ev] for k, ev in sel.select(timeout))

    out["fresh"] = got(0)
    t = _later(lambda: s.sendto(b"q", dst))
    sel.modify(s, selectors.EVENT_READ, "quiet")
    out["data arrives"] = got(5)
    t.join()
    out["map"] = [len(sel.get_map()), sel.get_key(r).data]
    r.close()
    out["unregister closed"] = sel.unregister(r).data
    with std.socket(std.AF_INET, std.SOCK_DGRAM) as real:
        out["real socket"] = _err(lambda: sel.register(real, selectors.EVENT_READ))[0]
    out["bad events"] = _err(lambda: sel.register(s, 4))
    sel.close()
    out["closed"] = _err(lambda: sel.get_key(s))
    return out


def modes() -> dict[str, Any]:
    sk = _sk()

    out: dict[str, Any] = {}
    r = sk.socket(sk.AF_INET, sk.SOCK_DGRAM)
    r.bind(("127.0.0.1", 0))

    def state() -> list[Any]:
        return [sk.fcntl(r, sk.F_GETFL), r.gettimeout(), r.getblocking()]

    out["fresh"] = [*state(), sk.fcntl(r, sk.F_GETFD), r.get_inheritable()]
    r.settimeout(1.5)
    out["settimeout 1.5"] = state()
    r.settimeout(None)
    out["settimeout None"] = state()
    r.setblocking(False)
    out["setblocking False"] = state()
    out["nonblocking recv"] = _err(lambda: r.recv(1))
    r.setblocking(True)
    out["setblocking True"] = state()
    r.settimeout(0.05)
    out["timeout recv"] = _err(lambda: r.recv(1))
    out["timeout recvfrom_into"] = _err(lambda: r.recvfrom_into(bytearray(4)))
    out["negative timeout"] = _err(lambda: r.settimeout(-1))
    r.settimeout(5)
    s = sk.socket(sk.AF_INET, sk.SOCK_DGRAM)
    t = _later(lambda: s.sendto(b"late", r.getsockname()))
    out["timeout recv waits"] = [r.recv(10).decode(), sk.fcntl(r, sk.F_GETFL)]
    t.join()
    r.set_inheritable(True)
    out["inheritable"] = [sk.fcntl(r, sk.F_GETFD), r.get_inheritable()]
    n = sk.socket(sk.AF_INET, sk.SOCK_DGRAM | sk.SOCK_NONBLOCK)
    out["SOCK_NONBLOCK"] = [sk.fcntl(n, sk.F_GETFL), n.gettimeout(), int(n.type)]
    sk.setdefaulttimeout(2)
    d = sk.socket(sk.AF_INET, sk.SOCK_DGRAM)
    sk.setdefaulttimeout(None)
    out["default timeout"] = [sk.fcntl(d, sk.F_GETFL), d.gettimeout()]
    # O_NONBLOCK set behind the object's back: a blocking-mode recv does not wait.
    sk.fcntl(r, sk.F_SETFL, O_RDWR | O_NONBLOCK)
    r.settimeout(None)
    out["F_SETFL then settimeout None"] = state()
    sk.fcntl(r, sk.F_SETFL, O_NONBLOCK)
    out["blocking mode on O_NONBLOCK"] = [_err(lambda: r.recv(1)), r.gettimeout()]
    out["fcntl bad cmd"] = _err(lambda: sk.fcntl(r, 1000))
    return out


def mmsg() -> dict[str, Any]:
    sk = _sk()

    r, s, dst = _pair()
    out: dict[str, Any] = {}
    out["sendmmsg"] = s.sendmmsg([(b"a", (), dst), ([b"b", b"c"], [], dst), (b"def", (), dst)])
    msgs = r.recvmmsg(3, 2)
    src = ("127.0.0.1", s.getsockname()[1])
    out["recvmmsg"] = [[d.decode(), anc, flags, addr == src] for d, anc, flags, addr in msgs]
    out["recvmmsg empty"] = _err(lambda: r.recvmmsg(4, 10, 0, sk.MSG_DONTWAIT))
    r.settimeout(0.05)
    out["recvmmsg timeout mode"] = _err(lambda: r.recvmmsg(4, 10))
    out["recvmmsg negative timeout"] = _err(lambda: r.recvmmsg(4, 10, 0, 0, -1.0))
    out["first too big"] = _err(lambda: s.sendmmsg([(bytes(65508), (), dst), (b"x", (), dst)]))
    out["second too big"] = _err(lambda: s.sendmmsg([(b"x", (), dst), (bytes(65508), (), dst)]))
    s.connect(dst)
    out["connected"] = s.sendmmsg([b"1", b"22", bytearray(b"333")])
    r.settimeout(5)
    got = r.recvmmsg(4, 10, 0, sk.MSG_WAITFORONE)
    while len(got) < 4:
        got += r.recvmmsg(4 - len(got), 10, 0, sk.MSG_WAITFORONE)
    out["received"] = [m[0].decode() for m in got]
    out["bad message"] = _err(lambda: s.sendmmsg([3]))
    return out


def closed() -> dict[str, Any]:
    sk = _sk()

    r, s, dst = _pair()
    out: dict[str, Any] = {}
    x = sk.socket(sk.AF_INET, sk.SOCK_DGRAM)
    x.close()
    calls: dict[str, Callable[[], object]] = {
        "bind": lambda: x.bind(("127.0.0.1", 0)),
        "connect": lambda: x.connect(dst),
        "send": lambda: x.send(b"x"),
        "sendto": lambda: x.sendto(b"x", dst),
        "sendmsg": lambda: x.sendmsg([b"x"], [], 0, dst),
        "sendmmsg": lambda: x.sendmmsg([b"x"]),
        "recv": lambda: x.recv(1),
        "recvmsg": lambda: x.recvmsg(1),
        "recvmmsg": lambda: x.recvmmsg(1, 1),
        "getsockname": x.getsockname,
        "getpeername": x.getpeername,
        "setsockopt": lambda: x.setsockopt(sk.SOL_SOCKET, sk.SO_REUSEADDR, 1),
        "getsockopt": lambda: x.getsockopt(sk.SOL_SOCKET, sk.SO_TYPE),
        "shutdown": lambda: x.shutdown(sk.SHUT_RDWR),
        "settimeout": lambda: x.settimeout(1),
        "setblocking": lambda: x.setblocking(False),
        "get_inheritable": x.get_inheritable,
        "fileno": x.fileno,
        "detach": x.detach,
        "close again": x.close,
        "listen": lambda: r.listen(1),
    }
    out.update({name: _err(f) for name, f in calls.items()})
    fd = r.detach()
    out["detached"] = [fd, r.fileno()]
    w = sk.socket(fileno=fd)
    out["socket(fileno=)"] = [int(w.family), int(w.type), w.proto, w.getsockname() == dst]
    w.detach()
    sk.close(fd)
    out["close(fd) twice"] = _err(lambda: sk.close(fd))
    out["dup"] = _err(s.dup)
    return out


def credentials() -> dict[str, Any]:
    sk = _sk()

    s = sk.socket(sk.AF_INET, sk.SOCK_DGRAM)
    return {
        "bind 80": _err(lambda: s.bind(("127.0.0.1", 80))),
        "SO_MARK": _err(lambda: s.setsockopt(sk.SOL_SOCKET, sk.SO_MARK, 7)),
        "set_credentials late": _err(lambda: sk.set_credentials(uid=5))[0],
    }


def set_credentials() -> dict[str, Any]:
    sk = _sk()

    sk.set_credentials(caps=1 << 12)
    s = sk.socket(sk.AF_INET, sk.SOCK_DGRAM)
    return {
        "bind 80": _err(lambda: s.bind(("127.0.0.1", 80))),
        "SO_MARK": _err(lambda: s.setsockopt(sk.SOL_SOCKET, sk.SO_MARK, 7)),
    }


def nofile() -> dict[str, Any]:
    sk = _sk()

    socks: list[Any] = []
    err = None
    for _ in range(10):
        try:
            socks.append(sk.socket(sk.AF_INET, sk.SOCK_DGRAM))
        except OSError as e:
            err = e.errno
            break
    return {"fds": [x.fileno() for x in socks], "errno": err}


def holder() -> dict[str, Any]:
    """Bind the port named in STACKEMU_TEST_PORT, say so, and wait to be killed."""
    sk = _sk()

    s = sk.socket(sk.AF_INET, sk.SOCK_DGRAM)
    s.bind(("127.0.0.1", int(os.environ["STACKEMU_TEST_PORT"])))
    print(json.dumps({"bound": s.getsockname()[1]}), flush=True)
    time.sleep(60)
    return {}


def rebind() -> dict[str, Any]:
    """Bind the port the killed holder had."""
    sk = _sk()

    s = sk.socket(sk.AF_INET, sk.SOCK_DGRAM)
    return {"bound": _err(lambda: s.bind(("127.0.0.1", int(os.environ["STACKEMU_TEST_PORT"]))))}


SCENARIOS: dict[str, Callable[[], dict[str, Any]]] = {
    f.__name__: f
    for f in (
        selecting,
        polling,
        epolling,
        selecting_selectors,
        modes,
        mmsg,
        closed,
        credentials,
        set_credentials,
        nofile,
        holder,
        rebind,
    )
}


# The tests.


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    from tests.e2e.stackrun import launched

    yield from launched(str(tmp_path_factory.mktemp("state")))


def _run(stack: dict[str, str], scenario: str, **env: str) -> dict[str, Any]:
    out = subprocess.run(
        [sys.executable, str(HERE), scenario],
        env={**stack, **env},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    result: dict[str, Any] = json.loads(out.stdout)
    return result


def test_select(stack: dict[str, str]) -> None:
    assert _run(stack, "selecting") == {
        # A fresh process's descriptors start at 3, the lowest free one each time.
        "fds": [3, 4],
        # 6.18: a fresh UDP socket is writable only, bound or not.
        "fresh": [[], ["r", "s"], []],
        "timeout": [[], [], []],
        "data arrives": [["r"], [], []],
        # select() returns each object of the list whose descriptor is ready.
        "duplicates": [["r", "r", "r"], [], []],
        "recv": "ab",
        # 6.18: select() on a descriptor that is not open is EBADF.
        "closed fd": ["OSError", 9],
        # A closed socket object has fileno() -1, as with the standard module.
        "closed object": ["ValueError", "file descriptor cannot be a negative integer (-1)"],
        "real socket": "TypeError",
        "negative timeout": ["ValueError", "timeout must be non-negative"],
        "not a list": ["TypeError", "arguments 1-3 must be sequences"],
    }


def test_poll(stack: dict[str, str]) -> None:
    assert _run(stack, "polling") == {
        # 6.18: [(r, POLLOUT)]; s asked for POLLIN only.
        "fresh": [[3, POLLOUT]],
        "timeout": [],
        "data arrives": [[3, POLLIN]],
        "drained": ["xyz", []],
        "modify unregistered": ["FileNotFoundError", 2],
        "unregister unregistered": ["KeyError", "99"],
        # 6.18: ENOTCONN, and both directions are shut down all the same:
        # POLLIN | POLLOUT | POLLHUP.
        "shutdown unconnected": ["OSError", 107],
        "shut down": [[3, POLLIN | POLLOUT | POLLHUP]],
        "closed": [[3, POLLNVAL]],
        "nothing ready": [],
    }


def test_epoll(stack: dict[str, str]) -> None:
    assert _run(stack, "epolling") == {
        "nothing": [],
        "data arrives": [["r", 1]],
        "level triggered": [["r", 1]],
        "drained": [],
        # 6.18: EEXIST, ENOENT, ENOENT, EINVAL.
        "twice": ["FileExistsError", 17],
        "modify unregistered": ["FileNotFoundError", 2],
        "unregister unregistered": ["FileNotFoundError", 2],
        "exclusive oneshot": ["OSError", 22],
        "edge triggered": ["ValueError", "stackemu.select.epoll: EPOLLET (edge-triggered) is not emulated"],
        "maxevents 0": ["ValueError", "maxevents must be greater than 0, got 0"],
        # 6.18: ep_send_events() moves a reported item to the tail of the ready list,
        # and what maxevents left out comes first next time.
        "round robin 1": [[["a", 4]], [["b", 4]], [["c", 4]], [["a", 4]]],
        "round robin 2": [[["b", 4], ["c", 4]], [["a", 4], ["b", 4]], [["c", 4], ["a", 4]]],
        # 6.18: a closed file leaves the set; its number is EBADF, then ENOENT for the
        # new file that got the same number.
        "closed leaves the set": [["c", 4], ["a", 4]],
        "unregister closed": ["OSError", 9],
        "same fd, new file": [True, ["FileNotFoundError", 2]],
        "oneshot": [[["s", 4]], []],
        "rearmed": [["s", 4]],
        "closed epoll": [True, ["ValueError", "I/O operation on closed epoll object"]],
    }


def test_selectors(stack: dict[str, str]) -> None:
    assert _run(stack, "selecting_selectors") == {
        "fresh": [["writer", 2]],
        "data arrives": [["reader", 1]],
        "map": [2, "reader"],
        "unregister closed": "reader",
        "real socket": "TypeError",
        "bad events": ["ValueError", "Invalid events: 4"],
        "closed": ["RuntimeError", "Selector is closed"],
    }


def test_blocking_modes_and_fcntl(stack: dict[str, str]) -> None:
    nb = O_RDWR | O_NONBLOCK
    assert _run(stack, "modes") == {
        # 6.18 with the standard module: F_GETFL O_RDWR, F_GETFD FD_CLOEXEC (PEP 446).
        "fresh": [O_RDWR, None, True, 1, False],
        # internal_setblocking(): O_NONBLOCK whenever a timeout is set.
        "settimeout 1.5": [nb, 1.5, True],
        "settimeout None": [O_RDWR, None, True],
        "setblocking False": [nb, 0.0, False],
        "nonblocking recv": ["BlockingIOError", 11],
        "setblocking True": [O_RDWR, None, True],
        "timeout recv": ["TimeoutError", "timed out"],
        "timeout recvfrom_into": ["TimeoutError", "timed out"],
        "negative timeout": ["ValueError", "Timeout value out of range"],
        # sock_call_ex(): poll() for the timeout, then the call on the O_NONBLOCK file.
        "timeout recv waits": ["late", nb],
        "inheritable": [0, True],
        "SOCK_NONBLOCK": [nb, 0.0, 2],
        "default timeout": [nb, 2.0],
        "F_SETFL then settimeout None": [O_RDWR, None, True],
        # 6.18: the standard module keeps its timeout; the O_NONBLOCK file does not wait.
        "blocking mode on O_NONBLOCK": [["BlockingIOError", 11], None],
        "fcntl bad cmd": ["OSError", 22],
    }


def test_sendmmsg_recvmmsg(stack: dict[str, str]) -> None:
    assert _run(stack, "mmsg") == {
        "sendmmsg": [1, 2, 3],
        # recvmmsg() with no flags waits for all vlen datagrams; "def" cut to bufsize.
        "recvmmsg": [["a", [], 0, True], ["bc", [], 0, True], ["de", [], MSG_TRUNC, True]],
        "recvmmsg empty": ["BlockingIOError", 11],
        "recvmmsg timeout mode": ["TimeoutError", "timed out"],
        "recvmmsg negative timeout": ["OSError", 22],
        # __sys_sendmmsg(): the first message's error when none was sent, else the
        # count of those sent (the error is dropped).
        "first too big": ["OSError", 90],
        "second too big": [1],
        "connected": [1, 2, 3],
        "received": ["x", "1", "22", "333"],
        "bad message": [
            "TypeError",
            "sendmmsg() messages must be bytes-like objects or (buffers[, ancdata[, address]]) tuples",
        ],
    }


def test_closed_socket_is_ebadf(stack: dict[str, str]) -> None:
    ebadf = ["OSError", 9]
    out = _run(stack, "closed")
    calls = [
        *("bind", "connect", "send", "sendto", "sendmsg", "sendmmsg", "recv", "recvmsg", "recvmmsg"),
        *("getsockname", "getpeername", "setsockopt", "getsockopt", "shutdown", "settimeout"),
        *("setblocking", "get_inheritable"),
    ]
    # 6.18 with the standard module: every call on a closed socket is EBADF; fileno()
    # and detach() are -1, a second close() is nothing.
    assert {name: out.pop(name) for name in calls} == dict.fromkeys(calls, ebadf)
    assert out == {
        "fileno": -1,
        "detach": -1,
        "close again": None,
        # inet_dgram_ops: sock_no_listen.
        "listen": ["OSError", 95],
        "detached": [3, -1],
        # 6.18: SO_PROTOCOL of a UDP socket is 17, which socket(fileno=) takes.
        "socket(fileno=)": [2, 2, 17, True],
        "close(fd) twice": ["OSError", 9],
        "dup": ["OSError", 95],
    }


def test_credentials_from_the_environment(stack: dict[str, str]) -> None:
    # No capabilities: inet_bind's EACCES below ip_unprivileged_port_start (1024) and
    # SO_MARK's EPERM without CAP_NET_ADMIN.
    assert _run(stack, "credentials", STACKEMU_CAPS="0", STACKEMU_UID="1000") == {
        "bind 80": ["PermissionError", 13],
        "SO_MARK": ["PermissionError", 1],
        "set_credentials late": "RuntimeError",
    }
    # CAP_NET_BIND_SERVICE alone (bit 10).
    assert _run(stack, "credentials", STACKEMU_CAPS="0x400") == {
        "bind 80": None,
        "SO_MARK": ["PermissionError", 1],
        "set_credentials late": "RuntimeError",
    }
    # Unset: all of them, as root has.
    assert _run(stack, "credentials")["SO_MARK"] is None
    # set_credentials() wins over the environment: CAP_NET_ADMIN alone.
    assert _run(stack, "set_credentials", STACKEMU_CAPS="0x400") == {
        "bind 80": ["PermissionError", 13],
        "SO_MARK": None,
    }
    assert _run(stack, "nofile", STACKEMU_NOFILE="6") == {"fds": [3, 4, 5], "errno": 24}
    bad = subprocess.run(
        [sys.executable, str(HERE), "credentials"],
        env={**stack, "STACKEMU_CAPS": "all"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert bad.returncode == 1
    assert "ValueError: STACKEMU_CAPS='all': must be a hex bit mask of CAP_* numbers" in bad.stderr


def _udp_sockets(stack: dict[str, str]) -> list[tuple[int, int]]:
    """(local port, owner pid) of every UDP socket of alice, as ListSockets reports."""
    import grpc

    from stackemu.udp.v1 import udp_pb2, udp_pb2_grpc

    addr = json.loads((Path(stack["STACKEMU_STATE_DIR"]) / "stack.json").read_text())["hosts"]["alice"][
        "udp"
    ]["addr"]
    with grpc.insecure_channel(addr) as ch:
        resp = udp_pb2_grpc.UdpServiceStub(ch).ListSockets(udp_pb2.ListSocketsRequest(), timeout=10)
    return [(s.local_port, s.owner_pid) for s in resp.sockets]


def test_sigkilled_process_has_its_sockets_closed(stack: dict[str, str]) -> None:
    from tests.e2e.test_dropin_ip import _free_port

    port = str(_free_port())
    env = {**stack, "STACKEMU_TEST_PORT": port}
    child = subprocess.Popen(
        [sys.executable, str(HERE), "holder"], env=env, stdout=subprocess.PIPE, text=True
    )
    try:
        assert child.stdout is not None
        assert json.loads(child.stdout.readline()) == {"bound": int(port)}
        assert int(port) in [p for p, _ in _udp_sockets(stack)]
        child.send_signal(signal.SIGKILL)
        assert child.wait(timeout=10) == -signal.SIGKILL
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    # The KeepAlive stream ended with the process: the host closes its socket, as soon
    # as it has seen the connection go.
    for _ in range(100):
        if int(port) not in [p for p, _ in _udp_sockets(stack)]:
            break
        time.sleep(0.05)
    assert int(port) not in [p for p, _ in _udp_sockets(stack)]
    assert _run(stack, "rebind", STACKEMU_TEST_PORT=port) == {"bound": None}


if __name__ == "__main__":
    print(json.dumps(SCENARIOS[sys.argv[1]]()))
