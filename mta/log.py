"""The maillog: one function per mail event, each printing Postfix's line for it.

Operators, pflogsumm, fail2ban and postfix_exporter parse these lines, so the
wording is an interface (docs/logging.md) and tests assert it with regular
expressions. Lines look like syslog's: ``Nov 22 06:55:07 mx postern/smtpd[42]: text``.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import select
import threading
import time
from collections.abc import Iterable, Sequence

_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun",
           "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


# A line written to the pipe in one write(2) of at most PIPE_BUF bytes is
# never interleaved with another process's (pipe(7)); longer ones go to the
# file directly.
_PIPE_BUF = select.PIPE_BUF
_STOP = b"\0stop\n"  # the writer's last line, never a maillog line
# How long the writer lets lines gather after the first: one wake-up and
# one write(2) per batch, not per line.
_GATHER = 0.005
_PIPE_SIZE = 1 << 20  # Linux's default pipe-max-size


class _Sink:
    """Where maillog lines go: a file opened O_APPEND and/or standard error.

    Each line is one write(2): lines from several processes (mta sendmail,
    mta queue, receiver workers) never interleave inside a line, and there is
    no Python logging machinery on the hot path (a message logs ~7 lines).

    In the daemon the lines go through a pipe instead, to a writer thread in
    the master (_Writer), like Postfix's daemons hand theirs to postlogd: a
    write to the file can wait for the file system's journal (up to 5 ms
    seen with the spool on the same ext4), and the event loop must not.
    """

    def __init__(self) -> None:
        self.syslog_name = "postern"
        self.host = "localhost"
        self.resolution = 2
        self.path: str | None = None
        self.fd: int | None = None
        self.stderr = False
        self.pid = os.getpid()
        self.pipe: int | None = None  # the write end of the writer's pipe
        self._second = -1
        self._stamp = ""
        self._lock = threading.Lock()  # fd against the writer thread

    def open(self) -> None:
        with self._lock:
            self._close()
            if self.path:
                os.makedirs(os.path.dirname(os.path.abspath(self.path)), exist_ok=True)
                self.fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT
                                  | os.O_CLOEXEC, 0o644)

    def close(self) -> None:
        with self._lock:
            self._close()

    def _close(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None

    def stamp(self) -> str:
        now = int(time.time())
        if now != self._second:
            tm = time.localtime(now)
            self._stamp = (f"{_MONTHS[tm.tm_mon - 1]} {tm.tm_mday:>2} "
                           f"{tm.tm_hour:02}:{tm.tm_min:02}:{tm.tm_sec:02}")
            self._second = now
        return self._stamp

    def write(self, program: str, text: str) -> None:
        line = (f"{self.stamp()} {self.host} {self.syslog_name}/{program}[{self.pid}]: "
                f"{text}\n").encode("utf-8", "backslashreplace")
        if self.pipe is not None and len(line) <= _PIPE_BUF:
            try:
                os.write(self.pipe, line)
                return
            except OSError:
                pass  # a full pipe or no writer any more: write it here
        self.write_lines(line)

    def write_lines(self, data: bytes) -> None:
        """Whole lines to the file and/or standard error, now."""
        with self._lock:
            if self.fd is not None:
                try:
                    os.write(self.fd, data)
                except OSError:
                    pass  # a full disk must not take the mail system down with it
        if self.stderr:
            try:
                os.write(2, data)
            except OSError:
                pass


class _Writer:
    """The daemon's maillog writer: a thread in the master that writes what
    every process (the master and its receiver workers) puts in one pipe.

    Writes of whole lines up to PIPE_BUF bytes to a pipe are atomic, so the
    pipe keeps every line whole and in the order the processes wrote them.
    The thread waits for the first line, lets others gather for _GATHER
    seconds, and writes them all with one write(2): under load that is a
    wake-up and a write per few milliseconds, not per line. When the pipe is
    full or the writer is gone, a process writes its line to the file itself.
    """

    def __init__(self, sink: _Sink) -> None:
        self.sink = sink
        self.read_end, self.write_end = os.pipe()
        for fd in (self.read_end, self.write_end):
            fcntl.fcntl(fd, fcntl.F_SETFL, fcntl.fcntl(fd, fcntl.F_GETFL) | os.O_NONBLOCK)
        # Room for bursts (a queue flush logs thousands of lines at once): a
        # line that finds the pipe full is written directly, before lines of
        # its own process still waiting in the pipe.
        with contextlib.suppress(OSError):
            fcntl.fcntl(self.write_end, fcntl.F_SETPIPE_SZ, _PIPE_SIZE)
        self.thread = threading.Thread(target=self._run, name="maillog", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        pending = b""
        while True:
            select.select([self.read_end], [], [])
            time.sleep(_GATHER)
            chunks = [pending]
            ended = False
            with contextlib.suppress(BlockingIOError):
                while chunk := os.read(self.read_end, 1 << 20):
                    chunks.append(chunk)
                ended = True  # end of file: no process holds the write end
            data = b"".join(chunks)
            stop = data.find(_STOP)
            if stop >= 0:
                data = data[:stop] + data[stop + len(_STOP):]
            # A read may end inside a line another process was writing.
            end = data.rfind(b"\n") + 1
            data, pending = data[:end], data[end:]
            if data:
                self.sink.write_lines(data)
            if stop >= 0 or ended:
                if pending:
                    self.sink.write_lines(pending)
                return

    def stop(self) -> None:
        """Write what the pipe holds, then stop; lines logged afterwards go
        to the file directly."""
        deadline = time.monotonic() + 5
        while self.thread.is_alive() and time.monotonic() < deadline:
            try:
                os.write(self.write_end, _STOP)
                break
            except BlockingIOError:  # full: the writer is emptying it
                time.sleep(_GATHER)
            except OSError:
                break
        self.thread.join(timeout=max(0.0, deadline - time.monotonic()))
        os.close(self.write_end)
        if not self.thread.is_alive():
            os.close(self.read_end)


_sink = _Sink()


def setup(*, syslog_name: str, hostname: str, maillog_file: str | None, stderr: bool,
          resolution: int = 2) -> None:
    """Point the maillog at a file and/or standard error; idempotent."""
    _sink.syslog_name = syslog_name
    _sink.host = hostname.split(".")[0] or hostname
    _sink.resolution = resolution
    _sink.path = maillog_file
    _sink.stderr = stderr
    _sink.pid = os.getpid()
    _sink.open()


def reopen() -> None:
    """After logrotate moved the file (SIGHUP), or in a forked worker."""
    _sink.pid = os.getpid()
    _sink.open()


_writer: _Writer | None = None


def start_writer() -> int:
    """In the master: from now on this process's lines, and those of every
    process given the returned file descriptor (use_pipe), are written by a
    thread, not by the caller (the event loop never waits for the file)."""
    global _writer
    if _writer is None:
        _writer = _Writer(_sink)
        _sink.pipe = _writer.write_end
    return _writer.write_end


def stop_writer() -> None:
    """Write out every line given so far; afterwards lines are written directly."""
    global _writer
    if _writer is not None:
        _sink.pipe = None
        _writer.stop()
        _writer = None


def writer_fd() -> int | None:
    """The pipe to the master's writer, for the processes it starts."""
    return _writer.write_end if _writer is not None else None


