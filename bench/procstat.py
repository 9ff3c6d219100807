"""Resource use of a whole process tree, read from /proc: CPU seconds and peak memory.

An MTA is judged by everything it runs, so both numbers cover the root
process and all its descendants. CPU: the sum over the tree's live processes
of utime+stime plus cutime+cstime, the time of children they already reaped
(Postfix's master reaps its smtpd, cleanup and smtp processes), taken before
and after a run; the difference is the run's cost. Memory: the sum of RSS
over the tree, sampled, and its peak; RSS counts shared library pages once
per process, which overstates a multi-process MTA, so the sum of PSS
(proportional set size, shared pages divided among their users) is sampled
too.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

_TICK = os.sysconf("SC_CLK_TCK")
_PAGE = os.sysconf("SC_PAGE_SIZE")


def _stat_fields(pid: int) -> list[str] | None:
    return _stat_fields_path(f"/proc/{pid}/stat")


def _stat_fields_path(path: str) -> list[str] | None:
    try:
        with open(path, "rb") as stream:
            text = stream.read().decode("ascii", "replace")
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    # The command name is in parentheses and may contain spaces.
    return text[text.rindex(")") + 2:].split()


def tree(root: int) -> list[int]:
    """The root pid and all its live descendants."""
    children: dict[int, list[int]] = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        fields = _stat_fields(int(name))
        if fields is not None:
            children.setdefault(int(fields[1]), []).append(int(name))
    found, todo = [], [root]
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo.extend(children.get(pid, ()))
    return found


@dataclass
class Cpu:
    """CPU seconds of a process tree, user and system apart."""

    user: float = 0.0
    system: float = 0.0

    @property
    def total(self) -> float:
        return self.user + self.system

    def __sub__(self, other: Cpu) -> Cpu:
        return Cpu(self.user - other.user, self.system - other.system)


def cpu(root: int) -> Cpu:
    """User and system seconds of the tree so far, reaped children included."""
    result = Cpu()
    for pid in tree(root):
        fields = _stat_fields(pid)
        if fields is None:
            continue
        # Fields 14-17 of stat(5), counted from the state field at index 0 = field 3.
        utime, stime, cutime, cstime = (int(value) for value in fields[11:15])
        result.user += (utime + cutime) / _TICK
        result.system += (stime + cstime) / _TICK
    return result


def thread_cpu(pid: int) -> dict[int, Cpu]:
    """User and system seconds of each thread of one process, by thread id."""
    result = {}
    try:
        tids = [int(name) for name in os.listdir(f"/proc/{pid}/task")]
    except FileNotFoundError:
        return {}
    for tid in tids:
        fields = _stat_fields_path(f"/proc/{pid}/task/{tid}/stat")
        if fields is not None:
            result[tid] = Cpu(int(fields[11]) / _TICK, int(fields[12]) / _TICK)
    return result


def main_and_other_threads(before: dict[int, Cpu], after: dict[int, Cpu],
                           main: int) -> tuple[Cpu, Cpu]:
    """CPU used between two thread_cpu() snapshots: the main thread (the event
    loop), and all other threads together (the spool's thread pool)."""
    loop, others = Cpu(), Cpu()
    for tid, now in after.items():
        used = now - before.get(tid, Cpu())
        target = loop if tid == main else others
        target.user += used.user
        target.system += used.system
    return loop, others


def rss(pids: list[int]) -> int:
    """Sum of resident set sizes in bytes."""
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/statm", "rb") as stream:
                total += int(stream.read().split()[1]) * _PAGE
        except (FileNotFoundError, ProcessLookupError, IndexError):
            continue
    return total


def pss(pids: list[int]) -> int:
    """Sum of proportional set sizes in bytes (shared pages split among sharers)."""
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/smaps_rollup", "rb") as stream:
                for line in stream:
                    if line.startswith(b"Pss:"):
                        total += int(line.split()[1]) * 1024
                        break
        except (FileNotFoundError, ProcessLookupError, PermissionError):
            continue
    return total


class MemorySampler:
    """Samples a tree's RSS and PSS sums in a thread; keeps the peaks."""

    def __init__(self, root: int, interval: float = 0.2) -> None:
        self.root = root
        self.interval = interval
        self.peak_rss = 0
        self.peak_pss = 0
        self.peak_processes = 0
        self.samples = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="memory-sampler", daemon=True)

    def sample(self) -> None:
        pids = tree(self.root)
        self.peak_processes = max(self.peak_processes, len(pids))
        self.peak_rss = max(self.peak_rss, rss(pids))
        self.peak_pss = max(self.peak_pss, pss(pids))
        self.samples += 1

    def _run(self) -> None:
        while not self._stop.is_set():
            self.sample()
            self._stop.wait(self.interval)

    def __enter__(self) -> MemorySampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.sample()


def wait_until(predicate: Callable[[], object], timeout: float,
               interval: float = 0.05) -> float | None:
    """Poll predicate; the monotonic time it first held, or None after timeout."""
    deadline = time.monotonic() + timeout
    while True:
        if predicate():
            return time.monotonic()
        if time.monotonic() > deadline:
            return None
        time.sleep(interval)
