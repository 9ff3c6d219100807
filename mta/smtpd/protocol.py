"""The SMTP server protocol: aiosmtpd's SMTP with Postfix's replies and limits.

aiosmtpd gives us the transport plumbing, STARTTLS and the AUTH mechanisms.
We replace its command loop and its command handlers, because a relaying MTA
needs what it does not do (docs/architecture.md): enhanced status codes on
every reply, bare LF/CR handling in commands and DATA (SMTP smuggling), DATA
streamed to the spool instead of held in memory twice, replies batched while
the client pipelines (RFC 2920), a 421 on timeout, and Postfix's log lines.
Policy is not decided here: checks.py answers, cleanup.py and the spool store.
"""

from __future__ import annotations

import asyncio
import errno
import inspect
import logging
import re
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from aiosmtpd.smtp import SMTP

from mta import address as addr
from mta import log as maillog
from mta.cleanup import CleanupStream, ReceivedInfo, received_header
from mta.queuefile import Envelope
from mta.smtpd import replies
from mta.smtpd.checks import ClientFacts, DataFacts
from mta.smtpd.data import read_data
from mta.smtpd.grammar import PathError, helo_argument, helo_name, parse_path, parse_vrfy, printable
from mta.smtpd.rates import LIMITS

if TYPE_CHECKING:
    from mta.smtpd.server import Slot, SmtpdContext

log = logging.getLogger(__name__)

# Postfix's order of commands in the disconnect line (smtpd.c's command table).
COMMAND_ORDER = ("helo", "ehlo", "starttls", "auth", "mail", "rcpt", "data", "rset",
                 "noop", "vrfy", "etrn", "quit", "unknown")
_STORAGE_ERRNOS = (errno.ENOSPC, errno.EDQUOT)
# Commands a client can repeat for ever without a tarpit or a transaction to
# show for it (smtpd.c's SMTPD_CMD_FLAG_LIMIT; ETRN too, which we lack):
# smtpd_junk_command_limit bounds them.
JUNK_COMMANDS = frozenset({"HELO", "EHLO", "RSET", "NOOP", "VRFY"})
# The smtpd_client_*_rate_limit refusals of commands: Postfix's warning and
# reply for each event (rates.LIMITS), and the verb it limits.
RATE_REFUSALS = {
    "message": ("MAIL", "Message delivery request rate limit exceeded", replies.TOO_MUCH_MAIL),
    "recipient": ("RCPT", "Recipient address rate limit exceeded",
                  replies.TOO_MANY_RECIPIENTS_RATE),
    "auth": ("AUTH", "AUTH command rate limit exceeded", replies.TOO_MANY_AUTH),
}
# RFC 2920 §3.1: commands whose reply the client must have before it sends
# more, even with PIPELINING (Postfix's smtpd checks these; QUIT after EHLO
# is exempt, and STARTTLS drops what follows it, secure.py). Without EHLO no
# command may be followed by more, QUIT included (as Postfix 3.7.11 answers).
MUST_BE_LAST = frozenset({"HELO", "EHLO", "DATA", "NOOP", "VRFY"})
# Postfix's is_header(): a first word such as "Subject:" is message content
# sent as commands (the client believes a refused DATA was accepted).
_HEADER_LABEL = re.compile(rb"[!-9;-~]+:")


def sync_verbs(commands: dict[str, Callable[..., Awaitable[None] | None]]) -> frozenset[bytes]:
    """The verbs whose handlers never await, which data_received may run
    itself (derived, so that a handler made asynchronous leaves the set)."""
    return frozenset(verb.encode() for verb, handler in commands.items()
                     if not inspect.iscoroutinefunction(handler))


class _NoHandler:
    """aiosmtpd wants a handler object; our hooks live on the protocol."""


_NO_HANDLER = _NoHandler()


class Transaction:
    """The MAIL/RCPT/DATA state, reset by RSET, HELO/EHLO and after DATA."""

    def __init__(self) -> None:
        self.sender: str | None = None
        self.recipients: list[str] = []
        # Postfix's state->recipient and rcpt_count, for Received's "for":
        # the first accepted recipient as sent, and the RCPTs accepted.
        self.first_recipient = ""
        self.accepted = 0
        self.auth_sender: str | None = None  # MAIL's AUTH= (not "<>"), printable
        self.qid: str | None = None
        self.declared_size = 0
        self.body_type = ""
        self.overshoot = 0


