"""netdev features (include/linux/netdev_features.h) as ethtool -k/-K shows and sets them.

A device keeps what the user asked for (dev->wanted_features) apart from what is in
force (dev->features): netdev_fix_features() turns off features whose prerequisites are
off and turns them back on when the prerequisite returns, as `ethtool -K eth0 tx off`
then `tx on` shows on a veth of this machine (tx-udp-segmentation goes "off [requested
on]", then back on).
"""

from __future__ import annotations

from dataclasses import dataclass

from services.core.netdev import (
    NETIF_F_GRO,
    NETIF_F_GRO_FRAGLIST,
    NETIF_F_GRO_UDP_FWD,
    NETIF_F_GSO,
    NETIF_F_GSO_UDP_L4,
    NETIF_F_HW_CSUM,
    NETIF_F_LOOPBACK,
    NETIF_F_RXCSUM,
    NETIF_F_SG,
)

# Feature strings (net/ethtool/common.c netdev_features_strings), the ones the emulated
# devices model.
RX_CHECKSUM = "rx-checksum"
TX_CSUM = "tx-checksum-ip-generic"
TX_SG = "tx-scatter-gather"
TX_GSO = "tx-generic-segmentation"
TX_UDP_SEG = "tx-udp-segmentation"
RX_GRO = "rx-gro"
RX_UDP_GRO_FWD = "rx-udp-gro-forwarding"
RX_GRO_LIST = "rx-gro-list"
LOOPBACK = "loopback"

# netdev_features_strings[]: each feature string is the name of one NETIF_F_* bit.
FEATURE_BITS: dict[str, int] = {
    RX_CHECKSUM: NETIF_F_RXCSUM,
    TX_CSUM: NETIF_F_HW_CSUM,
    TX_SG: NETIF_F_SG,
    TX_GSO: NETIF_F_GSO,
    TX_UDP_SEG: NETIF_F_GSO_UDP_L4,
    RX_GRO: NETIF_F_GRO,
    RX_UDP_GRO_FWD: NETIF_F_GRO_UDP_FWD,
    RX_GRO_LIST: NETIF_F_GRO_FRAGLIST,
    LOOPBACK: NETIF_F_LOOPBACK,
}

# ethtool's old names and group names (ethtool.c off_flag_def) → the feature strings
# they switch.
ALIASES: dict[str, tuple[str, ...]] = {
    "rx": (RX_CHECKSUM,),
    "rx-checksumming": (RX_CHECKSUM,),
    "tx": (TX_CSUM,),
    "tx-checksumming": (TX_CSUM,),
    "sg": (TX_SG,),
    "scatter-gather": (TX_SG,),
    "gso": (TX_GSO,),
    "generic-segmentation-offload": (TX_GSO,),
    "gro": (RX_GRO,),
    "generic-receive-offload": (RX_GRO,),
}

# The order and grouping `ethtool -k` prints: (display name, member feature strings).
DISPLAY: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("rx-checksumming", (RX_CHECKSUM,)),
    ("tx-checksumming", (TX_CSUM,)),
    ("scatter-gather", (TX_SG,)),
    ("generic-segmentation-offload", (TX_GSO,)),
    ("generic-receive-offload", (RX_GRO,)),
    ("tx-udp-segmentation", (TX_UDP_SEG,)),
    ("loopback", (LOOPBACK,)),
    ("rx-gro-list", (RX_GRO_LIST,)),
    ("rx-udp-gro-forwarding", (RX_UDP_GRO_FWD,)),
)


@dataclass(frozen=True, slots=True)
class FeatureState:
    name: str
    active: bool
    changeable: bool


class Features:
    def __init__(self, hw: set[str], wanted: set[str], fixed_on: set[str] | None = None) -> None:
        # dev->hw_features: what the user may change; fixed_on: always on ([fixed]).
        self.hw = set(hw)
        self.fixed_on = set(fixed_on or ())
        self.wanted = (set(wanted) & self.hw) | self.fixed_on
        self.active: set[str] = set()
        self.fix()

    def fix(self) -> None:
        """netdev_fix_features() over the wanted set."""
        f = set(self.wanted)
        if TX_CSUM not in f:
            # What this kernel does: without checksum offload UDP segmentation is
            # dropped ("tx-udp-segmentation: off [requested on]").
            f.discard(TX_UDP_SEG)
        if TX_SG not in f:
            # "Dropping NETIF_F_GSO since no SG feature."
            f.discard(TX_GSO)
        self.active = f

    def __contains__(self, name: str) -> bool:
        return name in self.active

    def mask(self) -> int:
        """dev->features: the active features as NETIF_F_* bits."""
        bits = 0
        for name in self.active:
            bits |= FEATURE_BITS[name]
        return bits

    def set(self, changes: dict[str, bool]) -> str | None:
        """ethtool -K: apply changes by any ethtool name; an error message for an
        unknown name or a fixed feature (ethtool refuses both before asking the kernel)."""
        resolved: list[tuple[str, bool]] = []
        for name, on in changes.items():
            for feat in ALIASES.get(name, (name,)):
                if feat not in self.hw and feat not in {n for _, m in DISPLAY for n in m}:
                    return f"unknown feature {name!r}"
                if feat not in self.hw:
                    if on == (feat in self.active):
                        continue  # asking a fixed feature for its value is a no-op
                    return f"feature {name!r} is fixed {'on' if feat in self.active else 'off'}"
                resolved.append((feat, on))
        for feat, on in resolved:
            if on:
                self.wanted.add(feat)
            else:
                self.wanted.discard(feat)
        self.fix()
        return None

    def show(self) -> list[FeatureState]:
        """ethtool -k lines: a group is on when all its members are, changeable when any is."""
        out = []
        for display, members in DISPLAY:
            out.append(
                FeatureState(
                    display,
                    all(m in self.active for m in members),
                    any(m in self.hw for m in members),
                )
            )
        return out


def ether_features() -> Features:
    """The emulated Ethernet NIC: checksum, scatter-gather and UDP segmentation offload,
    GRO on (NETIF_F_SOFT_FEATURES), no receive checksum offload."""
    hw = {TX_CSUM, TX_SG, TX_GSO, TX_UDP_SEG, RX_GRO}
    return Features(hw, wanted=set(hw))


def loopback_features() -> Features:
    """drivers/net/loopback.c: every offload [fixed] on, GRO off (lo has no NAPI)."""
    return Features(set(), set(), fixed_on={TX_CSUM, TX_SG, TX_GSO, TX_UDP_SEG, RX_CHECKSUM, LOOPBACK})
