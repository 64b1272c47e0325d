"""Time for tape: a simulated clock and the LTO timing model that drives it.

Tape cost is dominated by mechanics (threading, winding, streaming), not CPU.
Benchmarks and planners need those seconds without waiting for them, so the
emulator charges every operation to a :class:`SimulatedClock` using the figures
of :class:`DriveTiming`. Real drives do not use this module: their time is the
wall clock.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Protocol

__all__ = ["Clock", "DriveTiming", "SimulatedClock", "SystemClock"]


class Clock(Protocol):
    """Where a component reads the time; passed in so tests can own it."""

    def now(self) -> float:
        """Seconds since an arbitrary epoch (monotonic)."""
        ...

    def advance(self, seconds: float) -> None:
        """Let ``seconds`` pass (a simulated clock jumps, a real one does nothing)."""
        ...


class SimulatedClock:
    """A clock that only moves when told, so a day of tape work costs no real time."""

    def __init__(self, start: float = 0.0) -> None:
        self._now = float(start)

    def now(self) -> float:
        return self._now

    def advance(self, seconds: float) -> None:
        if seconds < 0:
            raise ValueError("a clock cannot run backwards")
        self._now += seconds

    sleep = advance


class SystemClock:
    """The real monotonic clock; ``advance`` is a no-op because real time passes by itself."""

    def now(self) -> float:
        return time.monotonic()

    def advance(self, seconds: float) -> None:
        return None


@dataclass(frozen=True)
class DriveTiming:
    """Mechanical costs of one drive generation.

    The LTO-9 figures (:meth:`lto9`) are rounded from vendor data sheets:
    about 16 s from insertion to ready, about 56 s to rewind from mid-tape and
    unthread, roughly 100 s to wind the whole length of the tape, and 400 MB/s
    native (uncompressed) streaming. A locate costs a fixed start/stop overhead
    plus a share of ``full_length_seconds`` proportional to the distance, in
    fractions of a partition's length; LTO partitions run the full tape length
    in wraps, so both partitions start near the beginning of tape.
    """

    load_seconds: float = 16.0
    unload_seconds: float = 56.0
    full_length_seconds: float = 98.0
    locate_overhead_seconds: float = 1.0
    stream_bytes_per_second: float = 400e6
    filemark_seconds: float = 0.01

    @classmethod
    def lto9(cls) -> DriveTiming:
        return cls()

    def seek_seconds(self, fraction_of_length: float) -> float:
        """Time to move the given fraction of the tape length (0 costs nothing)."""
        distance = min(abs(fraction_of_length), 1.0)
        if distance == 0:
            return 0.0
        return self.locate_overhead_seconds + distance * self.full_length_seconds

    def transfer_seconds(self, nbytes: int) -> float:
        """Streaming time for ``nbytes`` at native rate (no compression)."""
        return nbytes / self.stream_bytes_per_second
