"""`stackemu tc`: iproute2's `tc qdisc` for the root netem qdisc of a host's devices.

The netem syntax, units, checks and messages are tc's (tc/q_netem.c, tc/tc_util.c,
lib/utils.c, lib/utils_math.c of iproute2 6.1, plus `seed` from later releases); `tc qdisc
show` is print_qdisc()'s (tc/tc_qdisc.c) with netem_print_opt()'s or prio_print_opt()'s
options and print_tcstats2_attr()'s statistics (tc/tc_util.c), as text or, with -j, as
their json_writer output.
"""

from __future__ import annotations

import errno as E
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass

from stackemu.nic.v1 import nic_pb2
from stackemu.tools.common import Nic, err, fail, iproute2_json, matches, out, rtnl_error, split_dev
from stackemu.tools.iproute import IFF_UP

TC_USAGE = """\
Usage: stackemu tc [ --host HOST ] [ -s[tatistics] ] [ -j[son] [ -p[retty] ] ] qdisc { COMMAND | help }
       tc qdisc [ add | replace | change ] dev [HOST:]DEV root netem [ NETEM ]
       tc qdisc del dev [HOST:]DEV root
       tc [ -s ] qdisc show [ dev [HOST:]DEV ]"""

NETEM_USAGE = """\
Usage: ... netem [ limit PACKETS ]
                 [ delay TIME [ JITTER ]]
                 [ corrupt PERCENT ]
                 [ duplicate PERCENT ]
                 [ loss [ random ] PERCENT ]
                 [ reorder PERCENT [ gap DISTANCE ]]
                 [ rate RATE ]
                 [ seed SEED ]"""

# lib/utils_math.c suffixes: bits per second, or bytes per second for the *Bps ones.
_RATE_SUFFIXES = {
    "bit": 1.0,
    "kibit": 1024.0,
    "kbit": 1000.0,
    "mibit": 1024.0**2,
    "mbit": 1e6,
    "gibit": 1024.0**3,
    "gbit": 1e9,
    "tibit": 1024.0**4,
    "tbit": 1e12,
    "bps": 8.0,
    "kibps": 8.0 * 1024,
    "kbps": 8000.0,
    "mibps": 8.0 * 1024**2,
    "mbps": 8e6,
    "gibps": 8.0 * 1024**3,
    "gbps": 8e9,
    "tibps": 8.0 * 1024**4,
    "tbps": 8e12,
}

_STRTOD = re.compile(r"\s*[+-]?(?:\d+\.?\d*(?:[eE][+-]?\d+)?|\.\d+(?:[eE][+-]?\d+)?)")
_STRTOULL = re.compile(r"\s*([+-]?)(\d+)")
_UINT32_MAX = 2**32 - 1

# tc_core_init(): tick_in_usec from /proc/net/psched, whose first three fields are
# NSEC_PER_USEC, PSCHED_TICKS2NS(1) and 1000000 on every kernel since 2.6.31
# (psched_show()): 1000 / 64 * 1 = 15.625 ticks of 64 ns per microsecond.
TICK_IN_USEC = 1000 / 64

# prio_print_opt() of pfifo_fast's TCA_OPTIONS: pfifo_fast_dump()'s prio2band.
PFIFO_FAST_BANDS = 3
PFIFO_FAST_PRIOMAP = (1, 2, 2, 2, 1, 2, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1)


class _Illegal(Exception):
    """netem_parse_opt() refusing an argument: tc prints the message, exits 1."""


def strtod(s: str) -> tuple[float, str] | None:
    """C strtod over decimal numbers: the value and the unparsed rest."""
    m = _STRTOD.match(s)
    if not m:
        return None
    return float(m.group()), s[m.end() :]


