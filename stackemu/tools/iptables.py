"""`stackemu iptables`: iptables 1.8.9 (legacy) against a host's NetfilterService.

The command line is parsed as iptables parses it (getopt_long with its abbreviations,
`!` before an option, -L/-S/-Z taking an optional chain and rule number, extensions
loaded by -m, -j and -p), rules go to the service as NfRule messages, and listings are
printed with iptables' own layouts (print_firewall, print_header, xtables_print_num,
each extension's print and save). Errors are iptables': a bad command line is
"iptables v1.8.9 (legacy): ..." and exit 2; a change the kernel refuses is
"iptables: <libiptc's message>." and exit 1; a table that does not exist exits 3.

iptables has no JSON output; `-L --json` is the emulator's (JSON_HELP says what it
holds): the listing as data, numbers exact and nothing resolved to a name.
"""

from __future__ import annotations

import json
import re
import socket
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from functools import cache
from typing import Any, Final, NoReturn

import grpc

from stackemu.ip.v1 import netfilter_pb2 as pb
from stackemu.ip.v1 import netfilter_pb2_grpc
from stackemu.tools.common import Service, ToolExit, fail, out

PROG: Final = "iptables v1.8.9 (legacy)"
TRY: Final = "Try `iptables -h' or 'iptables --help' for more information."

USAGE: Final = """\
iptables v1.8.9 (legacy)

Usage: iptables -[ACD] chain rule-specification [options]
       iptables -I chain [rulenum] rule-specification [options]
       iptables -R chain rulenum rule-specification [options]
       iptables -D chain rulenum [options]
       iptables -[LS] [chain [rulenum]] [options]
       iptables -[FZ] [chain] [options]
       iptables -[NX] chain
       iptables -E old-chain-name new-chain-name
       iptables -P chain target [options]
       iptables -h (print this help information)

Commands:
Either long or short options are allowed.
  --append  -A chain\t\tAppend to chain
  --check   -C chain\t\tCheck for the existence of a rule
  --delete  -D chain\t\tDelete matching rule from chain
  --delete  -D chain rulenum
\t\t\t\tDelete rule rulenum (1 = first) from chain
  --insert  -I chain [rulenum]
\t\t\t\tInsert in chain as rulenum (default 1=first)
  --replace -R chain rulenum
\t\t\t\tReplace rule rulenum (1 = first) in chain
  --list    -L [chain [rulenum]]
\t\t\t\tList the rules in a chain or all chains
  --list-rules -S [chain [rulenum]]
\t\t\t\tPrint the rules in a chain or all chains
  --flush   -F [chain]\t\tDelete all rules in  chain or all chains
  --zero    -Z [chain [rulenum]]
\t\t\t\tZero counters in chain or all chains
  --new     -N chain\t\tCreate a new user-defined chain
  --delete-chain
            -X [chain]\t\tDelete a user-defined chain
  --policy  -P chain target
\t\t\t\tChange policy on chain to target
  --rename-chain
            -E old-chain new-chain
\t\t\t\tChange chain name, (moving any references)

Options:
[!] --protocol\t-p proto\tprotocol: by number or name, eg. `tcp'
[!] --source\t-s address[/mask][...]
\t\t\t\tsource specification
[!] --destination -d address[/mask][...]
\t\t\t\tdestination specification
[!] --in-interface -i input name[+]
\t\t\t\tnetwork interface name ([+] for wildcard)
 --jump\t-j target
\t\t\t\ttarget for rule (may load target extension)
  --goto      -g chain
\t\t\t       jump to chain with no return
  --match\t-m match
\t\t\t\textended match (may load extension)
  --numeric\t-n\t\tnumeric output of addresses and ports
[!] --out-interface -o output name[+]
\t\t\t\tnetwork interface name ([+] for wildcard)
  --table\t-t table\ttable to manipulate (default: `filter')
  --verbose\t-v\t\tverbose mode
  --line-numbers\t\tprint line numbers when listing
  --exact\t-x\t\texpand numbers (display exact values)
[!] --fragment\t-f\t\tmatch second or further fragments only
  --set-counters -c PKTS BYTES\tset the counter during insert/append
[!] --version\t-V\t\tprint package version.

stackemu: the tables are raw, mangle and filter of the emulated host (--host NAME,
default STACKEMU_HOST or alice); nat is not built. Matches: udp, tcp (ports, flags),
icmp, mark, tos, ttl, length, multiport. Targets: ACCEPT, DROP, RETURN, QUEUE, a chain
(-j/-g), REJECT, NFQUEUE, MARK, TTL, TOS, LOG (read LOG lines with the NetfilterService
ReadLog RPC).

Examples:
  stackemu iptables -A INPUT -p udp --dport 9000 -j DROP
  stackemu iptables --host bob -I INPUT -s 10.0.0.1 -j REJECT --reject-with icmp-host-prohibited
  stackemu iptables -A INPUT -p udp --dport 9000 -j NFQUEUE --queue-num 0 --queue-bypass
  stackemu iptables -t mangle -A PREROUTING -p udp -j MARK --set-mark 0x1
  stackemu iptables -t mangle -A OUTPUT -j TTL --ttl-set 8
  stackemu iptables -N udp-in; stackemu iptables -A INPUT -p udp -j udp-in
  stackemu iptables -L -v -n --line-numbers
  stackemu iptables -L INPUT --json
  stackemu iptables -S
  stackemu iptables -D INPUT 1"""

JSON_HELP: Final = """-L [CHAIN [RULENUM]] --json (the emulator's; iptables has no JSON) prints the table:
  {"table": "filter", "chains": [CHAIN, ...]}
  CHAIN: {"name": "INPUT", "builtin": true, "policy": "ACCEPT" or "DROP",
          "counters": {"packets": N, "bytes": N}, "references": null, "rules": [RULE, ...]}
         a user-defined chain has "builtin": false, "policy": null, "counters": null and
         "references": how many rules jump or go to it.
  RULE:  {"num": 1, "counters": {"packets": N, "bytes": N}, ...what the rule tests...,
          "matches": [MATCH, ...], "target": TARGET or null (a rule that only counts)}
         what it tests, each key only when the rule has it (as iptables -S prints it):
           "protocol": {"number": 17, "name": "udp", "invert": false}
           "source", "destination": {"address": "10.0.0.0", "mask": "255.255.255.0", "invert": false}
           "in_interface", "out_interface": {"name": "eth+", "invert": false}
           "fragment": {"invert": false}   (-f; "invert": true is ! -f)
  MATCH: {"name": NAME, ...}, with the options given:
           udp, tcp: "sport", "dport": {"min": N, "max": N, "invert": B}
                     tcp: "tcp_flags": {"mask": [FLAG...], "compare": [FLAG...], "invert": B}
           icmp: "type", "code_min", "code_max", "type_name" (or null), "invert"
           mark: "mark", "mask", "invert"        tos: "value", "mask", "invert"
           ttl: "op" (eq, ne, lt, gt), "value"    length: "min", "max", "invert"
           multiport: "direction" (sports, dports, ports), "ports": [{"min", "max"}], "invert"
  TARGET: {"name": NAME, ...}: ACCEPT, DROP, QUEUE, RETURN; a chain with "goto": B;
           REJECT "reject_with"; NFQUEUE "queue_num", "queues_total", "bypass", "cpu_fanout";
           MARK and TOS "value", "mask" (new = (old & ~mask) ^ value); TTL "mode" (set, inc,
           dec), "value"; LOG "level", "flags" [NAME...], "prefix"; TRACE.
  Numbers are exact (as -x) and addresses numeric (as -n); -v, -n, -x and
  --line-numbers change nothing. -L -Z --json zeroes after listing, as -L -Z."""

# print_firewall()'s format bits (include/xtables.h).
FMT_NUMERIC, FMT_NOCOUNTS, FMT_KILOMEGAGIGA, FMT_OPTIONS = 0x0001, 0x0002, 0x0004, 0x0008
FMT_NOTABLE, FMT_NOTARGET, FMT_VIA, FMT_NONEWLINE, FMT_LINENUMBERS = 0x0010, 0x0020, 0x0040, 0x0080, 0x0100
FMT_PRINT_RULE: Final = FMT_NOCOUNTS | FMT_OPTIONS | FMT_VIA | FMT_NUMERIC | FMT_NOTABLE

# iptables' commands (xshared.h CMD_*), and the letter each is known by.
CMD_INSERT, CMD_DELETE, CMD_DELETE_NUM, CMD_REPLACE, CMD_APPEND = 1, 2, 4, 8, 16
CMD_LIST, CMD_FLUSH, CMD_ZERO, CMD_NEW_CHAIN, CMD_DELETE_CHAIN = 32, 64, 128, 256, 512
CMD_SET_POLICY, CMD_RENAME_CHAIN, CMD_LIST_RULES, CMD_ZERO_NUM, CMD_CHECK = 1024, 2048, 4096, 8192, 16384
CMD_NONE: Final = 0
_CMD_CHARS: Final = " IDDRALFZNXPESZC"
_RULE_CMDS: Final = CMD_APPEND | CMD_INSERT | CMD_DELETE | CMD_REPLACE | CMD_CHECK

# Options as commands_v_options counts them: -n -s -d -p -j -v -x -i -o --line -c -f.
_OPT_CHARS: Final = "nsdpjvxio0cf"
# commands_v_options: x where an option is illegal with a command (the columns follow
# _OPT_CHARS).
_LEGAL: Final = {
    CMD_INSERT: "x.....x..x..",
    CMD_DELETE: "x.....x..xx.",
    CMD_DELETE_NUM: "xxxxx.xxxxxx",
    CMD_REPLACE: "x.....x..x..",
    CMD_APPEND: "x.....x..x..",
    CMD_LIST: ".xxxx..xx.xx",
    CMD_FLUSH: "xxxxx.xxxxxx",
    CMD_ZERO: "xxxxx.xxxxxx",
    CMD_ZERO_NUM: "xxxxx.xxxxxx",
    CMD_NEW_CHAIN: "xxxxx.xxxxxx",
    CMD_DELETE_CHAIN: "xxxxx.xxxxxx",
    CMD_SET_POLICY: "xxxxx.xxxx.x",
    CMD_RENAME_CHAIN: "xxxxx.xxxxxx",
    CMD_LIST_RULES: "xxxxx.xxxxxx",
    CMD_CHECK: "x.....x..xx.",
}
_INVERTIBLE: Final = frozenset("sdpiof")

