"""Backoff arithmetic as a table (Postfix's rule, with jitter; no truncation to zero)."""

from __future__ import annotations

import pytest

from mta import schedule

MIN, MAX = 300.0, 4000.0


@pytest.mark.parametrize(("age", "rand", "expected"), [
    (0.0, 0.5, 300.0),  # a new message waits minimal_backoff_time
    (10.0, 0.5, 300.0),
    (299.0, 0.5, 300.0),
    (600.0, 0.5, 600.0),  # then its age: the intervals double
    (1200.0, 0.5, 1200.0),
    (3999.0, 0.5, 3999.0),
    (4000.0, 0.5, 4000.0),
    (86400.0, 0.5, 4000.0),  # capped at maximal_backoff_time
    (5 * 86400.0, 0.5, 4000.0),
    (1000.0, 0.0, 900.0),  # jitter: ±10 %
    (1000.0, 1.0, 1100.0),
    (300.0, 0.0, 300.0),  # jitter never goes below the minimum ...
    (4000.0, 1.0, 4000.0),  # ... nor above the maximum
    (0.4, 0.0, 300.0),  # sub-second ages do not truncate to 0 (maddy #678)
    (1e12, 0.5, 4000.0),  # absurd ages do not overflow
])
def test_backoff_table(age: float, rand: float, expected: float) -> None:
    assert schedule.backoff(age, MIN, MAX, rand=lambda: rand) == pytest.approx(expected)


@pytest.mark.parametrize(("minimal", "maximal", "age", "expected"), [
    (1.0, 2.0, 0.0, 1.0),  # the test daemon's settings
    (1.0, 2.0, 5.0, 2.0),
    (0.5, 0.5, 100.0, 0.5),  # fractional seconds survive
    (600.0, 300.0, 10.0, 600.0),  # maximal below minimal: minimal wins
])
def test_backoff_bounds(minimal: float, maximal: float, age: float, expected: float) -> None:
    assert schedule.backoff(age, minimal, maximal, jitter=0) == expected


@pytest.mark.parametrize(("arrival", "now", "expected"), [
    (1000.0, 1000.0, 1300.0),
    (1000.0, 2000.0, 3000.0),
    (0.0, 100000.0, 104000.0),
])
def test_next_attempt(arrival: float, now: float, expected: float) -> None:
    assert schedule.next_attempt(arrival, now, MIN, MAX, jitter=0) == expected


@pytest.mark.parametrize(("age", "lifetime", "expired"), [
    (0.0, 0.0, True),  # lifetime 0: one attempt only
    (10.0, 432000.0, False),
    (431999.0, 432000.0, False),
    (432000.0, 432000.0, True),
])
def test_expiry(age: float, lifetime: float, expired: bool) -> None:
    assert schedule.expired(1000.0, 1000.0 + age, lifetime) is expired
