"""master: the one wiring place. Builds every part from the configuration,
runs them on one event loop, and handles SIGTERM (drain, exit 0) and SIGHUP
(reload the configuration and reopen the maillog).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import socket
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

from mta import config as configuration
from mta import log as maillog
from mta import pidfile
from mta.bounce import SpoolBouncer
from mta.concurrency import FeedbackDestination
from mta.config import Config
from mta.delivery import DeliveryAgent
from mta.error_transport import ErrorDelivery, RetryDelivery
from mta.errors import ConfigError
from mta.local import LocalDelivery
from mta.mailboxes import Mailboxes
from mta.metrics import REGISTRY, MetricsServer
from mta.qmgr import Destination, QueueManager
from mta.resolver import DnspythonBackend, Resolver
from mta.routing import Router
from mta.sasl import FailureTracker
from mta.smtp import tlshook
from mta.smtp.agent import SmtpDelivery
from mta.smtpd.checks import Restrictions
from mta.smtpd.rates import ClientRates
from mta.smtpd.security import ListenerSecurity, build_security
from mta.smtpd.server import ConnectionRegistry, NameCache, SmtpdContext, SmtpdServer
from mta.spool import Spool
from mta.tls import certs, expiry
from mta.tls.clientcert import relay_clientcerts_lookup
from mta.workers import BIND_RETRY, MergedRegistry, Supervisor

log = logging.getLogger(__name__)
T = TypeVar("T")


def setup_maillog(config: Config) -> None:
    logfile = config.maillog_file
    maillog.setup(syslog_name=config.syslog_name, hostname=config.myhostname,
                  maillog_file=str(config.path_of(logfile)) if logfile else None,
                  stderr=config.maillog_stderr,
                  resolution=config.delay_logging_resolution_limit)


def prepare_certificates(config: Config) -> None:
    """The embedded default's self-signed certificate, made once (and logged)."""
    if not (config.tls_self_signed_on_first_start and config.smtpd_tls_cert_file):
        return
    cert = config.path_of(config.smtpd_tls_cert_file)
    key = config.path_of(config.smtpd_tls_key_file or config.smtpd_tls_cert_file)
    if certs.ensure_self_signed(cert, key, config.myhostname):
        maillog.info("master", f"created a self-signed certificate for {config.myhostname} "
                     f"in {cert} (key in {key})")


@dataclass
class Parts:
    """What a configuration builds; replaced as a whole on reload."""

    mailboxes: Mailboxes
    restrictions: Restrictions
    router: Router


def build_parts(config: Config, warn: bool = True) -> Parts:
    mailboxes = Mailboxes.from_config(config)
    restrictions = Restrictions(config, mailboxes,
                                relay_clientcerts=relay_clientcerts_lookup(config))
    if warn:
        for warning in restrictions.warnings:
            maillog.warning("master", warning)
    return Parts(mailboxes, restrictions, Router(config, mailboxes))


def build_listener_security(config: Config, tracker: FailureTracker, warn: bool = True
                            ) -> dict[str, ListenerSecurity]:
    """TLS contexts and AUTH of every listener; ConfigError if any is unusable."""
    built = {}
    for listener in config.listeners:
        security, warnings = build_security(config.for_listener(listener), tracker)
        for warning in warnings if warn else ():
            maillog.warning("master", f"service {listener.name}: {warning}")
        built[listener.name] = security
    return built


def check_listeners(config: Config) -> None:
    """Build what every listener builds (TLS, AUTH, the restrictions of a
    listener with overrides of its own) and log its warnings, once: the
    receivers, in this process or in the workers, build theirs silently, so
    a warning is not repeated by every process nor at every reload of each.
    ConfigError if anything is unusable."""
    build_listener_security(config, FailureTracker())
    for listener in config.listeners:
        view = config.for_listener(listener)
        if view is not config:
            build_parts(view)
        if "anvil_rate_time_unit" in listener.overrides:
            # One anvil for all listeners, as in Postfix, where anvil reads
            # main.cf and a -o on smtpd never reaches it.
            maillog.warning("master", f"{listener.name}: anvil_rate_time_unit is a main.cf "
                            "parameter (one for all listeners); the listener's value "
                            "is ignored")