# xtables_chain_protos: the names iptables knows without /etc/protocols.
_CHAIN_PROTOS: Final = (
    ("tcp", 6),
    ("sctp", 132),
    ("udp", 17),
    ("udplite", 136),
    ("icmp", 1),
    ("icmpv6", 58),
    ("esp", 50),
    ("ah", 51),
    ("ipv6-mh", 135),
    ("mh", 135),
    ("all", 0),
)
# libxt_icmp's names: (name, type, code_min, code_max).
ICMP_CODES: Final = (
    ("any", 0xFF, 0, 0xFF),
    ("echo-reply", 0, 0, 0xFF),
    ("pong", 0, 0, 0xFF),
    ("destination-unreachable", 3, 0, 0xFF),
    ("network-unreachable", 3, 0, 0),
    ("host-unreachable", 3, 1, 1),
    ("protocol-unreachable", 3, 2, 2),
    ("port-unreachable", 3, 3, 3),
    ("fragmentation-needed", 3, 4, 4),
    ("source-route-failed", 3, 5, 5),
    ("network-unknown", 3, 6, 6),
    ("host-unknown", 3, 7, 7),
    ("network-prohibited", 3, 9, 9),
    ("host-prohibited", 3, 10, 10),
    ("TOS-network-unreachable", 3, 11, 11),
    ("TOS-host-unreachable", 3, 12, 12),
    ("communication-prohibited", 3, 13, 13),
    ("host-precedence-violation", 3, 14, 14),
    ("precedence-cutoff", 3, 15, 15),
    ("source-quench", 4, 0, 0xFF),
    ("redirect", 5, 0, 0xFF),
    ("network-redirect", 5, 0, 0),
    ("host-redirect", 5, 1, 1),
    ("TOS-network-redirect", 5, 2, 2),
    ("TOS-host-redirect", 5, 3, 3),
    ("echo-request", 8, 0, 0xFF),
    ("ping", 8, 0, 0xFF),
    ("router-advertisement", 9, 0, 0xFF),
    ("router-solicitation", 10, 0, 0xFF),
    ("time-exceeded", 11, 0, 0xFF),
    ("ttl-exceeded", 11, 0, 0xFF),
    ("ttl-zero-during-transit", 11, 0, 0),
    ("ttl-zero-during-reassembly", 11, 1, 1),
    ("parameter-problem", 12, 0, 0xFF),
    ("ip-header-bad", 12, 0, 0),
    ("required-option-missing", 12, 1, 1),
    ("timestamp-request", 13, 0, 0xFF),
    ("timestamp-reply", 14, 0, 0xFF),
    ("address-mask-request", 17, 0, 0xFF),
    ("address-mask-reply", 18, 0, 0xFF),
)
TCP_FLAGS: Final = (("FIN", 0x01), ("SYN", 0x02), ("RST", 0x04), ("PSH", 0x08), ("ACK", 0x10), ("URG", 0x20))
_TCP_FLAG_NAMES: Final = {**dict(TCP_FLAGS), "ALL": 0x3F, "NONE": 0}
TOS_NAMES: Final = (
    ("Minimize-Delay", 0x10),
    ("Maximize-Throughput", 0x08),
    ("Maximize-Reliability", 0x04),
    ("Minimize-Cost", 0x02),
    ("Normal-Service", 0x00),
)
# libxt_LOG parses these names; listings print syslog's prioritynames (first match).
_LOG_LEVELS: Final = {
    "alert": 1,
    "crit": 2,
    "debug": 7,
    "emerg": 0,
    "error": 3,
    "info": 6,
    "notice": 5,
    "panic": 0,
    "warning": 4,
}
_LOG_LEVEL_NAMES: Final = ("emerg", "alert", "crit", "err", "warn", "notice", "info", "debug")
_LOG_FLAGS: Final = (
    ("tcp-sequence", 0x01),
    ("tcp-options", 0x02),
    ("ip-options", 0x04),
    ("uid", 0x08),
    ("macdecode", 0x20),
)
REJECT_NAMES: Final = (
    ("icmp-net-unreachable", "net-unreach", pb.REJECT_WITH_ICMP_NET_UNREACHABLE),
    ("icmp-host-unreachable", "host-unreach", pb.REJECT_WITH_ICMP_HOST_UNREACHABLE),
    ("icmp-proto-unreachable", "proto-unreach", pb.REJECT_WITH_ICMP_PROTO_UNREACHABLE),
    ("icmp-port-unreachable", "port-unreach", pb.REJECT_WITH_ICMP_PORT_UNREACHABLE),
    ("icmp-net-prohibited", "net-prohib", pb.REJECT_WITH_ICMP_NET_PROHIBITED),
    ("icmp-host-prohibited", "host-prohib", pb.REJECT_WITH_ICMP_HOST_PROHIBITED),
    ("tcp-reset", "tcp-rst", pb.REJECT_WITH_TCP_RESET),
    ("icmp-admin-prohibited", "admin-prohib", pb.REJECT_WITH_ICMP_ADMIN_PROHIBITED),
)
STANDARD_TARGETS: Final = {
    "ACCEPT": pb.STANDARD_TARGET_ACCEPT,
    "DROP": pb.STANDARD_TARGET_DROP,
    "QUEUE": pb.STANDARD_TARGET_QUEUE,
    "RETURN": pb.STANDARD_TARGET_RETURN,
}
BUILTIN_CHAINS: Final = ("PREROUTING", "INPUT", "FORWARD", "OUTPUT", "POSTROUTING")
CHAIN_NAME_MAX: Final = 29
IFNAMSIZ: Final = 16


class UsageError(Exception):
    """A command line iptables refuses before asking the kernel anything (exit 2)."""

    def __init__(self, message: str, prefixed: bool = True) -> None:
        super().__init__(message)
        self.message = message
        self.prefixed = prefixed


def _usage_exit(e: UsageError) -> NoReturn:
    if not e.prefixed:
        fail(2, e.message, TRY)
    text = e.message
    lines = [f"{PROG}: {text.rstrip(chr(10))}"] if text.strip() else []
    if text.endswith("\n"):
        lines.append("")
    fail(2, *lines, TRY)


# Name lookups, from the local files only (no DNS), as iptables reads them via libc.


@cache
def _etc(path: str) -> list[list[str]]:
    try:
        with open(path) as f:
            return [ln.split("#", 1)[0].split() for ln in f if ln.split("#", 1)[0].strip()]
    except OSError:
        return []


def proto_to_name(proto: int) -> str | None:
    for name, num in _CHAIN_PROTOS:
        if num == proto:
            return name
    for fields in _etc("/etc/protocols"):
        if len(fields) >= 2 and fields[1] == str(proto):
            return fields[0]
    return None


def parse_protocol(s: str) -> int:
    """xtables_parse_protocol(): a number, a known name, or a name in /etc/protocols."""
    n = _strtoui(s, 0xFF)
    if n is not None:
        return n
    low = s.lower()
    if low == "all":
        return 0
    for name, num in _CHAIN_PROTOS:
        if name == low:
            return num
    for fields in _etc("/etc/protocols"):
        if fields and (fields[0] == low or low in fields[2:]):
            try:
                return int(fields[1])
            except (IndexError, ValueError):
                break
    raise UsageError(f'unknown protocol "{s}" specified')


def port_to_service(port: int, proto: str) -> str | None:
    for fields in _etc("/etc/services"):
        if len(fields) >= 2 and fields[1] == f"{port}/{proto}":
            return fields[0]
    return None


def service_to_port(name: str, proto: str) -> int | None:
    for fields in _etc("/etc/services"):
        if len(fields) >= 2 and (fields[0] == name or name in fields[2:]) and fields[1].endswith(f"/{proto}"):
            return int(fields[1].split("/")[0])
    return None


def _host_name(addr: int) -> str | None:
    dotted = _dotted(addr)
    for fields in _etc("/etc/hosts"):
        if len(fields) >= 2 and fields[0] == dotted:
            return fields[1]
    return None


def _host_addr(name: str) -> int | None:
    for fields in _etc("/etc/hosts"):
        if name in fields[1:]:
            try:
                return _u32(socket.inet_aton(fields[0]))
            except OSError:
                continue
    return None


# Numbers, addresses, interfaces.


def _strtoui(s: str, limit: int, base: int = 0) -> int | None:
    """xtables_strtoui(): the whole string as an unsigned number (0x hex, 0 octal when
    base is 0), within limit."""
    s2 = s.strip()
    if not s2 or s2 != s or s2.startswith(("+", "-")):
        return None
    try:
        if base == 0:
            if re.fullmatch(r"0[xX][0-9a-fA-F]+", s):
                v = int(s, 16)
            elif re.fullmatch(r"0[0-7]*", s):
                v = int(s, 8)
            elif re.fullmatch(r"[1-9][0-9]*", s):
                v = int(s)
            else:
                return None
        else:
            if not re.fullmatch(r"[0-9]+", s):
                return None
            v = int(s, base)
    except ValueError:
        return None
    return v if v <= limit else None


def _u32(b: bytes) -> int:
    return int.from_bytes(b, "big")


def _dotted(addr: int) -> str:
    return socket.inet_ntoa(addr.to_bytes(4, "big"))


def _numeric_to_ipaddr(s: str, is_mask: bool = False) -> int | None:
    """__numeric_to_ipaddr(): one to four dotted parts, missing ones zero ("10.1" is
    10.1.0.0), each a number xtables_strtoui takes (hex and octal too)."""
    parts = s.split(".")
    if len(parts) > 4 or (is_mask and len(parts) != 4):
        return None
    vals = []
    for p in parts:
        v = _strtoui(p, 0xFF)
        if v is None:
            return None
        vals.append(v)
    vals += [0] * (4 - len(vals))
    return (vals[0] << 24) | (vals[1] << 16) | (vals[2] << 8) | vals[3]


def parse_address(spec: str) -> tuple[int, int]:
    """xtables_ipparse_any(): address[/mask], mask a prefix length or dotted; a name
    from /etc/hosts. The address is returned masked, as iptables stores it."""
    addr_s, _, mask_s = spec.partition("/")
    if mask_s:
        m = _numeric_to_ipaddr(mask_s, True)
        if m is None:
            bits = _strtoui(mask_s, 32, 10)
            if bits is None:
                raise UsageError(f"invalid mask `{mask_s}' specified")
            m = (0xFFFFFFFF << (32 - bits)) & 0xFFFFFFFF
        mask = m
    else:
        mask = 0xFFFFFFFF
    addr = _numeric_to_ipaddr(addr_s)
    if addr is None:
        addr = _host_addr(addr_s)
    if addr is None:
        raise UsageError(f"host/network `{addr_s}' not found")
    return addr & mask, mask


def _mask_suffix(mask: int) -> str:
    """xtables_ipmask_to_numeric()."""
    if mask == 0xFFFFFFFF:
        return ""
    inv = ~mask & 0xFFFFFFFF
    if inv & (inv + 1) == 0:
        return f"/{32 - inv.bit_length()}"
    return f"/{_dotted(mask)}"


def parse_interface(name: str) -> str:
    if len(name) > IFNAMSIZ - 1:
        raise UsageError(f"interface name `{name}' must be shorter than IFNAMSIZ ({IFNAMSIZ - 1})")
    return name


def parse_chain_name(name: str) -> str:
    """parse_chain() for -N: what a user chain may be called."""
    if not name:
        raise UsageError("empty chain name not allowed")
    if name[0] in "-!":
        raise UsageError(f"chain name not allowed to start with `{name[0]}'")
    if len(name) >= CHAIN_NAME_MAX:
        raise UsageError(f"chain name `{name}' too long (must be under {CHAIN_NAME_MAX} chars)")
    if any(c.isspace() for c in name):
        raise UsageError(f"Invalid chain name `{name}'")
    return name


def parse_rulenum(s: str) -> int:
    n = _strtoui(s, 0x7FFFFFFF)
    if n is None or n < 1:
        raise UsageError(f"Invalid rule number `{s}'")
    return n


def parse_port(s: str, proto: str) -> int:
    """xtables_parse_port(): a number or a service name."""
    n = _strtoui(s, 0xFFFF, 10)
    if n is not None:
        return n
    p = service_to_port(s, proto)
    if p is None:
        raise UsageError(f"invalid port/service `{s}' specified")
    return p


def parse_port_range(s: str, proto: str, option: str, ext: str) -> tuple[int, int]:
    """XTTYPE_PORTRC: PORT or FIRST:LAST (either side may be left out)."""
    parts = s.split(":")
    if len(parts) > 2:
        raise UsageError(f'{ext}: Too many components for option "--{option}" (max: 2)\n')
    vals = []
    for i, p in enumerate(parts):
        if not p and len(parts) == 2:
            vals.append(0 if i == 0 else 0xFFFF)
            continue
        if p.isdigit():
            vals.append(int(p) & 0xFFFF)
            continue
        v = service_to_port(p, proto)
        if v is None:
            raise UsageError(f'Port "{p}" does not resolve to anything.\n')
        vals.append(v)
    return (vals[0], vals[0]) if len(vals) == 1 else (vals[0], vals[1])


