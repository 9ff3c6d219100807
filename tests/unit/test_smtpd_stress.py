"""Stress-dependent limits (Postfix's STRESS_README): a listener at its
connection limit switches its sessions to the ${stress?{…}:{…}} values, and
smtpd_per_request_deadline stops a client that dribbles its message."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from mta.config import ConfigError, from_text
from mta.smtpd.server import SmtpdServer
from mta.workers import Supervisor, _Worker
from tests.helpers import IN_PROCESS_CF, in_process_smtpd, read_reply, until

SHUTTING_DOWN = "421 4.3.2 mx.test Service shutting down, closing transmission channel"


def test_the_stress_values_are_postfix_defaults() -> None:
    config = from_text("")
    stressed = config.under_stress()
    assert (config.smtpd_timeout, config.smtpd_hard_error_limit,
            config.smtpd_junk_command_limit, config.smtpd_starttls_timeout,
            config.smtpd_per_request_deadline) == (300, 20, 100, 300, False)
    assert (stressed.smtpd_timeout, stressed.smtpd_hard_error_limit,
            stressed.smtpd_junk_command_limit, stressed.smtpd_starttls_timeout,
            stressed.smtpd_per_request_deadline) == (10, 1, 1, 10, True)
    assert config.under_stress() is stressed  # built once


def test_stress_set_in_main_cf_wins() -> None:
    assert from_text("stress = yes\n").smtpd_timeout == 10  # forced on
    assert from_text("stress =\n").under_stress().smtpd_timeout == 300  # forced off
    # An explicit value is not stress-dependent at all.
    assert from_text("smtpd_timeout = 60s\n").under_stress().smtpd_timeout == 60


async def idle_session(port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    assert (await read_reply(reader)).startswith("220 ")
    return reader, writer


async def test_a_full_listener_comes_under_stress(tmp_path: Path,
                                                  maillog_lines: list[str]) -> None:
    cf = IN_PROCESS_CF + ("smtpd_client_connection_limit = 2\n"
                          "smtpd_timeout = ${stress?{1}:{300}}s\n")
    async with in_process_smtpd(tmp_path, cf) as smtpd:
        connections = smtpd.ctx.connections
        sessions = [await idle_session(smtpd.port) for _ in range(2)]
        started = time.monotonic()
        refused, writer = await asyncio.open_connection("127.0.0.1", smtpd.port)
        assert await read_reply(refused) == "421 4.7.0 mx.test Error: too many connections"
        writer.close()
        assert connections.stressed
        # The idle sessions had 300s; under stress they have 1s from now.
        for reader, writer in sessions:
            assert await read_reply(reader) == "421 4.4.2 mx.test Error: timeout exceeded"
            writer.close()
        assert time.monotonic() - started < 5
        await until(lambda: not connections.stressed)
        reader, writer = await idle_session(smtpd.port)  # room again, and no stress
        assert connections.limits.smtpd_timeout == 300
        writer.close()
    assert [line for line in maillog_lines if line.startswith("master:")] == [
        'master: warning: service "smtp" has reached its connection limit "2": new clients '
        "are refused until sessions end",
        "master: warning: to avoid this condition, increase smtpd_client_connection_limit or "
        "reduce the service time per client; until then the stress-dependent settings apply "
        "(stress = yes)",
        'master: service "smtp": stress is over: 1 of 2 connections']
    assert sum("timeout after CONNECT from" in line for line in maillog_lines) == 2


async def dribble_message(port: int, pause: float, count: int) -> str:
    """A transaction whose message content comes a byte at a time; the
    reply that ends it (the 250, or the timeout's 421)."""
    reader, writer = await idle_session(port)
    try:
        for command in ("EHLO client.example", "MAIL FROM:<a@example.org>",
                        "RCPT TO:<postmaster>", "DATA"):
            writer.write(command.encode() + b"\r\n")
            await read_reply(reader)
        for _ in range(count):
            writer.write(b"x")
            await asyncio.sleep(pause)  # the dribbling is what is tested
            if reader.at_eof() or reader._buffer:  # type: ignore[attr-defined]
                return await read_reply(reader)
        writer.write(b"\r\n.\r\n")
        return await read_reply(reader)
    finally:
        writer.close()


async def test_a_per_request_deadline_cuts_off_a_dribbling_client(
        tmp_path: Path, maillog_lines: list[str]) -> None:
    cf = IN_PROCESS_CF + ("smtpd_timeout = 1s\nsmtpd_per_request_deadline = yes\n"
                          "smtpd_min_data_rate = 500\n")
    async with in_process_smtpd(tmp_path, cf) as smtpd:
        # 1s for the DATA plus 2ms per byte: 30 bytes over 3s are too slow.
        assert await dribble_message(smtpd.port, 0.1, 30) == \
            "421 4.4.2 mx.test Error: timeout exceeded"
    assert any("timeout after DATA (" in line for line in maillog_lines), maillog_lines


async def test_without_it_each_read_restarts_the_timer(tmp_path: Path) -> None:
    async with in_process_smtpd(tmp_path, IN_PROCESS_CF + "smtpd_timeout = 1s\n") as smtpd:
        reply = await dribble_message(smtpd.port, 0.1, 30)
    assert reply.startswith("250 2.0.0 Ok: queued as "), reply


def test_a_bad_stress_value_stops_the_load() -> None:
    """Every value is converted at load under stress too: a bad one must not
    wait for the first overload to break the listener."""
    with pytest.raises(ConfigError, match="smtpd_timeout = xs"):
        from_text("smtpd_timeout = ${stress?{x}:{300}}s\n")


def test_the_master_ends_stress_by_the_limit_as_configured_now(
        maillog_lines: list[str]) -> None:
    """With workers the master keeps the limit that stress is judged by; a
    reload that raises it must not keep the listener under stress."""
    supervisor = Supervisor(from_text("smtp/inet = 127.0.0.1:2525\n"), 1, lambda qid: None)
    worker = _Worker(1)
    for n in range(4):
        supervisor._admit(worker, f"{n}\tsmtp\t192.0.2.{n}\t4\t0\t0")
    supervisor._admit(worker, "9\tsmtp\t192.0.2.9\t4\t0\t0")  # refused: stress
    assert "smtp" in supervisor._stressed
    supervisor._admit(worker, "10\tsmtp\t192.0.2.10\t1000\t0\t0")  # after a reload
    supervisor._count(worker, ("smtp", "192.0.2.0"), -1)  # 4 of 1000 open
    assert "smtp" not in supervisor._stressed
    assert 'master: service "smtp": stress is over: 4 of 1000 connections' in maillog_lines


async def transaction_then_shutdown(smtpd: SmtpdServer, after: bytes) -> list[str]:
    """A session in a transaction when the daemon stops; what it gets for
    after, sent once the stop began, up to the end of the connection."""
    reader, writer = await idle_session(smtpd.port)
    try:
        writer.write(b"EHLO client.example\r\n")
        await read_reply(reader)
        writer.write(b"MAIL FROM:<a@example.org>\r\n")
        assert await read_reply(reader) == "250 2.1.0 Ok"
        smtpd.ctx.connections.shut_down()
        writer.write(after)
        lines = []
        while line := await asyncio.wait_for(reader.readline(), 5):
            lines.append(line.decode().rstrip())
        return lines
    finally:
        writer.close()


async def test_a_transaction_ended_at_stop_gets_the_421(tmp_path: Path) -> None:
    """RSET (answered in the protocol callback otherwise) ends the
    transaction; the MAIL pipelined behind it must not start another."""
    async with in_process_smtpd(tmp_path, IN_PROCESS_CF) as smtpd:
        said = await transaction_then_shutdown(smtpd, b"RSET\r\nMAIL FROM:<b@example.org>\r\n")
    assert said == ["250 2.0.0 Ok", SHUTTING_DOWN]


async def test_a_client_admitted_while_stopping_is_not_greeted(tmp_path: Path) -> None:
    async with in_process_smtpd(tmp_path, IN_PROCESS_CF) as smtpd:
        smtpd.ctx.connections.shut_down()  # its name lookup or count outlasted the stop
        reader, writer = await asyncio.open_connection("127.0.0.1", smtpd.port)
        assert await read_reply(reader) == SHUTTING_DOWN
        writer.close()