def get_time(s: str) -> int | None:
    """get_time(): microseconds; no suffix means microseconds."""
    p = strtod(s)
    if p is None:
        return None
    t, rest = p
    scale = {"s": 1e6, "sec": 1e6, "secs": 1e6, "ms": 1e3, "msec": 1e3, "msecs": 1e3}
    scale |= {"us": 1.0, "usec": 1.0, "usecs": 1.0, "": 1.0}
    if rest.lower() not in scale:
        return None
    t *= scale[rest.lower()]
    if not 0 <= t <= _UINT32_MAX:
        return None
    return int(t)


def time2tick(us: int) -> int:
    """tc_core_time2tick(): the unsigned int of us * tick_in_usec."""
    return int(us * TICK_IN_USEC)


def tick2time(tick: int) -> int:
    """tc_core_tick2time(): the unsigned int of tick / tick_in_usec, so a time makes
    the round trip through ticks a microsecond short when us * 15.625 is not whole
    (100us is 1562 ticks, shown as 99us)."""
    return int(tick / TICK_IN_USEC)


def get_ticks(s: str) -> int | None:
    """get_ticks() of tc/q_netem.c: get_time(), refusing a time whose ticks do not fit
    in 32 bits (tc_core_time2big()). Returns microseconds, which the emulator keeps."""
    t = get_time(s)
    if t is None:
        return None
    if time2tick(t) >> 32:
        err(f"Illegal {t} time (too large)")
        return None
    return t


def get_u64(s: str) -> int | None:
    """get_u64(.., 10) of lib/utils.c: strtoull(), refusing ULLONG_MAX (and overflow)."""
    m = _STRTOULL.fullmatch(s)
    if not m:
        return None
    v = int(m.group(2))
    if v >= 2**64 - 1:
        return None
    return (-v) % 2**64 if m.group(1) == "-" else v


def percent_u32(pct: float) -> int:
    """get_percent() of tc/q_netem.c: parse_percent()'s fraction scaled to a u32,
    set_percent()'s rint(per * UINT32_MAX); what the kernel keeps and dumps back."""
    return round(pct / 100.0 * _UINT32_MAX)


def get_percent(s: str) -> float | None:
    """parse_percent(): a number of percent, optionally followed by %, in 0..100."""
    p = strtod(s)
    if p is None:
        return None
    v, rest = p
    if not 0.0 <= v / 100.0 <= 1.0 or rest not in ("", "%"):
        return None
    return v


def get_rate_bps(s: str) -> int | None:
    """get_rate64(): tc keeps bytes per second, so the bits per second it stands for
    are a multiple of 8 (100bit is 12 bytes/s, shown as 96bit)."""
    p = strtod(s)
    if p is None:
        return None
    bps, rest = p
    if rest:
        if rest.lower() not in _RATE_SUFFIXES:
            return None
        bps *= _RATE_SUFFIXES[rest.lower()]
    if bps < 0 or bps / 8 >= 2**64:
        return None
    return int(bps / 8) * 8


