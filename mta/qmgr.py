"""qmgr: moves mail incoming → active, schedules deliveries, retries, expires.

One asyncio task per active message; per-destination concurrency limits keep
one slow or dead next hop from holding up the others. Results go to the
queue file as appended status records before the file moves on, so a crash
repeats at most the attempt that was under way, never loses a recipient.
Deferred mail waits in deferred/ with its next-attempt time as the file's
mtime (as in Postfix); it is scanned every queue_run_delay, or sooner when
we know a retry is due, or at once on ``mta queue flush``.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass

from prometheus_client import Counter, Gauge, Histogram

from mta import log as maillog
from mta import queueid, schedule
from mta.config import Config
from mta.delivery import (
    DeliveryAgent,
    DeliveryRequest,
    DeliveryResult,
    Recipient,
    Route,
    results_for_all,
)
from mta.errors import CorruptQueueFile
from mta.metrics import REGISTRY
from mta.queuefile import QueueFile
from mta.routing import Router
from mta.spool import QUEUES, Ending, Spool

log = logging.getLogger(__name__)

DELIVERIES = Counter("mta_deliveries", "Recipient delivery outcomes.",
                     ["transport", "status", "dsn_class"], registry=REGISTRY)
DELAY_STAGE = Histogram("mta_delivery_delay_seconds",
                        "Delivery delay per stage, as in delays=a/b/c/d.",
                        ["stage"], registry=REGISTRY,
                        buckets=(0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 10, 60, 300, 3600,
                                 86400))
QUEUE_SIZE = Gauge("mta_queue_messages", "Messages per queue directory.", ["queue"],
                   registry=REGISTRY)
QUEUE_OLDEST = Gauge("mta_queue_oldest_age_seconds", "Age of the oldest message per queue.",
                     ["queue"], registry=REGISTRY)
REMOVED = Counter("mta_qmgr_messages_removed", "Messages removed after their last recipient.",
                  registry=REGISTRY)
EXPIRED = Counter("mta_qmgr_messages_expired", "Messages returned after maximal_queue_lifetime.",
                  registry=REGISTRY)
CORRUPT = Counter("mta_qmgr_corrupt_files", "Queue files set aside in corrupt/.",
                  registry=REGISTRY)

STAGES = ("before_qmgr", "in_qmgr", "connection_setup", "transmission")
# Messages up to this size are read once, when they become active, and
# delivered from memory; larger ones are streamed from the queue file. Small,
# because thousands of active messages may wait for one next hop at a time.
_KEEP_IN_MEMORY = 32 * 1024
# ...but only while few messages are active: a backlog of 20,000 (a dead next
# hop, a restart after a crash) would otherwise hold up to 640 MB of content
# that waits for delivery slots. Beyond this many (this one included), content
# is read when the delivery starts (Postfix's qmgr keeps envelopes only).
_KEEP_WHILE_ACTIVE = 1000
# Queue files being moved into active/ and read at one time. A restart after
# a crash can find 20,000 files in active/; started at once, their reads
# filled the disk threads' one queue ahead of every delivery's writes for
# seconds (bench/crash.py, docs/performance.md). Bounded, reads and
# deliveries take turns.
_ACTIVATING = 32


class QueuedContent:
    """The content of a queued message, read from its queue file on demand."""

    def __init__(self, spool: Spool, queue: str, queue_file: QueueFile) -> None:
        self._spool = spool
        self._queue = queue
        self._file = queue_file

    @property
    def size(self) -> int:
        return self._file.envelope.size

    async def read_all(self) -> bytes:
        if self._file.content is not None:
            return self._file.content
        return await self._spool.run(self._spool.read_content, self._queue, self._file.qid,
                                     self._file)

    def chunks(self) -> Iterator[bytes]:
        if self._file.content is not None:
            return iter((self._file.content,))
        return self._spool.open_content(self._queue, self._file.qid, self._file)


class Bouncer:
    """What the qmgr needs from bounce: queue a DSN for failed recipients."""

    async def bounce(self, queue_file: QueueFile,
                     failed: list[tuple[Recipient, DeliveryResult]]) -> str | None:
        return None

    async def delay_warning(self, queue_file: QueueFile,
                            delayed: list[tuple[Recipient, DeliveryResult]]) -> str | None:
        return None


class Destination:
    """Per (transport, next hop) concurrency; the outbound issue adds feedback."""

    def __init__(self, key: tuple[str, str], limit: int) -> None:
        self.key = key
        self.limit = limit
        self.semaphore = asyncio.Semaphore(limit)

    @contextlib.asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        async with self.semaphore:
            yield

    def suspended_reason(self) -> str | None:
        return None

    def record(self, results: list[DeliveryResult]) -> None:
        pass

    def resume(self) -> None:
        """End a suspension now (``mta queue flush``, as Postfix's flush revives dead
        destinations)."""


@dataclass
class _Attempt:
    qid: str
    queue_file: QueueFile
    entered_active: float
    forced: bool = False  # by a flush: defer_transports do not hold it back
    # Marked by mta queue flush QID/--site (Spool.FLUSH_MARK): its own
    # destination is tried again even if suspended, as Postfix's qmgr
    # unthrottles the queues of a marked message (QMGR_FLUSH_EACH). A plain
    # flush revives every destination once, at its scan, not per message.
    marked: bool = False


class QueueManager:
    def __init__(self, config: Config, spool: Spool, router: Router,
                 agents: dict[str, DeliveryAgent], *, bouncer: Bouncer | None = None,
                 clock: Callable[[], float] = time.time,
                 destination_factory: Callable[[tuple[str, str], int], Destination]
                 | None = None) -> None:
        self.config = config
        self.spool = spool
        self.router = router
        self.agents = agents
        self.bouncer = bouncer or Bouncer()
        self.clock = clock
        self._destination_factory = destination_factory or Destination
        self.destinations: dict[tuple[str, str], Destination] = {}
        self._incoming: asyncio.Queue[str] = asyncio.Queue()
        self._active: dict[str, asyncio.Task[None]] = {}
        self._active_limit = asyncio.Semaphore(config.qmgr_message_active_limit)
        self._activating = asyncio.Semaphore(_ACTIVATING)
        self._scan_now = asyncio.Event()
        self._rearm = asyncio.Event()
        self._flush = False
        self._revive = False
        self._next_due: float | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._wakeup: asyncio.DatagramTransport | None = None
        self._stopping = False
        self.idle = asyncio.Event()
        # Metric children, looked up once: labels() takes a lock and builds
        # a key, and every recipient's result counts once and observes four
        # delays (as smtpd keeps its listener's children).
        self._delay_metrics = [DELAY_STAGE.labels(stage) for stage in STAGES]
        self._outcome_metrics: dict[tuple[str, str, str], Counter] = {}
        # Torn status records already warned of: queue id -> byte offsets.
        # Rare (a crash or a full disk tore them); forgotten when the message
        # leaves the queue through us.
        self._skipped_warned: dict[str, set[int]] = {}

    # -- life cycle -------------------------------------------------------------------
    async def start(self) -> None:
        """Recover from the last run and start the scheduling tasks."""
        await self.spool.run(self.spool.create)
        for name in await self.spool.run(self.spool.remove_stale_temporaries):
            log.info("removed stale temporary file %s", name)
        await self._open_wakeup()
        loop = asyncio.get_running_loop()
        self._tasks = [loop.create_task(self._activate_incoming(), name="qmgr-incoming"),
                       loop.create_task(self._deferred_runner(), name="qmgr-deferred")]
        # Mail left active by a crash or stop is delivered first, then incoming.
        # The activation task already runs, so a file in this scan may be one
        # it has just moved into active/: _admit skips what is under way.
        for entry in await self.spool.run(self.spool.scan, "active"):
            await self._admit(entry.qid)
        for entry in await self.spool.run(self.spool.scan, "incoming"):
            self._incoming.put_nowait(entry.qid)
        self._scan_now.set()

    async def stop(self, grace: float = 30.0) -> None:
        """Stop scheduling; let deliveries under way finish for up to grace seconds.

        Mail not finished stays in active/ and is delivered at the next start.
        """
        self._stopping = True
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._wakeup is not None:
            self._wakeup.close()
            await self.spool.run(self.spool.unbind_wakeup)
        pending = list(self._active.values())
        if pending:
            _done, still = await asyncio.wait(pending, timeout=grace)
            for task in still:
                task.cancel()
            if still:
                await asyncio.wait(still)

    async def _open_wakeup(self) -> None:
        # Bound in a disk thread: binding a unix socket creates a file (after
        # an unlink of the last run's), and the event loop never waits on the disk.
        sock = await self.spool.run(self.spool.bind_wakeup)
        loop = asyncio.get_running_loop()
        manager = self

        class _Wakeup(asyncio.DatagramProtocol):
            def datagram_received(self, data: bytes, addr: object) -> None:
                manager.wake(flush=data.startswith(b"F"), revive=data.startswith(b"S"))

        try:
            transport, _ = await loop.create_datagram_endpoint(_Wakeup, sock=sock)
        except BaseException:
            sock.close()
            raise
        self._wakeup = transport

    # -- entry points -----------------------------------------------------------------
    def queued(self, qid: str) -> None:
        """A new message is in incoming/ (called in-process by smtpd and pickup)."""
        if not self._stopping:
            self._incoming.put_nowait(qid)

    def wake(self, *, flush: bool = False, revive: bool = False) -> None:
        """Look at incoming/ and at what is due in deferred/ now: with flush,
        at all of deferred/ (``mta queue flush``, postqueue -f); with flush or
        revive (``--site``, as Postfix's flush service asks the queue manager
        to flush its dead destinations), every suspended destination is tried
        again. Mail that ``flush QID`` or ``--site`` marked is due, and its
        mark makes its attempt a flush's (Spool.activate)."""
        if flush:
            self._flush = True
        if revive:
            self._revive = True
        self._scan_now.set()

    # -- the activation pipeline -----------------------------------------------------
    async def _activate_incoming(self) -> None:
        while True:
            qid = await self._incoming.get()
            if qid not in self._active:
                await self._admit(qid, source="incoming")

    async def _admit(self, qid: str, *, forced: bool = False, source: str = "active") -> None:
        """Wait for room under qmgr_message_active_limit, then start one
        message, unless it is under way already or the manager is stopping.

        The check comes after the wait: while one path waits, another (the
        scan of active/ at start, the incoming queue, a deferred scan, a
        retry after a queue file error) may start the same message, and a
        queue file taken twice is delivered twice (seen as duplicates in
        bench/crash.py).
        """
        await self._active_limit.acquire()
        if self._stopping or qid in self._active:
            self._active_limit.release()
            return
        self._spawn(qid, self.clock(), forced=forced, source=source)

    async def _wait_for_scan(self) -> None:
        """Sleep until a wake-up, queue_run_delay, or the earliest known retry."""
        while True:
            timeout = self.config.queue_run_delay
            if self._next_due is not None:
                timeout = min(timeout, max(0.0, self._next_due - self.clock()))
            self._rearm.clear()
            waiters = [asyncio.ensure_future(self._scan_now.wait()),
                       asyncio.ensure_future(self._rearm.wait())]
            try:
                done, _ = await asyncio.wait(waiters, timeout=timeout,
                                             return_when=asyncio.FIRST_COMPLETED)
            finally:
                for waiter in waiters:
                    waiter.cancel()
            if self._scan_now.is_set() or not done:
                return

    async def _deferred_runner(self) -> None:
        while True:
            await self._wait_for_scan()
            self._scan_now.clear()
            flush, self._flush = self._flush, False
            revive, self._revive = self._revive, False
            self._next_due = None
            if flush or revive:
                for destination in self.destinations.values():
                    destination.resume()
            # Incoming first: a wake-up from another process (sendmail) names no id.
            for entry in await self.spool.run(self.spool.scan, "incoming"):
                if entry.qid not in self._active:
                    self._incoming.put_nowait(entry.qid)
            now = self.clock()
            for entry in await self.spool.run(self.spool.scan, "deferred"):
                if not flush and entry.mtime > now:
                    self._note_due(entry.mtime)
                    continue
                if entry.qid not in self._active:
                    await self._admit(entry.qid, forced=flush, source="deferred")
            await self.spool.run(self._update_gauges)

    def _note_due(self, when: float) -> None:
        if self._next_due is None or when < self._next_due:
            self._next_due = when

    def _update_gauges(self) -> None:
        now = time.time()
        for queue in QUEUES:
            entries = self.spool.scan(queue)
            QUEUE_SIZE.labels(queue).set(len(entries))
            oldest = min((e.qid for e in entries), default=None)
            if oldest is None:
                QUEUE_OLDEST.labels(queue).set(0)
            else:
                QUEUE_OLDEST.labels(queue).set(max(0.0, now - queueid.arrival_of(oldest))
                                               if queueid.is_valid(oldest) else 0)

    def _spawn(self, qid: str, entered: float, forced: bool = False,
               source: str = "active") -> None:
        self.idle.clear()
        task = asyncio.get_running_loop().create_task(self._process(qid, entered, forced,
                                                                    source),
                                                      name=f"qmgr-{qid}")
        self._active[qid] = task
        task.add_done_callback(functools.partial(self._done, qid))

    def _done(self, qid: str, task: asyncio.Task[None]) -> None:
        self._active.pop(qid, None)
        self._active_limit.release()
        error = None if task.cancelled() else task.exception()
        if error is not None:
            # The file stays in active/ (nothing is lost); try it again later,
            # e.g. once a full disk has room for the status records again.
            retry = min(self.config.minimal_backoff_time, 60.0)
            maillog.warning("qmgr", f"{qid}: cannot update the queue file: {error}; "
                            f"retrying in {retry:g}s")
            if not isinstance(error, OSError):
                log.error("qmgr: %s: %r", qid, error, exc_info=error)
            if not self._stopping:
                loop = asyncio.get_running_loop()
                # A file gone from active/ meanwhile ends in _process's
                # FileNotFoundError (no stat here: the loop does not touch disk).
                loop.call_later(retry, lambda: loop.create_task(self._admit(qid)))
        if not self._active:
            self.idle.set()

    # -- one message ---------------------------------------------------------------------
    async def _process(self, qid: str, entered: float, forced: bool = False,
                       source: str = "active") -> None:
        try:
            keep = _KEEP_IN_MEMORY if len(self._active) <= _KEEP_WHILE_ACTIVE else 0
            async with self._activating:
                queue_file, flushed = await self.spool.run(self.spool.activate, qid, source,
                                                           keep)
        except FileNotFoundError:
            return  # deleted meanwhile, or already taken
        except CorruptQueueFile as error:
            maillog.warning("qmgr", str(error))
            maillog.corrupt(qid, "active")
            CORRUPT.inc()
            await self.spool.run(self.spool.save_corrupt, "active", qid)
            return
        if queue_file.skipped:
            self._warn_skipped(queue_file)
        envelope = queue_file.envelope
        pending = queue_file.pending()
        maillog.queue_active(qid, envelope.sender, envelope.size, len(pending))
        attempt = _Attempt(qid, queue_file, entered, forced or flushed, flushed)
        groups: dict[Route, list[Recipient]] = {}
        for index in pending:
            address = envelope.recipients[index]
            groups.setdefault(self.router.route(address), []).append(Recipient(index, address))
        content = QueuedContent(self.spool, "active", queue_file)
        jobs = []
        for route, recipients in groups.items():
            limit = self._recipient_limit(route.transport)
            for start in range(0, len(recipients), limit):
                jobs.append(self._deliver(attempt, route, recipients[start:start + limit],
                                          content))
        outcome: list[tuple[Recipient, DeliveryResult]] = []
        for results in await asyncio.gather(*jobs):
            outcome.extend(results)
        await self._finish(attempt, outcome)

    def _warn_skipped(self, queue_file: QueueFile) -> None:
        """Warn of torn status records, each once per daemon run.

        Not corrupt: END and the CRC vouch for envelope and content, and a
        lost status record at worst repeats its attempt. The record stays in
        the file for good (queue files are appended to and renamed, never
        rewritten, and rewriting a 25 MB message to drop one line is not
        worth it), so without this set it was logged at every attempt.
        Keyed by offset: a record torn later, elsewhere in the file, is news.
        """
        warned = self._skipped_warned.setdefault(queue_file.qid, set())
        for offset, sample in queue_file.skipped:
            if offset not in warned:
                warned.add(offset)
                maillog.skipped_record(f"active/{queue_file.qid}", offset, sample)

    def _recipient_limit(self, transport: str) -> int:
        if transport == "local":
            return 50  # one Maildir write per recipient; batching only saves a read
        return max(1, self.config.default_destination_recipient_limit)

    def _destination(self, route: Route) -> Destination:
        key = (route.transport, route.nexthop)
        destination = self.destinations.get(key)
        if destination is None:
            if route.transport == "local":
                limit = self.config.local_destination_concurrency_limit
            else:
                limit = self.config.default_destination_concurrency_limit
            destination = self._destination_factory(key, limit)
            self.destinations[key] = destination
        return destination

    async def _deliver(self, attempt: _Attempt, route: Route, recipients: list[Recipient],
                       content: QueuedContent) -> list[tuple[Recipient, DeliveryResult]]:
        agent = self.agents.get(route.transport)
        destination = self._destination(route)
        request = DeliveryRequest(attempt.qid, attempt.queue_file.envelope, recipients, route,
                                  content)
        if agent is None:
            results = results_for_all(request, "deferred", "4.3.0",
                                      f"mail transport unavailable: {route.transport}")
            program = "qmgr"
        elif route.transport in self.config.defer_transports and not attempt.forced:
            # Postfix's defer_transports: hold mail for this transport until a flush.
            # The queue manager defers it without asking the agent, so the line
            # is qmgr's, as in Postfix (docs/outbound.md).
            results = results_for_all(request, "deferred", "4.3.2", "deferred transport")
            program = "qmgr"
        elif not attempt.marked and (reason := destination.suspended_reason()) is not None:
            results = self._suspended(request, reason)
            program = "qmgr"
        else:
            if attempt.marked:
                # A flush tries the message's destination again, as Postfix's
                # qmgr unthrottles the queues of a message marked for it.
                destination.resume()
            program = agent.name
            async with destination.slot():
                # The destination may have died while this delivery waited for
                # its slot: Postfix's qmgr then defers the whole todo list at
                # once (qmgr_defer_todo), so no waiting delivery reaches the
                # dead site. Checked here, after the wait, for the same reason.
                reason = destination.suspended_reason()
                if reason is not None:
                    results = self._suspended(request, reason)
                    program = "qmgr"
                else:
                    request.attempt_started = self.clock()
                    try:
                        results = await agent.deliver(request)
                    except asyncio.CancelledError:
                        raise
                    except Exception as error:  # an agent bug must not lose mail
                        log.exception("%s: delivery agent %s failed", attempt.qid, program)
                        results = results_for_all(request, "deferred", "4.3.0",
                                                  f"delivery agent failure: {error!r}")
                    destination.record(results)
        by_index = {r.index: r for r in results}
        paired = []
        for recipient in recipients:
            result = by_index.get(recipient.index) or DeliveryResult(
                recipient.index, "deferred", "4.3.0", "delivery agent returned no status")
            self._log_result(program, attempt, recipient, result, request.attempt_started)
            paired.append((recipient, result))
        return paired

    @staticmethod
    def _suspended(request: DeliveryRequest, reason: str) -> list[DeliveryResult]:
        # Not fed back to the destination: no server was tried.
        return results_for_all(request, "deferred", "4.4.1",
                               f"delivery temporarily suspended: {reason}")

    def _log_result(self, program: str, attempt: _Attempt, recipient: Recipient,
                    result: DeliveryResult, started: float) -> None:
        now = self.clock()
        arrival = attempt.queue_file.envelope.arrival
        a = max(0.0, attempt.entered_active - arrival)
        b = max(0.0, (started or now) - attempt.entered_active - 0.0)
        c, d = result.setup_time, result.transfer_time
        b = max(0.0, min(b, now - arrival - a - c - d))
        maillog.delivery(program, attempt.qid, recipient.address, relay=result.relay,
                         delay=max(0.0, now - arrival), delays=(a, b, c, d), dsn=result.dsn,
                         status=result.status, text=result.text, conn_use=result.conn_use,
                         tls=result.tls)
        key = (program, result.status, result.dsn[:1] or "?")
        counter = self._outcome_metrics.get(key)
        if counter is None:
            counter = self._outcome_metrics[key] = DELIVERIES.labels(*key)
        counter.inc()
        for histogram, value in zip(self._delay_metrics, (a, b, c, d), strict=True):
            histogram.observe(value)

    async def _finish(self, attempt: _Attempt,
                      outcome: list[tuple[Recipient, DeliveryResult]]) -> None:
        qid, queue_file = attempt.qid, attempt.queue_file
        envelope = queue_file.envelope
        now = self.clock()
        deferred = [(r, res) for r, res in outcome if res.status == "deferred"]
        bounced = [(r, res) for r, res in outcome if res.status == "bounced"]
        lifetime = (self.config.bounce_queue_lifetime if not envelope.sender
                    else self.config.maximal_queue_lifetime)
        if deferred and schedule.expired(envelope.arrival, now, lifetime):
            maillog.expired(qid, envelope.sender)
            EXPIRED.inc()
            bounced.extend(deferred)
            deferred = []
        done = [(r, res) for r, res in outcome if res.status not in ("deferred", "bounced")]
        # The queue file, open from the first status record of this attempt
        # to its last, so that mta queue hold cannot divert them (Spool,
        # "the end of a delivery attempt").
        fd: int | None = None
        records: list[dict[str, object]] = []  # a deferral's, and its next attempt time
        when = now
        try:
            if bounced:
                if done:
                    # Recipients already delivered are recorded before the bounce
                    # is tried: if it fails, the retry must not deliver them again
                    # (Postfix marks done recipients as it goes).
                    fd = await self._open_and_record(
                        qid, [self._record(res, now) for _, res in done])
                    if fd is None:
                        self._ended(qid, "deleted")
                        return  # deleted by mta queue delete: nothing to bounce
                # The DSN is durably queued before the original goes away.
                if not await self._bounce(attempt, bounced):
                    deferred.extend((r, DeliveryResult(r.index, "deferred", "4.3.0",
                                                       "bounce or trace service failure"))
                                    for r, _ in bounced)
                    bounced = []
            if deferred:
                unrecorded = done if fd is None else []
                records, when = await self._deferral(attempt, unrecorded, bounced, deferred,
                                                     now)
            # The spool closes the descriptor from here on, even if this task
            # is cancelled while it works.
            handed, fd = fd, None
            if deferred:
                ending = await self.spool.run(self.spool.finish_deferred, qid, handed,
                                              records, when)
            else:
                # The records, made only for a file moved out of active/ meanwhile.
                ending = await self.spool.run(
                    self.spool.finish_removed, qid, handed,
                    lambda: [self._record(res, now) for _, res in (*done, *bounced)])
        finally:
            if fd is not None:  # cancelled (stop) while a notice was being queued
                os.close(fd)
        if ending == "deferred":
            self._note_due(when)
            if self._next_due == when:
                self._rearm.set()  # the runner's timer must fire earlier
        self._ended(qid, ending)

    async def _open_and_record(self, qid: str, records: list[dict[str, object]]) -> int | None:
        """Spool.open_and_record, whose descriptor is closed even when this
        task is cancelled (at stop) while the disk thread is opening it: the
        call then goes on, shielded, and its result is closed when it comes."""
        opening = asyncio.ensure_future(self.spool.run(self.spool.open_and_record, qid, records))
        try:
            return await asyncio.shield(opening)
        except asyncio.CancelledError:
            opening.add_done_callback(_close_opened)
            raise

    async def _deferral(self, attempt: _Attempt, unrecorded: list[tuple[Recipient,
                                                                         DeliveryResult]],
                        bounced: list[tuple[Recipient, DeliveryResult]],
                        deferred: list[tuple[Recipient, DeliveryResult]],
                        now: float) -> tuple[list[dict[str, object]], float]:
        """The records of an attempt that ends deferred (unrecorded: the done
        recipients not recorded yet) and its next attempt time; sends the
        delay warning when it is due."""
        queue_file = attempt.queue_file
        records = [self._record(res, now) for _, res in (*bounced, *unrecorded)]
        when = schedule.next_attempt(queue_file.envelope.arrival, now,
                                     self.config.minimal_backoff_time,
                                     self.config.maximal_backoff_time)
        for _, result in deferred:
            records.append(self._record(result, now, next_attempt=when))
        await self._maybe_warn(queue_file, deferred, now, records)
        return records, when

    def _ended(self, qid: str, ending: Ending) -> None:
        """Log how the attempt left the queue file. Held or deleted: ``mta
        queue`` acted on the message while it was being delivered, as
        postsuper may do to an active message; a held file has the attempt's
        results, so a release does not deliver to these recipients again,
        and a deleted one gets Postfix's qmgr warning instead of "removed"."""
        if ending in ("removed", "deleted"):
            self._skipped_warned.pop(qid, None)
        if ending == "removed":
            maillog.removed(qid)
            REMOVED.inc()
        elif ending == "held":
            maillog.warning("qmgr", f"{qid}: placed on hold during delivery; "
                            "its recipients' results are recorded in the held file")
        elif ending == "moved":
            maillog.warning("qmgr", f"{qid}: held and released during delivery; "
                            "its recipients' results are recorded in the queue file")
            # The release's wake-up came while the message was active, and
            # the scan it caused passed it over; scan again, or the released
            # file would wait for queue_run_delay.
            self.wake()
        elif ending == "deleted":
            maillog.warning("qmgr", f"{qid}: remove {qid} from active: "
                            "No such file or directory")

    async def _bounce(self, attempt: _Attempt,
                      bounced: list[tuple[Recipient, DeliveryResult]]) -> bool:
        """Queue the non-delivery notice; False if that failed.

        As in Postfix ("if a bounce fails, defer instead"), the caller then
        defers the bounced recipients: they stay in the queue file, are tried
        again at the next attempt and bounced then. Raising instead would
        leave the attempt's results unrecorded, and the retry would deliver
        again what was sent.
        """
        try:
            await self.bouncer.bounce(attempt.queue_file, bounced)
        except asyncio.CancelledError:
            raise
        except Exception as error:  # a full disk (ENOSPC) or a bounce bug: nothing is lost
            maillog.warning("qmgr", f"{attempt.qid}: cannot queue the non-delivery "
                            f"notification: {error}")
            if not isinstance(error, OSError):
                log.error("qmgr: %s: bounce failed", attempt.qid, exc_info=error)
            for recipient, result in bounced:
                # The to= line said bounced; this one says what happens now.
                self._log_result("qmgr", attempt, recipient, DeliveryResult(
                    result.index, "deferred", "4.3.0", "bounce or trace service failure"), 0.0)
            return False
        return True

    async def _maybe_warn(self, queue_file: QueueFile,
                          deferred: list[tuple[Recipient, DeliveryResult]], now: float,
                          records: list[dict[str, object]]) -> None:
        warn_after = self.config.delay_warning_time
        if not warn_after or queue_file.flag("delay_warned") or not queue_file.envelope.sender:
            return
        if now - queue_file.envelope.arrival < warn_after:
            return
        try:
            await self.bouncer.delay_warning(queue_file, deferred)
        except asyncio.CancelledError:
            raise
        except Exception as error:
            # Not flagged: the warning is tried again at the next attempt. Raising
            # would leave this attempt's results unrecorded (sent ones sent again).
            maillog.warning("qmgr", f"{queue_file.qid}: cannot queue the delay "
                            f"notification: {error}")
            if not isinstance(error, OSError):
                log.error("qmgr: %s: delay warning failed", queue_file.qid, exc_info=error)
            return
        records.append({"flag": "delay_warned", "t": round(now, 3)})

    @staticmethod
    def _record(result: DeliveryResult, now: float,
                next_attempt: float | None = None) -> dict[str, object]:
        record: dict[str, object] = {"r": result.index, "s": result.status, "dsn": result.dsn,
                                     "t": round(now, 3), "relay": result.relay,
                                     "text": result.text}
        if next_attempt is not None:
            record["next"] = round(next_attempt, 3)
        return record


def _close_opened(opening: asyncio.Future[int | None]) -> None:
    """Close the descriptor a cancelled _open_and_record got after all."""
    if not opening.cancelled() and opening.exception() is None:
        fd = opening.result()
        if fd is not None:
            os.close(fd)
