"""`stackemu ip -j`: iproute2 6.1's JSON for link, neigh (the NIC fakes) and addr,
route, rule (the real IP control service). Every expected string below was printed by
iproute2 6.1's `ip -4 -j` on Linux 6.18 in a network namespace holding the same state
(the commands of tests/cli/test_ip_route.py), byte for byte; where the fake NIC's state
cannot be built in a namespace (its counters), the keys and their order are the ones
the real `ip -j` printed for a veth device. test_json_matches_the_kernel repeats the
comparisons live when it can (root and iproute2)."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator

import pytest

from tests.cli.conftest import IpStack, Stack
from tests.cli.test_ip_route import ROUTE_ADDS, routed  # noqa: F401  (the fixture)
from tests.netns import IP, ip_in, veth_netns

LO = (
    '{"ifindex":1,"ifname":"lo","flags":["LOOPBACK","UP","LOWER_UP"],"mtu":65536,"qdisc":"noqueue",'
    '"operstate":"UNKNOWN","linkmode":"DEFAULT","group":"default","txqlen":1000,"link_type":"loopback",'
    '"address":"00:00:00:00:00:00","broadcast":"00:00:00:00:00:00"}'
)
ETH0 = (
    '{"ifindex":2,"ifname":"eth0","flags":["BROADCAST","MULTICAST","UP","LOWER_UP"],"mtu":1500,'
    '"qdisc":"pfifo_fast","operstate":"UP","linkmode":"DEFAULT","group":"default","txqlen":1000,'
    '"link_type":"ether","address":"02:00:0a:00:00:01","broadcast":"ff:ff:ff:ff:ff:ff"}'
)
ETH1 = (
    '{"ifindex":3,"ifname":"eth1","flags":["BROADCAST","MULTICAST"],"mtu":1500,"qdisc":"noop",'
    '"operstate":"DOWN","linkmode":"DEFAULT","group":"default","txqlen":1000,"link_type":"ether",'
    '"address":"02:00:0a:00:00:03","broadcast":"ff:ff:ff:ff:ff:ff"}'
)

# `ip -j -p link show lo` in a new namespace: json_writer's own layout.
LO_PRETTY = """\
[ {
        "ifindex": 1,
        "ifname": "lo",
        "flags": [ "LOOPBACK","UP","LOWER_UP" ],
        "mtu": 65536,
        "qdisc": "noqueue",
        "operstate": "UNKNOWN",
        "linkmode": "DEFAULT",
        "group": "default",
        "txqlen": 1000,
        "link_type": "loopback",
        "address": "00:00:00:00:00:00",
        "broadcast": "00:00:00:00:00:00"
    } ]
