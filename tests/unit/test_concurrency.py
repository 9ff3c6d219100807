"""Slow start, dead destinations, and one slow destination not holding up another."""

from __future__ import annotations

import asyncio
from pathlib import Path

from mta.concurrency import SITE_FAILURE, FeedbackDestination
from mta.config import from_text
from mta.delivery import DeliveryResult
from mta.mailboxes import Mailboxes
from mta.qmgr import QueueManager
from mta.queuefile import Envelope
from mta.resolver import Resolver
from mta.routing import Router
from mta.smtp.agent import SmtpDelivery
from mta.spool import Spool
from tests.fakes.resolver import FakeDns
from tests.fakes.smtp_peer import HANG, ScriptedPeer


def ok() -> DeliveryResult:
    return DeliveryResult(0, "sent", "2.0.0", "250 ok", relay="mx[1.2.3.4]:25")


def refused() -> DeliveryResult:
    return DeliveryResult(0, "deferred", "4.4.1", "connect to mx[1.2.3.4]:25: Connection refused",
                          extra={"feedback": SITE_FAILURE})


def test_slow_start_grows_by_one_per_success_up_to_the_limit() -> None:
    destination = FeedbackDestination(("smtp", "d.test"), 8, initial=5)
    windows = []
    for _ in range(5):
        destination.record([ok()])
        windows.append(destination.window)
    assert windows == [6, 7, 8, 8, 8]


def test_a_failed_cohort_makes_the_destination_dead_until_the_time_is_up() -> None:
    now = [1000.0]
    destination = FeedbackDestination(("smtp", "d.test"), 20, initial=2, cohort_limit=1,
                                      suspend_for=300, clock=lambda: now[0])
    destination.record([refused()])  # cohorts 1/2: not dead yet
    assert destination.suspended_reason() is None and destination.window == 1
    destination.record([refused()])  # cohorts 1/2 + 1/1 >= 1: dead
    assert destination.suspended_reason() == "connect to mx[1.2.3.4]:25: Connection refused"
    now[0] += 299
    assert destination.suspended_reason() is not None
    now[0] += 1
    assert destination.suspended_reason() is None
    assert destination.window == 2  # back to the initial concurrency


def test_a_success_resets_the_failed_cohorts_and_flush_revives() -> None:
    destination = FeedbackDestination(("smtp", "d.test"), 20, initial=2, cohort_limit=1)
    destination.record([refused()])
    destination.record([ok()])
    destination.record([refused()])
    assert destination.suspended_reason() is None
    destination.record([refused()])
    assert destination.suspended_reason() is not None
    destination.resume()
    assert destination.suspended_reason() is None


def test_rejections_by_a_working_server_are_positive_feedback() -> None:
    destination = FeedbackDestination(("smtp", "d.test"), 20, initial=1, cohort_limit=1)
    destination.record([DeliveryResult(0, "bounced", "5.1.1", "host said 550")])
    assert destination.window == 2 and destination.suspended_reason() is None


async def test_window_limits_parallel_deliveries() -> None:
    destination = FeedbackDestination(("smtp", "d.test"), 20, initial=2)
    running = 0
    peak = 0

    async def job() -> None:
        nonlocal running, peak
        async with destination.slot():
            running += 1
            peak = max(peak, running)
            await asyncio.sleep(0.01)
            running -= 1

    await asyncio.gather(*(job() for _ in range(6)))
    assert peak == 2


async def test_a_hanging_destination_does_not_hold_up_another(tmp_path: Path) -> None:
    async with ScriptedPeer(replies={"GREETING": HANG}) as slow, ScriptedPeer() as fast:
        config = from_text(f"""
myhostname = mx.test
mydestination = mx.test
smtp/inet = 127.0.0.1:0
transport_maps = inline:{{ slow.test=smtp:[127.0.0.1]:{slow.port},
    fast.test=smtp:[127.0.0.1]:{fast.port} }}
smtp_host_lookup = native
smtp_helo_timeout = 60s
default_destination_concurrency_limit = 2
initial_destination_concurrency = 2
""")
        spool = Spool(tmp_path / "queue", lane=0, fsync=False)
        spool.create()
        smtp = SmtpDelivery(config, Resolver(("native",), dns=FakeDns()))
        qmgr = QueueManager(config, spool, Router(config, Mailboxes.from_config(config)),
                            {"smtp": smtp},
                            destination_factory=lambda key, limit: FeedbackDestination(
                                key, limit, initial=2))
        await qmgr.start()
        try:
            for n in range(4):
                for domain in ("slow.test", "fast.test"):
                    envelope = Envelope(qid=spool.new_qid(), arrival=0, sender="s@mx.test",
                                        recipients=[f"r{n}@{domain}"])
                    writer = spool.writer(envelope)
                    await writer.write(b"Subject: x\r\n\r\nbody\r\n")
                    await writer.commit()
                    qmgr.queued(envelope.qid)
            for _ in range(500):
                if len(fast.messages) == 4:
                    break
                await asyncio.sleep(0.01)
            assert len(fast.messages) == 4
            assert len(slow.connections) == 2  # the window, still waiting for a greeting
        finally:
            await qmgr.stop(grace=0)
            await smtp.close()
            spool.close()


async def test_slots_are_granted_one_at_a_time_first_come_first_served() -> None:
    destination = FeedbackDestination(("smtp", "d.test"), 2, initial=2)
    order: list[int] = []
    release = [asyncio.Event() for _ in range(6)]

    async def delivery(n: int) -> None:
        async with destination.slot():
            order.append(n)
            await release[n].wait()

    tasks = [asyncio.create_task(delivery(n)) for n in range(6)]
    await asyncio.sleep(0)
    assert order == [0, 1] and destination.busy == 2 and len(destination._waiters) == 4
    release[1].set()
    await tasks[1]
    await asyncio.sleep(0)
    assert order == [0, 1, 2] and destination.busy == 2  # exactly one woken, the oldest
    tasks[3].cancel()  # a waiter that goes away keeps its place from no one
    release[0].set()
    await tasks[0]
    await asyncio.sleep(0)
    assert order == [0, 1, 2, 4]
    destination.record([ok()])  # slow start can grow no further than the limit of 2
    for n in (2, 4, 5):
        release[n].set()
    await asyncio.gather(*(tasks[n] for n in (2, 4, 5)))
    assert order == [0, 1, 2, 4, 5] and destination.busy == 0
