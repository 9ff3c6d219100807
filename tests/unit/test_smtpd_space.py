"""The spool's free space for queue_minfree: measured in a disk thread once a
second while the listener runs, never on the event loop (smtpd/space.py)."""

from __future__ import annotations

import asyncio
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
async def test_measured_in_a_disk_thread_at_start_and_then_every_interval(
        spool: Spool, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []
    figures = iter([5_000_000, 7_000_000])

    def statvfs(path: str) -> os.statvfs_result:
        calls.append(threading.current_thread().name)
        figure = next(figures, 7_000_000)
        return os.statvfs_result((4096, 1, figure, figure, figure, 0, 0, 0, 0, 255))

    monkeypatch.setattr(space.os, "statvfs", statvfs)
    monkeypatch.setattr(space, "REFRESH_SECONDS", 0.05)
    free = FreeSpace(spool)
    assert free.latest() is None  # nothing measured before start
    await free.start()
    assert free.latest() == 5_000_000  # known before the first MAIL
    await until(lambda: free.latest() == 7_000_000)  # and kept fresh
    free.stop()
    assert threading.main_thread().name not in calls  # never the loop's thread
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


@pytest.mark.asyncio
async def test_listeners_on_one_spool_share_one_measurement(
        spool: Spool, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []

    def statvfs(path: str) -> os.statvfs_result:
        calls.append(path)
        return os.statvfs_result((4096, 1, 9, 9, 9, 0, 0, 0, 0, 255))

    monkeypatch.setattr(space.os, "statvfs", statvfs)
    monkeypatch.setattr(space, "REFRESH_SECONDS", 0.02)
    smtp, submission = FreeSpace.of(spool), FreeSpace.of(spool)
    assert smtp is submission  # the file system's figure, not the listener's
    await smtp.start()
    await submission.start()
    smtp.stop()  # one listener gone: the other still gets fresh figures
    before = len(calls)
    await until(lambda: len(calls) >= before + 2)
    submission.stop()  # the last one gone: measuring stops, the entry is dropped
    assert FreeSpace.of(spool) is not smtp
    await asyncio.sleep(0)  # let the cancellation land
    assert not [task for task in asyncio.all_tasks()
                if getattr(task.get_coro(), "__qualname__", "") == "FreeSpace._every_second"]
    spool.close()
