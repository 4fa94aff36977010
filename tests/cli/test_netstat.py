"""`stackemu netstat -s`: net-tools netstat's statistics over the counters nstat
reads, after traffic the test knows."""

from __future__ import annotations

import json

from tests.cli.hoststack import HostStack, hoststack_fixture  # noqa: F401

LOOPBACK = 0x7F000001

# What net-tools 2.10 `netstat -s` printed on Linux 6.18 in a fresh network namespace
# after this traffic on lo (three datagrams to a bound socket, one read, one to a port
# nobody has), its Tcp and TcpExt groups left out as this stack has no TCP.
REAL = """\
Ip:
    Forwarding: 2
    5 total packets received
    0 forwarded
    0 incoming packets discarded
    5 incoming packets delivered
    5 requests sent out
    OutTransmits: 5
Icmp:
    1 ICMP messages received
    0 input ICMP message failed
    ICMP input histogram:
        destination unreachable: 1
    1 ICMP messages sent
    0 ICMP messages failed
    ICMP output histogram:
        destination unreachable: 1
IcmpMsg:
        InType3: 1
        OutType3: 1
Udp:
    1 packets received
    1 packets to unknown port received
    0 packet receive errors
    4 packets sent
    0 receive buffer errors
    0 send buffer errors
UdpLite:
IpExt:
    InOctets: 200
    OutOctets: 200
    InNoECTPkts: 5
"""


def known_traffic(h: HostStack) -> None:
    """The UDP layer's part for real; the IP layer's counters are what the kernel's
    were for the same packets (the looped-back UDP layer bypasses IP)."""
    pid = h.process("app")
    rx = h.socket(pid)
    h.bind(pid, rx, LOOPBACK, 47001)
    tx = h.socket(pid)
    for _ in range(3):
        h.sendto(pid, tx, b"x" * 10, LOOPBACK, 47001)
    h.sendto(pid, tx, b"y", LOOPBACK, 47999)
    assert h.recv(pid, rx) == b"x" * 10
    mib = h.ip.mib
    for field, n in (("InReceives", 5), ("InDelivers", 5), ("OutRequests", 5), ("OutTransmits", 5)):
        mib.ip.set(field, n)
    mib.icmp.inc("InMsgs")
    mib.icmp.inc("OutMsgs")
    mib.icmpmsg.inc_in(3)
    mib.icmpmsg.inc_out(3)
    for field, n in (("InOctets", 200), ("OutOctets", 200), ("InNoECTPkts", 5)):
        mib.ipext.set(field, n)


def test_statistics_after_known_traffic(hoststack: HostStack) -> None:
    h = hoststack
    known_traffic(h)
    r = h.run("netstat", "-s")
    assert (r.exit_code, r.stderr) == (0, "")
    assert r.stdout == REAL
    # -u: the Udp group and the groups netstat has no table for.
    r = h.run("netstat", "-su")
    assert r.stdout == (
        "IcmpMsg:\n    InType3: 1\n    OutType3: 1\nUdp:\n" + REAL[REAL.index("    1 packets received") :]
    )


def test_json_matches_the_text(hoststack: HostStack) -> None:
    h = hoststack
    known_traffic(h)
    r = h.run("netstat", "-s", "--json")
    data = json.loads(r.stdout)
    assert list(data) == ["Ip", "Icmp", "IcmpMsg", "Udp", "UdpLite", "IpExt"]
    assert data["Udp"]["InDatagrams"] == 1
    assert data["Udp"]["NoPorts"] == 1
    assert data["Udp"]["OutDatagrams"] == 4
    assert data["IcmpMsg"] == {"InType3": 1, "OutType3": 1}
    assert data["Ip"]["Forwarding"] == 2


def test_usage(hoststack: HostStack) -> None:
    r = hoststack.run("netstat", "-x")
    assert (r.exit_code, r.stderr.splitlines()[0]) == (1, "netstat: invalid option -- 'x'")
    r = hoststack.run("netstat")
    assert r.exit_code == 1
