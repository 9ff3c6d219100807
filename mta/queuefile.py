"""The queue file format: a readable envelope, the message once, an END record,
then appended per-recipient status records.

    POSTERN 1
    id: 0C3F5Q7N2Z01
    arrival: 1795330516.123456
    size: 0000000000000385          (fixed width: patched in place before commit)
    sender: bob@example.org
    client: localhost[127.0.0.1]
    helo: vm
    proto: ESMTP
    rcpt: alice@localhost
                                    (empty line)
    <size bytes of message, CRLF line endings, as it will leave>
    END 1a2b3c4d                    (CRC-32 of the message)
    R {"r": 0, "s": "deferred", ...}   (status records, appended, one per line)

A file without a matching END record is torn (mail_stream.c's rule: no END,
no mail) and belongs in corrupt/: END and the CRC are what protect the
envelope and the message. Status records are appended and fsynced after the
delivery they record; one torn by a crash or a full disk (a last line
without its newline, or a line that does not parse, wherever it is: later
records may follow it) is skipped and reported in QueueFile.skipped. At
worst that repeats a delivery attempt; it never loses one, and the rest of
the file is still good. queue/README.md documents this for operators.
"""

from __future__ import annotations

import json
import zlib
from dataclasses import dataclass, field
from typing import Any, BinaryIO

from mta.errors import CorruptQueueFile

MAGIC = b"POSTERN 1\n"
SIZE_WIDTH = 16
_SIZE_PREFIX = b"size: "
END_LENGTH = len(b"END 00000000\n")


@dataclass
class Envelope:
    """What the queue knows about a message besides its content."""

    qid: str
    arrival: float
    sender: str
    recipients: list[str]
    client: str = ""
    helo: str = ""
    proto: str = ""
    attrs: dict[str, str] = field(default_factory=dict)
    size: int = 0


@dataclass
class RecipientStatus:
    """The latest status record of one recipient."""

    status: str  # sent | bounced | deferred | expired
    dsn: str
    text: str
    time: float
    relay: str = ""
    next_attempt: float | None = None

    @property
    def final(self) -> bool:
        return self.status in ("sent", "bounced", "expired")


@dataclass
class QueueFile:
    """A parsed queue file: envelope, where the content is, status records."""

    envelope: Envelope
    content_offset: int
    statuses: dict[int, RecipientStatus] = field(default_factory=dict)
    records: list[dict[str, Any]] = field(default_factory=list)
    content: bytes | None = None  # the message itself, when parse kept it
    # Status lines skipped as torn or unreadable: (byte offset in the file,
    # the line's first 40 bytes), for the queue manager to warn about.
    skipped: list[tuple[int, bytes]] = field(default_factory=list)

    @property
    def qid(self) -> str:
        return self.envelope.qid

    def pending(self) -> list[int]:
        """Indexes of recipients that still need delivery."""
        return [i for i in range(len(self.envelope.recipients))
                if not (i in self.statuses and self.statuses[i].final)]

    def flag(self, name: str) -> bool:
        return any(record.get("flag") == name for record in self.records)


def _clean(value: str) -> str:
    if "\n" in value or "\r" in value:
        raise ValueError("envelope values must not contain line breaks")
    return value


def encode_header(envelope: Envelope) -> bytes:
    """The envelope block, with the size field reserved at fixed width."""
    lines = [
        f"id: {envelope.qid}",
        f"arrival: {envelope.arrival:.6f}",
        "size: " + str(envelope.size).zfill(SIZE_WIDTH),
        f"sender: {_clean(envelope.sender)}",
    ]
    for name in ("client", "helo", "proto"):
        value = getattr(envelope, name)
        if value:
            lines.append(f"{name}: {_clean(value)}")
    for name, value in envelope.attrs.items():
        lines.append(f"attr: {_clean(name)}={_clean(value)}")
    for recipient in envelope.recipients:
        lines.append(f"rcpt: {_clean(recipient)}")
    text = "\n".join(lines) + "\n\n"
    return MAGIC + text.encode("utf-8", "surrogateescape")


def size_field_offset(header: bytes) -> int:
    """Where the size digits start in an encoded header (for the in-place patch)."""
    return header.index(b"\n" + _SIZE_PREFIX) + 1 + len(_SIZE_PREFIX)


def encode_size(size: int) -> bytes:
    return str(size).zfill(SIZE_WIDTH).encode()


