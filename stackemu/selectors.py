"""Python's selectors module for emulated sockets: `from stackemu import selectors`,
then selectors.DefaultSelector() as with the standard module. EmuSelector is the
standard EpollSelector over stackemu.select.epoll (level-triggered), so selector
loops written for the standard module run unchanged on stackemu.socket sockets.
Registering anything but an emulated socket of this process (or its descriptor) is a
TypeError; a negative or invalid descriptor a ValueError, as the standard module says.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from selectors import EVENT_READ, EVENT_WRITE, BaseSelector, SelectorKey
from typing import Any

from stackemu import select as _select

__all__ = ["EVENT_READ", "EVENT_WRITE", "BaseSelector", "DefaultSelector", "EmuSelector", "SelectorKey"]


def _fileobj_to_fd(fileobj: Any) -> int:
    """selectors._fileobj_to_fd()."""
    if isinstance(fileobj, int):
        fd = fileobj
    else:
        try:
            fd = int(fileobj.fileno())
        except (AttributeError, TypeError, ValueError):
            raise ValueError(f"Invalid file object: {fileobj!r}") from None
    if fd < 0:
        raise ValueError(f"Invalid file descriptor: {fd}")
    return fd


class _SelectorMapping(Mapping[Any, SelectorKey]):
    """The read-only file object → key view get_map() gives."""

    def __init__(self, selector: EmuSelector) -> None:
        self._selector = selector

    def __len__(self) -> int:
        return len(self._selector._fd_to_key)

    def __getitem__(self, fileobj: Any) -> SelectorKey:
        try:
            fd = self._selector._fileobj_lookup(fileobj)
            return self._selector._fd_to_key[fd]
        except KeyError:
            raise KeyError(f"{fileobj!r} is not registered") from None

    def __iter__(self) -> Iterator[Any]:
        return iter(self._selector._fd_to_key)


class EmuSelector(BaseSelector):
    """selectors.EpollSelector over stackemu.select.epoll."""

    def __init__(self) -> None:
        self._fd_to_key: dict[int, SelectorKey] = {}
        self._map: _SelectorMapping | None = _SelectorMapping(self)
        self._selector = _select.epoll()

    def _fileobj_lookup(self, fileobj: Any) -> int:
        """The descriptor, or for a file object that no longer has one (a closed
        socket) the one it was registered with."""
        try:
            return _fileobj_to_fd(fileobj)
        except ValueError:
            for key in self._fd_to_key.values():
                if key.fileobj is fileobj:
                    return key.fd
            raise

    def register(self, fileobj: Any, events: int, data: Any = None) -> SelectorKey:
        if (not events) or (events & ~(EVENT_READ | EVENT_WRITE)):
            raise ValueError(f"Invalid events: {events!r}")
        key = SelectorKey(fileobj, self._fileobj_lookup(fileobj), events, data)
        _select.fd_of(fileobj)
        if key.fd in self._fd_to_key:
            raise KeyError(f"{fileobj!r} (FD {key.fd}) is already registered")
        poller_events = 0
        if events & EVENT_READ:
            poller_events |= _select.EPOLLIN
        if events & EVENT_WRITE:
            poller_events |= _select.EPOLLOUT
        self._selector.register(key.fd, poller_events)
        self._fd_to_key[key.fd] = key
        return key

    def unregister(self, fileobj: Any) -> SelectorKey:
        try:
            key = self._fd_to_key.pop(self._fileobj_lookup(fileobj))
        except KeyError:
            raise KeyError(f"{fileobj!r} is not registered") from None
        try:
            self._selector.unregister(key.fd)
        except OSError:
            # The socket was closed first: it left the epoll set then.
            pass
        return key

    def modify(self, fileobj: Any, events: int, data: Any = None) -> SelectorKey:
        try:
            key = self._fd_to_key[self._fileobj_lookup(fileobj)]
        except KeyError:
            raise KeyError(f"{fileobj!r} is not registered") from None
        if events != key.events:
            if (not events) or (events & ~(EVENT_READ | EVENT_WRITE)):
                raise ValueError(f"Invalid events: {events!r}")
            poller_events = 0
            if events & EVENT_READ:
                poller_events |= _select.EPOLLIN
            if events & EVENT_WRITE:
                poller_events |= _select.EPOLLOUT
            self._selector.modify(key.fd, poller_events)
            key = key._replace(events=events, data=data)
            self._fd_to_key[key.fd] = key
        elif data != key.data:
            key = key._replace(data=data)
            self._fd_to_key[key.fd] = key
        return key

    def select(self, timeout: float | None = None) -> list[tuple[SelectorKey, int]]:
        """(key, events) for the ready file objects; timeout None blocks, <= 0 polls."""
        if timeout is None:
            wait = -1.0
        elif timeout <= 0:
            wait = 0.0
        else:
            # epoll_wait() has millisecond resolution: round up, as the standard one.
            wait = math.ceil(timeout * 1e3) * 1e-3
        max_ev = max(len(self._fd_to_key), 1)
        ready = []
        for fd, event in self._selector.poll(wait, max_ev):
            events = 0
            if event & ~_select.EPOLLIN:
                events |= EVENT_WRITE
            if event & ~_select.EPOLLOUT:
                events |= EVENT_READ
            key = self._fd_to_key.get(fd)
            if key:
                ready.append((key, events & key.events))
        return ready

    def close(self) -> None:
        self._selector.close()
        self._fd_to_key.clear()
        self._map = None

    def get_map(self) -> Mapping[Any, SelectorKey]:
        # None once closed, as the standard selectors' (get_key then raises
        # RuntimeError("Selector is closed")).
        return self._map  # type: ignore[return-value]


DefaultSelector = EmuSelector
