"""Readiness of emulated sockets in the shape of Python's select module:
`from stackemu import select`, then select.select(), select.poll() and select.epoll()
as the standard module has them (fs/select.c do_select and do_poll, fs/eventpoll.c).

Each wait is one Poll stream of the socket service (poll(2) kept open: the revents at
once, then again whenever they change), cancelled when the call returns. The objects
waited on must be sockets of stackemu.socket, or their descriptors, in this process:
a real file or socket is a TypeError, a negative descriptor a ValueError, and a
descriptor that is not open gets the kernel's answer (EBADF from select(), POLLNVAL
from poll(), EBADF from epoll's register).

epoll is level-triggered, with EPOLLONESHOT and EPOLLEXCLUSIVE; EPOLLET is refused
with a ValueError (edge-triggered wake-ups would need the stream held between calls).
"""

from __future__ import annotations

import io
import math
import socket as _std_socket
import time
from collections.abc import Iterable
from dataclasses import dataclass
from select import (
    EPOLL_CLOEXEC,
    EPOLLERR,
    EPOLLET,
    EPOLLEXCLUSIVE,
    EPOLLHUP,
    EPOLLIN,
    EPOLLMSG,
    EPOLLONESHOT,
    EPOLLOUT,
    EPOLLPRI,
    EPOLLRDBAND,
    EPOLLRDHUP,
    EPOLLRDNORM,
    EPOLLWRBAND,
    EPOLLWRNORM,
    PIPE_BUF,
    POLLERR,
    POLLHUP,
    POLLIN,
    POLLMSG,
    POLLNVAL,
    POLLOUT,
    POLLPRI,
    POLLRDBAND,
    POLLRDHUP,
    POLLRDNORM,
    POLLWRBAND,
    POLLWRNORM,
)
from typing import Any, Self

from services.core import errno as _errno
from stackemu import socket as _emu

error = OSError

# include/uapi/linux/posix_types.h: what select() can name.
FD_SETSIZE = 1024
# include/uapi/linux/eventpoll.h: EPOLLWAKEUP (dropped without CAP_BLOCK_SUSPEND, as
# ep_take_care_of_epollwakeup() does) and the bits that are not events.
EPOLLWAKEUP = 1 << 29
EP_PRIVATE_BITS = EPOLLWAKEUP | EPOLLONESHOT | EPOLLET | EPOLLEXCLUSIVE
EPOLLEXCLUSIVE_OK_BITS = EPOLLIN | EPOLLOUT | EPOLLERR | EPOLLHUP | EPOLLWAKEUP | EPOLLET | EPOLLEXCLUSIVE

# fs/select.c: what makes a descriptor readable, writable or exceptional for select().
POLLIN_SET = EPOLLRDNORM | EPOLLRDBAND | EPOLLIN | EPOLLHUP | EPOLLERR
POLLOUT_SET = EPOLLWRBAND | EPOLLWRNORM | EPOLLOUT | EPOLLERR
POLLEX_SET = EPOLLPRI


def _oserror(code: int) -> OSError:
    return OSError(code, _errno.strerror(code))


def fd_of(obj: Any) -> int:
    """PyObject_AsFileDescriptor(), for emulated sockets only: an emulated socket's
    descriptor, an int as it is, or the fileno() of an object whose descriptor is one
    of this process's emulated sockets (a wrapper around one)."""
    if isinstance(obj, _emu.socket):
        fd = obj.fileno()
    elif isinstance(obj, int):
        fd = int(obj)
    elif isinstance(obj, _std_socket.socket | io.IOBase):
        raise TypeError(
            f"{obj!r} is not an emulated socket: stackemu.select waits on stackemu.socket sockets"
        )
    else:
        fileno = getattr(obj, "fileno", None)
        if fileno is None:
            raise TypeError("argument must be an int, or have a fileno() method.")
        fd = fileno()
        if not isinstance(fd, int):
            raise TypeError("fileno() returned a non-integer")
        if fd >= 0 and fd not in _emu._get_host().files:
            raise TypeError(f"{obj!r} is not an emulated socket: its fileno() {fd} is no emulated descriptor")
    if fd < 0:
        raise ValueError(f"file descriptor cannot be a negative integer ({fd})")
    return fd


