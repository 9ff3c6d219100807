"""A scripted SMTP server on 127.0.0.x for client tests (ours and the TLS policy's).

Usage::

    peer = await ScriptedPeer(replies={"RCPT": ["250 2.1.5 Ok", "550 5.1.1 No such user"]},
                              tls=issued.server_context()).start()
    ... deliver to 127.0.0.1:peer.port ...
    assert peer.connections[0].commands == ["EHLO mx.test", "STARTTLS", ...]
    assert peer.messages[0].wire.endswith(b"\\r\\n.\\r\\n")
    await peer.close()

Replies are scripted per command verb (``GREETING``, ``EHLO``, ``HELO``,
``STARTTLS``, ``MAIL``, ``RCPT``, ``DATA``, ``DOT`` for the end of data,
``RSET``, ``NOOP``, ``QUIT``). A value is a reply text (``"250 2.1.0 Ok"``,
multi-line with embedded ``\\n``), a list consumed in order whose last entry
repeats, or a callable ``(argument) -> text``. Two special values: ``HANG``
never answers (to exercise timeouts) and ``CLOSE`` drops the connection.
Lines are answered one by one as they arrive, so a pipelining client gets
its replies in order, as RFC 2920 requires.

With ``tls=`` (a server SSLContext) EHLO offers STARTTLS and the peer does a
real handshake; ``inject_after_starttls`` sends plaintext right after the 220
to test that a client discards it (CVE-2011-0411). Everything is recorded:
``raw`` (bytes received in plaintext and, after STARTTLS, as decrypted),
``commands`` (command lines), ``messages`` (each DATA, as on the wire and
dot-unstuffed) and ``client_address``, per connection. ``host`` may be an
IPv6 address (``"::1"``).
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from tests.fakes.loopback import LoopbackServer

HANG = object()
CLOSE = object()

DEFAULT_REPLIES: dict[str, Any] = {
    "GREETING": "220 peer.test ESMTP scripted",
    "EHLO": None,  # built from ehlo_keywords unless scripted
    "HELO": "250 peer.test",
    "STARTTLS": "220 2.0.0 Ready to start TLS",
    "MAIL": "250 2.1.0 Ok",
    "RCPT": "250 2.1.5 Ok",
    "DATA": "354 End data with <CR><LF>.<CR><LF>",
    "DOT": "250 2.0.0 Ok: queued as SCRIPTED",
    "RSET": "250 2.0.0 Ok",
    "NOOP": "250 2.0.0 Ok",
    "QUIT": "221 2.0.0 Bye",
}


@dataclass
class Message:
    wire: bytes  # as received, dot-stuffed, ending in CRLF.CRLF
    content: bytes  # dot-unstuffed, without the final dot line
    sender: str
    recipients: list[str]


@dataclass
class Connection:
    raw: bytearray = field(default_factory=bytearray)
    commands: list[str] = field(default_factory=list)
    messages: list[Message] = field(default_factory=list)
    tls: bool = False
    tls_version: str | None = None
    server_name: str | None = None  # SNI the client sent, if any
    client_address: str = ""  # the client's source address (smtp_bind_address tests)


class ScriptedPeer(LoopbackServer):
    def __init__(self, *, replies: dict[str, Any] | None = None,
                 ehlo_keywords: tuple[str, ...] = ("PIPELINING", "SIZE 10240000", "8BITMIME",
                                                  "ENHANCEDSTATUSCODES"),
                 tls: ssl.SSLContext | None = None, host: str = "127.0.0.1",
                 hostname: str = "peer.test", inject_after_starttls: bytes = b"",
                 port: int = 0) -> None:
        super().__init__(host, port)
        self.replies = {**DEFAULT_REPLIES, **(replies or {})}
        self.ehlo_keywords = ehlo_keywords
        self.tls = tls
        self.hostname = hostname
        self.inject_after_starttls = inject_after_starttls
        self.connections: list[Connection] = []
        self._counters: dict[str, int] = {}
        self.connected = asyncio.Event()
        if tls is not None:
            tls.sni_callback = self._sni

    def _sni(self, ssl_object: ssl.SSLObject, name: str | None, context: ssl.SSLContext) -> None:
        if self.connections:
            self.connections[-1].server_name = name

    @property
    def messages(self) -> list[Message]:
        return [m for c in self.connections for m in c.messages]

    @property
    def commands(self) -> list[str]:
        return [c for conn in self.connections for c in conn.commands]

    # -- replies ------------------------------------------------------------------------
    def _reply_for(self, verb: str, argument: str, conn: Connection | None = None) -> Any:
        script = self.replies.get(verb)
        if verb == "EHLO" and script is None:
            keywords = list(self.ehlo_keywords)
            if self.tls is not None and not (conn and conn.tls):
                keywords.append("STARTTLS")
            return "\n".join([f"250 {self.hostname}", *(f"250 {k}" for k in keywords)])
        if script is None:
            return "502 5.5.2 Error: command not recognized"
        if isinstance(script, list):
            count = self._counters.get(verb, 0)
            self._counters[verb] = count + 1
            script = script[min(count, len(script) - 1)]
        if callable(script) and script not in (HANG, CLOSE):
            script = script(argument)
        return script

    @staticmethod
    def _encode(text: str) -> bytes:
        lines = text.split("\n")
        out = []
        for i, line in enumerate(lines):
            code, rest = line[:3], line[4:] if len(line) > 3 else ""
            sep = "-" if i < len(lines) - 1 else " "
            out.append(f"{code}{sep}{rest}\r\n")
        return "".join(out).encode()

    # -- one connection -------------------------------------------------------------------
    async def _send(self, writer: asyncio.StreamWriter, reply: Any) -> bool:
        """Send a scripted reply; False when the script says hang up or hang."""
        if reply is HANG:
            await asyncio.Event().wait()
        if reply is CLOSE:
            writer.close()
            return False
        writer.write(self._encode(reply))
        await writer.drain()
        return True

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        conn = Connection(client_address=writer.get_extra_info("peername")[0])
        self.connections.append(conn)
        self.connected.set()
        sender = ""
        recipients: list[str] = []
        try:
            if not await self._send(writer, self._reply_for("GREETING", "")):
                return
            while True:
                line = await reader.readline()
                if not line:
                    return
                conn.raw += line
                text = line.decode("utf-8", "replace").rstrip("\r\n")
                conn.commands.append(text)
                verb, _, argument = text.partition(" ")
                verb = verb.upper()
                if verb == "MAIL":
                    verb_arg = argument.partition(":")[2].strip()
                    sender = verb_arg.split(" ")[0].strip("<>")
                    recipients = []
                reply = self._reply_for(verb, argument, conn)
                if verb == "RCPT" and isinstance(reply, str) and reply.startswith("2"):
                    recipients.append(argument.partition(":")[2].strip().strip("<>"))
                if not await self._send(writer, reply):
                    return
                if verb == "QUIT":
                    writer.close()
                    return
                if verb == "STARTTLS" and isinstance(reply, str) and reply.startswith("220"):
                    if self.inject_after_starttls:
                        writer.write(self.inject_after_starttls)
                        await writer.drain()
                    assert self.tls is not None
                    await writer.start_tls(self.tls)
                    conn.tls = True
                    ssl_object = writer.get_extra_info("ssl_object")
                    conn.tls_version = ssl_object.version() if ssl_object else None
                    continue
                if verb == "DATA" and isinstance(reply, str) and reply.startswith("354"):
                    wire = bytearray()
                    while True:
                        data_line = await reader.readline()
                        if not data_line:
                            return
                        conn.raw += data_line
                        wire += data_line
                        if data_line == b".\r\n":
                            break
                    body = bytes(wire[:-3])
                    lines = body.split(b"\r\n")
                    content = b"\r\n".join(x[1:] if x.startswith(b".") else x for x in lines)
                    conn.messages.append(Message(bytes(wire), content, sender,
                                                 list(recipients)))
                    if not await self._send(writer, self._reply_for("DOT", "")):
                        return
        except (ConnectionError, ssl.SSLError, asyncio.IncompleteReadError, OSError):
            return
        finally:
            with contextlib.suppress(Exception):
                writer.close()


Reply = str | Callable[[str], str] | list[Any] | object
