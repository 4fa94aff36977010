"""`stackemu ip addr`, `ip route`, `ip rule` and the net.ipv4 sysctls against the real
IP control RPCs: iproute2 6.1's text, messages and exit codes. Every expected line
was printed by iproute2 6.1 against Linux 6.18.44 in a network namespace holding the
same state (lo 127.0.0.1/8, eth0 10.0.0.1/24 brd +, the same commands in the same
order); tests/e2e/test_route_kernel.py repeats the comparisons live when it can."""

from __future__ import annotations

import pytest

from tests.cli.conftest import IpStack

LOCAL_TABLE = (
    "local 10.0.0.1 dev eth0 proto kernel scope host src 10.0.0.1 \n"
    "broadcast 10.0.0.255 dev eth0 proto kernel scope link src 10.0.0.1 \n"
    "local 127.0.0.0/8 dev lo proto kernel scope host src 127.0.0.1 \n"
    "local 127.0.0.1 dev lo proto kernel scope host src 127.0.0.1 \n"
    "broadcast 127.255.255.255 dev lo proto kernel scope link src 127.0.0.1 \n"
)


def run(s: IpStack, *args: str) -> tuple[int, str, str]:
    r = s.run(*args)
    return r.exit_code, r.stdout, r.stderr


def test_initial_tables_and_rules(ipstack: IpStack) -> None:
    assert run(ipstack, "ip", "route") == (
        0,
        "10.0.0.0/24 dev eth0 proto kernel scope link src 10.0.0.1 \n",
        "",
    )
    assert run(ipstack, "ip", "route", "show", "table", "local") == (0, LOCAL_TABLE, "")
    all_tables = run(ipstack, "ip", "route", "show", "table", "all")[1]
    assert all_tables == "10.0.0.0/24 dev eth0 proto kernel scope link src 10.0.0.1 \n" + LOCAL_TABLE.replace(
        " dev eth0 proto", " dev eth0 table local proto"
    ).replace(" dev lo proto", " dev lo table local proto")
    assert run(ipstack, "ip", "rule") == (
        0,
        "0:\tfrom all lookup local\n32766:\tfrom all lookup main\n32767:\tfrom all lookup default\n",
        "",
    )


# (command, exit code, stderr) in order, as exp1 ran them on 6.18.
ROUTE_ADDS = [
    (("add", "blackhole", "198.51.100.0/24"), 0, ""),
    (("add", "unreachable", "198.51.101.0/24"), 0, ""),
    (("add", "prohibit", "198.51.102.0/24"), 0, ""),
    (("add", "throw", "198.51.103.0/24"), 0, ""),
    (("add", "192.0.2.0/24", "via", "10.0.0.2", "mtu", "1400", "metric", "5"), 0, ""),
    (
        ("add", "192.0.2.0/24", "via", "10.0.0.2", "mtu", "lock", "1300", "metric", "7", "proto", "static"),
        0,
        "",
    ),
    (("add", "192.0.2.0/24", "via", "10.0.0.2", "metric", "5"), 2, "RTNETLINK answers: File exists\n"),
    (("append", "192.0.2.0/24", "via", "10.0.0.3", "metric", "5"), 0, ""),
    (("add", "203.0.113.0/24", "dev", "eth0", "src", "10.0.0.1", "scope", "link", "table", "100"), 0, ""),
    (("add", "203.0.113.0/24", "via", "10.1.1.1"), 2, "Error: Nexthop has invalid gateway.\n"),
    (("add", "203.0.113.0/24", "dev", "eth0", "src", "10.9.9.9"), 2, "Error: Invalid prefsrc address.\n"),
    (("add", "203.0.113.0/24", "dev", "nodev"), 1, 'Cannot find device "nodev"\n'),
    (("add", "203.0.113.0/24", "via", "10.0.0.1"), 0, ""),
    (("add", "203.0.113.0/24", "via", "10.0.0.255"), 2, "Error: Nexthop has invalid gateway.\n"),
    (("add", "multicast", "224.1.0.0/16", "dev", "eth0"), 0, ""),
    (
        ("add", "blackhole", "198.51.104.0/24", "dev", "eth0"),
        2,
        "Error: Gateway, device and multipath can not be specified for this route type.\n",
    ),
    (("add", "10.0.0.0/8", "dev", "eth0", "mtu", "70000"), 0, ""),
    (("add", "default", "via", "10.0.0.2", "dev", "eth0", "onlink"), 0, ""),
    (("del", "default"), 0, ""),
    (("del", "default"), 2, "RTNETLINK answers: No such process\n"),
    (("del", "198.51.200.0/24"), 2, "RTNETLINK answers: No such process\n"),
    (
        ("add", "203.0.129.0/24", "dev", "eth0", "tos", "0x03"),
        2,
        "Error: Invalid dsfield (tos): ECN bits must be 0.\n",
    ),
    (
        ("add", "203.0.127.0/24", "via", "10.0.0.2", "scope", "link"),
        2,
        "Error: Nexthop has invalid gateway.\n",
    ),
    (("add", "203.0.120.0/24", "via", "127.0.0.1"), 0, ""),
    (("add", "203.0.122.0/24", "via", "10.0.0.1", "dev", "lo"), 2, "Error: Nexthop has invalid gateway.\n"),
    (("add", "203.0.129.0/24", "dev", "eth0", "tos", "0x10"), 0, ""),
]

