"""Reading DATA: find the end, undo dot-stuffing, normalise line endings.

Security rules (SMTP smuggling, CVE-2023-51764 class): the message ends only
at ``<CR><LF>.<CR><LF>`` on the raw wire (RFC 5321 §4.1.1.4). Any other
newline, a bare LF or a bare CR, never ends the message; it is normalised to
CRLF so that it cannot leave here as a bare newline either. Normalising comes
before undoing dot-stuffing, so a line made by a bare newline is un-stuffed
like any other: ``x<LF>.<CR><LF>`` is kept as ``x<CR><LF><CR><LF>`` (the
lone dot loses its stuffing dot), as Postfix's smtpd does with
``smtpd_forbid_bare_newline = normalize``, where each line it reads, however
it ended, is un-stuffed. Whatever leaves here is dot-stuffed again when relayed.

The reader works on chunks with bytes methods (C speed) rather than on lines
in Python: a 25 MB message costs a few hundred loop iterations, not 350,000.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from mta.newlines import crlf_only, to_crlf

_TERMINATOR = b"\r\n.\r\n"
CHUNK = 256 * 1024


@dataclass
class DataResult:
    """How a DATA transfer went: raw bytes seen and what was odd about them."""

    raw_bytes: int = 0
    content_bytes: int = 0
    bare_lf: bool = False
    bare_cr: bool = False
    too_big: bool = False


class DataDecoder:
    """Turns raw DATA bytes (without the terminator) into message content."""

    def __init__(self) -> None:
        self._held = b""
        self._line_start = True  # the DATA command's CRLF started a line
        self.bare_lf = False
        self.bare_cr = False

    def feed(self, raw: bytes, *, final: bool = False) -> bytes:
        data = self._held + raw if self._held else raw
        self._held = b""
        if not final and data.endswith(b"\r"):
            # Could be the first half of a CRLF split across chunks.
            self._held = b"\r"
            data = data[:-1]
        if not data:
            return b""
        if not crlf_only(data):
            crlf = data.count(b"\r\n")
            self.bare_lf = self.bare_lf or data.count(b"\n") != crlf
            self.bare_cr = self.bare_cr or data.count(b"\r") != crlf
            data = to_crlf(data)
        # Where the next chunk starts, judged before un-stuffing: a chunk that
        # ends in a line's stuffing dot ("\r\n." or a lone ".") leaves the
        # next one mid-line, and its first dot is content.
        ends_line = data.endswith(b"\r\n")
        # RFC 5321 §4.5.2: remove the first '.' of every line that starts with one.
        if self._line_start and data.startswith(b"."):
            data = data[1:]
        data = data.replace(b"\r\n.", b"\r\n")
        self._line_start = ends_line
        return data


def unread(reader: asyncio.StreamReader, data: bytes) -> None:
    """Give back bytes read past the end of DATA (pipelined commands).

    StreamReader has no public unread; its buffer is a bytearray that
    aiosmtpd itself also manipulates (the STARTTLS fix of 1.4.6 clears it).
    """
    if data:
        reader._buffer[0:0] = data  # type: ignore[attr-defined]


async def read_data(reader: asyncio.StreamReader, sink: Callable[[bytes], Awaitable[None]],
                    limit: int, progress: Callable[[int], None] | None = None) -> DataResult:
    """Read one message up to the terminator, feeding content to sink.

    After limit content bytes the rest is read and discarded: the client is
    told 552 only after the terminator (RFC 5321 §4.2.5), which keeps the
    session in step. Leftover pipelined bytes are returned to the reader.
    progress is called after every read with the number of bytes read (the
    session's idle timer: smtpd_timeout limits each read, as in Postfix, not
    the whole transfer; and its byte count for a lost connection's log line).

    A read can end anywhere, inside the terminator too ("…\r\n." then
    "\r\n"): bytes that may begin it are held back until the next read
    decides, and the search looks at the last two bytes fed before them.
    """
    result = DataResult()
    decoder = DataDecoder()
    fed = b"\r\n"  # the last two bytes fed (at first, the DATA command's line end)
    held = b""  # raw bytes not fed yet: a possible start of the terminator
    while True:
        raw = await reader.read(CHUNK)
        if not raw:
            raise ConnectionResetError("connection closed during DATA")
        if progress is not None:
            progress(len(raw))
        window = held + raw if held else raw
        body_end = _content_end(fed, window)
        if body_end != -1:
            # Keep the CRLF that precedes the dot; what follows the
            # terminator is the client's next commands.
            unread(reader, window[body_end + 3:])
            result.raw_bytes += body_end
            await _deliver(decoder.feed(window[:body_end], final=True), sink, result, limit)
            break
        keep = _terminator_start(fed, window)
        ready = window[:len(window) - keep]
        held = window[len(window) - keep:]
        if ready:
            fed = (fed + ready[-2:])[-2:]
            result.raw_bytes += len(ready)
            await _deliver(decoder.feed(ready), sink, result, limit)
    result.bare_lf = decoder.bare_lf
    result.bare_cr = decoder.bare_cr
    return result


def _content_end(fed: bytes, window: bytes) -> int:
    """Where the content in window ends (the CRLF before the dot included),
    or -1 without a terminator. The earliest terminator counts: one that
    starts in the two bytes fed before window (those end the last line)
    comes before any inside it."""
    at = (fed + window[:4]).find(_TERMINATOR)
    if at != -1:
        return at + 2 - len(fed)
    at = window.find(_TERMINATOR)
    return -1 if at == -1 else at + 2


def _terminator_start(fed: bytes, window: bytes) -> int:
    """How many bytes at window's end may be the first part of a terminator
    that the next read completes (with the bytes fed before them)."""
    tail = fed + window[-4:]
    for size in (4, 3, 2, 1):
        if tail.endswith(_TERMINATOR[:size]):
            return min(size, len(window))
    return 0


async def _deliver(content: bytes, sink: Callable[[bytes], Awaitable[None]],
                   result: DataResult, limit: int) -> None:
    if not content:
        return
    result.content_bytes += len(content)
    if limit and result.content_bytes > limit:
        result.too_big = True
    if not result.too_big:
        await sink(content)
