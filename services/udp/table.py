"""udp_table: the UDP sockets of one network namespace, hashed as net/ipv4/udp.c hashes
them (udp_lib_get_port, udp_lib_unhash, udp_lib_rehash, udp_lib_hash4,
__udp4_lib_lookup, __udp4_lib_mcast_deliver), with the SO_REUSEPORT groups of
net/core/sock_reuseport.c.

Three hashes, as in the kernel:
- the primary chains, by local port (udptable->hash): bind conflicts, reuseport group
  membership and the walk of a broadcast;
- the secondary chains, by (inet_rcv_saddr, port) (hash2): the unicast lookup scores the
  sockets of the destination address's chain, then those of INADDR_ANY's;
- the four-tuple chains (hash4, 6.13+): connected sockets by (rcv_saddr, port, daddr,
  dport), tried first.
The kernel's chains are hash slots shared by colliding keys; here each key has its own
chain, which changes no answer (every kernel walk filters on the exact key) except where
a slot's length decides (hslot->count > 10); those counts are taken per local port slot
(port % hash_entries, as udp_hashfn) and per exact secondary key.

Every chain keeps the kernel's order: hlist_add_head_rcu puts the newest first, so a
dict in insertion order walked in reverse is the chain. On a lookup only the sockets
that can match are walked: a secondary chain also files its sockets by the peer they
are connected to, so a datagram from (saddr, sport) walks those connected to it and the
unconnected ones (merged back into chain order), never the ones connected elsewhere, whose
compute_score() is -1 and could not change the result.

The table learns of a socket's new addresses only when told: callers call rehash()
where the kernel calls sk_prot->rehash (inet_rcv_saddr or sk_bound_dev_if changed), and
connected() after every connect() and disconnect() (this table files sockets by peer, so
it must hear of every change of daddr/dport); see each method.
"""

from __future__ import annotations

import heapq
import itertools
import random
from collections.abc import Container, Iterable, Iterator
from dataclasses import dataclass, field

from services.core import errno
from services.udp.sock import TCP_ESTABLISHED, UdpSock

# The number of primary (and secondary) hash slots, net.ipv4.udp_hash_entries: the
# kernel sizes it from memory at boot (alloc_large_system_hash, 16384 on a 6.18 machine
# of 24 GiB). It decides which ports share a primary slot, and so the autobind walk.
UDP_HTABLE_SIZE = 16384

# udp_lib_get_port(), __udp4_lib_mcast_deliver(): past this many sockets in a port's
# primary slot, the secondary hash is walked instead.
_HSLOT_SCAN_MAX = 10

JHASH_INITVAL = 0xDEADBEEF
_U32 = 0xFFFFFFFF

Peer = tuple[int, int]
Key4 = tuple[int, int, int, int]


def jhash_3words(a: int, b: int, c: int, initval: int) -> int:
    """include/linux/jhash.h jhash_3words(): __jhash_nwords() then __jhash_final(), its
    rol32()s written out (this is on the receive path of every reuseport lookup)."""
    m = _U32
    initval = (initval + JHASH_INITVAL + (3 << 2)) & m
    a = (a + initval) & m
    b = (b + initval) & m
    c = (c + initval) & m
    c ^= b
    c = (c - (((b << 14) | (b >> 18)) & m)) & m
    a ^= c
    a = (a - (((c << 11) | (c >> 21)) & m)) & m
    b ^= a
    b = (b - (((a << 25) | (a >> 7)) & m)) & m
    c ^= b
    c = (c - (((b << 16) | (b >> 16)) & m)) & m
    a ^= c
    a = (a - (((c << 4) | (c >> 28)) & m)) & m
    b ^= a
    b = (b - (((a << 14) | (a >> 18)) & m)) & m
    c ^= b
    c = (c - (((b << 24) | (b >> 8)) & m)) & m
    return c


