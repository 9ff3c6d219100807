"""Name service for the SMTP client: MX hosts by preference and their addresses.

Two mechanisms, chosen by smtp_host_lookup as in Postfix: ``dns`` (MX, A and
AAAA records through dnspython's async resolver) and ``native`` (the system's
getaddrinfo, so /etc/hosts names such as ``localhost`` work on machines
without a DNS server). Both come in through the constructor; tests use a
fake backend and never touch the network.

Outcomes follow RFC 5321 §5.1 and RFC 7505: MX records sorted by preference
with ties shuffled; no MX records → the domain itself is the one host; a
null MX (``MX 0 .``) → the domain accepts no mail (bounce, never try);
NXDOMAIN → a permanent error; SERVFAIL or a timeout → a temporary one.
"""

from __future__ import annotations

import asyncio
import ipaddress
import random
import socket
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from prometheus_client import Counter

from mta.metrics import REGISTRY

LOOKUPS = Counter("mta_dns_lookups", "Name service lookups by the SMTP client.",
                  ["type", "result"], registry=REGISTRY)


# -- what a backend raises -----------------------------------------------------------------
class HostNotFound(Exception):
    """NXDOMAIN: the name does not exist."""


class NoData(Exception):
    """The name exists but has no records of the asked type."""


class TryAgain(Exception):
    """SERVFAIL, timeout, or no usable name server: ask again later."""


class DnsUnavailable(TryAgain):
    """No DNS at all (no resolver configuration): native lookups may stand in."""


class DnsBackend(Protocol):
    """The DNS operations the resolver needs; dnspython's or a test fake."""

    async def mx(self, name: str) -> list[tuple[int, str]]: ...

    async def addresses(self, name: str, rdtype: str) -> list[str]: ...


# -- what the resolver raises --------------------------------------------------------------
class LookupFailure(Exception):
    """A lookup that ends this delivery attempt: DSN code and Postfix's text."""

    def __init__(self, dsn: str, text: str) -> None:
        super().__init__(text)
        self.dsn = dsn
        self.text = text

    @property
    def permanent(self) -> bool:
        return self.dsn.startswith("5")


class NullMx(LookupFailure):
    """RFC 7505: the domain publishes that it accepts no mail."""


@dataclass(frozen=True, slots=True)
class MxHost:
    preference: int
    hostname: str
    implicit: bool = False  # no MX records: the domain itself (RFC 5321 §5.1)


