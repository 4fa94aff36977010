"""The IPv4 SNMP MIB counters and the text forms the kernel and nstat print them in.

Names and order follow net/ipv4/proc.c (snmp_seq_show, netstat_seq_show) of Linux 6.18;
this machine's /proc/net/snmp and /proc/net/netstat list the same columns. The Tcp and
TcpExt groups are left out: this stack has no TCP.
"""

from collections.abc import Callable, Mapping, Sequence
from typing import Final, Protocol

# snmp4_ipstats_list[]: printed after the two Ip values that are settings, not counters.
SNMP4_IPSTATS_LIST: Final = (
    "InReceives",
    "InHdrErrors",
    "InAddrErrors",
    "ForwDatagrams",
    "InUnknownProtos",
    "InDiscards",
    "InDelivers",
    "OutRequests",
    "OutDiscards",
    "OutNoRoutes",
    "ReasmTimeout",
    "ReasmReqds",
    "ReasmOKs",
    "ReasmFails",
    "FragOKs",
    "FragFails",
    "FragCreates",
    "OutTransmits",
)
IP_FIELDS: Final = ("Forwarding", "DefaultTTL", *SNMP4_IPSTATS_LIST)

# snmp4_ipextstats_list[], the IpExt group of /proc/net/netstat. These are IPSTATS_MIB_*
# counters like the Ip ones; the kernel just prints them in another file.
SNMP4_IPEXTSTATS_LIST: Final = (
    "InNoRoutes",
    "InTruncatedPkts",
    "InMcastPkts",
    "OutMcastPkts",
    "InBcastPkts",
    "OutBcastPkts",
    "InOctets",
    "OutOctets",
    "InMcastOctets",
    "OutMcastOctets",
    "InBcastOctets",
    "OutBcastOctets",
    "InCsumErrors",
    "InNoECTPkts",
    "InECT1Pkts",
    "InECT0Pkts",
    "InCEPkts",
    "ReasmOverlaps",
)

# snmp4_udp_list[], shared by the Udp and UdpLite lines.
SNMP4_UDP_LIST: Final = (
    "InDatagrams",
    "NoPorts",
    "InErrors",
    "OutDatagrams",
    "RcvbufErrors",
    "SndbufErrors",
    "InCsumErrors",
    "IgnoredMulti",
    "MemErrors",
)

# icmpmibmap[] of proc.c: the per-type Icmp columns, in print order, with their ICMP
# type. icmp_put() reads them from the IcmpMsg counters; they are not kept twice.
ICMPMIBMAP: Final = (
    ("DestUnreachs", 3),
    ("TimeExcds", 11),
    ("ParmProbs", 12),
    ("SrcQuenchs", 4),
    ("Redirects", 5),
    ("Echos", 8),
    ("EchoReps", 0),
    ("Timestamps", 13),
    ("TimestampReps", 14),
    ("AddrMasks", 17),
    ("AddrMaskReps", 18),
)
ICMP_FIELDS: Final = (
    "InMsgs",
    "InErrors",
    "InCsumErrors",
    *(f"In{name}" for name, _ in ICMPMIBMAP),
    "OutMsgs",
    "OutErrors",
    "OutRateLimitGlobal",
    "OutRateLimitHost",
    *(f"Out{name}" for name, _ in ICMPMIBMAP),
)

# ICMPMSG_MIB_MAX: 256 input types, then 256 output types (index | 0x100).
ICMPMSG_FIELDS: Final = (
    *(f"InType{t}" for t in range(256)),
    *(f"OutType{t}" for t in range(256)),
)

# iproute2 misc/nstat.c useless_numbers[]: settings nstat never prints.
NSTAT_USELESS: Final = frozenset({"IpForwarding", "IpDefaultTTL"})