def _timeout_seconds(timeout: Any, message: str) -> float | None:
    """_PyTime_FromSecondsObject(): None, or seconds; TypeError `message` otherwise."""
    if timeout is None:
        return None
    if isinstance(timeout, float):
        if math.isnan(timeout):
            raise ValueError("Invalid value NaN (not a number)")
        return timeout
    if isinstance(timeout, int):
        return float(timeout)
    raise TypeError(message)


def select(rlist: Iterable[Any], wlist: Iterable[Any], xlist: Iterable[Any], timeout: Any = None, /) -> Any:
    """select(2): the objects of each list that are ready, in the lists' order."""
    seconds = _timeout_seconds(timeout, "timeout must be a float or None")
    if seconds is not None and seconds < 0:
        raise ValueError("timeout must be non-negative")
    lists: list[list[tuple[Any, int]]] = []
    for seq in (rlist, wlist, xlist):
        try:
            items = list(seq)
        except TypeError:
            raise TypeError("arguments 1-3 must be sequences") from None
        pairs = []
        for obj in items:
            fd = fd_of(obj)
            if fd >= FD_SETSIZE:
                raise ValueError("filedescriptor out of range in select()")
            pairs.append((obj, fd))
        lists.append(pairs)
    wanted: dict[int, int] = {}
    for pairs, events in zip(lists, (POLLIN_SET, POLLOUT_SET, POLLEX_SET), strict=True):
        for _, fd in pairs:
            wanted[fd] = wanted.get(fd, 0) | events
    fds = list(wanted.items())

    def ready(revents: list[int]) -> bool:
        return any(rev & (wanted[fd] | POLLNVAL) for (fd, _), rev in zip(fds, revents, strict=True))

    revents = dict(zip(wanted, _emu._poll(fds, seconds, ready), strict=True))
    if any(rev & POLLNVAL for rev in revents.values()):
        # do_select() → max_select_fd(): a descriptor that is not open.
        raise _oserror(_errno.EBADF)
    return tuple(
        [obj for obj, fd in pairs if revents[fd] & events]
        for pairs, events in zip(lists, (POLLIN_SET, POLLOUT_SET, POLLEX_SET), strict=True)
    )


def _ushort(value: Any) -> int:
    """_PyLong_UnsignedShort_Converter()."""
    if not isinstance(value, int):
        raise TypeError(f"'{type(value).__name__}' object cannot be interpreted as an integer")
    if value < 0:
        raise ValueError("value must be positive")
    if value > 0xFFFF:
        raise OverflowError("Python int too large for C unsigned short")
    return value


def _uint(value: Any) -> int:
    if not isinstance(value, int):
        raise TypeError(f"'{type(value).__name__}' object cannot be interpreted as an integer")
    if value < 0:
        raise OverflowError("can't convert negative int to unsigned")
    if value > 0xFFFFFFFF:
        raise OverflowError("Python int too large for C unsigned int")
    return value


class poll:
    """select.poll(): descriptors and their event masks, in registration order."""

    def __init__(self) -> None:
        self._fds: dict[int, int] = {}
        self._running = False

    def register(self, fd: Any, eventmask: int = POLLIN | POLLPRI | POLLOUT) -> None:
        self._fds[fd_of(fd)] = _ushort(eventmask)

    def modify(self, fd: Any, eventmask: int) -> None:
        num = fd_of(fd)
        mask = _ushort(eventmask)
        if num not in self._fds:
            raise _oserror(_errno.ENOENT)
        self._fds[num] = mask

    def unregister(self, fd: Any) -> None:
        num = fd_of(fd)
        if num not in self._fds:
            raise KeyError(num)
        del self._fds[num]

    def poll(self, timeout: Any = None) -> list[tuple[int, int]]:
        """poll(2): (fd, revents) for each descriptor with revents, timeout in
        milliseconds (None or negative: no limit)."""
        ms = _timeout_seconds(timeout, "timeout must be an integer or None")
        seconds = None if ms is None or ms < 0 else math.ceil(ms) / 1000
        if self._running:
            raise RuntimeError("concurrent poll() invocation")
        fds = list(self._fds.items())
        self._running = True
        try:
            revents = _emu._poll(fds, seconds, any)
        finally:
            self._running = False
        return [(fd, rev) for (fd, _), rev in zip(fds, revents, strict=True) if rev]


