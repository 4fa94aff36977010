"""`stackemu iptables -L --json` (the emulator's: iptables has none) against the real
NetfilterService of tests/cli/test_iptables.py: the document JSON_HELP describes,
exactly, and the same rules and counters as iptables' own -S -v listing."""

from __future__ import annotations

import json
import shlex

from services.ip.netfilter import NF_INET_LOCAL_IN
from tests.cli.test_iptables import NetfilterServer, ipt, iptables  # noqa: F401  (the fixture)
from tests.services.test_netfilter import udp

RULES = [
    "-A INPUT -s 10.0.0.9 -j ACCEPT",
    "-A INPUT -p udp --dport 9000 -j NFQUEUE --queue-num 3 --queue-bypass",
    "-A INPUT -p udp -m multiport --dports 1,2:5 -j DROP",
    "-A INPUT ! -s 10.1.0.0/16 -d 10.0.0.0/8 -i eth+ -p icmp --icmp-type echo-request -j REJECT",
    "-A INPUT -f -j LOG --log-prefix hi: --log-level 6 --log-uid",
    "-A INPUT ! -f -m mark --mark 0x1/0xff -m length --length 100:200",
    "-A INPUT -p tcp ! --sport 1000:2000 --tcp-flags SYN,ACK SYN -j udp-in",
    "-A udp-in -m ttl --ttl-lt 5 -m tos ! --tos 0x10 -g other",
]


def _add(*lines: str) -> None:
    for line in lines:
        r = iptables(*shlex.split(line))
        assert r.exit_code == 0, (line, r.stderr)


def test_list_json_is_the_documented_document(ipt: NetfilterServer) -> None:  # noqa: F811
    _add("-N udp-in", "-N other", *RULES, "-P INPUT DROP")
    for _ in range(3):
        ipt.call(ipt.nf.nf_hook, NF_INET_LOCAL_IN, udp(9000, b"x" * 100), 2, 0, lambda s: None)
    r = iptables("-L", "--json")
    assert (r.exit_code, r.stderr) == (0, "")
    doc = json.loads(r.stdout)
    assert doc["table"] == "filter"
    assert [(c["name"], c["builtin"], c["policy"], c["references"]) for c in doc["chains"]] == [
        ("INPUT", True, "DROP", None),
        ("FORWARD", True, "ACCEPT", None),
        ("OUTPUT", True, "ACCEPT", None),
        ("other", False, None, 1),
        ("udp-in", False, None, 1),
    ]
    skb_len = udp(9000, b"x" * 100).len
    any_ = {"invert": False}
    assert doc["chains"][0]["counters"] == {"packets": 0, "bytes": 0}
    assert doc["chains"][3]["counters"] is None
    assert doc["chains"][0]["rules"] == [
        {
            "num": 1,
            "counters": {"packets": 0, "bytes": 0},
            "source": {"address": "10.0.0.9", "mask": "255.255.255.255", "invert": False},
            "matches": [],
            "target": {"name": "ACCEPT"},
        },
        {
            "num": 2,
            "counters": {"packets": 3, "bytes": 3 * skb_len},
            "protocol": {"number": 17, "name": "udp", **any_},
            "matches": [{"name": "udp", "dport": {"min": 9000, "max": 9000, **any_}}],
            "target": {
                "name": "NFQUEUE",
                "queue_num": 3,
                "queues_total": 1,
                "bypass": True,
                "cpu_fanout": False,
            },
        },
        {
            "num": 3,
            "counters": {"packets": 0, "bytes": 0},
            "protocol": {"number": 17, "name": "udp", **any_},
            "matches": [
                {
                    "name": "multiport",
                    "direction": "dports",
                    "ports": [{"min": 1, "max": 1}, {"min": 2, "max": 5}],
                    **any_,
                }
            ],
            "target": {"name": "DROP"},
        },
        {
            "num": 4,
            "counters": {"packets": 0, "bytes": 0},
            "protocol": {"number": 1, "name": "icmp", **any_},
            "source": {"address": "10.1.0.0", "mask": "255.255.0.0", "invert": True},
            "destination": {"address": "10.0.0.0", "mask": "255.0.0.0", **any_},
            "in_interface": {"name": "eth+", **any_},
            "matches": [
                {
                    "name": "icmp",
                    "type": 8,
                    "code_min": 0,
                    "code_max": 255,
                    "type_name": "echo-request",
                    **any_,
                }
            ],
            "target": {"name": "REJECT", "reject_with": "icmp-port-unreachable"},
        },
        {
            "num": 5,
            "counters": {"packets": 0, "bytes": 0},
            "fragment": {"invert": False},
            "matches": [],
            "target": {"name": "LOG", "level": 6, "flags": ["uid"], "prefix": "hi:"},
        },
        {
            "num": 6,
            "counters": {"packets": 0, "bytes": 0},
            "fragment": {"invert": True},
            "matches": [
                {"name": "mark", "mark": 1, "mask": 0xFF, **any_},
                {"name": "length", "min": 100, "max": 200, **any_},
            ],
            "target": None,
        },
        {
            "num": 7,
            "counters": {"packets": 0, "bytes": 0},
            "protocol": {"number": 6, "name": "tcp", **any_},
            "matches": [
                {
                    "name": "tcp",
                    "sport": {"min": 1000, "max": 2000, "invert": True},
                    "tcp_flags": {"mask": ["SYN", "ACK"], "compare": ["SYN"], **any_},
                }
            ],
            "target": {"name": "udp-in", "goto": False},
        },
    ]
    assert doc["chains"][4]["rules"] == [
        {
            "num": 1,
            "counters": {"packets": 0, "bytes": 0},
            "matches": [
                {"name": "ttl", "op": "lt", "value": 5},
                {"name": "tos", "value": 0x10, "mask": 0xFF, "invert": True},
            ],
            "target": {"name": "other", "goto": True},
        }
    ]
    # The same counters as iptables' own listing.
    saved = iptables("-S", "INPUT", "-v").stdout.splitlines()
    assert saved[0] == "-P INPUT DROP -c 0 0"
    assert (
        saved[2]
        == f"-A INPUT -p udp -m udp --dport 9000 -c 3 {3 * skb_len} -j NFQUEUE --queue-num 3 --queue-bypass"
    )