def build_smtp_agent(config: Config) -> SmtpDelivery:
    """The smtp transport: resolver per smtp_host_lookup, TLS policy, connection cache."""
    resolver = Resolver(config.smtp_host_lookup,
                        dns=DnspythonBackend(timeout=config.smtp_dns_timeout),
                        preference=config.smtp_address_preference)
    tls_policy = tlshook.default_policy(config)
    for warning in getattr(tls_policy, "warnings", []):
        maillog.warning("master", warning)
    return SmtpDelivery(config, resolver, tls_policy=tls_policy)


def destination(config: Config, key: tuple[str, str], limit: int) -> Destination:
    """Per-destination concurrency with slow start and dead-destination suspension."""
    return FeedbackDestination(key, limit, initial=config.initial_destination_concurrency,
                               cohort_limit=config.destination_concurrency_failed_cohort_limit,
                               suspend_for=config.minimal_backoff_time)


class Receiver:
    """The smtpd listeners of one process: in the master, or in each worker."""

    def __init__(self, config: Config, *, on_queued: Callable[[str], None],
                 spool: Spool | None = None, lane: int = 0,
                 sockets: dict[str, socket.socket] | None = None) -> None:
        self.config = config
        self.on_queued = on_queued
        self.spool = spool or Spool(config.path_of(config.queue_directory), lane=lane)
        self._own_spool = spool is None
        self.sockets = sockets or {}
        self.sasl_failures = FailureTracker()
        self.servers: list[SmtpdServer] = []
        # The client counts and rates of all listeners (one process only; with
        # workers the master's Supervisor keeps them), anvil's statistics too.
        self.rates = ClientRates()

    async def start(self) -> None:
        config = self.config
        loop = asyncio.get_running_loop()
        # The master logged their warnings (check_listeners).
        security = build_listener_security(config, self.sasl_failures, warn=False)
        parts = build_parts(config, warn=False)
        for listener in config.listeners:
            view = config.for_listener(listener)
            view_parts = parts if view is config else build_parts(view, warn=False)
            ctx = SmtpdContext(
                config=view, listener=listener, spool=self.spool,
                restrictions=view_parts.restrictions,
                connections=ConnectionRegistry(view, config.anvil_rate_time_unit, self.rates),
                names=NameCache(view.smtpd_peername_lookup),
                on_queued=lambda envelope: self.on_queued(envelope.qid), loop=loop,
                security=security[listener.name])
            ctx.connections.service = listener.name
            server = SmtpdServer(ctx)
            sock = self.sockets.get(listener.name)
            await server.start(sock=sock)
            self.servers.append(server)
            if sock is None:
                maillog.info("master", f"listening on {listener.address} for service "
                             f"{listener.name}")

    def prepare(self, new: Config) -> ListenersBuild:
        """Build what the listeners need from a new configuration: maps,
        restrictions, certificates and keys. It reads files and does key
        work, so reloads call it in a thread (load_in_thread), never on the
        event loop; ConfigError if anything cannot be built."""
        parts = build_parts(new, warn=False)
        security = build_listener_security(new, self.sasl_failures, warn=False)
        restrictions = {}
        for listener in new.listeners:
            view = new.for_listener(listener)
            restrictions[listener.name] = (view, (parts if view is new else
                                                  build_parts(view, warn=False)).restrictions)
        return ListenersBuild(new, restrictions, security)

    def apply(self, build: ListenersBuild) -> None:
        """Switch the listeners to a prepared configuration (on the loop: only
        assignments). New sessions get it; open ones keep what they have."""
        for server in self.servers:
            name = server.ctx.listener.name
            if name not in build.restrictions:
                maillog.warning("master", f"service {name} removed from "
                                "main.cf; it keeps running until restart")
                continue
            view, restrictions = build.restrictions[name]
            server.ctx.config = view
            server.ctx.restrictions = restrictions
            server.ctx.connections.config = view
            server.ctx.connections.rate_time_unit = build.config.anvil_rate_time_unit
            server.ctx.security = build.security[name]
        self.config = build.config

    async def shutdown(self, grace: float | None = None) -> None:
        """Stop accepting and let open sessions finish what they are doing
        (up to smtpd_timeout, or grace seconds): a session waiting for a
        command is closed with a 421 at once, one in a command (DATA, a TLS
        handshake) when that command is done."""
        for server in self.servers:
            server.stop_accepting()
            server.ctx.connections.shut_down()
        for server in self.servers:
            await server.wait_closed()
        await _wait_sessions(self.servers, timeout=self.config.smtpd_timeout
                             if grace is None else grace)
        if self._own_spool:
            self.spool.close()


