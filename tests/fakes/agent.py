"""A delivery agent that holds every request until the test releases it."""

from __future__ import annotations

import asyncio

from mta.delivery import DeliveryRequest, DeliveryResult


class HoldingAgent:
    """Takes requests, remembers them, and answers "sent" once released."""

    name = "smtp"

    def __init__(self) -> None:
        self.requests: list[DeliveryRequest] = []
        self.arrived = asyncio.Event()
        self.release = asyncio.Event()

    async def deliver(self, request: DeliveryRequest) -> list[DeliveryResult]:
        self.requests.append(request)
        self.arrived.set()
        await self.release.wait()
        return [DeliveryResult(r.index, "sent", "2.0.0", "250 ok") for r in request.recipients]