MAIN_AFTER = (
    "10.0.0.0/24 dev eth0 proto kernel scope link src 10.0.0.1 \n"
    "10.0.0.0/8 dev eth0 scope link mtu 65520 \n"
    "192.0.2.0/24 via 10.0.0.2 dev eth0 metric 5 mtu 1400 \n"
    "192.0.2.0/24 via 10.0.0.3 dev eth0 metric 5 \n"
    "192.0.2.0/24 via 10.0.0.2 dev eth0 proto static metric 7 mtu lock 1300 \n"
    "blackhole 198.51.100.0/24 \n"
    "unreachable 198.51.101.0/24 \n"
    "prohibit 198.51.102.0/24 \n"
    "throw 198.51.103.0/24 \n"
    "203.0.113.0/24 via 10.0.0.1 dev eth0 \n"
    "203.0.120.0/24 via 127.0.0.1 dev lo \n"
    "203.0.129.0/24 tos 0x10 dev eth0 scope link \n"
    "multicast 224.1.0.0/16 dev eth0 scope link \n"
)

# (ip route get arguments, exit code, stdout or stderr)
GETS = [
    (("198.51.100.1",), 2, "RTNETLINK answers: Invalid argument\n"),
    (("198.51.101.1",), 2, "RTNETLINK answers: No route to host\n"),
    (("198.51.102.1",), 2, "RTNETLINK answers: Permission denied\n"),
    (("198.51.103.1",), 2, "RTNETLINK answers: Network is unreachable\n"),
    (("192.0.2.9",), 0, "192.0.2.9 via 10.0.0.2 dev eth0 src 10.0.0.1 uid 0 \n    cache mtu 1400 \n"),
    (("203.0.113.5",), 0, "203.0.113.5 dev eth0 src 10.0.0.1 uid 0 \n    cache \n"),
    (
        ("224.1.2.3",),
        0,
        "multicast 224.1.2.3 dev eth0 src 10.0.0.1 rt_offload_failed uid 0 \n    cache <mc> \n",
    ),
    (("198.51.100.1", "oif", "eth0"), 0, "198.51.100.1 dev eth0 src 10.0.0.1 uid 0 \n    cache \n"),
    (("8.8.8.8", "oif", "lo"), 0, "8.8.8.8 dev lo src 10.0.0.1 uid 0 \n    cache <local> \n"),
    (("10.0.0.1", "oif", "eth0"), 0, "local 10.0.0.1 dev lo src 10.0.0.1 uid 0 \n    cache <local> \n"),
    (("127.0.0.1", "oif", "eth0"), 0, "127.0.0.1 dev eth0 src 10.0.0.1 uid 0 \n    cache \n"),
    (("10.0.0.2", "from", "10.0.0.1"), 0, "10.0.0.2 from 10.0.0.1 dev eth0 uid 0 \n    cache \n"),
    (
        ("10.0.0.2", "mark", "5", "tos", "0x10"),
        0,
        "10.0.0.2 dev eth0 src 10.0.0.1 mark 5 uid 0 \n    cache \n",
    ),
    (("10.0.0.255",), 0, "broadcast 10.0.0.255 dev eth0 src 10.0.0.1 uid 0 \n    cache <local,brd> \n"),
    (("127.0.0.1",), 0, "local 127.0.0.1 dev lo src 127.0.0.1 uid 0 \n    cache <local> \n"),
    (("10.0.0.2", "from", "10.0.0.2", "iif", "eth0"), 2, "RTNETLINK answers: No route to host\n"),
    (
        ("10.0.0.1", "from", "10.0.0.2", "iif", "eth0"),
        0,
        "local 10.0.0.1 from 10.0.0.2 dev lo \n    cache <local> iif eth0 \n",
    ),
    (
        ("10.0.0.255", "from", "10.0.0.2", "iif", "eth0"),
        0,
        "broadcast 10.0.0.255 from 10.0.0.2 dev lo \n    cache <local,brd> iif eth0 \n",
    ),
    (
        ("255.255.255.255", "from", "10.0.0.2", "iif", "eth0"),
        0,
        "broadcast 255.255.255.255 from 10.0.0.2 dev lo \n    cache <local,brd> iif eth0 \n",
    ),
    (("127.0.0.1", "from", "10.0.0.2", "iif", "eth0"), 2, "RTNETLINK answers: Invalid argument\n"),
    (("8.8.8.8", "from", "10.0.0.2", "iif", "eth0"), 2, "RTNETLINK answers: No route to host\n"),
    (("198.51.102.1", "from", "10.0.0.2", "iif", "eth0"), 2, "RTNETLINK answers: No route to host\n"),
    (("0.0.0.0", "from", "10.0.0.2", "iif", "eth0"), 2, "RTNETLINK answers: Invalid argument\n"),
    (("10.0.0.1", "from", "0.0.0.0", "iif", "eth0"), 2, "RTNETLINK answers: Invalid argument\n"),
    (("10.0.0.1", "from", "224.0.0.1", "iif", "eth0"), 2, "RTNETLINK answers: Invalid argument\n"),
    (("10.0.0.1", "from", "127.0.0.1", "iif", "eth0"), 2, "RTNETLINK answers: Invalid argument\n"),
    (("10.0.0.1", "from", "10.0.0.1", "iif", "eth0"), 2, "RTNETLINK answers: Invalid argument\n"),
    (("10.0.0.1", "iif", "eth9"), 1, 'Cannot find device "eth9"\n'),
]


