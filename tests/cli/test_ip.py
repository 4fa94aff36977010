"""`stackemu ip link` and `ip neigh` against a fake NicService: iproute2's output,
messages and exit codes, and the exact requests sent."""

from __future__ import annotations

import json

from stackemu.nic.v1 import nic_pb2
from tests.cli.conftest import BOB_MAC, Stack


def test_ip_link_lists_every_device_as_iproute2(stack: Stack) -> None:
    r = stack.run("ip", "link")
    assert r.exit_code == 0, r.output
    assert r.stdout == (
        "1: lo: <LOOPBACK,UP,LOWER_UP> mtu 65536 qdisc noqueue state UNKNOWN mode DEFAULT group default "
        "qlen 1000\n"
        "    link/loopback 00:00:00:00:00:00 brd 00:00:00:00:00:00\n"
        "2: eth0: <BROADCAST,MULTICAST,UP,LOWER_UP> mtu 1500 qdisc pfifo_fast state UP mode DEFAULT "
        "group default qlen 1000\n"
        "    link/ether 02:00:0a:00:00:01 brd ff:ff:ff:ff:ff:ff\n"
        # down: noop qdisc, no LOWER_UP, state DOWN
        "3: eth1: <BROADCAST,MULTICAST> mtu 1500 qdisc noop state DOWN mode DEFAULT group default qlen 1000\n"
        "    link/ether 02:00:0a:00:00:03 brd ff:ff:ff:ff:ff:ff\n"
    )
    assert stack.alice.sent("ListLinks") == [nic_pb2.ListLinksRequest()]
    assert stack.bob.requests == []


def test_up_device_without_carrier_is_no_carrier_and_promisc_shows(stack: Stack) -> None:
    eth1 = stack.alice.links[2]
    eth1.flags |= 0x1 | 0x100  # IFF_UP, IFF_PROMISC
    r = stack.run("ip", "link", "show", "eth1")
    assert r.stdout.splitlines()[0] == (
        "3: eth1: <NO-CARRIER,BROADCAST,MULTICAST,PROMISC,UP> mtu 1500 qdisc pfifo_fast state DOWN "
        "mode DEFAULT group default qlen 1000"
    )


def test_ip_s_link_prints_the_statistics_block(stack: Stack) -> None:
    r = stack.run("ip", "-s", "link", "show", "dev", "eth0")
    assert r.exit_code == 0, r.output
    assert r.stdout == (
        "2: eth0: <BROADCAST,MULTICAST,UP,LOWER_UP> mtu 1500 qdisc pfifo_fast state UP mode DEFAULT "
        "group default qlen 1000\n"
        "    link/ether 02:00:0a:00:00:01 brd ff:ff:ff:ff:ff:ff\n"
        "    RX:   bytes packets errors dropped  missed   mcast           \n"
        "            420       5      0       2       3       1 \n"
        "    TX:   bytes packets errors dropped carrier collsns           \n"
        "    12345678901       7      0       0       0       0 \n"
    )


def test_ip_s_link_on_lo_has_iproute2_column_widths(stack: Stack) -> None:
    r = stack.run("ip", "-stats", "li", "sh", "lo")
    assert r.stdout.splitlines()[2:] == [
        "    RX:  bytes packets errors dropped  missed   mcast           ",
        "          1234      10      0       0       0       0 ",
        "    TX:  bytes packets errors dropped carrier collsns           ",
        "          1234      10      0       0       0       0 ",
    ]


def test_ip_link_show_unknown_device(stack: Stack) -> None:
    r = stack.run("ip", "link", "show", "dev", "nope")
    assert (r.exit_code, r.stdout, r.stderr) == (1, "", 'Device "nope" does not exist.\n')


def test_ip_link_show_garbage(stack: Stack) -> None:
    r = stack.run("ip", "link", "show", "eth0", "extra")
    assert r.exit_code == 255
    assert r.stderr == 'Error: either "dev" is duplicate, or "extra" is a garbage.\n'


def test_ip_link_set_sends_one_request_with_every_change(stack: Stack) -> None:
    r = stack.run(
        "ip",
        "link",
        "set",
        "dev",
        "eth0",
        "down",
        "mtu",
        "9000",
        "promisc",
        "on",
        "txqueuelen",
        "500",
        "rps_cpus",
        "ff,00000003",
    )
    assert (r.exit_code, r.output) == (0, "")
    assert stack.alice.sent("SetLink") == [
        nic_pb2.SetLinkRequest(
            device="eth0", up=False, mtu=9000, promisc=True, txqueuelen=500, rps_cpus=0xFF_00000003
        )
    ]


