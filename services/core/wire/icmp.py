"""ICMP message types and codes (RFC 792; include/uapi/linux/icmp.h) and what each
destination-unreachable code means to a socket (icmp_err_convert[], net/ipv4/icmp.c)."""

from __future__ import annotations

from typing import Final

from services.core import errno

# include/uapi/linux/icmp.h: types.
ICMP_ECHOREPLY: Final = 0
ICMP_DEST_UNREACH: Final = 3
ICMP_SOURCE_QUENCH: Final = 4
ICMP_REDIRECT: Final = 5
ICMP_ECHO: Final = 8
ICMP_TIME_EXCEEDED: Final = 11
ICMP_PARAMETERPROB: Final = 12
ICMP_TIMESTAMP: Final = 13
ICMP_TIMESTAMPREPLY: Final = 14
ICMP_INFO_REQUEST: Final = 15
ICMP_INFO_REPLY: Final = 16
ICMP_ADDRESS: Final = 17
ICMP_ADDRESSREPLY: Final = 18
NR_ICMP_TYPES: Final = 18
ICMP_EXT_ECHO: Final = 42
ICMP_EXT_ECHOREPLY: Final = 43

# Codes for ICMP_DEST_UNREACH.
ICMP_NET_UNREACH: Final = 0
ICMP_HOST_UNREACH: Final = 1
ICMP_PROT_UNREACH: Final = 2
ICMP_PORT_UNREACH: Final = 3
ICMP_FRAG_NEEDED: Final = 4
ICMP_SR_FAILED: Final = 5
ICMP_NET_UNKNOWN: Final = 6
ICMP_HOST_UNKNOWN: Final = 7
ICMP_HOST_ISOLATED: Final = 8
ICMP_NET_ANO: Final = 9
ICMP_HOST_ANO: Final = 10
ICMP_NET_UNR_TOS: Final = 11
ICMP_HOST_UNR_TOS: Final = 12
ICMP_PKT_FILTERED: Final = 13
ICMP_PREC_VIOLATION: Final = 14
ICMP_PREC_CUTOFF: Final = 15
NR_ICMP_UNREACH: Final = 15

# Codes for ICMP_REDIRECT.
ICMP_REDIR_NET: Final = 0
ICMP_REDIR_HOST: Final = 1
ICMP_REDIR_NETTOS: Final = 2
ICMP_REDIR_HOSTTOS: Final = 3

# Codes for ICMP_TIME_EXCEEDED.
ICMP_EXC_TTL: Final = 0
ICMP_EXC_FRAGTIME: Final = 1

ICMP_HLEN: Final = 8  # sizeof(struct icmphdr)

# icmp_err_convert[] (net/ipv4/icmp.c): the errno of each ICMP_DEST_UNREACH code and
# whether it is fatal (a hard error, reported to a connected socket without IP_RECVERR).
ICMP_ERR_CONVERT: Final = (
    (errno.ENETUNREACH, False),  # ICMP_NET_UNREACH
    (errno.EHOSTUNREACH, False),  # ICMP_HOST_UNREACH
    (errno.ENOPROTOOPT, True),  # ICMP_PROT_UNREACH
    (errno.ECONNREFUSED, True),  # ICMP_PORT_UNREACH
    (errno.EMSGSIZE, False),  # ICMP_FRAG_NEEDED
    (errno.EOPNOTSUPP, False),  # ICMP_SR_FAILED
    (errno.ENETUNREACH, True),  # ICMP_NET_UNKNOWN
    (errno.EHOSTDOWN, True),  # ICMP_HOST_UNKNOWN
    (errno.ENONET, True),  # ICMP_HOST_ISOLATED
    (errno.ENETUNREACH, True),  # ICMP_NET_ANO
    (errno.EHOSTUNREACH, True),  # ICMP_HOST_ANO
    (errno.ENETUNREACH, False),  # ICMP_NET_UNR_TOS
    (errno.EHOSTUNREACH, False),  # ICMP_HOST_UNR_TOS
    (errno.EHOSTUNREACH, True),  # ICMP_PKT_FILTERED
    (errno.EHOSTUNREACH, True),  # ICMP_PREC_VIOLATION
    (errno.EHOSTUNREACH, True),  # ICMP_PREC_CUTOFF
)