@pytest.fixture
def routed(ipstack: IpStack) -> IpStack:
    for args, code, stderr in ROUTE_ADDS:
        assert run(ipstack, "ip", "route", *args) == (code, "", stderr), args
    return ipstack


def test_route_show_after_adds(routed: IpStack) -> None:
    assert run(routed, "ip", "route", "show") == (0, MAIN_AFTER, "")
    assert run(routed, "ip", "route", "show", "table", "100") == (
        0,
        "203.0.113.0/24 dev eth0 scope link src 10.0.0.1 \n",
        "",
    )
    table_all = run(routed, "ip", "route", "show", "table", "all")[1].splitlines(keepends=True)
    # inet_dump_fib(): table 100's bucket comes before main's and local's.
    assert table_all[0] == "203.0.113.0/24 dev eth0 table 100 scope link src 10.0.0.1 \n"
    assert "".join(table_all[1:14]) == MAIN_AFTER


@pytest.mark.parametrize(("args", "code", "text"), GETS, ids=[" ".join(g[0]) for g in GETS])
def test_route_get(routed: IpStack, args: tuple[str, ...], code: int, text: str) -> None:
    rc, stdout, stderr = run(routed, "ip", "route", "get", *args)
    assert (rc, stdout if code == 0 else stderr) == (code, text)


def test_merged_tables_until_a_rule_exists(ipstack: IpStack) -> None:
    """Without custom rules local and main are one trie: the longer main route wins."""
    assert run(ipstack, "ip", "route", "add", "127.0.0.5/32", "dev", "eth0")[0] == 0
    assert (
        run(ipstack, "ip", "route", "get", "127.0.0.5")[1]
        == "127.0.0.5 dev eth0 src 10.0.0.1 uid 0 \n    cache \n"
    )
    assert run(ipstack, "ip", "rule", "add", "from", "1.2.3.4", "lookup", "7")[0] == 0
    assert run(ipstack, "ip", "route", "get", "127.0.0.5")[1] == (
        "local 127.0.0.5 dev lo table local src 127.0.0.1 uid 0 \n    cache <local> \n"
    )


