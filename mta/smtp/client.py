"""The SMTP client session: one connection to one server, stage by stage.

The session executes; it never decides. The delivery agent (agent.py) walks
it through connect, greeting, EHLO (HELO when EHLO is refused), an optional
STARTTLS whose go-ahead comes from the TLS policy (tlshook.py), then one or
more transactions (MAIL and RCPT pipelined when the server offers PIPELINING,
RFC 2920), RSET between them and QUIT at the end. Every read has its own time
limit, Postfix's smtp_*_timeout per stage, and a failure names the stage the
way Postfix does ("conversation with H timed out while sending RCPT TO").
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
import ssl
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field, fields

from mta.newlines import crlf_only, to_crlf
from mta.smtp.reply import Reply, ReplyParser

log = logging.getLogger(__name__)

_LINE_LIMIT = 1 << 16

# (address, port, local address) -> streams; the session applies the connect timeout.
Connector = Callable[[str, int, "str | None"],
                     Awaitable[tuple[asyncio.StreamReader, asyncio.StreamWriter]]]


@dataclass(frozen=True, slots=True)
class Timeouts:
    """Postfix's per-stage time limits, in seconds (postconf(5) smtp_*_timeout)."""

    connect: float = 30.0
    helo: float = 300.0  # the greeting and the EHLO/HELO reply
    starttls: float = 300.0  # the STARTTLS reply and the handshake
    mail: float = 300.0
    rcpt: float = 300.0
    data_init: float = 120.0
    data_xfer: float = 180.0  # each write of message content
    data_done: float = 600.0  # the reply to the final dot (RFC 5321 §4.5.3.2.6)
    rset: float = 20.0
    quit: float = 300.0

    @classmethod
    def from_config(cls, config: object) -> Timeouts:
        get = config.get  # type: ignore[attr-defined]
        return cls(*(float(get(f"smtp_{f.name}_timeout")) for f in fields(cls)))


@dataclass(frozen=True, slots=True)
class Peer:
    """The server as the maillog names it."""

    hostname: str
    address: str
    port: int

    @property
    def name(self) -> str:  # host[ip], as in "host H[ip] said: …"
        return f"{self.hostname}[{self.address}]"

    @property
    def relay(self) -> str:  # host[ip]:port, the relay= field
        return f"{self.hostname}[{self.address}]:{self.port}"


class SmtpClientError(Exception):
    """A session-level failure: the text is what the maillog and the bounce say."""

    dsn = "4.4.2"

    def __init__(self, text: str) -> None:
        super().__init__(text)
        self.text = text


class ConnectFailure(SmtpClientError):
    """No TCP connection (refused, unreachable, timed out)."""

    dsn = "4.4.1"


class ConversationTimeout(SmtpClientError):
    """A stage's time limit ran out."""


class ConnectionLost(SmtpClientError):
    """The server closed the connection or sent something that is not SMTP."""


class StaleSession(SmtpClientError):
    """A cached connection did not answer RSET: no transaction happened on it."""


class StartTlsRefused(SmtpClientError):
    """The server answered STARTTLS with something other than 220."""

    def __init__(self, text: str, reply: Reply) -> None:
        super().__init__(text)
        self.reply = reply


class TlsHandshakeFailed(SmtpClientError):
    """The TLS handshake after 220 failed; the connection is unusable.

    reason is what Postfix's "SSL_connect error to host[ip]:port: REASON"
    says: OpenSSL's reason, the system error, or "lost connection".
    """

    dsn = "4.7.5"

    def __init__(self, text: str, error: BaseException, reason: str) -> None:
        super().__init__(text)
        self.error = error
        self.reason = reason


@dataclass
class TlsFacts:
    """What the handshake established, for the TLS policy and the logs."""

    protocol: str
    cipher: str
    secret_bits: int
    peer_certificate: bytes | None  # DER of the leaf, None for anonymous
    ssl_object: ssl.SSLObject | None = field(default=None, repr=False)


