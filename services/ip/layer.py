"""A host's IPv4 layer without gRPC: ip_rcv → PRE_ROUTING → routing → ip_local_deliver
(defrag) → LOCAL_IN on receive, ip_forward → FORWARD on the way through, and
ip_send_skb → LOCAL_OUT → ip_output → POST_ROUTING → fragmentation on transmit.

Every path is written as the kernel's chain of NF_HOOK(hook, okfn) steps: a hook that
queues a packet to an NFQUEUE listener keeps the okfn and continues there when the
verdict comes. What the layer passes on is collected in `to_transport` (datagrams for
the UDP layer), `to_transport_err` (ICMP errors for it) and `to_device` (for the NIC);
the caller ships those lists as one batch each. `tx_done` gathers the socket memory of
the transport's skbs this layer freed (sock_wfree), with what the NIC reported, for the
transport: every drop of a charged skb on the way down gives its charge back there.
"""

from __future__ import annotations

import random
import time
from collections.abc import Iterable
from functools import partial

from services.core import errno
from services.core.dropreason import DropStats, SkbDropReason
from services.core.gso import GsoError, skb_gso_segment
from services.core.ipcb import IPSKB_FORWARDED, InetSkbParm, IpOptions, ipcb, set_ipcb
from services.core.netdev import NETIF_F_CSUM_MASK
from services.core.skbuff import PACKET_HOST, PACKET_OTHERHOST, PACKET_OUTGOING, IpCork, SkBuff
from services.core.snmp import SnmpMib
from services.core.sysctl import Sysctl
from services.core.trace import Tracer
from services.core.wire.ethernet import ETH_P_IP
from services.core.wire.icmp import (
    ICMP_DEST_UNREACH,
    ICMP_EXC_FRAGTIME,
    ICMP_EXC_TTL,
    ICMP_FRAG_NEEDED,
    ICMP_PARAMETERPROB,
    ICMP_PROT_UNREACH,
    ICMP_TIME_EXCEEDED,
)
from services.core.wire.ipv4 import (
    IP_DF,
    IPPROTO_ICMP,
    IPPROTO_UDP,
    IPPROTO_UDPLITE,
    Ipv4Packet,
    Ipv4Repr,
)
from services.core.wire.udp import UDP_HLEN
from services.core.wmem import TxCompletions
from services.ip.capture import BoundaryTaps
from services.ip.defrag import IP_DEFRAG_LOCAL_DELIVER, IpDefrag
from services.ip.fib import RTN_BROADCAST, RTN_LOCAL, RTN_MULTICAST, Fib, InIfaddr
from services.ip.fragment import FragNeeded, ip_fragment
from services.ip.icmp import Icmp
from services.ip.netfilter import (
    NF_INET_FORWARD,
    NF_INET_LOCAL_IN,
    NF_INET_LOCAL_OUT,
    NF_INET_POST_ROUTING,
    NF_INET_PRE_ROUTING,
    Netfilter,
)
from services.ip.options import (
    OptionsError,
    inet_addr_type,
    inet_current_timestamp,
    ip_options_build,
    ip_options_compile,
    ip_options_from_cork,
)
from services.ip.route import Router
from stackemu.skb.v1 import skb_pb2

# include/uapi/linux/in.h
IP_PMTUDISC_DONT = 0
IP_PMTUDISC_WANT = 1
IP_PMTUDISC_DO = 2
IP_PMTUDISC_PROBE = 3

IP_IDENTS_SZ = 2048  # net/ipv4/route.c

# IPSTATS_MIB_NOECTPKTS, ECT1PKTS, ECT0PKTS, CEPKTS indexed by the ECN field
# (INET_ECN_NOT_ECT 0, INET_ECN_ECT_1 1, INET_ECN_ECT_0 2, INET_ECN_CE 3).
_ECN_COUNTERS = ("InNoECTPkts", "InECT1Pkts", "InECT0Pkts", "InCEPkts")


