"""`stackemu ethtool`: ethtool 6.1 against a host's NicService.

Layouts are ethtool's netlink printers (netlink/rings.c, coalesce.c, features.c,
tsinfo.c) and its ioctl -S; errors are printed as ethtool prints the kernel's netlink
answer: the extack message, then strerror, each after `netlink error:`.
"""

from __future__ import annotations

import errno as E
import json
from collections.abc import Sequence

from stackemu.nic.v1 import nic_pb2
from stackemu.tools.common import Nic, ethnl_error, fail, out, split_dev, strerror
from stackemu.tools.iproute import IFF_UP

USAGE = """\
Usage: stackemu ethtool [ --host HOST ] ...
        ethtool DEVNAME                         Display standard information about device
        ethtool -g|--show-ring DEVNAME          Query RX/TX ring parameters
        ethtool -G|--set-ring DEVNAME [ rx N ] [ tx N ]
        ethtool -c|--show-coalesce DEVNAME      Show coalesce options
        ethtool -C|--coalesce DEVNAME [ rx-usecs N ] [ rx-frames N ]
        ethtool -k|--show-features|--show-offload DEVNAME
        ethtool -K|--features|--offload DEVNAME FEATURE on|off ...
        ethtool [--json] -S|--statistics DEVNAME    Show adapter statistics (--json: the emulator's JSON)
        ethtool -T|--show-time-stamping DEVNAME Show time stamping capabilities
DEVNAME := [HOST:]NAME"""

# ethtool's exit statuses for a refused request (nl_sring() 81, nl_sfeatures() 92;
# -S goes through the ioctl path).
_EXIT = {"-G": 81, "-K": 92}

# net/ethtool/common.c sof_timestamping_names, ts_tx_type_names, ts_rx_filter_names.
SOF_TIMESTAMPING = (
    "hardware-transmit",
    "software-transmit",
    "hardware-receive",
    "software-receive",
    "software-system-clock",
    "hardware-legacy-clock",
    "hardware-raw-clock",
    "option-id",
    "sched-transmit",
    "ack-transmit",
    "option-cmsg",
    "option-tsonly",
    "option-stats",
    "option-pktinfo",
    "option-tx-swhw",
    "bind-phc",
    "option-id-tcp",
    "option-rx-filter",
    "tx-completion",
)
TX_TYPES = ("off", "on", "onestep-sync", "onestep-p2p")
RX_FILTERS = (
    "none",
    "all",
    "some",
    "ptpv1-l4-event",
    "ptpv1-l4-sync",
    "ptpv1-l4-delay-req",
    "ptpv2-l4-event",
    "ptpv2-l4-sync",
    "ptpv2-l4-delay-req",
    "ptpv2-l2-event",
    "ptpv2-l2-sync",
    "ptpv2-l2-delay-req",
    "ptpv2-event",
    "ptpv2-sync",
    "ptpv2-delay-req",
    "ntp-all",
)

# common.c off_flag_def: (short name, long name, kernel feature pattern).
OFF_FLAGS = (
    ("rx", "rx-checksumming", "rx-checksum"),
    ("tx", "tx-checksumming", "tx-checksum-*"),
    ("sg", "scatter-gather", "tx-scatter-gather*"),
    ("tso", "tcp-segmentation-offload", "tx-tcp*-segmentation"),
    ("ufo", "udp-fragmentation-offload", "tx-udp-fragmentation"),
    ("gso", "generic-segmentation-offload", "tx-generic-segmentation"),
    ("gro", "generic-receive-offload", "rx-gro"),
    ("lro", "large-receive-offload", "rx-lro"),
    ("rxvlan", "rx-vlan-offload", "rx-vlan-hw-parse"),
    ("txvlan", "tx-vlan-offload", "tx-vlan-hw-insert"),
    ("ntuple", "ntuple-filters", "rx-ntuple-filter"),
    ("rxhash", "receive-hashing", "rx-hashing"),
)

_MODES = {
    "-g": "-g",
    "--show-ring": "-g",
    "-G": "-G",
    "--set-ring": "-G",
    "-c": "-c",
    "--show-coalesce": "-c",
    "-C": "-C",
    "--coalesce": "-C",
    "-k": "-k",
    "--show-features": "-k",
    "--show-offload": "-k",
    "-K": "-K",
    "--features": "-K",
    "--offload": "-K",
    "-S": "-S",
    "--statistics": "-S",
    "-T": "-T",
    "--show-time-stamping": "-T",
}


