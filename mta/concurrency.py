"""Per-destination concurrency with Postfix's slow start and dead-destination suspension.

The window starts at initial_destination_concurrency and grows by one with
every delivery that reached a working server, up to the destination's limit
(qmgr_queue.c, positive feedback 1). A delivery whose servers were all
unusable (connect, greeting or handshake failures: the agent marks these
results ``site_failure``) shrinks it by one, never below one, and adds
1/window to the failed cohorts; once a whole cohort has failed
(destination_concurrency_failed_cohort_limit) the destination is dead: no
delivery is attempted for minimal_backoff_time and its mail is deferred as
"delivery temporarily suspended: <last reason>". One dead or slow
destination so costs the others nothing.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import time
from collections.abc import AsyncIterator, Callable

from prometheus_client import Gauge

from mta.delivery import DeliveryResult
from mta.metrics import REGISTRY
from mta.qmgr import Destination

SUSPENDED = Gauge("mta_qmgr_destinations_suspended",
                  "Destinations suspended as dead (no delivery until the suspension ends).",
                  registry=REGISTRY)
SITE_FAILURE = "site_failure"


class FeedbackDestination(Destination):
    def __init__(self, key: tuple[str, str], limit: int, *, initial: int = 5,
                 cohort_limit: int = 1, suspend_for: float = 300.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__(key, limit)
        self.initial = max(1, min(initial, limit))
        self.window = self.initial
        self.cohort_limit = cohort_limit
        self.suspend_for = suspend_for
        self.clock = clock
        self.busy = 0
        self.failed_cohorts = 0.0
        self.reason: str | None = None
        self.suspended_until: float | None = None
        # Deliveries waiting for a slot, first come first served. A freed slot
        # wakes exactly one of them: with thousands of messages queued for one
        # next hop, waking them all on every release (a Condition's
        # notify_all) cost the queue manager 80% of its time.
        self._waiters: collections.deque[asyncio.Future[None]] = collections.deque()
        self._timer: asyncio.TimerHandle | None = None

    @contextlib.asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        if self.busy < self.window and not self._waiters:
            self.busy += 1
        else:
            waiter = asyncio.get_running_loop().create_future()
            self._waiters.append(waiter)
            try:
                await waiter  # the slot is counted for us before we are woken
            except asyncio.CancelledError:
                if waiter.done() and not waiter.cancelled():
                    self.busy -= 1  # granted, but we are going away: pass it on
                    self._grant()
                else:
                    with contextlib.suppress(ValueError):
                        self._waiters.remove(waiter)
                raise
        try:
            yield
        finally:
            self.busy -= 1
            self._grant()

    def _grant(self) -> None:
        """Hand free slots to the longest waiting deliveries."""
        while self._waiters and self.busy < self.window:
            waiter = self._waiters.popleft()
            if waiter.done():
                continue
            self.busy += 1
            waiter.set_result(None)

    def suspended_reason(self) -> str | None:
        if self.suspended_until is None:
            return None
        if self.clock() >= self.suspended_until:
            self._resume()
            return None
        return self.reason

    def record(self, results: list[DeliveryResult]) -> None:
        if not results:
            return
        if all(r.extra.get("feedback") == SITE_FAILURE for r in results):
            self._negative(results[0].text)
        else:
            self._positive()

    def _positive(self) -> None:
        self.failed_cohorts = 0.0
        if self.window < self.limit:
            self.window += 1
            self._wake()

    def _negative(self, reason: str) -> None:
        self.reason = reason
        self.failed_cohorts += 1.0 / self.window
        if self.failed_cohorts >= self.cohort_limit and self.suspended_until is None:
            self.suspended_until = self.clock() + self.suspend_for
            SUSPENDED.inc()
            with contextlib.suppress(RuntimeError):  # no loop: resumed lazily instead
                self._timer = asyncio.get_running_loop().call_later(self.suspend_for,
                                                                    self._resume)
        self.window = max(1, self.window - 1)

    def resume(self) -> None:
        self._resume()

    def _resume(self) -> None:
        if self.suspended_until is None:
            return
        self.suspended_until = None
        self.failed_cohorts = 0.0
        self.window = self.initial
        SUSPENDED.dec()
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _wake(self) -> None:
        self._grant()
