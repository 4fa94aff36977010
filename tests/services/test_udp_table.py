"""The UDP socket table without gRPC: udp_lib_get_port's conflict rules and autobind
walk, SO_REUSEPORT groups (selection by hash, detach), __udp4_lib_lookup's scoring over
the hash4 and secondary chains, and __udp4_lib_mcast_deliver's walk. The same sequences
against the machine's kernel are in tests/e2e/test_udp_bind_kernel.py."""

from __future__ import annotations

import errno
import itertools
import random
from typing import Any

import pytest

from services.ip.sockglue import InetOpts
from services.udp.sock import TCP_ESTABLISHED, UdpSock
from services.udp.table import (
    UDP_HTABLE_SIZE,
    SockReuseport,
    UdpTable,
    jhash_3words,
    reciprocal_scale,
    reuseport_group,
)

LO = 0x7F000001
LO2 = 0x7F000002
PEER = 0x7F000009
RANGE = (32768, 60999)
_ids = itertools.count(1)


def mk(addr: int = 0, *, reuse: int = 0, reuseport: bool = False, dev: int = 0, uid: int = 0) -> UdpSock:
    return UdpSock(
        sk=next(_ids),
        protocol=17,
        rcvbuf=212992,
        sndbuf=212992,
        inet=InetOpts(),
        rcv_saddr=addr,
        saddr=addr,
        reuse=reuse,
        reuseport=reuseport,
        bound_dev_if=dev,
        uid=uid,
    )


def bind(t: UdpTable, sk: UdpSock, port: int) -> int:
    """__inet_bind(): 0 or the errno; a failed bind leaves the socket unbound."""
    try:
        t.get_port(sk, port, RANGE)
    except OSError as e:
        sk.rcv_saddr = sk.saddr = 0
        return e.errno or 0
    return 0


def connect(t: UdpTable, sk: UdpSock, daddr: int, dport: int, saddr: int = LO) -> None:
    """What __ip4_datagram_connect() and udp_connect() do to the table."""
    sk.daddr, sk.dport = daddr, dport
    if not sk.rcv_saddr:
        t.rehash(sk, saddr)
    sk.state = TCP_ESTABLISHED
    t.connected(sk)


class FixedRandom(random.Random):
    """get_random_u32() answering from a list."""

    def __init__(self, values: list[int]) -> None:
        super().__init__(0)
        self.values = values

    def getrandbits(self, k: int) -> int:
        return self.values.pop(0) if self.values else 0


def test_jhash_and_reciprocal_scale_match_the_kernel_macros() -> None:
    # Values of include/linux/jhash.h's jhash_3words() compiled from the C macros.
    assert jhash_3words(0, 0, 0, 0) == 459859287
    assert jhash_3words(0x0100007F, 0x0200007F, (5000 << 16) | 0x5817, 0x12345678) == 1081573339
    assert jhash_3words(0xFFFFFFFF, 1, 2, 0xFFFFFFF0) == 701981472
    assert reciprocal_scale(0xFFFFFFFF, 4) == 3
    assert reciprocal_scale(0x40000000, 4) == 1
    t = UdpTable(rng=FixedRandom([0x12345678]))
    assert t.ehash_secret == 0x12345678
    # laddr and faddr are hashed as the __be32 x86_64 loads; lport in host order, fport
    # as its __be16.
    assert t.ehashfn(LO, 5000, LO2, 0x1758) == 1081573339


