"""Queue ids: short, unique, and sorted by arrival.

An id is 12 characters of Crockford's base32 (digits and capitals without
I, L, O and U, so it can be read aloud): 10 for the microseconds since
2024-01-01 UTC (good until 2059), then 2 for the "lane" of the process that
made it. Within one process ids strictly increase even when the clock does
not; lanes keep processes apart (the daemon is lane 0, receiver workers take
1..N, one-shot commands such as ``mta sendmail`` take a lane from their pid).
"""

from __future__ import annotations

import os
import re
import threading
import time

ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
_EPOCH_US = 1_704_067_200_000_000  # 2024-01-01T00:00:00Z
_TIME_CHARS = 10
LENGTH = _TIME_CHARS + 2
PATTERN = re.compile(rf"[{ALPHABET}]{{{LENGTH}}}\Z")


def _encode(number: int, width: int) -> str:
    chars = []
    for _ in range(width):
        number, digit = divmod(number, 32)
        chars.append(ALPHABET[digit])
    return "".join(reversed(chars))


def _decode(text: str) -> int:
    number = 0
    for char in text:
        number = number * 32 + ALPHABET.index(char)
    return number


class QueueIdGenerator:
    """Makes ids for one process; thread-safe."""

    def __init__(self, lane: int | None = None) -> None:
        if lane is None:
            lane = 512 + os.getpid() % 512
        if not 0 <= lane < 1024:
            raise ValueError("lane must be in 0..1023")
        self._suffix = _encode(lane, 2)
        self._last = 0
        self._lock = threading.Lock()

    def next(self) -> str:
        with self._lock:
            now = time.time_ns() // 1000 - _EPOCH_US
            if now <= self._last:
                now = self._last + 1
            self._last = now
        return _encode(now, _TIME_CHARS) + self._suffix


def is_valid(qid: str) -> bool:
    return bool(PATTERN.match(qid))


def arrival_of(qid: str) -> float:
    """The time (epoch seconds) encoded in an id."""
    return (_decode(qid[:_TIME_CHARS]) + _EPOCH_US) / 1e6