def _uint_opt(s: str, lo: int, hi: int, ext: str, option: str) -> int:
    v = _strtoui(s, hi)
    if v is None or v < lo:
        raise UsageError(f'{ext}: bad value for option "--{option}", or out of range ({lo}-{hi}).\n')
    return v


def _markmask(s: str, ext: str, option: str) -> tuple[int, int | None]:
    """XTTYPE_MARKMASK32: VALUE[/MASK]."""
    parts = s.split("/")
    if len(parts) > 2:
        raise UsageError(f'{ext}: trailing garbage after value for option "--{option}".\n')
    vals = [_strtoui(p, 0xFFFFFFFF) for p in parts]
    if any(v is None for v in vals):
        raise UsageError(f'{ext}: bad integer value for option "--{option}", or out of range.\n')
    value = vals[0]
    assert value is not None
    return value, vals[1] if len(vals) == 2 else None


def _tos_value(s: str) -> tuple[int, int]:
    """tos_parse_numeric() or tos_parse_symbolic(): VALUE[/MASK] (mask 0xFF) or a name
    (mask 0x3F)."""
    value_s, slash, mask_s = s.partition("/")
    value = _strtoui(value_s, 0xFF)
    mask = _strtoui(mask_s, 0xFF) if slash else 0xFF
    if value is not None and mask is not None:
        return value, mask
    for name, v in TOS_NAMES:
        if name.lower() == s.lower():
            return v, 0x3F
    raise UsageError(f'Symbolic name "{s}" is unknown')


# Extensions: each parses its options into a proto message and checks itself at the end.


@dataclass(frozen=True)
class Opt:
    name: str
    has_arg: bool = True
    aliases: tuple[str, ...] = ()


@dataclass
class Ext:
    """A loaded match or target: its options seen so far (in order) and its state."""

    name: str
    opts: tuple[Opt, ...]
    seen: list[str] = field(default_factory=list)
    values: dict[str, tuple[str, bool]] = field(default_factory=dict)

    def lookup(self) -> dict[str, str]:
        table = {}
        for o in self.opts:
            table[o.name] = o.name
            for a in o.aliases:
                table[a] = o.name
        return table

    def take(self, name: str, value: str, invert: bool) -> None:
        if name in self.values:
            raise UsageError(f'{self.label}: option "--{name}" can only be used once.\n')
        self.seen.append(name)
        self.values[name] = (value, invert)

    @property
    def label(self) -> str:
        return self.name

    def exclusive(self, names: Sequence[str], at_parse: bool) -> None:
        given = [n for n in names if n in self.values]
        if len(given) > 1:
            if at_parse:
                later = [n for n in self.seen if n in names]
                a, b = later[1], later[0]
            else:
                a, b = given[0], given[1]
            raise UsageError(f'{self.label}: option "--{a}" cannot be used together with "--{b}".\n')


_MATCH_OPTS: Final[dict[str, tuple[Opt, ...]]] = {
    "udp": (
        Opt("source-port", aliases=("sport",)),
        Opt("destination-port", aliases=("dport",)),
    ),
    "tcp": (
        Opt("source-port", aliases=("sport",)),
        Opt("destination-port", aliases=("dport",)),
        Opt("syn", has_arg=False),
        Opt("tcp-flags"),
        Opt("tcp-option"),
    ),
    "icmp": (Opt("icmp-type"),),
    "mark": (Opt("mark"),),
    "tos": (Opt("tos"),),
    "ttl": (Opt("ttl-eq"), Opt("ttl-lt"), Opt("ttl-gt")),
    "length": (Opt("length"),),
    "multiport": (
        Opt("source-ports", aliases=("sports",)),
        Opt("destination-ports", aliases=("dports",)),
        Opt("ports"),
    ),
}
_TARGET_OPTS: Final[dict[str, tuple[Opt, ...]]] = {
    "REJECT": (Opt("reject-with"),),
    "NFQUEUE": (
        Opt("queue-num"),
        Opt("queue-balance"),
        Opt("queue-bypass", has_arg=False),
        Opt("queue-cpu-fanout", has_arg=False),
    ),
    "MARK": (Opt("set-xmark"), Opt("set-mark"), Opt("and-mark"), Opt("or-mark"), Opt("xor-mark")),
    "TTL": (Opt("ttl-set"), Opt("ttl-dec"), Opt("ttl-inc")),
    "TOS": (Opt("set-tos"), Opt("and-tos"), Opt("or-tos"), Opt("xor-tos")),
    "LOG": (
        Opt("log-level"),
        Opt("log-prefix"),
        Opt("log-tcp-sequence", has_arg=False),
        Opt("log-tcp-options", has_arg=False),
        Opt("log-ip-options", has_arg=False),
        Opt("log-uid", has_arg=False),
        Opt("log-macdecode", has_arg=False),
    ),
    # libxt_TRACE: no options.
    "TRACE": (),
}
# Only these options take a `!` before them.
_INVERTIBLE_EXT_OPTS: Final = frozenset(
    (
        "source-port",
        "destination-port",
        "syn",
        "tcp-flags",
        "tcp-option",
        "icmp-type",
        "mark",
        "tos",
        "ttl-eq",
        "length",
        "source-ports",
        "destination-ports",
        "ports",
    )
)


def _port_range_pb(r: tuple[int, int]) -> pb.PortRange | None:
    return None if r == (0, 0xFFFF) else pb.PortRange(min=r[0], max=r[1])


def _tcp_flags(s: str) -> int:
    flags = 0
    for name in s.split(","):
        if name.upper() not in _TCP_FLAG_NAMES:
            raise UsageError(f"Unknown TCP flag `{name}'")
        flags |= _TCP_FLAG_NAMES[name.upper()]
    return flags


def _icmp_type(s: str) -> tuple[int, int, int]:
    """parse_icmp(): a name (a unique, case-insensitive prefix) or TYPE[/CODE]."""
    found = None
    for entry in ICMP_CODES:
        if entry[0].lower().startswith(s.lower()):
            if found is not None and found[1:] != entry[1:]:
                raise UsageError(f"Ambiguous ICMP type `{s}': `{found[0]}' or `{entry[0]}'?")
            if found is None:
                found = entry
    if found is not None:
        return found[1], found[2], found[3]
    type_s, slash, code_s = s.partition("/")
    t = _strtoui(type_s, 0xFF)
    if t is None:
        raise UsageError(f"Unknown ICMP type `{s}'")
    if not slash:
        return t, 0, 0xFF
    c = _strtoui(code_s, 0xFF)
    if c is None:
        raise UsageError(f"Unknown ICMP code `{s}'")
    return t, c, c


def _multiport_ports(s: str, proto: str) -> list[pb.PortRange]:
    """parse_multi_ports_v1(): up to 15 ports, a range counting as two."""
    ranges = []
    count = 0
    for item in s.split(","):
        lo_s, colon, hi_s = item.partition(":")
        lo = parse_port(lo_s, proto)
        hi = parse_port(hi_s, proto) if colon else lo
        if colon and lo > hi:
            raise UsageError("invalid portrange specified")
        count += 2 if colon else 1
        if count > 15:
            raise UsageError("too many ports specified")
        ranges.append(pb.PortRange(min=lo, max=hi))
    return ranges


def _length(s: str) -> tuple[int, int]:
    """XTTYPE_UINT16RC: MIN, or MIN:MAX with either side left out."""
    lo_s, colon, hi_s = s.partition(":")
    bounds = []
    for part, default in ((lo_s, 0), (hi_s, 0xFFFF)):
        if colon and not part:
            bounds.append(default)
            continue
        n = _strtoui(part, 0xFFFF)
        if n is None:
            raise UsageError(
                f'length: bad value for option "--length" near "{part}", or out of range (0-65535).\n'
            )
        bounds.append(n)
        if not colon:
            break
    return (bounds[0], bounds[1] if colon else bounds[0])


def parse_now(ext: Ext, option: str, value: str, proto_name: str | None) -> None:
    """What the extension's x6_parse checks as soon as it meets the option (the
    cross-option checks wait for the end of the line)."""
    if option in ("source-port", "destination-port"):
        parse_port_range(value, ext.name, option, ext.name)
    elif option == "tcp-flags":
        for part in value.split(" "):
            _tcp_flags(part)
    elif option == "icmp-type":
        _icmp_type(value)
    elif option in ("mark", "set-xmark", "set-mark", "and-mark", "or-mark", "xor-mark"):
        _markmask(value, ext.name, option)
    elif option in ("tos", "set-tos"):
        _tos_value(value)
    elif option in ("ttl-eq", "ttl-lt", "ttl-gt"):
        _uint_opt(value, 0, 255, "ttl", option)
    elif option == "ttl-set":
        _uint_opt(value, 0, 255, "TTL", option)
    elif option in ("ttl-dec", "ttl-inc"):
        _uint_opt(value, 1, 255, "TTL", option)
    elif option in ("and-tos", "or-tos", "xor-tos"):
        _uint_opt(value, 0, 255, "TOS", option)
    elif option == "length":
        _length(value)
    elif option in ("source-ports", "destination-ports", "ports"):
        _multiport_ports(value, proto_name or "tcp")
    elif option == "queue-num":
        _uint_opt(value, 0, 65535, "NFQUEUE", option)


