"""`stackemu up`'s restart policy: compose's `restart: unless-stopped` for the local
processes.

Once every service is SERVING the launcher starts one supervisor for the stack
(`python -m stackemu.supervise`) and hands it, on its standard input, how each service
was started: command line, environment, working directory, log file (the environment,
which may hold the host's secrets, stays off the disk). The supervisor holds a pidfd per
service, readable when the process ends, and starts again any service that ends while
the stack is up: the same command, environment and port, after the delay moby's
restartmanager gives a container (100 ms, doubled at each restart up to a minute, back
to 100 ms once a run lasted 10 s). Each restart is logged, and counted in the state file
(`restarts`, which `stackemu status` shows). `stackemu down` stops the supervisor before
the services, so that their ends are not taken for crashes.
"""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from typing import Any, TextIO

from stackemu import state

# moby daemon/restartmanager/restartmanager.go: defaultTimeout, maxRestartTimeout,
# backoffMultiplier, and the 10 s of execution after which the timeout starts over.
RESTART_DELAY = 0.1
RESTART_DELAY_MAX = 60.0
RESTART_BACKOFF = 2
RESET_AFTER = 10.0
# How often the supervisor looks whether its stack is still there (a `down` that could
# not stop it, a state file removed by hand): it then ends.
STACK_CHECK_INTERVAL = 1.0


@dataclass(frozen=True, slots=True)
class Spec:
    """How one service was started, to start it again the same way."""

    host: str
    layer: str
    argv: list[str]
    env: dict[str, str]
    cwd: str
    log: str

    @property
    def name(self) -> str:
        return f"{self.host}/{self.layer}"


def start(spec: Spec) -> subprocess.Popen[bytes]:
    """Start a service: its output appended to its log, in a session of its own (so
    that `down` signals its whole process group, and a terminal's ^C does not)."""
    with open(spec.log, "ab") as out:
        return subprocess.Popen(
            spec.argv,
            env=spec.env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            cwd=spec.cwd,
        )


def launch(specs: list[Spec], log: str, env: dict[str, str], cwd: str) -> subprocess.Popen[bytes]:
    """Start the supervisor of the stack whose services `specs` started (their pids are
    in the state file, which must be saved first). It reads the specs before watching."""
    with open(log, "ab") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "stackemu.supervise"],
            env=env,
            stdin=subprocess.PIPE,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            cwd=cwd,
        )
    assert proc.stdin is not None
    proc.stdin.write(json.dumps([asdict(s) for s in specs]).encode())
    proc.stdin.close()
    return proc


class Backoff:
    """restartManager.ShouldRestart's timeout: the delay before each restart."""

    def __init__(self) -> None:
        self.timeout = 0.0

    def next(self, ran_for: float) -> float:
        if ran_for >= RESET_AFTER:
            self.timeout = 0.0
        self.timeout = (
            RESTART_DELAY if self.timeout == 0 else min(self.timeout * RESTART_BACKOFF, RESTART_DELAY_MAX)
        )
        return self.timeout


def describe_exit(returncode: int | None) -> str:
    """A Popen returncode as a shell says it (negative: the signal that killed it);
    None when the process was not ours to reap."""
    if returncode is None:
        return "ended"
    if returncode < 0:
        return f"killed by {signal.Signals(-returncode).name}"
    return f"exited with status {returncode}"


class Watched:
    """One service: its pid and pidfd while it runs, its restart deadline while not."""

    def __init__(self, spec: Spec, pid: int, restarts: int) -> None:
        self.spec = spec
        self.pid = pid
        # A process this supervisor started (the launcher's first ones are not its own).
        self.proc: subprocess.Popen[bytes] | None = None
        self.pidfd: int | None = None
        self.started = time.monotonic()
        self.restart_at: float | None = None
        self.restarts = restarts
        self.backoff = Backoff()

    def watch(self) -> bool:
        """Open the pidfd; False if the process is already gone."""
        try:
            self.pidfd = os.pidfd_open(self.pid)
        except ProcessLookupError:
            return False
        return True

    def reap(self) -> int | None:
        """Close the pidfd, and reap the process if it is one this supervisor started:
        its returncode (the launcher's first processes are reaped by whoever inherited
        them, and None says so)."""
        if self.pidfd is not None:
            os.close(self.pidfd)
            self.pidfd = None
        if self.proc is None:
            return None
        # The pidfd was readable: the process has ended, and wait() returns at once.
        return self.proc.wait()


