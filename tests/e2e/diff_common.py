"""What the differential scripts (test_diff_*.py) share beyond the harness of
test_udp_kernel_send.py: a call's outcome with its exception class, the select module
that goes with the socket module, and cmsgs with their timestamps normalised."""

from __future__ import annotations

import importlib
import struct
import threading
import time
from collections.abc import Callable
from typing import Any

from tests.e2e.test_udp_kernel_send import Host

SOL_SOCKET = 1
# include/uapi/asm-generic/socket.h: the timestamp cmsg types and their payloads. On
# x86_64 the _OLD and _NEW layouts are the same: (s64 sec, s64 usec or nsec).
SCM_TIMESTAMP_OLD, SCM_TIMESTAMPNS_OLD, SCM_TIMESTAMPING_OLD = 29, 35, 37
SCM_TIMESTAMP_NEW, SCM_TIMESTAMPNS_NEW, SCM_TIMESTAMPING_NEW = 63, 64, 65
USEC = {SCM_TIMESTAMP_OLD, SCM_TIMESTAMP_NEW}
TIMESTAMPS = {SCM_TIMESTAMP_OLD, SCM_TIMESTAMPNS_OLD, SCM_TIMESTAMPING_OLD} | {
    SCM_TIMESTAMP_NEW,
    SCM_TIMESTAMPNS_NEW,
    SCM_TIMESTAMPING_NEW,
}
PAIR = struct.Struct("=qq")


def call(f: Callable[..., object], *args: Any) -> Any:
    """f(*args)'s value (bytes as hex), or [exception class, errno] when it raised OSError:
    the class matters (TimeoutError, BlockingIOError, BrokenPipeError...) as much as
    the number, since code written for the stdlib module catches the class. A
    ValueError (a closed socket's fd -1 handed to select) is [class]."""
    try:
        v = f(*args)
    except OSError as e:
        return [type(e).__name__, e.errno]
    except ValueError as e:
        return [type(e).__name__]
    return v.hex() if isinstance(v, bytes | bytearray) else v


def bounded(f: Callable[[], object], seconds: float = 2) -> Any:
    """call(f) for a call that may block: "blocked" when it has not returned after
    `seconds` (it is left blocked in a daemon thread), so that a side that blocks where
    the other does not is a difference, not a hung script."""
    result: list[Any] = ["blocked"]
    thread = threading.Thread(target=lambda: result.__setitem__(0, call(f)), daemon=True)
    thread.start()
    thread.join(seconds)
    return result[0]


def settled(h: Host, f: Callable[..., object], *args: Any) -> Any:
    """call(f, *args), then settled twice: on the kernel an ICMP error or a TX timestamp is
    queued when the send returns (lo's softirq runs in the sender's context); the
    emulated host produces it while the first sentinel may already be on its way, but
    before the second is sent."""
    got = call(f, *args)
    h.settle()
    h.settle()
    return got


def select_module(h: Host) -> Any:
    """The stdlib select for the kernel, stackemu.select for the emulated host."""
    return importlib.import_module("select" if h.kernel else "stackemu.select")


class Clock:
    """The wall clock before a send (begin) and after the receive (when a cmsg is
    normalised): a timestamp in between is "ok" (its value differs from run to run;
    its being in the window does not)."""

    def __init__(self) -> None:
        self.start = time.time_ns()

    def begin(self) -> None:
        self.start = time.time_ns()

    def stamp(self, chunk: bytes, usec: bool) -> str:
        sec, frac = PAIR.unpack(chunk)
        if sec == frac == 0:
            return "0"
        ns = sec * 10**9 + frac * (1000 if usec else 1)
        # a usec stamp is cut down to the microsecond, so the window starts 1 us early
        return "ok" if self.start - 1000 <= ns <= time.time_ns() else f"out of window: {chunk.hex()}"

    def cmsg(self, level: int, type_: int, data: bytes) -> list[Any]:
        """(level, type, data) as [level, type, data hex], a timestamp's data as a
        "ok"/"0" per struct, and one put_cmsg cut short as ["cut", its length]."""
        if level != SOL_SOCKET or type_ not in TIMESTAMPS:
            return [level, type_, data.hex()]
        if len(data) % PAIR.size:
            return [level, type_, ["cut", len(data)]]
        chunks = [data[i : i + PAIR.size] for i in range(0, len(data), PAIR.size)]
        return [level, type_, [self.stamp(c, type_ in USEC) for c in chunks]]

    def anc(self, items: list[tuple[int, int, bytes]]) -> list[list[Any]]:
        return [self.cmsg(*item) for item in items]
