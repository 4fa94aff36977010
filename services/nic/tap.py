"""A TAP device as an emulated host's wire to the real kernel (drivers/net/tun.c).

The emulator holds the TAP's file descriptor: a read returns one frame the kernel
transmitted on the device (tun_net_xmit queued it, tun_do_read hands it out), a write
injects one frame the kernel receives on it (tun_get_user → the device's receive path).
The device itself lives in a network namespace of its own, where the kernel's side has
an address, so nothing in the machine's main namespace is configured.

    fd = tap_open("tap0")
    netns_attach("tap0", "tap0")            # kernel side 10.99.0.1/24, up
    link = TapLink(fd, on_frames)
    link.start(loop)                        # frames the kernel sends → on_frames
    link.xmit(frame)                        # a frame for the kernel
    link.close(); netns_remove("tap0")
"""

from __future__ import annotations

import asyncio
import errno
import fcntl
import json
import os
import shutil
import struct
import subprocess
from collections.abc import Callable

# include/uapi/linux/if_tun.h
TUNSETIFF = 0x400454CA  # _IOW('T', 202, int)
IFF_TUN = 0x0001
IFF_TAP = 0x0002
IFF_NO_PI = 0x1000
# include/uapi/linux/if.h: a name is at most IFNAMSIZ - 1 bytes plus the NUL.
IFNAMSIZ = 16

# struct ifreq: ifr_name[IFNAMSIZ] then a 24-byte union whose ifr_flags is a short.
_IFREQ = struct.Struct(f"{IFNAMSIZ}sH22x")

# The largest frame a read can return: tun's dev->max_mtu is MAX_MTU (65535), plus the
# Ethernet header, plus a VLAN tag tun_put_user inserts for an accelerated tag.
TAP_FRAME_MAX = 65535 + 14 + 4

IP_TIMEOUT = 10.0

# tun_get_user's refusals that drop one frame and leave the device usable: EINVAL for a
# frame shorter than ETH_HLEN, EIO while the device is administratively down (counted in
# the device's rx_dropped, SKB_DROP_REASON_DEV_READY), EAGAIN/ENOBUFS if the skb cannot
# be allocated without blocking.
_XMIT_DROP = frozenset({errno.EAGAIN, errno.ENOBUFS, errno.EIO, errno.EINVAL})


def tap_open(name: str) -> int:
    """Open /dev/net/tun and attach to TAP device `name` (created if missing, not
    persistent: it disappears when the last fd on it closes, tun_chr_close →
    __tun_detach → unregister_netdevice). Returns a non-blocking, close-on-exec fd.

    IFF_NO_PI: each read and write is exactly one Ethernet frame, without the 4-byte
    struct tun_pi (flags, proto) tun_put_user/tun_get_user would otherwise add. No
    IFF_VNET_HDR, so the device offers no checksum or segmentation offload
    (tun_net_fix_features masks TUN_USER_FEATURES until TUNSETOFFLOAD) and every frame
    read carries complete checksums.
    """
    raw = name.encode()
    if not raw or len(raw) >= IFNAMSIZ or "/" in name or any(c.isspace() for c in name):
        # dev_valid_name() would refuse it; an over-long name would be cut by the struct.
        raise OSError(errno.EINVAL, f"tap {name!r}: not a valid interface name (1-15 bytes)")
    try:
        fd = os.open("/dev/net/tun", os.O_RDWR | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as e:
        raise OSError(e.errno, f"tap {name!r}: cannot open /dev/net/tun: {e.strerror}") from None
    try:
        fcntl.ioctl(fd, TUNSETIFF, _IFREQ.pack(raw, IFF_TAP | IFF_NO_PI))
    except OSError as e:
        os.close(fd)
        # EBUSY: another fd is attached to a single-queue device of that name; EINVAL:
        # the name belongs to a device that is not a TAP, or flags differ (tun_set_iff).
        raise OSError(e.errno, f"tap {name!r}: TUNSETIFF failed: {e.strerror}") from None
    return fd


def _ip_binary() -> str:
    path = shutil.which("ip")
    if path is None:
        raise FileNotFoundError(errno.ENOENT, "the `ip` command (iproute2) is not installed")
    return path


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    cmd = [_ip_binary(), *args]
    try:
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=IP_TIMEOUT, check=False)
    except subprocess.TimeoutExpired:
        raise OSError(errno.ETIMEDOUT, f"`{' '.join(cmd)}` did not finish in {IP_TIMEOUT}s") from None
    if check and r.returncode != 0:
        raise OSError(
            errno.EIO, f"`{' '.join(cmd)}` failed ({r.returncode}): {r.stderr.strip() or r.stdout.strip()}"
        )
    return r


def netns_exists(ns: str) -> bool:
    out = _ip("-j", "netns", "list").stdout.strip()
    names = {e.get("name") for e in json.loads(out)} if out else set()
    return ns in names


def _link_exists(name: str, ns: str | None = None) -> bool:
    where = ["-n", ns] if ns is not None else []
    return _ip(*where, "link", "show", "dev", name, check=False).returncode == 0