def build_match(ext: Ext, proto: int, proto_inv: bool) -> pb.NfMatch:
    """The extension's final check (x6_fcheck) and its struct, as an NfMatch."""
    v = ext.values
    pname = proto_to_name(proto) or "tcp"
    if ext.name in ("udp", "tcp"):
        m_kw: dict[str, Any] = {}
        for opt, key in (("source-port", "sport"), ("destination-port", "dport")):
            if opt in v:
                m_kw[key] = _port_range_pb(parse_port_range(v[opt][0], ext.name, opt, ext.name))
                m_kw[f"{key}_invert"] = v[opt][1]
        if ext.name == "udp":
            return pb.NfMatch(udp=pb.UdpMatch(**m_kw))
        ext.exclusive(["syn", "tcp-flags"], at_parse=True)
        if "syn" in v:
            m_kw.update(flags_mask=0x17, flags_compare=0x02, flags_invert=v["syn"][1])
        if "tcp-flags" in v:
            mask_s, _, cmp_s = v["tcp-flags"][0].partition(" ")
            m_kw.update(flags_mask=_tcp_flags(mask_s), flags_compare=_tcp_flags(cmp_s))
            m_kw["flags_invert"] = v["tcp-flags"][1]
        if "tcp-option" in v:
            raise UsageError("tcp: --tcp-option is not built in stackemu")
        return pb.NfMatch(tcp=pb.TcpMatch(**m_kw))
    if ext.name == "icmp":
        if "icmp-type" not in v:
            raise UsageError('icmp: option "--icmp-type" must be specified\n')
        t, lo, hi = _icmp_type(v["icmp-type"][0])
        return pb.NfMatch(icmp=pb.IcmpMatch(type=t, code_min=lo, code_max=hi, invert=v["icmp-type"][1]))
    if ext.name == "mark":
        if "mark" not in v:
            raise UsageError('mark: option "--mark" must be specified\n')
        value, mask = _markmask(v["mark"][0], "mark", "mark")
        return pb.NfMatch(
            mark=pb.MarkMatch(mark=value, mask=0xFFFFFFFF if mask is None else mask, invert=v["mark"][1])
        )
    if ext.name == "tos":
        if "tos" not in v:
            raise UsageError('tos: option "--tos" must be specified\n')
        value, mask = _tos_value(v["tos"][0])
        return pb.NfMatch(tos=pb.TosMatch(value=value, mask=mask, invert=v["tos"][1]))
    if ext.name == "ttl":
        ext.exclusive(["ttl-eq", "ttl-lt", "ttl-gt"], at_parse=True)
        for opt, mode in (
            ("ttl-eq", pb.TTL_MODE_EQ),
            ("ttl-lt", pb.TTL_MODE_LT),
            ("ttl-gt", pb.TTL_MODE_GT),
        ):
            if opt in v:
                value = _uint_opt(v[opt][0], 0, 255, "ttl", opt)
                if v[opt][1]:
                    mode = pb.TTL_MODE_NE
                return pb.NfMatch(ttl=pb.TtlMatch(mode=mode, value=value))
        raise UsageError("TTL match: You must specify one of `--ttl-eq', `--ttl-lt', `--ttl-gt")
    if ext.name == "length":
        if "length" not in v:
            raise UsageError('length: option "--length" must be specified\n')
        lo, hi = _length(v["length"][0])
        return pb.NfMatch(length=pb.LengthMatch(min=lo, max=hi, invert=v["length"][1]))
    # multiport
    if not ext.values:
        raise UsageError("multiport expection an option")
    if proto not in (6, 17, 136, 132, 33) or proto_inv:
        raise UsageError("multiport needs `-p tcp', `-p udp', `-p udplite', `-p sctp' or `-p dccp'")
    ext.exclusive(["source-ports", "destination-ports", "ports"], at_parse=True)
    for opt, direction in (
        ("source-ports", pb.MULTIPORT_DIRECTION_SOURCE),
        ("destination-ports", pb.MULTIPORT_DIRECTION_DESTINATION),
        ("ports", pb.MULTIPORT_DIRECTION_EITHER),
    ):
        if opt in v:
            ports = _multiport_ports(v[opt][0], pname)
            return pb.NfMatch(multiport=pb.MultiportMatch(direction=direction, ports=ports, invert=v[opt][1]))
    raise UsageError("multiport expection an option")


def build_target(ext: Ext) -> pb.NfTarget:
    v = ext.values
    if ext.name == "TRACE":
        return pb.NfTarget(trace=pb.TraceTarget())
    if ext.name == "REJECT":
        with_ = pb.REJECT_WITH_ICMP_PORT_UNREACHABLE
        if "reject-with" in v:
            s = v["reject-with"][0]
            # parse(): the first name or alias the argument is a prefix of, any case.
            for name, alias, code in REJECT_NAMES:
                if name.lower().startswith(s.lower()) or alias.lower().startswith(s.lower()):
                    with_ = code
                    break
            else:
                raise UsageError(f'unknown reject type "{s}"')
        return pb.NfTarget(reject=pb.RejectTarget(reject_with=with_))
    if ext.name == "NFQUEUE":
        ext.exclusive(["queue-num", "queue-balance"], at_parse=False)
        q = pb.NfqueueTarget(queues_total=1)
        if "queue-num" in v:
            q.queue_num = _uint_opt(v["queue-num"][0], 0, 65535, "NFQUEUE", "queue-num")
        if "queue-balance" in v:
            s = v["queue-balance"][0]
            lo_s, colon, hi_s = s.partition(":")
            lo, hi = _strtoui(lo_s, 0xFFFF), _strtoui(hi_s, 0xFFFF)
            if not colon or lo is None or hi is None:
                raise UsageError(f'Bad range "{s}"')
            if lo >= hi:
                raise UsageError(f"{lo} should be less than {hi}")
            q.queue_num, q.queues_total = lo, hi - lo + 1
        q.bypass = "queue-bypass" in v
        if "queue-cpu-fanout" in v:
            if "queue-balance" not in v:
                raise UsageError('NFQUEUE: option "--queue-cpu-fanout" also requires "--queue-balance".\n')
            q.cpu_fanout = True
        return pb.NfTarget(nfqueue=q)
    if ext.name == "MARK":
        names = ["set-xmark", "set-mark", "and-mark", "or-mark", "xor-mark"]
        ext.exclusive(names, at_parse=False)
        for opt in names:
            if opt not in v:
                continue
            value, mask = _markmask(v[opt][0], "MARK", opt)
            if opt == "set-xmark":
                m = pb.MarkTarget(mark=value, mask=0xFFFFFFFF if mask is None else mask)
            elif opt == "set-mark":
                m = pb.MarkTarget(mark=value, mask=value | (0xFFFFFFFF if mask is None else mask))
            elif opt == "and-mark":
                m = pb.MarkTarget(mark=0, mask=~value & 0xFFFFFFFF)
            elif opt == "or-mark":
                m = pb.MarkTarget(mark=value, mask=value)
            else:
                m = pb.MarkTarget(mark=value, mask=0)
            return pb.NfTarget(mark=m)
        raise UsageError("MARK: One of the --set-xmark, --{and,or,xor,set}-mark options is required")
    if ext.name == "TTL":
        ext.exclusive(["ttl-set", "ttl-dec", "ttl-inc"], at_parse=False)
        for opt, mode, lo in (
            ("ttl-set", pb.TTL_TARGET_MODE_SET, 0),
            ("ttl-dec", pb.TTL_TARGET_MODE_DEC, 1),
            ("ttl-inc", pb.TTL_TARGET_MODE_INC, 1),
        ):
            if opt in v:
                return pb.NfTarget(
                    ttl=pb.TtlTarget(mode=mode, value=_uint_opt(v[opt][0], lo, 255, "TTL", opt))
                )
        raise UsageError("TTL: You must specify an action")
    if ext.name == "TOS":
        names = ["set-tos", "and-tos", "or-tos", "xor-tos"]
        ext.exclusive(names, at_parse=False)
        if "set-tos" in v:
            value, mask = _tos_value(v["set-tos"][0])
            return pb.NfTarget(tos=pb.TosTarget(value=value, mask=mask))
        for opt in names[1:]:
            if opt in v:
                bits = _uint_opt(v[opt][0], 0, 255, "TOS", opt)
                if opt == "and-tos":
                    return pb.NfTarget(tos=pb.TosTarget(value=0, mask=~bits & 0xFF))
                if opt == "or-tos":
                    return pb.NfTarget(tos=pb.TosTarget(value=bits, mask=bits))
                return pb.NfTarget(tos=pb.TosTarget(value=bits, mask=0))
        raise UsageError("TOS: An action is required")
    # LOG
    log = pb.LogTarget(level=4)
    if "log-level" in v:
        s = v["log-level"][0]
        level = _strtoui(s, 7)
        if level is None:
            if s not in _LOG_LEVELS:
                raise UsageError(f'log level "{s}" unknown\n')
            level = _LOG_LEVELS[s]
        log.level = level
    if "log-prefix" in v:
        prefix = v["log-prefix"][0]
        if "\n" in prefix:
            raise UsageError("Newlines not allowed in --log-prefix")
        # The kernel's prefix is char[30]: iptables keeps the first 29 bytes.
        log.prefix = prefix.encode()[:29].decode(errors="ignore")
    for name, bit in _LOG_FLAGS:
        if f"log-{name}" in v:
            log.flags |= bit
    return pb.NfTarget(log=log)


# The command line.


@dataclass
class Cmd:
    command: int = 0
    chain: str | None = None
    rulenum: int = 0
    newname: str = ""
    policy: str = ""
    table: str = "filter"
    options: set[str] = field(default_factory=set)
    verbose: int = 0
    counters: tuple[int, int] | None = None
    src: str | None = None
    dst: str | None = None
    rule: pb.NfRule = field(default_factory=pb.NfRule)
    # One rule per source and destination address given (-s A,B -d C: two rules).
    rules: list[pb.NfRule] = field(default_factory=list)
    proto_name: str | None = None
    matches: list[Ext] = field(default_factory=list)
    jumpto: str | None = None
    goto: bool = False
    target: Ext | None = None
    help: bool = False
    version: bool = False
    json: bool = False


# getopt_long's view of iptables' own options: (short char, long name, argument kind:
# 0 none, 1 required, 2 optional).
_GLOBAL: Final = (
    ("A", "append", 1),
    ("D", "delete", 1),
    ("C", "check", 1),
    ("I", "insert", 1),
    ("R", "replace", 1),
    ("L", "list", 2),
    ("S", "list-rules", 2),
    ("F", "flush", 2),
    ("Z", "zero", 2),
    ("N", "new-chain", 1),
    ("X", "delete-chain", 2),
    ("E", "rename-chain", 1),
    ("P", "policy", 1),
    ("s", "source", 1),
    ("d", "destination", 1),
    ("s", "src", 1),
    ("d", "dst", 1),
    ("p", "protocol", 1),
    ("i", "in-interface", 1),
    ("j", "jump", 1),
    ("t", "table", 1),
    ("m", "match", 1),
    ("n", "numeric", 0),
    ("o", "out-interface", 1),
    ("v", "verbose", 0),
    ("w", "wait", 2),
    ("W", "wait-interval", 2),
    ("x", "exact", 0),
    ("f", "fragments", 0),
    ("V", "version", 0),
    ("h", "help", 2),
    ("0", "line-numbers", 0),
    ("M", "modprobe", 1),
    ("c", "set-counters", 1),
    ("g", "goto", 1),
    ("4", "ipv4", 0),
    ("6", "ipv6", 0),
)
_SHORT: Final = {c: kind for c, _, kind in _GLOBAL if c != "0"}


class _Args:
    def __init__(self, args: Sequence[str]) -> None:
        self.args = list(args)
        self.i = 0

    def has_arg(self) -> bool:
        """xs_has_arg(): the next word is not an option (nor a `!`)."""
        return self.i < len(self.args) and not self.args[self.i].startswith(("-", "!"))

    def next(self) -> str:
        a = self.args[self.i]
        self.i += 1
        return a


def _set_option(cmd: Cmd, opt: str, invert: bool) -> None:
    if opt in cmd.options:
        raise UsageError(f"multiple -{opt} flags not allowed")
    cmd.options.add(opt)
    if invert and opt not in _INVERTIBLE:
        raise UsageError(f"cannot have ! before -{opt}")


def _add_command(cmd: Cmd, new: int, others: int, invert: bool) -> None:
    if invert:
        raise UsageError("unexpected '!' flag")
    clash = cmd.command & ~others
    if clash:
        first = clash & -clash
        raise UsageError(f"Cannot use -{_CMD_CHARS[new.bit_length()]} with -{_CMD_CHARS[first.bit_length()]}")
    cmd.command |= new


def _long_lookup(name: str, cmd: Cmd) -> tuple[str, Any]:
    """getopt_long's match: exact, else a unique prefix, over iptables' options and
    those of the extensions loaded so far."""
    table: dict[str, tuple[str, Any]] = {}
    for c, n, kind in _GLOBAL:
        table[n] = ("g", (c, kind))
    for ext in [*cmd.matches, *([cmd.target] if cmd.target else [])]:
        for alias, canon in ext.lookup().items():
            table.setdefault(alias, ("e", (ext, canon)))
    if name in table:
        return table[name]
    hits = {k: v for k, v in table.items() if k.startswith(name)}
    distinct = {(v[0], v[1][0] if v[0] == "g" else (id(v[1][0]), v[1][1])) for v in hits.values()}
    if len(distinct) == 1:
        return next(iter(hits.values()))
    raise KeyError(name)


