"""mta queue list/show/hold/release/delete/flush against golden output.

Volatile values are normalised before the comparison, keeping their width:
queue ids become QID000000001…, asctime stamps Www Mmm dd hh:mm:ss, sizes
###, so the golden files still pin the layout column by column.
"""

from __future__ import annotations

import json
import re
import smtplib
from pathlib import Path

from mta.spool import Spool
from tests.helpers import Daemon, DaemonFactory, run_mta, wait_for

GOLDEN = Path(__file__).parent / "golden"
QID = re.compile(r"\b[0-9A-HJKMNP-TV-Z]{12}\b")
ASCTIME = re.compile(r"\b[A-Z][a-z]{2} [A-Z][a-z]{2} [ \d]\d \d\d:\d\d:\d\d( \d{4})?")
MAIL_DATE = re.compile(r"[A-Z][a-z]{2}, \d{1,2} [A-Z][a-z]{2} \d{4} \d\d:\d\d:\d\d [+-]\d{4} "
                       r"\(\w+\)")
ROW = re.compile(r"^(QID\d{9}[!*]?\s+)(\d+)( )", re.M)


class Normaliser:
    def __init__(self) -> None:
        self.ids: dict[str, str] = {}

    def qid(self, match: re.Match[str]) -> str:
        return self.ids.setdefault(match.group(0), f"QID{len(self.ids) + 1:09d}")

    def text(self, text: str) -> str:
        text = QID.sub(self.qid, text)
        text = MAIL_DATE.sub("DATE", text)
        text = ASCTIME.sub(lambda m: "Www Mmm dd hh:mm:ss" + (" yyyy" if m.group(1) else ""),
                           text)
        text = ROW.sub(lambda m: m.group(1) + "#" * len(m.group(2)) + m.group(3), text)
        return re.sub(r"(message_size:\s+)(\d+)", lambda m: m.group(1) + "#" * len(m.group(2)),
                      text)

    def json(self, text: str) -> list[dict]:
        records = []
        for line in text.splitlines():
            record = json.loads(line)
            record["queue_id"] = self.ids[record["queue_id"]]
            for key in ("arrival_time", "next_attempt_time"):
                assert isinstance(record[key], int)
                record[key] = "EPOCH"
            assert record["message_size"] > 0
            record["message_size"] = "SIZE"
            records.append(record)
        return records


def mta(daemon: Daemon, *args: str) -> tuple[str, str]:
    result = run_mta(*args, config=daemon.config)
    return result.stdout.decode(), result.stderr.decode()


def golden(name: str) -> str:
    return (GOLDEN / name).read_text()


def test_queue_commands(daemon_factory: DaemonFactory) -> None:
    daemon = daemon_factory("defer_transports = local\n").start()
    with smtplib.SMTP("127.0.0.1", daemon.smtp_port) as client:
        client.ehlo("client.example")
        client.sendmail("bob@example.org", ["alice@example.test", "bob@example.test"],
                        b"Subject: one\r\nMessage-ID: <one@example.org>\r\n"
                        b"Date: Sun, 22 Nov 2026 06:00:00 +0000\r\n\r\nfirst line\r\n"
                        b".dot line\r\n")  # smtplib dot-stuffs it
        client.sendmail("", ["postmaster@example.test"],
                        b"Subject: two\r\nMessage-ID: <two@example.org>\r\n"
                        b"Date: Sun, 22 Nov 2026 06:00:00 +0000\r\n\r\nsecond\r\n")
    daemon.wait_log(r"status=deferred \(deferred transport\)", count=3)
    spool = Spool(daemon.queue)
    wait_for(lambda: len(spool.scan("deferred")) == 2, message="two deferred messages")
    first, second = (entry.qid for entry in spool.scan("deferred"))
    norm = Normaliser()

    out, _ = mta(daemon, "queue", "list")
    assert norm.text(out) == golden("queue_list.txt")
    out, _ = mta(daemon, "queue", "list", "--json")
    assert norm.json(out) == [json.loads(line) for line in
                              golden("queue_list.json").splitlines()]
    out, _ = mta(daemon, "queue", "show", first)
    assert norm.text(out) == golden("queue_show.txt")

    _, err = mta(daemon, "queue", "hold", first)
    assert err == f"postsuper: {first}: placed on hold\npostsuper: Placed on hold: 1 message\n"
    out, _ = mta(daemon, "queue", "list")
    assert norm.text(out) == golden("queue_list_held.txt")

    _, err = mta(daemon, "queue", "release", "ALL")
    assert err == (f"postsuper: {first}: released from hold\n"
                   "postsuper: Released from hold: 1 message\n")
    daemon.wait_log(rf"postern/postsuper\[\d+\]: {first}: released from hold")

    _, err = mta(daemon, "queue", "delete", second)
    assert err == f"postsuper: {second}: removed\npostsuper: Deleted: 1 message\n"
    daemon.wait_log(rf"postern/postsuper\[\d+\]: {second}: removed")

    mta(daemon, "queue", "flush")
    daemon.wait_log(rf"postern/qmgr\[\d+\]: {first}: removed")
    assert len(daemon.wait_maildir("alice")) == 1
    assert daemon.maildir("postmaster") == []
    out, _ = mta(daemon, "queue", "list")
    assert out == "Mail queue is empty\n"


def test_show_unknown_message(daemon: Daemon) -> None:
    result = run_mta("queue", "show", "2K04AAAAAAAA", config=daemon.config, check=False)
    assert result.returncode == 1
    assert result.stderr == b"mta queue: fatal: no message 2K04AAAAAAAA in the queue\n"