def use_pipe(fd: int) -> None:
    """In a receiver worker: send lines to the master's writer (start_writer)."""
    _sink.pipe = fd


def emit(program: str, text: str, level: int = logging.INFO) -> None:
    _sink.write(program, text)


def warning(program: str, text: str) -> None:
    emit(program, f"warning: {text}", logging.WARNING)


def fatal(program: str, text: str) -> None:
    emit(program, f"fatal: {text}", logging.ERROR)


def info(program: str, text: str) -> None:
    emit(program, text)


# --- number formats -------------------------------------------------------------------
def format_delay(seconds: float) -> str:
    """A delay as Postfix prints it: two significant digits, at most
    delay_logging_resolution_limit decimals, whole seconds from 10 up."""
    if seconds < 0:
        seconds = 0.0
    if seconds >= 10:
        return str(int(seconds + 0.5))
    resolution = _sink.resolution
    decimals = 1 if seconds >= 1 else resolution
    decimals = min(decimals, resolution)
    text = f"{seconds:.{decimals}f}"
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return text or "0"


def peer_name(hostname: str, address: str) -> str:
    return f"{hostname}[{address}]"


# --- smtpd ----------------------------------------------------------------------------
def connect(peer: str) -> None:
    emit("smtpd", f"connect from {peer}")


