"""How many writes a STARTTLS session costs the receiver.

An in-process receiver on 127.0.0.1 whose raw transport counts its writes,
and a Python ssl client: in TLS 1.3 the session tickets ride with the first
reply after the handshake and the 221 with close_notify, so a session from
greeting to QUIT is six writes, not eight; in TLS 1.2 nothing is held back
(the client waits for the server's Finished), and the session still ends.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from mta.smtpd.secure import SecureSmtpdProtocol
from mta.smtpd.server import SmtpdServer
from tests.fakes.certs import TestCA
from tests.helpers import in_process_smtpd, in_process_tls_cf, until


class CountingTransport:
    """The socket transport, with its writes counted."""

    def __init__(self, raw: asyncio.Transport, writes: list[bytes]) -> None:
        self._raw = raw
        self._writes = writes

    def write(self, data: bytes) -> None:
        self._writes.append(bytes(data))
        self._raw.write(data)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._raw, name)


class CountingSession(SecureSmtpdProtocol):
    writes: list[bytes] = []
    sessions: list[CountingSession] = []

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        CountingSession.sessions.append(self)
        # CountingTransport passes everything but write() through to the real transport.
        super().connection_made(CountingTransport(transport, CountingSession.writes))  # type: ignore[arg-type]


@pytest.fixture
async def tls_server(tmp_path: Path) -> AsyncIterator[tuple[SmtpdServer, TestCA]]:
    cf, ca = in_process_tls_cf(tmp_path)
    CountingSession.writes = []
    async with in_process_smtpd(tmp_path, cf, CountingSession) as smtpd:
        yield smtpd, ca


async def _reply(reader: asyncio.StreamReader) -> bytes:
    while True:
        line = await asyncio.wait_for(reader.readline(), 10)
        assert line, "connection closed"
        if line[3:4] != b"-":
            return line[:3]


@pytest.mark.parametrize(("version", "writes"), [
    (ssl.TLSVersion.TLSv1_3, 10),
    (ssl.TLSVersion.TLSv1_2, 11),  # the server's Finished is a flight of its own
])
async def test_a_starttls_session_in_few_writes(
        tls_server: tuple[SmtpdServer, TestCA], version: ssl.TLSVersion, writes: int) -> None:
    server, ca = tls_server
    client = ssl.create_default_context(cafile=str(ca.cert_file))
    client.minimum_version = client.maximum_version = version
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    assert await _reply(reader) == b"220"
    writer.write(b"EHLO client.test\r\n")
    assert await _reply(reader) == b"250"
    writer.write(b"STARTTLS\r\n")
    assert await _reply(reader) == b"220"
    await writer.start_tls(client, server_hostname="localhost")
    assert writer.get_extra_info("ssl_object").version() == version.name.replace("_", ".")
    # The server has taken the client's Finished before the EHLO arrives, so
    # the tickets cannot ride with the reply by luck of one read.
    session = CountingSession.sessions[-1]
    await until(lambda: session._handshake is not None and session._handshake.done.done())
    for command, code in ((b"EHLO client.test", b"250"), (b"MAIL FROM:<a@client.test>", b"250"),
                          (b"RCPT TO:<b@relay.test>", b"250"), (b"DATA", b"354")):
        writer.write(command + b"\r\n")
        assert await _reply(reader) == code
    # Message content in several TLS records: no write until the reply.
    for _ in range(5):
        writer.write(b"x" * 70 + b"\r\n")
        await writer.drain()
    writer.write(b".\r\n")
    assert await _reply(reader) == b"250"
    writer.write(b"QUIT\r\n")
    assert await _reply(reader) == b"221"
    assert await asyncio.wait_for(reader.read(), 10) == b""  # close_notify, then EOF
    writer.close()
    # 220, 250, 220 in plaintext; the server's handshake flight(s); one write
    # per reply after it (the first with the TLS 1.3 tickets); the 221 with
    # close_notify.
    assert len(CountingSession.writes) == writes