@pytest.mark.parametrize(
    ("first", "second", "expected"),
    [
        (dict(addr=LO), dict(addr=LO), errno.EADDRINUSE),
        (dict(addr=LO), dict(addr=LO2), 0),
        (dict(addr=0), dict(addr=LO), errno.EADDRINUSE),
        (dict(addr=LO), dict(addr=0), errno.EADDRINUSE),
        (dict(addr=LO, reuse=1), dict(addr=LO), errno.EADDRINUSE),
        (dict(addr=LO, reuse=1), dict(addr=LO, reuse=1), 0),
        (dict(addr=0, reuse=1), dict(addr=LO, reuse=1), 0),
        (dict(addr=LO, reuseport=True), dict(addr=LO, reuseport=True), 0),
        (dict(addr=LO, reuseport=True), dict(addr=LO, reuseport=True, uid=1000), errno.EADDRINUSE),
        (dict(addr=LO, reuseport=True), dict(addr=LO), errno.EADDRINUSE),
        (dict(addr=0, reuseport=True), dict(addr=LO, reuseport=True), 0),
        (dict(addr=LO, dev=1), dict(addr=LO, dev=2), 0),
        (dict(addr=LO, dev=1), dict(addr=LO, dev=1), errno.EADDRINUSE),
        (dict(addr=LO, dev=1), dict(addr=LO), errno.EADDRINUSE),
        (dict(addr=LO), dict(addr=LO, dev=1), errno.EADDRINUSE),
    ],
)
def test_udp_lib_lport_inuse_rules(first: dict[str, Any], second: dict[str, Any], expected: int) -> None:
    t = UdpTable()
    assert bind(t, mk(**first), 5000) == 0
    sk = mk(**second)
    assert bind(t, sk, 5000) == expected
    assert len(t) == (2 if expected == 0 else 1)
    if expected:
        assert sk.num == 0 and sk not in t


def test_the_first_socket_the_test_picks_decides() -> None:
    # udp_lib_lport_inuse() returns at the first socket of the chain (newest first)
    # that is not both-SO_REUSEADDR: a reuseport mate there lets the bind through even
    # though an older SO_REUSEADDR-only socket would conflict.
    t = UdpTable()
    plain = mk(LO, reuse=1)
    rp = mk(LO, reuse=1, reuseport=True)
    assert bind(t, plain, 5000) == 0
    assert bind(t, rp, 5000) == 0
    assert bind(t, mk(LO, reuseport=True), 5000) == 0
    t2 = UdpTable()
    assert bind(t2, mk(LO, reuse=1, reuseport=True), 5000) == 0
    assert bind(t2, mk(LO, reuse=1), 5000) == 0
    assert bind(t2, mk(LO, reuseport=True), 5000) == errno.EADDRINUSE


def test_past_ten_sockets_in_the_slot_a_specific_bind_looks_in_hash2() -> None:
    # udp_lib_get_port(): with hslot->count > 10, a specific address checks its own
    # secondary chain and then INADDR_ANY's, each at its first pick. Here its own chain
    # holds an SO_REUSEADDR-only socket (conflict) while the primary chain's head is a
    # wildcard reuseport mate (allowed).
    def scenario(fillers: int) -> int:
        t = UdpTable()
        assert bind(t, mk(LO, reuse=1), 5000) == 0
        assert bind(t, mk(0, reuse=1, reuseport=True), 5000) == 0
        for i in range(fillers):
            assert bind(t, mk(0x7F000100 + i, reuse=1), 5000) == 0
        return bind(t, mk(LO, reuseport=True), 5000)

    assert scenario(0) == 0
    assert scenario(8) == 0
    assert scenario(9) == errno.EADDRINUSE


def test_ports_sharing_a_primary_slot_count_together() -> None:
    # udp_hashfn(): port & mask, so 5000 and 5000 + 16384 share a slot, and ten sockets
    # on the other port make the slot long enough for the hash2 path.
    t = UdpTable()
    assert bind(t, mk(LO, reuse=1), 5000) == 0
    assert bind(t, mk(0, reuse=1, reuseport=True), 5000) == 0
    for i in range(9):
        assert bind(t, mk(0x7F000100 + i), 5000 + UDP_HTABLE_SIZE) == 0
    assert bind(t, mk(LO, reuseport=True), 5000) == errno.EADDRINUSE
    t = UdpTable(hash_entries=65536)
    assert bind(t, mk(LO, reuse=1), 5000) == 0
    assert bind(t, mk(0, reuse=1, reuseport=True), 5000) == 0
    for i in range(9):
        assert bind(t, mk(0x7F000100 + i), 5000 + 16384) == 0
    assert bind(t, mk(LO, reuseport=True), 5000) == 0


def test_get_port_on_a_hashed_socket_is_einval() -> None:
    t = UdpTable()
    sk = mk(LO)
    assert bind(t, sk, 5000) == 0
    assert bind(t, sk, 5001) == errno.EINVAL


