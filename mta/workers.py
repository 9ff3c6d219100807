"""Receiver worker processes: smtpd on several cores, one queue manager.

One asyncio process saturates one core receiving mail (a Python SMTP
session costs far more CPU than Postfix's), while the queue manager and the
delivery agents want the other. With ``receiver_processes = N`` the master
binds the listening sockets, starts N worker processes that accept on those
same sockets, and keeps qmgr, delivery, bounce and metrics for itself, as
Postfix's master runs smtpd processes beside one qmgr.

Why inherited sockets and not SO_REUSEPORT: with SO_REUSEPORT each worker
has its own accept queue, and the connections waiting in the queue of a
worker that dies are reset; one shared socket loses nothing when a worker is
restarted, and the kernel hands each connection to whichever worker is idle.

Workers are fresh interpreters (``python -m mta.workers``), not forks of the
running master, so no event loop or thread state crosses a fork. Each talks to
the master over one SOCK_SEQPACKET socketpair: ``Q<qid>`` when a message is
queued (the qmgr takes it at once, no directory scan), ``M<json>`` with the
worker's metric samples every second, ``F``/``S`` for AUTH failures and
successes (relayed to the other workers), and the connection counts:
``A<serial> listener address limits`` before each greeting, answered by the
master's ``a<serial> verdict count``, and ``R listener address`` when a
session ends (the master is the one anvil for all workers); ``V<serial>
listener address event count`` asks for a client's rate of MAIL, RCPT, AUTH
or new TLS sessions, answered ``a<serial> ok rate``; ``T listener 1|0``
from the master says a listener is (no longer) under stress. A worker notices
the master's death by EOF on that socket and exits; the master restarts a
worker that dies, with a delay, like Postfix's master does.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import errno
import json
import os
import signal
import socket
import sys
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from prometheus_client import CollectorRegistry
from prometheus_client.samples import Sample

from mta import log as maillog
from mta.config import Config, ListenerSpec
from mta.metrics import REGISTRY
from mta.smtpd.rates import ClientRates
from mta.smtpd.server import decide, stress_began, stress_ended, stress_is_over

_SNAPSHOT_INTERVAL = 1.0
_RESTART_DELAY = 1.0
_ORPHAN_GRACE = 5.0
BIND_RETRY = 10.0  # how long a bind waits for a killed master's workers
_ANVIL_TIMEOUT = 5.0  # then a new session is served uncounted (Postfix: the same)
# Messages the master keeps for a worker that does not read them: a worker
# this far behind is stuck (each session of it asks and waits), and is
# killed to be restarted, as Postfix's watchdog ends a stuck process. Its
# accepted mail is on disk; only its open sessions end.
_OUTBOX_LIMIT = 10_000


class Outbox:
    """Messages over one end of the master-worker channel (non-blocking
    SEQPACKET), in order. What the other end's full buffer cannot take yet
    waits, and a writer callback sends it when that end reads again; the
    master and each worker use one each, for what must not be lost (a lost
    connection count would hold a session or leak its slot)."""

    def __init__(self, channel: socket.socket) -> None:
        self.channel = channel
        self._waiting: deque[bytes] = deque()

    def __len__(self) -> int:
        return len(self._waiting)

    def send(self, message: bytes, keep: bool = True) -> bool:
        """Send message now, or (keep) once the channel takes it; False when
        it was not sent and will not be: dropped (not keep) or the other end
        is gone (the reader of this end sees its EOF)."""
        if not self._waiting:
            try:
                self.channel.send(message)
                return True
            except BlockingIOError:
                pass
            except OSError:
                return False
        if not keep:
            return False
        if not self._waiting:
            asyncio.get_running_loop().add_writer(self.channel.fileno(), self._drain)
        self._waiting.append(message)
        return True

    def _drain(self) -> None:
        while self._waiting:
            try:
                self.channel.send(self._waiting[0])
            except BlockingIOError:
                return
            except OSError:
                break  # the other end is gone
            self._waiting.popleft()
        self.close()

    def close(self) -> None:
        """Forget what waits, and stop waiting for the channel to take it."""
        self._waiting.clear()
        with contextlib.suppress(ValueError, OSError):
            asyncio.get_running_loop().remove_writer(self.channel.fileno())


def bind_listener(listener: ListenerSpec) -> socket.socket:
    """The listening socket of one service, bound in the master."""
    address = listener.address
    host = address.host or "0.0.0.0"
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if family == socket.AF_INET6:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
    try:
        sock.bind((host, address.port))
    except OSError as error:
        sock.close()
        # The words asyncio's create_server uses when smtpd binds in the master.
        raise OSError(error.errno, f"error while attempting to bind on address "
                      f"{(host, address.port)!r}: {(error.strerror or '').lower()}") from None
    sock.listen(1024)
    sock.setblocking(False)
    return sock


# --- metrics ------------------------------------------------------------------------
def snapshot(registry: Any = REGISTRY) -> list[tuple[str, dict[str, str], float]]:
    """This process's metric samples (creation timestamps left out: they do not add)."""
    samples = []
    for family in registry.collect():
        for sample in family.samples:
            if sample.name.endswith("_created"):
                continue
            samples.append((sample.name, dict(sample.labels), sample.value))
    return samples


