"""Overload with conservation: alice floods bob over the emulated wire from a
nonblocking socket while bob's receiver, with a small SO_RCVBUF, reads nothing until the
flood is over. Every datagram alice's sendto accepted is accounted for exactly: read by
bob, or counted as dropped somewhere (bob's UdpRcvbufErrors and UdpMemErrors, a qdisc
or device drop on either side, an IP-layer discard). Bob's queue stays within its
receive buffer plus one skb (__udp_enqueue_schedule_skb), and the stack serves the next
datagram normally afterwards.

The end of the flood is marked by a datagram to a second socket of bob's: the wire and
the layers keep order, so when it arrives every flood datagram has been through bob's
UDP layer."""

from __future__ import annotations

import json
import re
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.overload_common import nstat, py
from tests.e2e.stackrun import cli, launched

N = 3000
PAYLOAD = 64
FLOOD_PORT, MARK_PORT, SPORT = 9000, 9001, 40002
# SO_RCVBUF 4096 → sk_rcvbuf 8192 (doubled).
RCVBUF = 8192
# Counters any of which moving means a datagram went missing on the way, not in bob's
# receive buffer; nstat's names.
DROP_COUNTERS = (
    "IpOutDiscards",
    "IpOutNoRoutes",
    "IpInDiscards",
    "IpInHdrErrors",
    "IpInAddrErrors",
    "IpReasmFails",
    "UdpSndbufErrors",
    "UdpInErrors",
    "UdpNoPorts",
    "UdpInCsumErrors",
    "UdpMemErrors",
    "UdpRcvbufErrors",
)

RECEIVER = textwrap.dedent(
    """
    import json, struct, sys
    import stackemu.socket as socket
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    s.bind(("10.0.0.2", int(sys.argv[1])))
    mark = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    mark.bind(("10.0.0.2", int(sys.argv[2])))
    mark.settimeout(25)
    print("ready", flush=True)
    data, _ = mark.recvfrom(100)
    # SO_MEMINFO: sk_rmem_alloc, sk_rcvbuf, ..., sk_drops.
    mem = struct.unpack("=9I", s.getsockopt(socket.SOL_SOCKET, 55, 36))
    s.setblocking(False)
    read = 0
    payloads_ok = True
    for _ in range(int(sys.argv[3]) + 1):
        try:
            got = s.recv(2048)
        except BlockingIOError:
            break
        read += 1
        payloads_ok = payloads_ok and len(got) == int(sys.argv[4])
    print(json.dumps({"mark": data.decode(), "rmem": mem[0], "rcvbuf": mem[1], "drops": mem[8],
                      "read": read, "payloads_ok": payloads_ok}), flush=True)
    # One more, after the flood.
    s.settimeout(25)
    print(s.recv(2048).decode(), flush=True)
    """
)
SENDER = textwrap.dedent(
    """
    import json, sys
    import stackemu.socket as socket
    n, size = int(sys.argv[1]), int(sys.argv[2])
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("10.0.0.1", int(sys.argv[3])))
    s.setblocking(False)
    bob = ("10.0.0.2", int(sys.argv[4]))
    ok = eagain = 0
    for i in range(n):
        # A bounded number of retries on EAGAIN (send buffer full).
        for _ in range(1000):
            try:
                s.sendto(i.to_bytes(4, "big") + bytes(size - 4), bob)
            except BlockingIOError:
                eagain += 1
                continue
            ok += 1
            break
    s.setblocking(True)
    s.sendto(b"end", ("10.0.0.2", int(sys.argv[5])))
    print(json.dumps({"ok": ok, "eagain": eagain}), flush=True)
    sys.stdin.readline()
    s.sendto(b"after", bob)
    """
)


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[dict[str, str]]:
    yield from launched(str(tmp_path / "state"))