class MibGroup:
    """One named group of counters ("Udp", "IpExt", ...) in print order.

    Counting is a dict update, cheap enough per packet. A name the group does not have
    raises KeyError, so a typo in a layer fails its tests instead of counting nothing.
    """

    __slots__ = ("_values", "fields", "name")

    def __init__(self, name: str, fields: Sequence[str]) -> None:
        self.name = name
        self.fields: tuple[str, ...] = tuple(fields)
        self._values: dict[str, int] = dict.fromkeys(self.fields, 0)

    def _unknown(self, field: str) -> KeyError:
        return KeyError(f"{self.name} has no counter {field!r}")

    def inc(self, field: str, n: int = 1) -> None:
        try:
            self._values[field] += n
        except KeyError:
            raise self._unknown(field) from None

    def add(self, field: str, n: int) -> None:
        """SNMP_ADD_STATS: add a byte or packet count (IpExtInOctets, ReasmReqds)."""
        self.inc(field, n)

    def get(self, field: str) -> int:
        try:
            return self._values[field]
        except KeyError:
            raise self._unknown(field) from None

    def set(self, field: str, value: int) -> None:
        """For the Ip values that are settings (Forwarding, DefaultTTL), and tests."""
        if field not in self._values:
            raise self._unknown(field)
        self._values[field] = value

    def as_dict(self) -> dict[str, int]:
        return {field: self.get(field) for field in self.fields}

    def reset(self) -> None:
        for field in self._values:
            self._values[field] = 0


class IcmpMsgGroup(MibGroup):
    """The IcmpMsg counters, one per ICMP type and direction (icmpmsg_statistics).

    Like icmpmsg_put(), as_dict() holds only the non-zero ones, in kernel index order
    (all InTypeN, then all OutTypeN).
    """

    __slots__ = ()

    def __init__(self) -> None:
        super().__init__("IcmpMsg", ICMPMSG_FIELDS)

    def inc_in(self, icmp_type: int, n: int = 1) -> None:
        """ICMPMSGIN_INC_STATS(net, type), counted by icmp_rcv()."""
        self._values[ICMPMSG_FIELDS[_icmp_type(icmp_type)]] += n

    def inc_out(self, icmp_type: int, n: int = 1) -> None:
        """ICMPMSGOUT_INC_STATS(net, type), counted by icmp_out_count()."""
        self._values[ICMPMSG_FIELDS[256 + _icmp_type(icmp_type)]] += n

    def as_dict(self) -> dict[str, int]:
        return {field: value for field, value in self._values.items() if value}


def _icmp_type(icmp_type: int) -> int:
    if not 0 <= icmp_type <= 255:
        raise ValueError(f"ICMP type out of range: {icmp_type}")
    return icmp_type


class IcmpGroup(MibGroup):
    """The Icmp line. Its In<Type>/Out<Type> columns are views of IcmpMsg, as in
    icmp_put(); counting InDestUnreachs here counts IcmpMsg InType3 and vice versa."""

    __slots__ = ("_aliases", "_msg")

    def __init__(self, msg: IcmpMsgGroup) -> None:
        super().__init__("Icmp", ICMP_FIELDS)
        self._msg = msg
        self._aliases: dict[str, str] = {}
        for name, icmp_type in ICMPMIBMAP:
            self._aliases[f"In{name}"] = f"InType{icmp_type}"
            self._aliases[f"Out{name}"] = f"OutType{icmp_type}"
        for field in self._aliases:
            del self._values[field]

    def inc(self, field: str, n: int = 1) -> None:
        try:
            self._values[field] += n
        except KeyError:
            self._msg.inc(self._alias(field), n)

    def get(self, field: str) -> int:
        value = self._values.get(field)
        if value is not None:
            return value
        return self._msg.get(self._alias(field))

    def set(self, field: str, value: int) -> None:
        if field in self._values:
            self._values[field] = value
        else:
            self._msg.set(self._alias(field), value)

    def _alias(self, field: str) -> str:
        try:
            return self._aliases[field]
        except KeyError:
            raise self._unknown(field) from None


class _SysctlSource(Protocol):
    def get(self, name: str) -> int | tuple[int, ...]: ...

    def watch(
        self, name: str, callback: Callable[[str, int | tuple[int, ...]], None]
    ) -> Callable[[], None]: ...