def main(host: str | None, argv: Sequence[str]) -> int:
    args = list(argv)
    # ethtool's --json goes before the command; the emulator has it for -S.
    as_json = bool(args) and args[0] == "--json"
    if as_json:
        args.pop(0)
    if args and args[0] in ("-h", "--help"):
        out(USAGE)
        return 0
    mode = ""
    if args and args[0].startswith("-"):
        if args[0] not in _MODES:
            fail(1, "ethtool: bad command line argument(s)", "For more information run ethtool -h")
        mode = _MODES[args.pop(0)]
    if not args:
        fail(1, "ethtool: bad command line argument(s)", "For more information run ethtool -h")
    if as_json and mode != "-S":
        fail(1, "ethtool: --json is the emulator's for -S only")
    host, dev = split_dev(args[0], host)
    rest = args[1:]
    if mode in ("", "-g", "-c", "-k", "-S", "-T") and rest:
        fail(1, f"ethtool: unexpected parameter '{rest[0]}'")
    with Nic(host) as nic:
        if mode == "":
            return show_settings(nic, dev)
        if mode == "-g":
            return show_ring(nic, dev)
        if mode == "-G":
            return set_ring(nic, dev, rest)
        if mode == "-c":
            return show_coalesce(nic, dev)
        if mode == "-C":
            return set_coalesce(nic, dev, rest)
        if mode == "-k":
            return show_features(nic, dev)
        if mode == "-K":
            return set_features(nic, dev, rest)
        if mode == "-S":
            return show_stats(nic, dev, as_json)
        return show_tsinfo(nic, dev)


def _check(code: int, message: str, mode: str = "") -> None:
    if code:
        fail(_EXIT.get(mode, 1), *ethnl_error(code, message))


def show_settings(nic: Nic, dev: str) -> int:
    resp: nic_pb2.ListLinksResponse = nic.call("ListLinks", nic_pb2.ListLinksRequest())
    for lk in resp.links:
        if lk.name == dev:
            # __ethtool_get_link(): only a running device reports its carrier.
            detected = bool(lk.flags & IFF_UP) and lk.carrier
            out(f"Settings for {dev}:")
            out(f"\tLink detected: {'yes' if detected else 'no'}")
            return 0
    fail(75, *ethnl_error(E.ENODEV, "no device matches name"), "No data available")


def show_ring(nic: Nic, dev: str) -> int:
    r: nic_pb2.GetRingParamResponse = nic.call("GetRingParam", nic_pb2.GetRingParamRequest(device=dev))
    _check(r.errno, r.message)
    # The driver has no mini/jumbo rings, buffer length, CQE size or header split.
    for line in (
        f"Ring parameters for {dev}:",
        "Pre-set maximums:",
        f"RX:\t\t{r.rx_max_pending}",
        "RX Mini:\tn/a",
        "RX Jumbo:\tn/a",
        f"TX:\t\t{r.tx_max_pending}",
        "Current hardware settings:",
        f"RX:\t\t{r.rx_pending}",
        "RX Mini:\tn/a",
        "RX Jumbo:\tn/a",
        f"TX:\t\t{r.tx_pending}",
        "RX Buf Len:\t\tn/a",
        "CQE Size:\t\tn/a",
        "TX Push:\toff",
        "TCP data split:\tn/a",
    ):
        out(line)
    return 0


def _parse_params(cmd: str, args: list[str], known: Sequence[str]) -> dict[str, int]:
    """nl_parser() over `name value` pairs whose values are u32 (0x for hex)."""
    got: dict[str, int] = {}
    i = 0
    while i < len(args):
        name = args[i]
        if name not in known:
            fail(1, f"ethtool ({cmd}): unknown parameter '{name}'")
        if name in got:
            fail(1, f"ethtool ({cmd}): duplicate parameter '{name}'")
        if i + 1 >= len(args):
            fail(1, f"ethtool ({cmd}): no value for parameter '{name}'")
        v = args[i + 1]
        try:
            n = int(v[2:], 16) if v[:2] in ("0x", "0X") else int(v, 10)
        except ValueError:
            n = -1
        if not 0 <= n <= 0xFFFFFFFF or v.strip() != v:
            fail(1, f"ethtool ({cmd}): invalid value '{v}' for parameter '{name}'")
        got[name] = n
        i += 2
    return got