def get_size(s: str) -> int | None:
    """get_size(): bytes with tc's k/m/g (binary) and kbit/mbit/gbit suffixes."""
    p = strtod(s)
    if p is None:
        return None
    sz, rest = p
    mult = {"kb": 1024, "k": 1024, "gb": 1024**3, "g": 1024**3, "gbit": 1024**3 // 8}
    mult |= {"mb": 1024**2, "m": 1024**2, "mbit": 1024**2 // 8, "kbit": 1024 // 8, "b": 1, "": 1}
    if rest.lower() not in mult:
        return None
    sz *= mult[rest.lower()]
    if not 0 <= sz <= _UINT32_MAX or sz != math.floor(sz):
        return None
    return int(sz)


def _is_number(args: Sequence[str], i: int) -> bool:
    """NEXT_IS_NUMBER()."""
    return i + 1 < len(args) and args[i + 1][:1].isdigit()


def parse_netem(args: Sequence[str]) -> nic_pb2.Netem:
    """netem_parse_opt() for what the emulated netem has; the rest of tc's netem
    syntax is refused by name rather than dropped."""
    nm = nic_pb2.Netem(limit=1000)
    i = 0

    def value(what: str) -> str:
        if i + 1 >= len(args):
            fail(255, 'Command line is not complete. Try option "help"')
        return args[i + 1]

    def unsupported(what: str) -> None:
        fail(1, f"stackemu tc: netem {what} is not emulated")

    try:
        while i < len(args):
            a = args[i]
            if matches(a, "limit"):
                v = get_size(value("limit"))
                if v is None:
                    raise _Illegal("limit")
                nm.limit = v
                i += 1
            elif matches(a, "latency") or matches(a, "delay"):
                v = get_ticks(value("latency"))
                if v is None:
                    raise _Illegal("latency")
                nm.delay_us = v
                i += 1
                if _is_number(args, i):
                    j = get_ticks(args[i + 1])
                    if j is None:
                        raise _Illegal("latency")
                    nm.jitter_us = j
                    i += 1
                    if _is_number(args, i):
                        unsupported("delay correlation")
            elif matches(a, "loss") or matches(a, "drop"):
                if nm.loss_pct:
                    raise _Illegal("duplicate loss argument\n")
                v_s = value("loss")
                i += 1
                if v_s == "random":
                    v_s = value("loss")
                    i += 1
                elif not v_s[:1].isdigit():
                    if v_s in ("state", "gemodel"):
                        unsupported(f"loss {v_s}")
                    fail(1, f"Unknown loss parameter: {v_s}")
                pct = get_percent(v_s)
                if pct is None:
                    raise _Illegal("loss percent")
                nm.loss_pct = pct
                if _is_number(args, i):
                    unsupported("loss correlation")
            elif matches(a, "seed"):
                seed = get_u64(value("seed"))
                if seed is None:
                    raise _Illegal("seed")
                nm.seed = seed
                i += 1
            elif matches(a, "ecn"):
                unsupported("ecn")
            elif matches(a, "reorder"):
                pct = get_percent(value("reorder"))
                if pct is None:
                    raise _Illegal("reorder")
                nm.reorder_pct = pct
                i += 1
                if _is_number(args, i):
                    unsupported("reorder correlation")
            elif matches(a, "corrupt"):
                pct = get_percent(value("corrupt"))
                if pct is None:
                    raise _Illegal("corrupt")
                nm.corrupt_pct = pct
                i += 1
                if _is_number(args, i):
                    unsupported("corrupt correlation")
            elif matches(a, "gap"):
                g = value("gap")
                try:
                    gap = int(g, 0)
                except ValueError:
                    raise _Illegal("gap") from None
                if not 0 <= gap <= _UINT32_MAX:
                    raise _Illegal("gap")
                nm.gap = gap
                i += 1
            elif matches(a, "duplicate"):
                pct = get_percent(value("duplicate"))
                if pct is None:
                    raise _Illegal("duplicate")
                nm.duplicate_pct = pct
                i += 1
                if _is_number(args, i):
                    unsupported("duplicate correlation")
            elif matches(a, "distribution"):
                unsupported("distribution")
            elif matches(a, "rate"):
                r = value("rate")
                if "%" in r:
                    unsupported("rate as a percentage of the link speed")
                rate = get_rate_bps(r)
                if rate is None:
                    raise _Illegal("rate")
                nm.rate_bps = rate
                i += 1
                if i + 1 < len(args) and (args[i + 1][:1].isdigit() or args[i + 1][:1] == "-"):
                    unsupported("rate packet overhead and cell size")
            elif matches(a, "slot"):
                unsupported("slot")
            else:
                if a != "help":
                    fail(1, f'What is "{a}"?', NETEM_USAGE)
                fail(1, NETEM_USAGE)
            i += 1
    except _Illegal as e:
        fail(1, f'Illegal "{e.args[0]}"')
    if nm.reorder_pct:
        if nm.delay_us == 0:
            fail(1, "reordering not possible without specifying some delay", NETEM_USAGE)
        if nm.gap == 0:
            nm.gap = 1
    elif nm.gap > 0:
        fail(1, "gap specified without reorder probability", NETEM_USAGE)
    return nm


def sprint_time(us: int) -> str:
    """print_time() of lib/utils.c."""
    if us >= 1_000_000:
        return "%.3gs" % (us / 1e6)
    if us >= 1000:
        return "%.3gms" % (us / 1e3)
    return f"{us}us"


def sprint_rate(bps: int) -> str:
    """print_color_rate() of lib/json_print.c, SI units, from bits per second."""
    units = ("", "K", "M", "G", "T")
    i = 0
    while i < len(units) - 1:
        if bps < 1000 or (bps % 1000 != 0 and bps < 1000 * 1000):
            break
        bps //= 1000
        i += 1
    return f"{bps}{units[i]}bit"


def sprint_size(sz: int) -> str:
    """sprint_size() of lib/json_print_math.c."""
    kilo, mega = 1024, 1024 * 1024
    if sz >= mega and abs(mega * round(sz / mega) - sz) < 1024:
        return f"{round(sz / mega):g}Mb"
    if sz >= kilo and abs(kilo * round(sz / kilo) - sz) < 16:
        return f"{round(sz / kilo):g}Kb"
    return f"{sz}b"


def _pct(per: int) -> float:
    """__print_percent()'s text value: percentage points of the u32 the kernel keeps."""
    return (100.0 * per) / _UINT32_MAX


def _g(x: float) -> float | int:
    """jsonw_float()'s "%g" as a number json.dumps writes the same way: "%g" and repr()
    agree below 1e6 (both switch to an exponent under 1e-4), except that "%g" drops a
    whole number's ".0". Every float tc prints here is under 1e6 (a delay is at most
    2**32 ticks, 274.9 s; a probability at most 1)."""
    text = f"{x:g}"
    return float(text) if "." in text or "e" in text else int(text)


def netem_opts(nm: nic_pb2.Netem) -> str:
    """netem_print_opt()'s text, in its order (seed where later releases print it)."""
    s = f"limit {nm.limit}"
    latency, jitter = time2tick(nm.delay_us), time2tick(nm.jitter_us)
    if latency:
        # sprint_ticks(): the time the ticks stand for.
        s += f" delay {sprint_time(tick2time(latency))}"
        if jitter:
            s += f"  {sprint_time(tick2time(jitter))}"
    for word, pct in (
        ("loss", nm.loss_pct),
        ("duplicate", nm.duplicate_pct),
        ("reorder", nm.reorder_pct),
        ("corrupt", nm.corrupt_pct),
    ):
        if per := percent_u32(pct):
            s += f" {word} {_pct(per):g}%"
    if nm.rate_bps // 8:
        s += f" rate {sprint_rate(nm.rate_bps // 8 * 8)}"
    if nm.seed:
        s += f" seed {nm.seed}"
    if nm.gap:
        s += f" gap {nm.gap}"
    return s


def netem_json(nm: nic_pb2.Netem) -> dict[str, object]:
    """netem_print_opt()'s JSON. Times are seconds and probabilities fractions of 1
    (print_float()); every object carries its correlation, 0 here (print_corr()); rate
    is bytes per second (print_color_rate()); ecn and gap are always there."""
    doc: dict[str, object] = {"limit": nm.limit}
    latency = time2tick(nm.delay_us)
    if latency:
        doc["delay"] = {
            "delay": _g(tick2time(latency) / 1e6),
            "jitter": _g(tick2time(time2tick(nm.jitter_us)) / 1e6),
            "correlation": 0,
        }
    for key, word, pct in (
        ("loss-random", "loss", nm.loss_pct),
        ("duplicate", "duplicate", nm.duplicate_pct),
        ("reorder", "reorder", nm.reorder_pct),
        ("corrupt", "corrupt", nm.corrupt_pct),
    ):
        if per := percent_u32(pct):
            doc[key] = {word: _g(per / _UINT32_MAX), "correlation": 0}
    if rate := nm.rate_bps // 8:
        doc["rate"] = {"rate": rate, "packetoverhead": 0, "cellsize": 0, "celloverhead": 0}
    if nm.seed:
        # iproute2 6.1 does not print TCA_NETEM_PRNG_SEED; later releases print it here,
        # after slot and before ecn.
        doc["seed"] = nm.seed
    doc["ecn"] = False
    doc["gap"] = nm.gap
    return doc


@dataclass(frozen=True)
class QdiscStats:
    """What print_tcstats2_attr() prints: TCA_STATS_BASIC, then TCA_STATS_QUEUE."""

    bytes: int
    packets: int
    drops: int
    overlimits: int
    # NetemStats.backlog counts packets; the bytes they hold are not in the contract.
    qlen: int


@dataclass(frozen=True)
class Qdisc:
    """One RTM_NEWQDISC of the dump: a device's root qdisc."""

    kind: str
    dev: str
    netem: nic_pb2.Netem | None = None
    stats: QdiscStats | None = None

    @property
    def handle(self) -> str:
        # The first handle qdisc_alloc_handle() gives is 8001:; a default qdisc has 0.
        return "8001:" if self.kind == "netem" else "0:"


def qdisc_text(q: Qdisc, show_dev: bool) -> list[str]:
    """print_qdisc()'s lines."""
    devpart = f"dev {q.dev} " if show_dev else ""
    if q.netem is not None:
        opts = netem_opts(q.netem)
    elif q.kind == "pfifo_fast":
        opts = f"bands {PFIFO_FAST_BANDS} priomap " + " ".join(map(str, PFIFO_FAST_PRIOMAP))
    else:
        opts = ""
    lines = [f"qdisc {q.kind} {q.handle} {devpart}root refcnt 2 {opts}"]
    if q.stats is not None:
        st = q.stats
        lines.append(_sent_line(st.bytes, st.packets, st.drops, st.overlimits))
        lines.append(_backlog_line(st.qlen))
    return lines


def qdisc_json(q: Qdisc, show_dev: bool) -> dict[str, object]:
    """print_qdisc()'s JSON object: no "dev" when `dev DEV` chose the device (as no
    dev in the text), "options" always, the statistics' members after it with -s."""
    doc: dict[str, object] = {"kind": q.kind, "handle": q.handle}
    if show_dev:
        doc["dev"] = q.dev
    doc |= {"root": True, "refcnt": 2}
    if q.netem is not None:
        doc["options"] = netem_json(q.netem)
    elif q.kind == "pfifo_fast":
        # pfifo_fast's options are printed by prio_print_opt(); no TCA_PRIO_MQ.
        doc["options"] = {"bands": PFIFO_FAST_BANDS, "priomap": list(PFIFO_FAST_PRIOMAP), "multiqueue": False}
    else:
        doc["options"] = {}
    if q.stats is not None:
        st = q.stats
        doc |= {
            "bytes": st.bytes,
            "packets": st.packets,
            "drops": st.drops & _UINT32_MAX,
            "overlimits": st.overlimits & _UINT32_MAX,
            "requeues": 0,
        }
        # "backlog" is print_size()'s bytes; with packets queued they are unknown (the
        # text leaves them out too), so the member is left out rather than made up.
        if not st.qlen:
            doc["backlog"] = 0
        doc["qlen"] = st.qlen
    return doc


def main(host: str | None, argv: Sequence[str]) -> int:
    args = list(argv)
    stats = json_out = pretty = False
    # tc.c's main(): every option is matched whole as a prefix of its name, "-" and
    # all; unlike ip, tc takes no "--" spelling ("--json" is unknown).
    while args and args[0].startswith("-"):
        opt = args.pop(0)
        if matches(opt, "-stats") or matches(opt, "-statistics"):
            stats = True
        elif matches(opt, "-pretty"):
            pretty = True
        elif matches(opt, "-help"):
            fail(255, TC_USAGE)
        elif matches(opt, "-json"):
            json_out = True
        else:
            fail(255, f'Option "{opt}" is unknown, try "tc -help".')
    if not args:
        fail(255, TC_USAGE)
    obj, rest = args[0], args[1:]
    show = _Show(stats, json_out, pretty)
    if matches(obj, "qdisc"):
        return qdisc(host, rest, show)
    if matches(obj, "help"):
        fail(255, TC_USAGE)
    for other in ("class", "filter", "chain", "actions", "monitor", "exec"):
        if matches(obj, other):
            fail(255, f'stackemu tc: "tc {other}" is not emulated; the NIC has a root netem qdisc.')
    fail(255, f'Object "{obj}" is unknown, try "tc help".')


@dataclass(frozen=True)
class _Show:
    """-s, -j and -p: how `qdisc show` prints."""

    stats: bool = False
    json: bool = False
    pretty: bool = False


def qdisc(host: str | None, args: list[str], show: _Show) -> int:
    if not args:
        return qdisc_show(host, [], show)
    cmd, rest = args[0], args[1:]
    for word in ("add", "change", "replace"):
        if matches(cmd, word):
            return qdisc_modify(host, rest, word)
    if matches(cmd, "link"):
        fail(255, 'stackemu tc: "tc qdisc link" is not emulated.')
    if matches(cmd, "delete"):
        return qdisc_modify(host, rest, "delete")
    if matches(cmd, "list") or matches(cmd, "show") or matches(cmd, "lst"):
        return qdisc_show(host, rest, show)
    if matches(cmd, "help"):
        fail(255, TC_USAGE)
    fail(255, f'Command "{cmd}" is unknown, try "tc qdisc help".')


def qdisc_show(host: str | None, args: list[str], show: _Show) -> int:
    """tc_qdisc_list(): the root qdiscs of the host's devices that are up, or of one."""
    dev: str | None = None
    i = 0
    while i < len(args):
        a = args[i]
        if a == "dev":
            if i + 1 >= len(args):
                fail(255, 'Command line is not complete. Try option "help"')
            # A second dev replaces the first (strncpy into the same buffer).
            dev = args[i + 1]
            i += 1
        elif a == "root":
            pass
        elif matches(a, "help"):
            fail(255, TC_USAGE)
        else:
            fail(255, f'What is "{a}"? Try "tc qdisc help".')
        i += 1
    name = ""
    if dev is not None:
        host, name = split_dev(dev, host)
    shown: list[Qdisc] = []
    with Nic(host) as nic:
        resp: nic_pb2.ListLinksResponse = nic.call("ListLinks", nic_pb2.ListLinksRequest())
        links = [lk for lk in resp.links if not name or lk.name == name]
        if name and not links:
            fail(1, f'Cannot find device "{name}"')
        for lk in links:
            kind = lk.qdisc or "noqueue"
            # A down device has noop_qdisc, which is not dumped; a configured qdisc stays.
            if not lk.flags & IFF_UP and kind != "netem":
                continue
            netem: nic_pb2.Netem | None = None
            st: QdiscStats | None = None
            if kind == "netem" or (kind != "noqueue" and show.stats):
                # GetNetem answers with the default qdisc's counters when no netem is set.
                req = nic_pb2.GetNetemRequest(device=lk.name)
                nresp: nic_pb2.GetNetemResponse = nic.call("GetNetem", req)
                if kind == "netem":
                    if nresp.errno:
                        fail(2, rtnl_error(nresp.errno, nresp.message))
                    netem = nresp.netem
                n = nresp.stats
                # The bytes are the device's tx_bytes, which is what went through its
                # root qdisc (since the device came up, not since this qdisc).
                st = QdiscStats(lk.stats.tx_bytes, n.sent, n.dropped, n.overlimits, n.backlog)
            else:
                # noqueue counts nothing: every packet goes straight to the driver.
                st = QdiscStats(0, 0, 0, 0, 0)
            shown.append(Qdisc(kind, lk.name, netem, st if show.stats else None))
    if show.json:
        out(iproute2_json([qdisc_json(q, not name) for q in shown], show.pretty))
    else:
        for q in shown:
            for line in qdisc_text(q, not name):
                out(line)
    return 0


def _sent_line(nbytes: int, pkts: int, dropped: int, overlimits: int) -> str:
    # gnet_stats_queue's drops and overlimits are __u32.
    dropped, overlimits = dropped & _UINT32_MAX, overlimits & _UINT32_MAX
    return f" Sent {nbytes} bytes {pkts} pkt (dropped {dropped}, overlimits {overlimits} requeues 0) "


def _backlog_line(qlen: int) -> str:
    # NetemStats.backlog counts packets; the bytes they hold are not reported.
    if qlen:
        return f" backlog {qlen}p requeues 0"
    return f" backlog {sprint_size(0)} 0p requeues 0"


def qdisc_modify(host: str | None, args: list[str], cmd: str) -> int:
    dev: str | None = None
    root = False
    kind: str | None = None
    opts: list[str] = []
    i = 0
    while i < len(args):
        a = args[i]
        if a == "dev":
            if i + 1 >= len(args):
                fail(255, 'Command line is not complete. Try option "help"')
            if dev is not None:
                fail(255, f'Error: duplicate "dev": "{args[i + 1]}" is the second value.')
            dev = args[i + 1]
            i += 1
        elif a == "root":
            if root:
                fail(1, 'Error: "root" is duplicate parent ID')
            root = True
        elif a in ("handle", "parent", "ingress", "clsact", "estimator", "stab") or a.endswith("_block"):
            fail(1, f'stackemu tc: "{a}" is not emulated; the NIC has one root qdisc per device.')
        elif matches(a, "help"):
            fail(255, TC_USAGE)
        else:
            kind, opts = a, args[i + 1 :]
            break
        i += 1
    netem = parse_netem(opts) if kind == "netem" and cmd != "delete" else None
    if dev is None:
        fail(2, rtnl_error(E.ENODEV, ""))
    host, name = split_dev(dev, host)
    if not root:
        fail(2, "Error: Handle cannot be zero.")
    if cmd != "delete" and kind != "netem":
        fail(2, "Error: Specified qdisc kind is unknown.")
    with Nic(host) as nic:
        cur: nic_pb2.GetNetemResponse = nic.call("GetNetem", nic_pb2.GetNetemRequest(device=name))
        if cur.errno == E.ENODEV:
            fail(1, f'Cannot find device "{name}"')
        if cur.errno:
            fail(2, rtnl_error(cur.errno, cur.message))
        have = cur.HasField("netem")
        # tc_modify_qdisc() / tc_get_qdisc() answers for the flags each command sends.
        if cmd == "add" and have:
            fail(2, "Error: Exclusivity flag on, cannot modify.")
        if cmd == "change" and not have:
            fail(2, "Error: Qdisc not found. To create specify NLM_F_CREATE flag.")
        if cmd == "delete":
            if not have:
                fail(2, "Error: Cannot delete qdisc with handle of zero.")
            if kind is not None and kind != "netem":
                fail(2, "Error: Invalid qdisc name.")
        req = nic_pb2.SetNetemRequest(device=name)
        if netem is not None:
            req.netem.CopyFrom(netem)
        resp: nic_pb2.SetNetemResponse = nic.call("SetNetem", req)
    if resp.errno == E.ENODEV:
        fail(1, f'Cannot find device "{name}"')
    if resp.errno:
        fail(2, rtnl_error(resp.errno, resp.message))
    return 0
