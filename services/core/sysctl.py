"""The net.* sysctls this stack reads: Linux names, kernel defaults, kernel validation.

A value is checked the way its proc_handler checks a write to /proc/sys (kernel/sysctl.c
and the handlers in net/core/sysctl_net_core.c, net/ipv4/sysctl_net_ipv4.c,
net/ipv4/ip_fragment.c, net/ipv4/devinet.c): same text syntax, same ranges, EINVAL for
what the kernel refuses and nothing stricter. Defaults are those of Linux 6.18 on x86_64
with HZ=1000 (see HZ); where this machine's kernel shows something else the entry says so.
"""

import dataclasses
import enum
from collections.abc import Callable, Iterator, Mapping, Sequence
from types import MappingProxyType
from typing import Final, Literal

from services.core import errno
from services.core.errno import kernel_error

Layer = Literal["core", "nic", "ip", "udp", "socket"]
SysctlValue = int | tuple[int, ...]
Watcher = Callable[[str, SysctlValue], None]

# The emulated kernel's CONFIG_HZ. Jiffies-based sysctls, the neighbour and ICMP timers
# and the netdev_budget_usecs floor (2 * USEC_PER_SEC / HZ) depend on it; 1000 gives the
# project's 2000 us budget. This machine runs CONFIG_HZ=250 (netdev_budget_usecs 8000).
HZ: Final = 1000
# The HZ the socket options that show jiffies to the user use: SO_RCVTIMEO/SO_SNDTIMEO
# read back in 4 ms steps and SO_LINGER's l_linger -1 as LONG_MAX / 250, as on this
# machine. (The timers above still count at HZ; one HZ for both is to come.)
SOCK_HZ: Final = 250
# include/linux/sched.h MAX_SCHEDULE_TIMEOUT (LONG_MAX jiffies).
MAX_SCHEDULE_TIMEOUT: Final = (1 << 63) - 1

INT_MIN: Final = -(2**31)
INT_MAX: Final = 2**31 - 1
UINT_MAX: Final = 2**32 - 1
ULONG_MAX: Final = 2**64 - 1

# include/net/sock.h on x86_64, where SKB_DATA_ALIGN(sizeof(struct sk_buff)) is 256:
# TCP_SKB_MIN_TRUESIZE = 2048 + 256; SOCK_MIN_RCVBUF is one of those, SOCK_MIN_SNDBUF two.
# SK_RMEM_DEFAULT = SK_WMEM_DEFAULT = 256 packets of SKB_TRUESIZE(256) = 832 bytes.
SOCK_MIN_RCVBUF: Final = 2304
SOCK_MIN_SNDBUF: Final = 4608
SK_MEM_DEFAULT: Final = 212992


class Conv(enum.Enum):
    """How a handler turns one written number into a stored value (kernel/sysctl.c)."""

    INT = "do_proc_dointvec_conv"  # any C int; "-5" is fine
    UINT = "do_proc_douintvec_conv"  # a sign is EINVAL, even "-0"
    U8 = "proc_dou8vec_minmax"  # UINT, capped at 255 unless extra2 says otherwise
    ULONG = "__do_proc_doulongvec_minmax"  # 0..ULONG_MAX, a sign is EINVAL
    JIFFIES = "do_proc_dointvec_jiffies_conv"  # seconds, |value| <= INT_MAX / HZ
    MS_JIFFIES = "do_proc_dointvec_ms_jiffies_conv"  # milliseconds, via msecs_to_jiffies


# A bound is a number, or the name of another sysctl whose current value is the bound
# (ipfrag_high_thresh has extra1 = &low_thresh, ipfrag_low_thresh extra2 = &high_thresh).
Bound = int | str | None
# A handler's own rule on the whole new vector; it raises EINVAL via kernel_error.
Check = Callable[[tuple[int, ...], Callable[[str], tuple[int, ...]]], None]


