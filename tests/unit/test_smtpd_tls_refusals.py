"""A connection limit's 421 never goes out in cleartext into a TLS handshake.

An in-process receiver on 127.0.0.1 whose connection counts are the
master's (a fake anvil answered by the test), as with receiver workers: a
client exempt from the per-client limit is greeted at once, and the count
that says the listener is full may come back while its TLS handshake is
under way, in wrapper mode or after STARTTLS. The client then reads TLS
records only, so it must get no cleartext 421; it is closed without a byte.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from mta.config import from_text
from mta.smtpd.secure import SecureSmtpdProtocol
from mta.smtpd.server import ConnectionRegistry, SmtpdContext, SmtpdServer
from tests.helpers import in_process_smtpd, in_process_tls_cf, until
from tests.unit.test_connection_counts import FakeAnvil


class Sessions(SecureSmtpdProtocol):
    made: list[Sessions] = []

    def __init__(self, ctx: SmtpdContext) -> None:
        super().__init__(ctx)
        Sessions.made.append(self)


@contextlib.asynccontextmanager
async def tls_server(tmp_path: Path, extra: str
                     ) -> AsyncIterator[tuple[SmtpdServer, FakeAnvil]]:
    """A TLS listener of one connection whose count the test's anvil decides."""
    cf, _ca = in_process_tls_cf(tmp_path, "smtpd_client_connection_limit = 1\n" + extra)
    connections = ConnectionRegistry(from_text(cf))
    anvil = FakeAnvil()
    connections.anvil = anvil
    Sessions.made = []
    async with in_process_smtpd(tmp_path, cf, Sessions, connections=connections) as smtpd:
        yield smtpd, anvil


@pytest.fixture
async def wrapper_server(tmp_path: Path) -> AsyncIterator[tuple[SmtpdServer, FakeAnvil]]:
    async with tls_server(tmp_path, "smtpd_tls_wrappermode = yes\n") as served:
        yield served


@pytest.fixture
async def starttls_server(tmp_path: Path) -> AsyncIterator[tuple[SmtpdServer, FakeAnvil]]:
    async with tls_server(tmp_path, "") as served:
        yield served


async def the_rest(reader: asyncio.StreamReader) -> bytes:
    return await asyncio.wait_for(reader.read(), 10)


def assert_refused(maillog_lines: list[str], counts: str) -> None:
    """A refusal's lines, and no failed handshake: the client did nothing wrong."""
    assert maillog_lines[1:] == [
        "smtpd: warning: Connection limit exceeded: 2 for service smtp",
        f"smtpd: disconnect from unknown[127.0.0.1] {counts}"], maillog_lines


async def test_refused_during_the_wrapper_mode_handshake(
        wrapper_server: tuple[SmtpdServer, FakeAnvil], maillog_lines: list[str]) -> None:
    server, anvil = wrapper_server
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    # Admitted without waiting (127.0.0.1 is exempt): the session awaits the
    # client's ClientHello while the master counts it.
    await until(lambda: len(anvil.asked) == 1 and Sessions.made
                and Sessions.made[0]._handshake is not None)
    anvil.asked[0][1].set_result(("total", 1))
    assert await the_rest(reader) == b""  # not "421 4.7.0 mx.test Error: too many connections"
    writer.close()
    await until(lambda: Sessions.made[0].transport is None)
    assert_refused(maillog_lines, "commands=0/0")


async def test_refused_during_the_starttls_handshake(
        starttls_server: tuple[SmtpdServer, FakeAnvil], maillog_lines: list[str]) -> None:
    server, anvil = starttls_server
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    assert (await reader.readline()).startswith(b"220 ")
    writer.write(b"STARTTLS\r\n")
    assert await reader.readline() == b"220 2.0.0 Ready to start TLS\r\n"
    session = Sessions.made[0]
    await until(lambda: session._handshake is not None)
    anvil.asked[0][1].set_result(("total", 1))
    assert await the_rest(reader) == b""
    writer.close()
    await until(lambda: session.transport is None)
    assert_refused(maillog_lines, "starttls=0/1 commands=0/1")


async def test_refused_once_tls_is_up_the_421_goes_inside_tls(
        starttls_server: tuple[SmtpdServer, FakeAnvil], tmp_path: Path) -> None:
    """After the handshake the 421 is sent as usual, encrypted."""
    server, anvil = starttls_server
    context = ssl.create_default_context(cafile=str(tmp_path / "ca.pem"))
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    assert (await reader.readline()).startswith(b"220 ")
    writer.write(b"STARTTLS\r\n")
    assert await reader.readline() == b"220 2.0.0 Ready to start TLS\r\n"
    await writer.start_tls(context, server_hostname="localhost")
    session = Sessions.made[0]
    await until(lambda: session.tls is not None)
    anvil.asked[0][1].set_result(("total", 1))
    assert await the_rest(reader) == b"421 4.7.0 mx.test Error: too many connections\r\n"
    writer.close()


def client_hello() -> bytes:
    """A real TLS ClientHello, as the first flight of an implicit-TLS client."""
    client = ssl.create_default_context().wrap_bio(ssl.MemoryBIO(), outgoing := ssl.MemoryBIO(),
                                                   server_hostname="localhost")
    with contextlib.suppress(ssl.SSLWantReadError):
        client.do_handshake()
    return outgoing.read()


async def test_a_refused_wrapper_mode_client_costs_no_handshake(
        tmp_path: Path, maillog_lines: list[str]) -> None:
    """A client with a limit of its own waits for the master's count; its
    ClientHello, already sent, waits with it, so a refusal gets not even a
    ServerHello (and costs no signature)."""
    async with tls_server(tmp_path, "smtpd_tls_wrappermode = yes\n"
                          "smtpd_client_event_limit_exceptions =\n") as (server, anvil):
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        writer.write(client_hello())
        await until(lambda: len(anvil.asked) == 1)
        session = Sessions.made[0]
        # The ClientHello has arrived: held (or, were it not, answered).
        await until(lambda: session._held or reader._buffer)  # type: ignore[attr-defined]
        anvil.asked[0][1].set_result(("client", 2))
        assert await the_rest(reader) == b""
        writer.close()
        await until(lambda: session.transport is None)
        assert not session._handshake or not session._handshake.engine.connection.get_cipher_name()
    assert "warning: Connection concurrency limit exceeded: 3 from unknown[127.0.0.1]" \
        in " ".join(maillog_lines)
