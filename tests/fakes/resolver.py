"""A fake DNS backend for mta.resolver.Resolver: records from dictionaries, failures
by name, and a log of every query, so no test ever asks a real name server."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from mta.resolver import HostNotFound, NativeLookup, NoData, TryAgain


@dataclass
class FakeDns:
    """DnsBackend over dictionaries.

    ``mx``: domain -> [(preference, host)] (``"."`` as host is a null MX);
    ``a`` / ``aaaa``: host -> [address]; names in ``nxdomain`` do not exist;
    names in ``servfail`` fail temporarily; names in ``hang`` never answer
    (the resolver's own timeout must end the wait). A name with records of
    another type answers NoData for the missing type.
    """

    mx_records: dict[str, list[tuple[int, str]]] = field(default_factory=dict)
    a: dict[str, list[str]] = field(default_factory=dict)
    aaaa: dict[str, list[str]] = field(default_factory=dict)
    nxdomain: set[str] = field(default_factory=set)
    servfail: set[str] = field(default_factory=set)
    hang: set[str] = field(default_factory=set)
    queries: list[tuple[str, str]] = field(default_factory=list)

    def _exists(self, name: str) -> bool:
        return name in self.mx_records or name in self.a or name in self.aaaa

    async def _check(self, name: str, rdtype: str) -> None:
        self.queries.append((name, rdtype))
        if name in self.hang:
            await asyncio.Event().wait()
        if name in self.servfail:
            raise TryAgain(f"SERVFAIL for {name}/{rdtype}")
        if name in self.nxdomain or not self._exists(name):
            raise HostNotFound(name)

    async def mx(self, name: str) -> list[tuple[int, str]]:
        await self._check(name, "MX")
        if name not in self.mx_records:
            raise NoData(name)
        return list(self.mx_records[name])

    async def addresses(self, name: str, rdtype: str) -> list[str]:
        await self._check(name, rdtype)
        table = self.a if rdtype == "A" else self.aaaa
        if name not in table:
            raise NoData(name)
        return list(table[name])


def fake_native(hosts: dict[str, list[str]]) -> NativeLookup:
    """A stand-in for getaddrinfo: /etc/hosts as a dictionary."""

    async def lookup(name: str) -> list[str]:
        if name not in hosts:
            raise HostNotFound(name)
        return list(hosts[name])

    return lookup
