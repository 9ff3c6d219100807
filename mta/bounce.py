"""bounce: non-delivery and delay notifications, queued through the same spool.

The qmgr calls ``bounce`` (and ``delay_warning``) while the original is still
in active/; the notice is committed to incoming/ before the call returns, so
the original is removed only once its bounce is durable. Never to the null
sender (RFC 5321 §4.5.5): a failed bounce is a double bounce, discarded or,
with ``notify_classes = 2bounce``, sent to the postmaster from
double-bounce@$myorigin; a failed postmaster notice is discarded (no triple
bounce), as in Postfix's bounce_notify_service.c.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from prometheus_client import Counter

from mta import address as addr
from mta import dsn
from mta import log as maillog
from mta.config import Config
from mta.delivery import DeliveryResult, Recipient
from mta.metrics import REGISTRY
from mta.qmgr import Bouncer
from mta.queuefile import Envelope, QueueFile
from mta.spool import Spool

NOTICES = Counter("mta_bounce_notifications", "Notifications queued or discarded.",
                  ["kind", "outcome"], registry=REGISTRY)


class SpoolBouncer(Bouncer):
    def __init__(self, config: Config, spool: Spool, on_queued: Callable[[str], None],
                 clock: Callable[[], float] = time.time) -> None:
        self.config = config
        self.spool = spool
        self.on_queued = on_queued
        self.clock = clock

    def _double_bounce_sender(self) -> str:
        return addr.qualify(self.config.double_bounce_sender, self.config.myorigin)

    async def bounce(self, queue_file: QueueFile,
                     failed: list[tuple[Recipient, DeliveryResult]]) -> str | None:
        envelope = queue_file.envelope
        qid = envelope.qid
        sender = envelope.sender
        if sender.lower() == self._double_bounce_sender().lower():
            maillog.warning("bounce", f"{qid}: undeliverable postmaster notification discarded")
            NOTICES.labels("postmaster", "discarded").inc()
            return None
        if not sender:
            if "2bounce" not in self.config.notify_classes:
                # RFC 5321 §4.5.5: never bounce a bounce. Postfix drops it silently;
                # we say so, so that the maillog tells where the message went.
                maillog.info("bounce", f"{qid}: undeliverable bounce discarded "
                             "(null sender; notify_classes has no 2bounce)")
                NOTICES.labels("double_bounce", "discarded").inc()
                return None
            to = addr.qualify(self.config.get("2bounce_notice_recipient"),
                              self.config.myorigin)
            new_qid = await self._queue(queue_file, failed, dsn.NON_DELIVERY, to,
                                        self._double_bounce_sender(), postmaster=True)
            maillog.info("bounce", f"{qid}: postmaster non-delivery notification: {new_qid}")
            NOTICES.labels("postmaster", "queued").inc()
            return new_qid
        new_qid = await self._queue(queue_file, failed, dsn.NON_DELIVERY, sender, "")
        maillog.info("bounce", f"{qid}: sender non-delivery notification: {new_qid}")
        NOTICES.labels("non_delivery", "queued").inc()
        return new_qid

    async def delay_warning(self, queue_file: QueueFile,
                            delayed: list[tuple[Recipient, DeliveryResult]]) -> str | None:
        sender = queue_file.envelope.sender
        if not sender or sender.lower() == self._double_bounce_sender().lower():
            return None
        new_qid = await self._queue(queue_file, delayed, dsn.DELAY, sender, "")
        maillog.info("bounce", f"{queue_file.qid}: sender delay notification: {new_qid}")
        NOTICES.labels("delay", "queued").inc()
        return new_qid

    async def _original(self, queue_file: QueueFile) -> bytes:
        """The original message: kept in memory by the qmgr (small ones), or
        read from active/, or from hold/ when ``mta queue hold`` moved it
        during the attempt (its results follow it there; so does its bounce)."""
        if queue_file.content is not None:
            return queue_file.content
        try:
            return await self.spool.run(self.spool.read_content, "active", queue_file.qid,
                                        queue_file)
        except FileNotFoundError:
            return await self.spool.run(self.spool.read_content, "hold", queue_file.qid,
                                        queue_file)

    async def _queue(self, queue_file: QueueFile,
                     results: list[tuple[Recipient, DeliveryResult]], kind: str, to: str,
                     envelope_sender: str, *, postmaster: bool = False) -> str:
        config = self.config
        original_env = queue_file.envelope
        now = self.clock()
        retry_until = original_env.arrival + config.maximal_queue_lifetime
        reports = tuple(
            dsn.RecipientReport(
                address=recipient.address,
                action="delayed" if kind == dsn.DELAY else "failed",
                status=result.dsn, text=result.text, remote_mta=result.remote_mta,
                diagnostic=result.diagnostic, last_attempt=now,
                will_retry_until=retry_until if kind == dsn.DELAY else None)
            for recipient, result in results)
        original = await self._original(queue_file)
        new_qid = self.spool.new_qid()
        notice = dsn.Notice(kind=kind, qid=original_env.qid, new_qid=new_qid,
                            sender=original_env.sender, to=to, arrival=original_env.arrival,
                            reporting_mta=config.myhostname, recipients=reports,
                            postmaster_copy=postmaster,
                            delay_hours=config.delay_warning_time / 3600,
                            lifetime_days=config.maximal_queue_lifetime / 86400)
        data = dsn.build(notice, original, size_limit=config.bounce_size_limit)
        envelope = Envelope(qid=new_qid, arrival=now, sender=envelope_sender, recipients=[to],
                            proto="bounce", attrs={"notice_for": original_env.qid})
        writer = self.spool.writer(envelope)
        try:
            await writer.write(data)
            await writer.commit()
        except BaseException:
            await writer.abort()
            raise
        self.on_queued(new_qid)
        return new_qid
