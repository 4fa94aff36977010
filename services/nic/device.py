"""struct net_device: the host's interfaces and their statistics."""

from __future__ import annotations

from dataclasses import dataclass, field

# include/uapi/linux/if.h
IFF_UP = 0x1
IFF_BROADCAST = 0x2
IFF_LOOPBACK = 0x8
IFF_RUNNING = 0x40
IFF_NOARP = 0x80
IFF_PROMISC = 0x100
IFF_MULTICAST = 0x1000
IFF_LOWER_UP = 0x10000

LOOPBACK_IFINDEX = 1
LOOPBACK_MTU = 65536  # drivers/net/loopback.c: dev->mtu = 64 * 1024
ETH_MTU = 1500
DEFAULT_TXQUEUELEN = 1000  # ether_setup(): DEFAULT_TX_QUEUE_LEN


@dataclass(slots=True)
class LinkStats:
    """struct rtnl_link_stats64, the fields the emulator counts."""

    rx_packets: int = 0
    tx_packets: int = 0
    rx_bytes: int = 0
    tx_bytes: int = 0
    rx_errors: int = 0
    tx_errors: int = 0
    rx_dropped: int = 0
    tx_dropped: int = 0
    tx_carrier_errors: int = 0


@dataclass(slots=True)
class NetDevice:
    ifindex: int
    name: str
    mtu: int
    dev_addr: bytes
    flags: int
    carrier: bool
    txqueuelen: int
    stats: LinkStats = field(default_factory=LinkStats)

    @property
    def is_loopback(self) -> bool:
        return bool(self.flags & IFF_LOOPBACK)

    @property
    def is_up(self) -> bool:
        return bool(self.flags & IFF_UP)


def loopback_dev() -> NetDevice:
    """loopback_setup(): lo is always ifindex 1, up, running, no ARP, address all zero."""
    return NetDevice(
        ifindex=LOOPBACK_IFINDEX,
        name="lo",
        mtu=LOOPBACK_MTU,
        dev_addr=bytes(6),
        flags=IFF_UP | IFF_LOOPBACK | IFF_RUNNING | IFF_LOWER_UP,
        carrier=True,
        txqueuelen=DEFAULT_TXQUEUELEN,
    )


def ether_dev(ifindex: int, name: str, mac: bytes) -> NetDevice:
    """An Ethernet device as ether_setup() leaves it, administratively up. Until a link
    is attached it has no carrier (NO-CARRIER in `ip link`)."""
    return NetDevice(
        ifindex=ifindex,
        name=name,
        mtu=ETH_MTU,
        dev_addr=mac,
        flags=IFF_UP | IFF_BROADCAST | IFF_MULTICAST,
        carrier=False,
        txqueuelen=DEFAULT_TXQUEUELEN,
    )
