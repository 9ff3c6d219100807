"""Where Postern's time goes: py-spy's raw (collapsed) stacks summed per function.

py-spy ``record --format raw`` writes one line per distinct stack,
``frame;frame;...;frame COUNT`` with the outermost frame first and each
frame as ``function (file:line)``. Self time is the innermost frame's;
total time counts a function once per stack it appears in. Line numbers
are dropped so that a function's samples add up.
"""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

_FRAME = re.compile(r"^(?P<function>.*?) \((?P<file>[^()]*?)(?::\d+)?\)$")


def _name(frame: str) -> str:
    match = _FRAME.match(frame.strip())
    if not match:
        return frame.strip()
    path = match.group("file")
    if path.startswith("/"):  # py-spy shortens package paths; keep two parts of others
        path = "/".join(path.rsplit("/", 2)[-2:])
    return f"{match.group('function')} ({path})"


_COMPONENTS = (("mta/smtpd/", "smtpd (receiving)"), ("mta/smtp/", "smtp (outbound client)"),
               ("mta/qmgr", "qmgr"), ("mta/spool", "spool"), ("mta/queuefile", "spool"),
               ("mta/log", "maillog"), ("mta/cleanup", "cleanup"), ("mta/tls/", "tls"),
               ("mta/", "other mta"))


_ENTRY_FRAMES = ("main (mta/", "run (mta/", "<module> (mta/")


def component(frames: list[str]) -> str:
    """The part of Postern a stack is working for: its innermost mta frame's module,
    or the event loop's own machinery when no mta frame is on the stack."""
    for frame in reversed(frames):
        if frame.startswith(_ENTRY_FRAMES):
            continue  # the program's entry, below asyncio.run: not a component
        for prefix, name in _COMPONENTS:
            if f"({prefix}" in frame:
                return name
    return "asyncio and threads, no mta frame"


def summarize(raw: Path) -> tuple[int, Counter[str], Counter[str], Counter[str],
                                  Counter[str]]:
    """Samples in all; self and total samples per function; per thread kind;
    per component."""
    self_time: Counter[str] = Counter()
    components: Counter[str] = Counter()
    total_time: Counter[str] = Counter()
    threads: Counter[str] = Counter()
    samples = 0
    for line in raw.read_text(errors="replace").splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = [_name(f) for f in stack.split(";") if f]
        if not frames:
            continue
        samples += count
        self_time[frames[-1]] += count
        for name in set(frames):
            total_time[name] += count
        # Threads: the spool's thread pool, or the event loop. A coroutine
        # stepped by the C Task implementation shows without the loop's own
        # frames below it, so "not in the pool" is the event loop.
        if any(f.startswith("_worker (concurrent/") for f in frames):
            kind = "spool thread pool"
        else:
            kind = "event loop"
        threads[kind] += count
        components[component(frames)] += count
    return samples, self_time, total_time, threads, components


def render(raw: Path, top: int = 25) -> str:
    samples, self_time, total_time, threads, components = summarize(raw)
    if not samples:
        return "no samples\n"
    lines = [f"{samples} samples (non-idle threads)", "", "by thread:"]
    for name, count in threads.most_common():
        lines.append(f"  {100 * count / samples:5.1f}%  {name}")
    lines += ["", "by component (the innermost Postern module on the stack):"]
    for name, count in components.most_common():
        lines.append(f"  {100 * count / samples:5.1f}%  {name}")
    lines += ["", f"top {top} by self time:"]
    for name, count in self_time.most_common(top):
        lines.append(f"  {100 * count / samples:5.1f}%  {name}")
    lines += ["", f"top {top} Postern functions by total time (with what they call):"]
    ours = [(name, count) for name, count in total_time.most_common()
            if "(mta/" in name and not name.startswith(("main (", "run (", "<module>"))]
    for name, count in ours[:top]:
        lines.append(f"  {100 * count / samples:5.1f}%  {name}")
    return "\n".join(lines) + "\n"