class MergedRegistry(CollectorRegistry):
    """The master's registry plus the workers' samples, summed per series.

    Counters, gauges of sessions and histogram buckets all add up across
    processes. A worker that is restarted starts from zero again, so its
    last totals are kept as a baseline and counters never go backwards.
    """

    def __init__(self, registry: Any, sources: Callable[[], Iterable[
            list[tuple[str, dict[str, str], float]]]]) -> None:
        super().__init__(auto_describe=False)  # only its collect() is used
        self.registry = registry
        self.sources = sources

    def collect(self) -> Iterable[Any]:
        extra: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
        for samples in self.sources():
            for name, labels, value in samples:
                key = (name, tuple(sorted(labels.items())))
                extra[key] = extra.get(key, 0.0) + value
        for family in self.registry.collect():
            seen = set()
            merged = []
            for sample in family.samples:
                key = (sample.name, tuple(sorted(sample.labels.items())))
                seen.add(key)
                merged.append(sample._replace(value=sample.value + extra.get(key, 0.0)))
            for (name, label_pairs), value in extra.items():
                if (name, label_pairs) not in seen and _belongs(family, name):
                    merged.append(Sample(name, dict(label_pairs), value))
            family.samples = merged
            yield family


def _belongs(family: Any, name: str) -> bool:
    suffixes = ("", "_total", "_bucket", "_count", "_sum")
    return any(name == family.name + suffix for suffix in suffixes)


_Key = TypeVar("_Key")


def _bump(counts: dict[_Key, int], key: _Key, delta: int) -> None:
    value = counts.get(key, 0) + delta
    if value > 0:
        counts[key] = value
    else:
        counts.pop(key, None)


# --- the master's side ----------------------------------------------------------------
@dataclass
class _Worker:
    lane: int
    process: asyncio.subprocess.Process | None = None
    channel: socket.socket | None = None
    samples: list[tuple[str, dict[str, str], float]] = field(default_factory=list)
    connections: dict[tuple[str, str], int] = field(default_factory=dict)
    baseline: dict[tuple[str, tuple[tuple[str, str], ...]], float] = field(default_factory=dict)
    polled: asyncio.Future[None] | None = None  # a scrape waits for a fresh snapshot
    reloaded: asyncio.Future[None] | None = None  # a reload waits for its switch-over
    # Until the worker says "r" it may have no SIGHUP handler yet, and a
    # SIGHUP would end it (the signal's default action): the master does not
    # send it one then, but remembers it and sends it on the "r". The worker
    # reopens the maillog itself before it says "r"; a rotation between that
    # reopen and the master's reading of the "r" would be missed otherwise.
    ready: bool = False
    reopen_missed: bool = False
    # To the worker's channel, in order, also while it is busy: no answer,
    # relay or stress change is lost (a lost answer would hold a session for
    # 5 seconds). None while the worker is not running.
    outbox: Outbox | None = None


