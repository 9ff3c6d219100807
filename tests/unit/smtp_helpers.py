"""Helpers for the outbound tests: a config, a request, an agent wired to fakes."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

from mta.config import from_text
from mta.delivery import DeliveryRequest, Recipient, Route
from mta.queuefile import Envelope
from mta.resolver import Resolver
from mta.smtp.agent import SmtpDelivery
from mta.smtp.client import Connector
from mta.smtp.tlshook import TlsPolicy
from tests.fakes.resolver import FakeDns, fake_native

BASE_CF = """\
myhostname = client.test
mydestination = client.test
smtp/inet = 127.0.0.1:0
smtp_host_lookup = dns
"""


class Content:
    """A ContentSource over bytes; chunk_size splits it like the spool does."""

    def __init__(self, data: bytes, chunk_size: int = 1 << 20) -> None:
        self.data = data
        self.chunk_size = chunk_size

    @property
    def size(self) -> int:
        return len(self.data)

    async def read_all(self) -> bytes:
        return self.data

    def chunks(self) -> Iterator[bytes]:
        for start in range(0, len(self.data), self.chunk_size):
            yield self.data[start:start + self.chunk_size]


MESSAGE = b"Subject: test\r\n\r\nHello\r\n.dot line\r\n"


def request(recipients: list[str], nexthop: str, *, data: bytes = MESSAGE,
            sender: str = "bob@client.test", qid: str = "0QUEUEID0001") -> DeliveryRequest:
    envelope = Envelope(qid=qid, arrival=0.0, sender=sender, recipients=recipients,
                        size=len(data))
    return DeliveryRequest(qid, envelope, [Recipient(i, r) for i, r in enumerate(recipients)],
                           Route("smtp", nexthop, nexthop), Content(data))


def agent(extra: str = "", *, dns: FakeDns | None = None,
          hosts: dict[str, list[str]] | None = None, connector: Connector | None = None,
          tls_policy: TlsPolicy | None = None) -> SmtpDelivery:
    config = from_text(BASE_CF + extra)
    resolver = Resolver(config.smtp_host_lookup, dns=dns or FakeDns(),
                        native=fake_native(hosts or {}))
    return SmtpDelivery(config, resolver, tls_policy=tls_policy, connector=connector)


def port_map(ports: dict[str, int]) -> Connector:
    """A connector that sends (address, 25) to the scripted peer for that address;
    unmapped addresses get a real 'Connection refused' from a closed loopback port."""

    async def connect(address: str, port: int, local: str | None
                      ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        target = ports.get(address)
        if target is None:
            raise ConnectionRefusedError(111, "Connection refused")
        return await asyncio.open_connection(address, target)

    return connect
