"""The reference: this machine's kernel, driven from Python the way a program drives it
(stdlib sockets on 127.0.0.1, one sendto per datagram). On lo the kernel delivers a
datagram before sendto returns (loopback_xmit → netif_rx, then the NET_RX softirq runs
as the sender leaves its bh-disabled section), so one thread sending a batch and then
reading it back is the fastest a Python loop can drive it; reads are non-blocking and
only wait (select, at most the budget's timeout) when the queue is empty."""

from __future__ import annotations

import select
import socket
import subprocess
import sys
import time

from services.core.socket_uapi import SOL_UDP, UDP_GRO, UDP_SEGMENT
from stackemu.bench.sample import Budget, RoundTrips, Transfer

LO = "127.0.0.1"
# Room for the largest datagram read (a GRO'd one is at most 64 KB of payload).
RECV_BUFSIZE = 65535


def _udp() -> socket.socket:
    return socket.socket(socket.AF_INET, socket.SOCK_DGRAM)


def _drain(rx: socket.socket, want: int, got: Transfer, timeout: float) -> bool:
    """Read until `want` payload bytes have come in all; False when the queue stayed
    empty for `timeout` seconds first."""
    while got.received_bytes < want:
        try:
            n = len(rx.recv(RECV_BUFSIZE, socket.MSG_DONTWAIT))
        except BlockingIOError:
            if not select.select([rx], [], [], timeout)[0]:
                return False
            continue
        got.received += 1
        got.received_bytes += n
    return True


def throughput(budget: Budget, payload: int = 64, batch: int = 64, gso_size: int = 0) -> Transfer:
    """Datagrams of `payload` bytes over lo, `batch` sendto calls then the reads that
    take them back, until budget.count are sent or budget.seconds pass. With gso_size,
    the sender sets UDP_SEGMENT (each send is segmented into gso_size datagrams,
    udp_send_skb) and the receiver UDP_GRO (udp_gro_receive coalesces them again, one
    read per send)."""
    with _udp() as rx, _udp() as tx:
        rx.bind((LO, 0))
        dst = rx.getsockname()
        if gso_size:
            tx.setsockopt(SOL_UDP, UDP_SEGMENT, gso_size)
            rx.setsockopt(SOL_UDP, UDP_GRO, 1)
        data = bytes(payload)
        got = Transfer()
        start = time.perf_counter()
        while got.sent < budget.count and time.perf_counter() - start < budget.seconds:
            for _ in range(min(batch, budget.count - got.sent)):
                tx.sendto(data, dst)
                got.sent += 1
                got.sent_bytes += payload
            if not _drain(rx, got.sent_bytes, got, budget.timeout):
                break
        got.seconds = time.perf_counter() - start
    return got


def ping_pong(budget: Budget) -> RoundTrips:
    """One datagram (64 bytes) at a time to an echo in a process of its own (python -m
    stackemu.bench.echo) over lo, and back: each round trip from before sendto to after
    recv."""
    echo = subprocess.Popen(
        [sys.executable, "-m", "stackemu.bench.echo", str(budget.timeout), str(budget.count)],
        stdout=subprocess.PIPE,
        text=True,
    )
    result = RoundTrips()
    try:
        assert echo.stdout is not None
        port = int(echo.stdout.readline())
        with _udp() as s:
            s.settimeout(budget.timeout)
            data = bytes(64)
            start = time.perf_counter()
            while len(result.rtts_us) < budget.count and time.perf_counter() - start < budget.seconds:
                t0 = time.perf_counter_ns()
                s.sendto(data, (LO, port))
                try:
                    s.recv(RECV_BUFSIZE)
                except TimeoutError:
                    result.lost += 1
                    break
                result.rtts_us.append((time.perf_counter_ns() - t0) / 1e3)
            s.sendto(b"", (LO, port))
        echo.wait(budget.timeout + 5)
    finally:
        if echo.poll() is None:
            echo.kill()
            echo.wait()
    return result