"""


def test_ip_j_link(stack: Stack) -> None:
    r = stack.run("ip", "-j", "link")
    assert (r.exit_code, r.stdout, r.stderr) == (0, f"[{LO},{ETH0},{ETH1}]\n", "")
    # -json, --json and -j are one option (ip.c matches "-json"); `up` filters as in text.
    assert stack.run("ip", "--json", "link", "show", "up").stdout == f"[{LO},{ETH0}]\n"
    assert stack.run("ip", "-json", "li", "sh", "dev", "eth1").stdout == f"[{ETH1}]\n"
    assert stack.run("ip", "-j", "-p", "link", "show", "lo").stdout == LO_PRETTY
    assert stack.run("ip", "-p", "-j", "link", "show", "lo").stdout == LO_PRETTY
    r = stack.run("ip", "-j", "link", "show", "nope")
    assert (r.exit_code, r.stdout, r.stderr) == (1, "", 'Device "nope" does not exist.\n')


def test_ip_j_link_no_carrier_and_unnamed_flags(stack: Stack) -> None:
    stack.alice.links[2].flags |= 0x1 | 0x100 | 0x80000  # IFF_UP, IFF_PROMISC, a bit with no name
    (eth1,) = json.loads(stack.run("ip", "-j", "link", "show", "eth1").stdout)
    assert eth1["flags"] == ["NO-CARRIER", "BROADCAST", "MULTICAST", "PROMISC", "UP", "80000"]
    assert (eth1["qdisc"], eth1["operstate"]) == ("pfifo_fast", "DOWN")


def test_ip_j_s_link_has_stats64_with_iproute2s_names(stack: Stack) -> None:
    (eth0,) = json.loads(stack.run("ip", "-j", "-s", "link", "show", "eth0").stdout)
    assert list(eth0)[-1] == "stats64"
    # The first RX group names rx_over_errors where the text's column is "missed".
    assert eth0["stats64"] == {
        "rx": {"bytes": 420, "packets": 5, "errors": 0, "dropped": 2, "over_errors": 0, "multicast": 1},
        "tx": {
            "bytes": 12345678901,
            "packets": 7,
            "errors": 0,
            "dropped": 0,
            "carrier_errors": 0,
            "collisions": 0,
        },
    }
    stack.alice.links[1].stats.rx_nohandler = 4
    (eth0,) = json.loads(stack.run("ip", "-j", "-s", "-s", "link", "show", "eth0").stdout)
    assert eth0["stats64"]["rx"] == {
        "bytes": 420,
        "packets": 5,
        "errors": 0,
        "dropped": 2,
        "over_errors": 0,
        "multicast": 1,
        "length_errors": 0,
        "crc_errors": 0,
        "frame_errors": 0,
        "fifo_errors": 0,
        "missed_errors": 3,
        "nohandler": 4,
    }
    assert list(eth0["stats64"]["tx"]) == [
        "bytes",
        "packets",
        "errors",
        "dropped",
        "carrier_errors",
        "collisions",
        "aborted_errors",
        "fifo_errors",
        "window_errors",
        "heartbeat_errors",
    ]


NEIGH = [
    {"dst": "10.0.0.2", "dev": "eth0", "lladdr": "02:00:0a:00:00:02", "state": ["REACHABLE"]},
    {"dst": "10.0.0.3", "dev": "eth0", "state": ["INCOMPLETE"]},
    {"dst": "10.0.0.4", "dev": "eth0", "state": ["FAILED"]},
    {"dst": "10.0.0.5", "dev": "eth0", "lladdr": "02:00:0a:00:00:05", "state": ["PERMANENT"]},
    {"dst": "10.0.0.7", "dev": "eth0", "lladdr": "02:00:0a:00:00:07", "state": ["STALE"]},
]


def test_ip_j_neigh(stack: Stack) -> None:
    r = stack.run("ip", "-j", "neigh")
    assert (r.exit_code, r.stderr) == (0, "")
    assert r.stdout == json.dumps(NEIGH, separators=(",", ":")) + "\n"
    # dev DEV: no "dev" key, as no "dev" word; -s adds the probes; NUD_NONE has no state.
    shown = json.loads(stack.run("ip", "-j", "-s", "neigh", "show", "dev", "eth0", "nud", "reachable").stdout)
    assert shown == [{"dst": "10.0.0.2", "lladdr": "02:00:0a:00:00:02", "probes": 1, "state": ["REACHABLE"]}]
    stack.alice.neighbours[2].state = 0
    shown = json.loads(stack.run("ip", "-j", "neigh", "show", "10.0.0.4/31", "nud", "all").stdout)
    assert shown == [{"dst": "10.0.0.4", "dev": "eth0"}, NEIGH[3]]
    assert stack.run("ip", "-j", "neigh", "show", "to", "10.0.0.99").stdout == "[]\n"
    assert stack.run("ip", "-j", "-p", "neigh", "show", "to", "10.0.0.99").stdout == "[ ]\n"


def test_ip_j_neigh_flush_prints_text_as_iproute2(stack: Stack) -> None:
    r = stack.run("ip", "-j", "-s", "neigh", "flush", "dev", "eth0")
    assert r.stdout == "\n*** Round 1, deleting 4 entries ***\n*** Flush is complete after 1 round ***\n"


ADDR_ETH0 = (
    '[{"ifindex":2,"ifname":"eth0","flags":["BROADCAST","MULTICAST","UP","LOWER_UP"],"mtu":1500,'
    '"qdisc":"pfifo_fast","operstate":"UP","group":"default","txqlen":1000,"link_type":"ether",'
    '"address":"02:00:0a:00:00:01","broadcast":"ff:ff:ff:ff:ff:ff","addr_info":[{"family":"inet",'
    '"local":"10.0.0.1","prefixlen":24,"broadcast":"10.0.0.255","scope":"global","label":"eth0",'
    '"valid_life_time":4294967295,"preferred_life_time":4294967295}]}]\n'
)


def test_ip_j_addr(ipstack: IpStack) -> None:
    assert ipstack.run("ip", "-j", "addr", "show", "eth0").stdout == ADDR_ETH0
    # Added in this order in a namespace, the kernel listed them as ADDR_INFO_ETH1.
    for args in (
        ("192.168.1.10/24",),
        ("192.168.1.11/24", "label", "eth1:a"),
        ("192.168.6.1/24", "scope", "link"),
        ("192.168.4.1/24", "brd", "+", "noprefixroute", "metric", "9"),
    ):
        assert ipstack.run("ip", "addr", "add", *args, "dev", "eth1").exit_code == 0, args
    (eth1,) = json.loads(ipstack.run("ip", "-j", "-s", "addr", "show", "dev", "eth1").stdout)
    assert list(eth1) == [
        "ifindex",
        "ifname",
        "flags",
        "mtu",
        "qdisc",
        "operstate",
        "group",
        "txqlen",
        "link_type",
        "address",
        "broadcast",
        "addr_info",
        "stats64",
    ]
    assert json.dumps(eth1["addr_info"], separators=(",", ":")) == ADDR_INFO_ETH1


ADDR_INFO_ETH1 = (
    '[{"family":"inet","local":"192.168.6.1","prefixlen":24,"scope":"link","label":"eth1",'
    '"valid_life_time":4294967295,"preferred_life_time":4294967295},'
    '{"family":"inet","local":"192.168.1.10","prefixlen":24,"scope":"global","label":"eth1",'
    '"valid_life_time":4294967295,"preferred_life_time":4294967295},'
    '{"family":"inet","local":"192.168.4.1","prefixlen":24,"metric":9,"broadcast":"192.168.4.255",'
    '"scope":"global","noprefixroute":true,"label":"eth1","valid_life_time":4294967295,'
    '"preferred_life_time":4294967295},'
    '{"family":"inet","local":"192.168.1.11","prefixlen":24,"scope":"global","secondary":true,'
    '"label":"eth1:a","valid_life_time":4294967295,"preferred_life_time":4294967295}]'
)


ROUTES_MAIN = (
    '[{"dst":"10.0.0.0/24","dev":"eth0","protocol":"kernel","scope":"link","prefsrc":"10.0.0.1","flags":[]},'
    '{"dst":"10.0.0.0/8","dev":"eth0","scope":"link","flags":[],"metrics":[{"mtu":65520}]},'
    '{"dst":"192.0.2.0/24","gateway":"10.0.0.2","dev":"eth0","metric":5,"flags":[],"metrics":[{"mtu":1400}]},'
    '{"dst":"192.0.2.0/24","gateway":"10.0.0.3","dev":"eth0","metric":5,"flags":[]},'
    '{"dst":"192.0.2.0/24","gateway":"10.0.0.2","dev":"eth0","protocol":"static","metric":7,"flags":[],'
    '"metrics":[{"mtu":1300}]},'
    '{"type":"blackhole","dst":"198.51.100.0/24","flags":[]},'
    '{"type":"unreachable","dst":"198.51.101.0/24","flags":[]},'
    '{"type":"prohibit","dst":"198.51.102.0/24","flags":[]},'
    '{"type":"throw","dst":"198.51.103.0/24","flags":[]},'
    '{"dst":"203.0.113.0/24","gateway":"10.0.0.1","dev":"eth0","flags":[]},'
    '{"dst":"203.0.120.0/24","gateway":"127.0.0.1","dev":"lo","flags":[]},'
    '{"dst":"203.0.129.0/24","tos":"0x10","dev":"eth0","scope":"link","flags":[]},'
    '{"type":"multicast","dst":"224.1.0.0/16","dev":"eth0","scope":"link","flags":[]}]\n'
)
TABLE_100 = '[{"dst":"203.0.113.0/24","dev":"eth0","scope":"link","prefsrc":"10.0.0.1","flags":[]}]\n'
LOCAL_ROUTES = (
    '{"type":"local","dst":"10.0.0.1","dev":"eth0","table":"local","protocol":"kernel","scope":"host",'
    '"prefsrc":"10.0.0.1","flags":[]},'
    '{"type":"broadcast","dst":"10.0.0.255","dev":"eth0","table":"local","protocol":"kernel","scope":"link",'
    '"prefsrc":"10.0.0.1","flags":[]},'
    '{"type":"local","dst":"127.0.0.0/8","dev":"lo","table":"local","protocol":"kernel","scope":"host",'
    '"prefsrc":"127.0.0.1","flags":[]},'
    '{"type":"local","dst":"127.0.0.1","dev":"lo","table":"local","protocol":"kernel","scope":"host",'
    '"prefsrc":"127.0.0.1","flags":[]},'
    '{"type":"broadcast","dst":"127.255.255.255","dev":"lo","table":"local","protocol":"kernel",'
    '"scope":"link","prefsrc":"127.0.0.1","flags":[]}]\n'
)
GETS = [
    (
        ("192.0.2.9",),
        '[{"dst":"192.0.2.9","gateway":"10.0.0.2","dev":"eth0","prefsrc":"10.0.0.1","flags":[],"uid":0,'
        '"cache":[],"metrics":[{"mtu":1400}]}]\n',
    ),
    (
        ("224.1.2.3",),
        '[{"type":"multicast","dst":"224.1.2.3","dev":"eth0","prefsrc":"10.0.0.1",'
        '"flags":["rt_offload_failed"],"uid":0,"cache":["mc"]}]\n',
    ),
    (
        ("10.0.0.1", "from", "10.0.0.2", "iif", "eth0"),
        '[{"type":"local","dst":"10.0.0.1","from":"10.0.0.2","dev":"lo","flags":[],"cache":["local"],'
        '"iif":"eth0"}]\n',
    ),
    (
        ("10.0.0.2", "mark", "5", "tos", "0x10"),
        '[{"dst":"10.0.0.2","dev":"eth0","prefsrc":"10.0.0.1","flags":[],"mark":5,"uid":0,"cache":[]}]\n',
    ),
]


def test_ip_j_route(routed: IpStack) -> None:  # noqa: F811
    assert routed.run("ip", "-j", "route").stdout == ROUTES_MAIN
    assert routed.run("ip", "-j", "route", "show", "table", "100").stdout == TABLE_100
    table_all = routed.run("ip", "-j", "route", "show", "table", "all").stdout
    assert table_all == (
        '[{"dst":"203.0.113.0/24","dev":"eth0","table":"100","scope":"link","prefsrc":"10.0.0.1","flags":[]},'
        + ROUTES_MAIN[1:-2]
        + ","
        + LOCAL_ROUTES
    )
    # What a filter fixes is left out, as in text: dev, type, protocol.
    assert json.loads(routed.run("ip", "-j", "route", "show", "dev", "lo").stdout) == [
        {"dst": "203.0.120.0/24", "gateway": "127.0.0.1", "flags": []}
    ]
    assert json.loads(routed.run("ip", "-j", "route", "show", "type", "throw").stdout) == [
        {"dst": "198.51.103.0/24", "flags": []}
    ]
    assert json.loads(routed.run("ip", "-j", "route", "show", "proto", "static").stdout) == [
        {
            "dst": "192.0.2.0/24",
            "gateway": "10.0.0.2",
            "dev": "eth0",
            "metric": 7,
            "flags": [],
            "metrics": [{"mtu": 1300}],
        }
    ]
    assert (
        routed.run("ip", "-j", "route", "add", "default", "via", "10.0.0.2", "dev", "eth0", "onlink").stdout
        == ""
    )
    assert json.loads(routed.run("ip", "-j", "route", "show", "default").stdout) == [
        {"dst": "default", "gateway": "10.0.0.2", "dev": "eth0", "flags": ["onlink"]}
    ]


@pytest.mark.parametrize(("args", "text"), GETS, ids=[" ".join(g[0]) for g in GETS])
def test_ip_j_route_get(routed: IpStack, args: tuple[str, ...], text: str) -> None:  # noqa: F811
    r = routed.run("ip", "-j", "route", "get", *args)
    assert (r.exit_code, r.stdout, r.stderr) == (0, text, "")


def test_ip_j_route_get_error_is_text(routed: IpStack) -> None:  # noqa: F811
    r = routed.run("ip", "-j", "route", "get", "198.51.101.1")
    assert (r.exit_code, r.stdout, r.stderr) == (2, "", "RTNETLINK answers: No route to host\n")


RULE_ADDS = [
    ("from", "10.0.0.0/24", "lookup", "100", "pref", "100"),
    ("fwmark", "0x5/0xff", "table", "100"),
    ("to", "192.0.2.0/24", "tos", "0x10", "blackhole"),
    ("not", "from", "all", "prohibit", "priority", "40000"),
    ("iif", "nodev", "oif", "lo", "unreachable"),
    ("fwmark", "0x10/0xffffffff", "lookup", "8"),
    ("from", "10.0.0.1", "nop", "pref", "50"),
    ("to", "198.51.100.7", "lookup", "9", "pref", "60"),
]
RULES = (
    '[{"priority":0,"src":"all","table":"local"},{"priority":50,"src":"10.0.0.1","nop":null},'
    '{"priority":60,"src":"all","dst":"198.51.100.7","table":"9"},'
    '{"priority":96,"src":"all","fwmark":"0x10","table":"8"},'
    '{"priority":97,"src":"all","iif":"nodev","iif_detached":null,"oif":"lo","action":"unreachable"},'
    '{"priority":98,"src":"all","dst":"192.0.2.0","dstlen":24,"tos":"0x10","action":"blackhole"},'
    '{"priority":99,"src":"all","fwmark":"0x5","fwmask":"0xff","table":"100"},'
    '{"priority":100,"src":"10.0.0.0","srclen":24,"table":"100"},'
    '{"priority":32766,"src":"all","table":"main"},{"priority":32767,"src":"all","table":"default"},'
    '{"priority":40000,"not":null,"src":"all","action":"prohibit"}]\n'
)


def test_ip_j_rule(ipstack: IpStack) -> None:
    for args in RULE_ADDS:
        assert ipstack.run("ip", "rule", "add", *args).exit_code == 0, args
    assert ipstack.run("ip", "-j", "rule").stdout == RULES
    pretty = ipstack.run("ip", "-j", "-p", "rule", "show").stdout
    assert json.loads(pretty) == json.loads(RULES)
    assert pretty.startswith(
        '[ {\n        "priority": 0,\n        "src": "all",\n        "table": "local"\n    },{\n'
    )
    assert pretty.endswith(
        '        "not": null,\n        "src": "all",\n        "action": "prohibit"\n    } ]\n'
    )


# The same state in a namespace of our own, asked live.


@pytest.fixture
def netns() -> Iterator[str]:
    yield from veth_netns("jn")


@pytest.mark.skipif(os.geteuid() != 0 or IP is None, reason="needs root and iproute2 for a network namespace")
def test_json_matches_the_kernel(routed: IpStack, netns: str) -> None:  # noqa: F811
    for args, code, _ in ROUTE_ADDS:
        assert ip_in(netns, "route", *args).returncode == code, args
    for args in RULE_ADDS:
        assert ip_in(netns, "rule", "add", *args).returncode == 0, args
        assert routed.run("ip", "rule", "add", *args).exit_code == 0, args
    for args in (
        ("route",),
        ("route", "show", "table", "all"),
        ("route", "show", "table", "100"),
        ("route", "show", "dev", "lo"),
        ("-p", "route", "show", "table", "local"),
        ("rule",),
        ("-p", "rule"),
        ("-p", "link", "show", "lo"),
        *(("route", "get", *g) for g, _ in GETS),
    ):
        kernel = ip_in(netns, "-j", *args)
        r = routed.run("ip", "-j", *args)
        assert (r.exit_code, r.stdout) == (kernel.returncode, kernel.stdout), args
    # The neighbour states of the fake NIC, made in the kernel: the same entries.
    for addr, extra in (
        ("10.0.0.2", ("lladdr", "02:00:0a:00:00:02", "nud", "reachable")),
        ("10.0.0.3", ("nud", "incomplete")),
        ("10.0.0.4", ("nud", "failed")),
        ("10.0.0.5", ("lladdr", "02:00:0a:00:00:05", "nud", "permanent")),
        ("10.0.0.6", ("lladdr", "02:00:0a:00:00:06", "nud", "noarp")),
        ("10.0.0.7", ("lladdr", "02:00:0a:00:00:07", "nud", "stale")),
    ):
        assert ip_in(netns, "neigh", "add", addr, *extra, "dev", "eth0").returncode == 0, addr
    for args in (("neigh",), ("neigh", "show", "dev", "eth0"), ("neigh", "show", "nud", "all")):
        kernel = json.loads(ip_in(netns, "-j", *args).stdout)
        emulated = json.loads(routed.run("ip", "-j", *args).stdout)
        assert sorted(emulated, key=lambda n: n["dst"]) == sorted(kernel, key=lambda n: n["dst"]), args
