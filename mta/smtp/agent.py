"""The ``smtp`` delivery agent: next hop → servers → one SMTP transaction.

For a request (one message, some recipients, one next hop) the agent finds
the servers (MX lookup unless the next hop is ``[host]``; never one that is
our own listener, mta/smtp/myself.py), tries their addresses in order up to
smtp_mx_address_limit and smtp_mx_session_limit, and answers one result per
recipient. The soft/hard rule is Postfix's (smtp_trouble.c): a 5xx reply
bounces the recipients it concerns; a 4xx reply, a timeout or a lost
connection leaves them for the next server, and only the last server's soft
failure defers them.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

from prometheus_client import Counter

from mta import log as maillog
from mta.concurrency import SITE_FAILURE
from mta.config import Config
from mta.delivery import ContentSource, DeliveryRequest, DeliveryResult, Recipient, Route
from mta.metrics import REGISTRY
from mta.resolver import LookupFailure, MxHost, Resolver
from mta.smtp.cache import Cached, ConnectionCache
from mta.smtp.client import (
    ConnectFailure,
    Connector,
    Peer,
    SmtpClientError,
    SmtpSession,
    StaleSession,
    StartTlsRefused,
    Timeouts,
    TlsHandshakeFailed,
)
from mta.smtp.myself import Myself
from mta.smtp.nexthop import parse_nexthop, server_addresses
from mta.smtp.reply import Reply
from mta.smtp.tlshook import (
    PLAINTEXT,
    NoTlsPolicy,
    SessionTls,
    TlsPlan,
    TlsPolicy,
    TlsRefusal,
)

log = logging.getLogger(__name__)

# The port on which a server that names us in its EHLO reply is a mail loop
# (Postfix: the smtp service port; see SmtpDelivery._loops_back).
LOOP_DETECT_PORT = 25

ATTEMPTS = Counter("mta_smtp_connection_attempts",
                   "Outbound server attempts by result: connect_failed, greeting_refused, "
                   "helo_refused, tls_refused, session (an SMTP session was established).",
                   ["result"], registry=REGISTRY)
TRANSACTIONS = Counter("mta_smtp_transactions",
                       "MAIL transactions by connection (new or reused).", ["connection"],
                       registry=REGISTRY)

@dataclass
class _Outcome:
    """What happened to one recipient at one server."""

    status: str  # sent | deferred | bounced
    dsn: str
    text: str
    relay: str = "none"
    remote_mta: str | None = None
    diagnostic: str | None = None
    site_failure: bool = False
    policy: TlsRefusal | None = None  # deferred because the TLS policy refused the server


@dataclass
class _Delivery:
    """The state of one request across servers."""

    request: DeliveryRequest
    pending: dict[int, Recipient]
    outcomes: dict[int, _Outcome] = field(default_factory=dict)
    soft: dict[int, _Outcome] = field(default_factory=dict)  # the last soft failure
    started: float = 0.0
    setup_time: float = 0.0
    transfer_time: float = 0.0
    conn_use: int | None = None
    tls: str | None = None

    def settle(self, index: int, outcome: _Outcome) -> None:
        self.outcomes[index] = outcome
        self.pending.pop(index, None)
        self.soft.pop(index, None)

    def soft_fail(self, indexes: list[int], outcome: _Outcome, final: bool) -> None:
        """A soft failure: deferred at the last server, else kept for the next."""
        for index in indexes:
            if final:
                self.settle(index, outcome)
            else:
                self.soft[index] = outcome


class SmtpDelivery:
    """The ``smtp`` transport (DeliveryAgent)."""

    name = "smtp"

    def __init__(self, config: Config, resolver: Resolver, *,
                 tls_policy: TlsPolicy | None = None, connector: Connector | None = None,
                 clock: Callable[[], float] = time.monotonic,
                 myself: Myself | None = None) -> None:
        self.config = config
        self.resolver = resolver
        # Our listeners, for the mail-loop check before connecting. Built once:
        # a reload does not rebind the listening sockets, so the ones of the
        # start are the ones a next hop can reach (reconfigure keeps them).
        self.myself = myself or Myself.from_config(config)
        self.connector = connector
        self.clock = clock
        self.timeouts = Timeouts.from_config(config)
        self.cache = ConnectionCache(
            config.smtp_connection_cache_time_limit
            if config.smtp_connection_cache_on_demand else 0,
            config.smtp_connection_reuse_time_limit)
        self._tls_policy: TlsPolicy = tls_policy or NoTlsPolicy()

    @property
    def tls_policy(self) -> TlsPolicy:
        return self._tls_policy

    @tls_policy.setter
    def tls_policy(self, policy: TlsPolicy) -> None:
        """A new policy (master.reload on SIGHUP): the idle cached connections were
        opened and judged under the old one, so they get QUIT now rather than
        at the idle limit. (Reuse is checked per message anyway, and a session
        that finishes a transaction after this is refused by the new plans.)"""
        self._tls_policy = policy
        self.cache.clear()

    def reconfigure(self, config: Config) -> None:
        self.config = config
        self.timeouts = Timeouts.from_config(config)

    async def close(self) -> None:
        await self.cache.close()

    # -- the request ---------------------------------------------------------------------
    async def deliver(self, request: DeliveryRequest) -> list[DeliveryResult]:
        state = _Delivery(request, {r.index: r for r in request.recipients},
                          started=self.clock())
        key = (request.route.transport, request.route.nexthop)
        while (cached := self.cache.take(key)) is not None:
            if await self._reuse(state, cached, key):
                break
        if state.pending:
            await self._deliver_fresh(state, key)
        self._count_policy_deferral(state)
        return self._results(state)

    def _count_policy_deferral(self, state: _Delivery) -> None:
        """One count per request that ended deferred by the TLS policy (metrics)."""
        counter = getattr(self.tls_policy, "deferred", None)
        refusals = [o.policy for o in state.outcomes.values()
                    if o.status == "deferred" and o.policy is not None]
        if counter is not None and refusals:
            counter(refusals[0].level, refusals[0].reason)

    async def _reuse(self, state: _Delivery, cached: Cached, key: tuple[str, str]) -> bool:
        """RSET a cached session and use it; if it has died, start afresh.
        With PIPELINING the RSET goes in the same group as MAIL, RCPT and
        DATA. False when this message's TLS plan does not admit the session
        (it gets QUIT and the caller tries the next one): the session was
        opened under a plan of its own, and an encrypt or verify message must
        not go on a plaintext or unverified session, nor a fresh message on
        a may session that fell back to plaintext (docs/tls-policy.md)."""
        session = cached.session
        # The plan a new connection to this server would get (_attempt); the
        # check itself is a few comparisons (TlsPlan.admits).
        plan = self.tls_policy.plan(state.request.route, session.peer.hostname,
                                    queued_for=_queued_for(state.request))
        if not plan.admits(cached.tls):
            log.debug("cached connection to %s (opened at TLS level %s, %s) not admitted "
                      "by this message's TLS plan", session.peer.relay, cached.tls.level.label,
                      "TLS" if cached.tls.encrypted else "plaintext")
            self.cache.discard(session)
            return False
        state.setup_time = self.clock() - state.started
        state.tls = plan.log_field()
        if "PIPELINING" not in session.features:
            try:
                reply = await session.rset()
            except SmtpClientError:
                session.close()
                return True
            if reply.code != 250:
                await session.quit()
                return True
        if await self._transaction(state, session, cached.tls, key, final=False, reused=True):
            TRANSACTIONS.labels("reused").inc()
        return True

    async def _deliver_fresh(self, state: _Delivery, key: tuple[str, str]) -> None:
        route = state.request.route
        try:
            nexthop = parse_nexthop(route.nexthop)
        except (KeyError, ValueError):
            self._fail_all(state, _Outcome("deferred", "4.3.5",
                                           f"bad next-hop destination: {route.nexthop}"))
            return
        try:
            servers = await server_addresses(
                self.resolver, nexthop, self.config.smtp_mx_address_limit,
                is_self=lambda address: self.myself.listens_at(address, nexthop.port))
        except LookupFailure as failure:
            status = "bounced" if failure.permanent else "deferred"
            dsn = failure.dsn
            relayhost = self.config.relayhost.strip()
            if failure.permanent and relayhost and route.nexthop == relayhost:
                # Postfix smtp_connect.c: a relayhost that does not resolve, or
                # whose address is our own listener (5.4.6, loops back to
                # myself), is the configuration's fault, not the recipient's;
                # defer (4.3.5, same text) instead of bouncing all outbound
                # mail. Compared as Postfix does, the next hop against
                # $relayhost verbatim.
                maillog.warning(self.name, "relayhost configuration problem")
                status, dsn = "deferred", "4.3.5"
            self._fail_all(state, _Outcome(status, dsn, failure.text))
            return
        session_limit = self.config.smtp_mx_session_limit
        # Postfix smtp_connect.c: SMTP_FEATURE_BEST_MX for the servers of the
        # lowest preference (all of them for [host]), which decides 5.4.6 or
        # 4.4.6 when mail loops back.
        best = min(mx.preference for mx, _ in servers)
        sessions = 0
        for number, (mx, address) in enumerate(servers):
            final = number == len(servers) - 1
            peer = Peer(mx.hostname, address, nexthop.port)
            opened = await self._attempt(state, route, mx, peer, key, final,
                                         best_mx=mx.preference == best)
            sessions += opened
            if not state.pending:
                return
            if session_limit and sessions >= session_limit:
                break
        # Out of servers: what is left was kept for a next server that never came.
        for index in list(state.pending):
            outcome = state.soft.get(index) or _Outcome("deferred", "4.4.1",
                                                        "no server could be tried")
            state.settle(index, outcome)

    # -- one server ------------------------------------------------------------------------
    async def _attempt(self, state: _Delivery, route: Route, mx: MxHost, peer: Peer,
                       key: tuple[str, str], final: bool, *, best_mx: bool = True,
                       retry_plan: TlsPlan | None = None) -> int:
        """Try one server; returns 1 when a session got through the greeting, EHLO
        and TLS to a mail transaction. Postfix smtp_connect.c: "Don't count
        handshake errors towards the session limit", so that a backup MX is
        still tried after busy ones (smtp_mx_session_limit)."""
        pending = list(state.pending)
        try:
            session = await SmtpSession.connect(
                peer, self.timeouts, local_address=self._bind_address(peer.address),
                connector=self.connector)
        except ConnectFailure as error:
            ATTEMPTS.labels("connect_failed").inc()
            maillog.info(self.name, error.text)
            state.soft_fail(pending, _Outcome("deferred", error.dsn, error.text,
                                              site_failure=True), final)
            return 0
        plaintext_only = retry_plan is not None
        plan = retry_plan or self.tls_policy.plan(route, mx.hostname,
                                                  queued_for=_queued_for(state.request))
        try:
            ready = await self._open(state, session, plan, peer, final, plaintext_only,
                                     best_mx)
        except SmtpClientError as error:
            session.close()
            ATTEMPTS.labels("greeting_refused" if session.greeting is None else "lost").inc()
            state.soft_fail(list(state.pending), self._session_failure(error, session), final)
            return 0
        except _PlaintextRetry:
            # Postfix's "may": the handshake failed, so the same server once more
            # without TLS (the plan has already said yes to that).
            return await self._attempt(state, route, mx, peer, key, final,
                                       best_mx=best_mx, retry_plan=plan)
        except BaseException:
            session.close()  # no socket left behind, whatever went wrong
            raise
        if not ready:
            return 0
        ATTEMPTS.labels("session").inc()
        TRANSACTIONS.labels("new").inc()
        state.setup_time = self.clock() - state.started
        state.tls = plan.log_field()
        # Kept with the session in the cache: a plaintext retry (plaintext_only)
        # is reusable only for mail that could fall back too.
        tls = plan.opened(session.tls is not None, fallback=plaintext_only)
        await self._transaction(state, session, tls, key, final)
        return 1

    def _bind_address(self, address: str) -> str | None:
        """The local address for a connection to address, by its family: Postfix's
        smtp_bind_address (IPv4) and smtp_bind_address6 (IPv6). One address for
        both would make every connection of the other family fail, since a
        socket cannot bind an IPv4 address and connect to an IPv6 one."""
        if ":" in address:  # the resolver gives numerical addresses; only IPv6 has a colon
            return self.config.smtp_bind_address6 or None
        return self.config.smtp_bind_address or None

    async def _open(self, state: _Delivery, session: SmtpSession, plan: TlsPlan, peer: Peer,
                    final: bool, plaintext_only: bool, best_mx: bool) -> bool:
        """Greeting, EHLO/HELO and STARTTLS; False (after settling or keeping the
        recipients) when this server will not get the mail."""
        greeting = await session.read_greeting()
        if greeting.code // 100 != 2:
            text = f"host {peer.name} refused to talk to me: {greeting}"
            permanent = greeting.permanent and not self.config.smtp_skip_5xx_greeting
            await session.quit()
            ATTEMPTS.labels("greeting_refused").inc()
            self._reply_failure(state, list(state.pending), greeting, text, peer,
                                final or permanent, site_failure=True,
                                force_soft=not permanent)
            return False
        if self._loops_back(greeting, peer):
            # Postfix smtp_proto.c warns about the greeting but decides on the
            # EHLO reply (below): a banner is free text.
            maillog.warning(self.name, f"host {peer.relay} greeted me with my own hostname "
                            f"{self.config.myhostname}")
        if not await self._hello(state, session, peer, final, best_mx):
            return False
        if plaintext_only:
            # The retry after a failed handshake: the plan records plaintext (may:none).
            decision: str | TlsRefusal = plan.before_starttls(False, peer)
        else:
            decision = plan.before_starttls(session.esmtp and "STARTTLS" in session.features,
                                            peer)
        if isinstance(decision, TlsRefusal):
            return await self._refuse_tls(state, session, decision, peer, final, plan)
        if decision == PLAINTEXT:
            return True
        try:
            facts = await session.starttls(plan.ssl_context, plan.server_hostname)  # type: ignore[arg-type]
        except StartTlsRefused as error:
            after = plan.after_failure(error, peer)
            if isinstance(after, TlsRefusal):
                return await self._refuse_tls(state, session, after, peer, final, plan)
            return True  # the session goes on in plaintext
        except TlsHandshakeFailed as error:
            after = plan.after_failure(error, peer)
            if isinstance(after, TlsRefusal):
                # The session is already closed, so no QUIT goes out.
                return await self._refuse_tls(state, session, after, peer, final, plan)
            raise _PlaintextRetry() from None
        refusal = plan.after_handshake(facts, peer)
        if refusal is not None:
            return await self._refuse_tls(state, session, refusal, peer, final, plan)
        return await self._hello(state, session, peer, final, best_mx)

    async def _hello(self, state: _Delivery, session: SmtpSession, peer: Peer,
                     final: bool, best_mx: bool) -> bool:
        name = self.config.smtp_helo_name
        if self.config.smtp_never_send_ehlo:
            reply = await session.helo(name)
        else:
            reply = await session.ehlo(name)
            if reply.code == 421:
                # Postfix smtp_proto.c (smtp_helo): a 421 to EHLO is the server
                # closing the session, not an old server that wants HELO; a
                # site failure, and the next server gets the mail.
                await session.quit()
                ATTEMPTS.labels("helo_refused").inc()
                self._reply_failure(state, list(state.pending), reply,
                                    f"host {peer.name} refused to talk to me: {reply}", peer,
                                    final, site_failure=True)
                return False
            if reply.code != 250:
                # RFC 5321 §4.1.4 / §3.2: an old server refuses EHLO; HELO then.
                reply = await session.helo(name)
            elif self._loops_back(reply, peer):
                await self._loop(state, session, peer, final, best_mx)
                return False
        if reply.code == 250:
            return True
        # Postfix's smtp_helo words a refused HELO as a refused greeting, soft
        # or hard alike, and names no command: "(in reply to HELO command)"
        # is for the commands of a transaction.
        text = f"host {peer.name} refused to talk to me: {reply}"
        await session.quit()
        ATTEMPTS.labels("helo_refused").inc()
        self._reply_failure(state, list(state.pending), reply, text, peer, final,
                            site_failure=True)
        return False

    def _loops_back(self, reply: Reply, peer: Peer) -> bool:
        """The reply (EHLO's, or the greeting) of a server on port 25 names
        this host first: the next hop is ourselves. Postfix smtp_proto.c
        compares the first word of the first line with $myhostname,
        case-insensitively, and only on port 25 (SMTP_MISC_FLAG_LOOP_DETECT,
        smtp_connect.c): on another port the server is usually a content
        filter or a second instance on this machine, which may well answer
        with the same name. Our own listeners on any port are found by
        address before connecting (mta/smtp/myself.py)."""
        if peer.port != LOOP_DETECT_PORT:
            return False
        words = re.split(r"[ \t=]+", reply.lines[0].strip()) if reply.lines else []
        return bool(words and words[0]) and \
            words[0].casefold() == self.config.myhostname.casefold()

    async def _loop(self, state: _Delivery, session: SmtpSession, peer: Peer, final: bool,
                    best_mx: bool) -> None:
        """Mail for the next hop comes back here. Postfix smtp_proto.c: bounce
        (5.4.6) when this is a best-preference server, else 4.4.6 and the next
        (better-placed) server may still take it. Without this a next hop that
        leads back here sends the message round and round."""
        maillog.warning(self.name, f"host {peer.relay} replied to HELO/EHLO with my own "
                        f"hostname {self.config.myhostname}")
        await session.quit()
        ATTEMPTS.labels("helo_refused").inc()
        text = f"mail for {state.request.route.nexthop} loops back to myself"
        if best_mx:
            self._fail_all(state, _Outcome("bounced", "5.4.6", text, relay=peer.relay,
                                           site_failure=True))
        else:
            state.soft_fail(list(state.pending),
                            _Outcome("deferred", "4.4.6", text, relay=peer.relay,
                                     site_failure=True), final)

    async def _refuse_tls(self, state: _Delivery, session: SmtpSession, refusal: TlsRefusal,
                          peer: Peer, final: bool, plan: TlsPlan) -> bool:
        """The TLS policy will not let this server have the mail: QUIT (unless the
        session is already broken) and keep the recipients for the next server."""
        await session.quit()
        ATTEMPTS.labels("tls_refused").inc()
        state.tls = plan.log_field()
        state.soft_fail(list(state.pending),
                        _Outcome("deferred", refusal.dsn, refusal.text, relay=peer.relay,
                                 site_failure=True, policy=refusal), final)
        return False

    # -- the transaction -------------------------------------------------------------------
    async def _transaction(self, state: _Delivery, session: SmtpSession, tls: SessionTls,
                           key: tuple[str, str], final: bool, reused: bool = False) -> bool:
        """One mail transaction; False when a reused session turned out dead
        before it began (the recipients are still pending)."""
        request = state.request
        peer = session.peer
        batch = [state.pending[i] for i in list(state.pending)]
        indexes = [r.index for r in batch]
        params: list[str] = []
        size = request.content.size
        if "SIZE" in session.features:
            limit = session.features["SIZE"]
            if limit.isdigit() and 0 < int(limit) < size:
                self._bounce_batch(state, indexes, "5.3.4", f"message size {size} exceeds "
                                   f"size limit {limit} of server {peer.name}", session)
                self._release(session, tls, key)
                return True
            params.append(f"SIZE={size}")
        addresses = [request.envelope.sender, *(r.address for r in batch)]
        if any(not a.isascii() for a in addresses):
            if "SMTPUTF8" not in session.features:
                self._bounce_batch(state, indexes, "5.6.7", "SMTPUTF8 is required, but was "
                                   f"not offered by host {peer.name}", session)
                self._release(session, tls, key)
                return True
            params.append("SMTPUTF8")
        started = self.clock()
        pipelined = "PIPELINING" in session.features
        try:
            data: Reply | None = None
            if pipelined:
                mail, rcpts, data = await session.pipelined(
                    request.envelope.sender, [r.address for r in batch], tuple(params),
                    rset=reused)
            else:
                mail, rcpts = await session.envelope(request.envelope.sender,
                                                     [r.address for r in batch], tuple(params))
            state.conn_use = session.transactions
            if not mail.positive:
                self._reply_failure(state, indexes, mail,
                                    self._said(peer, mail, "MAIL FROM"), peer, final)
                await self._end_pipelined(session, data)
                self._release(session, tls, key)
                return True
            accepted = []
            for recipient, reply in zip(batch, rcpts, strict=True):
                if reply.positive:
                    accepted.append(recipient.index)
                else:
                    self._reply_failure(state, [recipient.index], reply,
                                        self._said(peer, reply, "RCPT TO"), peer, final)
            if not accepted:
                await self._end_pipelined(session, data)
                self._release(session, tls, key)
                return True
            if data is None:
                data, done = await session.data(_content(request.content))
            elif data.code == 354:
                done = await session.send_content(_content(request.content))
            else:
                done = None
            if done is None:
                self._reply_failure(state, accepted, data, self._said(peer, data, "DATA"),
                                    peer, final)
            elif done.positive:
                for index in accepted:
                    state.settle(index, _Outcome("sent", done.dsn, str(done), relay=peer.relay,
                                                 remote_mta=peer.hostname,
                                                 diagnostic=str(done)))
            else:
                self._reply_failure(state, accepted, done,
                                    self._said(peer, done, "end of DATA"), peer, final)
        except StaleSession:
            session.close()
            return False
        except SmtpClientError as error:
            session.close()
            state.soft_fail([i for i in indexes if i in state.pending],
                            _Outcome("deferred", error.dsn, error.text, relay=peer.relay), final)
            return True
        except BaseException:
            # Anything else (the queue file cannot be read after DATA, a
            # cancellation): the session is in an unknown state, so it is
            # closed, neither cached nor left open, and the error goes up.
            session.close()
            raise
        finally:
            state.transfer_time = self.clock() - started
        self._release(session, tls, key)
        return True

    @staticmethod
    async def _end_pipelined(session: SmtpSession, data: Reply | None) -> None:
        """A pipelined DATA that got 354 although the transaction failed."""
        if data is not None and data.code == 354:
            await session.abandon_data()
            session.close()  # a server that says 354 to nobody gets no more mail now

    def _release(self, session: SmtpSession, tls: SessionTls, key: tuple[str, str]) -> None:
        """Cache the session for the next message, or say goodbye."""
        if session.broken or not self.cache.put(key, session, tls):
            task = asyncio.get_running_loop().create_task(session.quit())
            _background.add(task)
            task.add_done_callback(_background.discard)

    # -- outcomes -------------------------------------------------------------------------
    @staticmethod
    def _bounce_batch(state: _Delivery, indexes: list[int], dsn: str, text: str,
                      session: SmtpSession) -> None:
        """The message cannot go to this server in any form (too large, needs SMTPUTF8)."""
        peer = session.peer
        for index in indexes:
            state.settle(index, _Outcome("bounced", dsn, text, relay=peer.relay,
                                         remote_mta=peer.hostname))

    @staticmethod
    def _said(peer: Peer, reply: Reply, command: str) -> str:
        return f"host {peer.name} said: {reply} (in reply to {command} command)"

    @staticmethod
    def _reply_failure(state: _Delivery, indexes: list[int], reply: Reply, text: str,
                       peer: Peer, final: bool, *, site_failure: bool = False,
                       force_soft: bool = False) -> None:
        dsn = reply.dsn
        if force_soft and dsn.startswith("5"):
            dsn = "4" + dsn[1:]
        outcome = _Outcome("bounced" if reply.permanent and not force_soft else "deferred",
                           dsn, text, relay=peer.relay, remote_mta=peer.hostname,
                           diagnostic=str(reply), site_failure=site_failure)
        if outcome.status == "bounced":
            for index in indexes:
                state.settle(index, outcome)
        else:
            state.soft_fail(indexes, outcome, final)

    @staticmethod
    def _session_failure(error: SmtpClientError, session: SmtpSession) -> _Outcome:
        return _Outcome("deferred", error.dsn, error.text, relay=session.peer.relay,
                        site_failure=session.greeting is None or not session.esmtp)

    @staticmethod
    def _fail_all(state: _Delivery, outcome: _Outcome) -> None:
        for index in list(state.pending):
            state.settle(index, outcome)

    def _results(self, state: _Delivery) -> list[DeliveryResult]:
        results = []
        for recipient in state.request.recipients:
            outcome = state.outcomes.get(recipient.index) or _Outcome(
                "deferred", "4.3.0", "delivery was not attempted")
            extra = {"feedback": SITE_FAILURE} if outcome.site_failure else {}
            results.append(DeliveryResult(
                recipient.index, outcome.status, outcome.dsn, outcome.text,
                relay=outcome.relay,
                conn_use=state.conn_use if outcome.relay != "none" else None,
                setup_time=state.setup_time, transfer_time=state.transfer_time,
                tls=state.tls if outcome.relay != "none" else None,
                remote_mta=outcome.remote_mta, diagnostic=outcome.diagnostic, extra=extra))
        return results


def _queued_for(request: DeliveryRequest) -> float:
    """How long the message waited before this attempt (Postfix's PREACTIVE_DELAY):
    the plaintext retry after a failed handshake needs minimal_backoff_time."""
    return (request.attempt_started - request.envelope.arrival
            if request.attempt_started else 0.0)


class _PlaintextRetry(Exception):
    """The TLS plan asked for the same server again, in plaintext."""


_background: set[asyncio.Task[None]] = set()


async def _content(source: ContentSource) -> AsyncIterator[bytes]:
    """The queued content without blocking the loop on the disk."""
    if source.size <= 1 << 20:
        yield await source.read_all()
        return
    loop = asyncio.get_running_loop()
    chunks = source.chunks()
    while (chunk := await loop.run_in_executor(None, next, chunks, None)) is not None:
        yield chunk
