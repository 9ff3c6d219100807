"""The Prometheus registry and the /metrics listener.

Metrics are declared in the module that owns them (smtpd counts connections,
qmgr counts deliveries), all in this one registry and all named ``mta_…``.
No label ever carries an address, a queue id or a hostname: cardinality stays
bounded whatever the traffic.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

log = logging.getLogger(__name__)

REGISTRY = CollectorRegistry(auto_describe=True)


class MetricsServer:
    """A minimal HTTP/1.0 server for GET /metrics on the event loop (no thread)."""

    def __init__(self, host: str, port: int, registry: CollectorRegistry = REGISTRY,
                 refresh: Callable[[], Awaitable[None]] | None = None) -> None:
        self.host = host
        self.port = port
        self.registry = registry
        self.refresh = refresh  # gathers other processes' counters before a scrape
        self._server: asyncio.AbstractServer | None = None

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, self.host, self.port)
        sockets = self._server.sockets or ()
        if sockets:
            self.port = sockets[0].getsockname()[1]

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            request = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
            method, _, rest = request.partition(b" ")
            target = rest.partition(b" ")[0].split(b"?")[0]
            if method not in (b"GET", b"HEAD"):
                status, body, ctype = b"405 Method Not Allowed", b"", b"text/plain"
            elif target in (b"/metrics", b"/"):
                status, ctype = b"200 OK", CONTENT_TYPE_LATEST.encode()
                if self.refresh is not None:
                    await self.refresh()
                body = generate_latest(self.registry)
            else:
                status, body, ctype = b"404 Not Found", b"not found\n", b"text/plain"
            head = (b"HTTP/1.0 " + status + b"\r\nContent-Type: " + ctype +
                    b"\r\nContent-Length: " + str(len(body)).encode() + b"\r\n\r\n")
            writer.write(head + (body if method == b"GET" else b""))
            await writer.drain()
        except (TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError,
                ConnectionError):
            pass
        finally:
            writer.close()
