"""Processes and their file descriptor tables (fs/file.c, fs/fcntl.c, kernel/fork.c in
spirit): each process has its own table, its credentials and its RLIMIT_NOFILE."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Iterator
from dataclasses import dataclass, field

from services.core import errno
from services.core.cred import ROOT, Cred
from services.core.socket_uapi import O_NONBLOCK, O_RDWR

# RLIMIT_NOFILE's default soft limit (INR_OPEN_CUR), and the most OpenProcess takes.
NR_OPEN_DEFAULT = 1024
NR_OPEN_MAX = 65536
# 0, 1 and 2 are the process's stdio; sockets get the lowest free number above.
FIRST_FD = 3
MAX_PROCESSES = 4096
TASK_COMM_LEN = 16


@dataclass(eq=False, slots=True)
class SocketFile:
    """struct socket + struct file: what an fd names. f_flags is the file's status
    flags: sock_alloc_file() opens it O_RDWR, with O_NONBLOCK for SOCK_NONBLOCK."""

    sk: int
    type: int
    protocol: int
    f_flags: int = O_RDWR
    cloexec: bool = False
    # SO_RCVTIMEO / SO_SNDTIMEO in nanoseconds; negative means MAX_SCHEDULE_TIMEOUT.
    rcvtimeo_ns: int = -1
    sndtimeo_ns: int = -1
    # sk_shutdown as this file last set it: a timeout-mode wait for data (which polls)
    # must know that a read would not wait.
    shutdown: int = 0

    @property
    def nonblock(self) -> bool:
        return bool(self.f_flags & O_NONBLOCK)


@dataclass(eq=False, slots=True)
class Process:
    pid: int
    comm: str
    cred: Cred = ROOT
    # RLIMIT_NOFILE: descriptors are below it.
    nofile: int = NR_OPEN_DEFAULT
    files: dict[int, SocketFile] = field(default_factory=dict)
    # Set when the process has exited (a KeepAlive holding it ends).
    exited: asyncio.Event = field(default_factory=asyncio.Event)

    def alloc_fd(self) -> int:
        """get_unused_fd_flags() → alloc_fd(): the lowest free descriptor, EMFILE when
        none is below RLIMIT_NOFILE."""
        for fd in range(FIRST_FD, self.nofile):
            if fd not in self.files:
                return fd
        raise errno.kernel_error(errno.EMFILE)

    def file(self, fd: int) -> SocketFile:
        """fdget(): this process's file for fd; EBADF for one that is not open (another
        process's numbers name nothing here)."""
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

    def open(self, comm: str, cred: Cred = ROOT, nofile: int = 0) -> Process:
        """A new process; nofile 0 is the default limit. ValueError for a limit past
        NR_OPEN_MAX; EAGAIN when the table is full (fork's RLIMIT_NPROC answer)."""
        if nofile > NR_OPEN_MAX or nofile < 0:
            raise ValueError(f"nofile {nofile} is more than {NR_OPEN_MAX}")
        if len(self._procs) >= MAX_PROCESSES:
            raise errno.kernel_error(errno.EAGAIN, "too many processes")
        p = Process(next(self._pids), comm[: TASK_COMM_LEN - 1], cred, nofile or NR_OPEN_DEFAULT)
        self._procs[p.pid] = p
        return p

    def get(self, pid: int) -> Process:
        p = self._procs.get(pid)
        if p is None:
            raise UnknownProcess(f"no process {pid}: call OpenProcess first")
        return p

    def remove(self, pid: int) -> Process:
        p = self._procs.pop(pid, None)
        if p is None:
            raise UnknownProcess(f"no process {pid}")
        return p

    def __iter__(self) -> Iterator[Process]:
        return iter(self._procs.values())
