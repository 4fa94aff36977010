import errno as host_errno
import os
import platform
import re
import sys
from pathlib import Path

import pytest

from services.core import errno
from services.core.errno import errorcode, kernel_error, strerror

LINUX = sys.platform == "linux"
GLIBC = LINUX and platform.libc_ver()[0] == "glibc"
UAPI_HEADERS = (
    Path("/usr/include/asm-generic/errno-base.h"),
    Path("/usr/include/asm-generic/errno.h"),
)


def test_sample_of_kernel_values() -> None:
    assert errno.EPERM == 1
    assert errno.ENOENT == 2
    assert errno.EBADF == 9
    assert errno.EAGAIN == 11
    assert errno.ENOMEM == 12
    assert errno.EINVAL == 22
    assert errno.EPIPE == 32
    assert errno.EDEADLK == 35
    assert errno.ENOSYS == 38
    assert errno.ENOTSOCK == 88
    assert errno.EDESTADDRREQ == 89
    assert errno.EMSGSIZE == 90
    assert errno.ENOPROTOOPT == 92
    assert errno.EOPNOTSUPP == 95
    assert errno.EAFNOSUPPORT == 97
    assert errno.EADDRINUSE == 98
    assert errno.EADDRNOTAVAIL == 99
    assert errno.ENETUNREACH == 101
    assert errno.ENOBUFS == 105
    assert errno.EISCONN == 106
    assert errno.ENOTCONN == 107
    assert errno.ECONNREFUSED == 111
    assert errno.EHOSTUNREACH == 113
    assert errno.EHWPOISON == 133


def test_aliases() -> None:
    assert errno.EWOULDBLOCK == errno.EAGAIN == 11
    assert errno.EDEADLOCK == errno.EDEADLK == 35
    assert errno.ENOTSUP == errno.EOPNOTSUPP == 95


def test_errorcode_uses_the_kernels_canonical_names() -> None:
    assert errorcode[11] == "EAGAIN"
    assert errorcode[35] == "EDEADLK"
    assert errorcode[95] == "EOPNOTSUPP"
    assert errorcode[98] == "EADDRINUSE"
    # 1..133 without the two holes of errno.h (41 and 58 were never assigned).
    assert sorted(errorcode) == [n for n in range(1, 134) if n not in (41, 58)]
    for value, name in errorcode.items():
        assert getattr(errno, name) == value


@pytest.mark.skipif(not all(p.exists() for p in UAPI_HEADERS), reason="no kernel UAPI headers")
def test_matches_the_installed_kernel_headers() -> None:
    defined: dict[str, str] = {}
    for header in UAPI_HEADERS:
        for name, value in re.findall(r"^#define\s+(E[A-Z0-9]+)\s+(\w+)", header.read_text(), re.M):
            defined[name] = value
    resolved = {n: int(v) if v.isdigit() else int(defined[v]) for n, v in defined.items()}
    assert {n: getattr(errno, n) for n in resolved} == resolved
    assert set(errorcode.values()) == {n for n, v in defined.items() if v.isdigit()}


@pytest.mark.skipif(not LINUX, reason="the host errno module has Linux numbers only on Linux")
def test_matches_pythons_errno_on_linux() -> None:
    names = [*errorcode.values(), "EWOULDBLOCK", "EDEADLOCK", "ENOTSUP"]
    compared = [n for n in names if hasattr(host_errno, n)]
    # Python 3.11 lacks a few rare ones (EHWPOISON); everything it has must agree.
    assert len(compared) >= 125
    for name in compared:
        assert getattr(errno, name) == getattr(host_errno, name), name


def test_strerror_is_glibcs_text() -> None:
    assert strerror(98) == "Address already in use"
    assert strerror(11) == "Resource temporarily unavailable"
    assert strerror(5) == "Input/output error"
    assert strerror(90) == "Message too long"
    assert strerror(95) == "Operation not supported"
    assert strerror(111) == "Connection refused"
    assert strerror(113) == "No route to host"
    assert strerror(133) == "Memory page has hardware error"
    assert strerror(0) == "Success"
    assert strerror(41) == "Unknown error 41"
    assert strerror(134) == "Unknown error 134"
    assert strerror(-3) == "Unknown error -3"


@pytest.mark.skipif(not GLIBC, reason="os.strerror is glibc's only on glibc systems")
def test_strerror_matches_this_machines_glibc() -> None:
    for code in range(0, 140):
        assert strerror(code) == os.strerror(code), code


def test_kernel_error() -> None:
    error = kernel_error(errno.EADDRINUSE)
    assert isinstance(error, OSError)
    assert error.errno == 98
    assert error.strerror == "Address already in use"
    assert str(error) == "[Errno 98] Address already in use"


def test_kernel_error_with_detail() -> None:
    error = kernel_error(errno.EINVAL, "IP_TTL must be 1..255 or -1")
    assert error.errno == 22
    assert error.strerror == "Invalid argument: IP_TTL must be 1..255 or -1"


@pytest.mark.skipif(not LINUX, reason="OSError picks subclasses by the host's numbers")
def test_kernel_error_subclass_on_linux() -> None:
    assert isinstance(kernel_error(errno.ECONNREFUSED), ConnectionRefusedError)
    assert isinstance(kernel_error(errno.EAGAIN), BlockingIOError)


@pytest.mark.parametrize("code", [0, 41, 58, 134, -1, 512])
def test_kernel_error_refuses_numbers_linux_never_returns(code: int) -> None:
    with pytest.raises(ValueError, match="not a Linux errno"):
        kernel_error(code)
