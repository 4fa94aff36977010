"""Linux errno numbers (x86_64 uses asm-generic) and glibc's messages for them.

The values are the kernel's, not the host Python's: the socket service answers with
Linux numbers whatever it runs on, and clients map them back with this module.
"""

from typing import Final

# include/uapi/asm-generic/errno-base.h
EPERM: Final = 1
ENOENT: Final = 2
ESRCH: Final = 3
EINTR: Final = 4
EIO: Final = 5
ENXIO: Final = 6
E2BIG: Final = 7
ENOEXEC: Final = 8
EBADF: Final = 9
ECHILD: Final = 10
EAGAIN: Final = 11
ENOMEM: Final = 12
EACCES: Final = 13
EFAULT: Final = 14
ENOTBLK: Final = 15
EBUSY: Final = 16
EEXIST: Final = 17
EXDEV: Final = 18
ENODEV: Final = 19
ENOTDIR: Final = 20
EISDIR: Final = 21
EINVAL: Final = 22
ENFILE: Final = 23
EMFILE: Final = 24
ENOTTY: Final = 25
ETXTBSY: Final = 26
EFBIG: Final = 27
ENOSPC: Final = 28
ESPIPE: Final = 29
EROFS: Final = 30
EMLINK: Final = 31
EPIPE: Final = 32
EDOM: Final = 33
ERANGE: Final = 34

# include/uapi/asm-generic/errno.h
EDEADLK: Final = 35
ENAMETOOLONG: Final = 36
ENOLCK: Final = 37
ENOSYS: Final = 38
ENOTEMPTY: Final = 39
ELOOP: Final = 40
ENOMSG: Final = 42
EIDRM: Final = 43
ECHRNG: Final = 44
EL2NSYNC: Final = 45
EL3HLT: Final = 46
EL3RST: Final = 47
ELNRNG: Final = 48
EUNATCH: Final = 49
ENOCSI: Final = 50
EL2HLT: Final = 51
EBADE: Final = 52
EBADR: Final = 53
EXFULL: Final = 54
ENOANO: Final = 55
EBADRQC: Final = 56
EBADSLT: Final = 57
EBFONT: Final = 59
ENOSTR: Final = 60
ENODATA: Final = 61
ETIME: Final = 62
ENOSR: Final = 63
ENONET: Final = 64
ENOPKG: Final = 65
EREMOTE: Final = 66
ENOLINK: Final = 67
EADV: Final = 68
ESRMNT: Final = 69
ECOMM: Final = 70
EPROTO: Final = 71
EMULTIHOP: Final = 72
EDOTDOT: Final = 73
EBADMSG: Final = 74
EOVERFLOW: Final = 75
ENOTUNIQ: Final = 76
EBADFD: Final = 77
EREMCHG: Final = 78
ELIBACC: Final = 79
ELIBBAD: Final = 80
ELIBSCN: Final = 81
ELIBMAX: Final = 82
ELIBEXEC: Final = 83
EILSEQ: Final = 84
ERESTART: Final = 85
ESTRPIPE: Final = 86
EUSERS: Final = 87
ENOTSOCK: Final = 88
EDESTADDRREQ: Final = 89
EMSGSIZE: Final = 90
EPROTOTYPE: Final = 91
ENOPROTOOPT: Final = 92
EPROTONOSUPPORT: Final = 93
ESOCKTNOSUPPORT: Final = 94
EOPNOTSUPP: Final = 95
EPFNOSUPPORT: Final = 96
EAFNOSUPPORT: Final = 97
EADDRINUSE: Final = 98
EADDRNOTAVAIL: Final = 99
ENETDOWN: Final = 100
ENETUNREACH: Final = 101
ENETRESET: Final = 102
ECONNABORTED: Final = 103
ECONNRESET: Final = 104
ENOBUFS: Final = 105
EISCONN: Final = 106
ENOTCONN: Final = 107
ESHUTDOWN: Final = 108
ETOOMANYREFS: Final = 109
ETIMEDOUT: Final = 110
ECONNREFUSED: Final = 111
EHOSTDOWN: Final = 112
EHOSTUNREACH: Final = 113
EALREADY: Final = 114
EINPROGRESS: Final = 115
ESTALE: Final = 116
EUCLEAN: Final = 117
ENOTNAM: Final = 118
ENAVAIL: Final = 119
EISNAM: Final = 120
EREMOTEIO: Final = 121
EDQUOT: Final = 122
ENOMEDIUM: Final = 123
EMEDIUMTYPE: Final = 124
ECANCELED: Final = 125
ENOKEY: Final = 126
EKEYEXPIRED: Final = 127
EKEYREVOKED: Final = 128
EKEYREJECTED: Final = 129
EOWNERDEAD: Final = 130
ENOTRECOVERABLE: Final = 131
ERFKILL: Final = 132
EHWPOISON: Final = 133