def test_autobind_walks_from_a_random_port_through_its_slot_then_the_next() -> None:
    # first = reciprocal_scale(rand, remaining) + low; then the ports of first's slot by
    # (rand | 1) * 16384 (mod 65536), then first + 1's slot, ...
    rand = 0x80000001
    low, high = 1024, 65535
    first = reciprocal_scale(rand, high - low + 1) + low
    step = ((rand | 1) * UDP_HTABLE_SIZE) & 0xFFFF
    assert (first, step) == (33280, 16384)
    t = UdpTable(rng=FixedRandom([0, rand, rand, rand]))
    a, b, c = mk(), mk(), mk()
    t.get_port(a, 0, (low, high))
    assert a.num == first
    t.get_port(b, 0, (low, high))
    assert b.num == first + step
    # 33280 + 2 * 16384 = 66048 wraps (u16) to 512, below the range: 33280 + 3 * 16384
    # = 82432 → 16896 is next.
    t.get_port(c, 0, (low, high))
    assert c.num == (first + 3 * step) & 0xFFFF == 16896


def test_autobind_in_a_small_range_tries_every_port_once() -> None:
    t = UdpTable(rng=FixedRandom([0] + [0x80000000] * 4))
    got = []
    for _ in range(4):
        sk = mk()
        t.get_port(sk, 0, (40000, 40003))
        got.append(sk.num)
    # first = 40002 every time; then 40003, and 40000 and 40001 come last: the walk goes
    # slot by slot (40000 is in 40002 + 16382's slot).
    assert got == [40002, 40003, 40000, 40001]
    with pytest.raises(OSError) as e:
        t.get_port(mk(), 0, (40000, 40003))
    assert e.value.errno == errno.EADDRINUSE
    t = UdpTable(rng=FixedRandom([0, 0x80000000]))
    t.get_port(mk(), 0, (40000, 40003), reserved={40002, 40003})
    assert [s.num for s in t] == [40000]


def test_autobind_shares_a_port_with_sockets_it_may_share_with() -> None:
    # The bitmap marks only conflicting sockets: SO_REUSEADDR sockets autobind onto
    # each other's ports (as do same-owner SO_REUSEPORT ones).
    for opts in (dict(reuse=1), dict(reuseport=True)):
        t = UdpTable(rng=random.Random(7))
        socks = [mk(**opts) for _ in range(8)]
        for sk in socks:
            t.get_port(sk, 0, (40000, 40001))
        assert {sk.num for sk in socks} <= {40000, 40001}
    t = UdpTable(rng=random.Random(7))
    for _ in range(2):
        t.get_port(mk(), 0, (40000, 40001))
    with pytest.raises(OSError) as e:
        t.get_port(mk(reuse=1), 0, (40000, 40001))
    assert e.value.errno == errno.EADDRINUSE


def group(sk: UdpSock) -> SockReuseport:
    reuse = reuseport_group(sk)
    assert reuse is not None
    return reuse


def test_reuseport_groups_form_by_address_device_and_owner() -> None:
    t = UdpTable()
    a, b = mk(LO, reuseport=True), mk(LO, reuseport=True)
    w = mk(0, reuseport=True)
    d = mk(LO, reuseport=True, dev=2)
    for sk in (a, w, d, b):
        assert bind(t, sk, 5000) == 0
    assert group(a) is group(b) and group(a).socks == [a, b]
    assert group(w).socks == [w] and group(w).bind_inany
    assert group(d).socks == [d] and not group(d).bind_inany
    # Another owner's socket may share the port only where SO_REUSEADDR allows it, and
    # then has a group of its own.
    x, u = mk(LO2, reuse=1, reuseport=True), mk(LO2, reuse=1, reuseport=True, uid=1000)
    for sk in (x, u):
        assert bind(t, sk, 6000) == 0
    assert group(x).socks == [x] and group(u).socks == [u]
    t.unhash(a)
    assert a.reuseport_cb is None and a.num == 0
    assert group(b).socks == [b]


def _route(t: UdpTable, sources: range, dport: int = 5000) -> list[UdpSock | None]:
    return [t.lookup(PEER, sport, LO, dport, 1) for sport in sources]


