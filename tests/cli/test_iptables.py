# ruff: noqa: E501  (the recorded lines are iptables' own, wider than this project's)
"""`stackemu iptables` against a real NetfilterService served in-process: every line
it prints, and every exit status, compared with what iptables-legacy 1.8.9 printed for
the same command lines on a 6.18 kernel (recorded in a network namespace).

The service runs on its own event loop in a thread (as the IP process runs it); the
CLI talks to it over gRPC as it would to a running stack. Port and host names come
from a fixed /etc/services and /etc/hosts, so the recordings' names do not depend on
the machine the tests run on.
"""

from __future__ import annotations

import asyncio
import json
import os
import shlex
import threading
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from click.testing import CliRunner, Result

from services.core.dropreason import DropStats
from services.core.trace import Tracer
from services.ip.netfilter import NF_INET_LOCAL_IN, Netfilter
from services.ip.nf_servicer import NetfilterServicer
from stackemu.cli import main
from stackemu.ip.v1 import netfilter_pb2_grpc
from stackemu.tools import iptables as tool
from tests.services.test_netfilter import udp

Entry = tuple[str, int, tuple[str, ...], tuple[str, ...]]


class NetfilterServer:
    """A Netfilter and its NetfilterService on 127.0.0.1, on a loop of its own."""

    def __init__(self) -> None:
        names = {1: "lo", 2: "eth0"}
        self.nf = Netfilter(DropStats(), lambda i: names.get(i, ""), lambda *a: None, Tracer("ip", "alice"))
        self.loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(
            target=self.loop.run_until_complete, args=(self._serve(),), daemon=True
        )
        self._thread.start()
        assert self._ready.wait(10), "the NetfilterService did not start"

    async def _serve(self) -> None:
        server = grpc.aio.server()

        async def flush() -> None:
            return None

        netfilter_pb2_grpc.add_NetfilterServiceServicer_to_server(NetfilterServicer(self.nf, flush), server)
        self.port = server.add_insecure_port("127.0.0.1:0")
        await server.start()
        self._stop = asyncio.Event()
        self._ready.set()
        await self._stop.wait()
        await server.stop(None)

    def call(self, fn: object, *args: object) -> None:
        """Run fn(*args) on the service's loop (the data path is not thread-safe)."""
        fut = asyncio.run_coroutine_threadsafe(self._call(fn, *args), self.loop)
        fut.result(10)

    async def _call(self, fn: object, *args: object) -> None:
        fn(*args)  # type: ignore[operator]

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(10)


def _fake_etc(path: str) -> list[list[str]]:
    if path == "/etc/services":
        return [line.split() for line in SERVICES]
    if path == "/etc/hosts":
        return [["127.0.0.1", "localhost"]]
    return []