class DataEncoder:
    """Message content to DATA wire form: CRLF only, dot-stuffed (RFC 5321 §4.5.2).

    The queue holds CRLF content, but we never trust that a bare CR or LF
    cannot slip through: each is sent as CRLF, so no peer can see a line end
    we did not mean (SMTP smuggling). Works on chunks of any size; a CR at a
    chunk's end waits for the next chunk to see whether an LF follows.
    """

    def __init__(self) -> None:
        self._line_start = True
        self._pending_cr = False

    def feed(self, chunk: bytes) -> bytes:
        if self._pending_cr:
            chunk = b"\r" + chunk
            self._pending_cr = False
        if chunk.endswith(b"\r"):
            chunk = chunk[:-1]
            self._pending_cr = True
        if not chunk:
            return b""
        if not crlf_only(chunk):
            chunk = to_crlf(chunk)  # rare: the queue holds CRLF only
        data = chunk.replace(b"\r\n.", b"\r\n..")
        if self._line_start and data.startswith(b"."):
            data = b"." + data
        self._line_start = data.endswith(b"\r\n")
        return data

    def finish(self) -> bytes:
        """The rest and the end-of-data mark; a last line without CRLF gets one."""
        tail = b""
        if self._pending_cr:
            tail = b"\r\n"
            self._pending_cr = False
            self._line_start = True
        if not self._line_start:
            tail += b"\r\n"
        return tail + b".\r\n"