def test_throw_falls_through_to_the_default_table(routed: IpStack) -> None:
    assert run(routed, "ip", "route", "add", "0.0.0.0/0", "via", "10.0.0.2", "table", "default")[0] == 0
    # unreachable stops the lookup; throw and no route go on to table default.
    assert run(routed, "ip", "route", "get", "198.51.101.1")[2] == "RTNETLINK answers: No route to host\n"
    assert run(routed, "ip", "route", "get", "198.51.103.1")[1] == (
        "198.51.103.1 via 10.0.0.2 dev eth0 table default src 10.0.0.1 uid 0 \n    cache \n"
    )
    assert run(routed, "ip", "route", "show", "table", "253")[1] == "default via 10.0.0.2 dev eth0 \n"


RULES_SHOWN = (
    "0:\tfrom all lookup local\n"
    "96:\tfrom all lookup 1\n"
    "97:\tfrom all iif eth0 oif lo unreachable\n"
    "98:\tfrom all to 192.0.2.0/24 tos 0x10 blackhole\n"
    "99:\tfrom all fwmark 0x5/0xff lookup 100\n"
    "100:\tfrom 10.0.0.0/24 lookup 100\n"
    "100:\tfrom 10.0.0.1 lookup 5\n"
    "32766:\tfrom all lookup main\n"
    "32766:\tfrom all lookup main\n"
    "32767:\tfrom all lookup default\n"
    "33000:\tfrom all lookup 2000000\n"
    "40000:\tnot from all prohibit\n"
)


def test_rules(routed: IpStack) -> None:
    s = routed
    for args in (
        ("from", "10.0.0.0/24", "lookup", "100", "pref", "100"),
        ("fwmark", "0x5/0xff", "table", "100"),
        ("to", "192.0.2.0/24", "tos", "0x10", "blackhole"),
        ("iif", "eth0", "oif", "lo", "unreachable"),
        ("not", "from", "all", "prohibit", "priority", "40000"),
        ("from", "all", "lookup", "main", "priority", "32766"),
        ("from", "10.0.0.1", "lookup", "5", "pref", "100"),
    ):
        assert run(s, "ip", "rule", "add", *args) == (0, "", ""), args
    assert run(s, "ip", "rule", "del", "pref", "12345") == (
        2,
        "",
        "RTNETLINK answers: No such file or directory\n",
    )
    assert run(s, "ip", "rule", "add", "lookup", "0")[0] == 0
    assert run(s, "ip", "rule", "add", "priority", "33000", "lookup", "2000000")[0] == 0
    assert run(s, "ip", "rule", "add", "tos", "0x03", "lookup", "8") == (
        2,
        "",
        "Error: Invalid dsfield (tos): ECN bits must be 0.\n",
    )
    assert run(s, "ip", "rule") == (0, RULES_SHOWN, "")
    assert run(s, "ip", "route", "get", "198.51.101.1")[2] == "RTNETLINK answers: No route to host\n"
    assert (
        run(s, "ip", "route", "get", "192.0.2.9", "tos", "0x10")[2] == "RTNETLINK answers: Invalid argument\n"
    )
    assert run(s, "ip", "route", "get", "203.0.113.5", "from", "10.0.0.1")[1] == (
        "203.0.113.5 from 10.0.0.1 dev eth0 table 100 uid 0 \n    cache \n"
    )
    assert run(s, "ip", "route", "get", "203.0.113.5", "mark", "5")[1] == (
        "203.0.113.5 dev eth0 table 100 src 10.0.0.1 mark 5 uid 0 \n    cache \n"
    )
    for sel in (
        ("pref", "40000"),
        ("from", "10.0.0.0/24"),
        ("priority", "32766"),
        ("pref", "0"),
        ("table", "default"),
    ):
        assert run(s, "ip", "rule", "del", *sel) == (0, "", ""), sel
    assert run(s, "ip", "rule")[1] == (
        "96:\tfrom all lookup 1\n"
        "97:\tfrom all iif eth0 oif lo unreachable\n"
        "98:\tfrom all to 192.0.2.0/24 tos 0x10 blackhole\n"
        "99:\tfrom all fwmark 0x5/0xff lookup 100\n"
        "100:\tfrom 10.0.0.1 lookup 5\n"
        "32766:\tfrom all lookup main\n"
        "33000:\tfrom all lookup 2000000\n"
    )