@dataclass
class ListenersBuild:
    """A configuration's listener parts, built off the event loop (Receiver.prepare)."""

    config: Config
    restrictions: dict[str, tuple[Config, Restrictions]]  # listener: (its view, its rules)
    security: dict[str, ListenerSecurity]


async def load_in_thread(lock: asyncio.Lock | None, build: Callable[[], T],
                         program: str = "master") -> T | None:
    """Run a reload's build in a thread, one reload at a time (lock, FIFO);
    None, with the reload-failed warning, when the configuration is unusable.

    Reading main.cf, the maps, the CA bundle and the keys took 50-270 ms,
    during which the event loop served no session; now the loop only swaps
    the built parts in afterwards."""
    async with lock or contextlib.nullcontext():
        try:
            return await asyncio.to_thread(build)
        except ConfigError as error:
            maillog.warning(program, f"reload failed, keeping the running configuration: "
                            f"{error}")
            return None


@dataclass
class _Reload:
    """What Daemon.reload builds in a thread before switching over."""

    config: Config
    parts: Parts
    tls_policy: tlshook.TlsPolicy
    key_warnings: list[str]
    listeners: ListenersBuild | None


@dataclass
class Daemon:
    config: Config
    spool: Spool = field(init=False)
    qmgr: QueueManager = field(init=False)
    receiver: Receiver | None = None
    workers: Supervisor | None = None
    metrics: MetricsServer | None = None
    certificates: expiry.CertificateWatch | None = None
    _stop: asyncio.Event = field(default_factory=asyncio.Event)
    _reload_lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    _reloads: set[asyncio.Task[None]] = field(default_factory=set)
    _statistics: asyncio.Task[None] | None = None
    # How long a bind waits for a killed master's workers to let go of a port
    # (0 when the last master stopped cleanly: no worker of ours can hold it).
    bind_retry: float = BIND_RETRY

    async def start(self) -> None:
        config = self.config
        prepare_certificates(config)
        self.certificates = expiry.CertificateWatch(config)
        self.certificates.start()  # a key that cannot be opened stops the start
        try:
            # Built here once even with workers, so a bad certificate or
            # password file stops the start instead of failing in each worker.
            check_listeners(config)
        except ConfigError as error:
            maillog.fatal("master", str(error))
            raise
        self.spool = Spool(config.path_of(config.queue_directory), lane=0)
        parts = build_parts(config)
        self.smtp = build_smtp_agent(config)
        agents: dict[str, DeliveryAgent] = {"local": LocalDelivery(parts.mailboxes, self.spool),
                                            "smtp": self.smtp, "error": ErrorDelivery(),
                                            "retry": RetryDelivery()}
        self.bouncer = SpoolBouncer(config, self.spool, lambda qid: self.qmgr.queued(qid))
        self.qmgr = QueueManager(config, self.spool, parts.router, agents, bouncer=self.bouncer,
                                 destination_factory=lambda key, limit: destination(
                                     self.config, key, limit))
        self._agents = agents
        await self.qmgr.start()
        if config.receiver_processes:
            self.workers = Supervisor(config, config.receiver_processes, self.qmgr.queued,
                                      bind_retry=self.bind_retry)
            await self.workers.start()
        else:
            self.receiver = Receiver(config, on_queued=self.qmgr.queued, spool=self.spool)
            await self.receiver.start()
        if config.metrics_listen:
            from mta.config.types import parse_hostport
            where = parse_hostport(config.metrics_listen)
            registry = (MergedRegistry(REGISTRY, self.workers.samples) if self.workers
                        else REGISTRY)
            self.metrics = MetricsServer(where.host, where.port, registry,
                                         self.workers.refresh if self.workers else None)
            await self.metrics.start()
        self._statistics = asyncio.ensure_future(self._report_statistics())
        maillog.info("master", f"daemon started -- version {_version()}, configuration "
                     f"{config.path}")

    @property
    def rates(self) -> ClientRates:
        """Where the clients' counts and rates are kept (anvil's table)."""
        if self.workers is not None:
            return self.workers.rates
        assert self.receiver is not None
        return self.receiver.rates

    def _log_statistics(self) -> None:
        for line in self.rates.statistics(self.config.anvil_rate_time_unit):
            maillog.info("anvil", line)

    async def _report_statistics(self) -> None:
        """anvil's statistics every anvil_status_update_time, when there is
        anything to report, and once more at stop (Postfix's anvil reports
        when it exits on its own, idle, but not when its master stops it)."""
        while True:
            await asyncio.sleep(self.config.anvil_status_update_time)
            self._log_statistics()

    def reload(self) -> asyncio.Task[None]:
        """SIGHUP: re-read main.cf (in a thread) and switch over; on error
        keep running with the old one."""
        if self.workers is not None:
            self.workers.signal(signal.SIGHUP)  # they reopen the maillog (logrotate)
        task = asyncio.ensure_future(self._reload())
        self._reloads.add(task)  # referenced until done (the loop keeps only weak ones)
        task.add_done_callback(self._reloads.discard)
        return task

    def _build_reload(self, path: str) -> _Reload:
        """Everything a reload reads and builds (in a thread)."""
        new = configuration.load(path)
        parts = build_parts(new)
        tls_policy = tlshook.default_policy(new)  # checks smtp_tls_policy_maps again
        key_warnings = expiry.check_keys(new)
        # Warnings once; a bad key or file stops the reload here.
        check_listeners(new)
        # The workers build their own.
        listeners = self.receiver.prepare(new) if self.receiver is not None else None
        return _Reload(new, parts, tls_policy, key_warnings, listeners)

    async def _reload(self) -> None:
        # One reload at a time from the build to the last worker's switch-over,
        # so that "reload -- configuration" is logged in order and when true.
        async with self._reload_lock:
            await self._reload_now()

    async def _reload_now(self) -> None:
        built = await load_in_thread(None, lambda: self._build_reload(self.config.path))
        if built is None:
            return
        new = built.config
        for warning in [*new.warnings, *built.key_warnings]:
            maillog.warning("master", warning)
        setup_maillog(new)
        parts = built.parts
        tls_policy = built.tls_policy
        if self.receiver is not None and built.listeners is not None:
            self.receiver.apply(built.listeners)
        switched = None
        if self.workers is not None:
            # The same text, whatever the file holds now; each worker builds
            # it in a thread of its own and says when it has switched.
            switched = asyncio.ensure_future(self.workers.reconfigure(new))
        self.qmgr.config = new
        self.qmgr.router = parts.router
        self.smtp.reconfigure(new)
        self.smtp.tls_policy = tls_policy  # the setter QUITs the idle cached connections
        self.bouncer.config = new
        local = self._agents.get("local")
        if isinstance(local, LocalDelivery):
            local.mailboxes = parts.mailboxes
        self.config = new
        if self.certificates is not None:
            await asyncio.to_thread(self.certificates.reload, new)  # reads every certificate
        if switched is not None:
            await switched  # the line below means every listener has it
        maillog.info("master", "reload -- configuration " + new.path)

    def request_stop(self) -> None:
        self._stop.set()

    async def abort(self) -> None:
        """Undo a start that failed half way (nothing was accepted yet)."""
        with contextlib.suppress(Exception):
            if self.receiver is not None:
                await self.receiver.shutdown()
            if self.workers is not None:
                await self.workers.stop(timeout=5)
            if hasattr(self, "qmgr"):
                await self.qmgr.stop(grace=5)
            if hasattr(self, "smtp"):
                await self.smtp.close()
            if self.certificates is not None:
                await self.certificates.stop()

    async def serve(self) -> None:
        await self._stop.wait()
        await self.shutdown()

    async def shutdown(self) -> None:
        """Stop accepting, let open sessions finish, stop the qmgr, exit 0."""
        maillog.info("master", "terminating on signal 15")
        if self.receiver is not None:
            await self.receiver.shutdown()
        if self.workers is not None:
            await self.workers.stop(timeout=self.config.smtpd_timeout + 5)
        if self._statistics is not None:
            self._statistics.cancel()
            self._log_statistics()
        await self.qmgr.stop()
        await self.smtp.close()
        if self.certificates is not None:
            await self.certificates.stop()
        if self.metrics is not None:
            await self.metrics.close()
        self.spool.close()


