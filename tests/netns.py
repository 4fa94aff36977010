"""A network namespace of a test's own for comparing with this machine's kernel: lo and
eth0 10.0.0.1/24 (brd +) on a veth pair whose peer (10.0.0.2/24) lives in a second
namespace. Needs root and iproute2; the namespaces are removed afterwards."""

from __future__ import annotations

import secrets
import shutil
import subprocess
from collections.abc import Iterator

IP = shutil.which("ip")


def ip_in(ns: str, *args: str) -> subprocess.CompletedProcess[str]:
    """`ip -4 -n NS ARGS`: what the kernel prints and exits with."""
    assert IP is not None
    return subprocess.run([IP, "-4", "-n", ns, *args], capture_output=True, text=True, timeout=10)


def veth_netns(tag: str) -> Iterator[str]:
    """A fixture's body: the namespace's name (se-TAG-xxxxxx), then its removal."""
    assert IP is not None
    ns, peer = f"se-{tag}-{secrets.token_hex(3)}", f"se-{tag}p-{secrets.token_hex(3)}"
    for name in (ns, peer):
        subprocess.run([IP, "netns", "add", name], check=True, timeout=10)
    try:
        subprocess.run(
            [IP, "link", "add", "eth0", "netns", ns, "type", "veth", "peer", "name", "eth0", "netns", peer],
            check=True,
            timeout=10,
        )
        for name in (ns, peer):
            ip_in(name, "link", "set", "lo", "up")
            ip_in(name, "link", "set", "eth0", "up")
        ip_in(ns, "addr", "add", "10.0.0.1/24", "brd", "+", "dev", "eth0")
        ip_in(peer, "addr", "add", "10.0.0.2/24", "brd", "+", "dev", "eth0")
        yield ns
    finally:
        for name in (ns, peer):
            subprocess.run([IP, "netns", "del", name], timeout=10)
