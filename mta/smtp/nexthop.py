"""A next hop as Postfix writes it, and the servers it leads to (MX hosts, their addresses).

One place for what the smtp agent, the TLS policy (the ``nexthop`` name to
match) and ``mta tls-check`` all need: ``domain``, ``domain:port``,
``[host]`` and ``[host]:port`` (smtp(8)); brackets turn the MX lookup off.
"""

from __future__ import annotations

from dataclasses import dataclass

from mta.resolver import LookupFailure, MxHost, Resolver

SMTP_PORT = 25
_SERVICE_PORTS = {"smtp": 25, "submission": 587, "submissions": 465, "smtps": 465,
                  "lmtp": 24}


@dataclass(frozen=True, slots=True)
class NextHop:
    host: str
    port: int
    mx_lookup: bool


def parse_nexthop(text: str) -> NextHop:
    """``domain``, ``host:port``, ``[host]`` or ``[host]:port``, as in Postfix.

    Brackets turn the MX lookup off (smtp(8)); a port may be a number or a
    service name; ``[ipv6:addr]`` and an ``inet:`` prefix (LMTP's form) are
    accepted. ValueError for an unknown service name.
    """
    text = text.strip()
    if text.lower().startswith("inet:"):
        text = text[5:]
    mx_lookup = True
    port_text = ""
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        mx_lookup = False
        if rest.startswith(":"):
            port_text = rest[1:]
        if host.lower().startswith("ipv6:"):
            host = host[5:]
    else:
        host, sep, port_text = text.rpartition(":")
        if not sep:
            host, port_text = text, ""
    port = SMTP_PORT
    if port_text:
        if port_text.isdigit():
            port = int(port_text)
        elif port_text.lower() in _SERVICE_PORTS:
            port = _SERVICE_PORTS[port_text.lower()]
        else:
            raise ValueError(f"unknown service {port_text!r} in next hop {text!r}")
    return NextHop(host.lower().rstrip("."), port, mx_lookup)


async def server_addresses(resolver: Resolver, nexthop: NextHop,
                           limit: int = 0) -> list[tuple[MxHost, str]]:
    """(MX host, address) pairs in the order to try them, at most limit of them
    (smtp_mx_address_limit; 0: no limit). LookupFailure when there are none."""
    if nexthop.mx_lookup:
        hosts = await resolver.mx_hosts(nexthop.host)
    else:
        hosts = [MxHost(0, nexthop.host, implicit=True)]
    servers: list[tuple[MxHost, str]] = []
    failure: LookupFailure | None = None
    for mx in hosts:
        try:
            addresses = await resolver.addresses(mx.hostname)
        except LookupFailure as error:
            # An MX host that does not resolve is skipped; the domain's own
            # name (no MX) not resolving is final for it (RFC 5321 §5.1).
            failure = error
            continue
        servers.extend((mx, address) for address in addresses)
        if limit and len(servers) >= limit:
            return servers[:limit]
    if not servers:
        assert failure is not None
        if not hosts[0].implicit and failure.permanent:
            # MX records that point nowhere: a DNS problem of the domain's that
            # its owner may still fix, so defer (Postfix does the same).
            raise LookupFailure("4.4.3", failure.text)
        raise failure
    return servers
