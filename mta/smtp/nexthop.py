"""A next hop as Postfix writes it, and the servers it leads to (MX hosts, their addresses).

One place for what the smtp agent, the TLS policy (the ``nexthop`` name to
match) and ``mta tls-check`` all need: ``domain``, ``domain:port``,
``[host]`` and ``[host]:port`` (smtp(8)); brackets turn the MX lookup off.
"""

from __future__ import annotations

from collections.abc import Callable
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


async def server_addresses(resolver: Resolver, nexthop: NextHop, limit: int = 0,
                           is_self: Callable[[str], bool] | None = None
                           ) -> list[tuple[MxHost, str]]:
    """(MX host, address) pairs in the order to try them, at most limit of them
    (smtp_mx_address_limit; 0: no limit). LookupFailure when there are none.

    is_self(address) says whether a server at nexthop's port is this MTA
    itself (mta/smtp/myself.py). Postfix smtp_addr.c: neither myself nor a
    server of my preference or worse is tried (as a backup MX we hand mail
    only to better ones; the others would hand it back); when none better is
    left the mail loops (5.4.6), unless the better MX hosts merely did not
    resolve (4.4.4: they may, later)."""
    if nexthop.mx_lookup:
        hosts = await resolver.mx_hosts(nexthop.host)
    else:
        hosts = [MxHost(0, nexthop.host, implicit=True)]
    servers: list[tuple[MxHost, str]] = []
    failure: LookupFailure | None = None
    for mx in hosts:
        if limit and len(servers) >= limit and (
                is_self is None or mx.preference > servers[limit - 1][0].preference):
            break  # enough; though a host that ties with the last one kept may be myself
        try:
            addresses = await resolver.addresses(mx.hostname)
        except LookupFailure as error:
            # An MX host that does not resolve is skipped; the domain's own
            # name (no MX) not resolving is final for it (RFC 5321 §5.1).
            failure = error
            continue
        if is_self is not None and any(is_self(address) for address in addresses):
            servers = _better_than_myself(nexthop, hosts, servers, mx)
            break
        servers.extend((mx, address) for address in addresses)
    if not servers:
        assert failure is not None
        if not hosts[0].implicit and failure.permanent:
            # MX records that point nowhere: a DNS problem of the domain's that
            # its owner may still fix, so defer (Postfix does the same).
            raise LookupFailure("4.4.3", failure.text)
        raise failure
    return servers[:limit] if limit else servers


def _better_than_myself(nexthop: NextHop, hosts: list[MxHost],
                        servers: list[tuple[MxHost, str]], me: MxHost
                        ) -> list[tuple[MxHost, str]]:
    """The servers more preferred than me (an MX host, or the one host of a
    [host] next hop or an MX-less domain, which has nothing better), or the
    LookupFailure that none is left. Postfix smtp_find_self and
    smtp_truncate_self, with the texts of smtp_domain_addr/smtp_host_addr."""
    better = [(mx, address) for mx, address in servers if mx.preference < me.preference]
    if better:
        return better
    if hosts[0].preference < me.preference:
        # Better MX hosts exist but none resolved: we are a backup MX, and
        # the primary may be back later.
        raise LookupFailure("4.4.4", f"unable to find primary relay for {nexthop.host}")
    raise LookupFailure("5.4.6", f"mail for {nexthop.host} loops back to myself")
