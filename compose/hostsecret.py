#!/usr/bin/env python
"""`stackemu-hostsecret [--hold] FILE...`: the host secrets of a container deployment
(services/core/auth.py, STACKEMU_HOST_SECRET_FILE). Each FILE gets a fresh
secrets.token_hex(32) unless it already holds a secret, so that a stack started again
keeps its secrets (its running services hold them). The file is readable by the
services' user alone: run as root, it is given to uid 10001 (the image's user), as
docker-compose.yml's `secrets` service writes one per host into that host's own
volume; run as that user, it is its own, as in the Kubernetes Pod's init container.

--hold: then stay, until SIGTERM. Podman restarts a container (restart: unless-stopped)
only while every container it depends on runs, so the compose service the others
depend on must not exit."""

from __future__ import annotations

import os
import secrets
import signal
import sys

from services.core.config import ConfigError, parse_secret

UID = GID = 10001  # the Dockerfile's user


def ensure(path: str) -> bool:
    """Write a secret to path unless it holds one already; True when it wrote one."""
    try:
        with open(path) as f:
            parse_secret(f.read().removesuffix("\n"), path)
        return False
    except (FileNotFoundError, ConfigError, UnicodeDecodeError):
        pass
    tmp = f"{path}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o400)
    with os.fdopen(fd, "w") as f:
        f.write(secrets.token_hex(32) + "\n")
    if os.geteuid() == 0:
        os.chown(tmp, UID, GID)
    os.replace(tmp, path)
    return True


def main(args: list[str]) -> int:
    hold = args[:1] == ["--hold"]
    paths = args[1:] if hold else args
    if not paths:
        print("usage: stackemu-hostsecret [--hold] FILE...", file=sys.stderr)
        return 2
    for path in paths:
        try:
            made = ensure(path)
        except OSError as err:
            print(f"{path}: {err.strerror}", file=sys.stderr)
            return 1
        print(f"{path}: {'a new secret' if made else 'kept'}", flush=True)
    if hold:
        # As a container's pid 1, SIGTERM's default action would be ignored.
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
        while True:
            signal.pause()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
