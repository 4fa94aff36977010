"""`stackemu sysctl`: procps-ng 4.0 sysctl for a host's net.core.* sysctls (the NIC
layer's GetSysctl/SetSysctl) and net.ipv4.* ones (the IP layer's). A key no layer has
is answered as /proc/sys answers a missing file."""

from __future__ import annotations

import errno as E
from collections.abc import Sequence
from typing import Any

from stackemu.ip.v1 import ip_pb2
from stackemu.nic.v1 import nic_pb2
from stackemu.tools.common import Ip, Nic, err, has_service, out, strerror

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
  -h, --help           display this help and exit

The NIC layer's sysctls (net.core.*) and the IP layer's (net.ipv4.*) are reachable
through this command."""

_LONG = {"--all": "a", "--ignore": "e", "--names": "N", "--values": "n", "--quiet": "q", "--write": "w"}


class Layers:
    """The host's NIC, and its IP service when the stack has one: net.ipv4.* keys go
    to IP, everything else to the NIC."""

    def __init__(self, nic: Nic, host: str | None) -> None:
        self.nic = nic
        self.host = host
        self._ip: Ip | None = None

    def ip(self) -> Ip | None:
        if self._ip is None and has_service("ip", self.host):
            self._ip = Ip(self.host)
        return self._ip

    def close(self) -> None:
        if self._ip is not None:
            self._ip.close()

    def call(self, key: str, rpc: str, nic_req: Any, ip_req: Any) -> Any:
        if key.startswith("net.ipv4."):
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
                elif c in "eNnqw":
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
            return _run(nic, names, flags)
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


def _show(key: str, value: str, flags: set[str]) -> None:
    if "N" in flags:
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
    return values


def _display_all(nic: Layers, prefix: str, flags: set[str]) -> int:
    values = _all(nic)
    for key in sorted(values):
        if not prefix or key.startswith(prefix + "."):
            _show(key, values[key], flags)
    return 0


def _read(nic: Layers, name: str, flags: set[str]) -> int:
    """ReadSetting(): a directory (net.core) lists what is under it."""
    key = _dotted(name)
    if not key:
        err(f'sysctl: "{name}" is an unknown key')
        return 1
    resp = nic.call(
        key, "GetSysctl", nic_pb2.GetSysctlRequest(names=[key]), ip_pb2.GetSysctlRequest(names=[key])
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
    _show(key, resp.values[key], flags)
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
