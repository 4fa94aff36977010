"""netdev features as the kernel numbers them (include/linux/netdev_features.h), for the
devices the emulator models.

A layer above the device reads them where the kernel reads dst->dev->features: UDP
offloads the checksum when the route's device has NETIF_F_HW_CSUM or NETIF_F_IP_CSUM
(udp_send_skb) and leaves segmentation to it with NETIF_F_GSO_UDP_L4. The bit numbers
are those of Linux 6.18, read from this machine's kernel (the ETH_SS_FEATURES string
set of ETHTOOL_GSTRINGS is indexed by bit): 6.18 added tx-tcp-accecn-segmentation at
bit 35 and dropped NETIF_F_FCOE_MTU, so NETIF_F_NTUPLE and everything after it keep
their older numbers.
"""

from __future__ import annotations

# drivers/net/loopback.c: lo is the first device of every namespace.
LOOPBACK_IFINDEX = 1

NETIF_F_SG_BIT = 0
NETIF_F_IP_CSUM_BIT = 1
NETIF_F_HW_CSUM_BIT = 3
NETIF_F_IPV6_CSUM_BIT = 4
NETIF_F_FRAGLIST_BIT = 6
NETIF_F_GSO_BIT = 11
NETIF_F_GRO_BIT = 14
# NETIF_F_GSO_SHIFT (16) + SKB_GSO_UDP_L4's bit (17).
NETIF_F_GSO_UDP_L4_BIT = 33
NETIF_F_RXCSUM_BIT = 40
NETIF_F_LOOPBACK_BIT = 42
NETIF_F_GRO_FRAGLIST_BIT = 57
NETIF_F_GRO_UDP_FWD_BIT = 59

NETIF_F_SG = 1 << NETIF_F_SG_BIT
NETIF_F_IP_CSUM = 1 << NETIF_F_IP_CSUM_BIT
NETIF_F_HW_CSUM = 1 << NETIF_F_HW_CSUM_BIT
NETIF_F_IPV6_CSUM = 1 << NETIF_F_IPV6_CSUM_BIT
NETIF_F_FRAGLIST = 1 << NETIF_F_FRAGLIST_BIT
NETIF_F_GSO = 1 << NETIF_F_GSO_BIT
NETIF_F_GRO = 1 << NETIF_F_GRO_BIT
NETIF_F_GSO_UDP_L4 = 1 << NETIF_F_GSO_UDP_L4_BIT
NETIF_F_RXCSUM = 1 << NETIF_F_RXCSUM_BIT
NETIF_F_LOOPBACK = 1 << NETIF_F_LOOPBACK_BIT
NETIF_F_GRO_FRAGLIST = 1 << NETIF_F_GRO_FRAGLIST_BIT
NETIF_F_GRO_UDP_FWD = 1 << NETIF_F_GRO_UDP_FWD_BIT

# NETIF_F_CSUM_MASK: any of these lets a device finish an IPv4 UDP checksum.
NETIF_F_CSUM_MASK = NETIF_F_IP_CSUM | NETIF_F_IPV6_CSUM | NETIF_F_HW_CSUM