def test_rule_marks_and_detached_devices(ipstack: IpStack) -> None:
    s = ipstack
    for args in (
        ("from", "1.2.3.4", "lookup", "7"),
        ("from", "1.2.3.4", "lookup", "7"),
        ("from", "1.2.3.4", "lookup", "7", "pref", "5"),
        ("fwmark", "0", "lookup", "8"),
        ("fwmark", "0x10/0xffffffff", "lookup", "8"),
        ("iif", "nodev", "lookup", "8"),
    ):
        assert run(s, "ip", "rule", "add", *args)[0] == 0, args
    assert run(s, "ip", "rule")[1] == (
        "0:\tfrom all lookup local\n"
        "2:\tfrom all iif nodev [detached] lookup 8\n"
        "3:\tfrom all fwmark 0x10 lookup 8\n"
        "4:\tfrom all lookup 8\n"
        "5:\tfrom 1.2.3.4 lookup 7\n"
        "32764:\tfrom 1.2.3.4 lookup 7\n"
        "32765:\tfrom 1.2.3.4 lookup 7\n"
        "32766:\tfrom all lookup main\n"
        "32767:\tfrom all lookup default\n"
    )


def test_pmtu_exceptions(ipstack: IpStack) -> None:
    """What ICMP fragmentation-needed did on 6.18 (exp: 1400, 1450, 1300, 500)."""
    s = ipstack
    router = s.ip["alice"].router
    bob = 0x0A000002
    assert router.update_pmtu(bob, 1400)
    assert run(s, "ip", "route", "get", "10.0.0.2")[1] == (
        "10.0.0.2 dev eth0 src 10.0.0.1 uid 0 \n    cache expires 599sec mtu 1400 \n"
    )
    assert not router.update_pmtu(bob, 1450)
    assert router.update_pmtu(bob, 1300)
    assert router.update_pmtu(bob, 500)
    assert run(s, "ip", "route", "get", "10.0.0.2", "from", "10.0.0.1")[1] == (
        "10.0.0.2 from 10.0.0.1 dev eth0 uid 0 \n    cache expires 599sec mtu lock 552 \n"
    )
    assert (
        run(s, "ip", "route", "show", "cache")[1]
        == "10.0.0.2 dev eth0 \n    cache expires 599sec mtu lock 552 \n"
    )
    assert run(s, "ip", "route", "add", "198.18.0.0/24", "via", "10.0.0.2", "mtu", "lock", "1300")[0] == 0
    assert not router.update_pmtu(0xC6120005, 1000)
    assert run(s, "ip", "route", "get", "198.18.0.5")[1] == (
        "198.18.0.5 via 10.0.0.2 dev eth0 src 10.0.0.1 uid 0 \n    cache mtu lock 1300 \n"
    )
    assert run(s, "ip", "route", "flush", "cache") == (0, "", "")
    assert (
        run(s, "ip", "route", "get", "10.0.0.2")[1] == "10.0.0.2 dev eth0 src 10.0.0.1 uid 0 \n    cache \n"
    )


ADDRS = [
    (("192.168.1.10/24",), 0, ""),
    (("192.168.1.11/24",), 0, ""),
    (("192.168.2.1/31",), 0, ""),
    (("192.168.3.1/32",), 0, ""),
    (("192.168.4.1/24", "brd", "+", "noprefixroute"), 0, ""),
    (("192.168.5.1/24", "brd", "192.168.5.77"), 0, ""),
    (("192.168.1.10/24",), 2, "Error: ipv4: Address already assigned.\n"),
    (("192.168.1.10/16",), 0, ""),
    (("192.168.6.1/24", "scope", "link"), 0, ""),
    (("192.168.6.2/24",), 2, "Error: ipv4: Invalid scope value.\n"),
    (("192.168.9.1/24", "metric", "50"), 0, ""),
]