def is_ip_literal(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def _not_found(name: str, rdtype: str, temporary: bool) -> LookupFailure:
    # Postfix's wording (dns_strerror via smtp_addr.c), so operators recognise it.
    if temporary:
        return LookupFailure("4.4.3", f"Host or domain name not found. Name service error "
                                      f"for name={name} type={rdtype}: Host not found, "
                                      "try again")
    return LookupFailure("5.4.4", f"Host or domain name not found. Name service error for "
                                  f"name={name} type={rdtype}: Host not found")


class DnspythonBackend:
    """DNS through dnspython's asyncio resolver (created lazily from resolv.conf)."""

    def __init__(self, resolver: Any = None, timeout: float = 10.0) -> None:
        self._resolver = resolver
        self.timeout = timeout

    def _get(self) -> Any:
        if self._resolver is None:
            import dns.asyncresolver
            import dns.resolver
            try:
                self._resolver = dns.asyncresolver.Resolver()
            except dns.resolver.NoResolverConfiguration as error:
                raise DnsUnavailable(str(error)) from None
        return self._resolver

    async def _resolve(self, name: str, rdtype: str) -> Any:
        import dns.exception
        import dns.resolver
        resolver = self._get()
        try:
            return await resolver.resolve(name, rdtype, lifetime=self.timeout, search=False)
        except dns.resolver.NXDOMAIN:
            raise HostNotFound(name) from None
        except dns.resolver.NoAnswer:
            raise NoData(name) from None
        except dns.exception.DNSException as error:  # SERVFAIL, timeout, no servers
            raise TryAgain(str(error)) from None

    async def mx(self, name: str) -> list[tuple[int, str]]:
        import dns.name
        answer = await self._resolve(name, "MX")
        return [(int(rr.preference),
                 "." if rr.exchange == dns.name.root else rr.exchange.to_text(True))
                for rr in answer]

    async def addresses(self, name: str, rdtype: str) -> list[str]:
        answer = await self._resolve(name, rdtype)
        return [rr.address for rr in answer]


NativeLookup = Callable[[str], Awaitable[list[str]]]


async def getaddrinfo_lookup(name: str) -> list[str]:
    """The system resolver (nsswitch: /etc/hosts, then whatever it says)."""
    loop = asyncio.get_running_loop()
    try:
        infos = await loop.getaddrinfo(name, None, type=socket.SOCK_STREAM)
    except socket.gaierror as error:
        if error.errno in (socket.EAI_AGAIN, getattr(socket, "EAI_SYSTEM", -11)):
            raise TryAgain(str(error)) from None
        raise HostNotFound(name) from None
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


class Resolver:
    """MX hosts and addresses, with smtp_host_lookup's mechanisms in order."""

    def __init__(self, methods: Sequence[str] = ("dns", "native"), *,
                 dns: DnsBackend | None = None, native: NativeLookup | None = None,
                 preference: str = "any", rand: random.Random | None = None) -> None:
        unknown = set(methods) - {"dns", "native"}
        if unknown or not methods:
            raise ValueError(f"smtp_host_lookup: expected dns and/or native, got {methods!r}")
        self.methods = tuple(methods)
        self.dns = dns if dns is not None else DnspythonBackend()
        self.native = native or getaddrinfo_lookup
        self.preference = preference
        self.rand = rand or random.Random()

    async def mx_hosts(self, domain: str) -> list[MxHost]:
        """The hosts to try for a domain, best first (RFC 5321 §5.1)."""
        if "dns" not in self.methods or is_ip_literal(domain):
            return [MxHost(0, domain, implicit=True)]
        try:
            records = await self.dns.mx(domain)
        except NoData:
            LOOKUPS.labels("MX", "nodata").inc()
            return [MxHost(0, domain, implicit=True)]
        except DnsUnavailable:
            if "native" not in self.methods:
                LOOKUPS.labels("MX", "tempfail").inc()
                raise _not_found(domain, "MX", temporary=True) from None
            LOOKUPS.labels("MX", "unavailable").inc()
            return [MxHost(0, domain, implicit=True)]
        except HostNotFound:
            LOOKUPS.labels("MX", "nxdomain").inc()
            raise _not_found(domain, "MX", temporary=False) from None
        except TryAgain:
            LOOKUPS.labels("MX", "tempfail").inc()
            raise _not_found(domain, "MX", temporary=True) from None
        if not records:
            LOOKUPS.labels("MX", "nodata").inc()
            return [MxHost(0, domain, implicit=True)]
        LOOKUPS.labels("MX", "ok").inc()
        usable = [(pref, host.rstrip(".").lower()) for pref, host in records
                  if host not in (".", "")]
        if not usable:
            # RFC 7505 §3: "MX 0 ." says the domain accepts no mail; do not try.
            raise NullMx("5.1.10", f"Domain {domain} does not accept mail (nullMX)")
        keyed = sorted((pref, self.rand.random(), host) for pref, host in dict.fromkeys(usable))
        return [MxHost(pref, host) for pref, _, host in keyed]

    async def addresses(self, host: str) -> list[str]:
        """The addresses of one host, in smtp_address_preference order."""
        if is_ip_literal(host):
            return [host]
        methods = self.methods
        if host == "localhost" or host.endswith(".localhost"):
            methods = ("native",)  # RFC 6761 §6.3: never ask the DNS about localhost
        last: LookupFailure | None = None
        for method in methods:
            try:
                found = await (self._dns_addresses(host) if method == "dns"
                               else self.native(host))
            except (HostNotFound, NoData, DnsUnavailable) as error:
                LOOKUPS.labels("A", "notfound").inc()
                last = _not_found(host, "A", temporary=isinstance(error, DnsUnavailable))
                continue  # "dns, native": native for hosts the DNS does not know
            except TryAgain:
                LOOKUPS.labels("A", "tempfail").inc()
                raise _not_found(host, "A", temporary=True) from None
            if found:
                LOOKUPS.labels("A", "ok").inc()
                return self._ordered(found)
            last = _not_found(host, "A", temporary=False)
        assert last is not None
        raise last

    async def _dns_addresses(self, host: str) -> list[str]:
        found: list[str] = []
        missing = 0
        temporary: TryAgain | None = None
        for rdtype in ("A", "AAAA"):
            try:
                found.extend(await self.dns.addresses(host, rdtype))
            except (NoData, HostNotFound):
                missing += 1
            except TryAgain as error:
                temporary = error
        if found:
            return found
        if temporary is not None:
            raise temporary
        raise HostNotFound(host)

    def _ordered(self, addresses: list[str]) -> list[str]:
        if self.preference == "any":
            return addresses
        want = 4 if self.preference == "ipv4" else 6
        return sorted(addresses, key=lambda a: ipaddress.ip_address(a).version != want)
