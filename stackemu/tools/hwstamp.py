"""`stackemu hwstamp_ctl`: linuxptp's hwstamp_ctl (SIOCGHWTSTAMP, then SIOCSHWTSTAMP
with the values asked for) against a host's NicService; its output and its exit status,
which is the errno of the last ioctl that failed."""

from __future__ import annotations

import errno as E
from collections.abc import Sequence

from stackemu.nic.v1 import nic_pb2
from stackemu.tools.common import Nic, err, out, split_dev, strerror

HWTSTAMP_TX_ON = 1
HWTSTAMP_FILTER_PTP_V2_DELAY_REQ = 14

_FILTERS = (
    "time stamp no incoming packet at all",
    "time stamp any incoming packet",
    "(reserved value)",
    "PTP v1, UDP, any kind of event packet",
    "PTP v1, UDP, Sync packet",
    "PTP v1, UDP, Delay_req packet",
    "PTP v2, UDP, any kind of event packet",
    "PTP v2, UDP, Sync packet",
    "PTP v2, UDP, Delay_req packet",
    "802.AS1, Ethernet, any kind of event packet",
    "802.AS1, Ethernet, Sync packet",
    "802.AS1, Ethernet, Delay_req packet",
    "PTP v2/802.AS1, any layer, any kind of event packet",
    "PTP v2/802.AS1, any layer, Sync packet",
    "PTP v2/802.AS1, any layer, Delay_req packet",
)
USAGE = (
    "\nusage: hwstamp_ctl [options]\n\n"
    " -h           prints this message and exits\n"
    " -i [device]  interface device to use, for example 'eth0' or 'bob:eth0'\n"
    " -r [0..14]   select receive time stamping:\n"
    + "".join(f"\t\t{i:2d} {text}\n" for i, text in enumerate(_FILTERS))
    + " -t [0|1]     disable or enable transmit time stamping\n"
    " -v           prints the software version and exits\n"
)


def _atoi(s: str) -> int:
    """atoi(): leading whitespace, a sign, digits; anything else ends it."""
    s = s.lstrip()
    n = 0
    sign = 1
    if s[:1] in "+-" and s:
        sign = -1 if s[0] == "-" else 1
        s = s[1:]
    for c in s:
        if not c.isdigit():
            break
        n = n * 10 + int(c)
    return sign * n


def main(host: str | None, argv: Sequence[str]) -> int:
    device: str | None = None
    rx: int | None = None
    tx: int | None = None
    args = list(argv)
    i = 0
    while i < len(args):
        a = args[i]
        if not a.startswith("-") or a == "-":
            break
        if a == "--":
            i += 1
            break
        j = 1
        while j < len(a):
            c = a[j]
            if c in "irt":
                val = a[j + 1 :]
                if not val:
                    i += 1
                    if i >= len(args):
                        err(f"hwstamp_ctl: option requires an argument -- '{c}'")
                        err(USAGE)
                        return 255
                    val = args[i]
                if c == "i":
                    device = val
                elif c == "r":
                    rx = _atoi(val)
                else:
                    tx = _atoi(val)
                break
            if c == "v":
                out("3.1.1 (stackemu)")
                return 0
            if c == "h":
                err(USAGE)
                return 0
            err(f"hwstamp_ctl: invalid option -- '{c}'")
            err(USAGE)
            return 255
        i += 1
    if device is None:
        err(USAGE)
        return 255
    if (rx is not None and not 0 <= rx <= HWTSTAMP_FILTER_PTP_V2_DELAY_REQ) or (
        tx is not None and not 0 <= tx <= HWTSTAMP_TX_ON
    ):
        err(USAGE)
        return 255

    host, dev = split_dev(device, host)
    code = 0
    tx_type = rx_filter = 0
    with Nic(host) as nic:
        cur: nic_pb2.GetTsInfoResponse = nic.call("GetTsInfo", nic_pb2.GetTsInfoRequest(device=dev))
        # A device without hardware time stamping has no SIOCGHWTSTAMP handler.
        get_errno = cur.errno or (E.EOPNOTSUPP if not cur.tx_types and not cur.rx_filters else 0)
        if get_errno == E.EOPNOTSUPP:
            err("Device driver does not have support for non-destructive SIOCGHWTSTAMP.")
        elif get_errno:
            err(f"SIOCGHWTSTAMP failed: {strerror(get_errno)}")
        else:
            tx_type, rx_filter = cur.tx_type, cur.rx_filter
            out(f"current settings:\ntx_type {tx_type}\nrx_filter {rx_filter}")
        code = get_errno
        if tx is None and rx is None:
            return code
        req = nic_pb2.SetHwTstampRequest(
            device=dev,
            tx_type=tx if tx is not None else tx_type,
            rx_filter=rx if rx is not None else rx_filter,
        )
        resp: nic_pb2.SetHwTstampResponse = nic.call("SetHwTstamp", req)
    if resp.errno:
        err(f"SIOCSHWTSTAMP failed: {strerror(resp.errno)}")
        if resp.errno == E.ERANGE:
            err("The requested time stamping mode is not supported by the hardware.")
        return resp.errno
    # The driver may widen the filter (a PTP filter to HWTSTAMP_FILTER_ALL): print what
    # it applied, as the ioctl hands the config back.
    out(f"new settings:\ntx_type {resp.tx_type}\nrx_filter {resp.rx_filter}")
    return 0