class Supervisor:
    """Starts, watches, restarts and stops the receiver workers."""

    def __init__(self, config: Config, count: int, on_queued: Callable[[str], None], *,
                 bind_retry: float = BIND_RETRY) -> None:
        self.bind_retry = bind_retry  # 0 when no killed master's workers can hold a port
        self.config = config
        self.count = count
        self.on_queued = on_queued
        self.sockets: dict[str, socket.socket] = {}
        self.workers: list[_Worker] = []
        self._totals: dict[str, int] = {}  # open connections per listener
        self._clients: dict[tuple[str, str], int] = {}  # and per client address
        self.rates = ClientRates()  # per listener and client address, for all workers
        # Listeners under stress (docs/smtpd.md "Stress"), with their total
        # limit as the last request said, which the end of stress is judged by.
        self._stressed: dict[str, int] = {}
        self._stopping = False
        self._watchers: list[asyncio.Task[None]] = []

    async def start(self) -> None:
        for listener in self.config.listeners:
            self.sockets[listener.name] = await self._bind(listener)
            maillog.info("master", f"listening on {listener.address} for service "
                         f"{listener.name}")
        for lane in range(1, self.count + 1):
            worker = _Worker(lane)
            self.workers.append(worker)
            await self._spawn(worker)
            self._watchers.append(asyncio.get_running_loop().create_task(self._watch(worker)))

    async def _bind(self, listener: ListenerSpec) -> socket.socket:
        """Bind, waiting a little while the workers of a master that was
        killed let go of the port (they stop as soon as they notice); at
        once when the last master stopped cleanly (pidfile.MasterLock)."""
        deadline = asyncio.get_running_loop().time() + self.bind_retry
        while True:
            try:
                return bind_listener(listener)
            except OSError as error:
                if (error.errno != errno.EADDRINUSE
                        or asyncio.get_running_loop().time() > deadline):
                    raise
                await asyncio.sleep(0.2)

    async def _spawn(self, worker: _Worker) -> None:
        loop = asyncio.get_running_loop()
        worker.ready = False
        worker.reopen_missed = False
        mine, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        fds = ",".join(f"{name}={sock.fileno()}" for name, sock in self.sockets.items())
        # The worker runs the main.cf text the master runs, not whatever the
        # file holds now: an edit not yet reloaded (or one that failed to
        # load) must not reach a worker that starts or restarts meanwhile.
        text = os.memfd_create("main.cf")
        os.write(text, self.config.text.encode())
        os.lseek(text, 0, os.SEEK_SET)
        try:
            worker.process = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "mta.workers", "--config", self.config.path,
                "--config-fd", str(text), "--lane", str(worker.lane), "--listeners", fds,
                "--channel", str(theirs.fileno()),
                pass_fds=[*(s.fileno() for s in self.sockets.values()), theirs.fileno(),
                          text])
        finally:
            os.close(text)
            theirs.close()
        mine.setblocking(False)
        worker.channel = mine
        worker.outbox = Outbox(mine)
        loop.add_reader(mine.fileno(), self._readable, worker)
        for listener in self._stressed:  # a worker (re)started under stress
            self._tell(worker, f"T{listener}\t1".encode())

    def _readable(self, worker: _Worker) -> None:
        assert worker.channel is not None
        while True:
            try:
                message = worker.channel.recv(1 << 20)
            except BlockingIOError:
                return
            except OSError:
                message = b""
            if not message:
                asyncio.get_running_loop().remove_reader(worker.channel.fileno())
                return
            kind, body = message[:1], message[1:]
            if kind == b"Q":
                self.on_queued(body.decode())
            elif kind == b"F":
                # An AUTH failure: the other workers slow the same guessing
                # client down too (Postfix's anvil is one process).
                self._relay(worker, message)
            elif kind == b"A":
                self._admit(worker, body.decode())
            elif kind == b"V":
                self._rate(worker, body.decode())
            elif kind == b"R":
                listener, address = body.decode().split("\t")
                if worker.connections.get((listener, address)):
                    self._count(worker, (listener, address), -1)
            elif kind == b"r":
                worker.ready = True
                if worker.reopen_missed:
                    worker.reopen_missed = False
                    self._signal_worker(worker, signal.SIGHUP)
            elif kind == b"k":
                # The worker has switched to the configuration sent (or kept
                # its own when that failed there: it logged why).
                if worker.reloaded is not None and not worker.reloaded.done():
                    worker.reloaded.set_result(None)
            elif kind == b"M":
                worker.samples = [(name, labels, value)
                                  for name, labels, value in json.loads(body)]
                if worker.polled is not None and not worker.polled.done():
                    worker.polled.set_result(None)

    def _relay(self, source: _Worker | None, message: bytes) -> None:
        for other in self.workers:
            if other is not source:
                self._tell(other, message)

    def _admit(self, worker: _Worker, request: str) -> None:
        """Postfix's anvil: one count of connections per listener and client
        address over all workers, asked before each greeting."""
        serial, listener, address, total_limit, client_limit, rate_limit = request.split("\t")
        key = (listener, address)
        total = self._totals.get(listener, 0)
        count = self._clients.get(key, 0)
        rate = 0
        if int(client_limit) or int(rate_limit):  # else exempt, or no limit
            rate = self.rates.event(listener, address, "connection",
                                    self.config.anvil_rate_time_unit)
            # anvil counts every connect, a refused one too.
            self.rates.connections(listener, address, count + 1)
        verdict = decide(total, count, int(total_limit), int(client_limit), rate,
                         int(rate_limit))
        if listener in self._stressed:
            # The limit as configured now (a reload may have changed it): the
            # end of stress is judged against it.
            self._stressed[listener] = int(total_limit)
        if verdict == "ok":
            self._count(worker, key, 1)
        elif verdict == "total" and listener not in self._stressed:
            self._stressed[listener] = int(total_limit)
            stress_began(listener, int(total_limit))
            self._relay(None, f"T{listener}\t1".encode())
        self._answer(worker, serial, verdict,
                     {"total": total, "rate": rate}.get(verdict, count))

    def _rate(self, worker: _Worker, request: str) -> None:
        """Postfix's anvil: a client's rate of one event (mta.smtpd.rates)
        over all workers, counting this one unless only asked."""
        serial, listener, address, event, count = request.split("\t")
        rate = self.rates.event(listener, address, event, self.config.anvil_rate_time_unit,
                                 count == "1")
        self._answer(worker, serial, "ok", rate)

    def _answer(self, worker: _Worker, serial: str, verdict: str, count: int) -> None:
        self._tell(worker, f"a{serial}\t{verdict}\t{count}".encode())

    def _tell(self, worker: _Worker, message: bytes) -> bool:
        """Send one message to a worker, or keep it (in order) until the
        worker's channel takes it; False when the worker is gone."""
        outbox = worker.outbox
        if outbox is None or not outbox.send(message):
            return False  # gone: _watch sees its exit
        if len(outbox) > _OUTBOX_LIMIT and worker.process is not None \
                and worker.process.returncode is None:
            maillog.warning("master", f"process postern/smtpd pid {worker.process.pid} reads "
                            f"nothing of {len(outbox)} messages: killing it")
            outbox.close()
            with contextlib.suppress(ProcessLookupError):
                worker.process.kill()  # _watch restarts it
        return True

    def _count(self, worker: _Worker, key: tuple[str, str], delta: int) -> None:
        _bump(worker.connections, key, delta)
        _bump(self._clients, key, delta)
        _bump(self._totals, key[0], delta)
        listener = key[0]
        limit = self._stressed.get(listener)
        if limit is not None and delta < 0:
            total = self._totals.get(listener, 0)
            if stress_is_over(total, limit):
                del self._stressed[listener]
                stress_ended(listener, limit, total)
                self._relay(None, f"T{listener}\t0".encode())

    def _forget(self, worker: _Worker) -> None:
        """A dead worker's sessions died with it."""
        for key, count in list(worker.connections.items()):
            self._count(worker, key, -count)

    async def _watch(self, worker: _Worker) -> None:
        while True:
            assert worker.process is not None
            code = await worker.process.wait()
            if worker.channel is not None:
                with contextlib.suppress(ValueError, OSError):
                    asyncio.get_running_loop().remove_reader(worker.channel.fileno())
                if worker.outbox is not None:
                    worker.outbox.close()
                    worker.outbox = None
                worker.channel.close()
                worker.channel = None
            if self._stopping:
                return
            self._forget(worker)
            # Keep its totals: the restarted worker counts from zero.
            for name, labels, value in worker.samples:
                key = (name, tuple(sorted(labels.items())))
                worker.baseline[key] = worker.baseline.get(key, 0.0) + value
            worker.samples = []
            how = (f"killed by signal {-code}" if code < 0 else f"exit status {code}")
            maillog.warning("master", f"process postern/smtpd pid {worker.process.pid} {how}")
            await asyncio.sleep(_RESTART_DELAY)  # throttle a worker that keeps dying
            if self._stopping:
                return
            await self._spawn(worker)

    async def refresh(self, timeout: float = 1.0) -> None:
        """Before a scrape: every worker sends its counters now, so /metrics
        shows what happened up to this moment (a busy or dead worker's last
        snapshot serves after timeout)."""
        loop = asyncio.get_running_loop()
        waiting = []
        for worker in self.workers:
            if worker.channel is None:
                continue
            if worker.polled is None or worker.polled.done():
                worker.polled = loop.create_future()
                self._tell(worker, b"P")
            waiting.append(worker.polled)
        if waiting:
            await asyncio.wait(waiting, timeout=timeout)

    async def reconfigure(self, config: Config, timeout: float = 30.0) -> None:
        """A reload that succeeded in the master: the workers take the same
        text. Returns once each has switched (it says so with "k"), or after
        timeout seconds (a worker that died meanwhile restarts on main.cf)."""
        self.config = config
        message = b"K" + config.text.encode()
        loop = asyncio.get_running_loop()
        waiting = []
        for worker in self.workers:
            if worker.channel is None:
                continue
            worker.reloaded = loop.create_future()
            if not self._tell(worker, message):
                worker.reloaded = None
                continue
            waiting.append(worker.reloaded)
        if waiting:
            await asyncio.wait(waiting, timeout=timeout)

    def samples(self) -> Iterable[list[tuple[str, dict[str, str], float]]]:
        for worker in self.workers:
            yield worker.samples
            yield [(name, dict(labels), value) for (name, labels), value in
                   worker.baseline.items()]

    def signal(self, signum: int) -> None:
        for worker in self.workers:
            if signum == signal.SIGHUP and not worker.ready:
                worker.reopen_missed = True  # sent when it says it is ready
                continue
            self._signal_worker(worker, signum)

    @staticmethod
    def _signal_worker(worker: _Worker, signum: int) -> None:
        if worker.process is not None and worker.process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                worker.process.send_signal(signum)

    async def stop(self, timeout: float) -> None:
        """SIGTERM to every worker: they stop accepting, finish sessions, exit."""
        self._stopping = True
        self.signal(signal.SIGTERM)
        for worker in self.workers:
            if worker.process is not None:
                try:
                    await asyncio.wait_for(worker.process.wait(), timeout)
                except TimeoutError:
                    worker.process.kill()
                    await worker.process.wait()
        for watcher in self._watchers:
            watcher.cancel()
        for sock in self.sockets.values():
            sock.close()