def test_reuseport_selects_by_hash_and_detach_moves_the_last_into_the_hole() -> None:
    t = UdpTable(rng=random.Random(3))
    socks = [mk(LO, reuseport=True) for _ in range(4)]
    for sk in socks:
        assert bind(t, sk, 5000) == 0
    assert group(socks[0]).socks == socks
    sources = range(20000, 21000)
    before = _route(t, sources)
    assert before == _route(t, sources)  # the same four-tuple, the same socket
    for sport, got in zip(sources, before, strict=True):
        assert got is socks[reciprocal_scale(t.ehashfn(LO, 5000, PEER, sport), 4)]
    counts = [before.count(sk) for sk in socks]
    assert min(counts) > 150 and sum(counts) == 1000
    t.unhash(socks[1])
    assert group(socks[0]).socks == [socks[0], socks[3], socks[2]]
    after = _route(t, sources)
    for b, a in zip(before, after, strict=True):
        # n 4 → 3: reciprocal_scale keeps index 0's hashes at 0 and sends index 3's to
        # 2, where socks[3] no longer is: socks[2] is.
        if b is socks[0]:
            assert a is socks[0]
        if b is socks[3]:
            assert a is socks[2]
        assert a is not socks[1]


def test_a_connected_socket_is_preferred_and_leaves_its_group() -> None:
    t = UdpTable(rng=random.Random(5))
    socks = [mk(LO, reuseport=True) for _ in range(4)]
    for sk in socks:
        assert bind(t, sk, 5000) == 0
    reuse = group(socks[0])
    connect(t, socks[2], PEER, 7000)
    # udp_lib_hash4(): connected with a specific address, it leaves the group, which
    # keeps has_conns (set by __ip4_datagram_connect before).
    assert socks[2].reuseport_cb is None and reuse.has_conns
    assert reuse.socks == [socks[0], socks[1], socks[3]]
    assert t.lookup(PEER, 7000, LO, 5000, 1) is socks[2]
    others = _route(t, range(20000, 20300))
    assert socks[2] not in others and {*others} == {socks[0], socks[1], socks[3]}
    assert others == _route(t, range(20000, 20300))


def test_a_connected_wildcard_socket_leaves_its_group_unmarked() -> None:
    t = UdpTable()
    a, b = mk(0, reuseport=True), mk(0, reuseport=True)
    for sk in (a, b):
        assert bind(t, sk, 5000) == 0
    connect(t, a, PEER, 7000)
    assert a.rcv_saddr == LO and a.reuseport_cb is None
    assert group(b).socks == [b] and not group(b).has_conns
    assert t.lookup(PEER, 7000, LO, 5000, 1) is a
    assert t.lookup(PEER, 7001, LO, 5000, 1) is b


def test_binding_next_to_a_connected_reuseport_socket_regroups_it() -> None:
    # reuseport_add_sock(): the mate (the chain's head) left its group on connect; it
    # gets a new one, joined by the new socket, and selection skips it (connected).
    t = UdpTable()
    a = mk(LO, reuseport=True)
    assert bind(t, a, 5000) == 0
    connect(t, a, PEER, 7000)
    b = mk(LO, reuseport=True)
    assert bind(t, b, 5000) == 0
    assert group(a) is group(b) and group(a).socks == [a, b] and not group(a).has_conns
    assert {*_route(t, range(20000, 20100))} == {b}
    assert t.lookup(PEER, 7000, LO, 5000, 1) is a


def test_so_bindtodevice_rehash_leaves_the_group_and_the_head_answers_first() -> None:
    # udp_lib_rehash() detaches a grouped socket even when its chain stays. Then the
    # chain's head, an unconnected reuseport socket, returns at once: the device-bound
    # socket behind it, though it would score higher, never gets a datagram.
    t = UdpTable()
    first, second = mk(LO, reuseport=True), mk(LO, reuseport=True)
    for sk in (first, second):
        assert bind(t, sk, 5000) == 0
    first.bound_dev_if = 1
    t.rehash(first)
    assert first.reuseport_cb is None and group(second).socks == [second]
    assert {*_route(t, range(20000, 20050))} == {second}
    # The other way round, the device-bound socket is the head and scores 6 > 2.
    t = UdpTable()
    first, second = mk(LO, reuseport=True), mk(LO, reuseport=True)
    for sk in (first, second):
        assert bind(t, sk, 5000) == 0
    second.bound_dev_if = 1
    t.rehash(second)
    assert {*_route(t, range(20000, 20050))} == {second}


