"""A simulated network link around any transport: every counted round costs latency + bytes / bandwidth.

``SimulatedLink(transport, latency_s, bandwidth_bps)`` behaves exactly like ``transport`` (same
results, same counters) and adds, for each counted ``mean``, the time a client's message would take
on the link: ``latency_s + 8 · (bytes up + bytes down of one client in this round) / bandwidth_bps``.
With ``sleep=True`` the delay is spent in ``time.sleep`` (so wall clocks include it); otherwise it is
only accumulated in ``simulated_s``. Uncounted bookkeeping (``observe``, ``status``, ...) is free.
"""

from __future__ import annotations

import time
from typing import Any

from torch import Tensor

from .transport import Transport


class SimulatedLink:
    def __init__(self, inner: Transport, latency_s: float, bandwidth_bps: float, sleep: bool = True) -> None:
        if latency_s < 0 or bandwidth_bps <= 0:
            raise ValueError("a link needs latency_s >= 0 and bandwidth_bps > 0")
        self.inner = inner
        self.latency_s, self.bandwidth_bps, self.sleep = latency_s, bandwidth_bps, sleep
        self.simulated_s = 0.0

    def delay(self, nbytes: int) -> float:
        """Seconds one round carrying ``nbytes`` per client takes on this link."""
        return self.latency_s + 8 * nbytes / self.bandwidth_bps

    def mean(self, t: Tensor, *, down: bool = True, sparse_k: int | None = None) -> Tensor:
        c = self.inner.counter
        before = c.bytes_up + c.bytes_down
        out = self.inner.mean(t, down=down, sparse_k=sparse_k)
        wait = self.delay(c.bytes_up + c.bytes_down - before)
        self.simulated_s += wait
        if self.sleep:
            time.sleep(wait)
        return out

    def __getattr__(self, name: str) -> Any:  # everything else is the wrapped transport's
        return getattr(self.inner, name)
