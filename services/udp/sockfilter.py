"""sk_filter: a socket's classic BPF program (SO_ATTACH_FILTER: sk_attach_filter,
__sk_filter_charge) and sk_filter_trim_cap() (net/core/filter.c), which runs it on a
datagram about to be queued, with skb->data at the UDP header, and drops or trims it
as the program answers."""

from __future__ import annotations

from services.core import bpf, errno
from services.core.netdev import LOOPBACK_IFINDEX
from services.core.skbuff import HEADER_UNSET, SkBuff
from services.core.wire.udp import UDP_HLEN

# include/uapi/linux/if_arp.h: skb->dev->type for SKF_AD_HATYPE.
ARPHRD_ETHER = 1
ARPHRD_LOOPBACK = 772


def sk_attach_filter(raw: bytes, old: bpf.BpfProg | None, omem_alloc: int, optmem_max: int) -> bpf.BpfProg:
    """sk_attach_filter(): the struct sock_filter array checked, converted and compiled
    (EINVAL for what the kernel refuses), then charged to sk_omem_alloc, which the old
    filter still holds while the new one is charged (ENOMEM past optmem_max). The
    caller puts the returned filter in place and moves the charge."""
    if len(raw) % bpf.SOCK_FILTER_LEN:
        raise errno.kernel_error(errno.EINVAL)
    prog = bpf.bpf_prepare_filter(bpf.parse_sock_filters(raw))
    if not bpf.sk_filter_charge_ok(omem_alloc, bpf.bpf_prog_size(prog.len), optmem_max):
        raise errno.kernel_error(errno.ENOMEM)
    return prog


def sk_filter_size(prog: bpf.BpfProg) -> int:
    """What a filter charges to sk_omem_alloc (bpf_prog_size of its eBPF length)."""
    return bpf.bpf_prog_size(prog.len)


def sk_filter_trim_cap(prog: bpf.BpfProg, skb: SkBuff, cap: int) -> bool:
    """sk_filter_trim_cap(): False to drop; else the skb is kept, trimmed to what the
    program returned (never below `cap` bytes)."""
    if skb.data_len:
        skb.linearize()
    mac = skb.mac_header if skb.mac_header != HEADER_UNSET else None
    iif = skb.skb_iif
    anc = bpf.AncillaryData(
        protocol=skb.protocol,
        pkt_type=skb.pkt_type,
        ifindex=iif,
        hatype=ARPHRD_LOOPBACK if iif == LOOPBACK_IFINDEX else ARPHRD_ETHER,
        mark=skb.mark,
        queue_mapping=skb.queue_mapping,
        hash=skb.hash,
        vlan_tci=skb.vlan_tci,
        # skb_get_poff(): the UDP payload, right after skb->data's header.
        pay_offset=UDP_HLEN,
    )
    res = bpf.run_filter(prog, skb.head, skb.data, skb.len, skb.network_header, mac, anc)
    keep = bpf.filter_verdict(res, skb.len, cap)
    if keep is None:
        return False
    skb.trim(keep)
    return True