def test_list_json_of_one_chain_one_rule_and_other_tables(ipt: NetfilterServer) -> None:  # noqa: F811
    _add("-t mangle -A OUTPUT -j TTL --ttl-dec 2", "-t mangle -A OUTPUT -j MARK --set-xmark 0x5/0xf")
    _add("-t mangle -A OUTPUT -j TOS --set-tos 0x10/0x3f", "-t raw -A PREROUTING -j TRACE")
    r = iptables("-t", "mangle", "-L", "OUTPUT", "2", "--json", "-v", "-n", "-x", "--line-numbers")
    assert json.loads(r.stdout) == {
        "table": "mangle",
        "chains": [
            {
                "name": "OUTPUT",
                "builtin": True,
                "policy": "ACCEPT",
                "counters": {"packets": 0, "bytes": 0},
                "references": None,
                "rules": [
                    {
                        "num": 2,
                        "counters": {"packets": 0, "bytes": 0},
                        "matches": [],
                        "target": {"name": "MARK", "value": 5, "mask": 0xF},
                    }
                ],
            }
        ],
    }
    rules = json.loads(iptables("-t", "mangle", "-L", "OUTPUT", "--json").stdout)["chains"][0]["rules"]
    assert [rule["target"] for rule in rules] == [
        {"name": "TTL", "mode": "dec", "value": 2},
        {"name": "MARK", "value": 5, "mask": 0xF},
        {"name": "TOS", "value": 0x10, "mask": 0x3F},
    ]
    raw = json.loads(iptables("-t", "raw", "-L", "--json").stdout)
    assert [c["name"] for c in raw["chains"]] == ["PREROUTING", "OUTPUT"]
    assert raw["chains"][0]["rules"][0]["target"] == {"name": "TRACE"}
    # -L -Z --json lists, then zeroes, and says nothing else even with -v.
    ipt.call(ipt.nf.nf_hook, NF_INET_LOCAL_IN, udp(9000), 2, 0, lambda s: None)
    r = iptables("-L", "INPUT", "-Z", "-v", "--json")
    assert json.loads(r.stdout)["chains"][0]["counters"] == {"packets": 1, "bytes": udp(9000).len}
    assert json.loads(iptables("-L", "INPUT", "--json").stdout)["chains"][0]["counters"] == {
        "packets": 0,
        "bytes": 0,
    }


def test_json_is_for_list_only(ipt: NetfilterServer) -> None:  # noqa: F811
    for args in (("-S", "--json"), ("-A", "INPUT", "-j", "DROP", "--json"), ("-F", "--json")):
        r = iptables(*args)
        assert (r.exit_code, r.stdout, r.stderr) == (
            2,
            "",
            "iptables v1.8.9 (legacy): Illegal option `--json' with this command\n"
            "Try `iptables -h' or 'iptables --help' for more information.\n",
        ), args
    assert iptables("-S").stdout == "-P INPUT ACCEPT\n-P FORWARD ACCEPT\n-P OUTPUT ACCEPT\n"
    r = iptables("-L", "!", "--json")
    assert (r.exit_code, r.stderr.splitlines()[0]) == (
        2,
        "iptables v1.8.9 (legacy): unexpected ! flag before --json",
    )
    # "--j" is still --jump's abbreviation.
    assert iptables("-A", "INPUT", "--j", "DROP").exit_code == 0
    assert json.loads(iptables("-L", "--json").stdout)["chains"][0]["rules"][0]["target"] == {"name": "DROP"}
    assert "-L [CHAIN [RULENUM]] --json" in iptables("-h").stdout
