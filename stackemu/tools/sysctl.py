"""`stackemu sysctl`: procps-ng 4.0 sysctl over every layer of a host: the NIC's
net.core.* (GetSysctl/SetSysctl of the NIC service), the IP layer's net.ipv4.*, and
the UDP and socket layers' (net.ipv4.udp_mem, ip_local_port_range,
net.core.rmem_default, ...), which the UDP service applies. A key goes to the layer
services/core/sysctl.py names for it; one no layer has is answered as /proc/sys
answers a missing file. --json prints the values read as one object (the
emulator's: procps has no JSON)."""

from __future__ import annotations

import errno as E
import json
from collections.abc import Sequence
from typing import Any

from services.core.sysctl import SYSCTLS
from stackemu.ip.v1 import ip_pb2
from stackemu.nic.v1 import nic_pb2
from stackemu.tools.common import Ip, Nic, Udp, err, has_service, out, strerror
from stackemu.udp.v1 import udp_pb2

USAGE = """
Usage:
 stackemu sysctl [ --host HOST ] [options] [variable[=value] ...]

Options:
  -a, --all            display all variables
  -A                   alias of -a
  -X                   alias of -a
  -e, --ignore         ignore unknown variables errors
  -N, --names          print variable names without values
  -n, --values         print only values of the given variable(s)
  -q, --quiet          do not echo variable set
  -w, --write          enable writing a value to variable
  -j, --json           print the values read as a JSON object (the emulator's)
  -h, --help           display this help and exit

Every layer's sysctls are reachable: the NIC's (net.core.netdev_budget, ...), the IP
layer's (net.ipv4.ip_forward, ...), the UDP and socket layers' (net.ipv4.udp_mem,
net.core.rmem_default, ...).

Examples:
  stackemu sysctl -a                               every sysctl of alice
  stackemu sysctl --host bob net.core.rmem_default
  stackemu sysctl -w net.ipv4.ip_local_port_range="40000 40100"
  stackemu sysctl -a --json"""

_LONG = {
    "--all": "a",
    "--ignore": "e",
    "--names": "N",
    "--values": "n",
    "--quiet": "q",
    "--write": "w",
    "--json": "j",
}


class Layers:
    """The host's NIC, and its IP and UDP services when the stack has them. A key goes
    to the layer that applies it (SysctlSpec.layer: "ip" to IP, "udp" and "socket" to
    UDP, the rest to the NIC); an unknown net.ipv4.* key to IP, any other to the NIC,
    to be refused there."""

    def __init__(self, nic: Nic, host: str | None) -> None:
        self.nic = nic
        self.host = host
        self._ip: Ip | None = None
        self._udp: Udp | None = None
        # What was read, for --json.
        self.shown: dict[str, str] = {}

    def ip(self) -> Ip | None:
        if self._ip is None and has_service("ip", self.host):
            self._ip = Ip(self.host)
        return self._ip

    def udp(self) -> Udp | None:
        if self._udp is None and has_service("udp", self.host):
            self._udp = Udp(self.host)
        return self._udp

    def close(self) -> None:
        for svc in (self._ip, self._udp):
            if svc is not None:
                svc.close()

    def call(self, key: str, rpc: str, nic_req: Any, ip_req: Any, udp_req: Any) -> Any:
        spec = SYSCTLS.get(key)
        layer = spec.layer if spec is not None else ("ip" if key.startswith("net.ipv4.") else "nic")
        if layer in ("udp", "socket"):
            udp = self.udp()
            if udp is not None:
                return udp.call(rpc, udp_req)
        if layer == "ip":
            ip = self.ip()
            if ip is not None:
                return ip.call(rpc, ip_req)
        return self.nic.call(rpc, nic_req)


def _proc_path(key: str) -> str:
    return "/proc/sys/" + key.replace(".", "/")


def _dotted(key: str) -> str:
    return key.replace("/", ".")


def main(host: str | None, argv: Sequence[str]) -> int:
    flags: set[str] = set()
    names: list[str] = []
    for a in argv:
        if a in ("-h", "--help"):
            out(USAGE)
            return 0
        if a in _LONG:
            flags.add(_LONG[a])
        elif a.startswith("-") and len(a) > 1 and not names:
            for c in a[1:]:
                if c in "aAX":
                    flags.add("a")
                elif c in "eNnqwj":
                    flags.add(c)
                else:
                    err(f"sysctl: invalid option -- '{c}'")
                    err(USAGE)
                    return 1
        else:
            names.append(a)
    if "N" in flags and "q" in flags:
        err("sysctl: options -N and -q cannot coexist\nTry `sysctl --help' for more information.")
        return 1
    with Nic(host) as nic_only:
        nic = Layers(nic_only, host)
        try:
            rc = _run(nic, names, flags)
            if "j" in flags:
                out(json.dumps(nic.shown, indent=2))
            return rc
        finally:
            nic.close()


