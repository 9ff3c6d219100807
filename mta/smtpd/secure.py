"""The TLS and AUTH half of an SMTP session: STARTTLS, implicit TLS, client
certificates, the TLS requirement, and AUTH PLAIN/LOGIN.

One code path serves STARTTLS (RFC 3207) and wrapper mode (port 465, RFC
8314): ``_begin_handshake`` and ``_finish_handshake`` run the handshake, and
afterwards the session is the same either way (AUTH offered, client
certificate evaluated, ESMTPS/ESMTPSA, the TLS clause in Received). The
handshake is ours (tls/engine.py, pyOpenSSL over memory buffers), not
aiosmtpd's: received bytes are routed to the TLS engine in ``data_received``
from the moment STARTTLS is accepted, and plaintext that was pipelined
behind STARTTLS is thrown away (CVE-2011-0411), as are HELO, MAIL and AUTH
state from before TLS (RFC 3207 §4.2).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import TYPE_CHECKING

from cryptography import x509

from mta import log as maillog
from mta import sasl
from mta.errors import ConfigError
from mta.smtpd import replies
from mta.smtpd.grammar import printable
from mta.smtpd.protocol import SmtpdProtocol, Transaction, sync_verbs
from mta.smtpd.security import AUTH, CLIENT_CERTIFICATES, HANDSHAKES, ListenerSecurity
from mta.tls import summary as tls_summary
from mta.tls.clientcert import PeerCertificate
from mta.tls.engine import TlsEngine, TlsError, TlsTransport
from mta.tls.inbound_policy import ENCRYPT, NONE
from mta.tls.server import SessionTls
from mta.tls.summary import TlsSummary

if TYPE_CHECKING:
    from mta.smtpd.server import SmtpdContext

# Commands a client may give before STARTTLS when TLS is required (Postfix's
# SMTPD_CMD_FLAG_PRE_TLS, plus RSET and HELP which reveal nothing).
PRE_TLS = frozenset({"EHLO", "HELO", "STARTTLS", "NOOP", "RSET", "HELP", "QUIT"})
_HELD_LIMIT = 1 << 16  # a ClientHello is a few hundred bytes, at most 2^14 + headers


class _Aborted(Exception):
    """The client answered a SASL challenge with "*" (RFC 4954 §4)."""


@dataclass
class _Handshake:
    engine: TlsEngine
    state: SessionTls
    done: asyncio.Future[None]


class SecureSmtpdProtocol(SmtpdProtocol):
    """An SMTP session that can speak TLS and AUTH as its listener allows."""

    def __init__(self, ctx: SmtpdContext) -> None:
        super().__init__(ctx)
        self.security: ListenerSecurity | None = ctx.security
        self.tls_level = NONE
        self.tls: TlsSummary | None = None
        self.sasl_method: str | None = None
        self._handshake: _Handshake | None = None
        self._raw: asyncio.Transport | None = None
        self._ccert_refusal: str | None = None
        # Wrapper mode: the client's first bytes (its ClientHello) wait here
        # until the connection is admitted, so that a client refused by a
        # connection limit or the new TLS session rate costs no handshake and
        # gets no byte of ours (Postfix checks before it starts TLS, too).
        self._held: bytearray | None = None

    # -- transport plumbing ----------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._raw = transport  # type: ignore[assignment]
        super().connection_made(transport)
        security = self.security
        if security is not None and security.policy.wrappermode and security.tls is not None:
            # RFC 8314: the client's first bytes are its ClientHello, which
            # may arrive while we look up its name and count it: hold them
            # for the TLS engine until it is admitted.
            self._begin_handshake()
            self._held = bytearray()

    def data_received(self, data: bytes) -> None:
        if self._held is not None:
            self._held += data
            if len(self._held) > _HELD_LIMIT and self._raw is not None:
                self._raw.abort()  # no ClientHello is this long
            return
        handshake = self._handshake
        if handshake is None:
            super().data_received(data)
            return
        try:
            plain = handshake.engine.receive(data)
        except TlsError as error:
            self._write_raw(handshake.engine.outgoing())  # the alert, if any
            if not handshake.done.done():
                handshake.done.set_exception(error)
            elif self._raw is not None:
                self._raw.abort()  # a corrupt record: nothing can be trusted after it
            return
        finished = handshake.engine.handshake_done and not handshake.done.done()
        if not _output_may_wait(handshake.engine, finished, plain):
            self._write_raw(handshake.engine.outgoing())
        if finished:
            handshake.done.set_result(None)
        if plain:
            super().data_received(plain)
        if handshake.engine.peer_closed:
            self._reader.feed_eof()

    def eof_received(self) -> bool | None:
        self._handshake_lost()
        return super().eof_received()

    def connection_lost(self, error: Exception | None) -> None:
        self._handshake_lost()
        super().connection_lost(error)

    def _handshake_lost(self) -> None:
        """The client went away mid-handshake: log it as Postfix does
        (aiosmtpd cancels the session task right after this)."""
        if self._abandon_handshake():
            HANDSHAKES.labels(self.ctx.listener.name, "none", "none", "failure").inc()
            maillog.info("smtpd", f"SSL_accept error from {self.client.peer}: lost connection")

    def _abandon_handshake(self) -> bool:
        """Stop waiting for the handshake under way, if one is (the session
        ends); a STARTTLS that started it counts as failed."""
        handshake = self._handshake
        if handshake is None or handshake.done.done():
            return False
        handshake.done.cancel()
        if self.stage == "STARTTLS":
            self._count("starttls", False)
        return True

    def _hang_up(self) -> None:
        transport = self.transport
        if isinstance(transport, TlsTransport) and self._out and not transport.is_closing():
            # The last replies and close_notify in one write.
            data, self._out = b"".join(self._out), []
            self._closing = True
            transport.close(final=data)
            return
        super()._hang_up()

    def refuse(self, text: str) -> None:
        if self._handshake is None or self.tls is not None:
            super().refuse(text)
            return
        # A client in its TLS handshake (wrapper mode's is from the first
        # byte, RFC 8314 §3) reads TLS records only: a cleartext 421 would be
        # garbage to it, so it gets none, and the connection is closed without
        # a byte of ours. Postfix completes the handshake and sends the 421
        # inside TLS; we do not, because a refused connection is not counted,
        # and waiting up to smtpd_starttls_timeout for its handshake would let
        # one client hold any number of sockets past its limit.
        self._abandon_handshake()  # a refusal, not a failed handshake: no SSL_accept line
        self._close()

    def _timeout_cb(self) -> None:
        # Never a cleartext reply inside TLS: while a handshake runs only
        # smtpd_starttls_timeout may end it (the idle timer is stopped then;
        # this guards any path that would restart it too early).
        handshake = self._handshake
        if handshake is not None and not handshake.done.done():
            self._stop_idle_timer()  # so that the handshake's end re-arms it
            return
        super()._timeout_cb()

    def _write_raw(self, data: bytes) -> None:
        if data and self._raw is not None and not self._raw.is_closing():
            self._raw.write(data)

    @property
    def tls_active(self) -> bool:
        return self.tls is not None

    # -- the session -------------------------------------------------------------------
    async def _session(self) -> None:
        security = self.security
        if security is not None:
            self.tls_level = security.policy.level_for(self.client.address)
            if security.policy.wrappermode:
                # RFC 8314: the handshake comes before the greeting.
                if await self._new_tls_refused():
                    maillog.warning("smtpd", f"Refusing TLS service request from "
                                    f"{self.client.peer} for service {self.ctx.listener.name}")
                    self.refuse("")  # in its handshake: closed without a byte (refuse)
                    return
                held, self._held = self._held, None
                if held:
                    self.data_received(bytes(held))
                await self._finish_handshake()
                if self._closing:
                    return
        await super()._session()

    async def _new_tls_refused(self) -> bool:
        """smtpd_client_new_tls_session_rate_limit, before a handshake: is
        the client's count already past it? (Postfix's anvil status query;
        the handshake is counted once it succeeds, _count_new_tls.)"""
        limit = self.rate_limits.get("newtls")
        return limit is not None and await self.ctx.connections.event_rate(
            self.client.address, "newtls", count=False) > limit

    async def _count_new_tls(self) -> None:
        """A new TLS session was made (this server resumes none: its session
        cache is off, tls/server.py): count it, and end the session inside
        TLS when that passes the limit, as Postfix does."""
        limit = self.rate_limits.get("newtls")
        if not limit:
            return
        rate = await self.ctx.connections.event_rate(self.client.address, "newtls")
        if rate > limit:
            maillog.warning("smtpd", f"New TLS session rate limit exceeded: {rate} from "
                            f"{self.client.peer} for service {self.ctx.listener.name}")
            self.ctx.metrics_reject(self.stage, "421")
            self.reply_and_close(replies.TOO_MANY_NEW_TLS.format(host=self.hostname,
                                                                 peer=self.client.peer))

    async def _dispatch(self, line: bytes) -> None:
        if self._ccert_refusal is not None:
            self.reply_and_close(replies.CCERT_REFUSED.format(
                host=self.hostname, reason=self._ccert_refusal))
            return
        # A client refused at connect gets its 503 for these too (Postfix
        # answers access_denied before it asks for TLS).
        if self.tls_level == ENCRYPT and not self.tls_active and self.access_denied is None:
            verb = line.partition(b" ")[0].upper().decode("ascii", "replace")
            if verb in self._commands and verb not in PRE_TLS:
                self._count(verb.lower(), False)
                self.ctx.metrics_reject(verb, "530")
                self.reply(replies.MUST_STARTTLS)
                return
        await super()._dispatch(line)

    def _may_answer_at_once(self) -> bool:
        # The refusals _dispatch makes (a client certificate refused, or
        # commands before STARTTLS at the encrypt level) are the task's.
        return (self._ccert_refusal is None and (self.tls_level != ENCRYPT or self.tls_active)
                and super()._may_answer_at_once())

    def tls_keywords(self) -> list[str]:
        keywords = []
        if self._offers_starttls():
            keywords.append("STARTTLS")
        if self._offers_auth():
            keywords.append("AUTH " + " ".join(sasl.MECHANISMS))
        return keywords

    def _offers_starttls(self) -> bool:
        return (not self.tls_active and self.tls_level != NONE and self.security is not None
                and self.security.tls is not None)

    def _offers_auth(self) -> bool:
        security = self.security
        return (security is not None and security.sasl is not None
                and (self.tls_active or not security.auth_only))

    # -- STARTTLS ---------------------------------------------------------------------
    async def cmd_starttls(self, argument: str) -> None:
        if argument:
            self.reply(replies.STARTTLS_SYNTAX)
            return
        if self.tls_active:
            self.reply(replies.TLS_ALREADY_ACTIVE)
            return
        if self.tls_level == NONE or self.security is None:
            self.reply(replies.NOT_IMPLEMENTED)
            return
        if self.security.tls is None:
            self.reply(replies.TLS_NOT_AVAILABLE)
            return
        if await self._new_tls_refused():
            maillog.warning("smtpd", f"Refusing STARTTLS request from {self.client.peer} "
                            f"for service {self.ctx.listener.name}")
            self.ctx.metrics_reject("STARTTLS", "454")
            self.reply(replies.TLS_RATE_REFUSED.format(peer=self.client.peer))
            return
        self.reply(replies.STARTTLS_READY)
        # CVE-2011-0411: whatever the client pipelined behind STARTTLS was
        # sent in plaintext and must never be read as a command. Drop it, and
        # route every byte from now on to the TLS engine (no await between).
        self._reader._buffer.clear()  # type: ignore[attr-defined]
        resume = getattr(self._reader, "_maybe_resume_transport", None)
        if resume is not None:
            resume()
        self._begin_handshake()
        await self.flush()
        # RFC 3207 §4.2: forget what the client said before TLS.
        self.helo = None
        self.esmtp = False
        self.txn = Transaction()
        self.client.sasl_username = None
        self.sasl_method = None
        try:
            await self._finish_handshake()
        except ConnectionError:
            self._count("starttls", False)
            raise

    def _begin_handshake(self) -> None:
        assert self.security is not None and self.security.tls is not None
        connection, state = self.security.tls.connection()
        self._handshake = _Handshake(TlsEngine(connection), state,
                                     self.loop.create_future())
        # smtpd_starttls_timeout bounds the handshake (_finish_handshake); the
        # idle timer's 421 would go out in cleartext into the client's TLS
        # stream, and with smtpd_timeout shorter it would end the handshake.
        self._stop_idle_timer()

    async def _finish_handshake(self) -> None:
        handshake = self._handshake
        security = self.security
        assert handshake is not None and security is not None and self._raw is not None
        listener = self.ctx.listener.name
        connections = self.ctx.connections
        # Under stress, the stress value (smtpd_starttls_timeout's default
        # ${stress?{10}:{300}}s), else what the listener's security was built with.
        timeout = (connections.limits.smtpd_starttls_timeout if connections.stressed
                   else security.starttls_timeout)
        try:
            async with asyncio.timeout(timeout):  # wait_for made a task
                await handshake.done
        except TimeoutError:
            # As Postfix's tls_server_start after its read_wait() gives up
            # (errno ETIMEDOUT); smtpd then logs "lost connection after
            # STARTTLS" (CONNECT in wrapper mode), as for any failed handshake.
            HANDSHAKES.labels(listener, "none", "none", "timeout").inc()
            maillog.info("smtpd", f"SSL_accept error from {self.client.peer}: "
                         "Connection timed out")
            self._raw.abort()
            raise ConnectionResetError("TLS handshake timed out") from None
        except TlsError as error:
            HANDSHAKES.labels(listener, "none", "none", "failure").inc()
            maillog.info("smtpd", f"SSL_accept error from {self.client.peer}: {error}")
            self._raw.close()
            raise ConnectionResetError("TLS handshake failed") from None
        self._reset_timeout()  # the idle timer again, from the end of the handshake
        connection = handshake.engine.connection
        transport = TlsTransport(self._raw, handshake.engine)
        self.transport = transport
        self._writer = asyncio.StreamWriter(transport, self, self._reader, self.loop)
        peer = None
        cert = connection.get_peer_certificate(as_cryptography=True)
        if isinstance(cert, x509.Certificate):
            peer = PeerCertificate.from_certificate(cert, handshake.state.verify,
                                                    security.fingerprint_digest)
        self.tls = tls_summary.from_pyopenssl(connection, server_side=True, peer=peer,
                                              sni=handshake.state.sni)
        self._note_client(peer)
        HANDSHAKES.labels(listener, self.tls.protocol, self.tls.trust.lower(),
                          "success").inc()
        self._log_tls(handshake.state)
        if security.req_ccert and (peer is None or not peer.trusted):
            # Postfix answers the next command with 421 and hangs up (smtpd.c).
            self._ccert_refusal = replies.NO_CCERT if peer is None \
                else replies.CCERT_NOT_TRUSTED
            maillog.info("smtpd", f"NOQUEUE: abort: TLS from {self.client.peer}: "
                         f"{self._ccert_refusal}")
        await self._count_new_tls()

    def _note_client(self, peer: PeerCertificate | None) -> None:
        """Tell the restrictions what the handshake established."""
        assert self.security is not None
        self.client.tls = True
        self.client.ccert_trusted = bool(peer and peer.trusted)
        self.client.ccert_fingerprints = peer.fingerprints if peer else ()
        self.client.ccert_name = peer.common_name if peer else ""
        if not self.security.ask_ccert:
            return
        if peer is None:
            outcome = "absent"
        elif peer.trusted:
            outcome = "trusted"
        elif self.security.pinned(peer.fingerprints):
            outcome = "pinned"
        else:
            outcome = "untrusted"
        CLIENT_CERTIFICATES.labels(self.ctx.listener.name, outcome).inc()

    def _log_tls(self, state: SessionTls) -> None:
        assert self.security is not None and self.tls is not None
        level = self.security.loglevel
        peer = self.tls.peer
        if level >= 2 and state.sni_unmatched:
            maillog.info("smtpd", f"TLS SNI {state.sni_unmatched} from {self.client.peer} "
                         "not matched, using default chain")
        if level >= 2 and peer is not None:
            maillog.info("smtpd", f"{self.client.peer}: subject_CN={peer.common_name}, "
                         f"issuer_CN={peer.issuer_common_name}, "
                         f"fingerprint={peer.cert_fingerprint}, "
                         f"pkey_fingerprint={peer.pkey_fingerprint}")
            if not peer.trusted:
                maillog.info("smtpd", f"certificate verification failed for "
                             f"{self.client.peer}: {peer.verify_error}")
        if level >= 1:
            maillog.info("smtpd", self.tls.log_text("server", self.client.peer))

    # -- what the rest of the session prints ----------------------------------------------
    def received_tls_lines(self) -> list[str]:
        security = self.security
        lines: list[str] = []
        if security is None:
            return lines
        if self.tls is not None and security.received_header:
            lines.extend(self.tls.received_lines(security.ask_ccert))
        if security.authenticated_header and self.client.sasl_username:
            lines.append("(Authenticated sender: "
                         f"{tls_summary.comment_safe(self.client.sasl_username)})")
        return lines

    def sasl_log_fields(self) -> tuple[str | None, str | None, str | None]:
        # Postfix logs the MAIL's AUTH= as sasl_sender where AUTH is on,
        # logged in or not.
        if self.security is None or self.security.sasl is None:
            return None, None, None
        if self.client.sasl_username:
            return self.sasl_method, self.client.sasl_username, self.txn.auth_sender
        return None, None, self.txn.auth_sender

    # -- AUTH -----------------------------------------------------------------------------
    async def cmd_auth(self, argument: str) -> None:
        # Postfix counts every AUTH command, whatever the state (one where
        # AUTH is not even offered included), before anything else.
        if "auth" in self.rate_limits and await self.rate_limited("auth"):
            return
        security = self.security
        if self.helo is None:
            self.reply(replies.NEED_HELO)
            return
        if security is None or security.sasl is None:
            self.reply(replies.AUTH_NOT_ENABLED)
            return
        if self.txn.sender is not None:
            self.reply(replies.AUTH_IN_TRANSACTION)
            return
        if security.auth_only and not self.tls_active:
            self.reply(replies.AUTH_ENCRYPTION_REQUIRED)  # RFC 4954 §4
            return
        if self.client.sasl_username:
            self.reply(replies.AUTH_ALREADY)
            return
        words = argument.split()
        if not 1 <= len(words) <= 2:
            self.reply(replies.AUTH_SYNTAX)
            return
        mechanism = words[0].upper()
        if mechanism not in sasl.MECHANISMS:
            self._auth_metric("other", "malformed")
            self.reply(replies.AUTH_UNKNOWN_MECHANISM)
            return
        initial = words[1] if len(words) == 2 else None
        peer = self.client.peer
        try:
            user, password, for_another = await self._sasl_exchange(mechanism, initial)
        except _Aborted:
            maillog.warning("smtpd", f"{peer}: SASL {mechanism} authentication aborted")
            self._auth_metric(mechanism, "aborted")
            self.reply(replies.AUTH_ABORTED)
            return
        except sasl.ResponseTooLong:
            self._auth_metric(mechanism, "malformed")
            self.reply(replies.AUTH_TOO_LONG)
            return
        except sasl.SaslError as error:
            # Counted, logged and slowed down like a wrong password: a client
            # that sends garbage may be guessing too, and fail2ban must see it.
            await self._auth_failed(mechanism, str(error))
            return
        if for_another:
            # We do not let one user act for another (PLAIN's authzid).
            await self._auth_failed(mechanism, "authentication failure", user)
            return
        try:
            ok = await security.sasl.check(user, password)
        except ConfigError as error:
            maillog.warning("smtpd", f"{peer}: SASL {mechanism} authentication "
                            f"unavailable: {error}")
            self._auth_metric(mechanism, "unavailable")
            self.reply(replies.AUTH_UNAVAILABLE)
            return
        if not ok:
            await self._auth_failed(mechanism, "authentication failure", user)
            return
        self.client.sasl_username = user
        self.sasl_method = mechanism
        self._auth_metric(mechanism, "success")
        self.reply(replies.AUTH_OK)

    async def _auth_failed(self, mechanism: str, reason: str, user: str | None = None) -> None:
        """A failed AUTH: the warning, the metric, the slow-down, then 535.
        user: the login name tried, when the response named one."""
        assert self.security is not None and self.security.sasl is not None
        # fail2ban's postfix-sasl filter matches this line. Postfix 3.7 ends
        # it with the name tried, or "(unavailable)" (compared on the wire:
        # tests/interop/test_postfix_auth.py).
        # Postfix's "%.100s": at most 100 characters of the name.
        name = printable(user)[:100] if user else "(unavailable)"
        maillog.warning("smtpd", f"{self.client.peer}: SASL {mechanism} authentication "
                        f"failed: {reason}, sasl_username={name}")
        self._auth_metric(mechanism, "failure")
        await self.security.sasl.failed(self.client.address)
        self.reply(replies.AUTH_FAILED.format(reason=reason))

    def _auth_metric(self, mechanism: str, result: str) -> None:
        AUTH.labels(self.ctx.listener.name, mechanism, result).inc()

    async def _sasl_exchange(self, mechanism: str, initial: str | None
                             ) -> tuple[str, str, bool]:
        """Run the mechanism's challenges; (user, password, whether the client
        asked to act for another user: a PLAIN authorization identity that is
        not the user) on a well-formed answer."""
        if mechanism == "PLAIN":
            if initial is not None:
                message = _decode(initial, "initial")
            else:
                message = _decode(await self._sasl_response(""), "continued")
            authzid, user, password = sasl.parse_plain(message)
            return user, password, bool(authzid) and authzid != user
        if initial is not None:
            user = _utf8(_decode(initial, "initial"))
        else:
            user = _utf8(_decode(await self._sasl_response(sasl.LOGIN_USERNAME), "continued"))
        password = _utf8(_decode(await self._sasl_response(sasl.LOGIN_PASSWORD), "continued"))
        return user, password, False

    async def _sasl_response(self, challenge: str) -> str:
        self.reply(f"334 {challenge}")
        await self.flush()
        try:
            line = await self._reader.readuntil(b"\n")
        except asyncio.LimitOverrunError as error:
            await self._discard_long_line(error.consumed)
            raise sasl.ResponseTooLong from None
        except asyncio.IncompleteReadError:
            raise ConnectionResetError("client went away") from None
        self._reset_timeout()
        text = line.rstrip(b"\r\n").decode("ascii", "replace")
        if text.strip() == "*":
            raise _Aborted
        return text

    _commands = {**SmtpdProtocol._commands,
                 "STARTTLS": cmd_starttls, "AUTH": cmd_auth}
    _immediate = sync_verbs(_commands)


def _output_may_wait(engine: TlsEngine, finished: bool, plain: bytes) -> bool:
    """Whether what the TLS engine has for the client may wait for our next
    reply, which carries it in the same write (records stay in order).

    Never during the handshake: the client waits for our flight. When the
    client's Finished ends a TLS 1.3 handshake, all the server writes is
    NewSessionTicket messages (RFC 8446 §4.6.1), which no client waits for;
    in TLS 1.2 it is the server's Finished, which the client does wait for.
    After the handshake, when the client sent application data (a command or
    message content) we will answer it, and nothing a TLS 1.3 peer may ask
    for then (a KeyUpdate's answer) is awaited; a record without application
    data (an alert, a KeyUpdate alone) is answered at once.
    """
    if not engine.handshake_done:
        return False
    if finished:
        return engine.connection.get_protocol_version_name() == "TLSv1.3"
    return bool(plain)


def _decode(text: str, which: str) -> bytes:
    """A response's bytes; which is "initial" (on the AUTH line) or "continued"
    (after a 334), named in the failure as Dovecot's SASL back end names it."""
    try:
        return sasl.decode_response(text)
    except sasl.BadBase64 as error:
        raise sasl.BadBase64(f"{error} in {which} response") from None


def _utf8(data: bytes) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise sasl.SaslError("response is not UTF-8") from None