class Supervisor:
    def __init__(self, specs: list[Spec], out: TextIO) -> None:
        self.out = out
        data = state.load()
        if data is None:
            raise SystemExit("stackemu.supervise: no stack to supervise")
        self.services = []
        for s in specs:
            svc = data["hosts"][s.host][s.layer]
            self.services.append(Watched(s, svc["pid"], svc.get("restarts", 0)))
        self.stopping = False
        self._wake_r, self._wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)

    def say(self, text: str) -> None:
        print(f"{time.strftime('%Y-%m-%d %H:%M:%S')} supervise {text}", file=self.out, flush=True)

    def _stop(self, signum: int, frame: object) -> None:
        self.stopping = True

    def run(self) -> None:
        """Watch until SIGTERM or SIGINT (`stackemu down`), or until the stack is gone."""
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, self._stop)
        # The handler runs between bytecodes; the wakeup fd ends a poll() in progress.
        signal.set_wakeup_fd(self._wake_w)
        self.say(f"watching {len(self.services)} services (pid {os.getpid()})")
        for w in self.services:
            if not w.watch():
                self._ended(w)
        next_check = time.monotonic() + STACK_CHECK_INTERVAL
        while not self.stopping:
            now = time.monotonic()
            for w in self.services:
                if w.restart_at is not None and w.restart_at <= now:
                    self._restart(w)
            if now >= next_check:
                if not self._stack_is_ours():
                    self.say("the stack's state file is gone or names another supervisor: done")
                    return
                next_check = now + STACK_CHECK_INTERVAL
            deadlines = [next_check, *(w.restart_at for w in self.services if w.restart_at is not None)]
            timeout = max(0.0, min(deadlines) - time.monotonic())
            poller = select.poll()
            poller.register(self._wake_r, select.POLLIN)
            by_fd = {w.pidfd: w for w in self.services if w.pidfd is not None}
            for fd in by_fd:
                poller.register(fd, select.POLLIN)
            for fd, _ in poller.poll(timeout * 1000):
                if fd == self._wake_r:
                    while True:
                        try:
                            if not os.read(self._wake_r, 64):
                                break
                        except BlockingIOError:
                            break
                elif not self.stopping:
                    self._ended(by_fd[fd])
        self.say("stopping: the services are left to `stackemu down`")

    def _stack_is_ours(self) -> bool:
        """The state file is there and names this supervisor (or none yet: the launcher
        records it once it has started)."""
        data = state.load()
        return data is not None and data.get("supervisor", {}).get("pid", os.getpid()) == os.getpid()

    def _ended(self, w: Watched) -> None:
        returncode = w.reap()
        delay = w.backoff.next(time.monotonic() - w.started)
        w.restart_at = time.monotonic() + delay
        how = describe_exit(returncode)
        self.say(f"{w.spec.name} (pid {w.pid}) {how}: restart {w.restarts + 1} in {delay:g} s")

    def _restart(self, w: Watched) -> None:
        w.restart_at = None
        w.started = time.monotonic()
        w.proc = start(w.spec)
        w.pid = w.proc.pid
        w.restarts += 1
        self._record(w)
        self.say(f"{w.spec.name} restarted as pid {w.pid}")
        if not w.watch():
            self._ended(w)

    def _record(self, w: Watched) -> None:
        data = state.load()
        if data is None:
            return
        svc: dict[str, Any] = data["hosts"][w.spec.host][w.spec.layer]
        svc["pid"] = w.pid
        svc["restarts"] = w.restarts
        svc["restarted_at"] = time.time()
        state.save(data)


def main() -> None:
    specs = [Spec(**s) for s in json.loads(sys.stdin.read())]
    sys.stdin.close()
    Supervisor(specs, sys.stdout).run()


if __name__ == "__main__":
    main()
