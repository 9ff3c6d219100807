"""Client event rates: Postfix's anvil(8) rate counters.

Postfix's smtpd asks anvil how many connections, MAIL commands, RCPT
commands, new TLS sessions and AUTH commands one client address has made to
one service in the current time unit (anvil_rate_time_unit, 60s), and
refuses when a smtpd_client_*_rate_limit is exceeded. The window is
anvil's: it starts at a client's first event and all of that client's rates
start again from zero at its first event after a whole unit has passed (a
fixed window per client, not a sliding one), so a client held at the limit
gets through again once a unit after its first counted event.

One instance counts for the whole daemon: the master's (workers.Supervisor)
when receiver workers share the listeners, else the one the listeners'
ConnectionRegistry objects share (master.Receiver). It also keeps anvil's
statistics: the highest connection count and rates since the last report,
which the master logs every anvil_status_update_time as anvil does.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

# The events and the parameter that limits each (0: no limit, Postfix's default).
LIMITS = {
    "connection": "smtpd_client_connection_rate_limit",
    "message": "smtpd_client_message_rate_limit",
    "recipient": "smtpd_client_recipient_rate_limit",
    "newtls": "smtpd_client_new_tls_session_rate_limit",
    "auth": "smtpd_client_auth_rate_limit",
}


# anvil's statistics lines, in its order: what is counted, its name there,
# and whether it is a rate (per time unit) or the connection count.
_STATISTICS = (("connection", "connection rate", True), ("count", "connection count", False),
               ("message", "message rate", True), ("recipient", "recipient rate", True),
               ("newtls", "newtls rate", True), ("auth", "auth rate", True))


@dataclass
class _Maximum:
    value: int
    ident: str  # listener:address, anvil's service:address
    when: float  # wall-clock time


def _stamp(when: float) -> str:
    """ctime(3) less the weekday and the year, as anvil prints it: Nov 23 04:36:10."""
    return time.strftime("%b %e %H:%M:%S", time.localtime(when))


class _Client:
    __slots__ = ("counts", "start")

    def __init__(self, start: float) -> None:
        self.start = start
        self.counts: dict[str, int] = {}


class ClientRates:
    """Event counts per (listener, client address) in the current time unit."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._clients: dict[tuple[str, str], _Client] = {}
        self._swept = clock()
        self._maxima: dict[str, _Maximum] = {}  # by event, and "count"
        self._max_cache: tuple[int, float] = (0, 0.0)

    def event(self, listener: str, address: str, event: str, unit: float,
              count: bool = True) -> int:
        """The client's rate of event in its current unit, this one included
        when count (a new TLS session is first only looked at, as Postfix's
        anvil_clnt_newtls_stat, and counted once the handshake made one)."""
        now = self._clock()
        self._sweep(now, unit)
        key = (listener, address)
        client = self._clients.get(key)
        if client is None or now - client.start > unit:
            # As anvil: a new unit starts with the client's first event after
            # the last one ended, and every rate of the client starts over.
            client = self._clients[key] = _Client(now)
        rate = client.counts.get(event, 0)
        if count:
            rate += 1
            client.counts[event] = rate
            self._note(event, rate, key)
            if len(self._clients) > self._max_cache[0]:
                self._max_cache = (len(self._clients), time.time())
        return rate

    def connections(self, listener: str, address: str, count: int) -> None:
        """A client's connection count now (this connection included), for
        the statistics; the count itself is kept by whoever admits."""
        self._note("count", count, (listener, address))

    def _note(self, what: str, value: int, key: tuple[str, str]) -> None:
        best = self._maxima.get(what)
        if best is None or value > best.value:
            self._maxima[what] = _Maximum(value, f"{key[0]}:{key[1]}", time.time())

    def statistics(self, unit: float) -> list[str]:
        """anvil's statistics lines for the maxima since the last call (none
        when nothing was counted), which then start again."""
        lines = []
        for what, name, per_unit in _STATISTICS:
            if (best := self._maxima.get(what)) is not None:
                per = f"/{int(unit)}s" if per_unit else ""
                lines.append(f"statistics: max {name} {best.value}{per} for ({best.ident}) "
                             f"at {_stamp(best.when)}")
        size, when = self._max_cache
        if size:
            lines.append(f"statistics: max cache size {size} at {_stamp(when)}")
        self._maxima.clear()
        self._max_cache = (0, 0.0)
        return lines

    def _sweep(self, now: float, unit: float) -> None:
        """Forget clients whose unit is over, once per unit (anvil's
        cleanup timer): the table holds only the clients of the last unit."""
        if now - self._swept < unit:
            return
        self._swept = now
        stale = [key for key, client in self._clients.items() if now - client.start > unit]
        for key in stale:
            del self._clients[key]

    def __len__(self) -> int:
        return len(self._clients)
