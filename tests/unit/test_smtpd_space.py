"""The spool's free space for queue_minfree: measured in a disk thread, at
most once a second, never on the event loop (smtpd/space.py)."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest

from mta.smtpd import space
from mta.smtpd.space import FreeSpace
from mta.spool import Spool
from tests.helpers import until


@pytest.fixture
def spool(tmp_path: Path) -> Spool:
    spool = Spool(tmp_path / "queue", fsync=False)
    spool.create()
    return spool


@pytest.mark.asyncio
async def test_measured_off_the_loop_and_at_most_once_a_second(
        spool: Spool, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []
    real = os.statvfs

    def statvfs(path: str) -> os.statvfs_result:
        calls.append(threading.current_thread().name)
        return real(path)

    monkeypatch.setattr(space.os, "statvfs", statvfs)
    clock = [1000.0]
    monkeypatch.setattr(space, "clock", lambda: clock[0])
    free = FreeSpace(spool)
    assert free.latest() is None  # nothing measured yet: the caller decides
    await until(lambda: free.bytes is not None)
    first = free.bytes
    assert isinstance(first, int) and first > 0
    for _ in range(5):
        assert free.latest() == first  # within the second: no new measurement
    assert len(calls) == 1
    clock[0] += space.REFRESH_SECONDS
    free.latest()
    await until(lambda: len(calls) == 2)
    assert threading.main_thread().name not in calls  # always a disk thread
    spool.close()


@pytest.mark.asyncio
async def test_an_unreadable_file_system_gives_no_figure(spool: Spool,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    def failing(path: str) -> os.statvfs_result:
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(space.os, "statvfs", failing)
    free = FreeSpace(spool)
    assert await free.measure() is None
    spool.close()
