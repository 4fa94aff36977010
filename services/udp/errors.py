"""ICMP errors and the UDP socket (net/ipv4/udp.c __udp4_lib_err): the error an ICMP
message brings reaches the socket that sent the datagram it quotes."""

from __future__ import annotations

from dataclasses import dataclass

from services.core import errno
from services.core.skbuff import SkBuff
from services.core.snmp import SnmpMib
from services.core.wire.icmp import (
    ICMP_DEST_UNREACH,
    ICMP_ERR_CONVERT,
    ICMP_FRAG_NEEDED,
    ICMP_PARAMETERPROB,
    ICMP_REDIRECT,
    ICMP_SOURCE_QUENCH,
    NR_ICMP_UNREACH,
)
from services.core.wire.ipv4 import IPPROTO_UDP, Ipv4Packet
from services.core.wire.udp import UDP_HLEN, UdpPacket
from services.ip import sockglue
from services.ip.cork import IPV4_HLEN
from services.ip.sockglue import IP_PMTUDISC_DONT
from services.udp.sock import TCP_ESTABLISHED
from services.udp.table import UdpTable


@dataclass(slots=True)
class IcmpError:
    """An ICMP error and the packet it is about, as ip.v1.IcmpError carries it.

    Towards IP (icmp_send): the received datagram, its IP header at network_header,
    data at the UDP header as udp_rcv had it. From IP (the err_handler, udp_err): the
    ICMP message, its outer IP header at network_header, the ICMP header at
    transport_header, data at the quoted IP header, IPCB in cb."""

    skb: SkBuff
    type: int
    code: int
    info: int = 0


class UdpErr:
    """udp_err() for UdpLayer (which provides these attributes)."""

    tables: dict[int, UdpTable]
    mib: SnmpMib

    def udp_err(self, err: IcmpError) -> None:
        """__udp4_lib_err(): an ICMP error about a datagram sent from here reaches the
        socket that sent it (looked up by the quoted headers, reversed): its sk_err, and
        with IP_RECVERR an entry on its error queue."""
        skb = err.skb
        quoted = skb.linear()
        if len(quoted) < IPV4_HLEN or len(quoted) < (quoted[0] & 0x0F) * 4 + UDP_HLEN:
            # icmp_socket_deliver() pulls the quoted headers before calling us.
            return
        iph = Ipv4Packet(quoted)
        uh = UdpPacket(quoted[iph.ihl * 4 :])
        table = self.tables.get(iph.protocol, self.tables[IPPROTO_UDP])
        s = table.lookup(iph.dst, uh.dst_port, iph.src, uh.src_port, skb.skb_iif)
        if s is None:
            # No socket: the kernel counts ICMP_MIB_INERRORS (IcmpInErrors, IP's MIB).
            self.mib.icmp.inc("InErrors")
            return
        harderr = False
        if err.type == ICMP_SOURCE_QUENCH or err.type == ICMP_REDIRECT:
            # Ignored (a redirect updates the route, which is IP's).
            return
        if err.type == ICMP_PARAMETERPROB:
            eno, harderr = errno.EPROTO, True
        elif err.type == ICMP_DEST_UNREACH:
            if err.code == ICMP_FRAG_NEEDED:
                # Path MTU discovery: the route's new MTU is IP's to learn
                # (ipv4_sk_update_pmtu); the socket hears of it unless it never sets DF.
                if s.inet.pmtudisc == IP_PMTUDISC_DONT:
                    return
                eno, harderr = errno.EMSGSIZE, True
            elif err.code <= NR_ICMP_UNREACH:
                eno, harderr = ICMP_ERR_CONVERT[err.code]
            else:
                eno = errno.EHOSTUNREACH
        else:
            # ICMP_TIME_EXCEEDED and any other type.
            eno = errno.EHOSTUNREACH
        # RFC 1122 4.1.3.3: errors are passed back to the application.
        if not s.inet.recverr:
            if not harderr or s.state != TCP_ESTABLISHED:
                return
        else:
            serr = sockglue.ip_icmp_error(
                skb, eno, err.type, err.code, uh.dst_port, err.info, s.inet.recverr_rfc4884
            )
            if serr is not None:
                s.queue_err_skb(serr)
        s.sk_err = eno
        s.error_report()