def reciprocal_scale(val: int, ep_ro: int) -> int:
    """include/linux/math.h: val (a u32) scaled into [0, ep_ro)."""
    return (val * ep_ro) >> 32


def _be32(addr: int) -> int:
    """A __be32 as the u32 x86_64 reads from it: what the kernel hashes."""
    return ((addr & 0xFF) << 24) | ((addr & 0xFF00) << 8) | ((addr >> 8) & 0xFF00) | (addr >> 24)


def _be16(port: int) -> int:
    return ((port & 0xFF) << 8) | (port >> 8)


def _rcv_saddr_equal(a: int, b: int, match_wildcard: bool) -> bool:
    """ipv4_rcv_saddr_equal() (inet_rcv_saddr_equal() of two IPv4 sockets)."""
    if a == b:
        return True
    return match_wildcard and (not a or not b)


@dataclass(eq=False, slots=True)
class SockReuseport:
    """struct sock_reuseport: one SO_REUSEPORT group. socks is reuse->socks[] in its
    order (joining appends; leaving moves the last socket into the hole), which decides
    the socket a hash selects. pos maps each socket to its index, where the kernel's
    reuseport_sock_index() searches."""

    socks: list[UdpSock]
    bind_inany: bool
    has_conns: bool = False
    pos: dict[UdpSock, int] = field(default_factory=dict)

    def add(self, sk: UdpSock) -> None:
        """__reuseport_add_sock()."""
        self.pos[sk] = len(self.socks)
        self.socks.append(sk)

    def detach(self, sk: UdpSock) -> None:
        """__reuseport_detach_sock(): reuse->socks[i] = reuse->socks[num_socks - 1]."""
        i = self.pos.pop(sk)
        last = self.socks.pop()
        if last is not sk:
            self.socks[i] = last
            self.pos[last] = i

    def select_by_hash(self, phash: int) -> UdpSock | None:
        """reuseport_select_sock_by_hash(): from socks[reciprocal_scale(hash, n)] on, the
        first socket not connected (SO_INCOMING_CPU is not emulated: incoming_cpu 0)."""
        socks = self.socks
        n = len(socks)
        if not n:
            return None
        i = j = reciprocal_scale(phash, n)
        while True:
            sk = socks[i]
            if sk.state != TCP_ESTABLISHED:
                return sk
            i += 1
            if i >= n:
                i = 0
            if i == j:
                return None


def reuseport_group(sk: UdpSock) -> SockReuseport | None:
    """sk->sk_reuseport_cb."""
    cb = sk.reuseport_cb
    return cb if isinstance(cb, SockReuseport) else None


@dataclass(slots=True)
class _Hashed:
    """What struct udp_sock keeps of its own hashing: udp_port_hash (port), the address
    of udp_portaddr_hash (addr) and udp_lrpa_hash (key4), and here also where the socket
    sits in its chains (pseq, seq: larger is nearer the head) and the peer it is filed
    under in its secondary chain."""

    port: int
    addr: int
    pseq: int
    seq: int = 0
    peer: Peer = (0, 0)
    key4: Key4 | None = None


@dataclass(slots=True)
class _Hslot2:
    """One secondary chain (the sockets on one (rcv_saddr, port)), and the same sockets
    by (daddr, dport), each in chain order."""

    chain: dict[UdpSock, None] = field(default_factory=dict)
    by_peer: dict[Peer, dict[UdpSock, None]] = field(default_factory=dict)


