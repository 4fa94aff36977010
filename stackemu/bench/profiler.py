"""`stackemu bench --profile HOST.SERVICE`: py-spy samples one service process while the
scenarios run (`py-spy record --gil --format raw`, RATE times a second, only the thread
holding the GIL: the samples are where the process runs Python, its event loop
included, and not gRPC's own threads waiting in poll), then a flame graph SVG of them,
the collapsed stacks beside it (speedscope and flamegraph.pl read them), and the
functions with the most samples of their own. py-spy reads the process's memory
(process_vm_readv) and stops it at each sample: it needs ptrace rights over it (root,
or kernel.yama.ptrace_scope 0 for one's own processes), and a profiled service runs
somewhat slower."""

from __future__ import annotations

import select
import shutil
import signal
import subprocess
import sys
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from stackemu.bench import flame
from stackemu.topology import HOSTS, LAYERS

RATE = 100
TOP = 15
# py-spy says it is sampling once it has attached; it gives up on a process it cannot
# read well before this.
ATTACH_TIMEOUT = 20.0
STOP_TIMEOUT = 30.0


class ProfileError(Exception):
    """The profiler could not run; the message says why."""


def parse_service(text: str) -> tuple[str, str]:
    """ "alice.udp" → ("alice", "udp"); ValueError naming what is allowed otherwise."""
    host, dot, layer = text.partition(".")
    hosts = [h.name for h in HOSTS]
    if not dot or host not in hosts or layer not in LAYERS:
        raise ValueError(
            f"{text!r} is not HOST.SERVICE with HOST one of {', '.join(hosts)} "
            f"and SERVICE one of {', '.join(LAYERS)} (e.g. alice.udp)"
        )
    return host, layer


def py_spy() -> str:
    """The py-spy next to this Python (a virtualenv's), else the one on PATH."""
    beside = Path(sys.executable).with_name("py-spy")
    if beside.exists():
        return str(beside)
    found = shutil.which("py-spy")
    if found is None:
        raise ProfileError("py-spy is not installed (it is one of the dev dependencies: pip install py-spy)")
    return found


def _why(stderr: str) -> str:
    """py-spy's error without its Rust backtrace."""
    lines = []
    for line in stderr.splitlines():
        if line.startswith("Stack backtrace:"):
            break
        if line.strip():
            lines.append(line.strip())
    return " ".join(lines) or "no message"


class Profiler:
    """py-spy on one process from __enter__ to __exit__; result() afterwards."""

    def __init__(self, service: str, pid: int, svg: Path) -> None:
        self.service = service
        self.pid = pid
        self.svg = svg
        self.collapsed = svg.with_suffix(".collapsed.txt")
        self.proc: subprocess.Popen[str] | None = None
        self.stacks: list[flame.Stack] = []

    def __enter__(self) -> Self:
        cmd = [
            py_spy(),
            "record",
            "--gil",
            "-p",
            str(self.pid),
            "-o",
            str(self.collapsed),
            "-f",
            "raw",
            "-r",
            str(RATE),
        ]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        assert self.proc.stdout is not None
        ready, _, _ = select.select([self.proc.stdout], [], [], ATTACH_TIMEOUT)
        first = self.proc.stdout.readline() if ready else ""
        if "Sampling" not in first:
            self.proc.kill()
            _, err = self.proc.communicate()
            raise ProfileError(
                f"py-spy cannot profile {self.service} (pid {self.pid}): {_why(err)} "
                "(it needs ptrace rights over the process: run as root, or as its owner with "
                "kernel.yama.ptrace_scope = 0)"
            )
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        assert self.proc is not None
        if kind is not None:
            self.proc.kill()
            self.proc.communicate()
            return
        # ^C is how py-spy record is told to stop: it writes its output, then exits.
        self.proc.send_signal(signal.SIGINT)
        try:
            _, err = self.proc.communicate(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.communicate()
            raise ProfileError(f"py-spy did not stop within {STOP_TIMEOUT:.0f} s") from None
        try:
            text = self.collapsed.read_text()
        except OSError as e:
            raise ProfileError(f"py-spy wrote no profile ({_why(err)}): {e}") from None
        self.stacks = flame.parse(text)
        self.svg.write_text(flame.svg(self.stacks, f"stackemu bench: {self.service} (pid {self.pid})"))

    def result(self) -> dict[str, Any]:
        """What the JSON keeps: the files, the sample count and the top functions."""
        total = sum(n for _, n in self.stacks)
        return {
            "service": self.service,
            "pid": self.pid,
            "rate_hz": RATE,
            "svg": str(self.svg),
            "collapsed": str(self.collapsed),
            "samples": total,
            "top": [
                {"function": name, "own_samples": n, "own_pct": 100 * n / total if total else 0.0}
                for name, n in flame.own(self.stacks, TOP)
            ],
        }