def test_ip_link_set_host_colon_dev_goes_to_that_host(stack: Stack) -> None:
    r = stack.run("ip", "link", "set", "bob:eth0", "up", "rps_cpus", "3", "napi_weight", "16")
    assert r.exit_code == 0, r.output
    assert stack.bob.sent("SetLink") == [
        nic_pb2.SetLinkRequest(device="eth0", up=True, rps_cpus=3, napi_weight=16)
    ]
    assert stack.alice.requests == []


def test_ip_host_option(stack: Stack) -> None:
    r = stack.run("ip", "--host", "bob", "link", "set", "eth0", "promisc", "off")
    assert r.exit_code == 0, r.output
    assert stack.bob.sent("SetLink") == [nic_pb2.SetLinkRequest(device="eth0", promisc=False)]


def test_ip_link_set_errors_as_iproute2(stack: Stack) -> None:
    cases = [
        # the kernel's extack message
        (("eth0", "mtu", "70000"), 2, "Error: mtu greater than device maximum.\n"),
        # no extack: strerror
        (("eth0", "txqueuelen", "200000"), 2, "RTNETLINK answers: Invalid argument\n"),
        (("nope", "up"), 1, 'Cannot find device "nope"\n'),
        (("eth0", "mtu", "abc"), 255, 'Error: argument "abc" is wrong: Invalid "mtu" value\n\n'),
        (
            ("eth0", "promisc", "maybe"),
            1,
            'Error: argument of "promisc" must be "on" or "off", not "maybe"\n',
        ),
        (("eth0", "rps_cpus", "xyz"), 255, 'Error: argument "xyz" is wrong: Invalid "rps_cpus" value\n\n'),
        (("eth0", "bogus"), 255, 'Error: either "dev" is duplicate, or "bogus" is a garbage.\n'),
        (("up",), 255, 'Not enough information: "dev" argument is required.\n'),
        (("eth0", "mtu"), 255, 'Command line is not complete. Try option "help"\n'),
    ]
    for args, code, stderr in cases:
        r = stack.run("ip", "link", "set", *args)
        assert (r.exit_code, r.stdout, r.stderr) == (code, "", stderr), args


def test_ip_neigh_show_hides_noarp_like_iproute2(stack: Stack) -> None:
    r = stack.run("ip", "neigh")
    assert r.exit_code == 0, r.output
    assert r.stdout == (
        "10.0.0.2 dev eth0 lladdr 02:00:0a:00:00:02 REACHABLE \n"
        "10.0.0.3 dev eth0 INCOMPLETE \n"
        "10.0.0.4 dev eth0 FAILED \n"
        "10.0.0.5 dev eth0 lladdr 02:00:0a:00:00:05 PERMANENT \n"
        "10.0.0.7 dev eth0 lladdr 02:00:0a:00:00:07 STALE \n"
    )
    assert stack.alice.sent("ListNeighbours") == [nic_pb2.ListNeighboursRequest()]


def test_ip_neigh_show_dev_and_nud_filters(stack: Stack) -> None:
    r = stack.run("ip", "neigh", "show", "dev", "eth0", "nud", "noarp", "nud", "stale")
    assert r.stdout == (
        "10.0.0.6 lladdr 02:00:0a:00:00:06 NOARP \n10.0.0.7 lladdr 02:00:0a:00:00:07 STALE \n"
    )
    assert stack.alice.sent("ListNeighbours") == [nic_pb2.ListNeighboursRequest(device="eth0")]
    r = stack.run("ip", "neigh", "show", "nud", "all", "to", "10.0.0.6/31")
    assert r.stdout == (
        "10.0.0.6 dev eth0 lladdr 02:00:0a:00:00:06 NOARP \n"
        "10.0.0.7 dev eth0 lladdr 02:00:0a:00:00:07 STALE \n"
    )
    r = stack.run("ip", "neigh", "show", "dev", "nope")
    assert (r.exit_code, r.stderr) == (1, 'Cannot find device "nope"\n')


def test_ip_neigh_replace_and_add(stack: Stack) -> None:
    r = stack.run("ip", "neigh", "replace", "10.0.0.9", "lladdr", "02:00:0a:00:00:09", "dev", "eth0")
    assert r.exit_code == 0, r.output
    r = stack.run(
        "ip", "neigh", "add", "10.0.0.10", "lladdr", "2:0:a:0:0:a", "dev", "eth0", "nud", "reachable"
    )
    assert r.exit_code == 0, r.output
    r = stack.run(
        "ip", "neigh", "replace", "10.0.0.2", "lladdr", "02:00:0a:00:00:02", "dev", "eth0", "nud", "stale"
    )
    assert r.exit_code == 0, r.output
    assert stack.alice.sent("AddNeighbour") == [
        nic_pb2.AddNeighbourRequest(
            device="eth0", address=0x0A000009, lladdr=bytes.fromhex("02000a000009"), state=0x80
        ),
        nic_pb2.AddNeighbourRequest(
            device="eth0", address=0x0A00000A, lladdr=bytes.fromhex("02000a00000a"), state=0x02
        ),
        nic_pb2.AddNeighbourRequest(device="eth0", address=0x0A000002, lladdr=BOB_MAC, state=0x04),
    ]


