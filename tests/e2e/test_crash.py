"""kill -9 under load: every message that got a 250 is delivered, the spool is clean.

A few kills here; ``python3 bench/crash.py`` is the long version (20 or more).
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from bench.crash import CrashReport, crash_message, run_crashes


def test_crash_message_carries_its_token_and_closing_line() -> None:
    data = crash_message(42, 300)
    assert b"\r\nX-Crash-Token: 42\r\n" in data
    assert data.endswith(b"end of message 42\r\n")


def test_report_fails_on_a_lost_message() -> None:
    report = CrashReport(sent_ok=10, drained=True)
    assert report.ok
    report.missing = [7]
    assert not report.ok


@pytest.mark.slow
def test_kill_9_under_load_loses_nothing(tmp_path: Path) -> None:
    report = asyncio.run(run_crashes(tmp_path, kills=3, sessions=5, seed=1234,
                                     min_interval=0.3, max_interval=0.8, size=1024))
    details = report.as_dict()
    assert report.kills == 3
    assert report.sent_ok > 0, details
    assert report.drained, details
    assert report.missing == [], details
    assert report.torn_deliveries == [], details
    assert report.spool_leftovers == [], details
    assert report.corrupt == [], details
    # At-least-once: every token delivered is one that was sent.
    assert report.delivered_tokens >= report.sent_ok, details
    # And no more than once into a Maildir: a copy made before a kill is
    # found by its name, not made again (local.copy_name, link(2)).
    assert report.duplicates == 0, details
