"""Processes and their file descriptor tables (fs/file.c, kernel/fork.c in spirit)."""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

from services.core import errno

# RLIMIT_NOFILE's default soft limit.
NR_OPEN_DEFAULT = 1024
# 0, 1 and 2 are the process's stdio; sockets get the lowest free number above.
FIRST_FD = 3
MAX_PROCESSES = 4096


@dataclass(eq=False, slots=True)
class SocketFile:
    """struct socket + struct file: what an fd names."""

    sk: int
    type: int
    protocol: int
    nonblock: bool = False
    cloexec: bool = False
    # SO_RCVTIMEO / SO_SNDTIMEO in nanoseconds; negative means MAX_SCHEDULE_TIMEOUT.
    rcvtimeo_ns: int = -1
    sndtimeo_ns: int = -1


@dataclass(eq=False, slots=True)
class Process:
    pid: int
    comm: str
    files: dict[int, SocketFile] = field(default_factory=dict)

    def alloc_fd(self) -> int:
        """get_unused_fd_flags(): the lowest free descriptor, EMFILE past RLIMIT_NOFILE."""
        for fd in range(FIRST_FD, NR_OPEN_DEFAULT):
            if fd not in self.files:
                return fd
        raise errno.kernel_error(errno.EMFILE)

    def file(self, fd: int) -> SocketFile:
        f = self.files.get(fd)
        if f is None:
            raise errno.kernel_error(errno.EBADF)
        return f


class UnknownProcess(LookupError):
    """A request names a pid that OpenProcess never gave (INVALID_ARGUMENT)."""


class ProcessTable:
    def __init__(self) -> None:
        self._procs: dict[int, Process] = {}
        self._pids = itertools.count(100)

    def open(self, comm: str) -> Process:
        if len(self._procs) >= MAX_PROCESSES:
            raise errno.kernel_error(errno.EAGAIN, "too many processes")
        p = Process(next(self._pids), comm[:15])  # TASK_COMM_LEN - 1
        self._procs[p.pid] = p
        return p

    def get(self, pid: int) -> Process:
        p = self._procs.get(pid)
        if p is None:
            raise UnknownProcess(f"no process {pid}: call OpenProcess first")
        return p

    def remove(self, pid: int) -> Process:
        return self._procs.pop(pid)

    def __iter__(self):  # type: ignore[no-untyped-def]
        return iter(self._procs.values())