def test_compute_score_prefers_connected_then_device_then_newest() -> None:
    t = UdpTable()
    a, b = mk(LO, reuse=1), mk(LO, reuse=1)
    for sk in (a, b):
        assert bind(t, sk, 5000) == 0
    # Equal scores: the first of the chain, the socket bound last.
    assert t.lookup(PEER, 7000, LO, 5000, 1) is b
    connect(t, a, PEER, 7000)
    assert t.lookup(PEER, 7000, LO, 5000, 1) is a
    assert t.lookup(PEER, 7001, LO, 5000, 1) is b
    assert t.compute_score(a, PEER, 7000, LO, 5000, 1, 0) == 10
    assert t.compute_score(b, PEER, 7000, LO, 5000, 1, 0) == 2
    assert t.compute_score(a, PEER, 7001, LO, 5000, 1, 0) == -1
    assert t.compute_score(b, PEER, 7000, 0, 5000, 1, 0) == -1


def test_the_exact_address_is_looked_up_before_the_wildcard() -> None:
    t = UdpTable()
    w, s = mk(0, reuse=1), mk(LO, reuse=1)
    assert bind(t, s, 5000) == 0
    assert bind(t, w, 5000) == 0
    assert t.lookup(PEER, 7000, LO, 5000, 1) is s
    assert t.lookup(PEER, 7000, LO2, 5000, 1) is w
    assert t.lookup(PEER, 7000, LO, 5001, 1) is None


def test_a_device_bound_socket_only_for_its_device() -> None:
    t = UdpTable()
    plain, lo, eth = mk(0, reuse=1), mk(0, reuse=1, dev=1), mk(0, reuse=1, dev=3)
    for sk in (lo, plain, eth):
        assert bind(t, sk, 5000) == 0
    assert t.lookup(PEER, 7000, LO, 5000, 1) is lo
    assert t.lookup(PEER, 7000, LO, 5000, 3) is eth
    assert t.lookup(PEER, 7000, LO, 5000, 2) is plain
    # A VRF's sdif: an unbound socket matches only with udp_l3mdev_accept.
    assert t.lookup(PEER, 7000, LO, 5000, 2, sdif=9) is None
    t.l3mdev_accept = True
    assert t.lookup(PEER, 7000, LO, 5000, 2, sdif=9) is plain
    only = UdpTable()
    dev_sk = mk(LO, dev=3)
    assert bind(only, dev_sk, 5000) == 0
    assert only.lookup(PEER, 7000, LO, 5000, 1) is None
    assert only.lookup(PEER, 7000, LO, 5000, 3) is dev_sk
    connect(only, dev_sk, PEER, 7000)
    # inet_match() in hash4 checks the device too.
    assert only.lookup(PEER, 7000, LO, 5000, 1) is None
    assert only.lookup(PEER, 7000, LO, 5000, 3) is dev_sk


def test_disconnect_and_reconnect_refile_the_socket() -> None:
    t = UdpTable()
    listener, sk = mk(0, reuse=1), mk(LO, reuse=1)
    assert bind(t, sk, 5000) == 0
    assert bind(t, listener, 5000) == 0
    connect(t, sk, PEER, 7000)
    assert t.lookup(PEER, 7000, LO, 5000, 1) is sk
    connect(t, sk, PEER, 7001)  # a reconnect: the address stays, the peer moves
    assert t.lookup(PEER, 7000, LO, 5000, 1) is listener
    assert t.lookup(PEER, 7001, LO, 5000, 1) is sk
    # __udp_disconnect() with the address locked by bind(): no rehash.
    sk.state, sk.daddr, sk.dport = 7, 0, 0
    t.connected(sk)
    assert t.lookup(PEER, 7001, LO, 5000, 1) is sk
    assert t.lookup(PEER, 9, LO, 5000, 1) is sk


def test_rehash_moves_to_the_new_chain_and_unhash_leaves_none() -> None:
    t = UdpTable()
    a, b = mk(0, reuse=1), mk(0, reuse=1)
    for sk in (a, b):
        assert bind(t, sk, 5000) == 0
    assert t.lookup(PEER, 7000, LO, 5000, 1) is b
    t.rehash(a, LO)
    assert a.rcv_saddr == LO
    assert t.lookup(PEER, 7000, LO, 5000, 1) is a
    assert t.lookup(PEER, 7000, LO2, 5000, 1) is b
    t.rehash(a, 0)
    assert t.lookup(PEER, 7000, LO, 5000, 1) is a  # now the head of INADDR_ANY's chain
    for sk in (a, b):
        t.unhash(sk)
    assert len(t) == 0 and list(t) == [] and t.lookup(PEER, 7000, LO, 5000, 1) is None


