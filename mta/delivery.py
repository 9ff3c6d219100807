"""The contract between the queue manager and delivery agents.

An agent gets one message and some of its recipients (all for the same next
hop) and answers one result per recipient: sent, deferred or bounced, with
the enhanced status code and the text that goes into the maillog and the
bounce. The qmgr records the results and logs them; agents do not touch
the queue.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Protocol

from mta.queuefile import Envelope


@dataclass(frozen=True, slots=True)
class Route:
    """Where a recipient goes: the transport (agent) and its next hop."""

    transport: str  # local | smtp | error | ...
    nexthop: str  # a domain, [host]:port, or the error text for error:
    # The next hop as the TLS policy table sees it (Postfix: the verbatim
    # next-hop, e.g. [mx.example]:587), when it differs from nexthop.
    policy_key: str = ""


@dataclass(frozen=True, slots=True)
class Recipient:
    index: int
    address: str


@dataclass
class DeliveryRequest:
    """One delivery: a message, some of its recipients, one route."""

    qid: str
    envelope: Envelope
    recipients: list[Recipient]
    route: Route
    content: ContentSource
    attempt_started: float = 0.0


class ContentSource(Protocol):
    """Access to the queued message content without holding it twice."""

    @property
    def size(self) -> int: ...

    async def read_all(self) -> bytes: ...

    def chunks(self) -> Iterator[bytes]: ...


@dataclass
class DeliveryResult:
    """The outcome for one recipient."""

    index: int
    status: str  # sent | deferred | bounced
    dsn: str
    text: str
    relay: str = "none"
    conn_use: int | None = None
    setup_time: float = 0.0  # delays=…/…/c/…: DNS, connect, greeting, EHLO, TLS
    transfer_time: float = 0.0  # delays=…/…/…/d: MAIL to end of DATA
    tls: str | None = None
    remote_mta: str | None = None  # for the DSN's Remote-MTA field
    diagnostic: str | None = None  # the remote reply, for the DSN's Diagnostic-Code
    extra: dict[str, str] = field(default_factory=dict)


class DeliveryAgent(Protocol):
    """What the qmgr calls; ``name`` is the program name in the maillog."""

    name: str

    async def deliver(self, request: DeliveryRequest) -> list[DeliveryResult]: ...


def results_for_all(request: DeliveryRequest, status: str, dsn: str, text: str,
                    **fields: object) -> list[DeliveryResult]:
    """The same outcome for every recipient of a request."""
    return [DeliveryResult(r.index, status, dsn, text, **fields)  # type: ignore[arg-type]
            for r in request.recipients]
