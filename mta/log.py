"""The maillog: one function per mail event, each printing Postfix's line for it.

Operators, pflogsumm, fail2ban and postfix_exporter parse these lines, so the
wording is an interface (docs/logging.md) and tests assert it with regular
expressions. Lines look like syslog's: ``Nov 22 06:55:07 mx postern/smtpd[42]: text``.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterable, Sequence

_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun",
           "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


class _Sink:
    """Where maillog lines go: a file opened O_APPEND and/or standard error.

    Each line is one write(2): lines from several processes (mta sendmail,
    mta queue, receiver workers) never interleave inside a line, and there is
    no Python logging machinery on the hot path (a message logs ~7 lines).
    """

    def __init__(self) -> None:
        self.syslog_name = "postern"
        self.host = "localhost"
        self.resolution = 2
        self.path: str | None = None
        self.fd: int | None = None
        self.stderr = False
        self.pid = os.getpid()
        self._second = -1
        self._stamp = ""

    def open(self) -> None:
        self.close()
        if self.path:
            os.makedirs(os.path.dirname(os.path.abspath(self.path)), exist_ok=True)
            self.fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC,
                              0o644)

    def close(self) -> None:
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
        if self.fd is not None:
            try:
                os.write(self.fd, line)
            except OSError:
                pass  # a full disk must not take the mail system down with it
        if self.stderr:
            try:
                os.write(2, line)
            except OSError:
                pass


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
           sasl_username: str | None = None, sasl_sender: str | None = None) -> None:
    """``QID: client=host[ip], sasl_method=M, sasl_username=U, sasl_sender=S``,
    each sasl_ field when known, as Postfix's smtpd_sasl_mail_log."""
    text = f"{qid}: client={peer}"
    if sasl_method:
        text += f", sasl_method={sasl_method}, sasl_username={sasl_username}"
    if sasl_sender:
        text += f", sasl_sender={sasl_sender}"
    emit("smtpd", text)


def reject(qid: str | None, command: str, peer: str, reply: str, sender: str | None,
           recipient: str | None, proto: str, helo: str | None, *,
           action: str = "reject") -> None:
    """``NOQUEUE: reject: RCPT from host[ip]: 554 5.7.1 …; from=<s> to=<r> proto=ESMTP helo=<h>``

    Postfix's log_whatsup: action is also ``warn`` or ``info`` (an access
    map's WARN and INFO), with the table's text in place of the reply."""
    text = f"{qid or 'NOQUEUE'}: {action}: {command} from {peer}: {reply};"
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


def timeout(stage: str, peer: str, received: int | None = None) -> None:
    detail = f" ({received} bytes)" if received is not None else ""
    emit("smtpd", f"timeout after {stage}{detail} from {peer}")


def escaped(data: bytes, limit: int = 100) -> str:
    """Client bytes for a log line as Postfix shows them: the first limit
    bytes, CR, LF and TAB as \\r, \\n, \\t, a backslash doubled, other
    bytes outside printable ASCII in octal (\\026); nothing a client sends
    can start a line of its own or hide itself."""
    out = []
    for byte in data[:limit]:
        if byte == 0x5C:
            out.append("\\\\")
        elif 0x20 <= byte < 0x7F:
            out.append(chr(byte))
        else:
            out.append(_ESCAPES.get(byte) or f"\\{byte:03o}")
    return "".join(out)


_ESCAPES = {0x0D: "\\r", 0x0A: "\\n", 0x09: "\\t"}


def improper_pipelining(stage: str, peer: str, pending: bytes) -> None:
    """``improper command pipelining after EHLO from host[ip]: MAIL FROM:<a@b>\\r\\n``:
    what the client sent before it had our reply (fail2ban's postfix filters
    match this line)."""
    emit("smtpd", f"improper command pipelining after {stage} from {peer}: "
                  f"{escaped(pending)}")


def non_smtp_command(peer: str, line: bytes) -> None:
    warning("smtpd", f"non-SMTP command from {peer}: {escaped(line)}")


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


def skipped_record(name: str, offset: int, sample: bytes) -> None:
    """A status record that a crash or a full disk tore (queuefile.parse):
    the message goes on, and that record's attempt may be repeated."""
    warning("qmgr", f"{name}: skipped a torn or unreadable status record at byte {offset}: "
                    f"{sample!r}")