def client(qid: str, peer: str, sasl_method: str | None = None,
           sasl_username: str | None = None) -> None:
    text = f"{qid}: client={peer}"
    if sasl_method:
        text += f", sasl_method={sasl_method}, sasl_username={sasl_username}"
    emit("smtpd", text)


def reject(qid: str | None, command: str, peer: str, reply: str, sender: str | None,
           recipient: str | None, proto: str, helo: str | None) -> None:
    """``NOQUEUE: reject: RCPT from host[ip]: 554 5.7.1 …; from=<s> to=<r> proto=ESMTP helo=<h>``"""
    text = f"{qid or 'NOQUEUE'}: reject: {command} from {peer}: {reply};"
    if sender is not None:
        text += f" from=<{sender}>"
    if recipient is not None:
        text += f" to=<{recipient}>"
    text += f" proto={proto}"
    if helo:
        text += f" helo=<{helo}>"
    emit("smtpd", text)


def lost_connection(stage: str, peer: str, received: int | None = None) -> None:
    detail = f" ({received} bytes)" if received is not None else ""
    emit("smtpd", f"lost connection after {stage}{detail} from {peer}")


def timeout(stage: str, peer: str) -> None:
    emit("smtpd", f"timeout after {stage} from {peer}")


def too_many_errors(stage: str, peer: str) -> None:
    emit("smtpd", f"too many errors after {stage} from {peer}")


def disconnect(peer: str, counts: Sequence[tuple[str, int, int]],
               notes: Iterable[str] = ()) -> None:
    """``disconnect from host[ip] ehlo=1 mail=1 rcpt=0/1 … commands=4/5``.

    Each seen command prints ok, or ok/total when some failed; the commands
    total prints ok/total whenever they differ or are zero (smtpd.c).
    """
    parts = []
    ok_sum = total_sum = 0
    for name, ok, total in counts:
        if total == 0:
            continue
        parts.append(f"{name}={ok}" if ok == total else f"{name}={ok}/{total}")
        ok_sum += ok
        total_sum += total
    if ok_sum == total_sum and total_sum:
        parts.append(f"commands={ok_sum}")
    else:
        parts.append(f"commands={ok_sum}/{total_sum}")
    for note in notes:
        parts.append(f"notes={note}")
    emit("smtpd", f"disconnect from {peer} " + " ".join(parts))


# --- cleanup, qmgr, delivery ----------------------------------------------------------
def message_id(qid: str, message_id: str, program: str = "cleanup") -> None:
    emit(program, f"{qid}: message-id={message_id}")


def pickup(qid: str, uid: int, sender: str) -> None:
    emit("pickup", f"{qid}: uid={uid} from=<{sender}>")


def queue_active(qid: str, sender: str, size: int, nrcpt: int) -> None:
    emit("qmgr", f"{qid}: from=<{sender}>, size={size}, nrcpt={nrcpt} (queue active)")


def removed(qid: str, program: str = "qmgr") -> None:
    emit(program, f"{qid}: removed")


def expired(qid: str, sender: str) -> None:
    emit("qmgr", f"{qid}: from=<{sender}>, status=expired, returned to sender")


def delivery(program: str, qid: str, recipient: str, *, relay: str, delay: float,
             delays: tuple[float, float, float, float], dsn: str, status: str, text: str,
             orig_recipient: str | None = None, conn_use: int | None = None,
             tls: str | None = None) -> None:
    """``QID: to=<r>, relay=…, [conn_use=N, ]delay=T, delays=a/b/c/d, [tls=…, ]dsn=…,
    status=… (text)``"""
    line = f"{qid}: to=<{recipient}>, "
    if orig_recipient and orig_recipient != recipient:
        line += f"orig_to=<{orig_recipient}>, "
    line += f"relay={relay}, "
    if conn_use and conn_use > 1:
        line += f"conn_use={conn_use}, "
    line += f"delay={format_delay(delay)}, delays=" + "/".join(format_delay(d) for d in delays)
    if tls:
        line += f", tls={tls}"
    line += f", dsn={dsn}, status={status} ({text})"
    emit(program, line)


def held(qid: str, program: str = "postsuper") -> None:
    emit(program, f"{qid}: placed on hold")


def released(qid: str, program: str = "postsuper") -> None:
    emit(program, f"{qid}: released from hold")


def corrupt(qid: str, reason: str) -> None:
    warning("qmgr", f"saving corrupt file \"{qid}\" from queue \"{reason}\" to queue \"corrupt\"")