def set_ring(nic: Nic, dev: str, args: list[str]) -> int:
    p = _parse_params("-G", args, ("rx", "tx"))
    req = nic_pb2.SetRingParamRequest(device=dev)
    if "rx" in p:
        req.rx_pending = p["rx"]
    if "tx" in p:
        req.tx_pending = p["tx"]
    r: nic_pb2.SetRingParamResponse = nic.call("SetRingParam", req)
    _check(r.errno, r.message, "-G")
    return 0


def show_coalesce(nic: Nic, dev: str) -> int:
    c: nic_pb2.GetCoalesceResponse = nic.call("GetCoalesce", nic_pb2.GetCoalesceRequest(device=dev))
    _check(c.errno, c.message)
    # The driver supports rx-usecs and rx-frames only (coalesce_put_u32() leaves the
    # rest out, which ethtool shows as n/a).
    na = "n/a"
    for line in (
        f"Coalesce parameters for {dev}:",
        f"Adaptive RX: {na}  TX: {na}",
        f"stats-block-usecs: {na}",
        f"sample-interval: {na}",
        f"pkt-rate-low: {na}",
        f"pkt-rate-high: {na}",
        "",
        f"rx-usecs: {c.rx_usecs}",
        f"rx-frames: {c.rx_max_frames}",
        f"rx-usecs-irq: {na}",
        f"rx-frames-irq: {na}",
        "",
        f"tx-usecs: {na}",
        f"tx-frames: {na}",
        f"tx-usecs-irq: {na}",
        f"tx-frames-irq: {na}",
        "",
        f"rx-usecs-low: {na}",
        f"rx-frame-low: {na}",
        f"tx-usecs-low: {na}",
        f"tx-frame-low: {na}",
        "",
        f"rx-usecs-high: {na}",
        f"rx-frame-high: {na}",
        f"tx-usecs-high: {na}",
        f"tx-frame-high: {na}",
        "",
        f"CQE mode RX: {na}  TX: {na}",
        "",
    ):
        out(line)
    return 0


def set_coalesce(nic: Nic, dev: str, args: list[str]) -> int:
    p = _parse_params("-C", args, ("rx-usecs", "rx-frames"))
    req = nic_pb2.SetCoalesceRequest(device=dev)
    if "rx-usecs" in p:
        req.rx_usecs = p["rx-usecs"]
    if "rx-frames" in p:
        req.rx_max_frames = p["rx-frames"]
    r: nic_pb2.SetCoalesceResponse = nic.call("SetCoalesce", req)
    _check(r.errno, r.message, "-C")
    return 0


def _pattern_match(name: str, pattern: str) -> bool:
    """flag_pattern_match(): one '*' stands for any middle part."""
    star = pattern.find("*")
    if star < 0:
        return name == pattern
    head, tail = pattern[:star], pattern[star + 1 :]
    return len(name) + 1 >= len(pattern) and name.startswith(head) and name.endswith(tail)


def _legacy_flag(name: str) -> int | None:
    """Which off_flag_def group a feature belongs to (a service that names features by
    their group's long name is understood as that group's only member)."""
    for i, (_, long_name, pattern) in enumerate(OFF_FLAGS):
        if _pattern_match(name, pattern) or name == long_name:
            return i
    return None


def format_features(dev: str, features: Sequence[nic_pb2.Feature]) -> list[str]:
    """dump_features(): legacy groups first (a group of one shown under the group's
    name, larger ones with their members indented), then everything else."""

    def line(prefix: str, name: str, f: nic_pb2.Feature) -> str:
        return f"{prefix}{name}: {'on' if f.active else 'off'}{'' if f.changeable else ' [fixed]'}"

    lines = [f"Features for {dev}:"]
    group = [_legacy_flag(f.name) for f in features]
    for i, (short, long_name, _) in enumerate(OFF_FLAGS):
        if short == "ufo":  # no kernel with the netlink interface has UFO
            continue
        members = [f for f, g in zip(features, group, strict=True) if g == i]
        if len(members) != 1:
            lines.append(f"{long_name}: {'on' if any(f.active for f in members) else 'off'}")
            lines += [line("\t", f.name, f) for f in members]
        else:
            lines.append(line("", long_name, members[0]))
    lines += [line("", f.name, f) for f, g in zip(features, group, strict=True) if g is None]
    return lines