def parse(argv: Sequence[str]) -> Cmd:
    """do_parse(): the whole command line, checked as iptables checks it before it
    talks to the kernel."""
    cmd = Cmd()
    a = _Args(argv)
    invert = False
    while a.i < len(a.args):
        arg = a.next()
        if arg == "!":
            if invert:
                raise UsageError("multiple consecutive ! not allowed")
            invert = True
            continue
        if arg == "--json":
            # Not getopt's: written out in full, so "--j" stays --jump's abbreviation.
            if invert:
                raise UsageError("unexpected ! flag before --json")
            cmd.json = True
            continue
        if arg.startswith("--") and len(arg) > 2:
            name, eq, value = arg[2:].partition("=")
            try:
                kind, info = _long_lookup(name, cmd)
            except KeyError:
                # command_default(): -p PROTO loads the match of that name on demand.
                if cmd.proto_name in ("udp", "tcp", "icmp") and all(
                    m.name != cmd.proto_name for m in cmd.matches
                ):
                    cmd.matches.append(Ext(cmd.proto_name, _MATCH_OPTS[cmd.proto_name]))
                    a.i -= 1
                    continue
                raise UsageError(f'unknown option "{arg}"') from None
            if kind == "e":
                ext, canon = info
                opt = next(o for o in ext.opts if o.name == canon)
                if opt.has_arg:
                    if eq:
                        val = value
                    elif a.i < len(a.args):
                        val = a.next()
                    else:
                        raise UsageError(f'option "{arg}" requires an argument')
                    if canon == "tcp-flags":
                        if not a.has_arg():
                            raise UsageError("--tcp-flags requires two args.")
                        val = f"{val} {a.next()}"
                else:
                    val = ""
                if invert and canon not in _INVERTIBLE_EXT_OPTS:
                    raise UsageError(f'{ext.label}: option "--{canon}" cannot be inverted.\n')
                ext.take(canon, val, invert)
                parse_now(ext, canon, val, cmd.proto_name)
                invert = False
                continue
            c, k = info
            optarg: str | None = None
            if k == 1:
                if eq:
                    optarg = value
                elif a.i < len(a.args):
                    optarg = a.next()
                else:
                    raise UsageError(f'option "{arg}" requires an argument')
            elif k == 2 and eq:
                optarg = value
            invert = _handle(cmd, a, c, optarg, invert)
            if cmd.help or cmd.version:
                return cmd
            continue
        if arg.startswith("-") and len(arg) > 1:
            j = 1
            while j < len(arg):
                c = arg[j]
                j += 1
                if c not in _SHORT:
                    raise UsageError(f'unknown option "{arg}"')
                k = _SHORT[c]
                optarg = None
                if k == 1:
                    if j < len(arg):
                        optarg = arg[j:]
                    elif a.i < len(a.args):
                        optarg = a.next()
                    else:
                        raise UsageError(f'option "-{c}" requires an argument')
                    j = len(arg)
                elif k == 2 and j < len(arg):
                    optarg = arg[j:]
                    j = len(arg)
                invert = _handle(cmd, a, c, optarg, invert)
                if cmd.help or cmd.version:
                    return cmd
            continue
        raise UsageError(f"Bad argument `{arg}'", prefixed=False)
    if invert:
        raise UsageError("unexpected '!' at end of command line")
    if cmd.help or cmd.version:
        return cmd
    if not cmd.command:
        raise UsageError("no command specified")
    _generic_opt_check(cmd)
    if cmd.json and not cmd.command & CMD_LIST:
        raise UsageError("Illegal option `--json' with this command")
    _finish_rule(cmd)
    return cmd


def _handle(cmd: Cmd, a: _Args, c: str, optarg: str | None, invert: bool) -> bool:
    """One of iptables' own options; returns the `!` state for what follows."""
    if c == "A":
        _add_command(cmd, CMD_APPEND, CMD_NONE, invert)
        cmd.chain = optarg
    elif c == "C":
        _add_command(cmd, CMD_CHECK, CMD_NONE, invert)
        cmd.chain = optarg
    elif c == "D":
        _add_command(cmd, CMD_DELETE, CMD_NONE, invert)
        cmd.chain = optarg
        if a.has_arg():
            cmd.rulenum = parse_rulenum(a.next())
            cmd.command = CMD_DELETE_NUM
    elif c == "R":
        _add_command(cmd, CMD_REPLACE, CMD_NONE, invert)
        cmd.chain = optarg
        if not a.has_arg():
            raise UsageError("-R requires a rule number")
        cmd.rulenum = parse_rulenum(a.next())
    elif c == "I":
        _add_command(cmd, CMD_INSERT, CMD_NONE, invert)
        cmd.chain = optarg
        cmd.rulenum = parse_rulenum(a.next()) if a.has_arg() else 1
    elif c in "LSZ":
        new = {"L": CMD_LIST, "S": CMD_LIST_RULES, "Z": CMD_ZERO}[c]
        others = CMD_ZERO | CMD_ZERO_NUM if c in "LS" else CMD_LIST | CMD_LIST_RULES
        _add_command(cmd, new, others, invert)
        if optarg is not None:
            cmd.chain = optarg
        elif a.has_arg():
            cmd.chain = a.next()
        if a.has_arg():
            cmd.rulenum = parse_rulenum(a.next())
            if c == "Z":
                cmd.command = (cmd.command & ~CMD_ZERO) | CMD_ZERO_NUM
    elif c in "FX":
        _add_command(cmd, CMD_FLUSH if c == "F" else CMD_DELETE_CHAIN, CMD_NONE, invert)
        if optarg is not None:
            cmd.chain = optarg
        elif a.has_arg():
            cmd.chain = a.next()
    elif c == "N":
        _add_command(cmd, CMD_NEW_CHAIN, CMD_NONE, invert)
        cmd.chain = parse_chain_name(optarg or "")
        if cmd.chain in STANDARD_TARGETS or cmd.chain in _TARGET_OPTS:
            raise UsageError("chain name may not clash with target name")
    elif c == "E":
        _add_command(cmd, CMD_RENAME_CHAIN, CMD_NONE, invert)
        cmd.chain = optarg
        if not a.has_arg():
            raise UsageError("-E requires old-chain-name and new-chain-name")
        cmd.newname = parse_chain_name(a.next())
    elif c == "P":
        _add_command(cmd, CMD_SET_POLICY, CMD_NONE, invert)
        cmd.chain = optarg
        if not a.has_arg():
            raise UsageError("-P requires a chain and a policy")
        cmd.policy = a.next()
    elif c == "h":
        cmd.help = True
    elif c == "V":
        if invert:
            out("Not 1.8.9 ;-)")
            raise ToolExit(0)
        cmd.version = True
    elif c == "p":
        _set_option(cmd, "p", invert)
        assert optarg is not None
        cmd.rule.protocol = parse_protocol(optarg)
        cmd.rule.protocol_invert = invert
        cmd.proto_name = proto_to_name(cmd.rule.protocol) or optarg.lower()
    elif c == "s":
        _set_option(cmd, "s", invert)
        cmd.src = optarg
        cmd.rule.src_invert = invert
    elif c == "d":
        _set_option(cmd, "d", invert)
        cmd.dst = optarg
        cmd.rule.dst_invert = invert
    elif c in "jg":
        _set_option(cmd, "j", invert)
        assert optarg is not None
        cmd.jumpto = optarg
        cmd.goto = c == "g"
        if c == "j" and optarg in _TARGET_OPTS:
            cmd.target = Ext(optarg, _TARGET_OPTS[optarg])
    elif c == "i":
        _set_option(cmd, "i", invert)
        cmd.rule.in_interface = parse_interface(optarg or "")
        cmd.rule.in_invert = invert
    elif c == "o":
        _set_option(cmd, "o", invert)
        cmd.rule.out_interface = parse_interface(optarg or "")
        cmd.rule.out_invert = invert
    elif c == "f":
        _set_option(cmd, "f", invert)
        cmd.rule.fragment = pb.NF_FRAGMENT_NOT_NON_FIRST if invert else pb.NF_FRAGMENT_NON_FIRST
    elif c == "m":
        if invert:
            raise UsageError("unexpected ! flag before --match")
        assert optarg is not None
        if optarg not in _MATCH_OPTS:
            raise UsageError(f"Couldn't load match `{optarg}':No such file or directory\n")
        cmd.matches.append(Ext(optarg, _MATCH_OPTS[optarg]))
    elif c == "n":
        _set_option(cmd, "n", invert)
    elif c == "v":
        cmd.options.add("v")
        cmd.verbose += 1
    elif c == "x":
        _set_option(cmd, "x", invert)
    elif c == "0":
        _set_option(cmd, "0", invert)
    elif c == "t":
        if invert:
            raise UsageError("unexpected ! flag before --table")
        cmd.table = optarg or "filter"
    elif c == "c":
        _set_option(cmd, "c", invert)
        assert optarg is not None
        pcnt, comma, bcnt = optarg.partition(",")
        if not comma:
            if not a.has_arg():
                raise UsageError("-c requires packet and byte counter")
            bcnt = a.next()
        if not pcnt.isdigit():
            raise UsageError("-c packet counter not numeric")
        if not bcnt.isdigit():
            raise UsageError("-c byte counter not numeric")
        cmd.counters = (int(pcnt), int(bcnt))
    elif c == "6":
        raise UsageError("")
    # -4, -w, -W and --modprobe change nothing here.
    return False


def _generic_opt_check(cmd: Cmd) -> None:
    for col, opt in enumerate(_OPT_CHARS):
        if opt not in cmd.options:
            continue
        legal = 0
        for bit, row in _LEGAL.items():
            if not cmd.command & bit:
                continue
            if row[col] != "x":
                legal = 1
            elif legal == 0:
                legal = -1
        if legal == -1:
            raise UsageError(f"Illegal option `-{opt}' with this command")


def _finish_rule(cmd: Cmd) -> None:
    """The rule's parts that are checked once the whole line is read: extensions'
    final checks, the addresses, -i/-o against the chain, the chain name."""
    rule = cmd.rule
    if not cmd.command & _RULE_CMDS:
        return
    if cmd.chain is not None and len(cmd.chain) >= CHAIN_NAME_MAX:
        raise UsageError(f"chain name `{cmd.chain}' too long (must be under {CHAIN_NAME_MAX} chars)")
    for ext in cmd.matches:
        rule.matches.append(build_match(ext, rule.protocol, rule.protocol_invert))
    if cmd.target is not None:
        rule.target.CopyFrom(build_target(cmd.target))
    # xtables_ipparse_multiple(): a comma-separated list each.
    srcs = [parse_address(a) for a in cmd.src.split(",")] if cmd.src is not None else [(0, 0)]
    dsts = [parse_address(a) for a in cmd.dst.split(",")] if cmd.dst is not None else [(0, 0)]
    if cmd.command == CMD_REPLACE and (len(srcs) != 1 or len(dsts) != 1):
        raise UsageError("Replacement rule does not specify a unique address")
    if cmd.chain in ("OUTPUT", "POSTROUTING") and "i" in cmd.options:
        raise UsageError(f"Can't use -i with {cmd.chain}\n")
    if cmd.chain in ("PREROUTING", "INPUT") and "o" in cmd.options:
        raise UsageError(f"Can't use -o with {cmd.chain}\n")
    if cmd.counters is not None:
        rule.counters.packets, rule.counters.bytes = cmd.counters
    for src in srcs:
        for dst in dsts:
            r = pb.NfRule()
            r.CopyFrom(rule)
            r.src, r.src_mask = src
            r.dst, r.dst_mask = dst
            cmd.rules.append(r)


# The service.