def _device_drops(env: dict[str, str], host: str) -> int:
    """What the NIC layer dropped on the host's eth0: RX and TX `dropped` of `ip -s
    link`, the qdisc's `dropped` (`tc -s qdisc`), and the backlog drops of
    /proc/net/softnet_stat (its second column, hex)."""
    total = 0
    out = cli(env, "ip", "-s", "link", "show", f"{host}:eth0")
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    for i, line in enumerate(lines):
        if line.split()[:1] in (["RX:"], ["TX:"]):
            # bytes packets errors dropped ...
            total += int(lines[i + 1].split()[3])
    out = cli(env, "tc", "-s", "qdisc", "show", "dev", f"{host}:eth0")
    assert out.returncode == 0, out.stderr
    total += sum(int(m) for m in re.findall(r"dropped (\d+)", out.stdout))
    out = cli(env, "softnet_stat", "--host", host)
    assert out.returncode == 0, out.stderr
    total += sum(int(line.split()[1], 16) for line in out.stdout.splitlines() if line.strip())
    return total


def test_flood_is_conserved_and_bounded(stack: dict[str, str]) -> None:
    before = {h: nstat(stack, h) for h in ("alice", "bob")}
    links_before = {h: _device_drops(stack, h) for h in ("alice", "bob")}
    recv = py(stack, "bob", RECEIVER, str(FLOOD_PORT), str(MARK_PORT), str(N), str(PAYLOAD))
    assert recv.stdout is not None and recv.stdin is not None
    assert recv.stdout.readline() == "ready\n"
    send = py(stack, "alice", SENDER, str(N), str(PAYLOAD), str(SPORT), str(FLOOD_PORT), str(MARK_PORT))
    assert send.stdout is not None and send.stdin is not None
    line = send.stdout.readline()
    assert line, send.stderr.read() if send.stderr else ""
    sent = json.loads(line)
    got_line = recv.stdout.readline()
    assert got_line, recv.stderr.read() if recv.stderr else ""
    got = json.loads(got_line)
    after = {h: nstat(stack, h) for h in ("alice", "bob")}
    links_after = {h: _device_drops(stack, h) for h in ("alice", "bob")}

    # The flood, then the marker that ends it, arrived.
    assert got["mark"] == "end" and got["payloads_ok"] is True
    assert 0 < sent["ok"] <= N
    delta = {h: {k: after[h].get(k, 0) - before[h].get(k, 0) for k in DROP_COUNTERS} for h in after}
    rcvbuf_errors = delta["bob"]["UdpRcvbufErrors"]
    elsewhere = {
        f"{h}:{k}": v
        for h in delta
        for k, v in delta[h].items()
        if v and (h, k) != ("bob", "UdpRcvbufErrors")
    }
    # RcvbufErrors are InErrors too: not a drop of their own.
    if elsewhere.get("bob:UdpInErrors") == rcvbuf_errors:
        del elsewhere["bob:UdpInErrors"]
    # A send refused with EAGAIN (sndbuf full) is a SndbufErrors too (sock_alloc_send_pskb
    # failing in udp_sendmsg), and no datagram: the sender retried it.
    if elsewhere.get("alice:UdpSndbufErrors") == sent["eagain"]:
        del elsewhere["alice:UdpSndbufErrors"]
    link_drops = sum(links_after[h] - links_before[h] for h in links_after)
    # Conservation, exactly.
    assert sent["ok"] == got["read"] + rcvbuf_errors + sum(elsewhere.values()) + link_drops, (
        sent,
        got,
        rcvbuf_errors,
        elsewhere,
        link_drops,
    )
    # The receiver read slowly (not at all), so the buffer overflowed, and nothing was
    # lost anywhere but there.
    assert rcvbuf_errors > 0
    assert (elsewhere, link_drops) == ({}, 0)
    assert got["drops"] == rcvbuf_errors
    # Bounded: __udp_enqueue_schedule_skb() admits a datagram while rmem + truesize <=
    # rcvbuf (the first one whatever its size), so rmem never exceeds rcvbuf + one skb
    # (a 64-byte datagram's truesize is far below RCVBUF).
    assert got["rcvbuf"] == RCVBUF
    assert 0 < got["rmem"] <= RCVBUF
    assert got["read"] == sent["ok"] - rcvbuf_errors

    # And afterwards the stack serves normally.
    send.stdin.write("\n")
    send.stdin.flush()
    assert send.wait(timeout=20) == 0
    out, err = recv.communicate(timeout=20)
    assert (out, recv.returncode) == ("after\n", 0), err
    final = nstat(stack, "bob")
    assert final["UdpInDatagrams"] - before["bob"].get("UdpInDatagrams", 0) == got["read"] + 2
