import re
import shutil
import subprocess
from pathlib import Path

import pytest

from services.core.snmp import (
    ICMP_FIELDS,
    IP_FIELDS,
    SNMP4_IPEXTSTATS_LIST,
    SNMP4_UDP_LIST,
    MibGroup,
    SnmpMib,
    format_nstat,
    format_proc_net_netstat,
    format_proc_net_snmp,
    to_flat_dict,
)
from services.core.sysctl import Sysctl

PROC_NET_SNMP = Path("/proc/net/snmp")
PROC_NET_NETSTAT = Path("/proc/net/netstat")

DEFAULT_SNMP = (
    "Ip: Forwarding DefaultTTL InReceives InHdrErrors InAddrErrors ForwDatagrams "
    "InUnknownProtos InDiscards InDelivers OutRequests OutDiscards OutNoRoutes ReasmTimeout "
    "ReasmReqds ReasmOKs ReasmFails FragOKs FragFails FragCreates OutTransmits\n"
    "Ip: 2 64 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0\n"
    "Icmp: InMsgs InErrors InCsumErrors InDestUnreachs InTimeExcds InParmProbs InSrcQuenchs "
    "InRedirects InEchos InEchoReps InTimestamps InTimestampReps InAddrMasks InAddrMaskReps "
    "OutMsgs OutErrors OutRateLimitGlobal OutRateLimitHost OutDestUnreachs OutTimeExcds "
    "OutParmProbs OutSrcQuenchs OutRedirects OutEchos OutEchoReps OutTimestamps "
    "OutTimestampReps OutAddrMasks OutAddrMaskReps\n"
    "Icmp: 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0\n"
    "Udp: InDatagrams NoPorts InErrors OutDatagrams RcvbufErrors SndbufErrors InCsumErrors "
    "IgnoredMulti MemErrors\n"
    "Udp: 0 0 0 0 0 0 0 0 0\n"
    "UdpLite: InDatagrams NoPorts InErrors OutDatagrams RcvbufErrors SndbufErrors "
    "InCsumErrors IgnoredMulti MemErrors\n"
    "UdpLite: 0 0 0 0 0 0 0 0 0\n"
)


