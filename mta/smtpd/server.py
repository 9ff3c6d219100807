"""smtpd listeners: sockets, per-client connection limits, and what sessions share.

Each listener (smtp, submission, submissions, …) has its own configuration
view (main.cf plus its service overrides) and runs on the daemon's event
loop through ``loop.create_server``, never aiosmtpd's threaded Controller.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from prometheus_client import Counter, Gauge

from mta import log as maillog
from mta.config import Config, ListenerSpec
from mta.metrics import REGISTRY
from mta.queuefile import Envelope
from mta.smtpd import replies
from mta.smtpd.checks import ClientFacts, Restrictions, client_ip
from mta.smtpd.rates import ClientRates
from mta.smtpd.security import ListenerSecurity
from mta.smtpd.space import FreeSpace
from mta.spool import Spool

log = logging.getLogger(__name__)

CONNECTIONS = Counter("mta_smtpd_connections", "SMTP connections accepted.",
                      ["listener"], registry=REGISTRY)
SESSIONS = Gauge("mta_smtpd_sessions", "SMTP sessions open now.", ["listener"],
                 registry=REGISTRY)
MESSAGES = Counter("mta_smtpd_messages_received", "Messages accepted and queued.",
                   ["listener"], registry=REGISTRY)
MESSAGE_BYTES = Counter("mta_smtpd_message_bytes_received",
                        "Bytes of accepted messages, as queued.", ["listener"],
                        registry=REGISTRY)
REJECTS = Counter("mta_smtpd_rejects", "Commands rejected by policy or limits.",
                  ["listener", "command", "code"], registry=REGISTRY)
CONNECTION_LIMITS = Counter("mta_smtpd_connection_limit_refusals",
                            "Connections refused with 421 by a connection limit.",
                            ["listener", "limit"], registry=REGISTRY)
STRESS = Gauge("mta_smtpd_stress",
               "1 while the listener is under stress (it reached "
               "smtpd_client_connection_limit), else 0.", ["listener"], registry=REGISTRY)
WRITE_ERRORS = Counter("mta_smtpd_queue_write_errors",
                       "Messages refused because the queue file could not be written.",
                       ["listener"], registry=REGISTRY)


class Anvil(Protocol):
    """The one place that counts connections when receiver workers share a
    listener (the master, like Postfix's anvil(8) server)."""

    async def admit(self, address: str, total_limit: int, client_limit: int,
                    rate_limit: int) -> tuple[str, int]: ...

    def ask(self, address: str, total_limit: int, client_limit: int,
            rate_limit: int) -> asyncio.Future[tuple[str, int]]: ...

    def release(self, address: str) -> None: ...

    async def event(self, address: str, event: str, count: bool) -> int: ...


@dataclass(eq=False)
class Slot:
    """One admitted session's place in the connection counts.

    ``counted`` is the master's answer when the session did not wait for it
    (see ConnectionRegistry.admit): until it says ``ok`` the master has not
    counted the session, and there is nothing to give back to it.
    """

    address: str
    counted: asyncio.Future[tuple[str, int]] | None = None
    released: bool = False


def decide(total: int, count: int, total_limit: int, client_limit: int,
           rate: int = 0, rate_limit: int = 0) -> str:
    """``ok``, or which limit a new connection would exceed: ``total`` (the
    listener's), ``client`` (one client address's open connections) or
    ``rate`` (its connections in this time unit, this one included); a
    limit of 0 is none. Postfix's smtpd checks the count before the rate."""
    if total >= total_limit:
        return "total"
    if client_limit and count >= client_limit:
        return "client"
    if rate_limit and rate > rate_limit:
        return "rate"
    return "ok"


class ConnectionRegistry:
    """Counts open connections per client address and in total (Postfix's anvil).

    In one process the counts are here. With receiver worker processes the
    master counts for all of them (``anvil``): a new connection asks it and
    waits for the answer before the greeting, so a limit is exactly one
    limit for the whole listener, as Postfix's smtpd processes ask anvil(8).
    A client exempt from the per-client limit (smtpd_client_event_limit_
    exceptions, $mynetworks by default; Postfix's smtpd does not ask anvil
    about them at all) is greeted without waiting: only the listener's total
    can refuse it, the master still counts it, and if the answer, a
    millisecond or so later, says the total is full, the session is ended
    with the same 421. The round trip was 2 ms of a 7 ms session set-up
    under load (docs/performance.md). The local counts remain for draining
    at shutdown.
    """

    def __init__(self, config: Config, rate_time_unit: float | None = None,
                 rates: ClientRates | None = None) -> None:
        self.config = config
        # anvil_rate_time_unit is anvil's, one for the whole daemon as in
        # Postfix (a listener's -o is ignored, and warned of at load): the
        # main.cf value, which the master's count uses with workers too.
        self.rate_time_unit = (config.anvil_rate_time_unit if rate_time_unit is None
                               else rate_time_unit)
        self.per_client: dict[str, int] = {}
        self.total = 0
        self.anvil: Anvil | None = None
        # Without an anvil (one process): shared by the listeners of the
        # process (master.Receiver), keyed by listener and client address.
        self.rates = rates if rates is not None else ClientRates()
        # Stress (docs/smtpd.md "Stress"): decided here in one process, by
        # the master with workers (set_stress). The live sessions are known
        # so that the stress timeouts reach them at once.
        self.stressed = False
        self.service = "smtp"  # the listener's name, for the stress lines
        self.shutting_down = False  # the daemon stops (shut_down)
        self.sessions: set[StressAware] = set()
        self.drained = asyncio.Event()
        self.drained.set()

    @property
    def limits(self) -> Config:
        """The configuration the sessions' stress-dependent limits come from
        (smtpd_timeout, smtpd_hard_error_limit, ...): the listener's, with
        stress = yes while the listener is under stress."""
        return self.config.under_stress() if self.stressed else self.config

    def shut_down(self) -> None:
        """The daemon is stopping: every session ends at its next wait for a
        command outside a transaction (SmtpdProtocol.shutting_down), and one
        admitted from now on at once."""
        self.shutting_down = True
        for session in list(self.sessions):
            session.shutting_down()

    def set_stress(self, on: bool) -> None:
        if on == self.stressed:
            return
        self.stressed = on
        if on:
            for session in list(self.sessions):
                session.stress_began()

    def exempt(self, address: str) -> bool:
        """In smtpd_client_event_limit_exceptions: no per-client limit or
        rate applies (Postfix's smtpd does not ask anvil about it)."""
        ip = client_ip(address)
        if ip is None:
            return False
        return any(ip.version == net.version and ip in net
                   for net in self.config.smtpd_client_event_limit_exceptions)

    async def admit(self, address: str, peer: str, service: str,
                    refuse_later: Callable[[str], None] | None = None) -> Slot | str:
        """The session's Slot when the connection is admitted (and counted),
        else the 421 reply. With refuse_later, a client that only the
        listener's total can refuse is admitted at once, and refuse_later
        gets the 421 if the master's count then says no."""
        config = self.config
        total_limit = config.smtpd_client_connection_limit
        client_limit = config.smtpd_client_connection_count_limit
        rate_limit = config.smtpd_client_connection_rate_limit
        if (client_limit or rate_limit) and self.exempt(address):
            client_limit = rate_limit = 0
        if self.anvil is None:
            mine = self.per_client.get(address, 0)
            # As Postfix's anvil: a client it is asked about is counted for
            # its rate too (the statistics show it), whichever limit is set.
            rate = 0
            if client_limit or rate_limit:
                rate = self.rates.event(service, address, "connection", self.rate_time_unit)
                # anvil counts every connect, a refused one too.
                self.rates.connections(service, address, mine + 1)
            verdict = decide(self.total, mine, total_limit, client_limit, rate, rate_limit)
            count = {"total": self.total, "rate": rate}.get(verdict, mine)
        elif not client_limit and not rate_limit and refuse_later is not None:
            slot = self._take(address)
            slot.counted = self.anvil.ask(address, total_limit, client_limit, 0)
            slot.counted.add_done_callback(
                functools.partial(self._counted, slot, peer, service, refuse_later))
            return slot
        else:
            verdict, count = await self.anvil.admit(address, total_limit, client_limit,
                                                    rate_limit)
        refusal = self._refusal(verdict, count, address, peer, service)
        return refusal if refusal is not None else self._take(address)

    def _take(self, address: str) -> Slot:
        self.per_client[address] = self.per_client.get(address, 0) + 1
        self.total += 1
        self.drained.clear()
        return Slot(address)

    def _refusal(self, verdict: str, count: int, address: str, peer: str,
                 service: str) -> str | None:
        host = self.config.myhostname
        if verdict == "total":
            maillog.warning("smtpd", f"Connection limit exceeded: {count + 1} "
                            f"for service {service}")
            CONNECTION_LIMITS.labels(service, "total").inc()
            if self.anvil is None and not self.stressed:  # else the master's decision
                self.service = service
                stress_began(service, self.config.smtpd_client_connection_limit)
                self.set_stress(True)
            return replies.SERVER_BUSY.format(host=host)
        if verdict == "client":
            maillog.warning("smtpd", f"Connection concurrency limit exceeded: {count + 1} "
                            f"from {peer} for service {service}")
            CONNECTION_LIMITS.labels(service, "client").inc()
            return replies.TOO_MANY_CONNECTIONS.format(host=host, address=address)
        if verdict == "rate":
            maillog.warning("smtpd", f"Connection rate limit exceeded: {count} "
                            f"from {peer} for service {service}")
            CONNECTION_LIMITS.labels(service, "rate").inc()
            return replies.TOO_MANY_CONNECTIONS.format(host=host, address=address)
        return None

    async def event_rate(self, address: str, event: str, count: bool = True) -> int:
        """The client's rate of event (rates.LIMITS) in this time unit, this
        one included when count: the master's, or this process's own."""
        if self.anvil is not None:
            return await self.anvil.event(address, event, count)
        return self.rates.event(self.service, address, event, self.rate_time_unit, count)

    def _counted(self, slot: Slot, peer: str, service: str,
                 refuse_later: Callable[[str], None],
                 answer: asyncio.Future[tuple[str, int]]) -> None:
        """The master's answer for a session that did not wait for it."""
        if answer.cancelled():
            return
        if _counted_by_master(answer):
            if slot.released and self.anvil is not None:
                self.anvil.release(slot.address)  # it ended before the answer came
            return
        verdict, count = answer.result()
        refusal = self._refusal(verdict, count, slot.address, peer, service)
        if refusal is not None and not slot.released:
            refuse_later(refusal)

    def release(self, slot: Slot) -> None:
        """The session ended: give its place back (once)."""
        if slot.released:
            return
        slot.released = True
        address = slot.address
        count = self.per_client.get(address, 0) - 1
        if count > 0:
            self.per_client[address] = count
        else:
            self.per_client.pop(address, None)
        self.total = max(0, self.total - 1)
        if self.total == 0:
            self.drained.set()
        if self.stressed and self.anvil is None and stress_is_over(
                self.total, self.config.smtpd_client_connection_limit):
            stress_ended(self.service, self.config.smtpd_client_connection_limit, self.total)
            self.set_stress(False)
        if self.anvil is None:
            return
        if slot.counted is None or _counted_by_master(slot.counted):
            self.anvil.release(address)
        # Otherwise the master has not counted it (yet): _counted gives it
        # back if its answer turns out "ok".


class StressAware(Protocol):
    """A session, told when its listener comes under stress, and when the
    daemon stops."""

    def stress_began(self) -> None: ...

    def shutting_down(self) -> None: ...


def stress_began(service: str, limit: int) -> None:
    """The listener reached smtpd_client_connection_limit: Postfix's master
    words for a service at its process limit, and what changes now (logged
    and shown by whoever decides: the master, or the one receiver)."""
    STRESS.labels(service).set(1)
    maillog.warning("master", f'service "{service}" has reached its connection limit '
                    f'"{limit}": new clients are refused until sessions end')
    maillog.warning("master", "to avoid this condition, increase "
                    "smtpd_client_connection_limit or reduce the service time per client; "
                    "until then the stress-dependent settings apply (stress = yes)")


def stress_is_over(total: int, limit: int) -> bool:
    """Stress ends once the sessions are below three quarters of the limit,
    not at the first one that ends: else every refusal would switch it on
    and the next session's end off again."""
    return total * 4 < limit * 3


def stress_ended(service: str, limit: int, total: int) -> None:
    STRESS.labels(service).set(0)
    maillog.info("master", f'service "{service}": stress is over: {total} of {limit} '
                 "connections")


def _counted_by_master(answer: asyncio.Future[tuple[str, int]]) -> bool:
    return answer.done() and not answer.cancelled() and answer.result()[0] == "ok"


class NameCache:
    """Forward-confirmed reverse DNS of clients, cached briefly (Postfix logs
    ``unknown[ip]`` when the names do not agree)."""

    def __init__(self, enabled: bool, ttl: float = 60.0, timeout: float = 5.0) -> None:
        self.enabled = enabled
        self.ttl = ttl
        self.timeout = timeout
        self._cache: dict[str, tuple[float, str]] = {}

    async def lookup(self, address: str) -> str:
        if not self.enabled:
            return "unknown"
        now = time.monotonic()
        cached = self._cache.get(address)
        if cached and cached[0] > now:
            return cached[1]
        try:
            name = await asyncio.wait_for(self._resolve(address), self.timeout)
        except (TimeoutError, OSError, UnicodeError):
            name = "unknown"
        if len(self._cache) > 10000:
            self._cache.clear()
        self._cache[address] = (now + self.ttl, name)
        return name

    async def _resolve(self, address: str) -> str:
        loop = asyncio.get_running_loop()
        name, _ = await loop.getnameinfo((address, 0), socket.NI_NAMEREQD)
        infos = await loop.getaddrinfo(name, None, type=socket.SOCK_STREAM)
        if any(info[4][0] == address for info in infos):
            return name
        return "unknown"


@dataclass
class SmtpdContext:
    """Everything the sessions of one listener share."""

    config: Config
    listener: ListenerSpec
    spool: Spool
    restrictions: Restrictions
    connections: ConnectionRegistry
    names: NameCache
    on_queued: Callable[[Envelope], None]
    loop: asyncio.AbstractEventLoop
    local_addresses: set[str] = field(default_factory=set)
    extras: dict[str, object] = field(default_factory=dict)
    security: ListenerSecurity | None = None  # TLS and AUTH (smtpd/security.py)

    async def client_name(self, address: str) -> str:
        return await self.names.lookup(address)

    def adds_missing_headers(self, client: ClientFacts) -> bool:
        """Whether Date and Message-ID are added when missing (Postfix's
        always_add_missing_headers and local_header_rewrite_clients)."""
        if self.config.always_add_missing_headers:
            return True
        for rule in self.config.local_header_rewrite_clients:
            rule = rule.lower()
            if rule == "static:all":
                return True
            if rule == "permit_inet_interfaces" and self._is_local(client.address):
                return True
            if rule == "permit_mynetworks" and self.restrictions.in_mynetworks(client.address):
                return True
            if rule == "permit_sasl_authenticated" and client.sasl_username:
                return True
        return False

    def _is_local(self, address: str) -> bool:
        ip = client_ip(address)
        if ip is None:
            return False
        return ip.is_loopback or address in self.local_addresses

    @functools.cached_property
    def free_space(self) -> FreeSpace:
        """The spool's free space for queue_minfree (smtpd/space.py)."""
        return FreeSpace.of(self.spool)

    @functools.cached_property
    def _counted(self) -> dict[str, Any]:
        """The listener's own children of the per-listener metrics, looked up
        once (labels() takes a lock and builds a key on every call)."""
        name = self.listener.name
        return {"messages": MESSAGES.labels(name), "bytes": MESSAGE_BYTES.labels(name),
                "connections": CONNECTIONS.labels(name), "sessions": SESSIONS.labels(name)}

    def queued(self, envelope: Envelope) -> None:
        self._counted["messages"].inc()
        self._counted["bytes"].inc(envelope.size)
        self.on_queued(envelope)

    def metrics_connection(self) -> None:
        self._counted["connections"].inc()
        self._counted["sessions"].inc()

    def metrics_disconnect(self) -> None:
        self._counted["sessions"].dec()

    def metrics_reject(self, command: str, code: str) -> None:
        REJECTS.labels(self.listener.name, command, code).inc()

    def metrics_write_error(self) -> None:
        WRITE_ERRORS.labels(self.listener.name).inc()


class SmtpdServer:
    """One listening socket and its sessions."""

    def __init__(self, ctx: SmtpdContext,
                 protocol_factory: Callable[[SmtpdContext], asyncio.Protocol] | None = None
                 ) -> None:
        self.ctx = ctx
        self._factory = protocol_factory
        self._server: asyncio.AbstractServer | None = None
        self.port = ctx.listener.address.port

    async def start(self, sock: socket.socket | None = None) -> None:
        from mta.smtpd.secure import SecureSmtpdProtocol

        factory = self._factory or SecureSmtpdProtocol
        loop = self.ctx.loop
        await self.ctx.free_space.start()  # measured before the first MAIL, then each second
        address = self.ctx.listener.address
        if sock is not None:
            self._server = await loop.create_server(lambda: factory(self.ctx), sock=sock,
                                                    backlog=1024)
        else:
            self._server = await loop.create_server(
                lambda: factory(self.ctx), host=address.host or None, port=address.port,
                reuse_address=True, backlog=1024)
        sockets = self._server.sockets or ()
        if sockets:
            self.port = sockets[0].getsockname()[1]
            for s in sockets:
                self.ctx.local_addresses.add(s.getsockname()[0])

    def stop_accepting(self) -> None:
        if self._server is not None:
            self._server.close()
        self.ctx.free_space.stop()

    async def wait_closed(self) -> None:
        if self._server is not None:
            await self._server.wait_closed()