class SnmpMib:
    """The counters of one host: what /proc/net/snmp and the IpExt line show."""

    __slots__ = ("icmp", "icmpmsg", "ip", "ipext", "udp", "udplite")

    def __init__(self) -> None:
        self.ip = MibGroup("Ip", IP_FIELDS)
        # snmp_seq_show_ipstats() prints 1 when forwarding is on and 2 when not
        # (RFC 1213 ipForwarding), then sysctl_ip_default_ttl; these are the defaults.
        self.ip.set("Forwarding", 2)
        self.ip.set("DefaultTTL", 64)
        self.ipext = MibGroup("IpExt", SNMP4_IPEXTSTATS_LIST)
        self.icmpmsg = IcmpMsgGroup()
        self.icmp = IcmpGroup(self.icmpmsg)
        self.udp = MibGroup("Udp", SNMP4_UDP_LIST)
        self.udplite = MibGroup("UdpLite", SNMP4_UDP_LIST)

    def groups(self) -> tuple[MibGroup, ...]:
        """/proc/net/snmp order, then IpExt from /proc/net/netstat."""
        return (self.ip, self.icmp, self.icmpmsg, self.udp, self.udplite, self.ipext)

    def follow_sysctl(self, sysctl: _SysctlSource) -> Callable[[], None]:
        """Keep Ip Forwarding and DefaultTTL in step with net.ipv4.ip_forward and
        net.ipv4.ip_default_ttl, as the kernel reads them at print time. Returns a
        function that stops following."""

        def forwarding(_: str, value: int | tuple[int, ...]) -> None:
            self.ip.set("Forwarding", 1 if value else 2)

        def default_ttl(_: str, value: int | tuple[int, ...]) -> None:
            if isinstance(value, int):
                self.ip.set("DefaultTTL", value)

        forwarding("", sysctl.get("net.ipv4.ip_forward"))
        default_ttl("", sysctl.get("net.ipv4.ip_default_ttl"))
        stops = (
            sysctl.watch("net.ipv4.ip_forward", forwarding),
            sysctl.watch("net.ipv4.ip_default_ttl", default_ttl),
        )

        def stop() -> None:
            for unwatch in stops:
                unwatch()

        return stop


def _proc_lines(name: str, pairs: Sequence[tuple[str, int]]) -> str:
    # A header line and a value line, each "Name:" then " item" per column.
    header = "".join(f" {field}" for field, _ in pairs)
    numbers = "".join(f" {value}" for _, value in pairs)
    return f"{name}:{header}\n{name}:{numbers}\n"


def _group_lines(group: MibGroup) -> str:
    return _proc_lines(group.name, list(group.as_dict().items()))


def _icmpmsg_lines(msg: IcmpMsgGroup) -> str:
    # icmpmsg_put() prints the non-zero types 16 to a line pair (PERLINE), and nothing
    # at all when every one is zero.
    items = list(msg.as_dict().items())
    return "".join(_proc_lines(msg.name, items[i : i + 16]) for i in range(0, len(items), 16))


def format_proc_net_snmp(mib: SnmpMib) -> str:
    """/proc/net/snmp as snmp_seq_show() prints it, minus the Tcp line pair."""
    return (
        _group_lines(mib.ip)
        + _group_lines(mib.icmp)
        + _icmpmsg_lines(mib.icmpmsg)
        + _group_lines(mib.udp)
        + _group_lines(mib.udplite)
    )


def format_proc_net_netstat(mib: SnmpMib) -> str:
    """The IpExt line pair of /proc/net/netstat (netstat_seq_show() also prints TcpExt
    before it and MPTcpExt after it)."""
    return _group_lines(mib.ipext)


def to_flat_dict(mib: SnmpMib) -> dict[str, int]:
    """Every counter under nstat's name (group name + field: "UdpInDatagrams"), in
    nstat's order; IcmpMsg holds only its non-zero types, as the kernel prints them."""
    return {
        f"{group.name}{field}": value for group in mib.groups() for field, value in group.as_dict().items()
    }


def format_nstat(mib: SnmpMib, zeros: bool = False) -> str:
    """What `nstat -as` (or `nstat -asz` with zeros) prints for these groups: a
    "#kernel" line, then "%-32s%-16llu%6.1f" per counter (dump_kern_db()), skipping
    IpForwarding and IpDefaultTTL like nstat does. Rates are 0.0: there is no daemon."""
    return format_nstat_counters(to_flat_dict(mib), zeros)


def format_nstat_counters(counters: Mapping[str, int], zeros: bool = False) -> str:
    """format_nstat() for counters already flattened (and perhaps gathered from several
    services, or made increments since nstat's history)."""
    lines = ["#kernel\n"]
    for name, value in counters.items():
        if name in NSTAT_USELESS or (not zeros and not value):
            continue
        lines.append(f"{name:<32}{value:<16}{0.0:6.1f}\n")
    return "".join(lines)
