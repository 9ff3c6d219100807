"""The postsuper and postqueue idioms of operators' scripts, run as the real
``mta queue`` subprocess on a spool seeded the way smtpd writes it: queue ids
on standard input (``postsuper -d -``), ALL in named queues (``postsuper -d
ALL deferred``), and flushing single messages or one site's mail
(``postqueue -i``, ``-s``) while the rest keeps its schedule."""

from __future__ import annotations

import asyncio
import json
import os
import time
from pathlib import Path

from mta.queuefile import Envelope
from mta.spool import Spool
from tests.helpers import Daemon, DaemonFactory, run_mta

# The next attempt of seeded deferred mail: an hour away, a whole second so
# that st_mtime gives it back exactly.
LATER = float(int(time.time()) + 3600)


def seed(queue: Path, where: str, recipients: list[list[str]], *,
         mtime: float = LATER) -> list[str]:
    """Commit one message per recipient list into incoming/, as smtpd does,
    and move each to where (deferred/ due at mtime); their queue ids."""
    spool = Spool(queue, lane=9)
    spool.create()

    async def write(rcpts: list[str]) -> str:
        qid = spool.new_qid()
        writer = spool.writer(Envelope(qid=qid, arrival=time.time(), sender="bob@example.org",
                                       recipients=rcpts))
        await writer.write(b"Subject: seeded\r\n\r\nseeded\r\n")
        await writer.commit()
        return qid

    async def write_all() -> list[str]:
        return [await write(rcpts) for rcpts in recipients]

    try:
        qids = asyncio.run(write_all())
    finally:
        spool.close()
    if where != "incoming":
        for qid in qids:
            spool.move(qid, "incoming", where, mtime=mtime if where == "deferred" else None)
    return qids


def mta(daemon: Daemon, *args: str, stdin: bytes = b"", status: int = 0) -> str:
    """Run mta queue ARGS on the daemon's main.cf; its standard error."""
    result = run_mta("queue", *args, config=daemon.config, input=stdin, check=False)
    assert result.returncode == status, result.stderr.decode()
    return result.stderr.decode()


def where(daemon: Daemon, *qids: str) -> list[str | None]:
    spool = Spool(daemon.queue)
    return [spool.find(qid) for qid in qids]


def mtime(daemon: Daemon, qid: str) -> float:
    return os.stat(daemon.queue / "deferred" / qid).st_mtime


def test_queue_ids_from_standard_input(daemon_factory: DaemonFactory) -> None:
    daemon = daemon_factory()
    one, two, three, four = seed(daemon.queue, "deferred",
                                 [["alice@example.test"], ["carol@elsewhere.example"],
                                  ["carol@elsewhere.example"], ["alice@example.test"]])
    # postsuper's example: the ids of the mail for one recipient, picked out
    # of the JSON listing and piped to delete -.
    listing = run_mta("queue", "list", "--json", config=daemon.config).stdout.decode()
    for_carol = "".join(record["queue_id"] + "\n" for line in listing.splitlines()
                        if (record := json.loads(line))["recipients"][0]["address"]
                        == "carol@elsewhere.example")
    err = mta(daemon, "delete", "-", stdin=for_carol.encode())
    assert err == (f"postsuper: {two}: removed\npostsuper: {three}: removed\n"
                   "postsuper: Deleted: 2 messages\n")
    assert where(daemon, one, two, three, four) == ["deferred", None, None, "deferred"]

    # Mixed with ids on the command line; blank lines and a repeated id are
    # skipped, an id that is not there is warned of (before the others act).
    err = mta(daemon, "hold", one, "-", stdin=f"\n{four}\r\n  \n{one}\n{two}\n".encode())
    assert err == (f"mta queue: {two}: no such message in incoming/active/deferred\n"
                   f"postsuper: {one}: placed on hold\npostsuper: {four}: placed on hold\n"
                   "postsuper: Placed on hold: 2 messages\n")
    err = mta(daemon, "release", "-", stdin=f"{four}\n".encode())
    assert err == (f"postsuper: {four}: released from hold\n"
                   "postsuper: Released from hold: 1 message\n")
    assert where(daemon, one, four) == ["hold", "deferred"]

    # Nothing on standard input is nothing to do, never everything.
    assert mta(daemon, "delete", "-") == "postsuper: Deleted: 0 messages\n"
    assert where(daemon, one, four) == ["hold", "deferred"]


