"""The master's pid file tells the next master whether the last one was
killed (its receiver workers may hold the ports a moment) or stopped cleanly
(a port in use is then someone else's: the start fails at once)."""

from __future__ import annotations

from pathlib import Path

from mta import pidfile


def test_a_clean_stop_clears_the_pid_and_a_kill_leaves_it(tmp_path: Path) -> None:
    first = pidfile.MasterLock(tmp_path)
    first.acquire()
    assert not first.unclean  # no master ran on this spool before
    first.release()  # as a kill -9 leaves it: the pid still written
    second = pidfile.MasterLock(tmp_path)
    second.acquire()
    assert second.unclean
    second.clear()  # the clean end of a run
    second.release()
    assert pidfile.path_of(tmp_path).read_text() == ""
    third = pidfile.MasterLock(tmp_path)
    third.acquire()
    assert not third.unclean
    assert pidfile.path_of(tmp_path).read_text().strip().isdigit()
    third.release()
