"""Retry timing, as pure functions: backoff with jitter and queue lifetime.

Postfix's rule (qmgr): the next attempt comes after the message's age,
clamped to [minimal_backoff_time, maximal_backoff_time], so the intervals
roughly double. We add a little jitter so that mail deferred together (a
next hop that was down) does not come back as one wave. All arithmetic is
in float seconds: no integer truncation can turn a backoff into zero
(maddy #678) and no overflow can make it negative.
"""

from __future__ import annotations

import random
from collections.abc import Callable


def backoff(age: float, minimal: float, maximal: float, *, jitter: float = 0.1,
            rand: Callable[[], float] = random.random) -> float:
    """Seconds until the next attempt for a message of this age."""
    if maximal < minimal:
        maximal = minimal
    delay = min(max(age, minimal), maximal)
    if jitter:
        delay *= 1.0 + jitter * (2.0 * rand() - 1.0)
    return min(max(delay, minimal), maximal)


def next_attempt(arrival: float, now: float, minimal: float, maximal: float, *,
                 jitter: float = 0.1, rand: Callable[[], float] = random.random) -> float:
    """The time of the next attempt for a message that arrived at arrival."""
    return now + backoff(max(0.0, now - arrival), minimal, maximal, jitter=jitter, rand=rand)


def expired(arrival: float, now: float, lifetime: float) -> bool:
    """Whether a message has been queued too long (maximal_queue_lifetime).

    A lifetime of 0 means a single attempt, as in Postfix.
    """
    return now - arrival >= lifetime