class AnvilLink:
    """A worker's side of the master's connection count: the questions asked
    over the channel and not yet answered."""

    def __init__(self, send: Callable[[bytes, bytes], None]) -> None:
        self.send = send
        self._pending: dict[int, asyncio.Future[tuple[str, int]]] = {}
        self._serial = 0

    def ask(self, request: str, kind: bytes = b"A") -> asyncio.Future[tuple[str, int]]:
        self._serial += 1
        answer = asyncio.get_running_loop().create_future()
        self._pending[self._serial] = answer
        self.send(kind, f"{self._serial}\t{request}".encode())
        return answer

    def answer(self, text: str) -> None:
        serial, verdict, count = text.split("\t")
        answer = self._pending.pop(int(serial), None)
        if answer is not None and not answer.done():
            answer.set_result((verdict, int(count)))

    def orphaned(self) -> None:
        """The master is gone: admit the sessions that were waiting (the
        worker stops accepting now and lets them finish)."""
        for answer in self._pending.values():
            if not answer.done():
                answer.set_result(("ok", 0))
        self._pending.clear()


class AnvilClient:
    """One listener's connection count in a worker (mta.smtpd.server.Anvil)."""

    def __init__(self, link: AnvilLink, listener: str) -> None:
        self.link = link
        self.listener = listener

    def ask(self, address: str, total_limit: int, client_limit: int,
            rate_limit: int) -> asyncio.Future[tuple[str, int]]:
        """The master's verdict on one more connection, counted if "ok"."""
        return self.link.ask(f"{self.listener}\t{address}\t{total_limit}\t{client_limit}"
                             f"\t{rate_limit}")

    async def event(self, address: str, event: str, count: bool) -> int:
        """The master's count of the client's event in this time unit (this
        one included when count); 0, so no refusal, if it does not answer."""
        answer = self.link.ask(f"{self.listener}\t{address}\t{event}\t{int(count)}", b"V")
        try:
            async with asyncio.timeout(_ANVIL_TIMEOUT):
                return (await answer)[1]
        except TimeoutError:
            maillog.warning("smtpd", f"problem talking to the master: no {event} rate "
                            f"after {_ANVIL_TIMEOUT:g}s; not limiting {address}")
            return 0

    async def admit(self, address: str, total_limit: int, client_limit: int,
                    rate_limit: int) -> tuple[str, int]:
        answer = self.ask(address, total_limit, client_limit, rate_limit)
        try:
            async with asyncio.timeout(_ANVIL_TIMEOUT):
                return await asyncio.shield(answer)
        except TimeoutError:
            # Like Postfix's smtpd when anvil does not answer: warn and serve
            # the client. A late "ok" is balanced by the session's release.
            maillog.warning("smtpd", f"problem talking to the master: no connection count "
                            f"after {_ANVIL_TIMEOUT:g}s; admitting {address} uncounted")
            return ("ok", 0)
        except asyncio.CancelledError:
            # The client left while we asked: give back what the master counted.
            def give_back(done: asyncio.Future[tuple[str, int]]) -> None:
                if done.result()[0] == "ok":
                    self.release(address)

            answer.add_done_callback(give_back)
            raise

    def release(self, address: str) -> None:
        self.link.send(b"R", f"{self.listener}\t{address}".encode())