def test_addresses_and_their_routes(ipstack: IpStack) -> None:
    s = ipstack
    for args, code, stderr in ADDRS:
        assert run(s, "ip", "addr", "add", *args, "dev", "eth1") == (code, "", stderr), args
    shown = run(s, "ip", "addr", "show", "dev", "eth1")[1].splitlines()
    assert shown[2::2] == [
        "    inet 192.168.6.1/24 scope link eth1",
        "    inet 192.168.1.10/24 scope global eth1",
        "    inet 192.168.2.1/31 scope global eth1",
        "    inet 192.168.3.1/32 scope global eth1",
        "    inet 192.168.4.1/24 brd 192.168.4.255 scope global noprefixroute eth1",
        "    inet 192.168.5.1/24 brd 192.168.5.77 scope global eth1",
        "    inet 192.168.1.10/16 scope global eth1",
        "    inet 192.168.9.1/24 metric 50 scope global eth1",
        "    inet 192.168.1.11/24 scope global secondary eth1",
    ]
    assert shown[3] == "       valid_lft forever preferred_lft forever"
    main = [ln for ln in run(s, "ip", "route")[1].splitlines() if "eth1" in ln]
    assert main == [
        "192.168.0.0/16 dev eth1 proto kernel scope link src 192.168.1.10 ",
        "192.168.1.0/24 dev eth1 proto kernel scope link src 192.168.1.10 ",
        "192.168.2.0/31 dev eth1 proto kernel scope link src 192.168.2.1 ",
        "192.168.5.0/24 dev eth1 proto kernel scope link src 192.168.5.1 ",
        "192.168.6.0/24 dev eth1 proto kernel scope link src 192.168.6.1 ",
        "192.168.9.0/24 dev eth1 proto kernel scope link src 192.168.9.1 metric 50 ",
    ]
    local = [ln for ln in run(s, "ip", "route", "show", "table", "local")[1].splitlines() if "eth1" in ln]
    assert local == [
        "local 192.168.1.10 dev eth1 proto kernel scope host src 192.168.1.10 ",
        "local 192.168.1.11 dev eth1 proto kernel scope host src 192.168.1.10 ",
        "broadcast 192.168.1.255 dev eth1 proto kernel scope link src 192.168.1.10 ",
        "local 192.168.2.1 dev eth1 proto kernel scope host src 192.168.2.1 ",
        "local 192.168.3.1 dev eth1 proto kernel scope host src 192.168.3.1 ",
        "local 192.168.4.1 dev eth1 proto kernel scope host src 192.168.4.1 ",
        "broadcast 192.168.4.255 dev eth1 proto kernel scope link src 192.168.4.1 ",
        "local 192.168.5.1 dev eth1 proto kernel scope host src 192.168.5.1 ",
        "broadcast 192.168.5.77 dev eth1 proto kernel scope link src 192.168.5.1 ",
        "broadcast 192.168.5.255 dev eth1 proto kernel scope link src 192.168.5.1 ",
        "local 192.168.6.1 dev eth1 proto kernel scope host src 192.168.6.1 ",
        "broadcast 192.168.6.255 dev eth1 proto kernel scope link src 192.168.6.1 ",
        "local 192.168.9.1 dev eth1 proto kernel scope host src 192.168.9.1 ",
        "broadcast 192.168.9.255 dev eth1 proto kernel scope link src 192.168.9.1 ",
        "broadcast 192.168.255.255 dev eth1 proto kernel scope link src 192.168.1.10 ",
    ]
    # A deleted address takes the main-table routes whose prefsrc it was, not table 100's.
    for args in (
        ("172.16.0.0/16", "dev", "eth1", "src", "192.168.1.11"),
        ("172.17.0.0/16", "dev", "eth1", "src", "192.168.1.11", "table", "100"),
        ("172.18.0.0/16", "via", "192.168.1.1"),
    ):
        assert run(s, "ip", "route", "add", *args)[0] == 0, args
    assert run(s, "ip", "addr", "del", "192.168.1.11/24", "dev", "eth1") == (0, "", "")
    routes = run(s, "ip", "route", "show", "table", "all")[1]
    assert "172.16.0.0/16" not in routes
    assert "172.17.0.0/16 dev eth1 table 100 scope link src 192.168.1.11 \n" in routes
    assert "local 192.168.1.11 " not in routes
    assert run(s, "ip", "addr", "del", "192.168.1.10/24", "dev", "eth1") == (0, "", "")
    assert run(s, "ip", "addr", "del", "192.168.1.10/24", "dev", "eth1") == (
        2,
        "",
        "Error: ipv4: Address not found.\n",
    )
    r = s.run("ip", "addr", "del", "192.168.1.10", "dev", "eth1")
    assert r.exit_code == 0
    assert r.stderr.startswith("Warning: Executing wildcard deletion to stay compatible with old scripts.\n")
    routes = run(s, "ip", "route", "show", "table", "all")[1]
    assert "192.168.0.0/16" not in routes and "broadcast 192.168.255.255" not in routes
    # The gateway is no longer on-link, yet the route stays (as on 6.18).
    assert "172.18.0.0/16 via 192.168.1.1 dev eth1 \n" in routes
    for a in (
        "192.168.2.1/31",
        "192.168.3.1/32",
        "192.168.4.1/24",
        "192.168.5.1/24",
        "192.168.6.1/24",
        "192.168.9.1/24",
    ):
        assert run(s, "ip", "addr", "del", a, "dev", "eth1")[0] == 0, a
    # The last address gone: fib_disable_ip() flushes every route through eth1.
    assert "eth1" not in run(s, "ip", "route", "show", "table", "all")[1]


