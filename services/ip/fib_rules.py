"""IPv4 policy routing rules (net/core/fib_rules.c, net/ipv4/fib_rules.c): the list
`ip rule` shows, each rule's match and action."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import TYPE_CHECKING

from services.core import errno

if TYPE_CHECKING:
    from services.ip.fib import Flow

# include/uapi/linux/fib_rules.h
FR_ACT_UNSPEC = 0
FR_ACT_TO_TBL = 1
FR_ACT_NOP = 3
FR_ACT_BLACKHOLE = 6
FR_ACT_UNREACHABLE = 7
FR_ACT_PROHIBIT = 8
FIB_RULE_INVERT = 0x2

RTPROT_KERNEL = 2
# A rule naming a device that does not exist matches nothing ([detached]).
DETACHED = -1


class FibError(Exception):
    """A refused change: the errno rtnetlink returns and its extack message ('' when
    the kernel gives none, so iproute2 prints `RTNETLINK answers: strerror`)."""

    def __init__(self, err: int, message: str = "") -> None:
        super().__init__(message or errno.strerror(err))
        self.errno = err
        self.message = message


def _mask(plen: int) -> int:
    return (0xFFFFFFFF << (32 - plen)) & 0xFFFFFFFF if plen else 0


@dataclass(frozen=True, slots=True)
class FibRule:
    """struct fib_rule + struct fib4_rule."""

    priority: int = 0
    action: int = FR_ACT_TO_TBL
    table: int = 0
    src: int = 0
    src_len: int = 0
    dst: int = 0
    dst_len: int = 0
    tos: int = 0
    mark: int = 0
    mark_mask: int = 0
    iifname: str = ""
    oifname: str = ""
    iif: int = 0
    oif: int = 0
    invert: bool = False
    protocol: int = 0

    def match(self, flow: Flow) -> bool:
        """fib_rule_match() and fib4_rule_match(); `not` inverts the whole match."""
        ok = (
            (not self.iif or self.iif == flow.iif)
            and (not self.oif or self.oif == flow.oif)
            and not (self.mark ^ flow.mark) & self.mark_mask
            and not (flow.saddr ^ self.src) & _mask(self.src_len)
            and not (flow.daddr ^ self.dst) & _mask(self.dst_len)
            # fib_dscp_masked_match(): the legacy TOS bits of the flow.
            and (not self.tos or self.tos == flow.tos & 0x1C)
        )
        return ok != self.invert

    def action_error(self) -> int:
        """fib4_rule_action() for the actions that do not look a table up."""
        if self.action == FR_ACT_NOP:
            return errno.EAGAIN
        if self.action == FR_ACT_UNREACHABLE:
            return errno.ENETUNREACH
        if self.action == FR_ACT_PROHIBIT:
            return errno.EACCES
        return errno.EINVAL


def default_rules() -> list[FibRule]:
    """fib4_rules_init(): local at 0, main at 32766, default at 32767, proto kernel."""
    return [
        FibRule(0, table=255, protocol=RTPROT_KERNEL),
        FibRule(32766, table=254, protocol=RTPROT_KERNEL),
        FibRule(32767, table=253, protocol=RTPROT_KERNEL),
    ]


class FibRules:
    def __init__(self) -> None:
        self.rules: list[FibRule] = default_rules()
        # net->ipv4.fib_has_custom_rules, never cleared once set.
        self.custom = False

    def default_pref(self) -> int:
        """fib_default_rule_pref(): one below the second rule's priority, else 0."""
        if len(self.rules) >= 2 and self.rules[1].priority:
            return self.rules[1].priority - 1
        return 0

    def resolve(self, devices: dict[int, str]) -> None:
        """The netdevice notifier: iif/oif names bind to devices that exist."""
        by_name = {name: i for i, name in devices.items()}
        self.rules = [
            dataclasses.replace(
                r,
                iif=by_name.get(r.iifname, DETACHED) if r.iifname else 0,
                oif=by_name.get(r.oifname, DETACHED) if r.oifname else 0,
            )
            for r in self.rules
        ]

    def add(self, rule: FibRule, devices: dict[int, str], priority_given: bool = True) -> FibRule:
        """fib_nl_newrule(): after every rule of lower or equal priority."""
        if rule.tos & 0x03:
            raise FibError(errno.EINVAL, "Invalid dsfield (tos): ECN bits must be 0")
        by_name = {name: i for i, name in devices.items()}
        rule = dataclasses.replace(
            rule,
            src=rule.src & _mask(rule.src_len),
            dst=rule.dst & _mask(rule.dst_len),
            # A non-zero mark without a mask compares every bit.
            mark_mask=rule.mark_mask or (0xFFFFFFFF if rule.mark else 0),
            iif=by_name.get(rule.iifname, DETACHED) if rule.iifname else 0,
            oif=by_name.get(rule.oifname, DETACHED) if rule.oifname else 0,
        )
        pos = 0
        for i, r in enumerate(self.rules):
            if r.priority > rule.priority:
                break
            pos = i + 1
        self.rules.insert(pos, rule)
        self.custom = True
        return rule

    def delete(self, rule: FibRule, priority_given: bool) -> FibRule:
        """fib_nl_delrule() → rule_find(): the first rule every given selector matches;
        ENOENT when none does."""
        for r in self.rules:
            if rule.action and r.action != rule.action:
                continue
            if rule.table and r.table != rule.table:
                continue
            if priority_given and r.priority != rule.priority:
                continue
            if rule.iifname and r.iifname != rule.iifname:
                continue
            if rule.oifname and r.oifname != rule.oifname:
                continue
            if rule.mark and r.mark != rule.mark:
                continue
            if rule.mark_mask and r.mark_mask != rule.mark_mask:
                continue
            if rule.src_len and (r.src_len != rule.src_len or r.src != rule.src & _mask(rule.src_len)):
                continue
            if rule.dst_len and (r.dst_len != rule.dst_len or r.dst != rule.dst & _mask(rule.dst_len)):
                continue
            if rule.tos and r.tos != rule.tos:
                continue
            self.rules.remove(r)
            self.custom = True
            return r
        raise FibError(errno.ENOENT)
