"""Which transport and next hop a recipient goes to (Postfix's trivial-rewrite resolve).

Local domains (mydestination) go to ``local``; everything else to ``smtp``
with the recipient domain as next hop. The outbound issue adds relayhost and
transport_maps here, in this one place.
"""

from __future__ import annotations

from mta import address as addr
from mta.config import Config
from mta.delivery import Route
from mta.mailboxes import Mailboxes


class Router:
    def __init__(self, config: Config, mailboxes: Mailboxes) -> None:
        self.config = config
        self.mailboxes = mailboxes

    def route(self, recipient: str) -> Route:
        domain = addr.domain_of(recipient)
        if not domain or self.mailboxes.is_local_domain(domain):
            return Route("local", domain or self.config.myhostname)
        return Route("smtp", domain, domain)
