"""cleanup: the Received header, missing Date and Message-ID, and the hand-off
of a message stream to the spool.

Content arrives here already dot-unstuffed and with CRLF line endings only
(smtpd/data.py). The header section is held in memory (at most
header_size_limit bytes) so that missing headers can be added at its end;
the body streams straight through to the queue file.
"""

from __future__ import annotations

import functools
import re
import time
from dataclasses import dataclass, field
from datetime import datetime
from email.utils import format_datetime
from typing import Protocol

_MESSAGE_ID = re.compile(rb"(?im)^message-id:[ \t]*([^\r\n]*(?:\r\n[ \t][^\r\n]*)*)")
_DATE = re.compile(rb"(?im)^date:")
_RECEIVED = re.compile(rb"(?im)^received[ \t]*:")
_FIELD = re.compile(rb"[!-9;-~]+[ \t]*:")
# The start of a line that may still become a header field: a name (at most
# a line's 998 octets, RFC 5322 §2.1.1) and blanks, up to a colon if any.
_FIELD_START = re.compile(rb"(?:[!-9;-~]{1,998}[ \t]*(?::.*)?|[!-9;-~]{0,998}[ \t]*)",
                          re.DOTALL)


def mail_date(when: float | None = None) -> str:
    """RFC 5322 date with the zone name in a comment, as Postfix writes it:
    ``Sun, 22 Nov 2026 06:55:07 +0000 (UTC)``."""
    return _date_of_second(int(time.time() if when is None else when))


@functools.lru_cache(maxsize=4)
def _date_of_second(second: int) -> str:
    # Every message received in the same second has the same date: format
    # it once (it was 3% of a receiver's time, formatted per message).
    stamp = datetime.fromtimestamp(second).astimezone()
    return f"{format_datetime(stamp)} ({stamp.tzname()})"


def rfc_address(address: str) -> str:
    """The address as Received shows it: IPv6 gets the RFC 5321 ``IPv6:`` tag."""
    return f"IPv6:{address}" if ":" in address else address


@dataclass
class ReceivedInfo:
    """What the Received header says about the hop that brought the message."""

    helo: str | None
    client_name: str
    client_address: str
    protocol: str
    myhostname: str
    mail_name: str
    qid: str
    recipients: list[str]  # "for <…>" when there is one
    tls_lines: list[str] = field(default_factory=list)
    when: float | None = None


def received_header(info: ReceivedInfo) -> bytes:
    """Postfix's Received layout (smtpd.c): from, optional TLS clauses, by, for."""
    lines = [f"Received: from {info.helo or info.client_name} "
             f"({info.client_name} [{rfc_address(info.client_address)}])"]
    lines.extend(f"\t{line}" for line in info.tls_lines)
    by = f"\tby {info.myhostname} ({info.mail_name}) with {info.protocol} id {info.qid}"
    date = mail_date(info.when)
    if len(info.recipients) == 1:
        lines.append(by)
        lines.append(f"\tfor <{info.recipients[0]}>; {date}")
    else:
        lines.append(by + ";")
        lines.append(f"\t{date}")
    return ("\r\n".join(lines) + "\r\n").encode("utf-8", "surrogateescape")


def local_received_header(myhostname: str, mail_name: str, uid: int, qid: str,
                          recipients: list[str], when: float | None = None) -> bytes:
    """The Received header of locally submitted mail (Postfix's pickup layout)."""
    lines = [f"Received: by {myhostname} ({mail_name}, from userid {uid})"]
    date = mail_date(when)
    if len(recipients) == 1:
        lines.append(f"\tid {qid}")
        lines.append(f"\tfor <{recipients[0]}>; {date}")
    else:
        lines.append(f"\tid {qid}; {date}")
    return ("\r\n".join(lines) + "\r\n").encode("utf-8", "surrogateescape")


class ContentSink(Protocol):
    """Where cleanup puts the message: a queue file writer (mta.spool), or
    memory (pickup decides after cleanup whether to queue or bounce)."""

    @property
    def qid(self) -> str: ...

    @property
    def size(self) -> int: ...

    async def write(self, data: bytes) -> None: ...