def _run(nic: Layers, names: list[str], flags: set[str]) -> int:
    if "a" in flags:
        return _display_all(nic, "", flags)
    if not names:
        err("sysctl: no variables specified\nTry `sysctl --help' for more information.")
        return 1
    rc = 0
    for a in names:
        if "w" in flags or "=" in a:
            rc |= _write(nic, a, flags)
        else:
            rc += _read(nic, a, flags)
    return rc


def _show(nic: Layers, key: str, value: str, flags: set[str]) -> None:
    if "j" in flags:
        nic.shown[key] = value
    elif "N" in flags:
        out(key)
    elif "n" in flags:
        out(value)
    else:
        out(f"{key} = {value}")


def _all(nic: Layers) -> dict[str, str]:
    resp: nic_pb2.GetSysctlResponse = nic.nic.call("GetSysctl", nic_pb2.GetSysctlRequest())
    values = dict(resp.values)
    ip = nic.ip()
    if ip is not None:
        iresp: ip_pb2.GetSysctlResponse = ip.call("GetSysctl", ip_pb2.GetSysctlRequest())
        values.update(iresp.values)
    udp = nic.udp()
    if udp is not None:
        # The UDP service's values of the socket layer's net.core.* keys are the ones
        # in force (the NIC keeps a copy it never reads).
        uresp: udp_pb2.GetSysctlResponse = udp.call("GetSysctl", udp_pb2.GetSysctlRequest())
        values.update(uresp.values)
    return values


def _display_all(nic: Layers, prefix: str, flags: set[str]) -> int:
    values = _all(nic)
    for key in sorted(values):
        if not prefix or key.startswith(prefix + "."):
            _show(nic, key, values[key], flags)
    return 0


def _read(nic: Layers, name: str, flags: set[str]) -> int:
    """ReadSetting(): a directory (net.core) lists what is under it."""
    key = _dotted(name)
    if not key:
        err(f'sysctl: "{name}" is an unknown key')
        return 1
    resp = nic.call(
        key,
        "GetSysctl",
        nic_pb2.GetSysctlRequest(names=[key]),
        ip_pb2.GetSysctlRequest(names=[key]),
        udp_pb2.GetSysctlRequest(names=[key]),
    )
    if resp.errno == E.ENOENT or (not resp.errno and key not in resp.values):
        values = _all(nic)
        if any(k.startswith(key + ".") for k in values):
            return _display_all(nic, key, flags)
        if "e" in flags:
            return 0
        err(f"sysctl: cannot stat {_proc_path(key)}: {strerror(E.ENOENT)}")
        return 1
    if resp.errno:
        err(f'sysctl: reading key "{key}": {strerror(resp.errno)}')
        return 1
    _show(nic, key, resp.values[key], flags)
    return 0


def _write(nic: Layers, arg: str, flags: set[str]) -> int:
    """parse_setting_line() and WriteSetting()."""
    key, eq, value = arg.partition("=")
    key, value = key.strip(), value.strip()
    if not eq:
        err("sysctl: command line(0): invalid syntax, continuing...")
        return 1
    key = _dotted(key)
    resp = nic.call(
        key,
        "SetSysctl",
        nic_pb2.SetSysctlRequest(name=key, value=value),
        ip_pb2.SetSysctlRequest(name=key, value=value),
        udp_pb2.SetSysctlRequest(name=key, value=value),
    )
    if resp.errno == E.ENOENT:
        values = _all(nic)
        if any(k.startswith(key + ".") for k in values):
            # a directory: procps 4.0.2 warns and still exits 0
            err(f'sysctl: setting key "{key}": {strerror(E.EINVAL)}')
            return 0
        if "e" in flags:
            return 0
        err(f"sysctl: cannot stat {_proc_path(key)}: {strerror(E.ENOENT)}")
        return 1
    if resp.errno in (E.EPERM, E.EACCES, E.EROFS):
        err(f'sysctl: permission denied on key "{key}"')
        return 1
    if resp.errno:
        err(f'sysctl: setting key "{key}": {strerror(resp.errno)}')
        return 1
    if "q" not in flags:
        out(value if flags & {"N", "n"} else f"{key} = {value}")
    return 0
