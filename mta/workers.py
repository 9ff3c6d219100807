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
worker's metric samples every second. A worker notices the master's death by
EOF on that socket and exits; the master restarts a worker that dies, with a
delay, like Postfix's master does.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import errno
import json
import signal
import socket
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from prometheus_client.samples import Sample

from mta import log as maillog
from mta.config import Config, ListenerSpec
from mta.metrics import REGISTRY

_SNAPSHOT_INTERVAL = 1.0
_RESTART_DELAY = 1.0
_ORPHAN_GRACE = 5.0
_BIND_RETRY = 10.0


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
    sock.bind((host, address.port))
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


class MergedRegistry:
    """The master's registry plus the workers' samples, summed per series.

    Counters, gauges of sessions and histogram buckets all add up across
    processes. A worker that is restarted starts from zero again, so its
    last totals are kept as a baseline and counters never go backwards.
    """

    def __init__(self, registry: Any, sources: Callable[[], Iterable[
            list[tuple[str, dict[str, str], float]]]]) -> None:
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
            for (name, labels), value in extra.items():
                if (name, labels) not in seen and _belongs(family, name):
                    merged.append(Sample(name, dict(labels), value))
            family.samples = merged
            yield family


def _belongs(family: Any, name: str) -> bool:
    suffixes = ("", "_total", "_bucket", "_count", "_sum")
    return any(name == family.name + suffix for suffix in suffixes)


# --- the master's side ----------------------------------------------------------------
@dataclass
class _Worker:
    lane: int
    process: asyncio.subprocess.Process | None = None
    channel: socket.socket | None = None
    samples: list[tuple[str, dict[str, str], float]] = field(default_factory=list)
    connections: dict[tuple[str, str], int] = field(default_factory=dict)
    baseline: dict[tuple[str, tuple[tuple[str, str], ...]], float] = field(default_factory=dict)


class Supervisor:
    """Starts, watches, restarts and stops the receiver workers."""

    def __init__(self, config: Config, count: int, on_queued: Callable[[str], None]) -> None:
        self.config = config
        self.count = count
        self.on_queued = on_queued
        self.sockets: dict[str, socket.socket] = {}
        self.workers: list[_Worker] = []
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
        killed let go of the port (they stop as soon as they notice)."""
        deadline = asyncio.get_running_loop().time() + _BIND_RETRY
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
        mine, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        fds = ",".join(f"{name}={sock.fileno()}" for name, sock in self.sockets.items())
        worker.process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "mta.workers", "--config", self.config.path,
            "--lane", str(worker.lane), "--listeners", fds, "--channel", str(theirs.fileno()),
            pass_fds=[*(s.fileno() for s in self.sockets.values()), theirs.fileno()])
        theirs.close()
        mine.setblocking(False)
        worker.channel = mine
        loop.add_reader(mine.fileno(), self._readable, worker)
        self._introduce(worker)

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
            elif kind in (b"F", b"S"):
                # An AUTH failure or success: the other workers slow the same
                # guessing client down too (Postfix's anvil is one process).
                self._relay(worker, message)
            elif kind == b"C":
                # A connection opened or closed: one limit for all workers.
                listener, address, delta = body.decode().split("\t")
                key = (listener, address)
                count = worker.connections.get(key, 0) + int(delta)
                if count > 0:
                    worker.connections[key] = count
                else:
                    worker.connections.pop(key, None)
                self._relay(worker, message)
            elif kind == b"M":
                worker.samples = [(name, labels, value)
                                  for name, labels, value in json.loads(body)]

    def _relay(self, source: _Worker | None, message: bytes) -> None:
        for other in self.workers:
            if other is not source and other.channel is not None:
                with contextlib.suppress(OSError):
                    other.channel.send(message)

    def _forget_connections(self, worker: _Worker) -> None:
        """A dead worker's connections are gone: tell the others."""
        for (listener, address), count in worker.connections.items():
            self._relay(worker, f"C{listener}\t{address}\t{-count}".encode())
        worker.connections.clear()

    def _introduce(self, worker: _Worker) -> None:
        """Tell a (re)started worker what the others have open."""
        totals: dict[tuple[str, str], int] = {}
        for other in self.workers:
            if other is not worker:
                for key, count in other.connections.items():
                    totals[key] = totals.get(key, 0) + count
        assert worker.channel is not None
        for (listener, address), count in totals.items():
            with contextlib.suppress(OSError):
                worker.channel.send(f"C{listener}\t{address}\t{count}".encode())

    async def _watch(self, worker: _Worker) -> None:
        while True:
            assert worker.process is not None
            code = await worker.process.wait()
            if worker.channel is not None:
                with contextlib.suppress(ValueError, OSError):
                    asyncio.get_running_loop().remove_reader(worker.channel.fileno())
                worker.channel.close()
                worker.channel = None
            if self._stopping:
                return
            self._forget_connections(worker)
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

    def samples(self) -> Iterable[list[tuple[str, dict[str, str], float]]]:
        for worker in self.workers:
            yield worker.samples
            yield [(name, dict(labels), value) for (name, labels), value in
                   worker.baseline.items()]

    def signal(self, signum: int) -> None:
        for worker in self.workers:
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