class UdpTable:
    """struct udp_table of one namespace. rng draws the autobind ports and the
    udp_ehash_secret (+ net_hash_mix) that reuseport selection hashes with;
    l3mdev_accept is net.ipv4.udp_l3mdev_accept (it matters only with a VRF's sdif)."""

    def __init__(
        self,
        *,
        hash_entries: int = UDP_HTABLE_SIZE,
        rng: random.Random | None = None,
        l3mdev_accept: bool = False,
    ) -> None:
        if hash_entries <= 0 or hash_entries & (hash_entries - 1) or hash_entries > 65536:
            raise ValueError(f"hash_entries must be a power of two up to 65536, not {hash_entries}")
        self._mask = hash_entries - 1
        self._rng = rng if rng is not None else random.Random()
        self.l3mdev_accept = l3mdev_accept
        self.ehash_secret = self._rng.getrandbits(32)
        self._socks: dict[UdpSock, _Hashed] = {}
        self._ports: dict[int, dict[UdpSock, None]] = {}
        self._slot_count: dict[int, int] = {}
        self._hash2: dict[tuple[int, int], _Hslot2] = {}
        self._hash4: dict[Key4, dict[UdpSock, None]] = {}
        self._seq = itertools.count(1)

    def __len__(self) -> int:
        return len(self._socks)

    def __contains__(self, sk: object) -> bool:
        return sk in self._socks

    def __iter__(self) -> Iterator[UdpSock]:
        """The sockets in /proc/net/udp's order (udp_get_first/next): primary slot by
        slot, each newest first (taking net_hash_mix as 0)."""
        socks = self._socks
        slots: dict[int, list[UdpSock]] = {}
        for port, chain in self._ports.items():
            slots.setdefault(port & self._mask, []).extend(chain)
        for slot in sorted(slots):
            yield from sorted(slots[slot], key=lambda s: -socks[s].pseq)

    # Hashing.

    def ehashfn(self, laddr: int, lport: int, faddr: int, fport: int) -> int:
        """udp_ehashfn(): __inet_ehashfn() with this table's secret."""
        return jhash_3words(_be32(laddr), _be32(faddr), (lport << 16) | _be16(fport), self.ehash_secret)

    def get_port(
        self, sk: UdpSock, snum: int, port_range: tuple[int, int], reserved: Container[int] = ()
    ) -> None:
        """udp_v4_get_port() → udp_lib_get_port(): hash sk (its rcv_saddr set by the
        caller) on port snum, or when snum is 0 on the first port of the randomised
        search that no socket conflicts with; sets sk.num. SO_REUSEPORT sockets join a
        group. Raises EADDRINUSE. reserved is net.ipv4.ip_local_reserved_ports."""
        if sk in self._socks:
            raise errno.kernel_error(errno.EINVAL, "socket already hashed")
        if not snum:
            snum = self._autobind_port(sk, port_range, reserved)
        elif self._lport_inuse(sk, snum):
            raise errno.kernel_error(errno.EADDRINUSE)
        if sk.reuseport:
            self._reuseport_add_sock(sk, snum)
        sk.num = snum
        st = _Hashed(port=snum, addr=sk.rcv_saddr, pseq=next(self._seq))
        self._socks[sk] = st
        self._ports.setdefault(snum, {})[sk] = None
        slot = snum & self._mask
        self._slot_count[slot] = self._slot_count.get(slot, 0) + 1
        self._hash2_add(sk, st, sk.rcv_saddr)

    def unhash(self, sk: UdpSock) -> None:
        """udp_lib_unhash(): out of the group and every chain; inet_num becomes 0."""
        st = self._socks.pop(sk, None)
        if st is None:
            return
        self._reuseport_detach_sock(sk)
        chain = self._ports[st.port]
        del chain[sk]
        if not chain:
            del self._ports[st.port]
        slot = st.port & self._mask
        self._slot_count[slot] -= 1
        if not self._slot_count[slot]:
            del self._slot_count[slot]
        self._hash2_del(sk, st)
        self._unhash4(sk, st)
        sk.num = 0

    def rehash(self, sk: UdpSock, new_rcv_saddr: int | None = None) -> None:
        """udp_v4_rehash() → udp_lib_rehash(): sets sk.rcv_saddr to new_rcv_saddr when
        given, and moves sk to its new secondary chain (at its head). As in the kernel,
        a socket in a reuseport group leaves it, even when its chain does not change; a
        socket in hash4 moves to its current four-tuple, or leaves hash4 if its address
        is now INADDR_ANY.

        The kernel calls it from __ip4_datagram_connect() when connect() fills in a
        wildcard rcv_saddr, from __udp_disconnect() when it resets the address of a
        socket whose port stays bound, and from SO_BINDTODEVICE (sock_bindtoindex)."""
        if new_rcv_saddr is not None:
            sk.rcv_saddr = new_rcv_saddr
        st = self._socks.get(sk)
        if st is None:
            return
        moved = sk.rcv_saddr != st.addr
        if moved or sk.reuseport_cb is not None:
            self._reuseport_detach_sock(sk)
            if moved:
                self._hash2_del(sk, st)
                self._hash2_add(sk, st, sk.rcv_saddr)
        if not moved:
            self._refile_peer(sk, st)
        if st.key4 is not None:
            # udp_rehash4(), or udp_unhash4() for a wildcard address.
            self._set_hash4(sk, st)

    def connected(self, sk: UdpSock) -> None:
        """Re-file sk after connect() or disconnect() changed its peer (daddr, dport,
        state): hash4() for a connected socket; a disconnected one leaves hash4 (the
        kernel leaves its entry there, stale: it matches no datagram from a real peer)
        and is filed as unconnected in its secondary chain. Call it after the state and
        peer are set, before or after rehash() (the group a rehash detaches sk from is
        then not marked as having connections, as in the kernel)."""
        if sk.daddr:
            self.hash4(sk)
            return
        st = self._socks.get(sk)
        if st is not None:
            self._refile_peer(sk, st)
            self._unhash4(sk, st)

    def hash4(self, sk: UdpSock) -> None:
        """What udp_connect() does to the hashes after __ip4_datagram_connect() (call it
        after a successful connect(), with daddr/dport, state and any rehash() done):
        reuseport_has_conns_set() marks sk's group as having a connected socket, then
        udp4_hash4() files sk by its four-tuple and takes it out of its group
        (udp_lib_hash4). A socket with a wildcard address is not filed. A socket already
        filed is moved to its current four-tuple (the kernel leaves it under the old one,
        and its lookups then find it by scoring instead: the same socket)."""
        st = self._socks.get(sk)
        if st is None:
            return
        reuse = reuseport_group(sk)
        if reuse is not None:
            reuse.has_conns = True
        self._refile_peer(sk, st)
        if not sk.rcv_saddr:
            return
        if st.key4 is None:
            self._reuseport_detach_sock(sk)
        self._set_hash4(sk, st)

    def _hash2_add(self, sk: UdpSock, st: _Hashed, addr: int) -> None:
        key = (addr, st.port)
        hslot2 = self._hash2.get(key)
        if hslot2 is None:
            hslot2 = self._hash2[key] = _Hslot2()
        st.addr = addr
        st.seq = next(self._seq)
        st.peer = (sk.daddr, sk.dport)
        hslot2.chain[sk] = None
        sub = hslot2.by_peer.get(st.peer)
        if sub is None:
            hslot2.by_peer[st.peer] = {sk: None}
        else:
            sub[sk] = None

    def _hash2_del(self, sk: UdpSock, st: _Hashed) -> None:
        key = (st.addr, st.port)
        hslot2 = self._hash2[key]
        del hslot2.chain[sk]
        sub = hslot2.by_peer[st.peer]
        del sub[sk]
        if not sub:
            del hslot2.by_peer[st.peer]
        if not hslot2.chain:
            del self._hash2[key]

    def _refile_peer(self, sk: UdpSock, st: _Hashed) -> None:
        """File sk under its current (daddr, dport) in its secondary chain, keeping each
        peer's list in chain order."""
        peer = (sk.daddr, sk.dport)
        if peer == st.peer:
            return
        hslot2 = self._hash2[(st.addr, st.port)]
        old = hslot2.by_peer[st.peer]
        del old[sk]
        if not old:
            del hslot2.by_peer[st.peer]
        st.peer = peer
        sub = hslot2.by_peer.get(peer)
        if sub is None:
            hslot2.by_peer[peer] = {sk: None}
            return
        socks = self._socks
        if socks[next(reversed(sub))].seq < st.seq:
            sub[sk] = None
            return
        ordered = sorted([*sub, sk], key=lambda s: socks[s].seq)
        sub.clear()
        sub.update(dict.fromkeys(ordered))

    def _set_hash4(self, sk: UdpSock, st: _Hashed) -> None:
        """File sk in hash4 under its current four-tuple (at the head of that chain when
        it moves), or nowhere when it has no local address or no peer address."""
        key = (sk.rcv_saddr, st.port, sk.daddr, sk.dport) if sk.rcv_saddr and sk.daddr else None
        if key == st.key4:
            return
        self._unhash4(sk, st)
        if key is not None:
            st.key4 = key
            self._hash4.setdefault(key, {})[sk] = None

    def _unhash4(self, sk: UdpSock, st: _Hashed) -> None:
        """udp_unhash4()."""
        key = st.key4
        if key is None:
            return
        st.key4 = None
        chain = self._hash4[key]
        del chain[sk]
        if not chain:
            del self._hash4[key]

    # Binding.

    def _lport_conflict(self, sk: UdpSock, sk2: UdpSock) -> bool:
        """The test of udp_lib_lport_inuse() that picks sk2 out of the chain: not both
        SO_REUSEADDR, devices that overlap, addresses equal or one a wildcard."""
        return (
            sk2 is not sk
            and (not sk2.reuse or not sk.reuse)
            and (not sk2.bound_dev_if or not sk.bound_dev_if or sk2.bound_dev_if == sk.bound_dev_if)
            and _rcv_saddr_equal(sk.rcv_saddr, sk2.rcv_saddr, True)
        )

    @staticmethod
    def _reuseport_ok(sk: UdpSock, sk2: UdpSock) -> bool:
        """...unless both are SO_REUSEPORT of one owner and sk is in no group yet."""
        return sk2.reuseport and sk.reuseport and sk.reuseport_cb is None and sk.uid == sk2.uid

    def _lport_inuse(self, sk: UdpSock, snum: int) -> bool:
        """udp_lib_lport_inuse() for a given port: the first socket of the chain that the
        test picks decides, in use unless SO_REUSEPORT allows it. With more than 10
        sockets in the port's slot, a specific address looks in its own secondary chain
        and then INADDR_ANY's (udp_lib_lport_inuse2), unless its chain is the longer."""
        chain = self._ports.get(snum)
        if not chain:
            return False
        if sk.rcv_saddr and self._slot_count[snum & self._mask] > _HSLOT_SCAN_MAX:
            hslot2 = self._hash2.get((sk.rcv_saddr, snum))
            if hslot2 is None or self._slot_count[snum & self._mask] >= len(hslot2.chain):
                return self._lport_inuse2(sk, hslot2) or self._lport_inuse2(sk, self._hash2.get((0, snum)))
        for sk2 in reversed(chain):
            if self._lport_conflict(sk, sk2):
                return not self._reuseport_ok(sk, sk2)
        return False

    def _lport_inuse2(self, sk: UdpSock, hslot2: _Hslot2 | None) -> bool:
        """udp_lib_lport_inuse2()."""
        if hslot2 is None:
            return False
        for sk2 in reversed(hslot2.chain):
            if self._lport_conflict(sk, sk2):
                return not self._reuseport_ok(sk, sk2)
        return False

    def _port_taken(self, sk: UdpSock, port: int) -> bool:
        """The bitmap of udp_lib_lport_inuse() in the autobind search: a port is taken
        when any socket on it conflicts and SO_REUSEPORT does not allow it."""
        for sk2 in self._ports.get(port, ()):
            if self._lport_conflict(sk, sk2) and not self._reuseport_ok(sk, sk2):
                return True
        return False

    def _autobind_port(self, sk: UdpSock, port_range: tuple[int, int], reserved: Container[int]) -> int:
        """The search of udp_lib_get_port() for snum 0: a random first port in the
        range; then slot by slot from it, every port of the slot, stepping by an odd
        multiple of the table size (u16 arithmetic), so every port is tried once. A port
        that another SO_REUSEADDR (or same-owner SO_REUSEPORT) socket holds is free for
        this one, as in the kernel."""
        low, high = port_range
        remaining = high - low + 1
        if remaining <= 0:
            raise errno.kernel_error(errno.EADDRINUSE)
        rand = self._rng.getrandbits(32)
        first = (reciprocal_scale(rand, remaining) + low) & 0xFFFF
        size = self._mask + 1
        step = (((rand | 1) * size) & _U32) & 0xFFFF
        last = (first + size) & 0xFFFF
        ports = self._ports
        while True:
            snum = first
            while True:
                if (
                    low <= snum <= high
                    and (snum not in ports or not self._port_taken(sk, snum))
                    and snum not in reserved
                ):
                    return snum
                snum = (snum + step) & 0xFFFF
                if snum == first:
                    break
            first = (first + 1) & 0xFFFF
            if first == last:
                raise errno.kernel_error(errno.EADDRINUSE)

    # SO_REUSEPORT groups.

    def _reuseport_add_sock(self, sk: UdpSock, snum: int) -> None:
        """udp_reuseport_add_sock(): join the group of the first socket of the port's
        chain with the same device, owner and exact address that is SO_REUSEPORT, else
        start a group (reuseport_alloc)."""
        bind_inany = not sk.rcv_saddr
        chain = self._ports.get(snum, {})
        hslot2 = self._hash2.get((sk.rcv_saddr, snum))
        # The candidates all sit in sk's secondary chain: walk whichever is shorter,
        # taking from the secondary one the match nearest the primary chain's head.
        if hslot2 is not None and len(hslot2.chain) < len(chain):
            found = [sk2 for sk2 in hslot2.chain if self._reuseport_mate(sk, sk2)]
            mate = max(found, key=lambda s: self._socks[s].pseq) if found else None
        else:
            mate = next((sk2 for sk2 in reversed(chain) if self._reuseport_mate(sk, sk2)), None)
        if mate is None:
            self._reuseport_alloc(sk, bind_inany)
        else:
            self._reuseport_add(sk, mate, bind_inany)

    @staticmethod
    def _reuseport_mate(sk: UdpSock, sk2: UdpSock) -> bool:
        return (
            sk2 is not sk
            and sk2.bound_dev_if == sk.bound_dev_if
            and sk2.reuseport
            and sk2.uid == sk.uid
            and sk2.rcv_saddr == sk.rcv_saddr
        )

    @staticmethod
    def _reuseport_alloc(sk: UdpSock, bind_inany: bool) -> SockReuseport:
        """reuseport_alloc()."""
        reuse = reuseport_group(sk)
        if reuse is not None:
            if bind_inany:
                reuse.bind_inany = True
            return reuse
        reuse = SockReuseport([], bind_inany)
        reuse.add(sk)
        sk.reuseport_cb = reuse
        return reuse

    def _reuseport_add(self, sk: UdpSock, sk2: UdpSock, bind_inany: bool) -> None:
        """reuseport_add_sock(): sk2 gets a group if it has none (a connected socket left
        its group, and is put back in a new one), and sk joins it at the end."""
        reuse = reuseport_group(sk2)
        if reuse is None:
            reuse = self._reuseport_alloc(sk2, bind_inany)
        old = reuseport_group(sk)
        if old is not None and len(old.socks) != 1:
            # -EBUSY, which udp_lib_get_port() answers with its EADDRINUSE.
            raise errno.kernel_error(errno.EADDRINUSE)
        reuse.add(sk)
        sk.reuseport_cb = reuse

    @staticmethod
    def _reuseport_detach_sock(sk: UdpSock) -> None:
        """reuseport_detach_sock()."""
        reuse = reuseport_group(sk)
        sk.reuseport_cb = None
        if reuse is not None:
            reuse.detach(sk)

    # Lookup.

    def _dev_eq(self, bound_dev_if: int, dif: int, sdif: int) -> bool:
        """udp_sk_bound_dev_eq() → inet_bound_dev_eq()."""
        if not bound_dev_if:
            return not sdif or self.l3mdev_accept
        return bound_dev_if in (dif, sdif)

    def compute_score(
        self, sk: UdpSock, saddr: int, sport: int, daddr: int, hnum: int, dif: int, sdif: int
    ) -> int:
        """compute_score() (6.x): -1 for no match; 2 for an AF_INET socket bound to
        exactly daddr:hnum, +4 for each of connected address, connected port and bound
        device that matches. (sk_incoming_cpu's +1 is not emulated.)"""
        if sk.num != hnum or sk.rcv_saddr != daddr:
            return -1
        score = 2
        if sk.daddr:
            if sk.daddr != saddr:
                return -1
            score += 4
        if sk.dport:
            if sk.dport != sport:
                return -1
            score += 4
        bound = sk.bound_dev_if
        if bound:
            if bound != dif and bound != sdif:
                return -1
            score += 4
        elif sdif and not self.l3mdev_accept:
            return -1
        return score

    def _candidates(self, hslot2: _Hslot2, saddr: int, sport: int) -> Iterable[UdpSock]:
        """The sockets of a secondary chain that are unconnected or connected to
        saddr:sport (each part of the address and port), in chain order."""
        by_peer = hslot2.by_peer
        peers = [(0, 0)]
        if sport:
            peers.append((0, sport))
        if saddr:
            peers.append((saddr, 0))
            if sport:
                peers.append((saddr, sport))
        subs = [sub for sub in map(by_peer.get, peers) if sub]
        if not subs:
            return ()
        if len(subs) == 1:
            return reversed(subs[0])
        socks = self._socks
        return heapq.merge(*(reversed(sub) for sub in subs), key=lambda s: -socks[s].seq)

    def _lookup2(
        self, saddr: int, sport: int, daddr: int, hnum: int, dif: int, sdif: int, hslot2: _Hslot2
    ) -> UdpSock | None:
        """udp4_lib_lookup2(): the first best-scoring socket of the chain; an unconnected
        SO_REUSEPORT socket hands over to the socket its group selects by hash (which is
        the answer, unless the group has connected sockets: then scoring goes on)."""
        result: UdpSock | None = None
        badness = 0
        phash = -1
        for sk in self._candidates(hslot2, saddr, sport):
            score = self.compute_score(sk, saddr, sport, daddr, hnum, dif, sdif)
            if score <= badness:
                continue
            badness = score
            if sk.state == TCP_ESTABLISHED:
                result = sk
                continue
            reuse = reuseport_group(sk) if sk.reuseport else None
            selected = None
            if reuse is not None:
                if phash < 0:
                    phash = self.ehashfn(daddr, hnum, saddr, sport)
                selected = reuse.select_by_hash(phash)
            if selected is None:
                result = sk
                continue
            if not reuse or not reuse.has_conns:
                return selected
            result = selected
            badness = max(badness, self.compute_score(selected, saddr, sport, daddr, hnum, dif, sdif))
        return result

    def lookup(
        self, saddr: int, sport: int, daddr: int, dport: int, dif: int, sdif: int = 0
    ) -> UdpSock | None:
        """__udp4_lib_lookup(): the socket a datagram from saddr:sport to daddr:dport,
        arriving on device dif, is for. A connected socket by its four-tuple
        (udp4_lib_lookup4), then the best of the sockets bound to daddr, then of those
        bound to INADDR_ANY (udp4_lib_lookup2). Not emulated: BPF sk_lookup and
        reuseport programs.

        When none matches, the port's primary chain is scored for daddr
        (udp4_lib_lookup1, 6.14+): in the kernel that finds a socket whose address
        connect() set while its rehash had not yet run on another CPU; here it finds a
        socket whose caller changed rcv_saddr without rehash(). It costs a walk of the
        port's sockets on every datagram no socket takes."""
        if self._hash4:
            chain4 = self._hash4.get((daddr, dport, saddr, sport))
            if chain4:
                for sk in reversed(chain4):
                    # inet_match()
                    if (
                        sk.daddr == saddr
                        and sk.rcv_saddr == daddr
                        and sk.dport == sport
                        and sk.num == dport
                        and self._dev_eq(sk.bound_dev_if, dif, sdif)
                    ):
                        return sk
        hslot2 = self._hash2.get((daddr, dport))
        if hslot2 is not None:
            result = self._lookup2(saddr, sport, daddr, dport, dif, sdif, hslot2)
            if result is not None:
                return result
        hslot2 = self._hash2.get((0, dport))
        if hslot2 is not None:
            result = self._lookup2(saddr, sport, 0, dport, dif, sdif, hslot2)
            if result is not None:
                return result
        return self._lookup1(saddr, sport, daddr, dport, dif, sdif)

    def _lookup1(self, saddr: int, sport: int, daddr: int, hnum: int, dif: int, sdif: int) -> UdpSock | None:
        """udp4_lib_lookup1(): the first best-scoring socket of the primary chain,
        reuseport groups ignored."""
        chain = self._ports.get(hnum)
        if not chain:
            return None
        result: UdpSock | None = None
        badness = 0
        for sk in reversed(chain):
            score = self.compute_score(sk, saddr, sport, daddr, hnum, dif, sdif)
            if score > badness:
                result, badness = sk, score
        return result

    def _is_mcast_sock(
        self, sk: UdpSock, loc_addr: int, rmt_port: int, rmt_addr: int, hnum: int, dif: int, sdif: int
    ) -> bool:
        """__udp_is_mcast_sock(), without ip_mc_sf_allow() (no multicast memberships or
        source filters yet: every socket passes, as with IP_MULTICAST_ALL)."""
        return (
            sk.num == hnum
            and not (sk.daddr and sk.daddr != rmt_addr)
            and not (sk.dport and sk.dport != rmt_port)
            and not (sk.rcv_saddr and sk.rcv_saddr != loc_addr)
            and self._dev_eq(sk.bound_dev_if, dif, sdif)
        )

    def mcast_sockets(
        self, saddr: int, sport: int, daddr: int, dport: int, dif: int, sdif: int = 0
    ) -> list[UdpSock]:
        """__udp4_lib_mcast_deliver(): every socket a broadcast or multicast datagram is
        given to, in the order the kernel's walk finds them: the port's primary chain
        (or, past 10 sockets in the slot, daddr's secondary chain and then INADDR_ANY's).
        The kernel queues a clone to each match after the first as it finds it, and the
        original skb to the first match last."""
        chain = self._ports.get(dport)
        if not chain:
            return []
        walk: Iterable[UdpSock]
        if self._slot_count[dport & self._mask] > _HSLOT_SCAN_MAX:
            hslots = [self._hash2.get((daddr, dport))]
            if daddr:
                hslots.append(self._hash2.get((0, dport)))
            walk = itertools.chain.from_iterable(reversed(h.chain) for h in hslots if h is not None)
        else:
            walk = reversed(chain)
        return [sk for sk in walk if self._is_mcast_sock(sk, daddr, sport, saddr, dport, dif, sdif)]
