"""Which transport and next hop a recipient goes to (Postfix's trivial-rewrite resolve).

In Postfix's order: transport_maps first (full address, then domain, then
``.parent`` domains, then ``*``); then local domains (mydestination) go to
``local``; everything else to default_transport, whose next hop is, in
decreasing precedence, the one in default_transport, relayhost, or the
recipient domain. A next hop in brackets (``[host]:port``) skips the MX
lookup in the smtp agent.
"""

from __future__ import annotations

from pathlib import Path

from mta import address as addr
from mta.config import Config
from mta.delivery import Route
from mta.mailboxes import Mailboxes
from mta.maps import TableList, open_tables


def split_transport(value: str) -> tuple[str, str]:
    """``transport:nexthop`` → (transport, nexthop); either may be empty."""
    transport, _, nexthop = value.strip().partition(":")
    return transport.strip().lower(), nexthop.strip()


class Router:
    def __init__(self, config: Config, mailboxes: Mailboxes) -> None:
        self.config = config
        self.mailboxes = mailboxes
        maps = config.transport_maps
        self.transport_maps = (open_tables(maps, Path(config.directory)) if maps
                               else TableList([]))
        self.default_transport, default_nexthop = split_transport(config.default_transport)
        self.default_transport = self.default_transport or "smtp"
        self.default_nexthop = default_nexthop or config.relayhost.strip()

    def _lookup(self, recipient: str, domain: str) -> str | None:
        if not self.transport_maps:
            return None
        keys = [recipient.lower()]
        if domain:
            keys.append(domain)
            labels = domain.split(".")
            keys.extend("." + ".".join(labels[i:]) for i in range(1, len(labels)))
        keys.append("*")
        for key in keys:
            value = self.transport_maps.lookup(key)
            if value is not None:
                return value
        return None

    def route(self, recipient: str) -> Route:
        domain = addr.domain_of(recipient)
        local = not domain or self.mailboxes.is_local_domain(domain)
        value = self._lookup(recipient, domain)
        if value is not None:
            transport, nexthop = split_transport(value)
            if not transport:
                transport = "local" if local else self.default_transport
            if transport in ("error", "retry"):
                return Route(transport, nexthop)
            if not nexthop:
                nexthop = (domain or self.config.myhostname) if (
                    local or transport == "local") else (self.default_nexthop or domain)
            return Route(transport, nexthop, nexthop)
        if local:
            return Route("local", domain or self.config.myhostname)
        if self.default_transport in ("error", "retry"):
            return Route(self.default_transport, self.default_nexthop)
        nexthop = self.default_nexthop or domain
        return Route(self.default_transport, nexthop, nexthop)
