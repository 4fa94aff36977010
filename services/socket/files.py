"""Processes and their file descriptor tables (fs/file.c, fs/fcntl.c, kernel/fork.c in
spirit): each process has its own table, its credentials and its RLIMIT_NOFILE; the host
bounds them all by kernel.pid_max (EAGAIN) and fs.file-max (ENFILE), so that one client
cannot exhaust the socket service."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Iterator
from dataclasses import dataclass, field

from services.core import errno
from services.core.cred import CAP_SYS_ADMIN, ROOT, Cred
from services.core.socket_uapi import O_NONBLOCK, O_RDWR
from services.core.sysctl import Sysctl

# RLIMIT_NOFILE's default soft limit (INR_OPEN_CUR), and the most OpenProcess takes.
NR_OPEN_DEFAULT = 1024
NR_OPEN_MAX = 65536
# 0, 1 and 2 are the process's stdio; sockets get the lowest free number above.
FIRST_FD = 3
TASK_COMM_LEN = 16
# include/linux/threads.h: where pid allocation starts again after reaching pid_max.
RESERVED_PIDS = 300
# The emulator's first pid, as if init and the boot's daemons had those below.
FIRST_PID = 100


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
    # Its socket went with the UDP layer's stream (SocketLayer.lower_lost): the
    # descriptor stays taken, so its number names nothing else, until close().
    lost: bool = False

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
    # Descriptors alloc_fd() gave that are not installed yet (get_unused_fd_flags()
    # marks them in open_fds before fd_install()): a concurrent socket() skips them.
    reserved: set[int] = field(default_factory=set)
    # Set when the process has exited (a KeepAlive holding it ends).
    exited: asyncio.Event = field(default_factory=asyncio.Event)
    # The host's table, whose fs.file-max bounds this process's files too.
    table: ProcessTable | None = None

    def alloc_fd(self) -> int:
        """get_unused_fd_flags() → alloc_fd(): the lowest free descriptor, EMFILE when
        none is below RLIMIT_NOFILE; then, as sock_map_fd() goes on to allocate the
        file, alloc_empty_file()'s ENFILE at the host's fs.file-max."""
        for fd in range(FIRST_FD, self.nofile):
            if fd not in self.files and fd not in self.reserved:
                if self.table is not None:
                    self.table.alloc_file(self.cred)
                self.reserved.add(fd)
                return fd
        raise errno.kernel_error(errno.EMFILE)

    def fd_install(self, fd: int, f: SocketFile) -> None:
        """fd_install(): the reserved descriptor now names f."""
        self.reserved.discard(fd)
        self.files[fd] = f

    def put_unused_fd(self, fd: int) -> None:
        """put_unused_fd(): give back a reserved descriptor never installed."""
        self.reserved.discard(fd)

    def file(self, fd: int) -> SocketFile:
        """fdget(): this process's file for fd; EBADF for one that is not open (another
        process's numbers name nothing here)."""
        f = self.files.get(fd)
        if f is None:
            raise errno.kernel_error(errno.EBADF)
        if f.lost:
            raise errno.kernel_error(errno.EBADF, "its socket went with the UDP layer")
        return f


class UnknownProcess(LookupError):
    """A request names a pid that OpenProcess never gave (INVALID_ARGUMENT)."""


class ProcessTable:
    """The host's processes, under its kernel.pid_max and fs.file-max (`sysctl`)."""

    def __init__(self, sysctl: Sysctl | None = None) -> None:
        self.sysctl = sysctl if sysctl is not None else Sysctl()
        self._procs: dict[int, Process] = {}
        # The pid idr's cursor: where the search for the next pid starts.
        self._next_pid = FIRST_PID

    def open(self, comm: str, cred: Cred = ROOT, nofile: int = 0) -> Process:
        """A new process; nofile 0 is the default limit. ValueError for a limit past
        NR_OPEN_MAX; EAGAIN when every pid below kernel.pid_max is taken."""
        if nofile > NR_OPEN_MAX or nofile < 0:
            raise ValueError(f"nofile {nofile} is more than {NR_OPEN_MAX}")
        p = Process(self._alloc_pid(), comm[: TASK_COMM_LEN - 1], cred, nofile or NR_OPEN_DEFAULT, table=self)
        self._procs[p.pid] = p
        return p

    def _alloc_pid(self) -> int:
        """alloc_pid() → idr_alloc_cyclic(): the first free pid from the cursor up to
        kernel.pid_max, then from the bottom, which is RESERVED_PIDS once the cursor
        has passed it; EAGAIN when none is free (alloc_pid() turns ENOSPC into it)."""
        pid_max = self.sysctl.get_int("kernel.pid_max")
        low = RESERVED_PIDS if self._next_pid > RESERVED_PIDS else FIRST_PID
        start = max(self._next_pid, low)
        for pid in itertools.chain(range(start, pid_max), range(low, min(start, pid_max))):
            if pid not in self._procs:
                self._next_pid = pid + 1
                return pid
        raise errno.kernel_error(errno.EAGAIN, f"every pid below kernel.pid_max {pid_max} is taken")

    def nr_files(self) -> int:
        """The host's open files (fs.file-nr's first number)."""
        return sum(len(p.files) + len(p.reserved) for p in self._procs.values())

    def alloc_file(self, cred: Cred) -> None:
        """alloc_empty_file()'s limit: ENFILE when the host holds fs.file-max files,
        unless the caller has CAP_SYS_ADMIN ("privileged users can go above
        max_files"). Counted only for those it applies to."""
        if cred.capable(CAP_SYS_ADMIN):
            return
        if self.nr_files() >= self.sysctl.get_int("fs.file-max"):
            raise errno.kernel_error(errno.ENFILE, "fs.file-max reached")

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