class IpLayer:
    def __init__(self, hostname: str, sysctl: Sysctl) -> None:
        self.sysctl = sysctl
        self.fib = Fib()
        self.mib = SnmpMib()
        # Ip Forwarding and DefaultTTL are the sysctls, read as /proc prints them.
        self.mib.follow_sysctl(sysctl)
        self.router = Router(self.fib, self.mib, sysctl)
        self.drops = DropStats()
        self.trace = Tracer("ip", hostname)
        self.to_transport: list[SkBuff] = []
        self.to_transport_err: list[tuple[SkBuff, int, int, int]] = []
        self.to_device: list[SkBuff] = []
        self.tx_done = TxCompletions()
        # Taps at the boundary with UDP (stackemu tcpdump -i HOST:ip-udp).
        self.taps = BoundaryTaps()
        self.defrag = IpDefrag(sysctl, self.mib, self.drops)
        self.icmp = Icmp(sysctl, self.mib, self.drops, self.router, self.ip_send_skb, self._icmp_deliver_err)
        self._addr_type = partial(inet_addr_type, self.fib)
        self.nf = Netfilter(
            self.drops, lambda i: self.router.names.get(i, ""), self.icmp.icmp_send, self.trace
        )
        self.nf.free = self.tx_done.add
        # ip_idents_reserve(): a table of counters and last-use times keyed by a hash
        # of (daddr, saddr, protocol) under a per-boot random key.
        self._ip_id_key = random.getrandbits(64)
        self._idents = [random.getrandbits(16) for _ in range(IP_IDENTS_SZ)]
        self._ident_ts = [0] * IP_IDENTS_SZ

    def add_address(self, ifa: InIfaddr) -> None:
        self.fib.add_ifaddr(ifa, loopback=ifa.ifindex == self.fib.loopback_ifindex)

    def tx_completed(self, msgs: Iterable[skb_pb2.TxCompletion]) -> None:
        """What the NIC freed, for the transport. A datagram the qdisc refused is
        -ENOBUFS from ip_local_out, which ip_send_skb counts as OutDiscards."""
        enobufs = self.tx_done.merge(msgs)
        if enobufs:
            self.mib.ip.add("OutDiscards", enobufs)

    # Receive.

    def ip_rcv(self, skb: SkBuff) -> None:
        """ip_rcv_core() checks in the kernel's order, then NF_HOOK(PRE_ROUTING,
        ip_rcv_finish)."""
        self.trace(skb, "ip_rcv")
        mib = self.mib
        if skb.network_header != skb.data:
            # __netif_receive_skb_core() set it at data (skb_reset_network_header): a NIC
            # that says otherwise contradicts itself, and the skb is not used.
            self.drops.drop(SkbDropReason.NOT_SPECIFIED, "ip_rcv (network_header is not data)", skb=skb)
            return
        if skb.pkt_type == PACKET_OTHERHOST:
            self.drops.drop(SkbDropReason.OTHERHOST, "ip_rcv_core", skb=skb)
            return
        mib.ip.inc("InReceives")
        mib.ipext.inc("InOctets", skb.len)
        reason = SkbDropReason.IP_INHDR
        if not skb.may_pull(20):
            return self._inhdr_error(reason)
        pkt = Ipv4Packet(skb.linear())
        ihl = pkt.ihl
        if ihl < 5 or pkt.version != 4:
            return self._inhdr_error(reason)
        # ip_rcv_core(): IPSTATS_MIB_NOECTPKTS + (tos & INET_ECN_MASK), counted before the
        # full header is pulled, per segment of a GRO skb.
        mib.ipext.add(_ECN_COUNTERS[pkt.tos & 3], max(1, skb.gso_segs))
        if not skb.may_pull(ihl * 4):
            return self._inhdr_error(reason)
        if not pkt.verify_checksum():
            mib.ipext.inc("InCsumErrors")
            return self._inhdr_error(SkbDropReason.IP_CSUM)
        tot_len = pkt.total_len
        if skb.len < tot_len:
            mib.ipext.inc("InTruncatedPkts")
            self.drops.drop(SkbDropReason.PKT_TOO_SMALL, "ip_rcv_core", skb=skb)
            return
        if tot_len < ihl * 4:
            return self._inhdr_error(reason)
        # pskb_trim_rcsum(): Ethernet padding past tot_len goes.
        skb.trim(tot_len)
        skb.transport_header = skb.network_header + ihl * 4
        # ip_rcv_core(): memset(IPCB(skb), 0, ...); IPCB(skb)->iif = skb->skb_iif.
        iif = skb.skb_iif or skb.dev_ifindex
        skb.skb_iif = iif
        set_ipcb(skb.cb, InetSkbParm(iif=iif))
        self.nf.nf_hook(NF_INET_PRE_ROUTING, skb, iif, 0, self._ip_rcv_finish)

    def _inhdr_error(self, reason: SkbDropReason, where: str = "ip_rcv_core") -> None:
        self.mib.ip.inc("InHdrErrors")
        self.drops.drop(reason, where)

    def _ip_rcv_finish(self, skb: SkBuff) -> None:
        """ip_rcv_finish_core(): the input route (ip_route_input_noref), then the options
        (ip_rcv_options), then dst_input: ip_local_deliver or ip_forward."""
        pkt = Ipv4Packet(skb.linear())
        iif = skb.skb_iif
        if skb.dst is not None:
            # skb_valid_dst(): a packet looped back through lo keeps the route it was
            # sent with, and ip_route_input_noref() is skipped.
            rt_type, dst = skb.dst.rt_type, skb.dst
            spec_dst = self.router.spec_dst(pkt.dst, pkt.src, iif, pkt.tos, dst.flags)
        else:
            rt = self.router.route_input(pkt.dst, pkt.src, iif, pkt.tos, skb.mark)
            if rt.error or rt.dst is None:
                # ip_error() (or the martian checks of ip_route_input_slow): its
                # counter, drop reason and, on a forwarding host, the ICMP it sends
                # about the packet (icmp_send reads the error route in skb_dst).
                if rt.counter == "InAddrErrors":
                    self.mib.ip.inc(rt.counter)
                elif rt.counter == "InNoRoutes":
                    self.mib.ipext.inc(rt.counter)
                skb.dst = rt.dst
                if rt.icmp is not None and rt.dst is not None:
                    self.icmp.icmp_send(skb, rt.icmp[0], rt.icmp[1], 0)
                # An unroutable destination gets an error route whose input is
                # ip_error(); a martian fails ip_route_input_noref() itself.
                where = "ip_error" if rt.counter else "ip_rcv_finish_core"
                self.drops.drop(rt.reason, where, skb=skb)
                return
            rt_type, dst, spec_dst = rt.type, rt.dst, rt.spec_dst
            skb.dst = dst
        parm = ipcb(skb.cb)
        parm.spec_dst = spec_dst
        if pkt.ihl > 5 and not self._ip_rcv_options(skb, parm, spec_dst):
            return
        set_ipcb(skb.cb, parm)
        if rt_type == RTN_MULTICAST:
            # ip_rcv_finish_core(): IP_UPD_PO_STATS(IPSTATS_MIB_INMCAST, skb->len).
            self.mib.ipext.inc("InMcastPkts")
            self.mib.ipext.add("InMcastOctets", skb.len)
        elif rt_type == RTN_BROADCAST:
            # ip_rcv_finish_core(): IP_UPD_PO_STATS(IPSTATS_MIB_INBCAST, skb->len).
            self.mib.ipext.inc("InBcastPkts")
            self.mib.ipext.add("InBcastOctets", skb.len)
        if rt_type in (RTN_LOCAL, RTN_BROADCAST, RTN_MULTICAST):
            # ip_route_input_mc() gives a group the host joined ip_local_deliver too.
            self._ip_local_deliver(skb)
        else:
            self._ip_forward(skb)

    def _ip_rcv_options(self, skb: SkBuff, parm: InetSkbParm, spec_dst: int) -> bool:
        """ip_rcv_options(): compile the options in place (record route and timestamp get
        our address); an error is a parameter problem pointing at the bad octet. A source
        route is dropped: conf.*.accept_source_route is 0, so IN_DEV_SOURCE_ROUTE fails."""
        hdr = memoryview(skb.head)[skb.data : skb.data + (skb.head[skb.data] & 0x0F) * 4]
        opt = IpOptions(optlen=len(hdr) - 20)
        try:
            ip_options_compile(hdr, opt, local_addr=spec_dst, addr_type=self._addr_type)
        except OptionsError as err:
            # The kernel compiles into IPCB itself: the parameter problem echoes what
            # was compiled before the bad octet.
            parm.opt = opt
            set_ipcb(skb.cb, parm)
            self.icmp.icmp_send(skb, ICMP_PARAMETERPROB, 0, err.info)
            self._inhdr_error(SkbDropReason.IP_INHDR, "ip_rcv_options")
            return False
        if opt.srr:
            self.drops.drop(SkbDropReason.NOT_SPECIFIED, "ip_rcv_options", skb=skb)
            return False
        parm.opt = opt
        return True

    def _ip_local_deliver(self, skb: SkBuff) -> None:
        """ip_local_deliver(): reassemble, then NF_HOOK(LOCAL_IN, ip_local_deliver_finish)."""
        self.trace(skb, "ip_local_deliver")
        pkt = Ipv4Packet(skb.linear())
        if pkt.more_frags or pkt.frag_offset:
            whole = self.defrag.ip_defrag(skb, IP_DEFRAG_LOCAL_DELIVER)
            if whole is None:
                return
            skb = whole
            skb.transport_header = skb.network_header + (skb.head[skb.data] & 0x0F) * 4
        self.nf.nf_hook(NF_INET_LOCAL_IN, skb, skb.skb_iif, 0, self._ip_local_deliver_finish)

    def _ip_local_deliver_finish(self, skb: SkBuff) -> None:
        """ip_local_deliver_finish() → ip_protocol_deliver_rcu(). UDP-Lite goes to the
        transport like UDP: inet_protos[IPPROTO_UDPLITE] is udplite_protocol, whose
        handler (udplite_rcv → __udp4_lib_rcv) is UDP's, in the same service here."""
        protocol = skb.head[skb.network_header + 9]
        skb.pull(skb.transport_header - skb.data)
        if protocol in (IPPROTO_UDP, IPPROTO_UDPLITE):
            self.mib.ip.inc("InDelivers")
            if self.taps:
                self.taps.deliver(skb, skb.pkt_type, skb.skb_iif)
            self.to_transport.append(skb)
            return
        if protocol == IPPROTO_ICMP:
            self.icmp.icmp_rcv(skb)
            self.mib.ip.inc("InDelivers")
            return
        # No handler and no raw socket: protocol unreachable.
        self.mib.ip.inc("InUnknownProtos")
        self.icmp.icmp_send(skb, ICMP_DEST_UNREACH, ICMP_PROT_UNREACH, 0)
        self.drops.drop(SkbDropReason.IP_NOPROTO, "ip_protocol_deliver_rcu", skb=skb)

    def _icmp_deliver_err(self, skb: SkBuff, icmp_type: int, code: int, info: int) -> None:
        """icmp_socket_deliver(): hand an ICMP error to the quoted protocol's err_handler.
        ipv4_sk_update_pmtu() of udp_err runs here, where the routes are: a
        fragmentation-needed lowers the path MTU towards the quoted destination."""
        inner = skb.head[skb.data : skb.data + 20]
        protocol, daddr = inner[9], int.from_bytes(inner[16:20], "big")
        if icmp_type == ICMP_DEST_UNREACH and code == ICMP_FRAG_NEEDED and info:
            self.router.update_pmtu(daddr, info)
        # udp_err and udplite_err are both __udp4_lib_err.
        if protocol in (IPPROTO_UDP, IPPROTO_UDPLITE):
            self.to_transport_err.append((skb, icmp_type, code, info))

    def icmp_send(self, skb: SkBuff, icmp_type: int, code: int, info: int) -> None:
        """icmp_send() on behalf of the layer above (__udp4_lib_rcv's port unreachable)."""
        self.icmp.icmp_send(skb, icmp_type, code, info)

    # Forwarding.

    def _ip_forward(self, skb: SkBuff) -> None:
        """ip_forward(): TTL, the path MTU, then NF_HOOK(FORWARD, ip_forward_finish)."""
        self.trace(skb, "ip_forward")
        if skb.pkt_type != PACKET_HOST:
            self.drops.drop(SkbDropReason.OTHERHOST, "ip_forward", skb=skb)
            return
        pkt = Ipv4Packet(skb.linear())
        if pkt.ttl <= 1:
            # too_many_hops: IPSTATS_MIB_INHDRERRORS and time exceeded in transit.
            self.icmp.icmp_send(skb, ICMP_TIME_EXCEEDED, ICMP_EXC_TTL, 0)
            self._inhdr_error(SkbDropReason.IP_INHDR, "ip_forward")
            return
        dst = skb.dst
        assert dst is not None
        parm = ipcb(skb.cb)
        # ip_exceeds_mtu(): a DF packet too big for the next hop is refused.
        if skb.len > dst.mtu and pkt.frag_off & IP_DF and not skb.ignore_df and not skb.gso_size:
            self.mib.ip.inc("FragFails")
            self.icmp.icmp_send(skb, ICMP_DEST_UNREACH, ICMP_FRAG_NEEDED, dst.mtu)
            self.drops.drop(SkbDropReason.PKT_TOO_BIG, "ip_forward", skb=skb)
            return
        pkt.decrease_ttl()
        parm.flags |= IPSKB_FORWARDED
        set_ipcb(skb.cb, parm)
        self.nf.nf_hook(NF_INET_FORWARD, skb, skb.skb_iif, dst.ifindex, self._ip_forward_finish)

    def _ip_forward_finish(self, skb: SkBuff) -> None:
        """ip_forward_finish(): IPSTATS_MIB_OUTFORWDATAGRAMS, then dst_output."""
        self.mib.ip.inc("ForwDatagrams")
        self._ip_output(skb)

    # Transmit.

    def ip_send_skb(self, skb: SkBuff) -> None:
        """__ip_make_skb() + ip_send_skb(): put the IP header in front of the transport
        segment at skb.data, using the cork from udp_sendmsg and the route in dst."""
        cork, dst = skb.cork, skb.dst
        if cork is None or dst is None:
            self.mib.ip.inc("OutDiscards")
            self.drops.drop(SkbDropReason.NOT_SPECIFIED, "ip_send_skb")
            self.tx_done.add(skb)
            return
        self.trace(skb, "ip_send_skb")
        daddr, options = cork.daddr, b""
        opt: IpOptions | None = None
        if cork.options:
            # The socket's IP_OPTIONS, an IP_RETOPTS cmsg or an ICMP reply's echoed
            # options; a source route sends the packet to its first hop (opt->faddr).
            try:
                opt = ip_options_from_cork(skb.cb, cork.options, addr_type=self._addr_type)
            except OSError:
                # Options ip_options_build() cannot fill in: the kernel never gets such
                # a cork (ip_options_get refused them with EINVAL); it is dropped.
                self.mib.ip.inc("OutDiscards")
                self.drops.drop(SkbDropReason.NOT_SPECIFIED, "ip_send_skb")
                self.tx_done.add(skb)
                return
            options = opt.data
            if opt.srr:
                daddr = opt.faddr
        total = skb.len + 20 + len(options)
        mtu = dst.mtu
        # __ip_make_skb(): DF when the socket does PMTU discovery and the datagram fits.
        df = cork.pmtudisc in (IP_PMTUDISC_DO, IP_PMTUDISC_PROBE) or (
            total <= mtu and cork.pmtudisc == IP_PMTUDISC_WANT
        )
        skb.ignore_df = cork.pmtudisc < IP_PMTUDISC_DO
        ttl = cork.ttl or self.sysctl.get_int("net.ipv4.ip_default_ttl")
        ident = self._ip_select_ident(cork, df and not skb.ignore_df)
        hdr = Ipv4Repr(
            src=cork.saddr,
            dst=daddr,
            protocol=cork.protocol,
            payload_len=skb.len,
            ttl=ttl,
            tos=cork.tos,
            ident=ident,
            dont_frag=df,
            options=options,
        )
        hdr.emit(skb.push(hdr.header_len))
        skb.reset_network_header()
        if opt is not None:
            # ip_options_build(): record route and timestamp take our address and time;
            # the options stay in IPCB for fragmentation.
            header = memoryview(skb.head)[skb.data : skb.data + hdr.header_len]
            ip_options_build(header, opt, cork.daddr, cork.saddr, inet_current_timestamp())
            Ipv4Packet(header).fill_checksum()
            parm = ipcb(skb.cb)
            parm.opt = opt
            set_ipcb(skb.cb, parm)
        skb.protocol = ETH_P_IP
        if self.taps:
            self.taps.deliver(skb, PACKET_OUTGOING, dst.ifindex)
        if self._ip_local_out(skb) < 0:
            # ip_send_skb(): an error from the way down (a netfilter DROP's -EPERM,
            # ip_fragment's -EMSGSIZE) is IPSTATS_MIB_OUTDISCARDS. A qdisc's
            # NET_XMIT_DROP comes back later from the NIC (tx_completed).
            self.mib.ip.inc("OutDiscards")

    def _ip_select_ident(self, cork: IpCork, strict_df: bool, segs: int = 1) -> int:
        """ip_select_ident_segs(): a connected socket's own counter (advanced by the UDP
        layer, which owns the socket); 0 for a DF packet that may not be fragmented; else
        __ip_select_ident(): a counter picked by hashing (daddr, saddr, protocol) under a
        per-boot key, advanced by a random amount when time has passed (ip_idents_reserve)."""
        if cork.inet_id is not None:
            return cork.inet_id & 0xFFFF
        if strict_df:
            return 0
        bucket = hash((cork.daddr, cork.saddr, cork.protocol, self._ip_id_key)) % IP_IDENTS_SZ
        now = time.monotonic_ns() // 1_000_000
        old = self._ident_ts[bucket]
        delta = random.randrange(now - old) if old and now > old else 0
        self._ident_ts[bucket] = now
        ident = (self._idents[bucket] + delta) & 0xFFFF
        self._idents[bucket] = (ident + segs) & 0xFFFF
        return ident

    def _ip_local_out(self, skb: SkBuff) -> int:
        """__ip_local_out() (the header's tot_len and checksum are final) →
        NF_HOOK(LOCAL_OUT, dst_output): 0 or the -errno of the way down."""
        self.trace(skb, "ip_local_out")
        self.mib.ip.inc("OutRequests")
        dst = skb.dst
        assert dst is not None
        return self.nf.nf_hook(NF_INET_LOCAL_OUT, skb, 0, dst.ifindex, self._ip_output)

    def _ip_output(self, skb: SkBuff) -> int:
        """ip_output() → NF_HOOK(POST_ROUTING, ip_finish_output)."""
        self.trace(skb, "ip_output")
        dst = skb.dst
        assert dst is not None
        return self.nf.nf_hook(NF_INET_POST_ROUTING, skb, 0, dst.ifindex, self._ip_finish_output)

    def _ip_finish_output(self, skb: SkBuff) -> int:
        """__ip_finish_output(): a GSO skb goes to ip_finish_output_gso; what exceeds
        the route's MTU is fragmented (ip_do_fragment finishes a CHECKSUM_PARTIAL
        checksum first)."""
        dst = skb.dst
        assert dst is not None
        if skb.gso_size:
            return self._ip_finish_output_gso(skb, dst.mtu)
        if skb.len <= dst.mtu:
            self._ip_finish_output2(skb)
            return 0
        return self._ip_fragment(skb, dst.mtu)

    def _ip_fragment(self, skb: SkBuff, mtu: int) -> int:
        try:
            frags = ip_fragment(skb, mtu, self.mib, self.drops)
        except FragNeeded as err:
            # ip_fragment() counted FragFails and the drop.
            self.icmp.icmp_send(skb, ICMP_DEST_UNREACH, ICMP_FRAG_NEEDED, err.mtu)
            self.tx_done.add(skb)
            return -errno.EMSGSIZE
        if not frags:
            # ip_do_fragment() failed (and counted) before cutting anything: the
            # checksum could not be finished (skb_checksum_help's -EINVAL).
            self.tx_done.add(skb)
            return -errno.EINVAL
        for frag in frags:
            self._ip_finish_output2(frag)
        return 0

    def _ip_finish_output_gso(self, skb: SkBuff, mtu: int) -> int:
        """ip_finish_output_gso(): a GSO skb whose segments fit the MTU goes whole, for
        the device (or validate_xmit_skb) to segment; else (the route's MTU shrank
        under the sender) it is segmented here with the device's features less GSO,
        and each segment goes through ip_fragment (DF refuses it)."""
        hlen = (skb.head[skb.data] & 0x0F) << 2
        # skb_gso_validate_network_len(): the network header, the UDP header (the
        # transport "header length" of SKB_GSO_UDP_L4) and gso_size.
        if hlen + UDP_HLEN + skb.gso_size <= mtu:
            self._ip_finish_output2(skb)
            return 0
        dst = skb.dst
        assert dst is not None
        try:
            segs = skb_gso_segment(skb, hw_csum=bool(dst.dev_features & NETIF_F_CSUM_MASK))
        except GsoError:
            # IS_ERR_OR_NULL(segs): kfree_skb, -ENOMEM.
            self.drops.drop(SkbDropReason.NOT_SPECIFIED, "ip_finish_output_gso", skb=skb)
            self.tx_done.add(skb)
            return -errno.ENOMEM
        # consume_skb(skb): the segments own what it owed its socket, once.
        segs[0].wmem, skb.wmem = skb.wmem, 0
        ret = 0
        for seg in segs:
            # Every segment, even a last one that fits: ip_fragment() cuts it into one
            # fragment, or refuses it for DF; the first error is the answer.
            err = self._ip_fragment(seg, mtu)
            ret = ret or err
        return ret

    def _ip_finish_output2(self, skb: SkBuff) -> None:
        """ip_finish_output2(): counted as transmitted, handed to the neighbour/device."""
        dst = skb.dst
        assert dst is not None
        if dst.rt_type == RTN_BROADCAST:
            self.mib.ipext.inc("OutBcastPkts")
            self.mib.ipext.add("OutBcastOctets", skb.len)
        # IPSTATS_MIB_OUTOCTETS with OUTTRANSMITS, per fragment: on 6.18 a packet that
        # netfilter drops in OUTPUT or POSTROUTING counts no octets, and a 3000-byte
        # send cut in three counts 3068.
        self.mib.ip.inc("OutTransmits")
        self.mib.ipext.add("OutOctets", skb.len)
        self.to_device.append(skb)

    def expire_frags(self) -> None:
        """ip_expire(): time out reassembly queues; one whose first fragment came gets
        ICMP time exceeded (fragment reassembly time exceeded) sent back."""
        for first in self.defrag.expire():
            self.icmp.icmp_send(first, ICMP_TIME_EXCEEDED, ICMP_EXC_FRAGTIME, 0)