def test_all_in_named_queues(daemon_factory: DaemonFactory) -> None:
    daemon = daemon_factory()
    deferred = seed(daemon.queue, "deferred", [["alice@example.test"]] * 2)
    held = seed(daemon.queue, "hold", [["alice@example.test"]])
    incoming = seed(daemon.queue, "incoming", [["alice@example.test"]])

    err = mta(daemon, "hold", "ALL", "incoming")
    assert err == (f"postsuper: {incoming[0]}: placed on hold\n"
                   "postsuper: Placed on hold: 1 message\n")
    err = mta(daemon, "delete", "ALL", "deferred")
    assert err == (f"postsuper: {deferred[0]}: removed\npostsuper: {deferred[1]}: removed\n"
                   "postsuper: Deleted: 2 messages\n")
    assert where(daemon, *deferred, *held, *incoming) == [None, None, "hold", "hold"]
    err = mta(daemon, "release", "ALL", "hold")
    assert err.endswith("postsuper: Released from hold: 2 messages\n")
    assert where(daemon, *held, *incoming) == ["deferred", "deferred"]


def test_all_in_a_queue_the_action_cannot_take_is_fatal(daemon_factory: DaemonFactory) -> None:
    daemon = daemon_factory()
    deferred = seed(daemon.queue, "deferred", [["alice@example.test"]])
    held = seed(daemon.queue, "hold", [["alice@example.test"]])
    for args, message in (
            (("hold", "ALL", "hold"), "hold (hold ALL takes incoming, active, deferred)"),
            (("release", "ALL", "deferred"), "deferred (release ALL takes hold)"),
            # Checked before anything is done: deferred/ is not emptied.
            (("delete", "ALL", "deferred", "bogus"),
             "bogus (delete ALL takes incoming, active, deferred, hold, corrupt)"),
            # What follows ALL are queue names, as for postsuper.
            (("delete", "ALL", held[0]), f"{held[0]} (delete ALL takes incoming, active, "
                                         "deferred, hold, corrupt)")):
        err = mta(daemon, *args, status=1)
        assert err == f"mta queue: fatal: invalid directory name: {message}\n"
    assert where(daemon, *deferred, *held) == ["deferred", "hold"]

    # Queue ids before ALL are ignored, as postsuper warns.
    err = mta(daemon, "delete", deferred[0], "ALL", "hold")
    assert err == ('mta queue: warning: "delete ALL" will ignore other command line queue IDs\n'
                   f"postsuper: {held[0]}: removed\npostsuper: Deleted: 1 message\n")
    assert where(daemon, *deferred, *held) == ["deferred", None]


def test_flush_queue_ids_makes_only_those_due(daemon_factory: DaemonFactory) -> None:
    daemon = daemon_factory()
    one, two, three, four = seed(daemon.queue, "deferred", [["alice@example.test"]] * 4)
    held = seed(daemon.queue, "hold", [["alice@example.test"]])
    before = time.time()
    err = mta(daemon, "flush", one, held[0], "-", stdin=f"{three}\n\n".encode())
    assert err == f"mta queue: {held[0]}: no such message in deferred\n"
    assert before - 1 <= mtime(daemon, one) <= time.time()
    assert before - 1 <= mtime(daemon, three) <= time.time()
    assert mtime(daemon, two) == mtime(daemon, four) == LATER
    assert where(daemon, *held) == ["hold"]
    # The listing shows the schedule as it is now, not as planned at the
    # last attempt.
    listing = run_mta("queue", "list", "--json", config=daemon.config).stdout.decode()
    due = {row["queue_id"]: row.get("next_attempt_time") for row in map(json.loads,
                                                                    listing.splitlines())}
    assert due[one] == int(mtime(daemon, one)) and due[two] == int(LATER)

    # Ids from an empty standard input flush nothing (not everything).
    assert mta(daemon, "flush", "-") == ""
    assert mtime(daemon, two) == mtime(daemon, four) == LATER


