"""What one run of a scenario is given (its budget) and what it measured (a sample),
the same for the emulated stack and for the machine's kernel."""

from __future__ import annotations

from dataclasses import dataclass, field

from stackemu.bench.stats import percentile


@dataclass(frozen=True, slots=True)
class Budget:
    """Bounds on one sample: at most `count` datagrams (sends, pings), no new batch
    after `seconds`, and `timeout` seconds at most for one awaited datagram (after which
    what is still missing is counted lost and the sample ends)."""

    count: int
    seconds: float
    timeout: float


@dataclass(slots=True)
class Transfer:
    """A one-way transfer: datagrams (sends) handed to the sender's sendmsg and those
    read by the receiver, the payload bytes of both, over the seconds from the first
    send to the last datagram read."""

    sent: int = 0
    received: int = 0
    sent_bytes: int = 0
    received_bytes: int = 0
    seconds: float = 0.0

    @property
    def lost(self) -> int:
        return self.sent_bytes - self.received_bytes

    def figures(self) -> dict[str, float]:
        """rate (datagrams read per second) and goodput (MB/s of payload, 10^6 bytes)."""
        if self.seconds <= 0:
            return {"rate": 0.0, "goodput": 0.0}
        return {
            "rate": self.received / self.seconds,
            "goodput": self.received_bytes / self.seconds / 1e6,
        }

    def raw(self) -> dict[str, float | int]:
        return {
            "sent": self.sent,
            "received": self.received,
            "sent_bytes": self.sent_bytes,
            "received_bytes": self.received_bytes,
            "lost_bytes": self.lost,
            "seconds": self.seconds,
            **self.figures(),
        }


@dataclass(slots=True)
class RoundTrips:
    """Ping-pong: the round trip of each answered ping, in microseconds, and the pings
    that got no answer within the budget's timeout."""

    rtts_us: list[float] = field(default_factory=list)
    lost: int = 0

    def figures(self) -> dict[str, float]:
        if not self.rtts_us:
            return {"p50": 0.0, "p99": 0.0}
        return {"p50": percentile(self.rtts_us, 50), "p99": percentile(self.rtts_us, 99)}

    def raw(self) -> dict[str, float | int | list[float]]:
        return {
            "pings": len(self.rtts_us) + self.lost,
            "lost": self.lost,
            "rtts_us": self.rtts_us,
            **self.figures(),
        }