class CleanupStream:
    """Feeds one message into a queue file writer, fixing up its header section."""

    def __init__(self, writer: ContentSink, *, received: bytes, add_missing: bool,
                 myhostname: str, header_size_limit: int,
                 extra_headers: list[bytes] | None = None) -> None:
        self.writer = writer
        self.add_missing = add_missing
        self.myhostname = myhostname
        self.header_size_limit = header_size_limit
        self.extra_headers = extra_headers or []
        self.message_id: str | None = None
        # Received headers in the header section, ours included (Postfix's
        # cleanup counts them for hopcount_limit); known once it is flushed.
        self.hops = 0
        self._received = received
        self._header = bytearray()
        self._scanned = 0
        self._in_header = True

    @property
    def size(self) -> int:
        return self.writer.size

    async def feed(self, data: bytes) -> None:
        if not self._in_header:
            await self.writer.write(data)
            return
        self._header += data
        found = self._header_end()
        if found is not None:
            await self._flush_header(*found)

    async def finish(self) -> None:
        if self._in_header:
            if self._header and not self._header.endswith(b"\r\n"):
                # RFC 5322 lines end in CRLF, also the last one.
                self._header += b"\r\n"
            found = self._header_end()
            await self._flush_header(*(found or (len(self._header), True)))

    def _header_end(self) -> tuple[int, bool] | None:
        """(offset where the header section ends, whether it ended there by
        itself: at its blank line or at the first line that is not a header
        field), or None if not seen yet. What does not fit in
        header_size_limit is body (Postfix's rule), from the first line
        that does not fit, wherever the reads that brought it were cut: the
        header kept is the same however the client's segments arrive."""
        buffer = self._header
        position = self._scanned
        limit = self.header_size_limit
        while True:
            eol = buffer.find(b"\r\n", position)
            if eol != -1 and eol + 2 <= limit:
                line = bytes(buffer[position:eol])
                if not line:
                    return position, True
                if not (_FIELD.match(line) or (position and line[:1] in (b" ", b"\t"))):
                    return position, True
                position = eol + 2
                continue
            if len(buffer) < limit:
                self._scanned = position
                return None
            # A line that does not fit. It is judged by its bytes within the
            # limit only, so that the verdict is the same however the reads
            # were cut: one that may be a header field (or a continuation)
            # is cut there, the rest following as it came; one that cannot
            # ends the section, as a shorter one would.
            window = bytes(buffer[position:limit])
            if (position and window[:1] in (b" ", b"\t")) or _FIELD_START.fullmatch(window):
                return position, False
            return position, True

    async def _flush_header(self, end: int, separator: bool) -> None:
        self._in_header = False
        buffer = bytes(self._header)
        self._header = bytearray()
        head, rest = buffer[:end], buffer[end:]
        # Content is CRLF only: a rest that starts with CR starts with the
        # blank line, even if its LF is still to come.
        if separator and rest and not rest.startswith(b"\r"):
            rest = b"\r\n" + rest  # a body must follow a blank line (RFC 5322 §2.1)
        self.hops = len(_RECEIVED.findall(head)) + (1 if self._received else 0)
        match = _MESSAGE_ID.search(head)
        if match:
            self.message_id = re.sub(rb"\s+", b" ", match.group(1)).decode(
                "utf-8", "replace").strip()
        added: list[bytes] = list(self.extra_headers)
        # A header section cut at header_size_limit (separator False: the
        # rest follows as it came) may hold a Date or Message-ID past the
        # cut; adding ours could make two, so none is added then.
        if self.add_missing and separator:
            if not _DATE.search(head):
                added.append(f"Date: {mail_date()}\r\n".encode())
            if not match:
                stamp = time.strftime("%Y%m%d%H%M%S", time.gmtime())
                self.message_id = f"<{stamp}.{self.writer.qid}@{self.myhostname}>"
                added.append(f"Message-ID: {self.message_id}\r\n".encode())
        await self.writer.write(self._received + head + b"".join(added) + rest)
