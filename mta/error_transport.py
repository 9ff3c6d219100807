"""The ``error`` and ``retry`` transports: fail recipients without trying (Postfix error(8)).

``error:5.1.1 no such user here`` bounces with that status and text;
``retry:4.3.0 maintenance`` defers. The status may be left out (5.0.0 and
4.0.0 then). transport_maps uses them to refuse or hold mail by address or
domain.
"""

from __future__ import annotations

import re

from mta.delivery import DeliveryRequest, DeliveryResult, results_for_all

_DSN = re.compile(r"([245]\.\d{1,3}\.\d{1,3})\s*(.*)\Z", re.S)


def status_and_text(nexthop: str, default: str) -> tuple[str, str]:
    """The enhanced status code and text of an error:/retry: next hop."""
    match = _DSN.match(nexthop.strip())
    if match:
        return match.group(1), match.group(2) or "delivery failed"
    return default, nexthop.strip() or "delivery failed"


class ErrorDelivery:
    """error: bounce (a 5.x.x status) or defer (4.x.x) with the configured text."""

    name = "error"

    async def deliver(self, request: DeliveryRequest) -> list[DeliveryResult]:
        dsn, text = status_and_text(request.route.nexthop, "5.0.0")
        status = "deferred" if dsn.startswith("4") else "bounced"
        return results_for_all(request, status, dsn, text)


class RetryDelivery:
    """retry: always defer, so the mail waits in the queue."""

    name = "retry"

    async def deliver(self, request: DeliveryRequest) -> list[DeliveryResult]:
        dsn, text = status_and_text(request.route.nexthop, "4.0.0")
        if not dsn.startswith("4"):
            dsn = "4" + dsn[1:]
        return results_for_all(request, "deferred", dsn, text)
