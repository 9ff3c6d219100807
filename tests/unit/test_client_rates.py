"""Client event rates (mta/smtpd/rates.py): anvil's fixed window per client,
and the limits in one receiver process (no master to ask)."""

from __future__ import annotations

import asyncio
from pathlib import Path

from mta.config import from_text
from mta.master import Receiver, check_listeners
from mta.smtpd.rates import ClientRates
from mta.spool import Spool
from tests.helpers import IN_PROCESS_CF, in_process_smtpd, one_at_a_time


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_unit_starts_at_the_first_event_and_every_rate_starts_over() -> None:
    clock = Clock()
    rates = ClientRates(clock)
    assert [rates.event("smtp", "192.0.2.1", "message", 60) for _ in range(3)] == [1, 2, 3]
    assert rates.event("smtp", "192.0.2.1", "recipient", 60) == 1
    clock.now += 60  # a whole unit is not yet over at its last instant
    assert rates.event("smtp", "192.0.2.1", "message", 60) == 4
    clock.now += 0.5
    assert rates.event("smtp", "192.0.2.1", "message", 60) == 1
    assert rates.event("smtp", "192.0.2.1", "recipient", 60) == 1


def test_clients_and_listeners_are_counted_apart() -> None:
    rates = ClientRates(Clock())
    rates.event("smtp", "192.0.2.1", "connection", 60)
    assert rates.event("smtp", "192.0.2.2", "connection", 60) == 1
    assert rates.event("submission", "192.0.2.1", "connection", 60) == 1
    assert rates.event("smtp", "192.0.2.1", "connection", 60) == 2


def test_a_look_does_not_count() -> None:
    rates = ClientRates(Clock())
    assert rates.event("smtp", "192.0.2.1", "newtls", 60, count=False) == 0
    rates.event("smtp", "192.0.2.1", "newtls", 60)
    assert rates.event("smtp", "192.0.2.1", "newtls", 60, count=False) == 1


def test_clients_of_past_units_are_forgotten() -> None:
    clock = Clock()
    rates = ClientRates(clock)
    for n in range(100):
        rates.event("smtp", f"192.0.2.{n}", "connection", 60)
    clock.now += 61
    rates.event("smtp", "198.51.100.1", "connection", 60)
    assert len(rates) == 1


CF = IN_PROCESS_CF + "smtpd_client_event_limit_exceptions =\n"


async def test_one_process_counts_connections_itself(tmp_path: Path,
                                                     maillog_lines: list[str]) -> None:
    async with in_process_smtpd(tmp_path, CF + "smtpd_client_connection_rate_limit = 2\n"
                                ) as smtpd:
        said = [await one_at_a_time(smtpd.port, ["NOOP"]) for _ in range(2)]
        assert said == [["250 2.0.0 Ok"]] * 2
        refused = await greeting(smtpd.port)
    assert refused == "421 4.7.0 mx.test Error: too many connections from 127.0.0.1"
    assert ("smtpd: warning: Connection rate limit exceeded: 3 from unknown[127.0.0.1] "
            "for service smtp") in maillog_lines


async def greeting(port: int) -> str:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        return (await asyncio.wait_for(reader.readline(), 10)).decode().rstrip()
    finally:
        writer.close()


async def test_one_process_counts_mail_and_rcpt_itself(tmp_path: Path,
                                                      maillog_lines: list[str]) -> None:
    async with in_process_smtpd(tmp_path, CF + "smtpd_client_message_rate_limit = 1\n"
                                "smtpd_client_recipient_rate_limit = 1\n") as smtpd:
        said = await one_at_a_time(smtpd.port, [
            "EHLO client.example", "MAIL FROM:<a@example.org>", "RCPT TO:<postmaster>",
            "RCPT TO:<postmaster>", "RSET", "MAIL FROM:<a@example.org>",
            # Not counted: refused before the rate is asked (RFC 5321 order).
            "MAIL FROM:", "RCPT TO:<x@mx.test>"])
    assert said[1:] == [
        "250 2.1.0 Ok", "250 2.1.5 Ok", "450 4.7.1 Error: too many recipients from 127.0.0.1",
        "250 2.0.0 Ok", "450 4.7.1 Error: too much mail from 127.0.0.1",
        "501 5.5.4 Syntax: MAIL FROM:<address>", "503 5.5.1 Error: need MAIL command"]
    warnings = [line for line in maillog_lines if "rate limit exceeded" in line]
    assert warnings == [
        "smtpd: warning: Recipient address rate limit exceeded: 2 from unknown[127.0.0.1] "
        "for service smtp",
        "smtpd: warning: Message delivery request rate limit exceeded: 2 from "
        "unknown[127.0.0.1] for service smtp"]


async def test_the_rate_time_unit_is_one_for_all_listeners(
        tmp_path: Path, maillog_lines: list[str]) -> None:
    """anvil_rate_time_unit is anvil's: a listener's -o is warned of and
    ignored in one process too, as it is with workers (the master counts
    with the main.cf value) and in Postfix (anvil reads main.cf)."""
    config = from_text("smtp/inet = 127.0.0.1:0\nsubmission/inet = 127.0.0.1:0\n"
                       "anvil_rate_time_unit = 90s\n"
                       "submission/inet/anvil_rate_time_unit = 1s\n"
                       f"queue_directory = {tmp_path / 'queue'}\n")
    check_listeners(config)
    assert ("master: warning: submission: anvil_rate_time_unit is a main.cf parameter "
            "(one for all listeners); the listener's value is ignored") in maillog_lines
    assert sum("anvil_rate_time_unit" in line for line in maillog_lines) == 1
    spool = Spool(tmp_path / "queue", lane=0, fsync=False)
    spool.create()
    receiver = Receiver(config, on_queued=lambda qid: None, spool=spool)
    await receiver.start()
    try:
        assert [server.ctx.connections.rate_time_unit for server in receiver.servers] == [90, 90]
    finally:
        await receiver.shutdown(0)
        spool.close()


def test_statistics_report_the_maxima_since_the_last_report() -> None:
    rates = ClientRates(Clock())
    assert rates.statistics(60) == []  # nothing counted: no lines, as anvil
    for _ in range(2):
        rates.event("smtp", "192.0.2.1", "connection", 60)
    rates.connections("smtp", "192.0.2.1", 2)
    rates.event("submission", "192.0.2.2", "auth", 60)
    lines = [line.rsplit(" at ", 1)[0] for line in rates.statistics(60)]
    assert lines == ["statistics: max connection rate 2/60s for (smtp:192.0.2.1)",
                     "statistics: max connection count 2 for (smtp:192.0.2.1)",
                     "statistics: max auth rate 1/60s for (submission:192.0.2.2)",
                     "statistics: max cache size 2"]
    assert rates.statistics(60) == []  # the maxima start again after a report
    assert rates.event("smtp", "192.0.2.1", "connection", 60) == 3  # the rates do not