async def open_tcp(address: str, port: int, local_address: str | None
                   ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    local = (local_address, 0) if local_address else None
    return await asyncio.open_connection(address, port, limit=_LINE_LIMIT, local_addr=local)


class SmtpSession:
    """One SMTP connection; its methods are the protocol stages."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, peer: Peer,
                 timeouts: Timeouts, clock: Callable[[], float] = time.monotonic) -> None:
        self.peer = peer
        self.timeouts = timeouts
        self.features: dict[str, str] = {}
        self.esmtp = False
        self.tls: TlsFacts | None = None
        self.greeting: Reply | None = None
        self.opened = clock()
        self.transactions = 0  # completed or attempted MAIL transactions (conn_use)
        self.broken = False
        self._reader = reader
        self._writer = writer
        self._clock = clock
        # The reply timer (read_reply): when the reply being read is due, and
        # the one loop timer that checks it (_check_reply_time).
        self._reply_due: float | None = None
        self._reply_timer: asyncio.TimerHandle | None = None

    # -- connection ------------------------------------------------------------------
    @classmethod
    async def connect(cls, peer: Peer, timeouts: Timeouts, *, local_address: str | None = None,
                      connector: Connector | None = None) -> SmtpSession:
        """A TCP connection to the peer, or ConnectFailure with Postfix's text."""
        where = f"connect to {peer.relay}"
        try:
            reader, writer = await asyncio.wait_for(
                (connector or open_tcp)(peer.address, peer.port, local_address),
                timeouts.connect)
        except TimeoutError:
            raise ConnectFailure(f"{where}: Connection timed out") from None
        except OSError as error:
            reason = (os.strerror(error.errno) if error.errno else str(error)
                      ) or type(error).__name__
            raise ConnectFailure(f"{where}: {reason}") from None
        return cls(reader, writer, peer, timeouts)

    @property
    def age(self) -> float:
        return self._clock() - self.opened

    def close(self) -> None:
        self.broken = True
        self._reply_due = None
        if self._reply_timer is not None:
            self._reply_timer.cancel()
            self._reply_timer = None
        with contextlib.suppress(Exception):
            self._writer.close()

    # -- the wire --------------------------------------------------------------------
    async def _send(self, data: bytes, timeout: float, stage: str) -> None:
        if self.broken:
            raise ConnectionLost(f"lost connection with {self.peer.name} while {stage}")
        try:
            self._writer.write(data)
            transport = self._writer.transport
            if transport.is_closing():
                raise ConnectionResetError("transport closing")
            if transport.get_write_buffer_size():
                # Only a full socket buffer needs waiting for (and a timer).
                async with asyncio.timeout(timeout):
                    await self._writer.drain()
        except TimeoutError:
            self.close()
            raise ConversationTimeout(
                f"conversation with {self.peer.name} timed out while {stage}") from None
        except (ConnectionError, OSError):
            self.close()
            raise ConnectionLost(f"lost connection with {self.peer.name} while {stage}") from None

    async def _command(self, line: str, timeout: float, stage: str) -> None:
        if "\r" in line or "\n" in line:
            raise ValueError("SMTP command lines must not contain CR or LF")
        await self._send(line.encode("utf-8", "surrogateescape") + b"\r\n", timeout, stage)

    async def read_reply(self, timeout: float, stage: str) -> Reply:
        """Read one whole reply within timeout (one limit for all of its lines)."""
        parser = ReplyParser()
        self._reply_time(timeout)
        try:
            while True:
                line = await self._reader.readuntil(b"\n")
                try:
                    reply = parser.feed(line.rstrip(b"\r\n"))
                except ValueError as error:
                    self.close()
                    raise ConnectionLost(f"malformed reply from {self.peer.name} while "
                                         f"{stage}: {error}") from None
                if reply is not None:
                    return reply
        except TimeoutError:
            self.close()
            raise ConversationTimeout(
                f"conversation with {self.peer.name} timed out while {stage}") from None
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError,
                OSError):
            self.close()
            raise ConnectionLost(f"lost connection with {self.peer.name} while {stage}") from None
        finally:
            self._reply_due = None

    def _reply_time(self, timeout: float) -> None:
        """Give the reply about to be read timeout seconds.

        Lazily, as smtpd's idle timer: a reply only sets when it is due, and
        one loop timer per session checks that when it fires, moving itself
        to the due time when it fired early, and is replaced only when a
        reply is due before it (a 20 s RSET after a 600 s final dot). A
        relayed message reads five replies; asyncio.timeout made and
        cancelled a timer for each, a tenth of the master's time in the
        profile.
        """
        loop = asyncio.get_running_loop()
        due = loop.time() + timeout
        self._reply_due = due
        timer = self._reply_timer
        if timer is None or timer.when() > due:
            if timer is not None:
                timer.cancel()
            self._reply_timer = loop.call_at(due, self._check_reply_time, loop)

    def _check_reply_time(self, loop: asyncio.AbstractEventLoop) -> None:
        self._reply_timer = None
        due = self._reply_due
        if due is None:
            return  # no reply is being read; the next one starts a timer
        if loop.time() < due:
            self._reply_timer = loop.call_at(due, self._check_reply_time, loop)
            return
        # Out of time: the read under way ends in TimeoutError, and the
        # session is closed by read_reply (a reply that comes later must not
        # be taken for the answer to the next command).
        self._reply_due = None
        self._reader.set_exception(TimeoutError())

    # -- stages ----------------------------------------------------------------------
    async def read_greeting(self) -> Reply:
        self.greeting = await self.read_reply(self.timeouts.helo,
                                              "receiving the initial server greeting")
        return self.greeting

    async def ehlo(self, name: str) -> Reply:
        """EHLO; on 250 the extension keywords are in features."""
        await self._command(f"EHLO {name}", self.timeouts.helo, "performing the EHLO handshake")
        reply = await self.read_reply(self.timeouts.helo, "performing the EHLO handshake")
        if reply.code == 250:
            self.esmtp = True
            self.features = reply.keywords
        return reply

    async def helo(self, name: str) -> Reply:
        await self._command(f"HELO {name}", self.timeouts.helo, "performing the HELO handshake")
        reply = await self.read_reply(self.timeouts.helo, "performing the HELO handshake")
        self.esmtp = False
        self.features = {}
        return reply

    async def starttls(self, context: ssl.SSLContext, server_hostname: str | None) -> TlsFacts:
        """STARTTLS and the handshake (RFC 3207); afterwards EHLO must be sent again.

        Raises StartTlsRefused when the reply is not 220 (the session is still
        usable in plaintext) and TlsHandshakeFailed when the handshake fails
        (the session is not).
        """
        stage = "sending STARTTLS"
        await self._command("STARTTLS", self.timeouts.starttls, stage)
        reply = await self.read_reply(self.timeouts.starttls, stage)
        if reply.code != 220:
            raise StartTlsRefused(f"host {self.peer.name} refused to start TLS: {reply}", reply)
        # CVE-2011-0411: plaintext that arrived after the 220 was not protected by
        # TLS and must never be read as if it had been; RFC 3207 §4.2.
        buffered = getattr(self._reader, "_buffer", None)
        if buffered:
            log.warning("%s: discarding %d bytes of plaintext sent after STARTTLS",
                        self.peer.name, len(buffered))
            buffered.clear()
        try:
            await asyncio.wait_for(
                self._writer.start_tls(context, server_hostname=server_hostname,
                                       ssl_handshake_timeout=self.timeouts.starttls),
                self.timeouts.starttls)
        except TimeoutError as error:
            self.close()
            raise TlsHandshakeFailed(f"conversation with {self.peer.name} timed out while "
                                     "performing the TLS handshake", error,
                                     os.strerror(errno.ETIMEDOUT)) from None
        except (ssl.SSLError, ConnectionError, OSError) as error:
            self.close()
            reason = (getattr(error, "reason", None) or error.strerror or str(error)
                      or "lost connection")
            raise TlsHandshakeFailed(f"TLS handshake failed with {self.peer.relay}: {reason}",
                                     error, reason) from None
        ssl_object = self._writer.get_extra_info("ssl_object")
        cipher = ssl_object.cipher() if ssl_object else None
        self.tls = TlsFacts(
            protocol=(ssl_object.version() or "") if ssl_object else "",
            cipher=cipher[0] if cipher else "",
            secret_bits=cipher[2] if cipher else 0,
            peer_certificate=ssl_object.getpeercert(binary_form=True) if ssl_object else None,
            ssl_object=ssl_object)
        self.features = {}
        self.esmtp = False
        return self.tls

    async def envelope(self, sender: str, recipients: list[str],
                       mail_params: tuple[str, ...] = ()) -> tuple[Reply, list[Reply]]:
        """MAIL FROM and RCPT TO, pipelined when offered (RFC 2920 §3.1).

        Returns the MAIL reply and one RCPT reply per recipient; when MAIL is
        refused without pipelining no RCPT is sent and the list is empty.
        """
        self.transactions += 1
        mail = f"MAIL FROM:<{sender}>" + "".join(f" {p}" for p in mail_params)
        rcpts = [f"RCPT TO:<{r}>" for r in recipients]
        if "PIPELINING" in self.features:
            for line in (mail, *rcpts):
                if "\r" in line or "\n" in line:
                    raise ValueError("SMTP command lines must not contain CR or LF")
            batch = "".join(f"{line}\r\n" for line in (mail, *rcpts))
            await self._send(batch.encode("utf-8", "surrogateescape"), self.timeouts.mail,
                             "sending MAIL FROM")
            mail_reply = await self.read_reply(self.timeouts.mail, "sending MAIL FROM")
            replies = [await self.read_reply(self.timeouts.rcpt, "sending RCPT TO")
                       for _ in rcpts]
            return mail_reply, replies
        await self._command(mail, self.timeouts.mail, "sending MAIL FROM")
        mail_reply = await self.read_reply(self.timeouts.mail, "sending MAIL FROM")
        if not mail_reply.positive:
            return mail_reply, []
        replies = []
        for line in rcpts:
            await self._command(line, self.timeouts.rcpt, "sending RCPT TO")
            replies.append(await self.read_reply(self.timeouts.rcpt, "sending RCPT TO"))
        return mail_reply, replies

    async def pipelined(self, sender: str, recipients: list[str],
                        mail_params: tuple[str, ...] = (), *, rset: bool = False
                        ) -> tuple[Reply, list[Reply], Reply]:
        """[RSET,] MAIL FROM, RCPT TO and DATA in one group (RFC 2920 §3.1, as
        Postfix's smtp client sends them): one round trip instead of three or
        four. Only when the server offered PIPELINING.

        RSET first checks that a cached connection still works (Postfix sends
        it for that too); when its reply does not come, StaleSession is raised
        and nothing of this transaction has happened. Returns the replies to
        MAIL, each RCPT and DATA. After a 354 the
        caller sends the content (send_content) or, if no recipient was
        accepted, abandon_data.
        """
        self.transactions += 1
        mail = f"MAIL FROM:<{sender}>" + "".join(f" {p}" for p in mail_params)
        lines = [*(["RSET"] if rset else []), mail, *(f"RCPT TO:<{r}>" for r in recipients),
                 "DATA"]
        if any("\r" in line or "\n" in line for line in lines):
            raise ValueError("SMTP command lines must not contain CR or LF")
        batch = "".join(f"{line}\r\n" for line in lines).encode("utf-8", "surrogateescape")
        if rset:
            try:
                await self._send(batch, self.timeouts.rset, "sending RSET")
                rset_reply = await self.read_reply(self.timeouts.rset, "sending RSET")
            except SmtpClientError as error:
                raise StaleSession(error.text) from None
            if rset_reply.code != 250:
                self.close()  # MAIL, RCPT and DATA may still be answered: drop them
                raise StaleSession(f"{self.peer.name} said {rset_reply} to RSET")
        else:
            await self._send(batch, self.timeouts.mail, "sending MAIL FROM")
        mail_reply = await self.read_reply(self.timeouts.mail, "sending MAIL FROM")
        replies = [await self.read_reply(self.timeouts.rcpt, "sending RCPT TO")
                   for _ in recipients]
        data_reply = await self.read_reply(self.timeouts.data_init, "sending DATA command")
        return mail_reply, replies, data_reply

    async def abandon_data(self) -> None:
        """A 354 although no recipient was accepted: end the empty message
        (RFC 2920 §3.1); the connection is not trusted for more."""
        await self._send(b".\r\n", self.timeouts.data_done, "sending end of data")
        await self.read_reply(self.timeouts.data_done, "sending end of data")

    async def send_content(self, content: AsyncIterator[bytes]) -> Reply:
        """The message after a 354, dot-stuffed, and the final dot; the reply."""
        encoder = DataEncoder()
        pending = b""
        async for chunk in content:
            data = encoder.feed(chunk)
            if pending:
                await self._send(pending, self.timeouts.data_xfer, "sending message body")
            pending = data
        # The last piece and the final dot in one write: a small message is
        # one write.
        await self._send(pending + encoder.finish(), self.timeouts.data_xfer,
                         "sending message body")
        return await self.read_reply(
            self.timeouts.data_done,
            "sending end of data -- message may be sent more than once")

    async def data(self, content: AsyncIterator[bytes]) -> tuple[Reply, Reply | None]:
        """DATA, then the content and the final dot when the server says 354.

        Returns the DATA reply and the reply to the final dot (None when DATA
        was refused).
        """
        await self._command("DATA", self.timeouts.data_init, "sending DATA command")
        reply = await self.read_reply(self.timeouts.data_init, "sending DATA command")
        if reply.code != 354:
            return reply, None
        return reply, await self.send_content(content)

    async def rset(self) -> Reply:
        await self._command("RSET", self.timeouts.rset, "sending final RSET")
        return await self.read_reply(self.timeouts.rset, "sending final RSET")

    async def quit(self) -> None:
        """QUIT politely; whatever happens, the connection is closed afterwards."""
        try:
            if not self.broken:
                await self._command("QUIT", self.timeouts.quit, "sending QUIT")
                await self.read_reply(self.timeouts.quit, "sending QUIT")
        except SmtpClientError:
            pass
        finally:
            self.close()
