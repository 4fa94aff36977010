"""A task's credentials as the network stack checks them (include/uapi/linux/
capability.h, kernel/capability.c ns_capable): the uid and the effective capability
set, a bit mask of CAP_* numbers."""

from __future__ import annotations

from dataclasses import dataclass

CAP_NET_BIND_SERVICE = 10
CAP_NET_BROADCAST = 11
CAP_NET_ADMIN = 12
CAP_NET_RAW = 13
# Who may go past fs.file-max (alloc_empty_file).
CAP_SYS_ADMIN = 21
# CAP_LAST_CAP on 6.18 (CAP_CHECKPOINT_RESTORE): root's full set.
CAP_LAST_CAP = 40
CAP_FULL_SET = (1 << (CAP_LAST_CAP + 1)) - 1


@dataclass(frozen=True, slots=True)
class Cred:
    uid: int = 0
    caps: int = CAP_FULL_SET

    def capable(self, cap: int) -> bool:
        """ns_capable(net->user_ns, cap) in the initial namespace."""
        return bool(self.caps >> cap & 1)


ROOT = Cred()
