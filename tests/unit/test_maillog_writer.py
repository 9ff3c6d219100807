"""The daemon's maillog writer (mta/log.py): lines go through a pipe to a
thread in the master, so a process never waits for the file itself."""

from __future__ import annotations

import os
import re
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from mta import log as maillog


@pytest.fixture
def logfile(tmp_path: Path) -> Iterator[Path]:
    path = tmp_path / "maillog"
    maillog.setup(syslog_name="postern", hostname="mx.test", maillog_file=str(path),
                  stderr=False)
    yield path
    maillog.stop_writer()
    maillog._sink.pipe = None
    maillog.setup(syslog_name="postern", hostname="mx.test", maillog_file=None, stderr=False)


def test_lines_of_several_processes_arrive_whole_and_in_order(logfile: Path) -> None:
    fd = maillog.start_writer()
    child = os.fork()
    if child == 0:  # a receiver worker: its own pid, the master's pipe
        try:
            maillog.reopen()
            maillog.use_pipe(fd)
            for n in range(300):
                maillog.info("smtpd", f"child line {n} " + "x" * 100)
        finally:
            os._exit(0)
    for n in range(300):
        maillog.info("qmgr", f"parent line {n} " + "y" * 100)
    os.waitpid(child, 0)
    maillog.stop_writer()
    lines = logfile.read_text().splitlines()
    assert len(lines) == 600
    pattern = re.compile(r"^\w{3} [ \d]\d \d\d:\d\d:\d\d mx postern/(smtpd|qmgr)\[(\d+)\]: "
                         r"(child|parent) line (\d+) [xy]{100}$")
    order: dict[str, list[int]] = {"child": [], "parent": []}
    for line in lines:
        match = pattern.match(line)
        assert match, line
        order[match.group(3)].append(int(match.group(4)))
    assert order["child"] == list(range(300)) and order["parent"] == list(range(300))


def test_a_slow_file_does_not_hold_the_caller(logfile: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    written: list[bytes] = []
    done = threading.Event()

    def slow(data: bytes) -> None:  # a write waiting for the journal, made long
        time.sleep(0.5)
        written.append(data)
        done.set()

    monkeypatch.setattr(maillog._sink, "write_lines", slow)
    maillog.start_writer()
    started = time.monotonic()
    maillog.info("smtpd", "connect from client[192.0.2.1]")
    maillog.info("smtpd", "disconnect from client[192.0.2.1]")
    assert time.monotonic() - started < 0.1  # the thread waits, not the caller
    assert done.wait(5)
    maillog.stop_writer()
    assert b"connect from" in b"".join(written) and b"disconnect from" in b"".join(written)
    # Without the writer the caller itself waits for the file.
    started = time.monotonic()
    maillog.info("smtpd", "connect from client[192.0.2.1]")
    assert time.monotonic() - started >= 0.5


def test_without_a_reader_lines_go_to_the_file_directly(logfile: Path) -> None:
    read_end, write_end = os.pipe()
    os.close(read_end)  # the master is gone
    maillog.use_pipe(write_end)
    try:
        maillog.info("smtpd", "orphaned worker line")
    finally:
        maillog._sink.pipe = None
        os.close(write_end)
    assert "orphaned worker line" in logfile.read_text()


def test_a_line_longer_than_pipe_buf_is_written_whole(logfile: Path) -> None:
    maillog.start_writer()
    long = "z" * (2 * maillog._PIPE_BUF)
    maillog.info("cleanup", f"long {long}")
    maillog.info("cleanup", "short")
    maillog.stop_writer()
    lines = logfile.read_text().splitlines()
    assert sorted(len(line) > maillog._PIPE_BUF for line in lines) == [False, True]
    assert any(line.endswith(f"long {long}") for line in lines)


def test_reopen_while_the_writer_runs_loses_no_line(logfile: Path) -> None:
    maillog.start_writer()
    for n in range(200):
        maillog.info("qmgr", f"line {n}")
        if n % 50 == 0:
            maillog.reopen()
    maillog.stop_writer()
    assert [line.rsplit(" ", 1)[1] for line in logfile.read_text().splitlines()] == \
        [str(n) for n in range(200)]
