"""`stackemu sysctl`: procps-ng's output, messages and exit codes over GetSysctl and
SetSysctl."""

from __future__ import annotations

from stackemu.nic.v1 import nic_pb2
from tests.cli.conftest import Stack


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