class Netfilter(Service):
    """A channel to one host's NetfilterService (served by its IP process)."""

    layer, title = "ip", "IP"

    def make_stub(self, channel: grpc.Channel) -> Any:
        return netfilter_pb2_grpc.NetfilterServiceStub(channel)


def _iptc_fail(table: str, errno: int, message: str, kernel_log: str = "") -> NoReturn:
    """How iptables reports what libiptc or the kernel refused: exit 1."""
    if message.startswith("Table does not exist"):
        base, _, note = message.partition("; ")
        lines = [
            f"{PROG}: can't initialize iptables table `{table}': {base}",
            "Perhaps iptables or your kernel needs to be upgraded.",
        ]
        if note:
            lines.append(f"stackemu: {note}")
        fail(3, *lines)
    dmesg = " Run `dmesg' for more information." if errno == 22 else ""
    lines = [f"iptables: {message}.{dmesg}"]
    if kernel_log:
        lines.append(f"stackemu: the kernel logged: {kernel_log}")
    fail(4 if errno == 11 else 1, *lines)


def _check(resp: Any, table: str) -> None:
    if resp.errno:
        _iptc_fail(table, resp.errno, resp.message, getattr(resp, "kernel_log", ""))


def main(host: str | None, argv: Sequence[str]) -> int:
    try:
        cmd = parse(argv)
    except UsageError as e:
        _usage_exit(e)
    if cmd.help:
        out(USAGE)
        out()
        out(JSON_HELP)
        return 0
    if cmd.version:
        out(PROG)
        return 0
    with Netfilter(host) as nf:
        try:
            return run(nf, cmd)
        except UsageError as e:
            _usage_exit(e)


def run(nf: Netfilter, cmd: Cmd) -> int:
    table = cmd.table
    # TC_INIT: the table's chains, as libiptc reads them before anything else.
    init: pb.ListChainsResponse = nf.call("ListChains", pb.ListChainsRequest(table=table, chains_only=True))
    _check(init, table)
    chains = {c.name for c in init.chains}
    c = cmd.command
    chain = cmd.chain or ""
    if c & _RULE_CMDS and c != CMD_DELETE_NUM:
        return _rule_command(nf, cmd, chains)
    if c == CMD_DELETE_NUM:
        _check(
            nf.call("DeleteRule", pb.DeleteRuleRequest(table=table, chain=chain, rulenum=cmd.rulenum)), table
        )
    elif c & (CMD_LIST | CMD_LIST_RULES):
        return _list(nf, cmd)
    elif c in (CMD_ZERO, CMD_ZERO_NUM):
        _zero(nf, cmd)
    elif c == CMD_FLUSH:
        if cmd.verbose:
            for name in [chain] if chain else [ch.name for ch in init.chains]:
                out(f"Flushing chain `{name}'")
        _check(nf.call("FlushChain", pb.FlushChainRequest(table=table, chain=chain)), table)
    elif c == CMD_NEW_CHAIN:
        _check(nf.call("NewChain", pb.NewChainRequest(table=table, name=chain)), table)
    elif c == CMD_DELETE_CHAIN:
        if cmd.verbose:
            names = [chain] if chain else sorted(ch.name for ch in init.chains if not ch.builtin)
            for name in names:
                out(f"Deleting chain `{name}'")
        _check(nf.call("DeleteChain", pb.DeleteChainRequest(table=table, name=chain)), table)
    elif c == CMD_RENAME_CHAIN:
        _check(
            nf.call("RenameChain", pb.RenameChainRequest(table=table, old_name=chain, new_name=cmd.newname)),
            table,
        )
    elif c == CMD_SET_POLICY:
        req3 = pb.SetPolicyRequest(table=table, chain=chain, policy=cmd.policy)
        if cmd.counters is not None:
            req3.counters.packets, req3.counters.bytes = cmd.counters
        _check(nf.call("SetPolicy", req3), table)
    return 0


def _rule_command(nf: Netfilter, cmd: Cmd, chains: set[str]) -> int:
    """-A, -I, -R, -D, -C with a rule specification: once per address pair. libiptc
    commits only if every one succeeds, so -D checks all of them first."""
    table, chain, c = cmd.table, cmd.chain or "", cmd.command
    _resolve_target(cmd, chains)
    for rule in cmd.rules:
        rule.target.CopyFrom(cmd.rule.target)
    if c == CMD_DELETE and len(cmd.rules) > 1:
        for rule in cmd.rules:
            _check(nf.call("CheckRule", pb.CheckRuleRequest(table=table, chain=chain, rule=rule)), table)
    for rule in cmd.rules:
        if cmd.verbose:
            out(format_rule_line(rule))
        if c == CMD_APPEND:
            resp = nf.call("AppendRule", pb.AppendRuleRequest(table=table, chain=chain, rule=rule))
        elif c == CMD_INSERT:
            req = pb.InsertRuleRequest(table=table, chain=chain, rulenum=cmd.rulenum, rule=rule)
            resp = nf.call("InsertRule", req)
        elif c == CMD_REPLACE:
            req2 = pb.ReplaceRuleRequest(table=table, chain=chain, rulenum=cmd.rulenum, rule=rule)
            resp = nf.call("ReplaceRule", req2)
        elif c == CMD_DELETE:
            resp = nf.call("DeleteRule", pb.DeleteRuleRequest(table=table, chain=chain, rule=rule))
        else:
            resp = nf.call("CheckRule", pb.CheckRuleRequest(table=table, chain=chain, rule=rule))
        _check(resp, table)
    return 0


def _resolve_target(cmd: Cmd, chains: set[str]) -> None:
    """-j NAME: a standard verdict, a loaded target extension, or a chain of the table."""
    name = cmd.jumpto
    if name is None:
        return
    if cmd.goto:
        cmd.rule.target.goto_chain = name
        return
    if name in STANDARD_TARGETS:
        cmd.rule.target.standard = STANDARD_TARGETS[name]
    elif cmd.target is None:
        if name not in chains:
            raise UsageError(f"Couldn't load target `{name}':No such file or directory\n")
        cmd.rule.target.jump = name


def _zero(nf: Netfilter, cmd: Cmd) -> None:
    resp: pb.ZeroCountersResponse = nf.call(
        "ZeroCounters", pb.ZeroCountersRequest(table=cmd.table, chain=cmd.chain or "", rulenum=cmd.rulenum)
    )
    _check(resp, cmd.table)
    if cmd.verbose and not cmd.rulenum:
        for name in resp.chains:
            out(f"Zeroing chain `{name}'")


def _list(nf: Netfilter, cmd: Cmd) -> int:
    zero = bool(cmd.command & CMD_ZERO)
    req = pb.ListChainsRequest(table=cmd.table, chain=cmd.chain or "", zero=zero)
    resp: pb.ListChainsResponse = nf.call("ListChains", req)
    _check(resp, cmd.table)
    if cmd.json:
        out(json.dumps(list_json(cmd.table, resp.chains, cmd.rulenum), indent=2))
        return 0
    if cmd.command & CMD_LIST:
        fmt = FMT_OPTIONS
        fmt |= FMT_VIA if cmd.verbose else FMT_NOCOUNTS
        if "n" in cmd.options:
            fmt |= FMT_NUMERIC
        if "x" not in cmd.options:
            fmt |= FMT_KILOMEGAGIGA
        if "0" in cmd.options:
            fmt |= FMT_LINENUMBERS
        for line in list_entries(resp.chains, cmd.rulenum, fmt):
            out(line)
    else:
        for line in list_rules(resp.chains, cmd.rulenum, bool(cmd.verbose)):
            out(line)
    if zero and cmd.verbose:
        for ch in resp.chains:
            out(f"Zeroing chain `{ch.name}'")
    return 0


# Listing: iptables -L (print_header, print_firewall).


def _fmt(fmt: int, tab: str, notab: str) -> str:
    return notab if fmt & FMT_NOTABLE else tab


def print_num(n: int, fmt: int) -> str:
    """xtables_print_num()."""
    if not fmt & FMT_KILOMEGAGIGA:
        return _fmt(fmt, f"{n:8d} ", f"{n} ")
    if n <= 99999:
        return _fmt(fmt, f"{n:5d} ", f"{n} ")
    for suffix in "KMGT":
        n = (n + 500) // 1000
        if n <= 9999 or suffix == "T":
            return _fmt(fmt, f"{n:4d}{suffix} ", f"{n}{suffix} ")
    raise AssertionError("unreachable")


def print_header(ch: pb.NfChain, fmt: int) -> str:
    s = f"Chain {ch.name}"
    if ch.builtin:
        policy = "ACCEPT" if ch.policy == pb.NF_POLICY_ACCEPT else "DROP"
        s += f" (policy {policy}"
        if not fmt & FMT_NOCOUNTS:
            pc = ch.policy_counters
            pkts, nbytes = print_num(pc.packets, fmt | FMT_NOTABLE), print_num(pc.bytes, fmt | FMT_NOTABLE)
            s += f" {pkts}packets, {nbytes}bytes"
        s += ")"
    else:
        s += f" ({ch.references} references)"
    h = ""
    if fmt & FMT_LINENUMBERS:
        h += _fmt(fmt, f"{'num':<4} ", "num ")
    if not fmt & FMT_NOCOUNTS:
        if fmt & FMT_KILOMEGAGIGA:
            h += _fmt(fmt, f"{'pkts':>5} ", "pkts ") + _fmt(fmt, f"{'bytes':>5} ", "bytes ")
        else:
            h += _fmt(fmt, f"{'pkts':>8} ", "pkts ") + _fmt(fmt, f"{'bytes':>10} ", "bytes ")
    if not fmt & FMT_NOTARGET:
        h += _fmt(fmt, f"{'target':<9} ", "target ")
    h += " prot "
    if fmt & FMT_OPTIONS:
        h += "opt"
    if fmt & FMT_VIA:
        h += _fmt(fmt, f" {'in':<6} ", "in ") + _fmt(fmt, f"{'out':<6} ", "out ")
    h += _fmt(fmt, f" {'source':<19} ", "source ") + _fmt(fmt, f" {'destination':<19} ", " destination ")
    return f"{s}\n{h}"


def target_name(rule: pb.NfRule) -> str:
    kind = rule.target.WhichOneof("target") if rule.HasField("target") else None
    if kind is None:
        return ""
    if kind == "standard":
        return pb.StandardTarget.Name(rule.target.standard).removeprefix("STANDARD_TARGET_")
    if kind == "jump":
        return rule.target.jump
    if kind == "goto_chain":
        return rule.target.goto_chain
    return {
        "reject": "REJECT",
        "nfqueue": "NFQUEUE",
        "mark": "MARK",
        "ttl": "TTL",
        "tos": "TOS",
        "log": "LOG",
        "trace": "TRACE",
    }[kind]


def _addr(addr: int, mask: int, fmt: int) -> str:
    if mask == 0 and not fmt & FMT_NUMERIC:
        return "anywhere"
    if fmt & FMT_NUMERIC:
        return _dotted(addr) + _mask_suffix(mask)
    return (_host_name(addr) or _dotted(addr)) + _mask_suffix(mask)


