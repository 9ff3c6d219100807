"""Queue listings in Postfix's formats: postqueue -p, postqueue -j and postcat.

These read the spool directly (a directory walk and envelope parse per
file), so they work whether the daemon runs or not.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass

from mta.errors import CorruptQueueFile
from mta.queuefile import QueueFile
from mta.spool import Spool

LISTED_QUEUES = ("incoming", "active", "deferred", "hold")
_FLAG = {"active": "*", "hold": "!"}
# Postfix's long-queue-id layout (showq_compat.c L_*_FORMAT): our ids are 12 characters.
_ROW = "{:<17} {:>8} {:<19} {}"
_RECIPIENT_INDENT = 17 + 1 + 8 + 1 + 19 + 1


@dataclass
class Listed:
    queue: str
    queue_file: QueueFile
    mtime: float = 0.0  # in deferred/, when the next attempt is due (spool.py)


def walk(spool: Spool, errors: list[str] | None = None) -> Iterator[Listed]:
    for queue in LISTED_QUEUES:
        for entry in spool.scan(queue):
            try:
                queue_file = spool.read(queue, entry.qid, verify=False)
            except FileNotFoundError:
                continue  # delivered while we looked
            except CorruptQueueFile as error:
                if errors is not None:
                    errors.append(str(error))
                continue
            yield Listed(queue, queue_file, entry.mtime)


def _arrival(when: float) -> str:
    return time.strftime("%a %b %d %H:%M:%S", time.localtime(when))


def pending_with_reasons(queue_file: QueueFile) -> list[tuple[str, str | None]]:
    """(recipient, last deferral reason) for every recipient not yet done."""
    rows = []
    for index in queue_file.pending():
        status = queue_file.statuses.get(index)
        reason = status.text if status and status.status == "deferred" else None
        rows.append((queue_file.envelope.recipients[index], reason))
    return rows


def format_listing(items: list[Listed]) -> str:
    """postqueue -p: one block per message, each reason above its recipients."""
    if not items:
        return "Mail queue is empty\n"
    lines = [_ROW.format("----Queue ID-----", "--Size--", "---Arrival Time----",
                         "--Sender/Recipient------")]
    total = 0
    for number, item in enumerate(items):
        if number:
            lines.append("")
        envelope = item.queue_file.envelope
        total += envelope.size
        qid = envelope.qid + _FLAG.get(item.queue, "")
        lines.append(_ROW.format(qid, envelope.size, _arrival(envelope.arrival)[:19],
                                 envelope.sender or "MAILER-DAEMON"))
        saved = ""
        for recipient, reason in pending_with_reasons(item.queue_file):
            why = reason or ""
            if why != saved:
                saved = why
                shown = why or "reason unavailable"
                lines.append(" " * max(0, 76 - len(shown)) + f"({shown})")
            lines.append(" " * _RECIPIENT_INDENT + recipient)
    count = len(items)
    lines.append("")
    lines.append(f"-- {total // 1024} Kbytes in {count} Request{'s' if count != 1 else ''}.")
    return "\n".join(lines) + "\n"


def format_json(items: list[Listed]) -> str:
    """postqueue -j: one JSON object per message, one per line."""
    out = []
    for item in items:
        envelope = item.queue_file.envelope
        recipients = []
        for recipient, reason in pending_with_reasons(item.queue_file):
            row: dict[str, object] = {"address": recipient}
            if reason:
                row["delay_reason"] = reason
            recipients.append(row)
        record = {"queue_name": item.queue, "queue_id": envelope.qid,
                  "arrival_time": int(envelope.arrival), "message_size": envelope.size,
                  "forced_expire": False, "sender": envelope.sender,
                  "recipients": recipients}
        if item.queue == "deferred" and item.mtime:
            # The file's time is the schedule the queue manager keeps: the
            # status records' planned time goes stale once mta queue flush,
            # release or a move sets it anew.
            record["next_attempt_time"] = int(item.mtime)
        out.append(json.dumps(record))
    return "".join(line + "\n" for line in out)


def format_postcat(queue: str, queue_file: QueueFile, content: bytes, *, envelope: bool = True,
                   headers: bool = True, body: bool = True) -> str:
    """postcat -q: envelope records, then the message, with Postfix's section markers."""
    env = queue_file.envelope
    name = f"{queue}/{env.qid}"
    out = []
    if envelope:
        out.append(f"*** ENVELOPE RECORDS {name} ***")
        out.append(f"message_size: {env.size:>16}")
        out.append(f"message_arrival_time: {time.ctime(env.arrival)}")
        if env.client:
            out.append(f"client: {env.client}")
        if env.helo:
            out.append(f"helo_name: {env.helo}")
        if env.proto:
            out.append(f"protocol_name: {env.proto}")
        for key, value in env.attrs.items():
            out.append(f"named_attribute: {key}={value}")
        out.append(f"sender: {env.sender}")
        for index, recipient in enumerate(env.recipients):
            out.append(f"recipient: {recipient}")
            status = queue_file.statuses.get(index)
            if status:
                when = time.ctime(status.time) if status.time else "-"
                line = f"  status: {status.status} dsn={status.dsn} at {when} ({status.text})"
                if status.next_attempt and status.status == "deferred":
                    line += f" next attempt {time.ctime(status.next_attempt)}"
                out.append(line)
    text = content.decode("utf-8", "replace").replace("\r\n", "\n")
    head, sep, rest = text.partition("\n\n")
    if headers or body:
        out.append(f"*** MESSAGE CONTENTS {name} ***")
        if headers:
            out.append(head + ("\n" if sep else ""))
        if body and sep:
            out.append(rest.rstrip("\n"))
    out.append(f"*** HEADER EXTRACTED {name} ***")
    out.append(f"*** MESSAGE FILE END {name} ***")
    return "\n".join(out) + "\n"