def test_ip_neigh_modify_errors(stack: Stack) -> None:
    cases = [
        (
            ("add", "10.0.0.2", "lladdr", "02:00:0a:00:00:02", "dev", "eth0"),
            2,
            "RTNETLINK answers: File exists\n",
        ),
        (
            ("change", "10.0.0.99", "lladdr", "02:00:0a:00:00:02", "dev", "eth0"),
            2,
            "RTNETLINK answers: No such file or directory\n",
        ),
        (("del", "10.0.0.99", "dev", "eth0"), 2, "RTNETLINK answers: No such file or directory\n"),
        (("replace", "10.0.0.8", "dev", "eth0"), 2, "Error: No link layer address given.\n"),
        (("add", "10.0.0.8", "lladdr", "zz", "dev", "eth0"), 255, '"zz" is invalid lladdr.\n'),
        (
            ("add", "foo", "lladdr", "02:00:0a:00:00:02", "dev", "eth0"),
            1,
            'Error: any valid address is expected rather than "foo".\n',
        ),
        (
            ("add", "10.0.0.8", "lladdr", "02:00:0a:00:00:02"),
            255,
            "Device and destination are required arguments.\n",
        ),
        (("add", "10.0.0.8", "lladdr", "02:00:0a:00:00:02", "dev", "nope"), 1, 'Cannot find device "nope"\n'),
        (
            ("add", "10.0.0.8", "lladdr", "02:00:0a:00:00:02", "dev", "eth0", "nud", "bogus"),
            255,
            'Error: argument "bogus" is wrong: nud state is bad\n',
        ),
        (("flush",), 255, "Flush requires arguments.\n"),
        (("frobnicate",), 255, 'Command "frobnicate" is unknown, try "ip neigh help".\n'),
    ]
    for args, code, stderr in cases:
        r = stack.run("ip", "neigh", *args)
        assert (r.exit_code, r.stdout, r.stderr) == (code, "", stderr), args


def test_ip_neigh_del_and_flush(stack: Stack) -> None:
    r = stack.run("ip", "neigh", "del", "10.0.0.2", "dev", "eth0")
    assert r.exit_code == 0, r.output
    assert stack.alice.sent("DeleteNeighbour") == [
        nic_pb2.DeleteNeighbourRequest(device="eth0", address=0x0A000002)
    ]
    r = stack.run("ip", "neigh", "flush", "dev", "eth0")
    assert (r.exit_code, r.output) == (0, "")
    r = stack.run("ip", "-s", "neigh", "flush", "all")
    assert r.stdout == "\n*** Round 1, deleting 4 entries ***\n*** Flush is complete after 1 round ***\n"
    assert stack.alice.sent("FlushNeighbours") == [
        nic_pb2.FlushNeighboursRequest(device="eth0"),
        nic_pb2.FlushNeighboursRequest(),
    ]


def test_ip_unknown_object_and_option(stack: Stack) -> None:
    r = stack.run("ip", "frob")
    assert (r.exit_code, r.stderr) == (255, 'Object "frob" is unknown, try "ip help".\n')
    r = stack.run("ip", "-x", "link")
    assert (r.exit_code, r.stderr) == (255, 'Option "-x" is unknown, try "ip -help".\n')


def test_no_stack_running_says_how_to_start_one(stack: Stack, tmp_path_factory) -> None:
    (stack.state_dir / "stack.json").unlink()
    r = stack.run("ip", "link")
    assert r.exit_code == 1
    assert "no emulated stack is running" in r.stderr and "stackemu up" in r.stderr
    r = stack.run("ip", "link", "show", "carol:eth0")
    assert r.exit_code == 1


def test_unknown_host(stack: Stack) -> None:
    r = stack.run("ip", "link", "show", "carol:eth0")
    assert r.exit_code == 1
    assert "no host 'carol' in the running stack (hosts: alice, bob)" in r.stderr


def test_service_not_answering(stack: Stack) -> None:
    data = json.loads((stack.state_dir / "stack.json").read_text())
    data["hosts"]["alice"]["nic"]["addr"] = "127.0.0.1:1"
    (stack.state_dir / "stack.json").write_text(json.dumps(data))
    r = stack.run("ip", "link")
    assert r.exit_code == 1
    assert "cannot reach host alice's NIC service at 127.0.0.1:1" in r.stderr
    assert "stackemu status" in r.stderr