def print_firewall(rule: pb.NfRule, num: int, fmt: int) -> str:
    """print_firewall(): one rule as a listing line."""
    s = ""
    if fmt & FMT_LINENUMBERS:
        s += _fmt(fmt, f"{num:<4d} ", f"{num} ")
    if not fmt & FMT_NOCOUNTS:
        s += print_num(rule.counters.packets, fmt) + print_num(rule.counters.bytes, fmt)
    if not fmt & FMT_NOTARGET:
        s += _fmt(fmt, f"{target_name(rule):<9} ", f"{target_name(rule)} ")
    s += "!" if rule.protocol_invert else " "
    pname = proto_to_name(rule.protocol)
    if (fmt & (FMT_NUMERIC | FMT_NOTABLE)) == FMT_NUMERIC or pname is None:
        s += _fmt(fmt, f"{rule.protocol:<5d}", f"{rule.protocol} ")
    else:
        s += _fmt(fmt, f"{pname:<5}", f"{pname} ")
    if fmt & FMT_OPTIONS:
        if fmt & FMT_NOTABLE:
            s += "opt "
        frag = rule.fragment
        s += "!" if frag == pb.NF_FRAGMENT_NOT_NON_FIRST else "-"
        s += "f" if frag != pb.NF_FRAGMENT_UNSPECIFIED else "-"
        s += " "
    if fmt & FMT_VIA:
        anyname = "*" if fmt & FMT_NUMERIC else "any"
        iface = ("!" if rule.in_invert else "") + (rule.in_interface or anyname)
        s += _fmt(fmt, f" {iface:<6} ", f"in {iface} ")
        iface = ("!" if rule.out_invert else "") + (rule.out_interface or anyname)
        s += _fmt(fmt, f"{iface:<6} ", f"out {iface} ")
    s += "!" if rule.src_invert else " "
    src = _addr(rule.src, rule.src_mask, fmt)
    s += _fmt(fmt, f"{src:<19} ", f"{src} ")
    s += "!" if rule.dst_invert else " "
    dst = _addr(rule.dst, rule.dst_mask, fmt)
    s += _fmt(fmt, f"{dst:<19} ", f"-> {dst}")
    if fmt & FMT_NOTABLE:
        s += "  "
    if rule.HasField("target") and rule.target.WhichOneof("target") == "goto_chain":
        s += "[goto] "
    numeric = bool(fmt & FMT_NUMERIC)
    for m in rule.matches:
        s += print_match(m, rule, numeric)
    if rule.HasField("target"):
        s += print_target(rule.target, numeric)
    return s


def format_rule_line(rule: pb.NfRule) -> str:
    """print_firewall_line(): what -v prints for a rule being added or removed."""
    return print_firewall(rule, 0, FMT_PRINT_RULE)


def _service(port: int, proto: str, numeric: bool) -> str:
    if not numeric:
        name = port_to_service(port, proto)
        if name is not None:
            return name
    return str(port)


def _print_ports(name: str, r: pb.PortRange | None, invert: bool, numeric: bool, proto: str) -> str:
    lo, hi = (r.min, r.max) if r is not None else (0, 0xFFFF)
    if lo == 0 and hi == 0xFFFF and not invert:
        return ""
    inv = "!" if invert else ""
    if lo == hi:
        return f" {name}:{inv}{_service(lo, proto, numeric)}"
    return f" {name}s:{inv}{_service(lo, proto, numeric)}:{_service(hi, proto, numeric)}"


def _tcpf(flags: int) -> str:
    names = [n for n, bit in TCP_FLAGS if flags & bit]
    return ",".join(names) if names else "NONE"


def _tos_symbol(value: int, mask: int) -> str | None:
    if mask != 0x3F:
        return None
    return next((n for n, v in TOS_NAMES if v == value), None)


def print_match(m: pb.NfMatch, rule: pb.NfRule, numeric: bool) -> str:
    kind = m.WhichOneof("match")
    if kind in ("udp", "tcp"):
        x: Any = getattr(m, kind)
        s = f" {kind}"
        s += _print_ports(
            "spt", x.sport if x.HasField("sport") else None, x.sport_invert, numeric, kind
        ) + _print_ports("dpt", x.dport if x.HasField("dport") else None, x.dport_invert, numeric, kind)
        if kind == "tcp" and (x.flags_mask or x.flags_invert):
            s += f" flags:{'!' if x.flags_invert else ''}"
            if numeric:
                s += f"0x{x.flags_mask:02X}/0x{x.flags_compare:02X}"
            else:
                s += f"{_tcpf(x.flags_mask)}/{_tcpf(x.flags_compare)}"
        return s
    if kind == "icmp":
        i = m.icmp
        s = " icmp"
        if not numeric:
            for name, t, lo, hi in ICMP_CODES:
                if (t, lo, hi) == (i.type, i.code_min, i.code_max):
                    return f"{s} {'!' if i.invert else ''}{name}"
        if i.invert:
            s += " !"
        s += f"type {i.type}"
        if i.code_min == i.code_max:
            s += f" code {i.code_min}"
        elif i.code_min != 0 or i.code_max != 0xFF:
            s += f" codes {i.code_min}-{i.code_max}"
        return s
    if kind == "mark":
        mk = m.mark
        mask = "" if mk.mask == 0xFFFFFFFF else f"/0x{mk.mask:x}"
        return f" mark match{' !' if mk.invert else ''} 0x{mk.mark:x}{mask}"
    if kind == "tos":
        tm = m.tos
        s = " tos match" + ("!" if tm.invert else "")
        sym = None if numeric else _tos_symbol(tm.value, tm.mask)
        if sym is not None:
            return f"{s} {sym}"
        return f"{s}0x{tm.value:02x}/0x{tm.mask:02x}"
    if kind == "ttl":
        op = {pb.TTL_MODE_EQ: "==", pb.TTL_MODE_NE: "!=", pb.TTL_MODE_LT: "<", pb.TTL_MODE_GT: ">"}[
            m.ttl.mode
        ]
        return f" TTL match TTL {op} {m.ttl.value}"
    if kind == "length":
        ln = m.length
        inv = "!" if ln.invert else ""
        if ln.min == ln.max:
            return f" length {inv}{ln.min}"
        return f" length {inv}{ln.min}:{ln.max}"
    mp = m.multiport
    proto = proto_to_name(rule.protocol) or "tcp"
    word = {
        pb.MULTIPORT_DIRECTION_SOURCE: "sports",
        pb.MULTIPORT_DIRECTION_DESTINATION: "dports",
        pb.MULTIPORT_DIRECTION_EITHER: "ports",
    }.get(mp.direction, "ERROR")
    s = f" multiport {word} "
    if mp.invert:
        s += " !"
    parts = []
    for p in mp.ports:
        text = _service(p.min, proto, numeric)
        if p.min != p.max:
            text += ":" + _service(p.max, proto, numeric)
        parts.append(text)
    return s + ",".join(parts)


def print_target(t: pb.NfTarget, numeric: bool) -> str:
    kind = t.WhichOneof("target")
    if kind == "reject":
        name = next(
            (n for n, _, code in REJECT_NAMES if code == t.reject.reject_with), "icmp-port-unreachable"
        )
        return f" reject-with {name}"
    if kind == "nfqueue":
        q = t.nfqueue
        if q.queues_total > 1:
            s = f" NFQUEUE balance {q.queue_num}:{q.queue_num + q.queues_total - 1}"
        else:
            s = f" NFQUEUE num {q.queue_num}"
        if q.bypass:
            s += " bypass"
        if q.cpu_fanout:
            s += " cpu-fanout"
        return s
    if kind == "mark":
        mk = t.mark
        if mk.mark == 0:
            return f" MARK and 0x{~mk.mask & 0xFFFFFFFF:x}"
        if mk.mark == mk.mask:
            return f" MARK or 0x{mk.mark:x}"
        if mk.mask == 0:
            return f" MARK xor 0x{mk.mark:x}"
        if mk.mask == 0xFFFFFFFF:
            return f" MARK set 0x{mk.mark:x}"
        return f" MARK xset 0x{mk.mark:x}/0x{mk.mask:x}"
    if kind == "ttl":
        word = {
            pb.TTL_TARGET_MODE_SET: "set to",
            pb.TTL_TARGET_MODE_INC: "increment by",
            pb.TTL_TARGET_MODE_DEC: "decrement by",
        }[t.ttl.mode]
        return f" TTL {word} {t.ttl.value}"
    if kind == "tos":
        v, mask = t.tos.value, t.tos.mask
        if numeric:
            return f" TOS set 0x{v:02x}/0x{mask:02x}"
        sym = _tos_symbol(v, mask)
        if sym is not None:
            return f"  TOS set{sym}"
        if v == 0:
            return f" TOS and 0x{~mask & 0xFF:02x}"
        if v == mask:
            return f" TOS or 0x{v:02x}"
        if mask == 0:
            return f" TOS xor 0x{v:02x}"
        return f" TOS set 0x{v:02x}/0x{mask:02x}"
    if kind == "log":
        lg = t.log
        if numeric:
            s = f" LOG flags {lg.flags} level {lg.level}"
        else:
            name = _LOG_LEVEL_NAMES[lg.level] if lg.level < 8 else str(lg.level)
            s = f" LOG level {name}"
            s += "".join(f" {n}" for n, bit in _LOG_FLAGS if lg.flags & bit)
        if lg.prefix:
            s += f' prefix "{lg.prefix}"'
        return s
    return ""


def list_entries(chains: Sequence[pb.NfChain], rulenum: int, fmt: int) -> Iterator[str]:
    """list_entries(): each chain's header and rules, a blank line between chains; with
    a rule number, that rule alone."""
    for i, ch in enumerate(chains):
        if i:
            yield ""
        if not rulenum:
            yield print_header(ch, fmt)
        for num, rule in enumerate(ch.rules, 1):
            if not rulenum or num == rulenum:
                yield print_firewall(rule, num, fmt)


# Listing: -L --json (the emulator's; JSON_HELP).


def _counters_json(c: pb.NfCounters) -> dict[str, int]:
    return {"packets": c.packets, "bytes": c.bytes}


def _range_json(r: pb.PortRange, invert: bool) -> dict[str, object]:
    return {"min": r.min, "max": r.max, "invert": invert}


def _flag_names(flags: int) -> list[str]:
    return [n for n, bit in TCP_FLAGS if flags & bit]


def match_json(m: pb.NfMatch) -> dict[str, object]:
    """A match's options, only those given (what save_match() writes)."""
    kind = m.WhichOneof("match")
    d: dict[str, object] = {"name": kind}
    if kind in ("udp", "tcp"):
        x: Any = getattr(m, kind)
        for name in ("sport", "dport"):
            inv = getattr(x, f"{name}_invert")
            if x.HasField(name) and ((getattr(x, name).min, getattr(x, name).max) != (0, 0xFFFF) or inv):
                d[name] = _range_json(getattr(x, name), inv)
        if kind == "tcp" and (x.flags_mask or x.flags_invert):
            d["tcp_flags"] = {
                "mask": _flag_names(x.flags_mask),
                "compare": _flag_names(x.flags_compare),
                "invert": x.flags_invert,
            }
    elif kind == "icmp":
        i = m.icmp
        type_name = next(
            (n for n, t, lo, hi in ICMP_CODES if (t, lo, hi) == (i.type, i.code_min, i.code_max)), None
        )
        d |= {"type": i.type, "code_min": i.code_min, "code_max": i.code_max, "type_name": type_name}
        d["invert"] = i.invert
    elif kind == "mark":
        d |= {"mark": m.mark.mark, "mask": m.mark.mask, "invert": m.mark.invert}
    elif kind == "tos":
        d |= {"value": m.tos.value, "mask": m.tos.mask, "invert": m.tos.invert}
    elif kind == "ttl":
        op = {pb.TTL_MODE_EQ: "eq", pb.TTL_MODE_NE: "ne", pb.TTL_MODE_LT: "lt", pb.TTL_MODE_GT: "gt"}
        d |= {"op": op[m.ttl.mode], "value": m.ttl.value}
    elif kind == "length":
        d |= {"min": m.length.min, "max": m.length.max, "invert": m.length.invert}
    else:
        mp = m.multiport
        direction = {
            pb.MULTIPORT_DIRECTION_SOURCE: "sports",
            pb.MULTIPORT_DIRECTION_DESTINATION: "dports",
            pb.MULTIPORT_DIRECTION_EITHER: "ports",
        }[mp.direction]
        d |= {"direction": direction, "ports": [{"min": p.min, "max": p.max} for p in mp.ports]}
        d["invert"] = mp.invert
    return d