class SmtpdProtocol(SMTP):
    """One SMTP session on one listener."""

    def __init__(self, ctx: SmtpdContext) -> None:
        self.ctx = ctx
        self._init_aiosmtpd(ctx)
        self.client = ClientFacts(address="unknown", listener=ctx.listener.name)
        self.helo: str | None = None
        self.esmtp = False
        self.txn = Transaction()
        self.counts: dict[str, list[int]] = {}
        self.notes: list[str] = []
        self.errors = 0
        self.junk = 0
        self._ill_pipelining = False  # logged once per session, as Postfix
        self._delay = 0.0  # the tarpit's wait before the next flush
        self.stage = "CONNECT"
        # Raw bytes of message content read so far while DATA is being read,
        # else None: Postfix's "lost connection after DATA (N bytes)".
        self._data_bytes: int | None = None
        self._out: list[bytes] = []
        self._slot: Slot | None = None
        self._closing = False
        self._awaiting_command = False
        self._data_started = 0.0  # when the DATA being read began (loop time)
        self._shutting_down = False  # the daemon stops: no command after this one
        # The smtpd_client_*_rate_limit limits on this client (rates.LIMITS):
        # event -> limit, set once the connection is admitted.
        self.rate_limits: dict[str, int] = {}
        # The refusal smtpd_client_restrictions gave at connect, when they
        # are judged there (smtpd_delay_reject = no): Postfix's
        # state->access_denied, which answers every command but QUIT.
        self.access_denied: str | None = None

    def _init_aiosmtpd(self, ctx: SmtpdContext) -> None:
        """The state aiosmtpd 1.4's SMTP.__init__ sets up, without its
        per-connection introspection: it walks the instance with
        inspect.getmembers to find AUTH mechanisms and command methods, which
        cost 7% of the accept path, and we replaced both (our command table,
        our AUTH in secure.py). Kept to what the aiosmtpd methods we still use
        (connection_made, connection_lost, eof_received, _reset_timeout) read.
        """
        config = ctx.config
        loop = ctx.loop
        self.loop = loop
        self.line_length_limit = config.line_length_limit
        asyncio.StreamReaderProtocol.__init__(
            self, asyncio.StreamReader(loop=loop, limit=self.line_length_limit),
            client_connected_cb=self._cb_client_connected, loop=loop)
        self.__ident__ = config.mail_name
        self.event_handler = _NO_HANDLER
        self.data_size_limit = config.message_size_limit or None
        self.enable_SMTPUTF8 = False
        self._decode_data = False
        self.hostname = config.myhostname
        self.tls_context = None
        self.require_starttls = False
        self._timeout_duration = config.smtpd_timeout  # aiosmtpd's; ours is limits'
        self._timeout_handle: asyncio.TimerHandle | None = None
        self._idle_deadline = 0.0
        self._tls_handshake_okay = True
        self._tls_protocol = None
        self._original_transport = None
        self.session = None
        self.envelope = None
        self.transport = None
        self._handler_coroutine = None
        self._auth_require_tls = True
        self._auth_required = False
        self._auth_methods = {}
        self._handle_hooks = {}
        self._ehlo_hook_ver = None
        self._smtp_methods = {}
        self._enforce_call_limit = False
        self._proxy_timeout = None

    # -- output ---------------------------------------------------------------------
    def reply(self, text: str, *, counts_as_error: bool = True) -> None:
        """Queue a reply; it goes out when the client has nothing more pipelined."""
        self._out.append(text.encode("utf-8", "surrogateescape") + b"\r\n")
        if self._tarpitted():
            # Postfix's smtpd_chat_reply: once the client has made
            # smtpd_soft_error_limit errors, each reply waits
            # smtpd_error_sleep_time (a guesser or a broken client slows down;
            # the reply to the error that reaches the limit goes out at once).
            self._delay += self.ctx.config.smtpd_error_sleep_time
        code = text[:3]
        if code[:1] in ("4", "5") and counts_as_error:
            self.errors += 1
        self._last_code = code

    def _tarpitted(self) -> bool:
        # Asked at every reply and every immediate command: a session
        # without errors answers from its own counter, without the config.
        if not self.errors:
            return False
        config = self.ctx.config
        return self.errors >= config.smtpd_soft_error_limit and config.smtpd_error_sleep_time > 0

    async def flush(self) -> None:
        if self._delay:
            delay, self._delay = self._delay, 0.0
            # The tarpit; the client waits for us, so the idle timer must not
            # count this as its silence (smtpd_timeout starts after it).
            self._reset_timeout(delay + self.ctx.connections.limits.smtpd_timeout)
            await asyncio.sleep(delay)
        if self._out and self.transport is not None and not self.transport.is_closing():
            data, self._out = b"".join(self._out), []
            self._writer.write(data)
            await self._writer.drain()
        self._out = []

    def _write_replies(self) -> None:
        """Hand the queued replies to the transport without waiting for it to
        drain (the callers check that it is not paused, or close it next)."""
        if self._out and self.transport is not None and not self.transport.is_closing():
            self._writer.write(b"".join(self._out))
        self._out = []

    async def push(self, status: Any) -> None:
        """aiosmtpd's immediate reply (used by its AUTH and STARTTLS code)."""
        self.reply(status.decode() if isinstance(status, bytes) else status)
        await self.flush()

    def _close(self) -> None:
        self._closing = True
        if self.transport is not None:
            self.transport.close()

    def _hang_up(self) -> None:
        """Write the queued replies, then close (the transport sends what it
        holds before it closes)."""
        self._write_replies()
        self._close()

    def reply_and_close(self, text: str) -> None:
        self.reply(text)
        self._hang_up()

    def refuse(self, text: str) -> None:
        """End the session with a connection limit's 421: at admission, or
        when the master's count for a session greeted at once comes back
        (server.py). RFC 5321 §3.8 lets a server send 421 at any time."""
        self.reply_and_close(text)

    # -- the session ------------------------------------------------------------------
    async def _handle_client(self) -> None:
        ctx = self.ctx
        # aiosmtpd's Session says str, but peer is the socket's (host, port, …) tuple.
        peer: Any = self.session.peer if self.session is not None else None
        host, port = (peer[0], peer[1]) if peer else ("unknown", 0)
        self.client.address, self.client.port = host, port
        self.client.hostname = await ctx.client_name(host)
        maillog.connect(self.client.peer)
        ctx.metrics_connection()
        try:
            admitted = await ctx.connections.admit(host, self.client.peer, ctx.listener.name,
                                                   refuse_later=self.refuse)
            if isinstance(admitted, str):
                self.refuse(admitted)
            else:
                self._slot = admitted
                self._note_rate_limits(host)
                ctx.connections.sessions.add(self)
                # Admitted while the daemon began to stop (its name lookup or
                # count took that long): it gets the 421, not the greeting.
                self._shutting_down = ctx.connections.shutting_down
                await self._session()
        except (asyncio.CancelledError, ConnectionError):
            pass
        finally:
            self._end_session()

    def _note_rate_limits(self, address: str) -> None:
        """The event rate limits that apply to this client. MAIL and RCPT
        under a limit wait for the master's count, so they leave the
        commands answered in the protocol callback."""
        config = self.ctx.config
        limits = {event: limit for event, name in LIMITS.items()
                  if event != "connection" and (limit := getattr(config, name))}
        if not limits or self.ctx.connections.exempt(address):
            return
        self.rate_limits = limits
        waiting = {RATE_REFUSALS[event][0].encode() for event in limits
                   if event in ("message", "recipient")}
        if waiting:
            self._immediate = self._immediate - waiting

    async def rate_limited(self, event: str) -> bool:
        """Count one event of this client (rates.LIMITS) and refuse the
        command if that passes its limit (True)."""
        rate = await self.ctx.connections.event_rate(self.client.address, event)
        if rate <= self.rate_limits[event]:
            return False
        verb, warning, reply = RATE_REFUSALS[event]
        maillog.warning("smtpd", f"{warning}: {rate} from {self.client.peer} "
                        f"for service {self.ctx.listener.name}")
        self.ctx.metrics_reject(verb, reply[:3])
        self.reply(reply.format(address=self.client.address))
        return True

    async def _unless_rate_limited(self, event: str, command: Callable[[], None]) -> None:
        if not await self.rate_limited(event):
            command()

    def shutting_down(self) -> None:
        """The daemon stops. Waiting for a command outside a transaction, the
        session ends now with a 421 (RFC 5321 §3.8); in a transaction (after
        MAIL) or in a command (a TLS handshake) it goes on until the message
        is queued or the transaction ends, so nothing a client sent in good
        faith is lost, and ends when it next waits for a command outside
        one. What the client pipelined then is left unanswered, as after
        any 421."""
        self._shutting_down = True
        if self._awaiting_command and self.txn.sender is None and not self._closing:
            self.reply_and_close(replies.SHUTTING_DOWN.format(host=self.hostname))

    def stress_began(self) -> None:
        """The listener came under stress: an idle timer armed for the longer
        smtpd_timeout runs out at the stress one from now at the latest (a
        stopped timer, during a TLS handshake, stays stopped)."""
        handle = self._timeout_handle
        timeout = self.ctx.connections.limits.smtpd_timeout
        if handle is not None and not handle.cancelled() \
                and self._idle_deadline > self.loop.time() + timeout:
            self._reset_timeout(timeout)

    def _end_session(self) -> None:
        self.ctx.connections.sessions.discard(self)
        if self._slot is not None:
            self.ctx.connections.release(self._slot)
            self._slot = None
        # Postfix (smtpd.c) logs no lost connection after END-OF-MESSAGE: a
        # client that hangs up once its message is queued lost nothing.
        if not self._closing and self.stage not in ("QUIT", "END-OF-MESSAGE"):
            maillog.lost_connection(self.stage, self.client.peer, self._content_bytes())
        counts = [(name, self.counts[name][0], self.counts[name][1])
                  for name in COMMAND_ORDER if name in self.counts]
        maillog.disconnect(self.client.peer, counts, self.notes)
        self.ctx.metrics_disconnect()
        if self.transport is not None:
            self.transport.close()

    async def _session(self) -> None:
        if self._shutting_down:
            self.reply_and_close(replies.SHUTTING_DOWN.format(host=self.hostname))
            return
        if self.ctx.restrictions.client_at_connect and self._client_refused():
            pass  # the refusal took the greeting's place
        elif not self._greet():
            return
        while self.transport is not None and not self._closing:
            line = await self._read_command()
            if line is None:
                continue
            await self._dispatch(line)
            self._too_many_errors()

    def _greet(self) -> bool:
        """The 220 greeting; False when the client spoke first and the
        session ended for it."""
        # RFC 5321 §3.1: the client waits for the greeting. Bytes already
        # here spoke first (a spambot's shortcut); wrapper mode's TLS
        # handshake is no such talk.
        pending = self._reader._buffer  # type: ignore[attr-defined]
        if pending and not self.tls_active and self._pipelined_improperly("CONNECT", pending):
            self.reply_and_close(replies.PROTOCOL_SYNCHRONIZATION)
            return False
        self.reply(f"220 {self.ctx.config.expanded('smtpd_banner')}")
        return True

    def _client_refused(self) -> bool:
        """smtpd_client_restrictions at connect (smtpd_delay_reject = no).

        As Postfix 3.7's smtpd_proto (compared on the wire,
        tests/interop/test_postfix_client_restrictions.py): the refusal is
        sent instead of the greeting, counts as an error and is logged as a
        reject of CONNECT; the session goes on, every command but QUIT
        answered 503 (_client_denied), so a client that keeps talking meets
        smtpd_hard_error_limit, slowed by the tarpit on the way. Talk
        before the refusal is not improper pipelining: Postfix looks for it
        only before a 220. A table's 421 ends the session (_refusal_reply).
        """
        refusal = self.ctx.restrictions.check_client(self.client)
        self._log_whatsup("CONNECT", None, None)
        if refusal is None:
            return False
        self.access_denied = refusal
        self._reject("CONNECT", refusal, None, None)
        return True

    def _client_denied(self, command: str) -> None:
        """A command from a client refused at connect: 503 in place of
        running it, before its pipelining is looked at, and without moving
        the stage (Postfix logs "too many errors after CONNECT"); counted
        as failed in the disconnect line, as Postfix counts it."""
        self._count(command.lower(), False)
        self.ctx.metrics_reject(command, "503")
        self.reply(replies.SESSION_ACCESS_DENIED.format(peer=self.client.peer))

    def _too_many_errors(self) -> bool:
        """Postfix's smtpd_hard_error_limit: 421 and hang up (the reply is
        queued and the transport closed once it is written)."""
        if self.errors < self.ctx.connections.limits.smtpd_hard_error_limit or self._closing:
            return False
        maillog.too_many_errors(self.stage, self.client.peer)
        self.reply(replies.TOO_MANY_ERRORS.format(host=self.hostname))
        self._hang_up()
        return True

    async def _read_command(self) -> bytes | None:
        """One command line without its line ending, or None when the line was
        answered here (too long, bare newline, bad bytes)."""
        if not self._reader._buffer:  # type: ignore[attr-defined]
            await self.flush()  # RFC 2920: reply when the client waits for us
        if self._shutting_down and self.txn.sender is None:  # (also during the tarpit's wait)
            self.reply_and_close(replies.SHUTTING_DOWN.format(host=self.hostname))
            return None
        self._awaiting_command = True
        try:
            line = await self._reader.readuntil(b"\n")
        except asyncio.LimitOverrunError as error:
            await self._discard_long_line(error.consumed)
            self.reply(replies.LINE_TOO_LONG)
            return None
        except asyncio.IncompleteReadError:
            raise ConnectionResetError("client went away") from None
        finally:
            self._awaiting_command = False
        self._reset_timeout()
        if line.endswith(b"\r\n"):
            line = line[:-2]
        else:
            line = line[:-1]
            if self.ctx.config.smtpd_forbid_bare_newline == "reject":
                self.ctx.metrics_reject(self._verb_label(line), "521")
                self.reply_and_close(replies.BARE_NEWLINE.format(host=self.hostname))
                return None
            if "bare_lf" not in self.notes:
                self.notes.append("bare_lf")
        if b"\r" in line or b"\0" in line:
            # A bare CR or a NUL inside a command is never valid SMTP; a line
            # that does not even start like one (a TLS ClientHello) ends it.
            self._count("unknown", False)
            verb = line.partition(b" ")[0]
            known = verb.upper().decode("ascii", "replace") in self._commands
            if not known and self._forbidden(verb):
                self._non_smtp_command(line)
            else:
                self.reply(replies.BAD_SYNTAX)
            return None
        return line

    def _verb_label(self, line: bytes) -> str:
        """The command's name for a metric label: a known verb or UNKNOWN,
        never the client's bytes (a label set must stay bounded)."""
        verb = line[:16].partition(b" ")[0].upper().decode("ascii", "replace")
        return verb if verb in self._commands else "UNKNOWN"

    async def _discard_long_line(self, consumed: int) -> None:
        while True:
            await self._reader.readexactly(consumed)
            try:
                await self._reader.readuntil(b"\n")
                return
            except asyncio.LimitOverrunError as error:
                consumed = error.consumed

    def _reset_timeout(self, duration: float | None = None) -> None:
        """Restart the idle timer (smtpd_timeout) after client activity.

        Lazily: activity only moves the deadline, and the one timer re-arms
        itself for what is left when it fires early. aiosmtpd cancels and
        creates a timer on every command, which was 4% of a receiver's time.
        """
        deadline = self.loop.time() + (duration or self.ctx.connections.limits.smtpd_timeout)
        self._idle_deadline = deadline
        handle = self._timeout_handle
        if handle is None or handle.cancelled() or handle.when() > deadline:
            if handle is not None:
                handle.cancel()
            self._timeout_handle = self.loop.call_at(deadline, self._idle_check)

    def _stop_idle_timer(self) -> None:
        """Stop the idle timer until the next _reset_timeout: the TLS handshake
        is bounded by smtpd_starttls_timeout instead (secure.py), and a 421
        written then would land in cleartext inside what the client reads as TLS."""
        # Cancelled, not dropped: aiosmtpd's connection_lost cancels it again.
        if self._timeout_handle is not None:
            self._timeout_handle.cancel()

    def _idle_check(self) -> None:
        if self.loop.time() < self._idle_deadline:
            self._timeout_handle = self.loop.call_at(self._idle_deadline, self._idle_check)
        else:
            self._timeout_cb()

    def _content_bytes(self) -> int | None:
        """While DATA is read, the content bytes received so far: those read
        and those waiting in the reader (Postfix counts its buffer too)."""
        if self._data_bytes is None:
            return None
        return self._data_bytes + len(self._reader._buffer)  # type: ignore[attr-defined]

    def _timeout_cb(self) -> None:
        # aiosmtpd closes silently; RFC 5321 §4.5.3.2 and Postfix say 421 first.
        transport = self.transport
        if not isinstance(transport, asyncio.WriteTransport) or transport.is_closing():
            return
        maillog.timeout(self.stage, self.client.peer, self._content_bytes())
        try:
            transport.write(replies.TIMEOUT.format(host=self.hostname).encode() + b"\r\n")
        except Exception:  # the transport may already be half gone
            pass
        self._closing = True
        transport.close()

    # -- dispatch ---------------------------------------------------------------------
    def _count(self, name: str, ok: bool) -> None:
        entry = self.counts.setdefault(name, [0, 0])
        entry[1] += 1
        if ok:
            entry[0] += 1

    async def _dispatch(self, line: bytes) -> None:
        result = self._run_command(line, self._reader._buffer)  # type: ignore[attr-defined]
        if result is not None:
            name = self.stage.lower()  # the command's, before it runs on
            await result
            self._count(name, self._last_code[:1] in ("2", "3"))

    def _run_command(self, line: bytes, pending: bytes | bytearray = b"") -> Awaitable[None] | None:
        """Run a command line's handler. Most answer at once and are counted
        here; an asynchronous one (DATA, STARTTLS, AUTH) comes back as an
        awaitable, and the caller counts it when it is done. pending: what
        the client sent after this line, already here."""
        # Postfix's smtpd_token skips leading blanks: " MAIL FROM:<a>" is
        # MAIL, and a line of blanks is an empty command.
        line = line.lstrip(b" \t")
        if not line:
            # Refused, but not counted as a command: Postfix's disconnect line
            # leaves an empty line out (the error still counts for the limits).
            self.reply(replies.BAD_SYNTAX)
            return None
        verb, _, arg_bytes = line.partition(b" ")
        command = verb.upper().decode("ascii", "replace")
        handler = self._commands.get(command)
        if self.access_denied is not None and command != "QUIT" \
                and (handler is not None or not self._forbidden(verb)):
            # A non-SMTP command still ends the session (221), as in Postfix.
            self._client_denied(command if handler is not None else "UNKNOWN")
            return None
        if handler is None:
            self.stage = "UNKNOWN"
            self._count("unknown", False)
            if self._forbidden(verb):
                self._non_smtp_command(line)
            else:
                self.reply(replies.NOT_RECOGNIZED)
            return None
        if pending and (command in MUST_BE_LAST or not self.esmtp) \
                and self._pipelined_improperly(command, pending):
            # The command is not run: its reply would answer a client that
            # is out of step with us (Postfix's smtpd_forbid_unauth_pipelining).
            self.stage = command
            self._count(command.lower(), False)
            self.ctx.metrics_reject(command, "554")
            self.reply_and_close(replies.PROTOCOL_SYNCHRONIZATION)
            return None
        argument = arg_bytes.strip(b" ").decode("utf-8", "surrogateescape")
        self.stage = command
        self._last_code = "500"
        result = handler(self, argument)
        if command in JUNK_COMMANDS:
            self._junk_command()
        if result is None:
            self._count(command.lower(), self._last_code[:1] in ("2", "3"))
        return result

    def _pipelined_improperly(self, stage: str, pending: bytes | bytearray) -> bool:
        """The client sent pending before it had the reply it must wait for
        (after stage: CONNECT for the greeting, or a command in MUST_BE_LAST,
        or any command when no EHLO announced PIPELINING). Logged once per
        session, as Postfix does; True when the session must end for it."""
        if self._ill_pipelining:
            return False
        self._ill_pipelining = True
        maillog.improper_pipelining(stage, self.client.peer, bytes(pending))
        return bool(self.ctx.config.smtpd_forbid_unauth_pipelining)

    def _forbidden(self, verb: bytes) -> bool:
        """Not a command at all (Postfix's smtpd_forbidden_commands, its
        is_header test and the regexp:{{/^[^A-Z]/ Bogus}} of its default):
        an HTTP request, message content, or binary such as a ClientHello."""
        if not verb:
            return False  # leading blanks: not a word at all, let alone a forbidden one
        if not b"A" <= verb[:1].upper() <= b"Z" or _HEADER_LABEL.match(verb):
            return True
        name = verb.upper().decode("ascii", "replace")
        return any(name == forbidden.upper()
                   for forbidden in self.ctx.config.smtpd_forbidden_commands)

    def _non_smtp_command(self, line: bytes) -> None:
        maillog.non_smtp_command(self.client.peer, line)
        self.ctx.metrics_reject("UNKNOWN", "221")
        self.reply_and_close(replies.NON_SMTP_COMMAND)

    def _junk_command(self) -> None:
        """Postfix's smtpd_junk_command_limit: past it, each junk command is
        an error, so smtpd_hard_error_limit ends a session that only holds a
        slot (NOOP for ever, say). As smtpd.c's "junk_cmds++ > limit", a
        command counts when more than the limit came before it."""
        if self.junk > self.ctx.connections.limits.smtpd_junk_command_limit:
            self.errors += 1
        self.junk += 1

    # -- commands answered in the protocol callback -------------------------------------
    def data_received(self, data: bytes) -> None:
        if (self._awaiting_command and not self._reader._buffer  # type: ignore[attr-defined]
                and not self._paused):  # type: ignore[attr-defined]
            data = self._answer_at_once(data)
            if not data:
                return
        super().data_received(data)

    def _answer_at_once(self, data: bytes) -> bytes:
        """Answer the complete command lines at the head of data here, without
        waking the session task, and return what is left for it.

        While the session waits for a command, most commands (EHLO, MAIL,
        RCPT, RSET, NOOP, QUIT) await nothing: running them in the protocol
        callback saves the StreamReader feed, the future and the task step
        each would cost. A line stops
        this at its start when it needs the task (DATA, STARTTLS, AUTH), when
        it is odd in any way the reader path handles (bare LF or CR, NUL,
        too long, empty, an unknown verb) or when this listener refuses
        commands before TLS; that line and everything after it go to the
        reader, in order. Replies to a pipelined group still leave in one
        write (RFC 2920).
        """
        start = 0
        size = len(data)
        limit = self.line_length_limit
        immediate = self._immediate
        while start < size and not self._closing and self._may_answer_at_once():
            end = data.find(b"\n", start)
            if end == -1 or end - start > limit or end == start or data[end - 1] != 13:
                break  # incomplete, too long, or a bare LF: the reader's cases
            line = data[start:end - 1]
            if not line or b"\r" in line or b"\0" in line:
                break
            verb = line.partition(b" ")[0].upper()
            if verb not in immediate:
                break
            self._reset_timeout()
            start = end + 1
            self._run_command(line, data[start:] if start < size else b"")
            self._too_many_errors()
        self._write_replies()
        if self._closing:
            return b""
        return data[start:] if start else data

    def _may_answer_at_once(self) -> bool:
        """Whether commands may be answered without the session task: not
        in the tarpit, whose delays the task's flush makes, nor while the
        daemon stops (the task ends the session once a transaction is over);
        a TLS listener also says no while it must refuse them (secure.py)."""
        return not self._tarpitted() and not self._shutting_down

    # -- HELO, EHLO ---------------------------------------------------------------------
    def cmd_helo(self, argument: str) -> None:
        if not argument:
            self.reply(replies.HELO_SYNTAX)
            return
        if self.ctx.restrictions.helo_at_helo and self._helo_refused("HELO", argument):
            return
        self.helo = helo_name(argument)
        # A HELO after an EHLO keeps the session ESMTP, as Postfix 3.7.11's
        # does: pipelining stays allowed, and proto= and Received say ESMTP.
        self.txn = Transaction()
        self.reply(f"250 {self.hostname}")

    def cmd_ehlo(self, argument: str) -> None:
        if not argument:
            self.reply(replies.EHLO_SYNTAX)
            return
        if self.ctx.restrictions.helo_at_helo and self._helo_refused("EHLO", argument):
            return
        self.helo = helo_name(argument)
        self.esmtp = True
        self.txn = Transaction()
        lines = [self.hostname, *self.ehlo_keywords()]
        for line in lines[:-1]:
            self.reply(f"250-{line}")
        self.reply(f"250 {lines[-1]}")

    def _helo_refused(self, command: str, argument: str) -> bool:
        """smtpd_helo_restrictions at HELO/EHLO (smtpd_delay_reject = no).

        As Postfix's helo_cmd, the name judged is the one sent, not the
        neutered copy kept for Received and the log, and a refusal leaves the
        session as it was: the earlier HELO/EHLO name, protocol and any
        transaction stand. The reject line names that name as helo=<…> and
        the protocol so far (SMTP before a first EHLO), as Postfix's does.
        """
        name = helo_argument(argument)
        refusal = self.ctx.restrictions.check_helo(self.client, name)
        self._log_whatsup(command, self.txn.sender, None, printable(name))
        if refusal is None:
            return False
        # Postfix's log writer makes the whole line printable; the reply
        # goes out as it is, the name as the client wrote it.
        maillog.reject(self.txn.qid, command, self.client.peer, printable(refusal),
                       self.txn.sender, None, "ESMTP" if self.esmtp else "SMTP",
                       printable(name))
        self.ctx.metrics_reject(command, refusal[:3])
        self._refusal_reply(refusal)
        return True

    def ehlo_keywords(self) -> list[str]:
        keywords = ["PIPELINING"]
        if self.ctx.config.message_size_limit:
            keywords.append(f"SIZE {self.ctx.config.message_size_limit}")
        else:
            keywords.append("SIZE")
        if not self.ctx.config.disable_vrfy_command:
            keywords.append("VRFY")
        keywords.extend(self.tls_keywords())
        keywords.extend(["ENHANCEDSTATUSCODES", "8BITMIME"])
        return keywords

    def tls_keywords(self) -> list[str]:
        """STARTTLS and AUTH, when this listener offers them (see tls/)."""
        return []

    # -- MAIL, RCPT ---------------------------------------------------------------------
    def _needs_helo(self) -> bool:
        if self.helo is None and self.ctx.config.smtpd_helo_required:
            self.reply(replies.NEED_HELO)
            return True
        return False

    def cmd_mail(self, argument: str) -> Awaitable[None] | None:
        if self._needs_helo():
            return None
        if self.txn.sender is not None:
            self.reply(replies.NESTED_MAIL)
            return None
        if "message" in self.rate_limits and argument[:5].upper() == "FROM:" \
                and argument[5:].strip():
            # Where Postfix's mail_cmd asks anvil: after the state and the
            # "FROM:" checks, before the address is parsed.
            return self._unless_rate_limited("message", lambda: self._mail(argument))
        self._mail(argument)
        return None

    def _mail(self, argument: str) -> None:
        try:
            path = parse_path(argument, "FROM:", allow_empty=True, smtputf8=False)
        except PathError as error:
            self._log_illegal(error, "MAIL")
            if error.utf8:
                self.reply(replies.SMTPUTF8_NEEDED)
            elif error.missing or argument[:5].upper() != "FROM:":
                self.reply(replies.MAIL_SYNTAX)
            else:
                self.reply(replies.BAD_SENDER_SYNTAX)
            return
        # Postfix's mail_cmd takes the parameters after HELO too (no
        # extension is refused for want of an EHLO), and so do we.
        size = 0
        auth: str | None = None
        # Postfix's mail_cmd: SIZE= must be all digits; BODY=7BIT and
        # BODY=8BITMIME are the only BODY values; AUTH= (RFC 4954 §5, the
        # submitter an authenticated client names) is taken, once, and not
        # otherwise used, AUTH on or off, as Postfix's smtpd_sasl_mail_opt
        # takes it; anything else, "SIZE" without a value included, is an
        # unsupported option, quoted as sent.
        for name, value, text in path.sent_params:
            if name == "AUTH" and value is not None:
                if auth is not None:
                    self.reply(replies.MULTIPLE_AUTH)
                    return
                auth = value
                continue
            if name == "SIZE" and value is not None:
                if not value.isdigit() or not value.isascii():
                    self.reply(replies.BAD_SIZE)
                    return
                size = int(value)
            elif name == "BODY" and (value or "").upper() in ("7BIT", "8BITMIME"):
                self.txn.body_type = (value or "").upper()
            else:
                self.reply(replies.BAD_PARAMETER.format(name=text))
                return
        limit = self.ctx.config.message_size_limit
        if limit and size > limit:
            self._reject("MAIL", replies.SIZE_EXCEEDS, path.address, None)
            return
        if not self._enough_space(size):
            self._reject("MAIL", replies.INSUFFICIENT_STORAGE, path.address, None)
            return
        if self.ctx.restrictions.sender_at_mail and self._sender_refused(path.address):
            return
        # As sent: the restrictions judge it, and the reject lines name it, so
        # (Postfix's state->sender); qualified with @$myorigin at the commit.
        self.txn.sender = path.address
        self.txn.auth_sender = printable(auth) if auth and auth != "<>" else None
        self.txn.declared_size = size
        self.reply(replies.MAIL_OK)

    def _data_refused(self) -> bool:
        """smtpd_data_restrictions, before the 354 (Postfix's smtpd_check_data);
        a refusal leaves the transaction as it was."""
        txn = self.txn
        single = txn.first_recipient if txn.accepted == 1 else None
        refusal = self.ctx.restrictions.check_data(self.client, DataFacts(
            sender=txn.sender or "", recipient=single, recipients=txn.accepted,
            helo=self.helo, ill_pipelining=self._ill_pipelining))
        self._log_whatsup("DATA", txn.sender, single)
        if refusal is None:
            return False
        self._reject("DATA", refusal, txn.sender, single)
        return True

    def _log_illegal(self, error: PathError, command: str) -> None:
        """Postfix's extract_addr warning for an address it cannot take."""
        if error.illegal is not None:
            maillog.warning("smtpd", f"Illegal address syntax from {self.client.peer} in "
                            f"{command} command: {printable(error.illegal)}")

    def _enough_space(self, declared: int) -> bool:
        """Postfix's queue_minfree rule, checked at MAIL: room for 1.5 times the
        largest message (or queue_minfree), and for what the client declared."""
        config = self.ctx.config
        free = self.ctx.free_space.latest()  # measured off the loop, each second (space.py)
        if free is None:
            return True  # cannot tell: the commit will fail safely if need be
        needed = max(config.queue_minfree, int(1.5 * config.message_size_limit))
        if free < needed or free < declared + config.queue_minfree:
            maillog.warning("smtpd", f"not enough free space in mail queue: {free} bytes "
                            f"< {max(needed, declared + config.queue_minfree)} bytes needed")
            return False
        return True

    def _sender_refused(self, sender: str) -> bool:
        """smtpd_sender_restrictions at MAIL (smtpd_delay_reject = no); at
        RCPT they run inside check_recipient. The sender is judged as sent."""
        refusal = self.ctx.restrictions.check_sender(self.client, sender)
        self._log_whatsup("MAIL", sender, None)
        if refusal is None:
            return False
        self._reject("MAIL", refusal, sender, None)
        return True

    def cmd_rcpt(self, argument: str) -> Awaitable[None] | None:
        if self.txn.sender is None:
            self.reply(replies.NEED_MAIL)
            return None
        if "recipient" in self.rate_limits and argument[:3].upper() == "TO:" \
                and argument[3:].strip():
            return self._unless_rate_limited("recipient", lambda: self._rcpt(argument))
        self._rcpt(argument)
        return None

    def _rcpt(self, argument: str) -> None:
        try:
            path = parse_path(argument, "TO:", allow_empty=False, smtputf8=False)
        except PathError as error:
            self._log_illegal(error, "RCPT")
            if error.utf8:
                self.reply(replies.SMTPUTF8_NEEDED)
            elif error.missing or argument[:3].upper() != "TO:":
                self.reply(replies.RCPT_SYNTAX)
            else:
                self.reply(replies.BAD_RECIPIENT_SYNTAX)
            return
        if path.sent_params:
            self.reply(replies.BAD_PARAMETER.format(name=path.sent_params[0][2]))
            return
        recipient = path.address
        # RFC 5321 §4.5.1: a bare "postmaster" (any case, no domain) must be
        # accepted. As in Postfix's smtpd_check_rcpt, no restriction runs for
        # it; it goes to postmaster@$myorigin (see docs/smtpd.md for where
        # that ends up when no mailbox is listed).
        postmaster = recipient.lower() == "postmaster"
        if postmaster:
            recipient = "postmaster"
        if len(self.txn.recipients) >= self.ctx.config.smtpd_recipient_limit:
            # Postfix's smtpd_recipient_overshoot_limit: a client that sends
            # more recipients than allowed is not an error until it overshoots.
            self.txn.overshoot += 1
            self.ctx.metrics_reject("RCPT", "452")
            self.reply(replies.TOO_MANY_RECIPIENTS, counts_as_error=self.txn.overshoot
                       > self.ctx.config.smtpd_recipient_overshoot_limit)
            return
        # Judged and logged as sent, queued qualified (Postfix: smtpd's
        # state->recipient, then cleanup's rewrite).
        refusal = None if postmaster else self.ctx.restrictions.check_recipient(
            self.client, self.txn.sender, recipient, self.helo)
        self._log_whatsup("RCPT", self.txn.sender, recipient)
        if refusal:
            self._reject("RCPT", refusal, self.txn.sender, recipient)
            return
        if self.txn.qid is None:
            self.txn.qid = self.ctx.spool.new_qid()
            maillog.client(self.txn.qid, self.client.peer, *self.sasl_log_fields())
        self.txn.accepted += 1
        if self.txn.accepted == 1:
            self.txn.first_recipient = path.address
        recipient = addr.qualify(recipient, self.ctx.config.myorigin)
        if recipient not in self.txn.recipients:
            self.txn.recipients.append(recipient)
        self.reply(replies.RCPT_OK)

    def sasl_log_fields(self) -> tuple[str | None, str | None, str | None]:
        """sasl_method, sasl_username and sasl_sender for the client= line."""
        return None, None, None

    def _reject(self, command: str, reply: str, sender: str | None,
                recipient: str | None) -> None:
        # proto= is SMTP or ESMTP: Postfix adds RFC 3848's S and A in Received only.
        maillog.reject(self.txn.qid, command, self.client.peer, reply, sender, recipient,
                       "ESMTP" if self.esmtp else "SMTP", self.helo)
        self.ctx.metrics_reject(command, reply[:3])
        self._refusal_reply(reply)

    def _log_whatsup(self, command: str, sender: str | None, recipient: str | None,
                     helo: str | None = None) -> None:
        """Log the access maps' WARN and INFO that the last decision met, as
        Postfix's log_whatsup: ``NOQUEUE: warn: RCPT from host[ip]: TEXT;
        from=<s> to=<r> proto=ESMTP helo=<h>``. helo: the name being judged
        at HELO/EHLO, else the session's."""
        notes = self.client.whatsup
        if not notes:
            return
        for action, text in notes:
            maillog.reject(self.txn.qid, command, self.client.peer, printable(text), sender,
                           recipient, "ESMTP" if self.esmtp else "SMTP",
                           helo if helo is not None else self.helo, action=action)
        notes.clear()

    def _refusal_reply(self, reply: str) -> None:
        """A refusal's reply; a 421 (an access map's "421 text") ends the
        session after it, as Postfix's smtpd hangs up after any 421: the
        code says the server is closing the channel (RFC 5321 §4.2.3)."""
        self.reply(reply)
        if reply[:3] == "421":
            self._hang_up()

    @property
    def protocol_name(self) -> str:
        """SMTP, ESMTP, or ESMTPS/ESMTPA/ESMTPSA as RFC 3848 names them."""
        if not self.esmtp:
            return "SMTP"
        suffix = ("S" if self.tls_active else "") + ("A" if self.client.sasl_username else "")
        return "ESMTP" + suffix

    @property
    def tls_active(self) -> bool:
        return self.client.tls

    # -- DATA ---------------------------------------------------------------------------
    async def cmd_data(self, argument: str) -> None:
        if argument:
            self.reply(replies.DATA_SYNTAX)
            return
        if not self.txn.recipients:
            # Postfix's data_cmd, as it answers on the wire: "need RCPT"
            # outside a transaction, "no valid recipients" inside one.
            self.reply(replies.NEED_RCPT if self.txn.sender is None
                       else replies.NO_VALID_RECIPIENTS)
            return
        if self.ctx.restrictions.data and self._data_refused():
            return
        txn, self.txn = self.txn, Transaction()
        assert txn.qid is not None
        ctx = self.ctx
        config = ctx.config
        self.reply(replies.START_DATA)
        await self.flush()
        envelope = Envelope(
            qid=txn.qid, arrival=time.time(),
            sender=addr.qualify(txn.sender or "", config.myorigin),
            recipients=list(txn.recipients), client=self.client.peer,
            helo=self.helo or "", proto=self.protocol_name)
        writer = ctx.spool.writer(envelope)
        received = received_header(ReceivedInfo(
            helo=self.helo, client_name=self.client.hostname,
            client_address=self.client.address, protocol=self.protocol_name,
            myhostname=config.myhostname, mail_name=config.mail_name, qid=txn.qid,
            # "for <…>" names the one recipient as the client sent it (Postfix's
            # smtpd: state->recipient when rcpt_count is 1).
            recipients=[txn.first_recipient] if txn.accepted == 1 else [],
            tls_lines=self.received_tls_lines()))
        cleanup = CleanupStream(
            writer, received=received, add_missing=ctx.adds_missing_headers(self.client),
            myhostname=config.myhostname, header_size_limit=config.header_size_limit)
        failure: OSError | None = None

        async def sink(chunk: bytes) -> None:
            nonlocal failure
            if failure is None:
                try:
                    await cleanup.feed(chunk)
                except OSError as error:
                    failure = error

        self.stage = "DATA"
        self._data_bytes = 0
        self._data_started = self.loop.time()
        try:
            result = await read_data(self._reader, sink, config.message_size_limit,
                                     self._data_progress)
            # Postfix's END-OF-MESSAGE lasts from the final dot until the next
            # command: a timeout then is "after END-OF-MESSAGE", and a client
            # that hangs up once it has its 250 is not logged as lost.
            self._data_bytes = None
            self.stage = "END-OF-MESSAGE"
            if result.bare_lf and "bare_lf" not in self.notes:
                self.notes.append("bare_lf")
            if (result.bare_lf or result.bare_cr) \
                    and config.smtpd_forbid_bare_newline == "reject":
                # As for a command line: the message is not queued, and the
                # session ends (Postfix's smtpd_forbid_bare_newline = reject
                # covers DATA content too).
                await writer.abort()
                text = replies.BARE_NEWLINE if result.bare_lf else replies.BARE_CR
                self._reject("END-OF-MESSAGE", text.format(host=self.hostname),
                             txn.sender, None)
                self._hang_up()
                return
            if result.too_big:
                await writer.abort()
                self._reject("END-OF-MESSAGE", replies.MESSAGE_TOO_BIG, txn.sender, None)
                return
            if failure is None:
                try:
                    await cleanup.finish()
                    if cleanup.hops >= config.hopcount_limit:
                        # A mail loop (Postfix's cleanup: CLEANUP_STAT_HOPS): the
                        # message is not queued, the session goes on.
                        await writer.abort()
                        self._reject("END-OF-MESSAGE", replies.TOO_MANY_HOPS,
                                     txn.sender, None)
                        return
                    await writer.commit()
                except OSError as error:
                    failure = error
            if failure is not None:
                await writer.abort()
                storage = failure.errno in _STORAGE_ERRNOS
                maillog.warning("smtpd", f"{txn.qid}: queue file write error: "
                                f"{failure.strerror or failure}")
                ctx.metrics_write_error()
                self.reply(replies.INSUFFICIENT_STORAGE if storage
                           else replies.QUEUE_FILE_ERROR)
                return
        except BaseException:
            await asyncio.shield(writer.abort())
            raise
        envelope.size = writer.size
        maillog.message_id(txn.qid, cleanup.message_id or "<>")
        ctx.queued(envelope)
        # Postfix's data_cmd: "Forgive any previous client errors". A client
        # that delivers is not counted toward smtpd_hard_error_limit for the
        # rejected recipients of its earlier messages, nor for its NOOPs
        # (the junk command count starts again too).
        self.errors = 0
        self.junk = 0
        self.reply(replies.QUEUED.format(qid=txn.qid))

    def _data_progress(self, received: int) -> None:
        """A read of message content: count its bytes, restart the idle timer.

        With smtpd_per_request_deadline (on under stress) the timer is not
        restarted by every read: the whole DATA has smtpd_timeout, extended
        by 1/smtpd_min_data_rate seconds for each byte received (Postfix
        3.7), so a client that sends a byte now and then is cut off while one
        that sends at a useful rate is not."""
        if self._data_bytes is None:
            self._reset_timeout()
            return
        self._data_bytes += received
        limits = self.ctx.connections.limits
        if not limits.smtpd_per_request_deadline:
            self._reset_timeout()
            return
        deadline = (self._data_started + limits.smtpd_timeout
                    + self._data_bytes / limits.smtpd_min_data_rate)
        self._reset_timeout(max(deadline - self.loop.time(), 0.001))

    def received_tls_lines(self) -> list[str]:
        """The TLS clause of the Received header (see tls/); none in plaintext."""
        return []

    # -- the rest -------------------------------------------------------------------------
    def cmd_rset(self, argument: str) -> None:
        if argument:
            self.reply(replies.RSET_SYNTAX)
            return
        self.txn = Transaction()
        self.reply(replies.OK)

    def cmd_noop(self, argument: str) -> None:
        self.reply(replies.OK)

    def cmd_quit(self, argument: str) -> None:
        # Postfix does not check QUIT's syntax either: a client that says
        # goodbye is let go.
        self.stage = "QUIT"
        self.reply(replies.BYE)
        self._hang_up()

    def cmd_vrfy(self, argument: str) -> None:
        if self.ctx.config.disable_vrfy_command:
            self.reply(replies.VRFY_DISABLED)
            return
        if not argument:
            self.reply(replies.VRFY_SYNTAX)
            return
        try:
            address = parse_vrfy(argument)
        except PathError as error:
            self._log_illegal(error, "VRFY")
            self.reply(replies.BAD_RECIPIENT_SYNTAX)
            return
        if address.lower() != "postmaster":  # always ours, as for RCPT
            # Postfix's vrfy_cmd runs smtpd_check_rcpt: the relay and recipient
            # restrictions as for RCPT, so VRFY tells an outsider no more than
            # RCPT would (Relay access denied for a foreign address). The
            # address is judged as sent, as for RCPT.
            # Inside a transaction its sender is judged and logged too, as
            # Postfix's smtpd_check_rcpt sees the session's sender.
            sender = self.txn.sender
            refusal = self.ctx.restrictions.check_recipient(self.client, sender, address,
                                                            self.helo)
            self._log_whatsup("VRFY", sender, address)
            if refusal:
                self._reject("VRFY", refusal, sender, address)
                return
        # Postfix's vrfy_cmd answers with the argument as the client wrote it
        # (words collapsed), not a rewritten address.
        self.reply(replies.VRFY_MAY_DELIVER.format(address=" ".join(argument.split())))

    # A handler returns None when it has answered, or an awaitable to run.
    _commands: dict[str, Callable[[Any, str], Awaitable[None] | None]] = {
        "HELO": cmd_helo,
        "EHLO": cmd_ehlo,
        "MAIL": cmd_mail,
        "RCPT": cmd_rcpt,
        "DATA": cmd_data,
        "RSET": cmd_rset,
        "NOOP": cmd_noop,
        "QUIT": cmd_quit,
        "VRFY": cmd_vrfy,
    }
    _immediate = sync_verbs(_commands)