def end_record(crc: int) -> bytes:
    return b"END %08x\n" % (crc & 0xFFFFFFFF)


def status_record(record: dict[str, Any]) -> bytes:
    return b"R " + json.dumps(record, separators=(",", ":"), ensure_ascii=True).encode() + b"\n"


def parse(stream: BinaryIO, name: str, *, verify: bool = True, keep: int = 0) -> QueueFile:
    """Parse a queue file; CorruptQueueFile if it is torn or malformed.

    With verify, the content is read through once to check its CRC; a
    message of at most keep bytes is kept in memory then, so delivery does
    not read it a second time.
    """
    if stream.read(len(MAGIC)) != MAGIC:
        raise CorruptQueueFile(f"{name}: not a Postern queue file")
    fields: dict[str, str] = {}
    attrs: dict[str, str] = {}
    recipients: list[str] = []
    while True:
        line = stream.readline(65536)
        if not line.endswith(b"\n"):
            raise CorruptQueueFile(f"{name}: truncated envelope")
        if line == b"\n":
            break
        key, sep, value = line[:-1].decode("utf-8", "surrogateescape").partition(": ")
        if not sep:
            raise CorruptQueueFile(f"{name}: bad envelope line {line[:40]!r}")
        if key == "rcpt":
            recipients.append(value)
        elif key == "attr":
            attr_name, _, attr_value = value.partition("=")
            attrs[attr_name] = attr_value
        else:
            fields[key] = value
    try:
        envelope = Envelope(
            qid=fields["id"], arrival=float(fields["arrival"]), sender=fields["sender"],
            recipients=recipients, client=fields.get("client", ""),
            helo=fields.get("helo", ""), proto=fields.get("proto", ""), attrs=attrs,
            size=int(fields["size"]))
    except (KeyError, ValueError) as error:
        raise CorruptQueueFile(f"{name}: bad envelope: {error}") from None
    offset = stream.tell()
    content: bytes | None = None
    if verify:
        crc = 0
        remaining = envelope.size
        kept: list[bytes] | None = [] if envelope.size <= keep else None
        while remaining:
            chunk = stream.read(min(remaining, 1 << 20))
            if not chunk:
                raise CorruptQueueFile(f"{name}: truncated message content")
            crc = zlib.crc32(chunk, crc)
            remaining -= len(chunk)
            if kept is not None:
                kept.append(chunk)
        expected = end_record(crc)
        if kept is not None:
            content = b"".join(kept)
    else:
        stream.seek(offset + envelope.size)
        expected = None
    end = stream.read(END_LENGTH)
    if not end.startswith(b"END ") or not end.endswith(b"\n") or len(end) != END_LENGTH:
        raise CorruptQueueFile(f"{name}: no END record (torn file)")
    if expected is not None and end != expected:
        raise CorruptQueueFile(f"{name}: message content checksum mismatch")
    queue_file = QueueFile(envelope, offset, content=content)
    position = stream.tell()
    *lines, tail = stream.read().split(b"\n")
    for line in lines:
        parsed = _status_record(line)
        if parsed is None:
            # Torn by a crash or a full disk, and since then ended by the next
            # append's newline: only this record is lost, not the message.
            queue_file.skipped.append((position, line[:40]))
        else:
            record, status = parsed
            queue_file.records.append(record)
            if status is not None:
                queue_file.statuses[status[0]] = status[1]
        position += len(line) + 1
    if tail:  # a last record without its newline: the append was cut short
        queue_file.skipped.append((position, tail[:40]))
    return queue_file


# A status record, and for a recipient's its index and status.
_Record = tuple[dict[str, Any], tuple[int, RecipientStatus] | None]


def _status_record(line: bytes) -> _Record | None:
    """A status line's record and, for a recipient's, its index and status;
    None when the line is not a whole record."""
    if not line.startswith(b"R "):
        return None
    try:
        record = json.loads(line[2:])
        if not isinstance(record, dict):
            return None
        if "r" not in record:
            return record, None  # a message flag
        return record, (int(record["r"]), RecipientStatus(
            status=record["s"], dsn=record.get("dsn", ""), text=record.get("text", ""),
            time=float(record.get("t", 0)), relay=record.get("relay", ""),
            next_attempt=record.get("next")))
    except (KeyError, TypeError, ValueError):  # UnicodeDecodeError is a ValueError
        return None
