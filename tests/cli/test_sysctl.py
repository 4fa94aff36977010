"""`stackemu sysctl`: procps-ng's output, messages and exit codes over GetSysctl and
SetSysctl."""

from __future__ import annotations

import json

from stackemu.nic.v1 import nic_pb2
from tests.cli.conftest import Stack
from tests.cli.hoststack import HostStack, fullstack_fixture  # noqa: F401


def test_read(stack: Stack) -> None:
    r = stack.run("sysctl", "net.core.netdev_budget", "net/core/dev_weight")
    assert (r.exit_code, r.stdout, r.stderr) == (
        0,
        "net.core.netdev_budget = 300\nnet.core.dev_weight = 64\n",
        "",
    )
    assert stack.alice.sent("GetSysctl") == [
        nic_pb2.GetSysctlRequest(names=["net.core.netdev_budget"]),
        nic_pb2.GetSysctlRequest(names=["net.core.dev_weight"]),
    ]
    r = stack.run("sysctl", "-n", "net.core.netdev_budget")
    assert r.stdout == "300\n"
    r = stack.run("sysctl", "-N", "net.core.netdev_budget")
    assert r.stdout == "net.core.netdev_budget\n"


def test_all_and_directories(stack: Stack) -> None:
    listing = (
        "net.core.dev_weight = 64\n"
        "net.core.netdev_budget = 300\n"
        "net.core.netdev_budget_usecs = 2000\n"
        "net.core.netdev_max_backlog = 1000\n"
    )
    assert stack.run("sysctl", "-a").stdout == listing
    assert stack.run("sysctl", "net.core").stdout == listing


def test_unknown_key(stack: Stack) -> None:
    r = stack.run("sysctl", "net.core.netdev_budget", "net.core.foo")
    assert r.exit_code == 1
    assert r.stdout == "net.core.netdev_budget = 300\n"
    assert r.stderr == "sysctl: cannot stat /proc/sys/net/core/foo: No such file or directory\n"
    # read failures add up
    r = stack.run("sysctl", "net.core.foo", "net.core.bar")
    assert r.exit_code == 2
    r = stack.run("sysctl", "-e", "net.core.foo")
    assert (r.exit_code, r.output) == (0, "")


def test_write(stack: Stack) -> None:
    r = stack.run("sysctl", "-w", "net.core.netdev_budget=600", "net.core.dev_weight = 32")
    assert (r.exit_code, r.stdout) == (0, "net.core.netdev_budget = 600\nnet.core.dev_weight = 32\n")
    # procps writes NAME=VALUE without -w too
    r = stack.run("sysctl", "-q", "net.core.netdev_max_backlog=2000")
    assert (r.exit_code, r.output) == (0, "")
    assert stack.alice.sent("SetSysctl") == [
        nic_pb2.SetSysctlRequest(name="net.core.netdev_budget", value="600"),
        nic_pb2.SetSysctlRequest(name="net.core.dev_weight", value="32"),
        nic_pb2.SetSysctlRequest(name="net.core.netdev_max_backlog", value="2000"),
    ]


def test_write_errors(stack: Stack) -> None:
    cases = [
        (
            ("-w", "net.core.netdev_budget=abc"),
            'sysctl: setting key "net.core.netdev_budget": Invalid argument\n',
        ),
        (("-w", "net.core.foo=1"), "sysctl: cannot stat /proc/sys/net/core/foo: No such file or directory\n"),
        (("-w", "net.core.netdev_budget"), "sysctl: command line(0): invalid syntax, continuing...\n"),
        (("-w",), "sysctl: no variables specified\nTry `sysctl --help' for more information.\n"),
    ]
    for args, stderr in cases:
        r = stack.run("sysctl", *args)
        assert (r.exit_code, r.stdout, r.stderr) == (1, "", stderr), args
    r = stack.run("sysctl", "--host", "bob", "-w", "net.core.dev_weight=16")
    assert r.exit_code == 0
    assert stack.bob.sent("SetSysctl") == [nic_pb2.SetSysctlRequest(name="net.core.dev_weight", value="16")]


# Every layer: the NIC's keys (the fake's), the IP layer's (its real control service),
# the UDP and socket layers' (the real UDP service, which applies them).


def test_all_covers_every_layer(fullstack: HostStack) -> None:
    from services.ip.control import ip_sysctl_names
    from services.udp.servicer import udp_sysctl_names

    r = fullstack.run("sysctl", "-a")
    assert (r.exit_code, r.stderr) == (0, "")
    lines = r.stdout.splitlines()
    keys = [line.split(" = ")[0] for line in lines]
    assert keys == sorted(keys)
    nic = set(fullstack.stack.alice.sysctls)
    assert set(keys) == nic | set(ip_sysctl_names()) | set(udp_sysctl_names())
    assert "net.ipv4.udp_mem" in keys and "net.core.rmem_default" in keys and "net.ipv4.ip_forward" in keys
    assert "net.ipv4.ip_local_port_range = 32768\t60999" in lines
    assert "net.core.rmem_default = 212992" in lines
    # --json: the same values.
    r = fullstack.run("sysctl", "-a", "--json")
    values = json.loads(r.stdout)
    assert [f"{k} = {v}" for k, v in values.items()] == lines


def test_write_goes_to_the_layer_that_applies_it(fullstack: HostStack) -> None:
    h = fullstack
    r = h.run("sysctl", "-w", "net.core.rmem_default=65536", "net.ipv4.udp_rmem_min=8192")
    assert (r.exit_code, r.stdout) == (0, "net.core.rmem_default = 65536\nnet.ipv4.udp_rmem_min = 8192\n")
    assert h.udp.sysctl.get_int("net.core.rmem_default") == 65536
    assert h.udp.sysctl.get_int("net.ipv4.udp_rmem_min") == 8192
    # The NIC's copy of net.core.rmem_default is not the one in force: it was not asked.
    assert h.stack.alice.sent("SetSysctl") == []
    assert h.run("sysctl", "-n", "net.core.rmem_default").stdout == "65536\n"
    # A socket created now gets the new default receive buffer.
    pid = h.process("app")
    fd = h.socket(pid)
    h.bind(pid, fd, 0, 5000)
    assert "rb65536," in h.run("ss", "-uanm").stdout
    # The IP layer's keys go to IP, and its handler's refusals come back.
    r = h.run("sysctl", "-w", "net.ipv4.ip_default_ttl=0")
    assert (r.exit_code, r.stderr) == (1, 'sysctl: setting key "net.ipv4.ip_default_ttl": Invalid argument\n')
    r = h.run("sysctl", "-w", "net.ipv4.ip_local_port_range=40000 40100")
    assert r.exit_code == 0
    assert h.udp.sysctl.get("net.ipv4.ip_local_port_range") == (40000, 40100)
    r = h.run("sysctl", "net.ipv4.udp_nonexistent")
    assert (r.exit_code, r.stderr) == (
        1,
        "sysctl: cannot stat /proc/sys/net/ipv4/udp_nonexistent: No such file or directory\n",
    )