@dataclasses.dataclass(frozen=True)
class SysctlSpec:
    name: str
    default: tuple[int, ...]
    doc: str
    layer: Layer
    handler: str  # the kernel proc_handler, for reference
    conv: Conv
    minimum: Bound = None
    maximum: Bound = None
    check: Check | None = None
    # The handler parses into a temporary and stores all or nothing
    # (ipv4_local_port_range); plain vector handlers store each element as it parses,
    # so "1 2 x" to udp_mem keeps 1 and 2 and still fails with EINVAL.
    atomic: bool = False

    def convert(self, neg: bool, magnitude: int, lookup: Callable[[str], int]) -> int:
        """One written number ("-" flag and digits' value) to the value stored, or
        EINVAL where the handler refuses it."""
        value = _CONVERTERS[self.conv](neg, magnitude)
        low = self._bound(self.minimum, lookup)
        high = self._bound(self.maximum, lookup)
        if self.conv is Conv.U8 and high is None:
            high = 255
        if (low is not None and value < low) or (high is not None and value > high):
            raise _einval(self.name, f"{value} is outside {_range_text(low, high)}")
        return value

    @staticmethod
    def _bound(bound: Bound, lookup: Callable[[str], int]) -> int | None:
        return lookup(bound) if isinstance(bound, str) else bound


def _einval(name: str, why: str) -> OSError:
    return kernel_error(errno.EINVAL, f"{name}: {why}")


def _range_text(low: int | None, high: int | None) -> str:
    return f"[{'-inf' if low is None else low}, {'inf' if high is None else high}]"


def _conv_int(neg: bool, magnitude: int) -> int:
    # do_proc_dointvec_conv: -(INT_MAX + 1) .. INT_MAX.
    value = -magnitude if neg else magnitude
    if not INT_MIN <= value <= INT_MAX:
        raise kernel_error(errno.EINVAL, f"{value} does not fit a C int")
    return value


def _conv_uint(neg: bool, magnitude: int) -> int:
    # do_proc_douintvec_conv refuses any '-', including "-0".
    if neg or magnitude > UINT_MAX:
        raise kernel_error(errno.EINVAL, "not an unsigned int")
    return magnitude


def _conv_ulong(neg: bool, magnitude: int) -> int:
    if neg:
        raise kernel_error(errno.EINVAL, "not an unsigned long")
    return magnitude


def _conv_jiffies(neg: bool, magnitude: int) -> int:
    # do_proc_dointvec_jiffies_conv stores seconds * HZ and refuses |s| > INT_MAX / HZ.
    if magnitude > INT_MAX // HZ:
        raise kernel_error(errno.EINVAL, f"more than {INT_MAX // HZ} seconds")
    return -magnitude if neg else magnitude


def _conv_ms_jiffies(neg: bool, magnitude: int) -> int:
    # do_proc_dointvec_ms_jiffies_conv passes the (negated, if '-') unsigned long to
    # msecs_to_jiffies(unsigned int), which truncates it to 32 bits and maps anything
    # with the top bit set to MAX_JIFFY_OFFSET, beyond INT_MAX: so "-1" is EINVAL,
    # "4294967301" stores 5. At HZ=1000 a jiffy is a millisecond.
    msecs = (-magnitude if neg else magnitude) % 2**32
    if msecs > INT_MAX:
        raise kernel_error(errno.EINVAL, "more than INT_MAX milliseconds")
    return msecs


_CONVERTERS: Final[dict[Conv, Callable[[bool, int], int]]] = {
    Conv.INT: _conv_int,
    Conv.UINT: _conv_uint,
    Conv.U8: _conv_uint,
    Conv.ULONG: _conv_ulong,
    Conv.JIFFIES: _conv_jiffies,
    Conv.MS_JIFFIES: _conv_ms_jiffies,
}


def _local_port_range_check(values: tuple[int, ...], lookup: Callable[[str], tuple[int, ...]]) -> None:
    # ipv4_local_port_range(): after 1..65535 per element, the range may not be empty
    # nor start below ip_unprivileged_port_start. Equal parity of the two ends is
    # allowed: set_local_port_range() only logs "prefer different parity".
    low, high = values
    if high < low:
        raise _einval("net.ipv4.ip_local_port_range", f"{high} is below {low}")
    (unprivileged,) = lookup("net.ipv4.ip_unprivileged_port_start")
    if low < unprivileged:
        raise _einval(
            "net.ipv4.ip_local_port_range",
            f"{low} is below ip_unprivileged_port_start {unprivileged}",
        )