def show_features(nic: Nic, dev: str) -> int:
    r: nic_pb2.GetFeaturesResponse = nic.call("GetFeatures", nic_pb2.GetFeaturesRequest(device=dev))
    _check(r.errno, r.message)
    for line in format_features(dev, r.features):
        out(line)
    return 0


def set_features(nic: Nic, dev: str, args: list[str]) -> int:
    before: nic_pb2.GetFeaturesResponse = nic.call("GetFeatures", nic_pb2.GetFeaturesRequest(device=dev))
    _check(before.errno, before.message, "-K")
    names = [f.name for f in before.features]
    wanted: dict[str, bool] = {}
    i = 0
    while i < len(args):
        if args[i] == "--":
            break
        flag = args[i + 1] if i + 1 < len(args) else "(null)"
        if flag not in ("on", "off"):
            fail(1, f"ethtool (-K): flag '{flag}' for parameter '(null)' is not followed by 'on' or 'off'")
        val = flag == "on"
        # fill_legacy_flag(): a group's short or long name sets every member (a service
        # that names the feature by the group's long name has that one member).
        legacy = [(pat, long_name) for short, long_name, pat in OFF_FLAGS if args[i] in (short, long_name)]
        members = [n for n in names if legacy and (_pattern_match(n, legacy[0][0]) or n == legacy[0][1])]
        for n in members or [args[i]]:
            wanted[n] = val
        i += 2
    if not wanted:
        fail(1, "Could not change any device features")
    req = nic_pb2.SetFeaturesRequest(device=dev, features=wanted)
    r: nic_pb2.SetFeaturesResponse = nic.call("SetFeatures", req)
    _check(r.errno, r.message, "-K")
    # show_feature_changes(): what did not come out as asked, and what moved unasked.
    old = {f.name: f.active for f in before.features}
    diff: list[str] = []
    missed = 0
    for f in r.features:
        if f.name in wanted and f.active != wanted[f.name]:
            missed += 1
            diff.append(
                f"{f.name}: {'on' if f.active else 'off'} [requested {'on' if wanted[f.name] else 'off'}]"
            )
        elif f.name in old and f.active != old[f.name]:
            state = "on" if f.active else "off"
            diff.append(f"{f.name}: {state}" + ("" if f.name in wanted else " [not requested]"))
    if any(" [" in d for d in diff):
        out("Actual changes:")
        for d in diff:
            out(d)
    if missed and missed == len(wanted):
        fail(1, "Could not change any device features")
    return 0


def show_stats(nic: Nic, dev: str, as_json: bool = False) -> int:
    r: nic_pb2.GetEthtoolStatsResponse = nic.call(
        "GetEthtoolStats", nic_pb2.GetEthtoolStatsRequest(device=dev)
    )
    if r.errno:
        fail(96, f"Cannot get stats strings information: {strerror(r.errno)}")
    if not r.stats:
        fail(94, "no stats available")
    if as_json:
        # ethtool's JSON shape: a list of one object per device, "ifname" first.
        out(json.dumps([{"ifname": dev, **{c.name: c.value for c in r.stats}}], indent=4))
        return 0
    out("NIC statistics:")
    for c in r.stats:
        out(f"     {c.name}: {c.value}")
    return 0


def _bits(mask: int, names: Sequence[str], if_empty: str) -> list[str]:
    if not mask:
        return [if_empty]
    return [f"\t{names[b] if b < len(names) else f'bit{b}'}" for b in range(32) if mask >> b & 1]


def show_tsinfo(nic: Nic, dev: str) -> int:
    t: nic_pb2.GetTsInfoResponse = nic.call("GetTsInfo", nic_pb2.GetTsInfoRequest(device=dev))
    _check(t.errno, t.message)
    lines = [f"Time stamping parameters for {dev}:"]
    caps = _bits(t.so_timestamping, SOF_TIMESTAMPING, "")
    lines += ["Capabilities:" + caps[0]] if not t.so_timestamping else ["Capabilities:", *caps]
    lines.append(f"PTP Hardware Clock: {t.phc_index if t.phc_index >= 0 else 'none'}")
    for label, mask, names in (
        ("Hardware Transmit Timestamp Modes", t.tx_types, TX_TYPES),
        ("Hardware Receive Filter Modes", t.rx_filters, RX_FILTERS),
    ):
        if mask:
            lines += [f"{label}:", *_bits(mask, names, "")]
        else:
            lines.append(f"{label}: none")
    for line in lines:
        out(line)
    return 0