def test_field_lists() -> None:
    assert len(IP_FIELDS) == 20
    assert IP_FIELDS[:3] == ("Forwarding", "DefaultTTL", "InReceives")
    assert IP_FIELDS[-1] == "OutTransmits"
    assert len(ICMP_FIELDS) == 29
    assert SNMP4_UDP_LIST == (
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
    assert " ".join(SNMP4_IPEXTSTATS_LIST) == (
        "InNoRoutes InTruncatedPkts InMcastPkts OutMcastPkts InBcastPkts OutBcastPkts "
        "InOctets OutOctets InMcastOctets OutMcastOctets InBcastOctets OutBcastOctets "
        "InCsumErrors InNoECTPkts InECT1Pkts InECT0Pkts InCEPkts ReasmOverlaps"
    )


def test_default_proc_net_snmp() -> None:
    assert format_proc_net_snmp(SnmpMib()) == DEFAULT_SNMP


def test_counting() -> None:
    mib = SnmpMib()
    mib.udp.inc("InDatagrams")
    mib.udp.inc("InDatagrams", 2)
    mib.ipext.add("InOctets", 1500)
    mib.ip.inc("InReceives")
    assert mib.udp.get("InDatagrams") == 3
    assert mib.ipext.get("InOctets") == 1500
    assert mib.udp.as_dict() == {
        "InDatagrams": 3,
        "NoPorts": 0,
        "InErrors": 0,
        "OutDatagrams": 0,
        "RcvbufErrors": 0,
        "SndbufErrors": 0,
        "InCsumErrors": 0,
        "IgnoredMulti": 0,
        "MemErrors": 0,
    }
    assert mib.udplite.get("InDatagrams") == 0
    mib.udp.reset()
    assert mib.udp.get("InDatagrams") == 0


def test_unknown_counter_fails_loudly() -> None:
    mib = SnmpMib()
    with pytest.raises(KeyError, match="Udp has no counter 'InDatagram'"):
        mib.udp.inc("InDatagram")
    with pytest.raises(KeyError, match="IpExt has no counter 'InReceives'"):
        mib.ipext.get("InReceives")
    with pytest.raises(KeyError, match="Icmp has no counter 'InEchoes'"):
        mib.icmp.inc("InEchoes")
    with pytest.raises(KeyError):
        mib.icmpmsg.inc("InType256")
    with pytest.raises(KeyError):
        MibGroup("Udp", SNMP4_UDP_LIST).set("Bogus", 1)


def test_icmp_type_columns_are_icmpmsg_counters() -> None:
    mib = SnmpMib()
    mib.icmpmsg.inc_in(3)
    mib.icmp.inc("InDestUnreachs")
    mib.icmp.inc("OutEchoReps")
    mib.icmpmsg.inc_out(0)
    mib.icmp.inc("InMsgs", 2)
    assert mib.icmp.get("InDestUnreachs") == 2
    assert mib.icmpmsg.get("InType3") == 2
    assert mib.icmp.get("OutEchoReps") == 2
    assert mib.icmpmsg.as_dict() == {"InType3": 2, "OutType0": 2}
    assert mib.icmp.as_dict()["InMsgs"] == 2
    assert list(mib.icmp.as_dict()) == list(ICMP_FIELDS)
    with pytest.raises(ValueError):
        mib.icmpmsg.inc_in(256)
    with pytest.raises(ValueError):
        mib.icmpmsg.inc_out(-1)


def test_icmpmsg_lines_hold_16_types_each() -> None:
    mib = SnmpMib()
    for icmp_type in range(17):
        mib.icmpmsg.inc_in(icmp_type, icmp_type + 1)
    mib.icmpmsg.inc_out(3, 7)
    text = format_proc_net_snmp(mib)
    lines = [line for line in text.splitlines() if line.startswith("IcmpMsg:")]
    assert lines == [
        "IcmpMsg: " + " ".join(f"InType{t}" for t in range(16)),
        "IcmpMsg: " + " ".join(str(t + 1) for t in range(16)),
        "IcmpMsg: InType16 OutType3",
        "IcmpMsg: 17 7",
    ]
    assert text.index("Icmp: InMsgs") < text.index("IcmpMsg:") < text.index("Udp:")


def test_forwarding_and_ttl_follow_sysctl() -> None:
    mib = SnmpMib()
    sysctl = Sysctl({"net.ipv4.ip_default_ttl": "128", "net.ipv4.ip_forward": "1"})
    stop = mib.follow_sysctl(sysctl)
    assert (mib.ip.get("Forwarding"), mib.ip.get("DefaultTTL")) == (1, 128)
    sysctl.set("net.ipv4.ip_forward", "0")
    sysctl.set("net.ipv4.ip_default_ttl", "32")
    assert format_proc_net_snmp(mib).splitlines()[1].startswith("Ip: 2 32 0")
    stop()
    sysctl.set("net.ipv4.ip_forward", "5")
    assert mib.ip.get("Forwarding") == 2


def test_proc_net_netstat() -> None:
    mib = SnmpMib()
    mib.ipext.inc("InTruncatedPkts")
    mib.ipext.add("InOctets", 84)
    assert format_proc_net_netstat(mib) == (
        "IpExt: InNoRoutes InTruncatedPkts InMcastPkts OutMcastPkts InBcastPkts OutBcastPkts "
        "InOctets OutOctets InMcastOctets OutMcastOctets InBcastOctets OutBcastOctets "
        "InCsumErrors InNoECTPkts InECT1Pkts InECT0Pkts InCEPkts ReasmOverlaps\n"
        "IpExt: 0 1 0 0 0 0 84 0 0 0 0 0 0 0 0 0 0 0\n"
    )


def test_flat_dict() -> None:
    mib = SnmpMib()
    mib.udp.inc("InDatagrams", 5)
    mib.icmpmsg.inc_out(3)
    flat = to_flat_dict(mib)
    assert flat["UdpInDatagrams"] == 5
    assert flat["UdpLiteInDatagrams"] == 0
    assert flat["IpForwarding"] == 2
    assert flat["IpDefaultTTL"] == 64
    assert flat["IcmpOutDestUnreachs"] == 1
    assert flat["IcmpMsgOutType3"] == 1
    assert flat["IpExtInCsumErrors"] == 0
    assert "IcmpMsgInType3" not in flat
    assert len(flat) == 20 + 29 + 1 + 9 + 9 + 18
    assert list(flat)[:2] == ["IpForwarding", "IpDefaultTTL"]
    assert list(flat)[-1] == "IpExtReasmOverlaps"


def test_nstat_format() -> None:
    mib = SnmpMib()
    mib.ip.inc("InReceives", 2146)
    mib.icmp.inc("InMsgs")
    mib.icmpmsg.inc_in(3)
    mib.udp.inc("InDatagrams", 25)
    mib.ipext.add("InOctets", 71597992)
    assert format_nstat(mib) == (
        "#kernel\n"
        "IpInReceives                    2146               0.0\n"
        "IcmpInMsgs                      1                  0.0\n"
        "IcmpInDestUnreachs              1                  0.0\n"
        "IcmpMsgInType3                  1                  0.0\n"
        "UdpInDatagrams                  25                 0.0\n"
        "IpExtInOctets                   71597992           0.0\n"
    )
    with_zeros = format_nstat(mib, zeros=True).splitlines()
    assert with_zeros[1] == "IpInReceives                    2146               0.0"
    assert with_zeros[2] == "IpInHdrErrors                   0                  0.0"
    assert len(with_zeros) == 1 + 18 + 29 + 1 + 9 + 9 + 18
    assert not any(line.startswith(("IpForwarding", "IpDefaultTTL")) for line in with_zeros)


def _machine_icmpmsg_types(text: str) -> list[str]:
    headers = [line.split()[1:] for line in text.splitlines()[::2] if line.startswith("IcmpMsg:")]
    return [name for header in headers for name in header]


def _with_machine_icmpmsg(text: str) -> SnmpMib:
    mib = SnmpMib()
    for name in _machine_icmpmsg_types(text):
        mib.icmpmsg.inc(name)
    return mib


def _shape(text: str) -> list[str]:
    # Value lines with every number replaced, so only the layout is compared.
    return [re.sub(r"-?\d+", "N", line) if i % 2 else line for i, line in enumerate(text.split("\n"))]


@pytest.mark.skipif(not PROC_NET_SNMP.exists(), reason="no /proc/net/snmp")
def test_layout_matches_this_machines_proc_net_snmp() -> None:
    machine = PROC_NET_SNMP.read_text()
    without_tcp = "".join(line for line in machine.splitlines(True) if not line.startswith("Tcp:"))
    ours = format_proc_net_snmp(_with_machine_icmpmsg(machine))
    assert _shape(ours) == _shape(without_tcp)
    assert ours.endswith("\n") and machine.endswith("\n")


@pytest.mark.skipif(not PROC_NET_NETSTAT.exists(), reason="no /proc/net/netstat")
def test_layout_matches_this_machines_ipext() -> None:
    machine = PROC_NET_NETSTAT.read_text().splitlines(True)
    ipext = "".join(line for line in machine if line.startswith("IpExt:"))
    assert _shape(format_proc_net_netstat(SnmpMib())) == _shape(ipext)


@pytest.mark.skipif(shutil.which("nstat") is None, reason="iproute2's nstat is not installed")
def test_names_and_layout_match_this_machines_nstat() -> None:
    # -a: absolute values, no history; -s: do not write a history file; -z: zeros too.
    out = subprocess.run(["nstat", "-asz"], capture_output=True, text=True, check=True).stdout
    ours = format_nstat(_with_machine_icmpmsg(PROC_NET_SNMP.read_text()), zeros=True)
    ipv6 = ("Ip6", "Icmp6", "Udp6", "UdpLite6")
    theirs = [
        line
        for line in out.splitlines()
        if line.startswith(("Ip", "Icmp", "Udp")) and not line.startswith(ipv6)
    ]
    mine = ours.splitlines()
    assert mine[0] == out.splitlines()[0] == "#kernel"
    assert [line.split()[0] for line in mine[1:]] == [line.split()[0] for line in theirs]
    for line in theirs:
        name, value, rate = line.split()
        assert line == f"{name:<32}{int(value):<16}{float(rate):6.1f}"