def _unprivileged_port_start_check(values: tuple[int, ...], lookup: Callable[[str], tuple[int, ...]]) -> None:
    # ipv4_privileged_ports(): the privileged range may not reach into the local one.
    low = lookup("net.ipv4.ip_local_port_range")[0]
    if low < values[0]:
        raise _einval(
            "net.ipv4.ip_unprivileged_port_start",
            f"{values[0]} is above ip_local_port_range's start {low}",
        )


def udp_mem_from_pages(nr_free_buffer_pages: int) -> tuple[int, int, int]:
    """udp_init(): udp_mem in pages, from the memory the kernel found at boot."""
    limit = max(nr_free_buffer_pages // 8, 128)
    low = limit // 4 * 3
    return (low, limit, low * 2)


# udp_mem depends on memory size; this is what this machine's kernel computed
# (24 GiB RAM, /proc/sys/net/ipv4/udp_mem = "575802 767738 1151604").
UDP_MEM_DEFAULT: Final = (575802, 767738, 1151604)


def _spec(
    name: str,
    default: int | tuple[int, ...],
    doc: str,
    layer: Layer,
    handler: str,
    conv: Conv,
    minimum: Bound = None,
    maximum: Bound = None,
    check: Check | None = None,
    atomic: bool = False,
) -> SysctlSpec:
    values = default if isinstance(default, tuple) else (default,)
    return SysctlSpec(name, values, doc, layer, handler, conv, minimum, maximum, check, atomic)


_SPECS: Final = (
    # net/core/sysctl_net_core.c
    _spec(
        "net.core.netdev_budget",
        300,
        "Most packets one NET_RX softirq may poll across all NAPI instances.",
        "nic",
        "proc_dointvec",
        Conv.INT,
    ),
    _spec(
        "net.core.netdev_budget_usecs",
        2 * 1_000_000 // HZ,
        "Most microseconds one NET_RX softirq may poll (default and floor: 2 s / HZ).",
        "nic",
        "proc_dointvec_minmax",
        Conv.INT,
        minimum=2 * 1_000_000 // HZ,
    ),
    _spec(
        "net.core.netdev_max_backlog",
        1000,
        "Per-CPU input backlog length before enqueue_to_backlog() drops (softnet dropped).",
        "nic",
        "proc_dointvec",
        Conv.INT,
    ),
    _spec(
        "net.core.dev_weight",
        64,
        "NAPI weight of the backlog device; times dev_weight_rx_bias it is dev_rx_weight.",
        "nic",
        "proc_do_dev_weight",
        Conv.INT,
        minimum=1,
    ),
    _spec(
        "net.core.dev_weight_rx_bias",
        1,
        "Multiplier of dev_weight for the RX backlog poll (dev_rx_weight).",
        "nic",
        "proc_do_dev_weight",
        Conv.INT,
        minimum=1,
    ),
    _spec(
        "net.core.dev_weight_tx_bias",
        1,
        "Multiplier of dev_weight for the TX softirq (dev_tx_weight).",
        "nic",
        "proc_do_dev_weight",
        Conv.INT,
        minimum=1,
    ),
    _spec(
        "net.core.gro_normal_batch",
        8,
        "Packets GRO hands up in one list before flushing it to the stack.",
        "nic",
        "proc_dointvec_minmax",
        Conv.INT,
        minimum=1,
    ),
    _spec(
        "net.core.netdev_tstamp_prequeue",
        1,
        "Timestamp received packets before RPS queues them (0: after, on the target CPU).",
        "nic",
        "proc_dointvec",
        Conv.INT,
    ),
    _spec(
        "net.core.max_skb_frags",
        17,
        "Most page fragments one skb may carry (MAX_SKB_FRAGS is the ceiling).",
        "core",
        "proc_dointvec_minmax",
        Conv.INT,
        minimum=1,
        maximum=17,
    ),
    _spec(
        "net.core.rmem_default",
        SK_MEM_DEFAULT,
        "SO_RCVBUF a new socket starts with, in bytes of truesize.",
        "socket",
        "proc_dointvec_minmax",
        Conv.INT,
        minimum=SOCK_MIN_RCVBUF,
    ),
    _spec(
        "net.core.rmem_max",
        4 << 20,
        "Largest SO_RCVBUF a process may set (6.18 raised it from 212992 to 4 MiB).",
        "socket",
        "proc_dointvec_minmax",
        Conv.INT,
        minimum=SOCK_MIN_RCVBUF,
    ),
    _spec(
        "net.core.wmem_default",
        SK_MEM_DEFAULT,
        "SO_SNDBUF a new socket starts with, in bytes of truesize.",
        "socket",
        "proc_dointvec_minmax",
        Conv.INT,
        minimum=SOCK_MIN_SNDBUF,
    ),
    _spec(
        "net.core.wmem_max",
        4 << 20,
        "Largest SO_SNDBUF a process may set (6.18 raised it from 212992 to 4 MiB).",
        "socket",
        "proc_dointvec_minmax",
        Conv.INT,
        minimum=SOCK_MIN_SNDBUF,
    ),
    _spec(
        "net.core.optmem_max",
        128 << 10,
        "Per-socket ancillary buffer limit (cmsg, filters, multicast lists), in bytes.",
        "socket",
        "proc_dointvec_minmax",
        Conv.INT,
        minimum=0,
    ),
    _spec(
        "net.core.tstamp_allow_data",
        1,
        "Whether TX timestamps on the error queue carry the packet's payload.",
        "socket",
        "proc_dou8vec_minmax",
        Conv.U8,
        minimum=0,
        maximum=1,
    ),
    # Emulator-only (no such file in /proc/sys): services/core/trace.py. Read by the
    # UDP layer (udp_sendmsg) and by the NIC (which serves every net.core.* sysctl).
    _spec(
        "net.core.emu_trace_sample",
        0,
        "Trace 1 skb in N where skbs enter (udp_sendmsg, the NIC's receive); 0: none.",
        "udp",
        "proc_dointvec_minmax",
        Conv.INT,
        minimum=0,
    ),
    # net/ipv4/sysctl_net_ipv4.c, net/ipv4/devinet.c
    _spec(
        "net.ipv4.ip_forward",
        0,
        "Forward IPv4 packets not addressed to this host; any non-zero int enables it.",
        "ip",
        "devinet_sysctl_forward",
        Conv.INT,
    ),
    _spec(
        "net.ipv4.conf.all.rp_filter",
        0,
        "Reverse path filter: 0 off, 1 strict, 2 loose; the max of all and the device's.",
        "ip",
        "devinet_conf_proc",
        Conv.INT,
    ),
    _spec(
        "net.ipv4.ip_default_ttl",
        64,
        "TTL of locally generated packets unless IP_TTL says otherwise.",
        "ip",
        "proc_dou8vec_minmax",
        Conv.U8,
        minimum=1,
        maximum=255,
    ),
    _spec(
        "net.ipv4.ip_no_pmtu_disc",
        0,
        "Non-zero turns path MTU discovery off; 2 and 3 also change which ICMP to trust.",
        "ip",
        "proc_dou8vec_minmax",
        Conv.U8,
    ),
    _spec(
        "net.ipv4.ip_nonlocal_bind",
        0,
        "Let sockets bind() to addresses not configured on this host.",
        "socket",
        "proc_dou8vec_minmax",
        Conv.U8,
    ),
    _spec(
        "net.ipv4.ip_early_demux",
        1,
        "Let ip_rcv_finish() look the socket up early to reuse its cached route.",
        "ip",
        "proc_dou8vec_minmax",
        Conv.U8,
    ),
    _spec(
        "net.ipv4.udp_early_demux",
        1,
        "UDP's early demux for connected and multicast sockets (udp_v4_early_demux).",
        "udp",
        "proc_dou8vec_minmax",
        Conv.U8,
    ),
    _spec(
        "net.ipv4.ip_local_port_range",
        (32768, 60999),
        "Ports an unbound socket is given by autobind, low and high inclusive.",
        "udp",
        "ipv4_local_port_range",
        Conv.INT,
        minimum=1,
        maximum=65535,
        check=_local_port_range_check,
        atomic=True,
    ),
    _spec(
        "net.ipv4.ip_unprivileged_port_start",
        1024,
        "First port a process may bind() without CAP_NET_BIND_SERVICE.",
        "socket",
        "ipv4_privileged_ports",
        Conv.INT,
        minimum=0,
        maximum=65535,
        check=_unprivileged_port_start_check,
        atomic=True,
    ),
    # net/ipv4/route.c: ipv4_route_netns_table
    _spec(
        "net.ipv4.route.min_pmtu",
        552,
        "Smallest path MTU an ICMP fragmentation-needed may set; below it the MTU is locked.",
        "ip",
        "proc_dointvec_minmax",
        Conv.INT,
        minimum=68,
    ),
    _spec(
        "net.ipv4.route.mtu_expires",
        600,
        "Seconds a learned path MTU (a nexthop exception) stays in force.",
        "ip",
        "proc_dointvec_jiffies",
        Conv.JIFFIES,
    ),
    # net/ipv4/ip_fragment.c: ip4_frags_ns_ctl_table
    _spec(
        "net.ipv4.ipfrag_high_thresh",
        4 << 20,
        "Bytes of fragment memory (truesize) past which new fragments are dropped.",
        "ip",
        "proc_doulongvec_minmax",
        Conv.ULONG,
        minimum="net.ipv4.ipfrag_low_thresh",
    ),
    _spec(
        "net.ipv4.ipfrag_low_thresh",
        3 << 20,
        "Obsolete since 4.17 (nothing evicts down to it); still bounds ipfrag_high_thresh.",
        "ip",
        "proc_doulongvec_minmax",
        Conv.ULONG,
        maximum="net.ipv4.ipfrag_high_thresh",
    ),
    _spec(
        "net.ipv4.ipfrag_time",
        30,
        "Seconds a fragment queue may wait for its missing pieces (IP_FRAG_TIME).",
        "ip",
        "proc_dointvec_jiffies",
        Conv.JIFFIES,
    ),
    _spec(
        "net.ipv4.ipfrag_max_dist",
        64,
        "How far out of order a source's fragments may arrive; 0 turns the check off.",
        "ip",
        "proc_dointvec_minmax",
        Conv.INT,
        minimum=0,
    ),
    # net/ipv4/icmp.c defaults, handlers in sysctl_net_ipv4.c
    _spec(
        "net.ipv4.icmp_ratelimit",
        1000,
        "Milliseconds between ICMP messages of a rate-limited type to one host.",
        "ip",
        "proc_dointvec_ms_jiffies",
        Conv.MS_JIFFIES,
    ),
    _spec(
        "net.ipv4.icmp_ratemask",
        6168,
        "ICMP types icmp_ratelimit applies to, one bit per type: 3, 4, 11 and 12.",
        "ip",
        "proc_dointvec",
        Conv.INT,
    ),
    _spec(
        "net.ipv4.icmp_msgs_per_sec",
        1000,
        "Host-wide ICMP messages per second (OutRateLimitGlobal counts refusals).",
        "ip",
        "proc_dointvec_minmax",
        Conv.INT,
        minimum=0,
    ),
    _spec(
        "net.ipv4.icmp_msgs_burst",
        50,
        "Burst size of the host-wide ICMP token bucket.",
        "ip",
        "proc_dointvec_minmax",
        Conv.INT,
        minimum=0,
    ),
    _spec(
        "net.ipv4.icmp_echo_ignore_all",
        0,
        "Ignore every ICMP echo request.",
        "ip",
        "proc_dou8vec_minmax",
        Conv.U8,
        minimum=0,
        maximum=1,
    ),
    _spec(
        "net.ipv4.icmp_echo_ignore_broadcasts",
        1,
        "Ignore ICMP echo and timestamp requests sent to broadcast or multicast.",
        "ip",
        "proc_dou8vec_minmax",
        Conv.U8,
        minimum=0,
        maximum=1,
    ),
    _spec(
        "net.ipv4.icmp_ignore_bogus_error_responses",
        1,
        "Do not log ICMP errors sent in reply to broadcast frames.",
        "ip",
        "proc_dou8vec_minmax",
        Conv.U8,
        minimum=0,
        maximum=1,
    ),
    _spec(
        "net.ipv4.icmp_errors_use_inbound_ifaddr",
        0,
        "Source ICMP errors from the interface the offending packet came in on.",
        "ip",
        "proc_dou8vec_minmax",
        Conv.U8,
        minimum=0,
        maximum=1,
    ),
    # net/ipv4/udp.c: udp_init(), udp_sysctl_init()
    _spec(
        "net.ipv4.udp_mem",
        UDP_MEM_DEFAULT,
        "Pages all UDP sockets may hold: min, pressure, max (computed from RAM at boot).",
        "udp",
        "proc_doulongvec_minmax",
        Conv.ULONG,
    ),
    _spec(
        "net.ipv4.udp_rmem_min",
        4096,
        "Receive memory a UDP socket may use even under udp_mem pressure (PAGE_SIZE).",
        "udp",
        "proc_dointvec_minmax",
        Conv.INT,
        minimum=1,
    ),
    _spec(
        "net.ipv4.udp_wmem_min",
        4096,
        "Send memory a UDP socket may use even under udp_mem pressure (PAGE_SIZE).",
        "udp",
        "proc_dointvec_minmax",
        Conv.INT,
        minimum=1,
    ),
    # fs/file_table.c fs_stat_sysctls[] and kernel/pid.c pid_table[]: the socket service's
    # process table reads them (services/socket/files.py); no service's GetSysctl serves
    # them yet, so they keep these values.
    _spec(
        "fs.file-max",
        # files_maxfiles_init()'s floor NR_FILE: what a host with 80 MiB of memory gets
        # (10% of it at 1 KiB a file), here so that one client cannot exhaust the socket
        # service. This machine's 24 GiB give 2466183.
        8192,
        "Open files the host may hold; past it alloc_empty_file() is ENFILE (root excepted).",
        "core",
        "proc_doulongvec_minmax",
        Conv.ULONG,
        minimum=0,
        maximum=2**63 - 1,  # LONG_MAX
    ),
    _spec(
        "kernel.pid_max",
        # PID_MAX_DEFAULT, which pid_idr_init() keeps below 32 possible CPUs.
        32768,
        "Pids are below it; when every one is taken, fork() is EAGAIN.",
        "core",
        "proc_dointvec_minmax",
        Conv.INT,
        minimum=301,  # pid_max_min: RESERVED_PIDS + 1
        maximum=4194304,  # pid_max_max: PID_MAX_LIMIT on 64-bit
    ),
)

SYSCTLS: Final[Mapping[str, SysctlSpec]] = MappingProxyType({s.name: s for s in _SPECS})

# What may come between numbers (isspace(), as proc_skip_spaces() skips) and what may
# directly follow one (proc_wspace_sep[] given to proc_get_long()).
_SPACE: Final = " \t\n\v\f\r"
_AFTER_NUMBER: Final = " \t\n"
# proc_get_long() copies at most TMPBUFLEN - 1 = 21 bytes; a number (with its '-')
# that long is refused because it might have been cut short.
_MAX_NUMBER_LEN: Final = 20
_DEC_DIGITS: Final = "0123456789"
_HEX_DIGITS: Final = "0123456789abcdefABCDEF"


def _parse_ulong(text: str, start: int, limit: int) -> tuple[int, int]:
    """strtoul_lenient() with base 0 at text[start], a digit, reading no further than
    limit: (value, end index). "0x" and a hex digit mean hex, another leading 0 octal."""
    base, i = 10, start
    if text[i] == "0":
        if text[i + 1 : i + 2] in ("x", "X") and i + 2 < len(text) and text[i + 2] in _HEX_DIGITS:
            base, i = 16, i + 2
        else:
            base = 8
    digits = _HEX_DIGITS if base == 16 else _DEC_DIGITS[:base]
    end = i
    while end < limit and text[end] in digits:
        end += 1
    return int(text[i:end], base), end


def _numbers(text: str) -> Iterator[tuple[bool, int]]:
    """(negative, magnitude) per number written, as __do_proc_dointvec() and friends
    read them: base 0 like strtoul ("0x40", "010"), an optional leading '-' (never
    '+'), separated by whitespace. A malformed number raises EINVAL when reached;
    what follows the numbers a sysctl takes is never looked at."""
    i = 0
    while True:
        while i < len(text) and text[i] in _SPACE:
            i += 1
        if i == len(text):
            return
        start = i
        neg = text[i] == "-"
        if neg:
            i += 1
        if i == len(text) or text[i] not in _DEC_DIGITS:
            raise kernel_error(errno.EINVAL, f"not a number: {text[start:]!r}")
        limit = min(len(text), start + _MAX_NUMBER_LEN + 1)
        magnitude, i = _parse_ulong(text, i, limit)
        if i - start > _MAX_NUMBER_LEN:
            raise kernel_error(errno.EINVAL, f"number too long: {text[start:i]!r}...")
        if magnitude > ULONG_MAX:
            raise kernel_error(errno.EINVAL, f"{text[start:i]} does not fit an unsigned long")
        if i < len(text) and text[i] not in _AFTER_NUMBER:
            raise kernel_error(errno.EINVAL, f"not a number: {text[start:]!r}")
        yield neg, magnitude


def _as_numbers(value: str | int | Sequence[int]) -> Iterator[tuple[bool, int]]:
    if isinstance(value, str):
        return _numbers(value)
    if isinstance(value, int):
        return iter(((value < 0, abs(value)),))
    return iter([(v < 0, abs(v)) for v in value])


class Sysctl:
    """One host's sysctl table. get/set behave like reading and writing /proc/sys."""

    def __init__(self, overrides: Mapping[str, str | int | Sequence[int]] | None = None) -> None:
        self._values: dict[str, tuple[int, ...]] = {n: s.default for n, s in SYSCTLS.items()}
        self._watchers: dict[str, list[Watcher]] = {}
        if overrides:
            self._apply_overrides(overrides)

    def _apply_overrides(self, overrides: Mapping[str, str | int | Sequence[int]]) -> None:
        # Settings that bound each other (ipfrag_low_thresh/high_thresh, the port range
        # and ip_unprivileged_port_start) may only be valid in one order, which a config
        # file need not follow: retry the refused ones while any of them goes through.
        pending = dict(overrides)
        while pending:
            refused: dict[str, str | int | Sequence[int]] = {}
            first_error: OSError | None = None
            for name, value in pending.items():
                try:
                    self.set(name, value)
                except OSError as error:
                    if error.errno != errno.EINVAL:
                        raise
                    refused[name] = value
                    first_error = first_error or error
            if len(refused) == len(pending):
                assert first_error is not None
                raise first_error
            pending = refused

    def spec(self, name: str) -> SysctlSpec:
        try:
            return SYSCTLS[name]
        except KeyError:
            raise kernel_error(errno.ENOENT, f"no sysctl {name!r}") from None

    def get(self, name: str) -> SysctlValue:
        """An int, or a tuple for vectors (ip_local_port_range, udp_mem)."""
        try:
            values = self._values[name]
        except KeyError:
            raise kernel_error(errno.ENOENT, f"no sysctl {name!r}") from None
        return values if len(values) > 1 else values[0]

    def get_int(self, name: str) -> int:
        """A one-number sysctl's value; TypeError for a vector, a caller's mistake."""
        value = self.get(name)
        if not isinstance(value, int):
            raise TypeError(f"{name} holds {len(value)} numbers")
        return value

    def get_tuple(self, name: str) -> tuple[int, ...]:
        """Every number of a sysctl, scalar or not: (64,) for ip_default_ttl."""
        self.spec(name)
        return self._values[name]

    def get_str(self, name: str) -> str:
        """The value as /proc/sys prints it, without the final newline: numbers
        separated by tabs ("32768\\t60999")."""
        self.spec(name)
        return "\t".join(str(v) for v in self._values[name])

    def set(self, name: str, value: str | int | Sequence[int]) -> None:
        """Write a value. Text is read as /proc/sys reads it (see _numbers); an int
        or a sequence is taken number by number the same way. Fewer numbers than the
        sysctl holds change only the first ones ("40000" to ip_local_port_range keeps
        its high end), extra ones are ignored, and an empty string changes nothing
        (a zero-length write). Bad values raise OSError(EINVAL), unknown names ENOENT.
        """
        spec = self.spec(name)
        if isinstance(value, str) and not value:
            return
        current = self._values[name]
        new = list(current)
        stored = 0

        def lookup(other: str) -> int:
            return self._values[other][0]

        try:
            for index, (neg, magnitude) in zip(range(len(new)), _as_numbers(value), strict=False):
                new[index] = spec.convert(neg, magnitude, lookup)
                stored = index + 1
            if stored == 0:
                raise _einval(name, "no value given")
            if spec.check is not None:
                spec.check(tuple(new), self._values.__getitem__)
        except OSError:
            if not spec.atomic and stored:
                self._store(name, (*new[:stored], *current[stored:]))
            raise
        self._store(name, tuple(new))

    def _store(self, name: str, values: tuple[int, ...]) -> None:
        if values == self._values[name]:
            return
        self._values[name] = values
        for callback in tuple(self._watchers.get(name, ())):
            callback(name, values if len(values) > 1 else values[0])

    def names(self, prefix: str = "") -> list[str]:
        return sorted(n for n in SYSCTLS if n.startswith(prefix))

    def items(self) -> list[tuple[str, SysctlValue]]:
        """(name, value) for every sysctl, sorted by name like `sysctl -a`."""
        return [(name, self.get(name)) for name in self.names()]

    def watch(self, name: str, callback: Watcher) -> Callable[[], None]:
        """Call callback(name, new_value) after every change of name; returns a
        function that removes it. Writes that leave the value as it was are silent."""
        self.spec(name)
        self._watchers.setdefault(name, []).append(callback)

        def unwatch() -> None:
            callbacks = self._watchers.get(name, [])
            if callback in callbacks:
                callbacks.remove(callback)

        return unwatch


def get_sysctls(
    sysctl: Sysctl, names: Sequence[str], own: Callable[[str], bool], every: Sequence[str], where: str
) -> tuple[int, str, dict[str, str]]:
    """A layer's GetSysctl: the values of `names` (every one the layer has when none is
    named), as /proc/sys shows them; ENOENT for a name the layer (`own`) has not, the
    read's errno for one that fails. (errno, message, values)."""
    values: dict[str, str] = {}
    for name in list(names) or every:
        if not own(name):
            return errno.ENOENT, f"no sysctl {name!r} in {where}", {}
        try:
            values[name] = sysctl.get_str(name)
        except OSError as err:
            return err.errno or errno.EINVAL, str(err), {}
    return 0, "", values


def set_sysctl(
    sysctl: Sysctl, name: str, value: str, own: Callable[[str], bool], where: str
) -> tuple[int, str]:
    """A layer's SetSysctl: ENOENT for a name the layer has not, else the write's
    errno (EINVAL for a value /proc/sys refuses). (errno, message)."""
    if not own(name):
        return errno.ENOENT, f"no sysctl {name!r} in {where}"
    try:
        sysctl.set(name, value)
    except OSError as err:
        return err.errno or errno.EINVAL, str(err)
    return 0, ""
