"""Progress of an evaluation: a bar, images per minute and an ETA, one line per finished image.

The rate counts images finished in *this* process since it started (a resumed run does not
credit itself with the images of the killed one), so ETA = remaining / rate. Lines, not
carriage returns: the output of a day-long run is read from a log file as often as a terminal.
"""

from __future__ import annotations

import time
from collections.abc import Callable


def hms(seconds: float) -> str:
    """``1:02:03`` / ``2:03`` for a duration in seconds."""
    s = int(round(max(0.0, seconds)))
    h, m = divmod(s, 3600)
    m, s = divmod(m, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


class Progress:
    """Counts finished images of ``total`` and formats ``[k/n] bar pct rate ETA · detail``."""

    def __init__(
        self, total: int, width: int = 20, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.total, self.width, self.clock = total, width, clock
        self.done = 0
        self.t0 = clock()

    def rate_per_min(self) -> float | None:
        dt = self.clock() - self.t0
        return self.done * 60.0 / dt if self.done and dt > 0 else None

    def eta_s(self) -> float | None:
        r = self.rate_per_min()
        return (self.total - self.done) * 60.0 / r if r else None

    def step(self, detail: str) -> str:
        """Count one finished image; the progress line that announces it."""
        self.done += 1
        frac = self.done / self.total if self.total else 1.0
        full = int(frac * self.width)
        bar = "#" * full + "." * (self.width - full)
        r, eta = self.rate_per_min(), self.eta_s()
        speed = f"{r:.1f} img/min" if r else "– img/min"
        left = f"ETA {hms(eta)}" if eta is not None else "ETA –"
        return f"[{self.done}/{self.total}] {bar} {frac:4.0%} {speed}, {left} · {detail}"