def target_json(t: pb.NfTarget) -> dict[str, object]:
    """A target and its options, as save_target() writes them."""
    kind = t.WhichOneof("target")
    if kind == "standard":
        return {"name": pb.StandardTarget.Name(t.standard).removeprefix("STANDARD_TARGET_")}
    if kind in ("jump", "goto_chain"):
        return {"name": getattr(t, kind), "goto": kind == "goto_chain"}
    if kind == "reject":
        with_ = next(
            (n for n, _, code in REJECT_NAMES if code == t.reject.reject_with), "icmp-port-unreachable"
        )
        return {"name": "REJECT", "reject_with": with_}
    if kind == "nfqueue":
        q = t.nfqueue
        return {
            "name": "NFQUEUE",
            "queue_num": q.queue_num,
            "queues_total": max(q.queues_total, 1),
            "bypass": q.bypass,
            "cpu_fanout": q.cpu_fanout,
        }
    if kind == "mark":
        return {"name": "MARK", "value": t.mark.mark, "mask": t.mark.mask}
    if kind == "tos":
        return {"name": "TOS", "value": t.tos.value, "mask": t.tos.mask}
    if kind == "ttl":
        mode = {pb.TTL_TARGET_MODE_SET: "set", pb.TTL_TARGET_MODE_INC: "inc", pb.TTL_TARGET_MODE_DEC: "dec"}
        return {"name": "TTL", "mode": mode[t.ttl.mode], "value": t.ttl.value}
    if kind == "log":
        lg = t.log
        flags = [n for n, bit in _LOG_FLAGS if lg.flags & bit]
        return {"name": "LOG", "level": lg.level, "flags": flags, "prefix": lg.prefix}
    return {"name": "TRACE"}


def rule_json(rule: pb.NfRule, num: int) -> dict[str, object]:
    """One rule: its position and counters, the IP part it tests (the keys iptables -S
    would write), its matches and its target."""
    d: dict[str, object] = {"num": num, "counters": _counters_json(rule.counters)}
    if rule.protocol or rule.protocol_invert:
        d["protocol"] = {
            "number": rule.protocol,
            "name": proto_to_name(rule.protocol),
            "invert": rule.protocol_invert,
        }
    for key, addr, mask, inv in (
        ("source", rule.src, rule.src_mask, rule.src_invert),
        ("destination", rule.dst, rule.dst_mask, rule.dst_invert),
    ):
        if mask or inv:
            d[key] = {"address": _dotted(addr), "mask": _dotted(mask), "invert": inv}
    for key, name, inv in (
        ("in_interface", rule.in_interface, rule.in_invert),
        ("out_interface", rule.out_interface, rule.out_invert),
    ):
        if name or inv:
            d[key] = {"name": name, "invert": inv}
    if rule.fragment != pb.NF_FRAGMENT_UNSPECIFIED:
        d["fragment"] = {"invert": rule.fragment == pb.NF_FRAGMENT_NOT_NON_FIRST}
    d["matches"] = [match_json(m) for m in rule.matches]
    d["target"] = target_json(rule.target) if rule.HasField("target") else None
    return d


def list_json(table: str, chains: Sequence[pb.NfChain], rulenum: int) -> dict[str, object]:
    """-L --json: the chains listed, each with its policy, counters and rules (with a
    rule number, that rule alone)."""
    return {
        "table": table,
        "chains": [
            {
                "name": ch.name,
                "builtin": ch.builtin,
                "policy": ("ACCEPT" if ch.policy == pb.NF_POLICY_ACCEPT else "DROP") if ch.builtin else None,
                "counters": _counters_json(ch.policy_counters) if ch.builtin else None,
                "references": None if ch.builtin else ch.references,
                "rules": [
                    rule_json(rule, num)
                    for num, rule in enumerate(ch.rules, 1)
                    if not rulenum or num == rulenum
                ],
            }
            for ch in chains
        ],
    }


# Listing: iptables -S (print_rule4 / save).


def _save_addr(flag: str, addr: int, mask: int, invert: bool) -> str:
    if mask == 0 and not invert:
        return ""
    bits = (
        32 - (~mask & 0xFFFFFFFF).bit_length()
        if (~mask & 0xFFFFFFFF) & ((~mask & 0xFFFFFFFF) + 1) == 0
        else -1
    )
    suffix = f"/{bits}" if bits >= 0 else f"/{_dotted(mask)}"
    return f"{' !' if invert else ''} -{flag} {_dotted(addr)}{suffix}"


def save_match(m: pb.NfMatch, rule: pb.NfRule) -> str:
    kind = m.WhichOneof("match")
    s = f" -m {kind}"
    if kind in ("udp", "tcp"):
        x: Any = getattr(m, kind)
        for opt, fld, inv in (("sport", "sport", x.sport_invert), ("dport", "dport", x.dport_invert)):
            if x.HasField(fld):
                r = getattr(x, fld)
                if (r.min, r.max) == (0, 0xFFFF):
                    continue
                s += " !" if inv else ""
                s += f" --{opt} {r.min}" if r.min == r.max else f" --{opt} {r.min}:{r.max}"
        if kind == "tcp" and (x.flags_mask or x.flags_invert):
            s += (
                f"{' !' if x.flags_invert else ''} --tcp-flags {_tcpf(x.flags_mask)} {_tcpf(x.flags_compare)}"
            )
        return s
    if kind == "icmp":
        i = m.icmp
        s += " !" if i.invert else ""
        if i.type == 0xFF:
            return s + " --icmp-type any"
        s += f" --icmp-type {i.type}"
        if i.code_min != 0 or i.code_max != 0xFF:
            s += f"/{i.code_min}"
        return s
    if kind == "mark":
        mk = m.mark
        mask = "" if mk.mask == 0xFFFFFFFF else f"/0x{mk.mask:x}"
        return s + f"{' !' if mk.invert else ''} --mark 0x{mk.mark:x}{mask}"
    if kind == "tos":
        return s + f"{' !' if m.tos.invert else ''} --tos 0x{m.tos.value:02x}/0x{m.tos.mask:02x}"
    if kind == "ttl":
        opt = {
            pb.TTL_MODE_EQ: "ttl-eq",
            pb.TTL_MODE_NE: "ttl-eq",
            pb.TTL_MODE_LT: "ttl-lt",
            pb.TTL_MODE_GT: "ttl-gt",
        }[m.ttl.mode]
        return s + f"{' !' if m.ttl.mode == pb.TTL_MODE_NE else ''} --{opt} {m.ttl.value}"
    if kind == "length":
        ln = m.length
        value = str(ln.min) if ln.min == ln.max else f"{ln.min}:{ln.max}"
        return s + f"{' !' if ln.invert else ''} --length {value}"
    mp = m.multiport
    word = {
        pb.MULTIPORT_DIRECTION_SOURCE: "sports",
        pb.MULTIPORT_DIRECTION_DESTINATION: "dports",
        pb.MULTIPORT_DIRECTION_EITHER: "ports",
    }.get(mp.direction, "ports")
    ports = ",".join(str(p.min) if p.min == p.max else f"{p.min}:{p.max}" for p in mp.ports)
    return s + f"{' !' if mp.invert else ''} --{word} {ports}"


def save_target(t: pb.NfTarget) -> str:
    kind = t.WhichOneof("target")
    if kind == "standard":
        return f" -j {pb.StandardTarget.Name(t.standard).removeprefix('STANDARD_TARGET_')}"
    if kind == "jump":
        return f" -j {t.jump}"
    if kind == "goto_chain":
        return f" -g {t.goto_chain}"
    if kind == "reject":
        name = next(
            (n for n, _, code in REJECT_NAMES if code == t.reject.reject_with), "icmp-port-unreachable"
        )
        return f" -j REJECT --reject-with {name}"
    if kind == "nfqueue":
        q = t.nfqueue
        if q.queues_total > 1:
            s = f" -j NFQUEUE --queue-balance {q.queue_num}:{q.queue_num + q.queues_total - 1}"
        else:
            s = f" -j NFQUEUE --queue-num {q.queue_num}"
        if q.bypass:
            s += " --queue-bypass"
        if q.cpu_fanout:
            s += " --queue-cpu-fanout"
        return s
    if kind == "mark":
        return f" -j MARK --set-xmark 0x{t.mark.mark:x}/0x{t.mark.mask:x}"
    if kind == "ttl":
        opt = {
            pb.TTL_TARGET_MODE_SET: "ttl-set",
            pb.TTL_TARGET_MODE_INC: "ttl-inc",
            pb.TTL_TARGET_MODE_DEC: "ttl-dec",
        }[t.ttl.mode]
        return f" -j TTL --{opt} {t.ttl.value}"
    if kind == "tos":
        return f" -j TOS --set-tos 0x{t.tos.value:02x}/0x{t.tos.mask:02x}"
    if kind == "trace":
        return " -j TRACE"
    lg = t.log
    s = " -j LOG"
    if lg.prefix:
        s += f' --log-prefix "{lg.prefix}"'
    if lg.level != 4:
        s += f" --log-level {lg.level}"
    s += "".join(f" --log-{n}" for n, bit in _LOG_FLAGS if lg.flags & bit)
    return s


def save_rule(chain: str, rule: pb.NfRule, counters: bool) -> str:
    """print_rule4(): -A CHAIN, the IP part, the matches, -c, the target."""
    s = f"-A {chain}"
    s += _save_addr("s", rule.src, rule.src_mask, rule.src_invert)
    s += _save_addr("d", rule.dst, rule.dst_mask, rule.dst_invert)
    if rule.in_interface or rule.in_invert:
        s += f"{' !' if rule.in_invert else ''} -i {rule.in_interface}"
    if rule.out_interface or rule.out_invert:
        s += f"{' !' if rule.out_invert else ''} -o {rule.out_interface}"
    if rule.protocol:
        name = proto_to_name(rule.protocol)
        s += f"{' !' if rule.protocol_invert else ''} -p {name if name is not None else rule.protocol}"
    if rule.fragment != pb.NF_FRAGMENT_UNSPECIFIED:
        s += f"{' !' if rule.fragment == pb.NF_FRAGMENT_NOT_NON_FIRST else ''} -f"
    for m in rule.matches:
        s += save_match(m, rule)
    if counters:
        s += f" -c {rule.counters.packets} {rule.counters.bytes}"
    if rule.HasField("target"):
        s += save_target(rule.target)
    return s


def list_rules(chains: Sequence[pb.NfChain], rulenum: int, counters: bool) -> Iterator[str]:
    """list_rules(): policies (-P) and new chains (-N) first, then every rule (-A)."""
    if not rulenum:
        for ch in chains:
            if ch.builtin:
                policy = "ACCEPT" if ch.policy == pb.NF_POLICY_ACCEPT else "DROP"
                line = f"-P {ch.name} {policy}"
                if counters:
                    line += f" -c {ch.policy_counters.packets} {ch.policy_counters.bytes}"
                yield line
            else:
                yield f"-N {ch.name}"
    for ch in chains:
        for num, rule in enumerate(ch.rules, 1):
            if not rulenum or num == rulenum:
                yield save_rule(ch.name, rule, counters)