async def _wait_sessions(servers: list[SmtpdServer], timeout: float) -> None:
    events = [server.ctx.connections.drained for server in servers]
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(asyncio.gather(*(e.wait() for e in events)), timeout)


def _version() -> str:
    from mta import __version__
    return __version__


async def run(config: Config, *, bind_retry: float = BIND_RETRY) -> int:
    daemon = Daemon(config, bind_retry=bind_retry)
    loop = asyncio.get_running_loop()
    try:
        await daemon.start()
    except OSError as error:
        # A port in use, a spool we may not write: say so plainly and stop.
        text = f"cannot start: {error.strerror or error}"
        if error.filename:
            text += f": {error.filename}"
        elif "address" in str(error):
            text = f"cannot start: {error}"
        maillog.fatal("master", text)
        sys.stderr.write(f"mta: fatal: {text}\n")
        await daemon.abort()
        return 1
    loop.add_signal_handler(signal.SIGTERM, daemon.request_stop)
    loop.add_signal_handler(signal.SIGINT, daemon.request_stop)

    def reload() -> None:
        maillog.reopen()
        daemon.reload()

    loop.add_signal_handler(signal.SIGHUP, reload)
    await daemon.serve()
    return 0


def main(config_path: str) -> int:
    config = configuration.load(config_path)
    setup_maillog(config)
    logging.basicConfig(level=getattr(logging, config.debug_log_level.upper(), logging.WARNING),
                        format="%(asctime)s %(name)s %(levelname)s: %(message)s")
    logging.getLogger("mail.log").setLevel(logging.WARNING)  # aiosmtpd's chatter
    for warning in config.warnings:
        maillog.warning("master", warning)
    queue_directory = config.path_of(config.queue_directory)
    Path(queue_directory).mkdir(parents=True, exist_ok=True)
    lock = pidfile.MasterLock(queue_directory)
    try:
        lock.acquire()  # before anything touches the spool: one master per spool
    except pidfile.AlreadyRunning:
        text = "the Postern mail system is already running"
        maillog.fatal("master", text)
        sys.stderr.write(f"mta: fatal: {text} ({lock.path} is locked)\n")
        return 1
    # Held until the process exits (the kernel drops the lock with the
    # descriptor), so `mta stop --wait` returns only when nothing is left.
    code = asyncio.run(run(config, bind_retry=BIND_RETRY if lock.unclean else 0.0))
    lock.clear()  # every worker has stopped: the next start need not wait for one
    return code