# --- the worker's side ----------------------------------------------------------------
async def _worker_main(config_path: str, lane: int, listeners: dict[str, int],
                       channel_fd: int) -> int:
    from mta import config as configuration
    from mta import master

    config = configuration.load(config_path)
    master.setup_maillog(config)
    channel = socket.socket(fileno=channel_fd)
    channel.setblocking(False)
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()

    def notify(kind: bytes, body: bytes) -> None:
        try:
            channel.send(kind + body)
        except (BlockingIOError, OSError):
            # The master is gone or very busy. The message is safe in
            # incoming/; wake whichever queue manager runs now so it does not
            # wait for its next queue_run_delay scan to find it.
            if kind == b"Q":
                receiver.spool.wake(b"W")

    receiver = master.Receiver(config, lane=lane,
                               on_queued=lambda qid: notify(b"Q", qid.encode()),
                               sockets={name: socket.socket(fileno=fd)
                                        for name, fd in listeners.items()})
    await receiver.start()

    orphaned = False

    receiver.sasl_failures.on_change = lambda address, success: notify(
        b"S" if success else b"F", address.encode())
    registries = {server.ctx.listener.name: server.ctx.connections
                  for server in receiver.servers}
    for name, registry in registries.items():
        registry.on_change = (lambda address, delta, name=name: notify(
            b"C", f"{name}\t{address}\t{delta}".encode()))

    def from_master() -> None:
        nonlocal orphaned
        while True:
            try:
                message = channel.recv(4096)
            except BlockingIOError:
                return
            except OSError:
                message = b""
            if not message:
                break
            if message[:1] in (b"F", b"S"):
                receiver.sasl_failures.learn(message[1:].decode(), message[:1] == b"S")
            elif message[:1] == b"C":
                listener, address, delta = message[1:].decode().split("\t")
                if listener in registries:
                    registries[listener].learn(address, int(delta))
        # Like Postfix's children when their master dies: stop at once, so a
        # new master can bind the ports, and do not start new transactions.
        orphaned = True
        loop.remove_reader(channel_fd)
        for server in receiver.servers:
            server.stop_accepting()
        stop.set()

    loop.add_reader(channel_fd, from_master)
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGINT, stop.set)
    loop.add_signal_handler(signal.SIGHUP, lambda: (maillog.reopen(), receiver.reload()))

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
    parser.add_argument("--config", required=True)
    parser.add_argument("--lane", type=int, required=True)
    parser.add_argument("--listeners", required=True, help="name=fd,...")
    parser.add_argument("--channel", type=int, required=True)
    args = parser.parse_args(argv)
    listeners = {name: int(fd) for name, fd in
                 (item.split("=") for item in args.listeners.split(",") if item)}
    return asyncio.run(_worker_main(args.config, args.lane, listeners, args.channel))


if __name__ == "__main__":
    raise SystemExit(main())
