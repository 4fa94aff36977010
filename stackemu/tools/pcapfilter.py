"""Capture filters in tcpdump's language, compiled by libpcap: the real tcpdump's -d,
-dd and -ddd (pcap_compile() and bpf_dump() on a dead handle of the capture's link
type, `-y`), so every expression means what it means to tcpdump and is refused with
tcpdump's own message and exit status. The taps run the instructions with the
emulator's classic BPF interpreter (services/core/bpf.py)."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Sequence

from services.core.bpf import SockFilter, parse_tcpdump_dd
from stackemu.nic.v1 import nic_pb2

TCPDUMP = "tcpdump"
COMPILE_TIMEOUT = 30.0


class FilterError(Exception):
    """libpcap refused the expression: what tcpdump printed and its exit status."""

    def __init__(self, stderr: str, code: int) -> None:
        super().__init__(stderr)
        self.stderr = stderr
        self.code = code


def dump(expr: Sequence[str], linktype: str, flag: str = "-dd") -> tuple[str, str]:
    """`tcpdump FLAG -y LINKTYPE -- EXPR...`: its output and its warnings, or
    FilterError with its message."""
    exe = shutil.which(TCPDUMP)
    if exe is None:
        raise FilterError(
            "tcpdump: filter expressions are compiled by libpcap through the real tcpdump, "
            "which is not installed (scripts/bootstrap.sh installs it)\n",
            1,
        )
    r = subprocess.run(
        [exe, flag, "-y", linktype, "--", *expr],
        capture_output=True,
        text=True,
        timeout=COMPILE_TIMEOUT,
        check=False,
    )
    if r.returncode != 0:
        raise FilterError(r.stderr, r.returncode)
    return r.stdout, r.stderr


def compile_filter(expr: Sequence[str], linktype: str) -> tuple[list[nic_pb2.SockFilter], str]:
    """The program for a tap (empty for no expression) and tcpdump's warnings."""
    if not expr:
        return [], ""
    text, warnings = dump(expr, linktype)
    prog: list[SockFilter] = parse_tcpdump_dd(text)
    return [nic_pb2.SockFilter(code=f.code, jt=f.jt, jf=f.jf, k=f.k) for f in prog], warnings