def netns_attach(name: str, ns: str, kernel_addr: str = "10.99.0.1/24", mtu: int = 1500) -> None:
    """Move TAP device `name` (just opened in this namespace) into namespace `ns`,
    creating `ns` if missing, and give the kernel's side `kernel_addr`, `mtu`, and up
    (with lo up too).

    Safe to repeat after a restart: an existing `ns` is reused, and a device `name`
    already in `ns` while ours is still here is stale (a persistent TAP, or one still
    held open by a leftover process) and is deleted first, since the move would fail
    with EEXIST (dev_change_net_namespace). If ours is no longer here but `ns` has the
    name, the move already happened and only the configuration is (re)applied.
    """
    if not netns_exists(ns):
        r = _ip("netns", "add", ns, check=False)
        if r.returncode != 0 and not netns_exists(ns):
            raise OSError(errno.EIO, f"tap {name!r}: cannot create netns {ns!r}: {r.stderr.strip()}")
    here = _link_exists(name)
    there = _link_exists(name, ns)
    if here:
        if there:
            _ip("-n", ns, "link", "del", "dev", name)
        _ip("link", "set", "dev", name, "netns", ns)
    elif not there:
        raise OSError(errno.ENODEV, f"tap {name!r}: no such device here or in netns {ns!r}")
    _ip("-n", ns, "link", "set", "dev", "lo", "up")
    _ip("-n", ns, "addr", "replace", kernel_addr, "dev", name)
    _ip("-n", ns, "link", "set", "dev", name, "mtu", str(mtu), "up")


def netns_remove(ns: str) -> None:
    """Delete namespace `ns` if it exists. A TAP device still inside goes with it:
    cleanup_net's default_device_exit_batch deletes devices that have rtnl_link_ops,
    which tun has; one whose fd was closed is already gone."""
    if netns_exists(ns):
        r = _ip("netns", "del", ns, check=False)
        if r.returncode != 0 and netns_exists(ns):
            raise OSError(errno.EIO, f"cannot delete netns {ns!r}: {r.stderr.strip()}")


class TapLink:
    """The emulator's end of a TAP device, on an asyncio (or uvloop) loop.

    Ownership: frames handed to on_frames are new `bytes` the callee keeps; a frame
    given to xmit is copied into the kernel before xmit returns.
    """

    __slots__ = ("_buf", "_fd", "_loop", "_mv", "error", "max_batch", "on_frames")

    def __init__(self, fd: int, on_frames: Callable[[list[bytes]], None], max_batch: int = 64) -> None:
        if max_batch < 1:
            raise ValueError(f"max_batch must be at least 1, got {max_batch}")
        self._fd: int | None = fd
        self.on_frames = on_frames
        self.max_batch = max_batch
        self._loop: asyncio.AbstractEventLoop | None = None
        self._buf = bytearray(TAP_FRAME_MAX)
        self._mv = memoryview(self._buf)
        # Set when the device went away under the fd (EBADFD: tun_get() found no device,
        # e.g. its namespace was deleted); the link has no carrier from then on.
        self.error: OSError | None = None

    @property
    def fd(self) -> int | None:
        return self._fd

    @property
    def carrier(self) -> bool:
        """tun_set_iff turns the carrier on when the fd attaches (netif_carrier_on) and
        __tun_detach turns it off when the last one closes: on while the fd is open and
        the device exists."""
        return self._fd is not None and self.error is None

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        if self._fd is None:
            raise OSError(errno.EBADF, "tap link is closed")
        self._loop = loop
        loop.add_reader(self._fd, self._on_readable)

    def _stop_reading(self) -> None:
        if self._loop is not None and self._fd is not None:
            self._loop.remove_reader(self._fd)
        self._loop = None

    def _lost(self, e: OSError) -> None:
        # The fd stays readable forever (tun_chr_poll reports EPOLLERR with no device),
        # so reading on would spin: stop, and leave closing to close().
        self.error = e
        self._stop_reading()

    def _on_readable(self) -> None:
        fd = self._fd
        if fd is None:
            return
        batch: list[bytes] = []
        buf, mv = [self._buf], self._mv
        # Like a NAPI poll's weight: at most max_batch frames per wakeup, so one busy
        # device cannot starve the rest of the loop; level-triggered readiness brings
        # us back for the remainder.
        for _ in range(self.max_batch):
            try:
                n = os.readv(fd, buf)
            except BlockingIOError:
                break
            except OSError as e:
                self._lost(e)
                break
            batch.append(bytes(mv[:n]))
        if batch:
            self.on_frames(batch)

    def xmit(self, frame: bytes | bytearray | memoryview) -> bool:
        """Write one frame for the kernel to receive; never blocks. False when the frame
        was not taken (the caller counts the drop): the link is closed or lost, or
        tun_get_user refused it (see _XMIT_DROP). tun_get_user takes a frame whole or
        not at all, and does not pad a frame shorter than ETH_ZLEN."""
        fd = self._fd
        if fd is None or self.error is not None:
            return False
        try:
            os.write(fd, frame)
        except OSError as e:
            if e.errno in _XMIT_DROP:
                return False
            if e.errno == errno.EBADFD:
                self._lost(e)
                return False
            raise
        return True

    def close(self) -> None:
        self._stop_reading()
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)