# Aliases: errno.h defines EWOULDBLOCK and EDEADLOCK as the same numbers; ENOTSUP is
# glibc's (bits/errno.h) name for the kernel's EOPNOTSUPP.
EWOULDBLOCK: Final = EAGAIN
EDEADLOCK: Final = EDEADLK
ENOTSUP: Final = EOPNOTSUPP

# (value, canonical name, glibc strerror text). The canonical name is the kernel's
# (EAGAIN, EDEADLK, EOPNOTSUPP); the text is glibc's (sysdeps/gnu/errlist.h), which is
# what strerror(3) and perror(3) print, not the kernel header comments (errno-base.h
# says "I/O error", glibc "Input/output error").
_TABLE: Final[tuple[tuple[int, str, str], ...]] = (
    (EPERM, "EPERM", "Operation not permitted"),
    (ENOENT, "ENOENT", "No such file or directory"),
    (ESRCH, "ESRCH", "No such process"),
    (EINTR, "EINTR", "Interrupted system call"),
    (EIO, "EIO", "Input/output error"),
    (ENXIO, "ENXIO", "No such device or address"),
    (E2BIG, "E2BIG", "Argument list too long"),
    (ENOEXEC, "ENOEXEC", "Exec format error"),
    (EBADF, "EBADF", "Bad file descriptor"),
    (ECHILD, "ECHILD", "No child processes"),
    (EAGAIN, "EAGAIN", "Resource temporarily unavailable"),
    (ENOMEM, "ENOMEM", "Cannot allocate memory"),
    (EACCES, "EACCES", "Permission denied"),
    (EFAULT, "EFAULT", "Bad address"),
    (ENOTBLK, "ENOTBLK", "Block device required"),
    (EBUSY, "EBUSY", "Device or resource busy"),
    (EEXIST, "EEXIST", "File exists"),
    (EXDEV, "EXDEV", "Invalid cross-device link"),
    (ENODEV, "ENODEV", "No such device"),
    (ENOTDIR, "ENOTDIR", "Not a directory"),
    (EISDIR, "EISDIR", "Is a directory"),
    (EINVAL, "EINVAL", "Invalid argument"),
    (ENFILE, "ENFILE", "Too many open files in system"),
    (EMFILE, "EMFILE", "Too many open files"),
    (ENOTTY, "ENOTTY", "Inappropriate ioctl for device"),
    (ETXTBSY, "ETXTBSY", "Text file busy"),
    (EFBIG, "EFBIG", "File too large"),
    (ENOSPC, "ENOSPC", "No space left on device"),
    (ESPIPE, "ESPIPE", "Illegal seek"),
    (EROFS, "EROFS", "Read-only file system"),
    (EMLINK, "EMLINK", "Too many links"),
    (EPIPE, "EPIPE", "Broken pipe"),
    (EDOM, "EDOM", "Numerical argument out of domain"),
    (ERANGE, "ERANGE", "Numerical result out of range"),
    (EDEADLK, "EDEADLK", "Resource deadlock avoided"),
    (ENAMETOOLONG, "ENAMETOOLONG", "File name too long"),
    (ENOLCK, "ENOLCK", "No locks available"),
    (ENOSYS, "ENOSYS", "Function not implemented"),
    (ENOTEMPTY, "ENOTEMPTY", "Directory not empty"),
    (ELOOP, "ELOOP", "Too many levels of symbolic links"),
    (ENOMSG, "ENOMSG", "No message of desired type"),
    (EIDRM, "EIDRM", "Identifier removed"),
    (ECHRNG, "ECHRNG", "Channel number out of range"),
    (EL2NSYNC, "EL2NSYNC", "Level 2 not synchronized"),
    (EL3HLT, "EL3HLT", "Level 3 halted"),
    (EL3RST, "EL3RST", "Level 3 reset"),
    (ELNRNG, "ELNRNG", "Link number out of range"),
    (EUNATCH, "EUNATCH", "Protocol driver not attached"),
    (ENOCSI, "ENOCSI", "No CSI structure available"),
    (EL2HLT, "EL2HLT", "Level 2 halted"),
    (EBADE, "EBADE", "Invalid exchange"),
    (EBADR, "EBADR", "Invalid request descriptor"),
    (EXFULL, "EXFULL", "Exchange full"),
    (ENOANO, "ENOANO", "No anode"),
    (EBADRQC, "EBADRQC", "Invalid request code"),
    (EBADSLT, "EBADSLT", "Invalid slot"),
    (EBFONT, "EBFONT", "Bad font file format"),
    (ENOSTR, "ENOSTR", "Device not a stream"),
    (ENODATA, "ENODATA", "No data available"),
    (ETIME, "ETIME", "Timer expired"),
    (ENOSR, "ENOSR", "Out of streams resources"),
    (ENONET, "ENONET", "Machine is not on the network"),
    (ENOPKG, "ENOPKG", "Package not installed"),
    (EREMOTE, "EREMOTE", "Object is remote"),
    (ENOLINK, "ENOLINK", "Link has been severed"),
    (EADV, "EADV", "Advertise error"),
    (ESRMNT, "ESRMNT", "Srmount error"),
    (ECOMM, "ECOMM", "Communication error on send"),
    (EPROTO, "EPROTO", "Protocol error"),
    (EMULTIHOP, "EMULTIHOP", "Multihop attempted"),
    (EDOTDOT, "EDOTDOT", "RFS specific error"),
    (EBADMSG, "EBADMSG", "Bad message"),
    (EOVERFLOW, "EOVERFLOW", "Value too large for defined data type"),
    (ENOTUNIQ, "ENOTUNIQ", "Name not unique on network"),
    (EBADFD, "EBADFD", "File descriptor in bad state"),
    (EREMCHG, "EREMCHG", "Remote address changed"),
    (ELIBACC, "ELIBACC", "Can not access a needed shared library"),
    (ELIBBAD, "ELIBBAD", "Accessing a corrupted shared library"),
    (ELIBSCN, "ELIBSCN", ".lib section in a.out corrupted"),
    (ELIBMAX, "ELIBMAX", "Attempting to link in too many shared libraries"),
    (ELIBEXEC, "ELIBEXEC", "Cannot exec a shared library directly"),
    (EILSEQ, "EILSEQ", "Invalid or incomplete multibyte or wide character"),
    (ERESTART, "ERESTART", "Interrupted system call should be restarted"),
    (ESTRPIPE, "ESTRPIPE", "Streams pipe error"),
    (EUSERS, "EUSERS", "Too many users"),
    (ENOTSOCK, "ENOTSOCK", "Socket operation on non-socket"),
    (EDESTADDRREQ, "EDESTADDRREQ", "Destination address required"),
    (EMSGSIZE, "EMSGSIZE", "Message too long"),
    (EPROTOTYPE, "EPROTOTYPE", "Protocol wrong type for socket"),
    (ENOPROTOOPT, "ENOPROTOOPT", "Protocol not available"),
    (EPROTONOSUPPORT, "EPROTONOSUPPORT", "Protocol not supported"),
    (ESOCKTNOSUPPORT, "ESOCKTNOSUPPORT", "Socket type not supported"),
    (EOPNOTSUPP, "EOPNOTSUPP", "Operation not supported"),
    (EPFNOSUPPORT, "EPFNOSUPPORT", "Protocol family not supported"),
    (EAFNOSUPPORT, "EAFNOSUPPORT", "Address family not supported by protocol"),
    (EADDRINUSE, "EADDRINUSE", "Address already in use"),
    (EADDRNOTAVAIL, "EADDRNOTAVAIL", "Cannot assign requested address"),
    (ENETDOWN, "ENETDOWN", "Network is down"),
    (ENETUNREACH, "ENETUNREACH", "Network is unreachable"),
    (ENETRESET, "ENETRESET", "Network dropped connection on reset"),
    (ECONNABORTED, "ECONNABORTED", "Software caused connection abort"),
    (ECONNRESET, "ECONNRESET", "Connection reset by peer"),
    (ENOBUFS, "ENOBUFS", "No buffer space available"),
    (EISCONN, "EISCONN", "Transport endpoint is already connected"),
    (ENOTCONN, "ENOTCONN", "Transport endpoint is not connected"),
    (ESHUTDOWN, "ESHUTDOWN", "Cannot send after transport endpoint shutdown"),
    (ETOOMANYREFS, "ETOOMANYREFS", "Too many references: cannot splice"),
    (ETIMEDOUT, "ETIMEDOUT", "Connection timed out"),
    (ECONNREFUSED, "ECONNREFUSED", "Connection refused"),
    (EHOSTDOWN, "EHOSTDOWN", "Host is down"),
    (EHOSTUNREACH, "EHOSTUNREACH", "No route to host"),
    (EALREADY, "EALREADY", "Operation already in progress"),
    (EINPROGRESS, "EINPROGRESS", "Operation now in progress"),
    (ESTALE, "ESTALE", "Stale file handle"),
    (EUCLEAN, "EUCLEAN", "Structure needs cleaning"),
    (ENOTNAM, "ENOTNAM", "Not a XENIX named type file"),
    (ENAVAIL, "ENAVAIL", "No XENIX semaphores available"),
    (EISNAM, "EISNAM", "Is a named type file"),
    (EREMOTEIO, "EREMOTEIO", "Remote I/O error"),
    (EDQUOT, "EDQUOT", "Disk quota exceeded"),
    (ENOMEDIUM, "ENOMEDIUM", "No medium found"),
    (EMEDIUMTYPE, "EMEDIUMTYPE", "Wrong medium type"),
    (ECANCELED, "ECANCELED", "Operation canceled"),
    (ENOKEY, "ENOKEY", "Required key not available"),
    (EKEYEXPIRED, "EKEYEXPIRED", "Key has expired"),
    (EKEYREVOKED, "EKEYREVOKED", "Key has been revoked"),
    (EKEYREJECTED, "EKEYREJECTED", "Key was rejected by service"),
    (EOWNERDEAD, "EOWNERDEAD", "Owner died"),
    (ENOTRECOVERABLE, "ENOTRECOVERABLE", "State not recoverable"),
    (ERFKILL, "ERFKILL", "Operation not possible due to RF-kill"),
    (EHWPOISON, "EHWPOISON", "Memory page has hardware error"),
)

errorcode: Final[dict[int, str]] = {value: name for value, name, _ in _TABLE}
_MESSAGES: Final[dict[int, str]] = {value: text for value, _, text in _TABLE}


def strerror(code: int) -> str:
    """glibc's strerror(3) text; numbers it has no text for (41, 58, >133) read as
    "Unknown error N" exactly as glibc prints them."""
    if code == 0:
        return "Success"
    return _MESSAGES.get(code, f"Unknown error {code}")


def kernel_error(code: int, detail: str | None = None) -> OSError:
    """An OSError carrying a Linux errno, as a syscall in this emulated stack fails.

    The message is strerror(code), or "strerror(code): detail" when the caller has a
    more specific reason to give. An unknown number is a bug in the caller, so it
    raises ValueError rather than inventing an errno the kernel never returns.
    Python may pick an OSError subclass from the number (ENOENT gives
    FileNotFoundError); on Linux those numbers agree with these.
    """
    if code not in errorcode:
        raise ValueError(f"not a Linux errno: {code!r}")
    message = strerror(code)
    if detail:
        message = f"{message}: {detail}"
    return OSError(code, message)