@dataclass(slots=True)
class _Epitem:
    """struct epitem: the registered events, and the generation of the socket the
    descriptor named then (a closed file leaves the set, as eventpoll_release())."""

    events: int
    generation: int


class epoll:
    """select.epoll(), level-triggered: the kernel's ready list order (ep_send_events:
    what maxevents left out comes first next time, reported items go to the tail)."""

    def __init__(self, sizehint: int = -1, flags: int = 0) -> None:
        if sizehint != -1 and sizehint <= 0:
            raise ValueError("negative sizehint")
        if flags and flags != EPOLL_CLOEXEC:
            raise OSError("invalid flags")
        self._items: dict[int, _Epitem] = {}
        self._rdllist: list[int] = []
        self._closed = False

    @property
    def closed(self) -> bool:
        return self._closed

    def close(self) -> None:
        self._closed = True
        self._items.clear()
        self._rdllist.clear()

    def fileno(self) -> int:
        self._check_open()
        raise OSError(_errno.EOPNOTSUPP, "an emulated epoll has no descriptor")

    @classmethod
    def fromfd(cls, fd: int) -> epoll:
        raise OSError(_errno.EOPNOTSUPP, "an emulated epoll has no descriptor")

    def __enter__(self) -> Self:
        self._check_open()
        return self

    def __exit__(self, *args: object) -> None:
        self.close()

    def _check_open(self) -> None:
        if self._closed:
            raise ValueError("I/O operation on closed epoll object")

    def _item(self, fd: int) -> _Epitem | None:
        """ep_find(); an item whose file was closed since is gone."""
        epi = self._items.get(fd)
        if epi is not None and _emu._get_host().files.get(fd) != epi.generation:
            self._remove(fd)
            return None
        return epi

    def _remove(self, fd: int) -> None:
        self._items.pop(fd, None)
        if fd in self._rdllist:
            self._rdllist.remove(fd)

    def _ctl(self, op: str, obj: Any, events: int) -> int:
        """do_epoll_ctl()'s checks, in its order."""
        self._check_open()
        fd = fd_of(obj)
        generation = _emu._get_host().files.get(fd)
        if generation is None:
            raise _oserror(_errno.EBADF)
        if op != "del":
            if events & EPOLLET:
                raise ValueError("stackemu.select.epoll: EPOLLET (edge-triggered) is not emulated")
            if events & EPOLLEXCLUSIVE and (op == "mod" or events & ~EPOLLEXCLUSIVE_OK_BITS):
                raise _oserror(_errno.EINVAL)
        epi = self._item(fd)
        if op == "add":
            if epi is not None:
                raise _oserror(_errno.EEXIST)
            # epoll_ctl(): EPOLLERR and EPOLLHUP are always reported.
            self._items[fd] = _Epitem((events & ~EPOLLWAKEUP) | EPOLLERR | EPOLLHUP, generation)
            return fd
        if epi is None:
            raise _oserror(_errno.ENOENT)
        if op == "mod":
            if epi.events & EPOLLEXCLUSIVE:
                raise _oserror(_errno.EINVAL)
            epi.events = (events & ~EPOLLWAKEUP) | EPOLLERR | EPOLLHUP
        else:
            self._remove(fd)
        return fd

    def register(self, fd: Any, eventmask: int = EPOLLIN | EPOLLPRI | EPOLLOUT) -> None:
        self._ctl("add", fd, _uint(eventmask))

    def modify(self, fd: Any, eventmask: int) -> None:
        self._ctl("mod", fd, _uint(eventmask))

    def unregister(self, fd: Any) -> None:
        self._ctl("del", fd, 0)

    def poll(self, timeout: Any = None, maxevents: int = -1) -> list[tuple[int, int]]:
        """epoll_wait(2): (fd, events) for up to maxevents ready descriptors, timeout in
        seconds (None or negative: no limit)."""
        self._check_open()
        seconds = _timeout_seconds(timeout, "timeout must be an integer or None")
        if seconds is not None:
            seconds = None if seconds < 0 else math.ceil(seconds * 1000) / 1000
        if maxevents == -1:
            maxevents = FD_SETSIZE - 1
        elif maxevents < 1:
            raise ValueError(f"maxevents must be greater than 0, got {maxevents}")
        deadline = None if seconds is None else time.monotonic() + seconds
        while True:
            for fd in list(self._items):
                self._item(fd)
            # A disarmed EPOLLONESHOT item (no events left) is not polled.
            fds = [(fd, epi.events & ~EP_PRIVATE_BITS) for fd, epi in self._items.items()]
            fds = [(fd, events) for fd, events in fds if events]

            def ready(revents: list[int], fds: list[tuple[int, int]] = fds) -> bool:
                return any(rev & (events | POLLNVAL) for (_, events), rev in zip(fds, revents, strict=True))

            left = None if deadline is None else max(deadline - time.monotonic(), 0.0)
            revents = _emu._poll(fds, left, ready)
            now: dict[int, int] = {}
            for (fd, events), rev in zip(fds, revents, strict=True):
                if rev & POLLNVAL:
                    # Closed by other means than this process's socket objects: the
                    # file left the set (eventpoll_release), no event for it.
                    self._remove(fd)
                elif rev & events:
                    now[fd] = rev & events
            if now or left == 0 or not any(rev & POLLNVAL for rev in revents):
                break
        return self._send_events(now, maxevents)

    def _send_events(self, now: dict[int, int], maxevents: int) -> list[tuple[int, int]]:
        """ep_send_events(): walk the ready list (those that became ready join it at the
        tail); report up to maxevents, put a reported level-triggered item back at the
        tail, disarm an EPOLLONESHOT one, drop one no longer ready; what was not
        reached stays at the head."""
        self._rdllist += [fd for fd in now if fd not in self._rdllist]
        out: list[tuple[int, int]] = []
        left: list[int] = []
        requeued: list[int] = []
        for fd in self._rdllist:
            if len(out) >= maxevents:
                left.append(fd)
                continue
            if fd not in now:
                continue
            out.append((fd, now[fd]))
            epi = self._items[fd]
            if epi.events & EPOLLONESHOT:
                epi.events &= EP_PRIVATE_BITS
            else:
                requeued.append(fd)
        self._rdllist = left + requeued
        return out


__all__ = [
    "EPOLLERR",
    "EPOLLET",
    "EPOLLEXCLUSIVE",
    "EPOLLHUP",
    "EPOLLIN",
    "EPOLLMSG",
    "EPOLLONESHOT",
    "EPOLLOUT",
    "EPOLLPRI",
    "EPOLLRDBAND",
    "EPOLLRDHUP",
    "EPOLLRDNORM",
    "EPOLLWAKEUP",
    "EPOLLWRBAND",
    "EPOLLWRNORM",
    "EPOLL_CLOEXEC",
    "FD_SETSIZE",
    "PIPE_BUF",
    "POLLERR",
    "POLLHUP",
    "POLLIN",
    "POLLMSG",
    "POLLNVAL",
    "POLLOUT",
    "POLLPRI",
    "POLLRDBAND",
    "POLLRDHUP",
    "POLLRDNORM",
    "POLLWRBAND",
    "POLLWRNORM",
    "epoll",
    "error",
    "poll",
    "select",
]