def test_an_address_set_without_rehash_is_found_by_the_primary_chain() -> None:
    # udp4_lib_lookup1(): a socket whose rcv_saddr changed before its rehash.
    t = UdpTable()
    sk = mk(0)
    assert bind(t, sk, 5000) == 0
    sk.rcv_saddr = LO
    assert t.lookup(PEER, 7000, LO, 5000, 1) is sk
    assert t.lookup(PEER, 7000, LO2, 5000, 1) is None


def test_many_connected_sockets_and_addresses_on_one_port() -> None:
    t = UdpTable()
    listener = mk(LO, reuseport=True)
    assert bind(t, listener, 5000) == 0
    conns = []
    for i in range(2000):
        sk = mk(LO, reuseport=True)
        assert bind(t, sk, 5000) == 0
        connect(t, sk, PEER, 10000 + i)
        conns.append(sk)
    for i, sk in enumerate(conns):
        assert t.lookup(PEER, 10000 + i, LO, 5000, 1) is sk
    assert t.lookup(PEER, 9999, LO, 5000, 1) is listener
    assert t.lookup(PEER + 1, 10000, LO, 5000, 1) is listener
    spread = [mk(0x7F010000 + i) for i in range(2000)]
    for sk in spread:
        assert bind(t, sk, 6000) == 0
    for i, sk in enumerate(spread):
        assert t.lookup(PEER, 7000, 0x7F010000 + i, 6000, 1) is sk
    assert bind(t, mk(0x7F010005), 6000) == errno.EADDRINUSE
    assert len(t) == 4001


def test_mcast_sockets_in_the_walk_order() -> None:
    bcast = 0x7FFFFFFF
    t = UdpTable()
    w1, b1, other, conn, conn_peer, eth, w2 = (
        mk(0, reuse=1),
        mk(bcast, reuse=1),
        mk(LO, reuse=1),
        mk(0, reuse=1),
        mk(0, reuse=1),
        mk(0, reuse=1, dev=3),
        mk(0, reuse=1),
    )
    for sk in (w1, b1, other, conn, conn_peer, eth, w2):
        assert bind(t, sk, 5000) == 0
    connect(t, conn, PEER + 1, 7000, saddr=0)
    connect(t, conn_peer, PEER, 7000, saddr=0)
    # The primary chain, newest first: every socket bound to the port, the broadcast
    # address or the wildcard, unconnected or connected to the sender, on any device
    # or the one it came in on.
    assert t.mcast_sockets(PEER, 7000, bcast, 5000, 1) == [w2, conn_peer, b1, w1]
    assert t.mcast_sockets(PEER, 7000, bcast, 5000, 3) == [w2, eth, conn_peer, b1, w1]
    assert t.mcast_sockets(PEER, 7000, bcast, 5001, 1) == []
    # Past ten sockets in the slot: daddr's secondary chain, then INADDR_ANY's (where
    # a rehash moved a socket to the head).
    more = [mk(0x7F000100 + i, reuse=1) for i in range(4)]
    for sk in more:
        assert bind(t, sk, 5000) == 0
    t.rehash(w1)
    assert t.mcast_sockets(PEER, 7000, bcast, 5000, 1) == [b1, w2, conn_peer, w1]


def test_iteration_is_by_slot_then_newest_first() -> None:
    t = UdpTable()
    a, b, c, d = mk(LO), mk(LO2), mk(LO), mk(LO)
    assert bind(t, a, 6000) == 0
    assert bind(t, b, 6000) == 0
    assert bind(t, c, 5000) == 0
    assert bind(t, d, 5000 + UDP_HTABLE_SIZE) == 0
    assert list(t) == [d, c, b, a]
    assert len(t) == 4 and a in t and mk() not in t


def test_hash_entries_must_be_a_power_of_two() -> None:
    with pytest.raises(ValueError):
        UdpTable(hash_entries=1000)