@pytest.fixture
def ipt(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[NetfilterServer]:
    server = NetfilterServer()
    hosts = {"alice": {"ip": {"addr": f"127.0.0.1:{server.port}", "pid": os.getpid(), "log": ""}}}
    (tmp_path / "stack.json").write_text(json.dumps({"base_port": 0, "hosts": hosts}))
    monkeypatch.setenv("STACKEMU_STATE_DIR", str(tmp_path))
    monkeypatch.delenv("STACKEMU_HOST", raising=False)
    monkeypatch.setattr(tool, "_etc", _fake_etc)
    try:
        yield server
    finally:
        server.close()


def iptables(*args: str) -> Result:
    return CliRunner().invoke(main, ["iptables", *args])


def _lines(text: str) -> tuple[str, ...]:
    return tuple(text.splitlines())


def replay(entries: list[Entry]) -> None:
    for cmd, rc, out, err in entries:
        r = iptables(*shlex.split(cmd))
        assert r.exception is None or isinstance(r.exception, SystemExit), (cmd, r.exception)
        # stackemu adds the kernel's log line after a refusal (iptables sends you to
        # dmesg, which the emulated kernel does not have); the rest is iptables'.
        stderr = tuple(line for line in _lines(r.stderr) if not line.startswith("stackemu: "))
        assert (r.exit_code, _lines(r.stdout), stderr) == (rc, out, err), cmd


@pytest.mark.parametrize("name", ["basic", "mangle", "chains", "targets", "counters", "addresses"])
def test_listings_are_iptables_own(ipt: NetfilterServer, name: str) -> None:
    replay(CASES[name])


def test_a_session_of_errors_and_edits(ipt: NetfilterServer) -> None:
    replay(TRANSCRIPT)


def test_counters_from_traffic(ipt: NetfilterServer) -> None:
    assert iptables("-A", "INPUT", "-p", "udp", "--dport", "9000", "-j", "DROP").exit_code == 0
    skb = udp(9000, b"x" * 1000)
    for _ in range(150):
        ipt.call(ipt.nf.nf_hook, NF_INET_LOCAL_IN, udp(9000, b"x" * 1000), 2, 0, lambda s: None)
        ipt.call(ipt.nf.nf_hook, NF_INET_LOCAL_IN, udp(53), 2, 0, lambda s: None)
    r = iptables("-L", "INPUT", "-v", "-n")
    assert r.stdout.splitlines() == [
        f"Chain INPUT (policy ACCEPT 150 packets, {150 * udp(53).len} bytes)",
        " pkts bytes target     prot opt in     out     source               destination         ",
        f"  150  {150 * skb.len // 1000}K DROP       17   --  *      *       0.0.0.0/0            0.0.0.0/0"
        "            udp dpt:9000",
    ]
    r = iptables("-S", "INPUT", "-v")
    assert r.stdout.splitlines()[1] == f"-A INPUT -p udp -m udp --dport 9000 -c 150 {150 * skb.len} -j DROP"
    assert iptables("-Z", "INPUT", "1").exit_code == 0
    assert iptables("-S", "INPUT", "-v").stdout.splitlines() == [
        f"-P INPUT ACCEPT -c 150 {150 * udp(53).len}",
        "-A INPUT -p udp -m udp --dport 9000 -c 0 0 -j DROP",
    ]


def test_the_kernels_reason_follows_a_refusal(ipt: NetfilterServer) -> None:
    r = iptables("-A", "INPUT", "-j", "TTL", "--ttl-set", "3")
    assert (r.exit_code, r.stderr) == (
        1,
        "iptables: Invalid argument. Run `dmesg' for more information.\n"
        "stackemu: the kernel logged: x_tables: ip_tables: TTL target: only valid in mangle table, not filter\n",
    )


def test_nat_is_not_built(ipt: NetfilterServer) -> None:
    r = iptables("-t", "nat", "-A", "POSTROUTING", "-j", "ACCEPT")
    assert (r.exit_code, r.stdout) == (3, "")
    assert r.stderr.splitlines() == [
        "iptables v1.8.9 (legacy): can't initialize iptables table `nat': Table does not exist "
        "(do you need to insmod?)",
        "Perhaps iptables or your kernel needs to be upgraded.",
        "stackemu: the nat table is not built: stackemu has no connection tracking or NAT",
    ]


def test_help(ipt: NetfilterServer) -> None:
    r = iptables("-h")
    assert r.exit_code == 0
    assert r.stdout.startswith("iptables v1.8.9 (legacy)\n\nUsage: iptables -[ACD] chain rule-specification")
    assert "Examples:" in r.stdout and "--queue-num 0" in r.stdout
    r = iptables("--help")
    assert r.exit_code == 0 and "stackemu iptables -L -v -n --line-numbers" in r.stdout


def test_a_host_without_a_running_service(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STACKEMU_STATE_DIR", str(tmp_path))
    r = iptables("-L")
    assert r.exit_code == 1 and "no emulated stack is running" in r.stderr
    hosts = {"alice": {"ip": {"addr": "127.0.0.1:1", "pid": os.getpid(), "log": ""}}}
    (tmp_path / "stack.json").write_text(json.dumps({"base_port": 0, "hosts": hosts}))
    r = iptables("-L")
    assert r.exit_code == 1 and "cannot reach host alice's IP service at 127.0.0.1:1" in r.stderr
    r = iptables("--host", "carol", "-L")
    assert r.exit_code == 1 and "no host 'carol'" in r.stderr


# Recorded from iptables-legacy 1.8.9 in a network namespace of a 6.18 kernel:
# (command line, exit status, stdout lines, stderr lines).
CASES: dict[str, list[Entry]] = {
    "basic": [
        ("-A INPUT -s 10.0.0.1 -j ACCEPT", 0, (), ()),
        ("-A INPUT -p udp --dport 9000 -j NFQUEUE --queue-num 3 --queue-bypass", 0, (), ()),
        ("-A INPUT -p udp -m multiport --dports 1,2:5 -j DROP", 0, (), ()),
        ("-A INPUT '!' -s 10.1.0.0/16 -d 10.0.0.0/8 -i eth+ -p icmp -j REJECT", 0, (), ()),
        ("-A INPUT -f -j LOG --log-prefix 'hi: ' --log-level 4", 0, (), ()),
        ("-A INPUT '!' -f -m mark --mark 0x1/0xff -j MARK --set-mark 5", 0, (), ()),
        (
            "-L -v -n",
            0,
            (
                "Chain INPUT (policy ACCEPT 0 packets, 0 bytes)",
                " pkts bytes target     prot opt in     out     source               destination         ",
                "    0     0 ACCEPT     0    --  *      *       10.0.0.1             0.0.0.0/0           ",
                "    0     0 NFQUEUE    17   --  *      *       0.0.0.0/0            0.0.0.0/0            udp dpt:9000 NFQUEUE num 3 bypass",
                "    0     0 DROP       17   --  *      *       0.0.0.0/0            0.0.0.0/0            multiport dports 1,2:5",
                "    0     0 REJECT     1    --  eth+   *      !10.1.0.0/16          10.0.0.0/8           reject-with icmp-port-unreachable",
                '    0     0 LOG        0    -f  *      *       0.0.0.0/0            0.0.0.0/0            LOG flags 0 level 4 prefix "hi: "',
                "    0     0 MARK       0    !f  *      *       0.0.0.0/0            0.0.0.0/0            mark match 0x1/0xff MARK set 0x5",
                "",
                "Chain FORWARD (policy ACCEPT 0 packets, 0 bytes)",
                " pkts bytes target     prot opt in     out     source               destination         ",
                "",
                "Chain OUTPUT (policy ACCEPT 0 packets, 0 bytes)",
                " pkts bytes target     prot opt in     out     source               destination         ",
            ),
            (),
        ),
        (
            "-L -v -n --line-numbers",
            0,
            (
                "Chain INPUT (policy ACCEPT 0 packets, 0 bytes)",
                "num   pkts bytes target     prot opt in     out     source               destination         ",
                "1        0     0 ACCEPT     0    --  *      *       10.0.0.1             0.0.0.0/0           ",
                "2        0     0 NFQUEUE    17   --  *      *       0.0.0.0/0            0.0.0.0/0            udp dpt:9000 NFQUEUE num 3 bypass",
                "3        0     0 DROP       17   --  *      *       0.0.0.0/0            0.0.0.0/0            multiport dports 1,2:5",
                "4        0     0 REJECT     1    --  eth+   *      !10.1.0.0/16          10.0.0.0/8           reject-with icmp-port-unreachable",
                '5        0     0 LOG        0    -f  *      *       0.0.0.0/0            0.0.0.0/0            LOG flags 0 level 4 prefix "hi: "',
                "6        0     0 MARK       0    !f  *      *       0.0.0.0/0            0.0.0.0/0            mark match 0x1/0xff MARK set 0x5",
                "",
                "Chain FORWARD (policy ACCEPT 0 packets, 0 bytes)",
                "num   pkts bytes target     prot opt in     out     source               destination         ",
                "",
                "Chain OUTPUT (policy ACCEPT 0 packets, 0 bytes)",
                "num   pkts bytes target     prot opt in     out     source               destination         ",
            ),
            (),
        ),
        (
            "-S",
            0,
            (
                "-P INPUT ACCEPT",
                "-P FORWARD ACCEPT",
                "-P OUTPUT ACCEPT",
                "-A INPUT -s 10.0.0.1/32 -j ACCEPT",
                "-A INPUT -p udp -m udp --dport 9000 -j NFQUEUE --queue-num 3 --queue-bypass",
                "-A INPUT -p udp -m multiport --dports 1,2:5 -j DROP",
                "-A INPUT ! -s 10.1.0.0/16 -d 10.0.0.0/8 -i eth+ -p icmp -j REJECT --reject-with icmp-port-unreachable",
                '-A INPUT -f -j LOG --log-prefix "hi: "',
                "-A INPUT ! -f -m mark --mark 0x1/0xff -j MARK --set-xmark 0x5/0xffffffff",
            ),
            (),
        ),
        (
            "-L",
            0,
            (
                "Chain INPUT (policy ACCEPT)",
                "target     prot opt source               destination         ",
                "ACCEPT     all  --  10.0.0.1             anywhere            ",
                "NFQUEUE    udp  --  anywhere             anywhere             udp dpt:9000 NFQUEUE num 3 bypass",
                "DROP       udp  --  anywhere             anywhere             multiport dports 1,2:5",
                "REJECT     icmp -- !10.1.0.0/16          10.0.0.0/8           reject-with icmp-port-unreachable",
                'LOG        all  -f  anywhere             anywhere             LOG level warn prefix "hi: "',
                "MARK       all  !f  anywhere             anywhere             mark match 0x1/0xff MARK set 0x5",
                "",
                "Chain FORWARD (policy ACCEPT)",
                "target     prot opt source               destination         ",
                "",
                "Chain OUTPUT (policy ACCEPT)",
                "target     prot opt source               destination         ",
            ),
            (),
        ),
        (
            "-L INPUT 2 -v -n",
            0,
            (
                "    0     0 NFQUEUE    17   --  *      *       0.0.0.0/0            0.0.0.0/0            udp dpt:9000 NFQUEUE num 3 bypass",
            ),
            (),
        ),
        (
            "-S INPUT 2",
            0,
            ("-A INPUT -p udp -m udp --dport 9000 -j NFQUEUE --queue-num 3 --queue-bypass",),
            (),
        ),
        (
            "-nvL INPUT",
            0,
            (
                "Chain INPUT (policy ACCEPT 0 packets, 0 bytes)",
                " pkts bytes target     prot opt in     out     source               destination         ",
                "    0     0 ACCEPT     0    --  *      *       10.0.0.1             0.0.0.0/0           ",
                "    0     0 NFQUEUE    17   --  *      *       0.0.0.0/0            0.0.0.0/0            udp dpt:9000 NFQUEUE num 3 bypass",
                "    0     0 DROP       17   --  *      *       0.0.0.0/0            0.0.0.0/0            multiport dports 1,2:5",
                "    0     0 REJECT     1    --  eth+   *      !10.1.0.0/16          10.0.0.0/8           reject-with icmp-port-unreachable",
                '    0     0 LOG        0    -f  *      *       0.0.0.0/0            0.0.0.0/0            LOG flags 0 level 4 prefix "hi: "',
                "    0     0 MARK       0    !f  *      *       0.0.0.0/0            0.0.0.0/0            mark match 0x1/0xff MARK set 0x5",
            ),
            (),
        ),
    ],
    "mangle": [
        ("-t mangle -A PREROUTING -m tos --tos 0x10 -j TTL --ttl-set 5", 0, (), ()),
        ("-t mangle -A PREROUTING -m ttl --ttl-lt 5 -j TTL --ttl-dec 1", 0, (), ()),
        ("-t mangle -A PREROUTING -m ttl --ttl-gt 5 -j TTL --ttl-inc 2", 0, (), ()),
        ("-t mangle -A PREROUTING -m ttl --ttl-eq 5 -j TOS --set-tos 0x10", 0, (), ()),
        ("-t mangle -A PREROUTING -m length --length 100:200 -j MARK --or-mark 3", 0, (), ()),
        ("-t mangle -A PREROUTING -m length --length 100 -j MARK --and-mark 3", 0, (), ()),
        ("-t mangle -A PREROUTING -m length '!' --length 100: -j MARK --set-xmark 3/7", 0, (), ()),
        ("-t mangle -A PREROUTING -m mark '!' --mark 4 -j TOS --set-tos Minimize-Delay", 0, (), ()),
        ("-t mangle -A PREROUTING -m tos '!' --tos 0x10/0x3f -j TOS --set-tos 0x10/0x3f", 0, (), ()),
        ("-t mangle -A OUTPUT -m ttl '!' --ttl-eq 3 -j TOS --and-tos 0x3", 0, (), ()),
        ("-t mangle -A OUTPUT -m tos --tos Minimize-Cost -j TOS --or-tos 0x8", 0, (), ()),
        ("-t mangle -A OUTPUT -j TOS --xor-tos 0x4", 0, (), ()),
        ("-t raw -A PREROUTING -p udp --sport 53 -j DROP", 0, (), ()),
        (
            "-t mangle -L -v -n",
            0,
            (
                "Chain PREROUTING (policy ACCEPT 0 packets, 0 bytes)",
                " pkts bytes target     prot opt in     out     source               destination         ",
                "    0     0 TTL        0    --  *      *       0.0.0.0/0            0.0.0.0/0            tos match0x10/0xff TTL set to 5",
                "    0     0 TTL        0    --  *      *       0.0.0.0/0            0.0.0.0/0            TTL match TTL < 5 TTL decrement by 1",
                "    0     0 TTL        0    --  *      *       0.0.0.0/0            0.0.0.0/0            TTL match TTL > 5 TTL increment by 2",
                "    0     0 TOS        0    --  *      *       0.0.0.0/0            0.0.0.0/0            TTL match TTL == 5 TOS set 0x10/0xff",
                "    0     0 MARK       0    --  *      *       0.0.0.0/0            0.0.0.0/0            length 100:200 MARK or 0x3",
                "    0     0 MARK       0    --  *      *       0.0.0.0/0            0.0.0.0/0            length 100 MARK and 0x3",
                "    0     0 MARK       0    --  *      *       0.0.0.0/0            0.0.0.0/0            length !100:65535 MARK xset 0x3/0x7",
                "    0     0 TOS        0    --  *      *       0.0.0.0/0            0.0.0.0/0            mark match ! 0x4 TOS set 0x10/0x3f",
                "    0     0 TOS        0    --  *      *       0.0.0.0/0            0.0.0.0/0            tos match!0x10/0x3f TOS set 0x10/0x3f",
                "",
                "Chain INPUT (policy ACCEPT 0 packets, 0 bytes)",
                " pkts bytes target     prot opt in     out     source               destination         ",
                "",
                "Chain FORWARD (policy ACCEPT 0 packets, 0 bytes)",
                " pkts bytes target     prot opt in     out     source               destination         ",
                "",
                "Chain OUTPUT (policy ACCEPT 0 packets, 0 bytes)",
                " pkts bytes target     prot opt in     out     source               destination         ",
                "    0     0 TOS        0    --  *      *       0.0.0.0/0            0.0.0.0/0            TTL match TTL != 3 TOS set 0x00/0xfc",
                "    0     0 TOS        0    --  *      *       0.0.0.0/0            0.0.0.0/0            tos match0x02/0x3f TOS set 0x08/0x08",
                "    0     0 TOS        0    --  *      *       0.0.0.0/0            0.0.0.0/0            TOS set 0x04/0x00",
                "",
                "Chain POSTROUTING (policy ACCEPT 0 packets, 0 bytes)",
                " pkts bytes target     prot opt in     out     source               destination         ",
            ),
            (),
        ),
        (
            "-t mangle -S",
            0,
            (
                "-P PREROUTING ACCEPT",
                "-P INPUT ACCEPT",
                "-P FORWARD ACCEPT",
                "-P OUTPUT ACCEPT",
                "-P POSTROUTING ACCEPT",
                "-A PREROUTING -m tos --tos 0x10/0xff -j TTL --ttl-set 5",
                "-A PREROUTING -m ttl --ttl-lt 5 -j TTL --ttl-dec 1",
                "-A PREROUTING -m ttl --ttl-gt 5 -j TTL --ttl-inc 2",
                "-A PREROUTING -m ttl --ttl-eq 5 -j TOS --set-tos 0x10/0xff",
                "-A PREROUTING -m length --length 100:200 -j MARK --set-xmark 0x3/0x3",
                "-A PREROUTING -m length --length 100 -j MARK --set-xmark 0x0/0xfffffffc",
                "-A PREROUTING -m length ! --length 100:65535 -j MARK --set-xmark 0x3/0x7",
                "-A PREROUTING -m mark ! --mark 0x4 -j TOS --set-tos 0x10/0x3f",
                "-A PREROUTING -m tos ! --tos 0x10/0x3f -j TOS --set-tos 0x10/0x3f",
                "-A OUTPUT -m ttl ! --ttl-eq 3 -j TOS --set-tos 0x00/0xfc",
                "-A OUTPUT -m tos --tos 0x02/0x3f -j TOS --set-tos 0x08/0x08",
                "-A OUTPUT -j TOS --set-tos 0x04/0x00",
            ),
            (),
        ),
        (
            "-t mangle -L PREROUTING",
            0,
            (
                "Chain PREROUTING (policy ACCEPT)",
                "target     prot opt source               destination         ",
                "TTL        all  --  anywhere             anywhere             tos match0x10/0xff TTL set to 5",
                "TTL        all  --  anywhere             anywhere             TTL match TTL < 5 TTL decrement by 1",
                "TTL        all  --  anywhere             anywhere             TTL match TTL > 5 TTL increment by 2",
                "TOS        all  --  anywhere             anywhere             TTL match TTL == 5 TOS set 0x10/0xff",
                "MARK       all  --  anywhere             anywhere             length 100:200 MARK or 0x3",
                "MARK       all  --  anywhere             anywhere             length 100 MARK and 0x3",
                "MARK       all  --  anywhere             anywhere             length !100:65535 MARK xset 0x3/0x7",
                "TOS        all  --  anywhere             anywhere             mark match ! 0x4  TOS setMinimize-Delay",
                "TOS        all  --  anywhere             anywhere             tos match! Minimize-Delay  TOS setMinimize-Delay",
            ),
            (),
        ),
        (
            "-t mangle -L OUTPUT",
            0,
            (
                "Chain OUTPUT (policy ACCEPT)",
                "target     prot opt source               destination         ",
                "TOS        all  --  anywhere             anywhere             TTL match TTL != 3 TOS and 0x03",
                "TOS        all  --  anywhere             anywhere             tos match Minimize-Cost TOS or 0x08",
                "TOS        all  --  anywhere             anywhere             TOS xor 0x04",
            ),
            (),
        ),
        (
            "-t raw -L -n",
            0,
            (
                "Chain PREROUTING (policy ACCEPT)",
                "target     prot opt source               destination         ",
                "DROP       17   --  0.0.0.0/0            0.0.0.0/0            udp spt:53",
                "",
                "Chain OUTPUT (policy ACCEPT)",
                "target     prot opt source               destination         ",
            ),
            (),
        ),
        (
            "-t raw -S",
            0,
            (
                "-P PREROUTING ACCEPT",
                "-P OUTPUT ACCEPT",
                "-A PREROUTING -p udp -m udp --sport 53 -j DROP",
            ),
            (),
        ),
    ],
    "chains": [
        ("-N foo", 0, (), ()),
        ("-N zeta", 0, (), ()),
        ("-N Beta", 0, (), ()),
        ("-A INPUT -j foo", 0, (), ()),
        ("-A foo -p udp --sport 1:1024 '!' --dport 53 -j RETURN", 0, (), ()),
        ("-A foo -p udp -m udp --sport 5 -j ACCEPT", 0, (), ()),
        ("-A foo -o lo -j DROP", 0, (), ()),
        ("-A zeta -g foo", 0, (), ()),
        (
            "-L -v -n",
            0,
            (
                "Chain INPUT (policy ACCEPT 0 packets, 0 bytes)",
                " pkts bytes target     prot opt in     out     source               destination         ",
                "    0     0 foo        0    --  *      *       0.0.0.0/0            0.0.0.0/0           ",
                "",
                "Chain FORWARD (policy ACCEPT 0 packets, 0 bytes)",
                " pkts bytes target     prot opt in     out     source               destination         ",
                "",
                "Chain OUTPUT (policy ACCEPT 0 packets, 0 bytes)",
                " pkts bytes target     prot opt in     out     source               destination         ",
                "",
                "Chain Beta (0 references)",
                " pkts bytes target     prot opt in     out     source               destination         ",
                "",
                "Chain foo (2 references)",
                " pkts bytes target     prot opt in     out     source               destination         ",
                "    0     0 RETURN     17   --  *      *       0.0.0.0/0            0.0.0.0/0            udp spts:1:1024 dpt:!53",
                "    0     0 ACCEPT     17   --  *      *       0.0.0.0/0            0.0.0.0/0            udp spt:5",
                "    0     0 DROP       0    --  *      lo      0.0.0.0/0            0.0.0.0/0           ",
                "",
                "Chain zeta (0 references)",
                " pkts bytes target     prot opt in     out     source               destination         ",
                "    0     0 foo        0    --  *      *       0.0.0.0/0            0.0.0.0/0           [goto] ",
            ),
            (),
        ),
        (
            "-S",
            0,
            (
                "-P INPUT ACCEPT",
                "-P FORWARD ACCEPT",
                "-P OUTPUT ACCEPT",
                "-N Beta",
                "-N foo",
                "-N zeta",
                "-A INPUT -j foo",
                "-A foo -p udp -m udp --sport 1:1024 ! --dport 53 -j RETURN",
                "-A foo -p udp -m udp --sport 5 -j ACCEPT",
                "-A foo -o lo -j DROP",
                "-A zeta -g foo",
            ),
            (),
        ),
        (
            "-L foo",
            0,
            (
                "Chain foo (2 references)",
                "target     prot opt source               destination         ",
                "RETURN     udp  --  anywhere             anywhere             udp spts:1:1024 dpt:!domain",
                "ACCEPT     udp  --  anywhere             anywhere             udp spt:5",
                "DROP       all  --  anywhere             anywhere            ",
            ),
            (),
        ),
        (
            "-S foo",
            0,
            (
                "-N foo",
                "-A foo -p udp -m udp --sport 1:1024 ! --dport 53 -j RETURN",
                "-A foo -p udp -m udp --sport 5 -j ACCEPT",
                "-A foo -o lo -j DROP",
            ),
            (),
        ),
        (
            "-L zeta -n",
            0,
            (
                "Chain zeta (0 references)",
                "target     prot opt source               destination         ",
                "foo        0    --  0.0.0.0/0            0.0.0.0/0           [goto] ",
            ),
            (),
        ),
    ],
    "targets": [
        ("-A INPUT -p tcp --dport 80 --tcp-flags SYN,ACK SYN -j ACCEPT", 0, (), ()),
        ("-A INPUT -p tcp --syn -j ACCEPT", 0, (), ()),
        ("-A INPUT -p tcp '!' --syn --sport 22 -j ACCEPT", 0, (), ()),
        ("-A INPUT -p tcp --tcp-flags ALL NONE", 0, (), ()),
        ("-A INPUT -p udp -m multiport --sports 53,67:68 -j ACCEPT", 0, (), ()),
        ("-A INPUT -p udp -m multiport '!' --ports 5,6 -j ACCEPT", 0, (), ()),
        ("-A INPUT -p udp --dport 9 -j REJECT --reject-with icmp-net-unreachable", 0, (), ()),
        ("-A INPUT -p udp --dport 9 -j REJECT --reject-with icmp-host-unreachable", 0, (), ()),
        ("-A INPUT -p udp --dport 9 -j REJECT --reject-with icmp-proto-unreachable", 0, (), ()),
        ("-A INPUT -p udp --dport 9 -j REJECT --reject-with icmp-net-prohibited", 0, (), ()),
        ("-A INPUT -p udp --dport 9 -j REJECT --reject-with icmp-host-prohibited", 0, (), ()),
        ("-A INPUT -p udp --dport 9 -j REJECT --reject-with icmp-admin-prohibited", 0, (), ()),
        ("-A INPUT -p udp --dport 9 -j REJECT --reject-with icmp-port-unreach", 0, (), ()),
        ("-A INPUT -j NFQUEUE", 0, (), ()),
        ("-A INPUT -j NFQUEUE --queue-num 7", 0, (), ()),
        ("-A INPUT -j NFQUEUE --queue-balance 2:5", 0, (), ()),
        ("-A INPUT -j NFQUEUE --queue-balance 2:5 --queue-bypass", 0, (), ()),
        ("-A INPUT -j NFQUEUE --queue-bypass", 0, (), ()),
        ("-A INPUT -j NFQUEUE --queue-balance 1:3 --queue-cpu-fanout", 0, (), ()),
        ("-A INPUT -j LOG", 0, (), ()),
        ("-A INPUT -j LOG --log-level debug --log-prefix 'x y'", 0, (), ()),
        ("-A INPUT -j LOG --log-level 3", 0, (), ()),
        (
            "-A INPUT -j LOG --log-level emerg --log-ip-options --log-macdecode --log-uid --log-tcp-sequence --log-tcp-options",
            0,
            (),
            (),
        ),
        ("-A INPUT -j MARK --set-mark 5", 0, (), ()),
        ("-A INPUT -j MARK --set-mark 5/0xff", 0, (), ()),
        ("-A INPUT -j MARK --set-xmark 5/0xff", 0, (), ()),
        ("-A INPUT -j MARK --and-mark 0xf0", 0, (), ()),
        ("-A INPUT -j MARK --or-mark 0xf0", 0, (), ()),
        ("-A INPUT -j MARK --xor-mark 0xf0", 0, (), ()),
        ("-A INPUT -m mark --mark 5 -j ACCEPT", 0, (), ()),
        ("-A INPUT -m length --length :64 -j ACCEPT", 0, (), ()),
        ("-A INPUT -s 10.0.0.0/255.0.255.0 -d 10.0.0.7/24 -j ACCEPT", 0, (), ()),
        ("-A INPUT -s 127.0.0.1 -d 192.0.2.1/32 -j ACCEPT", 0, (), ()),
        ("-A INPUT '!' -i eth+ -f -j DROP", 0, (), ()),
        ("-A INPUT -p icmp --icmp-type echo-request -j ACCEPT", 0, (), ()),
        ("-A INPUT -p icmp --icmp-type 3/4", 0, (), ()),
        ("-A INPUT -p icmp '!' --icmp-type 8", 0, (), ()),
        ("-A INPUT -p icmp --icmp-type any", 0, (), ()),
        ("-A INPUT -p icmp --icmp-type 3/200", 0, (), ()),
        ("-A INPUT '!' -p udp -j QUEUE", 0, (), ()),
        ("-A INPUT -p 200", 0, (), ()),
        ("-A INPUT -p udp --dport 1000: -c 1,2", 0, (), ()),
        ("-A FORWARD '!' -o lo '!' -f -p 17", 0, (), ()),
        ("-A OUTPUT -s 10.1 -o eth0", 0, (), ()),
        (
            "-L -n --line-numbers",
            0,
            (
                "Chain INPUT (policy ACCEPT)",
                "num  target     prot opt source               destination         ",
                "1    ACCEPT     6    --  0.0.0.0/0            0.0.0.0/0            tcp dpt:80 flags:0x12/0x02",
                "2    ACCEPT     6    --  0.0.0.0/0            0.0.0.0/0            tcp flags:0x17/0x02",
                "3    ACCEPT     6    --  0.0.0.0/0            0.0.0.0/0            tcp spt:22 flags:!0x17/0x02",
                "4               6    --  0.0.0.0/0            0.0.0.0/0            tcp flags:0x3F/0x00",
                "5    ACCEPT     17   --  0.0.0.0/0            0.0.0.0/0            multiport sports 53,67:68",
                "6    ACCEPT     17   --  0.0.0.0/0            0.0.0.0/0            multiport ports  !5,6",
                "7    REJECT     17   --  0.0.0.0/0            0.0.0.0/0            udp dpt:9 reject-with icmp-net-unreachable",
                "8    REJECT     17   --  0.0.0.0/0            0.0.0.0/0            udp dpt:9 reject-with icmp-host-unreachable",
                "9    REJECT     17   --  0.0.0.0/0            0.0.0.0/0            udp dpt:9 reject-with icmp-proto-unreachable",
                "10   REJECT     17   --  0.0.0.0/0            0.0.0.0/0            udp dpt:9 reject-with icmp-net-prohibited",
                "11   REJECT     17   --  0.0.0.0/0            0.0.0.0/0            udp dpt:9 reject-with icmp-host-prohibited",
                "12   REJECT     17   --  0.0.0.0/0            0.0.0.0/0            udp dpt:9 reject-with icmp-admin-prohibited",
                "13   REJECT     17   --  0.0.0.0/0            0.0.0.0/0            udp dpt:9 reject-with icmp-port-unreachable",
                "14   NFQUEUE    0    --  0.0.0.0/0            0.0.0.0/0            NFQUEUE num 0",
                "15   NFQUEUE    0    --  0.0.0.0/0            0.0.0.0/0            NFQUEUE num 7",
                "16   NFQUEUE    0    --  0.0.0.0/0            0.0.0.0/0            NFQUEUE balance 2:5",
                "17   NFQUEUE    0    --  0.0.0.0/0            0.0.0.0/0            NFQUEUE balance 2:5 bypass",
                "18   NFQUEUE    0    --  0.0.0.0/0            0.0.0.0/0            NFQUEUE num 0 bypass",
                "19   NFQUEUE    0    --  0.0.0.0/0            0.0.0.0/0            NFQUEUE balance 1:3 cpu-fanout",
                "20   LOG        0    --  0.0.0.0/0            0.0.0.0/0            LOG flags 0 level 4",
                '21   LOG        0    --  0.0.0.0/0            0.0.0.0/0            LOG flags 0 level 7 prefix "x y"',
                "22   LOG        0    --  0.0.0.0/0            0.0.0.0/0            LOG flags 0 level 3",
                "23   LOG        0    --  0.0.0.0/0            0.0.0.0/0            LOG flags 47 level 0",
                "24   MARK       0    --  0.0.0.0/0            0.0.0.0/0            MARK set 0x5",
                "25   MARK       0    --  0.0.0.0/0            0.0.0.0/0            MARK xset 0x5/0xff",
                "26   MARK       0    --  0.0.0.0/0            0.0.0.0/0            MARK xset 0x5/0xff",
                "27   MARK       0    --  0.0.0.0/0            0.0.0.0/0            MARK and 0xf0",
                "28   MARK       0    --  0.0.0.0/0            0.0.0.0/0            MARK or 0xf0",
                "29   MARK       0    --  0.0.0.0/0            0.0.0.0/0            MARK xor 0xf0",
                "30   ACCEPT     0    --  0.0.0.0/0            0.0.0.0/0            mark match 0x5",
                "31   ACCEPT     0    --  0.0.0.0/0            0.0.0.0/0            length 0:64",
                "32   ACCEPT     0    --  10.0.0.0/255.0.255.0  10.0.0.0/24         ",
                "33   ACCEPT     0    --  127.0.0.1            192.0.2.1           ",
                "34   DROP       0    -f  0.0.0.0/0            0.0.0.0/0           ",
                "35   ACCEPT     1    --  0.0.0.0/0            0.0.0.0/0            icmptype 8",
                "36              1    --  0.0.0.0/0            0.0.0.0/0            icmptype 3 code 4",
                "37              1    --  0.0.0.0/0            0.0.0.0/0            icmp !type 8",
                "38              1    --  0.0.0.0/0            0.0.0.0/0            icmptype 255",
                "39              1    --  0.0.0.0/0            0.0.0.0/0            icmptype 3 code 200",
                "40   QUEUE     !17   --  0.0.0.0/0            0.0.0.0/0           ",
                "41              200  --  0.0.0.0/0            0.0.0.0/0           ",
                "42              17   --  0.0.0.0/0            0.0.0.0/0            udp dpts:1000:65535",
                "",
                "Chain FORWARD (policy ACCEPT)",
                "num  target     prot opt source               destination         ",
                "1               17   !f  0.0.0.0/0            0.0.0.0/0           ",
                "",
                "Chain OUTPUT (policy ACCEPT)",
                "num  target     prot opt source               destination         ",
                "1               0    --  10.1.0.0             0.0.0.0/0           ",
            ),
            (),
        ),
        (
            "-L",
            0,
            (
                "Chain INPUT (policy ACCEPT)",
                "target     prot opt source               destination         ",
                "ACCEPT     tcp  --  anywhere             anywhere             tcp dpt:http flags:SYN,ACK/SYN",
                "ACCEPT     tcp  --  anywhere             anywhere             tcp flags:FIN,SYN,RST,ACK/SYN",
                "ACCEPT     tcp  --  anywhere             anywhere             tcp spt:ssh flags:!FIN,SYN,RST,ACK/SYN",
                "           tcp  --  anywhere             anywhere             tcp flags:FIN,SYN,RST,PSH,ACK,URG/NONE",
                "ACCEPT     udp  --  anywhere             anywhere             multiport sports domain,bootps:bootpc",
                "ACCEPT     udp  --  anywhere             anywhere             multiport ports  !5,6",
                "REJECT     udp  --  anywhere             anywhere             udp dpt:discard reject-with icmp-net-unreachable",
                "REJECT     udp  --  anywhere             anywhere             udp dpt:discard reject-with icmp-host-unreachable",
                "REJECT     udp  --  anywhere             anywhere             udp dpt:discard reject-with icmp-proto-unreachable",
                "REJECT     udp  --  anywhere             anywhere             udp dpt:discard reject-with icmp-net-prohibited",
                "REJECT     udp  --  anywhere             anywhere             udp dpt:discard reject-with icmp-host-prohibited",
                "REJECT     udp  --  anywhere             anywhere             udp dpt:discard reject-with icmp-admin-prohibited",
                "REJECT     udp  --  anywhere             anywhere             udp dpt:discard reject-with icmp-port-unreachable",
                "NFQUEUE    all  --  anywhere             anywhere             NFQUEUE num 0",
                "NFQUEUE    all  --  anywhere             anywhere             NFQUEUE num 7",
                "NFQUEUE    all  --  anywhere             anywhere             NFQUEUE balance 2:5",
                "NFQUEUE    all  --  anywhere             anywhere             NFQUEUE balance 2:5 bypass",
                "NFQUEUE    all  --  anywhere             anywhere             NFQUEUE num 0 bypass",
                "NFQUEUE    all  --  anywhere             anywhere             NFQUEUE balance 1:3 cpu-fanout",
                "LOG        all  --  anywhere             anywhere             LOG level warn",
                'LOG        all  --  anywhere             anywhere             LOG level debug prefix "x y"',
                "LOG        all  --  anywhere             anywhere             LOG level err",
                "LOG        all  --  anywhere             anywhere             LOG level emerg tcp-sequence tcp-options ip-options uid macdecode",
                "MARK       all  --  anywhere             anywhere             MARK set 0x5",
                "MARK       all  --  anywhere             anywhere             MARK xset 0x5/0xff",
                "MARK       all  --  anywhere             anywhere             MARK xset 0x5/0xff",
                "MARK       all  --  anywhere             anywhere             MARK and 0xf0",
                "MARK       all  --  anywhere             anywhere             MARK or 0xf0",
                "MARK       all  --  anywhere             anywhere             MARK xor 0xf0",
                "ACCEPT     all  --  anywhere             anywhere             mark match 0x5",
                "ACCEPT     all  --  anywhere             anywhere             length 0:64",
                "ACCEPT     all  --  10.0.0.0/255.0.255.0  10.0.0.0/24         ",
                "ACCEPT     all  --  localhost            192.0.2.1           ",
                "DROP       all  -f  anywhere             anywhere            ",
                "ACCEPT     icmp --  anywhere             anywhere             icmp echo-request",
                "           icmp --  anywhere             anywhere             icmp fragmentation-needed",
                "           icmp --  anywhere             anywhere             icmp !echo-request",
                "           icmp --  anywhere             anywhere             icmp any",
                "           icmp --  anywhere             anywhere             icmptype 3 code 200",
                "QUEUE     !udp  --  anywhere             anywhere            ",
                "           200  --  anywhere             anywhere            ",
                "           udp  --  anywhere             anywhere             udp dpts:1000:65535",
                "",
                "Chain FORWARD (policy ACCEPT)",
                "target     prot opt source               destination         ",
                "           udp  !f  anywhere             anywhere            ",
                "",
                "Chain OUTPUT (policy ACCEPT)",
                "target     prot opt source               destination         ",
                "           all  --  10.1.0.0             anywhere            ",
            ),
            (),
        ),
        (
            "-S",
            0,
            (
                "-P INPUT ACCEPT",
                "-P FORWARD ACCEPT",
                "-P OUTPUT ACCEPT",
                "-A INPUT -p tcp -m tcp --dport 80 --tcp-flags SYN,ACK SYN -j ACCEPT",
                "-A INPUT -p tcp -m tcp --tcp-flags FIN,SYN,RST,ACK SYN -j ACCEPT",
                "-A INPUT -p tcp -m tcp --sport 22 ! --tcp-flags FIN,SYN,RST,ACK SYN -j ACCEPT",
                "-A INPUT -p tcp -m tcp --tcp-flags FIN,SYN,RST,PSH,ACK,URG NONE",
                "-A INPUT -p udp -m multiport --sports 53,67:68 -j ACCEPT",
                "-A INPUT -p udp -m multiport ! --ports 5,6 -j ACCEPT",
                "-A INPUT -p udp -m udp --dport 9 -j REJECT --reject-with icmp-net-unreachable",
                "-A INPUT -p udp -m udp --dport 9 -j REJECT --reject-with icmp-host-unreachable",
                "-A INPUT -p udp -m udp --dport 9 -j REJECT --reject-with icmp-proto-unreachable",
                "-A INPUT -p udp -m udp --dport 9 -j REJECT --reject-with icmp-net-prohibited",
                "-A INPUT -p udp -m udp --dport 9 -j REJECT --reject-with icmp-host-prohibited",
                "-A INPUT -p udp -m udp --dport 9 -j REJECT --reject-with icmp-admin-prohibited",
                "-A INPUT -p udp -m udp --dport 9 -j REJECT --reject-with icmp-port-unreachable",
                "-A INPUT -j NFQUEUE --queue-num 0",
                "-A INPUT -j NFQUEUE --queue-num 7",
                "-A INPUT -j NFQUEUE --queue-balance 2:5",
                "-A INPUT -j NFQUEUE --queue-balance 2:5 --queue-bypass",
                "-A INPUT -j NFQUEUE --queue-num 0 --queue-bypass",
                "-A INPUT -j NFQUEUE --queue-balance 1:3 --queue-cpu-fanout",
                "-A INPUT -j LOG",
                '-A INPUT -j LOG --log-prefix "x y" --log-level 7',
                "-A INPUT -j LOG --log-level 3",
                "-A INPUT -j LOG --log-level 0 --log-tcp-sequence --log-tcp-options --log-ip-options --log-uid --log-macdecode",
                "-A INPUT -j MARK --set-xmark 0x5/0xffffffff",
                "-A INPUT -j MARK --set-xmark 0x5/0xff",
                "-A INPUT -j MARK --set-xmark 0x5/0xff",
                "-A INPUT -j MARK --set-xmark 0x0/0xffffff0f",
                "-A INPUT -j MARK --set-xmark 0xf0/0xf0",
                "-A INPUT -j MARK --set-xmark 0xf0/0x0",
                "-A INPUT -m mark --mark 0x5 -j ACCEPT",
                "-A INPUT -m length --length 0:64 -j ACCEPT",
                "-A INPUT -s 10.0.0.0/255.0.255.0 -d 10.0.0.0/24 -j ACCEPT",
                "-A INPUT -s 127.0.0.1/32 -d 192.0.2.1/32 -j ACCEPT",
                "-A INPUT ! -i eth+ -f -j DROP",
                "-A INPUT -p icmp -m icmp --icmp-type 8 -j ACCEPT",
                "-A INPUT -p icmp -m icmp --icmp-type 3/4",
                "-A INPUT -p icmp -m icmp ! --icmp-type 8",
                "-A INPUT -p icmp -m icmp --icmp-type any",
                "-A INPUT -p icmp -m icmp --icmp-type 3/200",
                "-A INPUT ! -p udp -j QUEUE",
                "-A INPUT -p 200",
                "-A INPUT -p udp -m udp --dport 1000:65535",
                "-A FORWARD ! -o lo -p udp ! -f",
                "-A OUTPUT -s 10.1.0.0/32 -o eth0",
            ),
            (),
        ),
        (
            "-L -v -x",
            0,
            (
                "Chain INPUT (policy ACCEPT 0 packets, 0 bytes)",
                "    pkts      bytes target     prot opt in     out     source               destination         ",
                "       0        0 ACCEPT     tcp  --  any    any     anywhere             anywhere             tcp dpt:http flags:SYN,ACK/SYN",
                "       0        0 ACCEPT     tcp  --  any    any     anywhere             anywhere             tcp flags:FIN,SYN,RST,ACK/SYN",
                "       0        0 ACCEPT     tcp  --  any    any     anywhere             anywhere             tcp spt:ssh flags:!FIN,SYN,RST,ACK/SYN",
                "       0        0            tcp  --  any    any     anywhere             anywhere             tcp flags:FIN,SYN,RST,PSH,ACK,URG/NONE",
                "       0        0 ACCEPT     udp  --  any    any     anywhere             anywhere             multiport sports domain,bootps:bootpc",
                "       0        0 ACCEPT     udp  --  any    any     anywhere             anywhere             multiport ports  !5,6",
                "       0        0 REJECT     udp  --  any    any     anywhere             anywhere             udp dpt:discard reject-with icmp-net-unreachable",
                "       0        0 REJECT     udp  --  any    any     anywhere             anywhere             udp dpt:discard reject-with icmp-host-unreachable",
                "       0        0 REJECT     udp  --  any    any     anywhere             anywhere             udp dpt:discard reject-with icmp-proto-unreachable",
                "       0        0 REJECT     udp  --  any    any     anywhere             anywhere             udp dpt:discard reject-with icmp-net-prohibited",
                "       0        0 REJECT     udp  --  any    any     anywhere             anywhere             udp dpt:discard reject-with icmp-host-prohibited",
                "       0        0 REJECT     udp  --  any    any     anywhere             anywhere             udp dpt:discard reject-with icmp-admin-prohibited",
                "       0        0 REJECT     udp  --  any    any     anywhere             anywhere             udp dpt:discard reject-with icmp-port-unreachable",
                "       0        0 NFQUEUE    all  --  any    any     anywhere             anywhere             NFQUEUE num 0",
                "       0        0 NFQUEUE    all  --  any    any     anywhere             anywhere             NFQUEUE num 7",
                "       0        0 NFQUEUE    all  --  any    any     anywhere             anywhere             NFQUEUE balance 2:5",
                "       0        0 NFQUEUE    all  --  any    any     anywhere             anywhere             NFQUEUE balance 2:5 bypass",
                "       0        0 NFQUEUE    all  --  any    any     anywhere             anywhere             NFQUEUE num 0 bypass",
                "       0        0 NFQUEUE    all  --  any    any     anywhere             anywhere             NFQUEUE balance 1:3 cpu-fanout",
                "       0        0 LOG        all  --  any    any     anywhere             anywhere             LOG level warn",
                '       0        0 LOG        all  --  any    any     anywhere             anywhere             LOG level debug prefix "x y"',
                "       0        0 LOG        all  --  any    any     anywhere             anywhere             LOG level err",
                "       0        0 LOG        all  --  any    any     anywhere             anywhere             LOG level emerg tcp-sequence tcp-options ip-options uid macdecode",
                "       0        0 MARK       all  --  any    any     anywhere             anywhere             MARK set 0x5",
                "       0        0 MARK       all  --  any    any     anywhere             anywhere             MARK xset 0x5/0xff",
                "       0        0 MARK       all  --  any    any     anywhere             anywhere             MARK xset 0x5/0xff",
                "       0        0 MARK       all  --  any    any     anywhere             anywhere             MARK and 0xf0",
                "       0        0 MARK       all  --  any    any     anywhere             anywhere             MARK or 0xf0",
                "       0        0 MARK       all  --  any    any     anywhere             anywhere             MARK xor 0xf0",
                "       0        0 ACCEPT     all  --  any    any     anywhere             anywhere             mark match 0x5",
                "       0        0 ACCEPT     all  --  any    any     anywhere             anywhere             length 0:64",
                "       0        0 ACCEPT     all  --  any    any     10.0.0.0/255.0.255.0  10.0.0.0/24         ",
                "       0        0 ACCEPT     all  --  any    any     localhost            192.0.2.1           ",
                "       0        0 DROP       all  -f  !eth+  any     anywhere             anywhere            ",
                "       0        0 ACCEPT     icmp --  any    any     anywhere             anywhere             icmp echo-request",
                "       0        0            icmp --  any    any     anywhere             anywhere             icmp fragmentation-needed",
                "       0        0            icmp --  any    any     anywhere             anywhere             icmp !echo-request",
                "       0        0            icmp --  any    any     anywhere             anywhere             icmp any",
                "       0        0            icmp --  any    any     anywhere             anywhere             icmptype 3 code 200",
                "       0        0 QUEUE     !udp  --  any    any     anywhere             anywhere            ",
                "       0        0            200  --  any    any     anywhere             anywhere            ",
                "       1        2            udp  --  any    any     anywhere             anywhere             udp dpts:1000:65535",
                "",
                "Chain FORWARD (policy ACCEPT 0 packets, 0 bytes)",
                "    pkts      bytes target     prot opt in     out     source               destination         ",
                "       0        0            udp  !f  any    !lo     anywhere             anywhere            ",
                "",
                "Chain OUTPUT (policy ACCEPT 0 packets, 0 bytes)",
                "    pkts      bytes target     prot opt in     out     source               destination         ",
                "       0        0            all  --  any    eth0    10.1.0.0             anywhere            ",
            ),
            (),
        ),
        (
            "-L FORWARD -v",
            0,
            (
                "Chain FORWARD (policy ACCEPT 0 packets, 0 bytes)",
                " pkts bytes target     prot opt in     out     source               destination         ",
                "    0     0            udp  !f  any    !lo     anywhere             anywhere            ",
            ),
            (),
        ),
    ],
    "counters": [
        ("-A OUTPUT -p udp --dport 7000 -c 3000 3084000 -j ACCEPT", 0, (), ()),
        ("-A OUTPUT -p udp --dport 7001 -c 2 58 -j DROP", 0, (), ()),
        ("-A OUTPUT -c 123456789 98765432109 -j ACCEPT", 0, (), ()),
        ("-A OUTPUT -c 99999 99999999999999", 0, (), ()),
        ("-P OUTPUT ACCEPT -c 3000 1728000", 0, (), ()),
        (
            "-L OUTPUT -v -n",
            0,
            (
                "Chain OUTPUT (policy ACCEPT 3000 packets, 1728K bytes)",
                " pkts bytes target     prot opt in     out     source               destination         ",
                " 3000 3084K ACCEPT     17   --  *      *       0.0.0.0/0            0.0.0.0/0            udp dpt:7000",
                "    2    58 DROP       17   --  *      *       0.0.0.0/0            0.0.0.0/0            udp dpt:7001",
                " 123M   99G ACCEPT     0    --  *      *       0.0.0.0/0            0.0.0.0/0           ",
                "99999  100T            0    --  *      *       0.0.0.0/0            0.0.0.0/0           ",
            ),
            (),
        ),
        (
            "-L OUTPUT -v -n -x",
            0,
            (
                "Chain OUTPUT (policy ACCEPT 3000 packets, 1728000 bytes)",
                "    pkts      bytes target     prot opt in     out     source               destination         ",
                "    3000  3084000 ACCEPT     17   --  *      *       0.0.0.0/0            0.0.0.0/0            udp dpt:7000",
                "       2       58 DROP       17   --  *      *       0.0.0.0/0            0.0.0.0/0            udp dpt:7001",
                "123456789 98765432109 ACCEPT     0    --  *      *       0.0.0.0/0            0.0.0.0/0           ",
                "   99999 99999999999999            0    --  *      *       0.0.0.0/0            0.0.0.0/0           ",
            ),
            (),
        ),
        (
            "-L OUTPUT -v -n -x --line-numbers",
            0,
            (
                "Chain OUTPUT (policy ACCEPT 3000 packets, 1728000 bytes)",
                "num      pkts      bytes target     prot opt in     out     source               destination         ",
                "1        3000  3084000 ACCEPT     17   --  *      *       0.0.0.0/0            0.0.0.0/0            udp dpt:7000",
                "2           2       58 DROP       17   --  *      *       0.0.0.0/0            0.0.0.0/0            udp dpt:7001",
                "3    123456789 98765432109 ACCEPT     0    --  *      *       0.0.0.0/0            0.0.0.0/0           ",
                "4       99999 99999999999999            0    --  *      *       0.0.0.0/0            0.0.0.0/0           ",
            ),
            (),
        ),
        (
            "-S OUTPUT -v",
            0,
            (
                "-P OUTPUT ACCEPT -c 3000 1728000",
                "-A OUTPUT -p udp -m udp --dport 7000 -c 3000 3084000 -j ACCEPT",
                "-A OUTPUT -p udp -m udp --dport 7001 -c 2 58 -j DROP",
                "-A OUTPUT -c 123456789 98765432109 -j ACCEPT",
                "-A OUTPUT -c 99999 99999999999999",
            ),
            (),
        ),
        ("-S OUTPUT 1 -v", 0, ("-A OUTPUT -p udp -m udp --dport 7000 -c 3000 3084000 -j ACCEPT",), ()),
        (
            "-L OUTPUT -Z -v -n",
            0,
            (
                "Chain OUTPUT (policy ACCEPT 3000 packets, 1728K bytes)",
                " pkts bytes target     prot opt in     out     source               destination         ",
                " 3000 3084K ACCEPT     17   --  *      *       0.0.0.0/0            0.0.0.0/0            udp dpt:7000",
                "    2    58 DROP       17   --  *      *       0.0.0.0/0            0.0.0.0/0            udp dpt:7001",
                " 123M   99G ACCEPT     0    --  *      *       0.0.0.0/0            0.0.0.0/0           ",
                "99999  100T            0    --  *      *       0.0.0.0/0            0.0.0.0/0           ",
                "Zeroing chain `OUTPUT'",
            ),
            (),
        ),
        (
            "-L OUTPUT -v -n",
            0,
            (
                "Chain OUTPUT (policy ACCEPT 0 packets, 0 bytes)",
                " pkts bytes target     prot opt in     out     source               destination         ",
                "    0     0 ACCEPT     17   --  *      *       0.0.0.0/0            0.0.0.0/0            udp dpt:7000",
                "    0     0 DROP       17   --  *      *       0.0.0.0/0            0.0.0.0/0            udp dpt:7001",
                "    0     0 ACCEPT     0    --  *      *       0.0.0.0/0            0.0.0.0/0           ",
                "    0     0            0    --  *      *       0.0.0.0/0            0.0.0.0/0           ",
            ),
            (),
        ),
    ],
    "addresses": [
        (
            "-v -A INPUT -s 10.0.0.1,10.0.0.2 -d 1.1.1.1,2.2.2.0/24 -j ACCEPT",
            0,
            (
                "ACCEPT  all opt -- in * out *  10.0.0.1  -> 1.1.1.1  ",
                "ACCEPT  all opt -- in * out *  10.0.0.1  -> 2.2.2.0/24  ",
                "ACCEPT  all opt -- in * out *  10.0.0.2  -> 1.1.1.1  ",
                "ACCEPT  all opt -- in * out *  10.0.0.2  -> 2.2.2.0/24  ",
            ),
            (),
        ),
        ("-I INPUT 1 -s 3.3.3.3,4.4.4.4", 0, (), ()),
        (
            "-S INPUT",
            0,
            (
                "-P INPUT ACCEPT",
                "-A INPUT -s 4.4.4.4/32",
                "-A INPUT -s 3.3.3.3/32",
                "-A INPUT -s 10.0.0.1/32 -d 1.1.1.1/32 -j ACCEPT",
                "-A INPUT -s 10.0.0.1/32 -d 2.2.2.0/24 -j ACCEPT",
                "-A INPUT -s 10.0.0.2/32 -d 1.1.1.1/32 -j ACCEPT",
                "-A INPUT -s 10.0.0.2/32 -d 2.2.2.0/24 -j ACCEPT",
            ),
            (),
        ),
        (
            "-R INPUT 1 -s 5.5.5.5,6.6.6.6",
            2,
            (),
            (
                "iptables v1.8.9 (legacy): Replacement rule does not specify a unique address",
                "Try `iptables -h' or 'iptables --help' for more information.",
            ),
        ),
        ("-C INPUT -s 3.3.3.3,4.4.4.4", 0, (), ()),
        (
            "-C INPUT -s 3.3.3.3,9.9.9.9",
            1,
            (),
            ("iptables: Bad rule (does a matching rule exist in that chain?).",),
        ),
        ("-D INPUT -s 3.3.3.3,4.4.4.4", 0, (), ()),
        (
            "-D INPUT -s 10.0.0.1,9.9.9.9 -d 1.1.1.1 -j ACCEPT",
            1,
            (),
            ("iptables: Bad rule (does a matching rule exist in that chain?).",),
        ),
        (
            "-S INPUT",
            0,
            (
                "-P INPUT ACCEPT",
                "-A INPUT -s 10.0.0.1/32 -d 1.1.1.1/32 -j ACCEPT",
                "-A INPUT -s 10.0.0.1/32 -d 2.2.2.0/24 -j ACCEPT",
                "-A INPUT -s 10.0.0.2/32 -d 1.1.1.1/32 -j ACCEPT",
                "-A INPUT -s 10.0.0.2/32 -d 2.2.2.0/24 -j ACCEPT",
            ),
            (),
        ),
        (
            "-A INPUT -s 1.2.3.4,",
            2,
            (),
            (
                "iptables v1.8.9 (legacy): host/network `' not found",
                "Try `iptables -h' or 'iptables --help' for more information.",
            ),
        ),
        ("-R INPUT 1 -d 7.7.7.7", 0, (), ()),
        (
            "-L INPUT -n",
            0,
            (
                "Chain INPUT (policy ACCEPT)",
                "target     prot opt source               destination         ",
                "           0    --  0.0.0.0/0            7.7.7.7             ",
                "ACCEPT     0    --  10.0.0.1             2.2.2.0/24          ",
                "ACCEPT     0    --  10.0.0.2             1.1.1.1             ",
                "ACCEPT     0    --  10.0.0.2             2.2.2.0/24          ",
            ),
            (),
        ),
    ],
}

# One session, in order: every error iptables reports, and what state the
# successful commands leave.
TRANSCRIPT: list[Entry] = [
    ("-N foo", 0, (), ()),
    ("-A foo -j ACCEPT", 0, (), ()),
    ("-A INPUT -j foo", 0, (), ()),
    (
        "-D INPUT -s 1.2.3.4 -j ACCEPT",
        1,
        (),
        ("iptables: Bad rule (does a matching rule exist in that chain?).",),
    ),
    ("-D INPUT 5", 1, (), ("iptables: Index of deletion too big.",)),
    (
        "-D INPUT 0",
        2,
        (),
        (
            "iptables v1.8.9 (legacy): Invalid rule number `0'",
            "Try `iptables -h' or 'iptables --help' for more information.",
        ),
    ),
    ("-X foo", 1, (), ("iptables: Too many links.",)),
    ("-X nope", 1, (), ("iptables: No chain/target/match by that name.",)),
    ("-N foo", 1, (), ("iptables: Chain already exists.",)),
    ("-P foo DROP", 1, (), ("iptables: Bad built-in chain name.",)),
    ("-P INPUT BLAH", 1, (), ("iptables: Bad policy name. Run `dmesg' for more information.",)),
    (
        "-A INPUT --bogus",
        2,
        (),
        (
            'iptables v1.8.9 (legacy): unknown option "--bogus"',
            "Try `iptables -h' or 'iptables --help' for more information.",
        ),
    ),
    ("-A nope -j ACCEPT", 1, (), ("iptables: No chain/target/match by that name.",)),
    (
        "-A INPUT -j nope",
        2,
        (),
        (
            "iptables v1.8.9 (legacy): Couldn't load target `nope':No such file or directory",
            "",
            "Try `iptables -h' or 'iptables --help' for more information.",
        ),
    ),
    ("-L nope", 1, (), ("iptables: No chain/target/match by that name.",)),
    ("-R INPUT 3 -j ACCEPT", 1, (), ("iptables: Index of replacement too big.",)),
    ("-I INPUT 5 -j ACCEPT", 1, (), ("iptables: Index of insertion too big.",)),
    (
        "-A INPUT -s 1.2.3.400",
        2,
        (),
        (
            "iptables v1.8.9 (legacy): host/network `1.2.3.400' not found",
            "Try `iptables -h' or 'iptables --help' for more information.",
        ),
    ),
    (
        "-A INPUT -p foo",
        2,
        (),
        (
            'iptables v1.8.9 (legacy): unknown protocol "foo" specified',
            "Try `iptables -h' or 'iptables --help' for more information.",
        ),
    ),
    ("-N INPUT", 1, (), ("iptables: Chain already exists.",)),
    ("-F nope", 1, (), ("iptables: No chain/target/match by that name.",)),
    ("-Z nope", 1, (), ("iptables: No chain/target/match by that name.",)),
    (
        "-A INPUT --dport 5 -j ACCEPT",
        2,
        (),
        (
            'iptables v1.8.9 (legacy): unknown option "--dport"',
            "Try `iptables -h' or 'iptables --help' for more information.",
        ),
    ),
    (
        "-A INPUT -p udp --dport -j ACCEPT",
        2,
        (),
        (
            'iptables v1.8.9 (legacy): Port "-j" does not resolve to anything.',
            "",
            "Try `iptables -h' or 'iptables --help' for more information.",
        ),
    ),
    (
        "-A INPUT -j TTL --ttl-set 4",
        1,
        (),
        ("iptables: Invalid argument. Run `dmesg' for more information.",),
    ),
    (
        "-A INPUT -j ACCEPT extra",
        2,
        (),
        (
            "Bad argument `extra'",
            "Try `iptables -h' or 'iptables --help' for more information.",
        ),
    ),
    (
        "",
        2,
        (),
        (
            "iptables v1.8.9 (legacy): no command specified",
            "Try `iptables -h' or 'iptables --help' for more information.",
        ),
    ),
    (
        "-N 'a b'",
        2,
        (),
        (
            "iptables v1.8.9 (legacy): Invalid chain name `a b'",
            "Try `iptables -h' or 'iptables --help' for more information.",
        ),
    ),
    (
        "-N -foo",
        2,
        (),
        (
            "iptables v1.8.9 (legacy): chain name not allowed to start with `-'",
            "Try `iptables -h' or 'iptables --help' for more information.",
        ),
    ),
    (
        "-A INPUT -m mark -j ACCEPT",
        2,
        (),
        (
            'iptables v1.8.9 (legacy): mark: option "--mark" must be specified',
            "",
            "Try `iptables -h' or 'iptables --help' for more information.",
        ),
    ),
    ("-E foo bar", 0, (), ()),
    ("-X bar", 1, (), ("iptables: Too many links.",)),
    ("-X INPUT", 1, (), ("iptables: Invalid argument. Run `dmesg' for more information.",)),
    ("-D INPUT 1", 0, (), ()),
    ("-X bar", 1, (), ("iptables: Directory not empty.",)),
    ("-F bar", 0, (), ()),
    ("-X bar", 0, (), ()),
    ("-N l1", 0, (), ()),
    ("-A l1 -j l1", 0, (), ()),
    ("-A INPUT -j l1", 1, (), ("iptables: Too many levels of symbolic links.",)),
    ("-A l1 -j INPUT", 1, (), ("iptables: Invalid argument. Run `dmesg' for more information.",)),
    ("-Z INPUT 5", 1, (), ("iptables: Index of counter too big.",)),
    ("-C INPUT -j ACCEPT", 1, (), ("iptables: Bad rule (does a matching rule exist in that chain?).",)),
    ("-A INPUT -j ACCEPT", 0, (), ()),
    ("-C INPUT -j ACCEPT", 0, (), ()),
    ("-E l1 INPUT", 1, (), ("iptables: File exists.",)),
    ("-E nope x", 1, (), ("iptables: No chain/target/match by that name.",)),
    ("-P FORWARD RETURN", 1, (), ("iptables: Bad policy name. Run `dmesg' for more information.",)),
    (
        "-N aaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
        2,
        (),
        (
            "iptables v1.8.9 (legacy): chain name `aaaaaaaaaaaaaaaaaaaaaaaaaaaaa' too long (must be under 29 chars)",
            "Try `iptables -h' or 'iptables --help' for more information.",
        ),
    ),
    (
        "-A INPUT -i aaaaaaaaaaaaaaaaaaaa",
        2,
        (),
        (
            "iptables v1.8.9 (legacy): interface name `aaaaaaaaaaaaaaaaaaaa' must be shorter than IFNAMSIZ (15)",
            "Try `iptables -h' or 'iptables --help' for more information.",
        ),
    ),
    (
        "-A INPUT -s 10.0.0.0/33",
        2,
        (),
        (
            "iptables v1.8.9 (legacy): invalid mask `33' specified",
            "Try `iptables -h' or 'iptables --help' for more information.",
        ),
    ),
    (
        "-A INPUT -j ACCEPT -j DROP",
        2,
        (),
        (
            "iptables v1.8.9 (legacy): multiple -j flags not allowed",
            "Try `iptables -h' or 'iptables --help' for more information.",
        ),
    ),
    (
        "-A INPUT -p udp -p tcp",
        2,
        (),
        (
            "iptables v1.8.9 (legacy): multiple -p flags not allowed",
            "Try `iptables -h' or 'iptables --help' for more information.",
        ),
    ),
    (
        "-A INPUT -j MARK --set-mark 0x100000000",
        2,
        (),
        (
            'iptables v1.8.9 (legacy): MARK: bad integer value for option "--set-mark", or out of range.',
            "",
            "Try `iptables -h' or 'iptables --help' for more information.",
        ),
    ),
    (
        "-A INPUT -j TTL",
        2,
        (),
        (
            "iptables v1.8.9 (legacy): TTL: You must specify an action",
            "Try `iptables -h' or 'iptables --help' for more information.",
        ),
    ),
    (
        "-t mangle -A INPUT -j TTL --ttl-dec 0",
        2,
        (),
        (
            'iptables v1.8.9 (legacy): TTL: bad value for option "--ttl-dec", or out of range (1-255).',
            "",
            "Try `iptables -h' or 'iptables --help' for more information.",
        ),
    ),
    (
        "-t mangle -A INPUT -j TTL --ttl-set 256",
        2,
        (),
        (
            'iptables v1.8.9 (legacy): TTL: bad value for option "--ttl-set", or out of range (0-255).',
            "",
            "Try `iptables -h' or 'iptables --help' for more information.",
        ),
    ),
    ("-L INPUT 9", 0, (), ()),
    (
        "-D INPUT 1 2",
        2,
        (),
        (
            "Bad argument `2'",
            "Try `iptables -h' or 'iptables --help' for more information.",
        ),
    ),
    (
        "-A INPUT -p udp --dport 1:2:3",
        2,
        (),
        (
            'iptables v1.8.9 (legacy): udp: Too many components for option "--destination-port" (max: 2)',
            "",
            "Try `iptables -h' or 'iptables --help' for more information.",
        ),
    ),
    (
        "-A INPUT -p udp --dport nosuch",
        2,
        (),
        (
            'iptables v1.8.9 (legacy): Port "nosuch" does not resolve to anything.',
            "",
            "Try `iptables -h' or 'iptables --help' for more information.",
        ),
    ),
    (
        "-A INPUT -p tcp --tcp-flags FOO SYN",
        2,
        (),
        (
            "iptables v1.8.9 (legacy): Unknown TCP flag `FOO'",
            "Try `iptables -h' or 'iptables --help' for more information.",
        ),
    ),
    (
        "-A INPUT -p tcp --tcp-flags SYN",
        2,
        (),
        (
            "iptables v1.8.9 (legacy): --tcp-flags requires two args.",
            "Try `iptables -h' or 'iptables --help' for more information.",
        ),
    ),
    (
        "-A INPUT -p icmp --icmp-type foo",
        2,
        (),
        (
            "iptables v1.8.9 (legacy): Unknown ICMP type `foo'",
            "Try `iptables -h' or 'iptables --help' for more information.",
        ),
    ),
    (
        "-A INPUT -j LOG --log-level 9",
        2,
        (),
        (
            'iptables v1.8.9 (legacy): log level "9" unknown',
            "",
            "Try `iptables -h' or 'iptables --help' for more information.",
        ),
    ),
    (
        "-A INPUT -j NFQUEUE --queue-balance 5:2",
        2,
        (),
        (
            "iptables v1.8.9 (legacy): 5 should be less than 2",
            "Try `iptables -h' or 'iptables --help' for more information.",
        ),
    ),
    (
        "-A INPUT -j NFQUEUE --queue-balance 5",
        2,
        (),
        (
            'iptables v1.8.9 (legacy): Bad range "5"',
            "Try `iptables -h' or 'iptables --help' for more information.",
        ),
    ),
    (
        "-A INPUT -j NFQUEUE --queue-num 70000",
        2,
        (),
        (
            'iptables v1.8.9 (legacy): NFQUEUE: bad value for option "--queue-num", or out of range (0-65535).',
            "",
            "Try `iptables -h' or 'iptables --help' for more information.",
        ),
    ),
    (
        "-A INPUT -j NFQUEUE --queue-num 1 --queue-balance 1:2",
        2,
        (),
        (
            'iptables v1.8.9 (legacy): NFQUEUE: option "--queue-num" cannot be used together with "--queue-balance".',
            "",
            "Try `iptables -h' or 'iptables --help' for more information.",
        ),
    ),
    (
        "-A INPUT -j REJECT --reject-with foo",
        2,
        (),
        (
            'iptables v1.8.9 (legacy): unknown reject type "foo"',
            "Try `iptables -h' or 'iptables --help' for more information.",
        ),
    ),
    (
        "-A INPUT -m length --length x",
        2,
        (),
        (
            'iptables v1.8.9 (legacy): length: bad value for option "--length" near "x", or out of range (0-65535).',
            "",
            "Try `iptables -h' or 'iptables --help' for more information.",
        ),
    ),
    (
        "-A INPUT -m ttl",
        2,
        (),
        (
            "iptables v1.8.9 (legacy): TTL match: You must specify one of `--ttl-eq', `--ttl-lt', `--ttl-gt",
            "Try `iptables -h' or 'iptables --help' for more information.",
        ),
    ),
    (
        "-A INPUT -m ttl --ttl-eq 1 --ttl-lt 3",
        2,
        (),
        (
            'iptables v1.8.9 (legacy): ttl: option "--ttl-lt" cannot be used together with "--ttl-eq".',
            "",
            "Try `iptables -h' or 'iptables --help' for more information.",
        ),
    ),
    (
        "-A INPUT -m tos --tos foo",
        2,
        (),
        (
            'iptables v1.8.9 (legacy): Symbolic name "foo" is unknown',
            "Try `iptables -h' or 'iptables --help' for more information.",
        ),
    ),
    (
        "-A INPUT -p udp -m multiport --dports 1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16",
        2,
        (),
        (
            "iptables v1.8.9 (legacy): too many ports specified",
            "Try `iptables -h' or 'iptables --help' for more information.",
        ),
    ),
    (
        "-A INPUT -m multiport --dports 1",
        2,
        (),
        (
            "iptables v1.8.9 (legacy): multiport needs `-p tcp', `-p udp', `-p udplite', `-p sctp' or `-p dccp'",
            "Try `iptables -h' or 'iptables --help' for more information.",
        ),
    ),
    (
        "-A INPUT -m foo",
        2,
        (),
        (
            "iptables v1.8.9 (legacy): Couldn't load match `foo':No such file or directory",
            "",
            "Try `iptables -h' or 'iptables --help' for more information.",
        ),
    ),
    (
        "-A INPUT -j TTL --ttl-set 3 --ttl-dec 1",
        2,
        (),
        (
            'iptables v1.8.9 (legacy): TTL: option "--ttl-set" cannot be used together with "--ttl-dec".',
            "",
            "Try `iptables -h' or 'iptables --help' for more information.",
        ),
    ),
    (
        "-A INPUT -j MARK",
        2,
        (),
        (
            "iptables v1.8.9 (legacy): MARK: One of the --set-xmark, --{and,or,xor,set}-mark options is required",
            "Try `iptables -h' or 'iptables --help' for more information.",
        ),
    ),
    (
        "-A INPUT -j MARK --set-mark 1 --or-mark 2",
        2,
        (),
        (
            'iptables v1.8.9 (legacy): MARK: option "--set-mark" cannot be used together with "--or-mark".',
            "",
            "Try `iptables -h' or 'iptables --help' for more information.",
        ),
    ),
    (
        "-A INPUT -j TOS",
        2,
        (),
        (
            "iptables v1.8.9 (legacy): TOS: An action is required",
            "Try `iptables -h' or 'iptables --help' for more information.",
        ),
    ),
    (
        "-A INPUT -p udp --sport",
        2,
        (),
        (
            'iptables v1.8.9 (legacy): option "--sport" requires an argument',
            "Try `iptables -h' or 'iptables --help' for more information.",
        ),
    ),
    (
        "-A INPUT -s",
        2,
        (),
        (
            'iptables v1.8.9 (legacy): option "-s" requires an argument',
            "Try `iptables -h' or 'iptables --help' for more information.",
        ),
    ),
    (
        "-A INPUT '!' '!' -s 1.2.3.4",
        2,
        (),
        (
            "iptables v1.8.9 (legacy): multiple consecutive ! not allowed",
            "Try `iptables -h' or 'iptables --help' for more information.",
        ),
    ),
    (
        "-A INPUT '!' -j ACCEPT",
        2,
        (),
        (
            "iptables v1.8.9 (legacy): cannot have ! before -j",
            "Try `iptables -h' or 'iptables --help' for more information.",
        ),
    ),
    (
        "'!' -A INPUT",
        2,
        (),
        (
            "iptables v1.8.9 (legacy): unexpected '!' flag",
            "Try `iptables -h' or 'iptables --help' for more information.",
        ),
    ),
    (
        "-L -A INPUT",
        2,
        (),
        (
            "iptables v1.8.9 (legacy): Cannot use -A with -L",
            "Try `iptables -h' or 'iptables --help' for more information.",
        ),
    ),
    (
        "-A INPUT -n",
        2,
        (),
        (
            "iptables v1.8.9 (legacy): Illegal option `-n' with this command",
            "Try `iptables -h' or 'iptables --help' for more information.",
        ),
    ),
    (
        "-L -s 1.2.3.4",
        2,
        (),
        (
            "iptables v1.8.9 (legacy): Illegal option `-s' with this command",
            "Try `iptables -h' or 'iptables --help' for more information.",
        ),
    ),
    (
        "-A INPUT --dst 1.2.3.4 --in eth0",
        2,
        (),
        (
            'iptables v1.8.9 (legacy): unknown option "--in"',
            "Try `iptables -h' or 'iptables --help' for more information.",
        ),
    ),
    ("-S INPUT 99", 0, (), ()),
    (
        "-A INPUT -m mark --mark 0x1/0x2/3",
        2,
        (),
        (
            'iptables v1.8.9 (legacy): mark: trailing garbage after value for option "--mark".',
            "",
            "Try `iptables -h' or 'iptables --help' for more information.",
        ),
    ),
    (
        "-A INPUT -c 1",
        2,
        (),
        (
            "iptables v1.8.9 (legacy): -c requires packet and byte counter",
            "Try `iptables -h' or 'iptables --help' for more information.",
        ),
    ),
    (
        "-A INPUT -c x 2",
        2,
        (),
        (
            "iptables v1.8.9 (legacy): -c packet counter not numeric",
            "Try `iptables -h' or 'iptables --help' for more information.",
        ),
    ),
    (
        "-A INPUT -m icmp",
        2,
        (),
        (
            'iptables v1.8.9 (legacy): icmp: option "--icmp-type" must be specified',
            "",
            "Try `iptables -h' or 'iptables --help' for more information.",
        ),
    ),
    (
        "-A INPUT -p udp --dport 0x10",
        2,
        (),
        (
            'iptables v1.8.9 (legacy): Port "0x10" does not resolve to anything.',
            "",
            "Try `iptables -h' or 'iptables --help' for more information.",
        ),
    ),
    (
        "-A INPUT -p udp -m multiport --dports 5:3",
        2,
        (),
        (
            "iptables v1.8.9 (legacy): invalid portrange specified",
            "Try `iptables -h' or 'iptables --help' for more information.",
        ),
    ),
    (
        "-A INPUT -p udp -m multiport --dports foo",
        2,
        (),
        (
            "iptables v1.8.9 (legacy): invalid port/service `foo' specified",
            "Try `iptables -h' or 'iptables --help' for more information.",
        ),
    ),
    (
        "-A INPUT -p udp '!' -m multiport --dports 5",
        2,
        (),
        (
            "iptables v1.8.9 (legacy): unexpected ! flag before --match",
            "Try `iptables -h' or 'iptables --help' for more information.",
        ),
    ),
    (
        "-A INPUT -m mark --mark 0x100000000",
        2,
        (),
        (
            'iptables v1.8.9 (legacy): mark: bad integer value for option "--mark", or out of range.',
            "",
            "Try `iptables -h' or 'iptables --help' for more information.",
        ),
    ),
    (
        "-A INPUT -m tos --tos 0x100",
        2,
        (),
        (
            'iptables v1.8.9 (legacy): Symbolic name "0x100" is unknown',
            "Try `iptables -h' or 'iptables --help' for more information.",
        ),
    ),
    (
        "-A INPUT -m tos",
        2,
        (),
        (
            'iptables v1.8.9 (legacy): tos: option "--tos" must be specified',
            "",
            "Try `iptables -h' or 'iptables --help' for more information.",
        ),
    ),
    (
        "-A INPUT -m length",
        2,
        (),
        (
            'iptables v1.8.9 (legacy): length: option "--length" must be specified',
            "",
            "Try `iptables -h' or 'iptables --help' for more information.",
        ),
    ),
    (
        "-A INPUT -p icmp --icmp-type 300",
        2,
        (),
        (
            "iptables v1.8.9 (legacy): Unknown ICMP type `300'",
            "Try `iptables -h' or 'iptables --help' for more information.",
        ),
    ),
    (
        "-A INPUT -p icmp --icmp-type 3/300",
        2,
        (),
        (
            "iptables v1.8.9 (legacy): Unknown ICMP code `3/300'",
            "Try `iptables -h' or 'iptables --help' for more information.",
        ),
    ),
    (
        "-A INPUT -p icmp --icmp-type e",
        2,
        (),
        (
            "iptables v1.8.9 (legacy): Ambiguous ICMP type `e': `echo-reply' or `echo-request'?",
            "Try `iptables -h' or 'iptables --help' for more information.",
        ),
    ),
    (
        "-A INPUT -j LOG --log-prefix 'a\nb'",
        2,
        (),
        (
            "iptables v1.8.9 (legacy): Newlines not allowed in --log-prefix",
            "Try `iptables -h' or 'iptables --help' for more information.",
        ),
    ),
    (
        "-A INPUT -j NFQUEUE --queue-cpu-fanout",
        2,
        (),
        (
            'iptables v1.8.9 (legacy): NFQUEUE: option "--queue-cpu-fanout" also requires "--queue-balance".',
            "",
            "Try `iptables -h' or 'iptables --help' for more information.",
        ),
    ),
    (
        "-A INPUT -o lo",
        2,
        (),
        (
            "iptables v1.8.9 (legacy): Can't use -o with INPUT",
            "",
            "Try `iptables -h' or 'iptables --help' for more information.",
        ),
    ),
    (
        "-A OUTPUT -i lo",
        2,
        (),
        (
            "iptables v1.8.9 (legacy): Can't use -i with OUTPUT",
            "",
            "Try `iptables -h' or 'iptables --help' for more information.",
        ),
    ),
    (
        "-Z INPUT 0",
        2,
        (),
        (
            "iptables v1.8.9 (legacy): Invalid rule number `0'",
            "Try `iptables -h' or 'iptables --help' for more information.",
        ),
    ),
    (
        "-F INPUT 1",
        2,
        (),
        (
            "Bad argument `1'",
            "Try `iptables -h' or 'iptables --help' for more information.",
        ),
    ),
    (
        "-X INPUT foo",
        2,
        (),
        (
            "Bad argument `foo'",
            "Try `iptables -h' or 'iptables --help' for more information.",
        ),
    ),
    ("-V", 0, ("iptables v1.8.9 (legacy)",), ()),
    ("-A INPUT -p udp --dport 70000", 0, (), ()),
    (
        "-t foo -L",
        3,
        (),
        (
            "iptables v1.8.9 (legacy): can't initialize iptables table `foo': Table does not exist (do you need to insmod?)",
            "Perhaps iptables or your kernel needs to be upgraded.",
        ),
    ),
    (
        "-v -A INPUT -s 10.0.0.1 -i eth0 -p udp --dport 5 -j ACCEPT",
        0,
        ("ACCEPT  udp opt -- in eth0 out *  10.0.0.1  -> 0.0.0.0/0   udp dpt:5",),
        (),
    ),
    (
        "-v -A INPUT '!' -i eth+ -f -j DROP",
        0,
        ("DROP  all opt -f in !eth+ out *  0.0.0.0/0  -> 0.0.0.0/0  ",),
        (),
    ),
    (
        "-v -I FORWARD '!' -o lo '!' -f -p 17",
        0,
        ("  udp opt !f in * out !lo  0.0.0.0/0  -> 0.0.0.0/0  ",),
        (),
    ),
    (
        "-S",
        0,
        (
            "-P INPUT ACCEPT",
            "-P FORWARD ACCEPT",
            "-P OUTPUT ACCEPT",
            "-N l1",
            "-A INPUT -j ACCEPT",
            "-A INPUT -p udp -m udp --dport 4464",
            "-A INPUT -s 10.0.0.1/32 -i eth0 -p udp -m udp --dport 5 -j ACCEPT",
            "-A INPUT ! -i eth+ -f -j DROP",
            "-A FORWARD ! -o lo -p udp ! -f",
            "-A l1 -j l1",
        ),
        (),
    ),
    ("-v -D INPUT 1", 0, (), ()),
    (
        "-v -Z",
        0,
        (
            "Zeroing chain `INPUT'",
            "Zeroing chain `FORWARD'",
            "Zeroing chain `OUTPUT'",
            "Zeroing chain `l1'",
        ),
        (),
    ),
    (
        "-L -v -n",
        0,
        (
            "Chain INPUT (policy ACCEPT 0 packets, 0 bytes)",
            " pkts bytes target     prot opt in     out     source               destination         ",
            "    0     0            17   --  *      *       0.0.0.0/0            0.0.0.0/0            udp dpt:4464",
            "    0     0 ACCEPT     17   --  eth0   *       10.0.0.1             0.0.0.0/0            udp dpt:5",
            "    0     0 DROP       0    -f  !eth+  *       0.0.0.0/0            0.0.0.0/0           ",
            "",
            "Chain FORWARD (policy ACCEPT 0 packets, 0 bytes)",
            " pkts bytes target     prot opt in     out     source               destination         ",
            "    0     0            17   !f  *      !lo     0.0.0.0/0            0.0.0.0/0           ",
            "",
            "Chain OUTPUT (policy ACCEPT 0 packets, 0 bytes)",
            " pkts bytes target     prot opt in     out     source               destination         ",
            "",
            "Chain l1 (1 references)",
            " pkts bytes target     prot opt in     out     source               destination         ",
            "    0     0 l1         0    --  *      *       0.0.0.0/0            0.0.0.0/0           ",
        ),
        (),
    ),
    (
        "-v -F",
        0,
        (
            "Flushing chain `INPUT'",
            "Flushing chain `FORWARD'",
            "Flushing chain `OUTPUT'",
            "Flushing chain `l1'",
        ),
        (),
    ),
    ("-N z1", 0, (), ()),
    ("-v -X", 0, ("Deleting chain `l1'", "Deleting chain `z1'"), ()),
    ("-S", 0, ("-P INPUT ACCEPT", "-P FORWARD ACCEPT", "-P OUTPUT ACCEPT"), ()),
    (
        "-E l1 x y",
        2,
        (),
        (
            "Bad argument `y'",
            "Try `iptables -h' or 'iptables --help' for more information.",
        ),
    ),
    (
        "-P INPUT",
        2,
        (),
        (
            "iptables v1.8.9 (legacy): -P requires a chain and a policy",
            "Try `iptables -h' or 'iptables --help' for more information.",
        ),
    ),
    (
        "-R INPUT",
        2,
        (),
        (
            "iptables v1.8.9 (legacy): -R requires a rule number",
            "Try `iptables -h' or 'iptables --help' for more information.",
        ),
    ),
    (
        "-A",
        2,
        (),
        (
            'iptables v1.8.9 (legacy): option "-A" requires an argument',
            "Try `iptables -h' or 'iptables --help' for more information.",
        ),
    ),
    (
        "-N ACCEPT",
        2,
        (),
        (
            "iptables v1.8.9 (legacy): chain name may not clash with target name",
            "Try `iptables -h' or 'iptables --help' for more information.",
        ),
    ),
    ("-A INPUT -g INPUT", 1, (), ("iptables: Invalid argument. Run `dmesg' for more information.",)),
    ("-A INPUT -j QUEUE", 0, (), ()),
    ("-S INPUT", 0, ("-P INPUT ACCEPT", "-A INPUT -j QUEUE"), ()),
    (
        "-L INPUT -x -n --line-numbers",
        0,
        (
            "Chain INPUT (policy ACCEPT)",
            "num  target     prot opt source               destination         ",
            "1    QUEUE      0    --  0.0.0.0/0            0.0.0.0/0           ",
        ),
        (),
    ),
    ("-A INPUT -p tcp --dport 80 --syn", 0, (), ()),
    (
        "-L INPUT 2",
        0,
        (
            "           tcp  --  anywhere             anywhere             tcp dpt:http flags:FIN,SYN,RST,ACK/SYN",
        ),
        (),
    ),
    ("-A INPUT -p udp --sport 10:5", 0, (), ()),
    ("-A INPUT -m length --length 5:3", 0, (), ()),
    (
        "-S INPUT",
        0,
        (
            "-P INPUT ACCEPT",
            "-A INPUT -j QUEUE",
            "-A INPUT -p tcp -m tcp --dport 80 --tcp-flags FIN,SYN,RST,ACK SYN",
            "-A INPUT -p udp -m udp --sport 10:5",
            "-A INPUT -m length --length 5:3",
        ),
        (),
    ),
    ("-4 -S INPUT 1", 0, ("-A INPUT -j QUEUE",), ()),
    ("-w -S INPUT 1", 0, ("-A INPUT -j QUEUE",), ()),
    ("--list-rules INPUT 1", 0, ("-A INPUT -j QUEUE",), ()),
    ("--list INPUT 1 --numeric", 0, ("QUEUE      0    --  0.0.0.0/0            0.0.0.0/0           ",), ()),
    (
        "--lis INPUT",
        2,
        (),
        (
            'iptables v1.8.9 (legacy): unknown option "--lis"',
            "Try `iptables -h' or 'iptables --help' for more information.",
        ),
    ),
    (
        "-nvxL INPUT --line-numbers",
        0,
        (
            "Chain INPUT (policy ACCEPT 0 packets, 0 bytes)",
            "num      pkts      bytes target     prot opt in     out     source               destination         ",
            "1           0        0 QUEUE      0    --  *      *       0.0.0.0/0            0.0.0.0/0           ",
            "2           0        0            6    --  *      *       0.0.0.0/0            0.0.0.0/0            tcp dpt:80 flags:0x17/0x02",
            "3           0        0            17   --  *      *       0.0.0.0/0            0.0.0.0/0            udp spts:10:5",
            "4           0        0            0    --  *      *       0.0.0.0/0            0.0.0.0/0            length 5:3",
        ),
        (),
    ),
    ("-F", 0, (), ()),
    ("-A INPUT --source 10.0.0.1 --protocol udp --destination-port 53 --jump ACCEPT", 0, (), ()),
    ("-S INPUT", 0, ("-P INPUT ACCEPT", "-A INPUT -s 10.0.0.1/32 -p udp -m udp --dport 53 -j ACCEPT"), ()),
]

# The /etc/services lines the recordings' port names come from.
SERVICES = (
    "tcpmux 1/tcp",
    "echo 7/tcp",
    "echo 7/udp",
    "discard 9/tcp sink null",
    "discard 9/udp sink null",
    "systat 11/tcp users",
    "daytime 13/tcp",
    "daytime 13/udp",
    "netstat 15/tcp",
    "qotd 17/tcp quote",
    "ssh 22/tcp",
    "domain 53/tcp",
    "domain 53/udp",
    "bootps 67/udp",
    "bootpc 68/udp",
    "http 80/tcp www",
    "bbs 7000/tcp",
    "afs3-fileserver 7000/udp",
    "afs3-callback 7001/udp",
)