def test_flush_site_makes_its_pending_mail_due(daemon_factory: DaemonFactory) -> None:
    daemon = daemon_factory()
    for_site, elsewhere, done_there, mixed = seed(
        daemon.queue, "deferred",
        [["alice@Example.TEST"], ["carol@elsewhere.example"],
         ["alice@example.test", "carol@elsewhere.example"],
         ["carol@elsewhere.example", "bob@example.test"]])
    # done_there's recipient in the site is delivered already: not for the site.
    spool = Spool(daemon.queue)
    spool.append("deferred", done_there, [
        {"r": 0, "s": "sent", "dsn": "2.0.0", "t": 1.0, "text": "delivered"}])
    spool.set_next_attempt("deferred", done_there, LATER)  # the append wrote the mtime
    held = seed(daemon.queue, "hold", [["alice@example.test"]])
    before = time.time()
    assert mta(daemon, "flush", "--site", "EXAMPLE.test") == ""
    for qid in (for_site, mixed):
        assert before - 1 <= mtime(daemon, qid) <= time.time()
    assert mtime(daemon, elsewhere) == mtime(daemon, done_there) == LATER
    assert where(daemon, *held) == ["hold"]

    err = mta(daemon, "flush", "--site", "alice@example.test", status=1)
    assert err == ('mta queue: fatal: Cannot flush mail queue - invalid destination: '
                   '"alice@example.test"\n')


def test_a_running_daemon_delivers_only_the_flushed_mail(daemon_factory: DaemonFactory) -> None:
    # Seeded before the start, due in an hour: the daemon leaves them alone
    # (it looks at deferred/ every second) until a flush makes some due.
    daemon = daemon_factory()
    first, second = seed(daemon.queue, "deferred", [["alice@example.test"]] * 2)
    for_bob, other = seed(daemon.queue, "deferred",
                          [["bob@example.test"], ["carol@elsewhere.example"]])
    daemon.start()

    mta(daemon, "flush", second)
    daemon.wait_log(rf"postern/qmgr\[\d+\]: {second}: removed")
    assert len(daemon.wait_maildir("alice")) == 1
    assert where(daemon, first, for_bob) == ["deferred", "deferred"]
    assert mtime(daemon, first) == mtime(daemon, for_bob) == LATER
    mta(daemon, "flush", "--site", "example.TEST")
    daemon.wait_log(rf"postern/qmgr\[\d+\]: {first}: removed")
    daemon.wait_log(rf"postern/qmgr\[\d+\]: {for_bob}: removed")
    assert len(daemon.wait_maildir("alice", 2)) == 2
    assert len(daemon.maildir("bob")) == 1
    assert where(daemon, other) == ["deferred"]
    assert mtime(daemon, other) == LATER
    assert f"{other}:" not in daemon.log_text()


def test_a_flushed_message_goes_past_defer_transports(daemon_factory: DaemonFactory) -> None:
    """defer_transports hold mail "unless someone issues sendmail -q or
    equivalent": postqueue -i and -s are such requests, as -f is; the mail
    they do not name stays held."""
    daemon = daemon_factory("defer_transports = local\n")
    named, for_bob = seed(daemon.queue, "deferred", [["alice@example.test"],
                                                     ["bob@example.test"]])
    daemon.start()

    mta(daemon, "flush", named)
    daemon.wait_log(rf"postern/qmgr\[\d+\]: {named}: removed")
    assert len(daemon.wait_maildir("alice")) == 1
    mta(daemon, "flush", "--site", "example.test")
    daemon.wait_log(rf"postern/qmgr\[\d+\]: {for_bob}: removed")
    assert len(daemon.wait_maildir("bob")) == 1

    # New mail for the transport is still held back by defer_transports.
    [fresh] = seed(daemon.queue, "incoming", [["alice@example.test"]])
    Spool(daemon.queue).wake(b"W")
    daemon.wait_log(rf"{fresh}: to=<alice@example.test>.*status=deferred \(deferred transport\)")
    assert len(daemon.maildir("alice")) == 1