def test_ip_sysctls_go_to_the_ip_service(ipstack: IpStack) -> None:
    s = ipstack
    assert run(s, "sysctl", "net.ipv4.ip_forward") == (0, "net.ipv4.ip_forward = 0\n", "")
    assert run(s, "sysctl", "-w", "net.ipv4.ip_forward=1") == (0, "net.ipv4.ip_forward = 1\n", "")
    assert s.ip["alice"].sysctl.get_int("net.ipv4.ip_forward") == 1
    assert run(s, "sysctl", "net.ipv4.route.min_pmtu", "net.ipv4.route.mtu_expires") == (
        0,
        "net.ipv4.route.min_pmtu = 552\nnet.ipv4.route.mtu_expires = 600\n",
        "",
    )
    assert run(s, "sysctl", "-w", "net.ipv4.route.min_pmtu=10") == (
        1,
        "",
        'sysctl: setting key "net.ipv4.route.min_pmtu": Invalid argument\n',
    )
    listing = run(s, "sysctl", "-a")[1].splitlines()
    assert "net.core.netdev_budget = 300" in listing and "net.ipv4.ip_forward = 1" in listing
    assert listing == sorted(listing)
    assert (
        run(s, "sysctl", "net.ipv4.route")[1]
        == "net.ipv4.route.min_pmtu = 552\nnet.ipv4.route.mtu_expires = 600\n"
    )
    # Forwarding on: an unreachable route is now EHOSTUNREACH from the route itself.
    assert run(s, "ip", "route", "add", "prohibit", "198.51.102.0/24")[0] == 0
    assert run(s, "ip", "route", "get", "198.51.102.1", "from", "10.0.0.2", "iif", "eth0")[2] == (
        "RTNETLINK answers: Permission denied\n"
    )


def test_usage_and_argument_errors(ipstack: IpStack) -> None:
    s = ipstack
    assert run(s, "ip", "route", "add", "10.1.2.3/24", "dev", "eth0") == (
        2,
        "",
        "Error: Invalid prefix for given prefix length.\n",
    )
    assert run(s, "ip", "route", "add", "bogus", "dev", "eth0") == (
        1,
        "",
        'Error: inet prefix is expected rather than "bogus".\n',
    )
    assert run(s, "ip", "route", "add", "10.1.0.0/16", "dev", "eth0", "metric", "x")[0] == 255
    assert run(s, "ip", "route", "frob")[2] == 'Command "frob" is unknown, try "ip route help".\n'
    assert run(s, "ip", "route", "help")[2].startswith("Usage: ip route { list | flush } SELECTOR\n")
    assert run(s, "ip", "route", "flush") == (255, "", '"ip route flush" requires arguments.\n')
    assert run(s, "ip", "addr", "add", "10.5.0.1/24") == (
        1,
        "",
        'Not enough information: "dev" argument is required.\n',
    )