# --- the worker's side ----------------------------------------------------------------
async def _worker_main(config_path: str, config_fd: int, lane: int,
                       listeners: dict[str, int], channel_fd: int) -> int:
    from mta import config as configuration
    from mta import master

    with open(config_fd, encoding="utf-8") as text:
        config = configuration.from_text(text.read(), config_path)
    master.setup_maillog(config)
    channel = socket.socket(fileno=channel_fd)
    channel.setblocking(False)
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()

    outbox = Outbox(channel)  # what a busy master could not take yet waits

    def notify(kind: bytes, body: bytes) -> None:
        # Connection counts must arrive (an unanswered request would hold a
        # session, a lost release would leak its slot), and so should AUTH
        # failures and a reload's acknowledgement (the master's reload line
        # waits for it): they wait until the busy master reads again. A
        # metrics snapshot is replaced by the next one.
        if not outbox.send(kind + body, keep=kind in b"AVRFSkr") and kind == b"Q":
            # The message is safe in incoming/; wake whichever queue manager
            # runs now so it does not wait for its next queue_run_delay scan.
            receiver.spool.wake(b"W")

    receiver = master.Receiver(config, lane=lane,
                               on_queued=lambda qid: notify(b"Q", qid.encode()),
                               sockets={name: socket.socket(fileno=fd)
                                        for name, fd in listeners.items()})
    await receiver.start()

    orphaned = False

    receiver.sasl_failures.on_failure = lambda address: notify(b"F", address.encode())
    registries = {server.ctx.listener.name: server.ctx.connections
                  for server in receiver.servers}
    anvil = AnvilLink(notify)
    anvils = {name: AnvilClient(anvil, name) for name in registries}
    for name, registry in registries.items():
        registry.anvil = anvils[name]

    reload_lock = asyncio.Lock()
    reloads: set[asyncio.Future[None]] = set()  # kept referenced until done

    async def reload(text: str) -> None:
        def build() -> master.ListenersBuild:
            # The master checked this text; a map or key file may still differ here.
            return receiver.prepare(configuration.from_text(text, config_path))

        built = await master.load_in_thread(reload_lock, build, program="smtpd")
        if built is not None:
            master.setup_maillog(built.config)
            receiver.apply(built)
        notify(b"k", b"")  # the master logs its reload line once every worker said so

    def from_master() -> None:
        nonlocal orphaned
        while True:
            try:
                message = channel.recv(1 << 20)
            except BlockingIOError:
                return
            except OSError:
                message = b""
            if not message:
                break
            if message[:1] == b"F":
                receiver.sasl_failures.learn(message[1:].decode())
            elif message[:1] == b"a":
                anvil.answer(message[1:].decode())
            elif message[:1] == b"T":
                # The master's verdict on a listener's stress (it counts the
                # sessions of all workers).
                listener, _, flag = message[1:].decode().partition("\t")
                if listener in registries:
                    registries[listener].set_stress(flag == "1")
            elif message[:1] == b"P":
                notify(b"M", json.dumps(snapshot()).encode())
            elif message[:1] == b"K":
                # The master reloaded main.cf: run the text it runs now, built
                # in a thread (maps, keys, certificates), one reload at a time.
                task = asyncio.ensure_future(reload(message[1:].decode()))
                reloads.add(task)
                task.add_done_callback(reloads.discard)
        # Like Postfix's children when their master dies: stop at once, so a
        # new master can bind the ports, and do not start new transactions.
        orphaned = True
        loop.remove_reader(channel_fd)
        anvil.orphaned()
        for server in receiver.servers:
            server.stop_accepting()
        stop.set()

    loop.add_reader(channel_fd, from_master)
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGINT, stop.set)
    # SIGHUP (forwarded by the master) reopens the maillog after a rotation;
    # the configuration comes over the channel, once the master has loaded it.
    loop.add_signal_handler(signal.SIGHUP, maillog.reopen)
    # Ready for the master's SIGHUPs from now on; a rotation that came while
    # this worker started (and was not passed on to it) is caught up here.
    maillog.reopen()
    notify(b"r", b"")

    async def report() -> None:
        while True:
            notify(b"M", json.dumps(snapshot()).encode())
            await asyncio.sleep(_SNAPSHOT_INTERVAL)

    reporter = loop.create_task(report())
    await stop.wait()
    reporter.cancel()
    # An orphan gives open sessions a moment to finish what they were sending
    # (each commit wakes the new master), then exits; clients retry the rest.
    await receiver.shutdown(grace=_ORPHAN_GRACE if orphaned else None)
    notify(b"M", json.dumps(snapshot()).encode())
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mta.workers",
                                     description="a receiver worker (started by mta start)")
    parser.add_argument("--config", required=True, help="main.cf's path (for messages)")
    parser.add_argument("--config-fd", type=int, required=True, help="main.cf's text")
    parser.add_argument("--lane", type=int, required=True)
    parser.add_argument("--listeners", required=True, help="name=fd,...")
    parser.add_argument("--channel", type=int, required=True)
    args = parser.parse_args(argv)
    listeners = {name: int(fd) for name, fd in
                 (item.split("=") for item in args.listeners.split(",") if item)}
    return asyncio.run(_worker_main(args.config, args.config_fd, args.lane, listeners,
                                    args.channel))


if __name__ == "__main__":
    raise SystemExit(main())
