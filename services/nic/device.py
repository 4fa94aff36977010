"""struct net_device: the host's interfaces, their settings and their statistics."""

from __future__ import annotations

from dataclasses import dataclass, field

from services.core.netdev import LOOPBACK_IFINDEX
from services.nic.features import Features, ether_features, loopback_features
from services.nic.napi import Napi

# include/uapi/linux/if.h
IFF_UP = 0x1
IFF_BROADCAST = 0x2
IFF_LOOPBACK = 0x8
IFF_RUNNING = 0x40
IFF_NOARP = 0x80
IFF_PROMISC = 0x100
IFF_ALLMULTI = 0x200
IFF_MULTICAST = 0x1000
IFF_LOWER_UP = 0x10000

LOOPBACK_MTU = 65536  # drivers/net/loopback.c: dev->mtu = 64 * 1024
ETH_MTU = 1500
# ether_setup(): min_mtu ETH_MIN_MTU, max_mtu ETH_DATA_LEN; the emulated NIC takes
# jumbo frames up to 9000 as many drivers do.
ETH_MIN_MTU = 68
ETH_MAX_MTU = 9000
DEFAULT_TXQUEUELEN = 1000  # ether_setup(): DEFAULT_TX_QUEUE_LEN

# include/uapi/linux/net_tstamp.h
HWTSTAMP_TX_OFF = 0
HWTSTAMP_TX_ON = 1
HWTSTAMP_FILTER_NONE = 0
HWTSTAMP_FILTER_ALL = 1

# What a link is attached to.
KIND_LOOPBACK = "loopback"
KIND_WIRE = "wire"
KIND_TAP = "tap"
KIND_NONE = "none"


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
    rx_missed_errors: int = 0
    multicast: int = 0
    rx_nohandler: int = 0


@dataclass(slots=True)
class DriverStats:
    """The emulated driver's own counters, `ethtool -S` beyond rtnl_link_stats64."""

    rx_irqs: int = 0
    rx_napi_polls: int = 0
    rx_napi_complete: int = 0
    rx_mac_filtered: int = 0
    tx_csum_offload: int = 0
    tx_csum_sw: int = 0
    tx_gso_hw_segments: int = 0
    tx_gso_sw_segments: int = 0
    tx_hwtstamps: int = 0
    # netif_tx_stop_queue(): the qdisc found the TX ring full with skbs still queued.
    tx_ring_full: int = 0


@dataclass(slots=True)
class HwTstampConfig:
    """struct hwtstamp_config as SIOCSHWTSTAMP sets it."""

    tx_type: int = HWTSTAMP_TX_OFF
    rx_filter: int = HWTSTAMP_FILTER_NONE


@dataclass(slots=True)
class NetDevice:
    ifindex: int
    name: str
    mtu: int
    dev_addr: bytes
    flags: int
    carrier: bool
    txqueuelen: int
    features: Features
    kind: str = KIND_NONE
    stats: LinkStats = field(default_factory=LinkStats)
    driver: DriverStats = field(default_factory=DriverStats)
    hwtstamp: HwTstampConfig = field(default_factory=HwTstampConfig)
    # /sys/class/net/DEV/queues/rx-0/rps_cpus: CPUs RPS may steer to (0: RPS off).
    rps_cpus: int = 0
    # The RX ring, its IRQ and the NAPI instance; None for loopback, which has neither.
    napi: Napi | None = None
    # The CPU its IRQ is affine to (/proc/irq/N/smp_affinity), where its NAPI runs.
    irq_cpu: int = 0

    @property
    def is_loopback(self) -> bool:
        return bool(self.flags & IFF_LOOPBACK)

    @property
    def is_up(self) -> bool:
        return bool(self.flags & IFF_UP)

    @property
    def promisc(self) -> bool:
        return bool(self.flags & IFF_PROMISC)

    def oper_flags(self) -> int:
        """dev_get_flags(): IFF_RUNNING and IFF_LOWER_UP follow the carrier."""
        flags = self.flags & ~(IFF_RUNNING | IFF_LOWER_UP)
        if self.is_up and self.carrier:
            flags |= IFF_RUNNING | IFF_LOWER_UP
        return flags


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
        features=loopback_features(),
        kind=KIND_LOOPBACK,
    )


def ether_dev(ifindex: int, name: str, mac: bytes) -> NetDevice:
    """An Ethernet device as ether_setup() leaves it, administratively up, with its RX
    ring and NAPI. Until a link is attached it has no carrier (NO-CARRIER in `ip link`)."""
    return NetDevice(
        ifindex=ifindex,
        name=name,
        mtu=ETH_MTU,
        dev_addr=mac,
        flags=IFF_UP | IFF_BROADCAST | IFF_MULTICAST,
        carrier=False,
        txqueuelen=DEFAULT_TXQUEUELEN,
        features=ether_features(),
        napi=Napi(name, ifindex),
    )
