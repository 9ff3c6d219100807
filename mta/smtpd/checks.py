"""smtpd restrictions: relay control and recipient checks, as pure decisions.

The lists are Postfix's: ``smtpd_relay_restrictions`` is evaluated for every
RCPT, then ``smtpd_recipient_restrictions``, then the implicit
``reject_unlisted_recipient`` for local domains. Each restriction answers
permit, reject (with its reply) or "dunno" (go on); the first answer that is
not dunno ends the list. The protocol asks; this module decides.
"""

from __future__ import annotations

import functools
import ipaddress
from collections.abc import Callable
from dataclasses import dataclass, field

from mta import address as addr
from mta.config import Config
from mta.errors import ConfigError
from mta.mailboxes import Mailboxes
from mta.smtpd import replies

PERMIT = "permit"
DUNNO = None
# What keeps a server from relaying for anyone (Postfix's list, less what we
# do not implement: defer, defer_if_permit, check_relay_domains).
_RELAY_STOPPERS = frozenset({"reject_unauth_destination", "defer_unauth_destination",
                             "reject"})


@functools.lru_cache(maxsize=4096)
def client_ip(address: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """A client's address, parsed once: it is looked at on every connection
    and every MAIL and RCPT (ipaddress parsing was 1% of a receiver). None
    when it is not an IP address."""
    try:
        return ipaddress.ip_address(address)
    except ValueError:
        return None


@dataclass
class ClientFacts:
    """What smtpd knows about the client when it asks for a decision."""

    address: str
    hostname: str = "unknown"
    port: int = 0
    listener: str = "smtp"
    tls: bool = False
    sasl_username: str | None = None
    ccert_trusted: bool = False
    ccert_fingerprints: tuple[str, ...] = ()
    extra: dict[str, object] = field(default_factory=dict)

    @property
    def peer(self) -> str:
        return f"{self.hostname}[{self.address}]"


Decision = str | None  # PERMIT, a reject reply, or DUNNO
Restriction = Callable[[ClientFacts, str, str], Decision]


class Restrictions:
    """The configured restriction lists, compiled once per configuration."""

    def __init__(self, config: Config, mailboxes: Mailboxes,
                 relay_clientcerts: Callable[[tuple[str, ...]], bool] | None = None) -> None:
        self.config = config
        self.mailboxes = mailboxes
        self.mynetworks = config.mynetworks
        self.relay_domains = config.relay_domains
        self._relay_clientcerts = relay_clientcerts or (lambda fingerprints: False)
        self._known: dict[str, Restriction] = {
            "permit_mynetworks": self._permit_mynetworks,
            "permit_sasl_authenticated": self._permit_sasl_authenticated,
            "permit_tls_all_clientcerts": self._permit_tls_all_clientcerts,
            "permit_tls_clientcerts": self._permit_tls_clientcerts,
            "reject_unauth_destination": self._reject_unauth_destination,
            "defer_unauth_destination": self._defer_unauth_destination,
            "permit_auth_destination": self._permit_auth_destination,
            "reject_unlisted_recipient": self._reject_unlisted_recipient,
            "permit": lambda client, sender, rcpt: PERMIT,
            "reject": lambda client, sender, rcpt: replies.ACCESS_DENIED.format(
                address=rcpt, what="Recipient"),
        }
        self.relay = self._compile("smtpd_relay_restrictions")
        self.recipient = self._compile("smtpd_recipient_restrictions")
        self._refuse_open_relay()

    def _refuse_open_relay(self) -> None:
        """Postfix refuses to start (smtpd_check.c) unless one of the two
        lists can refuse mail for other domains before an unconditional
        permit: a list without one makes an open relay."""
        for name in ("smtpd_relay_restrictions", "smtpd_recipient_restrictions"):
            for item in self.config.get(name):
                item = item.lower()
                if item == "permit":
                    break  # what follows it is never reached
                if item in _RELAY_STOPPERS:
                    return
        raise ConfigError(
            f"{self.config.where('smtpd_relay_restrictions')}: in parameters "
            "smtpd_relay_restrictions and smtpd_recipient_restrictions, specify at least "
            "one working instance of: reject_unauth_destination, defer_unauth_destination "
            "or reject")

    def _compile(self, name: str) -> list[Restriction]:
        compiled = []
        for item in self.config.get(name):
            function = self._known.get(item.lower())
            if function is None:
                raise ConfigError(f"{self.config.where(name)}: {name}: unknown restriction "
                                  f"{item!r}")
            compiled.append(function)
        return compiled

    # -- the questions ------------------------------------------------------------
    def check_recipient(self, client: ClientFacts, sender: str, recipient: str) -> str | None:
        """None to accept the recipient, else the reject reply."""
        for restrictions in (self.relay, self.recipient):
            for restriction in restrictions:
                decision = restriction(client, sender, recipient)
                if decision is PERMIT:
                    break
                if decision is not DUNNO:
                    return decision
        return self._reject_unlisted_recipient(client, sender, recipient)

    def in_mynetworks(self, address: str) -> bool:
        ip = client_ip(address)
        if ip is None:
            return False
        return any(ip.version == net.version and ip in net for net in self.mynetworks)

    def is_auth_destination(self, recipient: str) -> bool:
        """Mail for this domain is ours to take: local or relay_domains."""
        domain = addr.domain_of(recipient)
        if not domain:
            return True  # unqualified: becomes @$myorigin
        return self.mailboxes.is_local_domain(domain) or addr.domain_in(
            domain, self.relay_domains, subdomains=True)

    # -- the restrictions ---------------------------------------------------------
    def _permit_mynetworks(self, client: ClientFacts, sender: str, rcpt: str) -> Decision:
        return PERMIT if self.in_mynetworks(client.address) else DUNNO

    def _permit_sasl_authenticated(self, client: ClientFacts, sender: str,
                                   rcpt: str) -> Decision:
        return PERMIT if client.sasl_username else DUNNO

    def _permit_tls_all_clientcerts(self, client: ClientFacts, sender: str,
                                    rcpt: str) -> Decision:
        return PERMIT if client.ccert_trusted else DUNNO

    def _permit_tls_clientcerts(self, client: ClientFacts, sender: str, rcpt: str) -> Decision:
        if client.ccert_fingerprints and self._relay_clientcerts(client.ccert_fingerprints):
            return PERMIT
        return DUNNO

    def _reject_unauth_destination(self, client: ClientFacts, sender: str,
                                   rcpt: str) -> Decision:
        return DUNNO if self.is_auth_destination(rcpt) else replies.RELAY_DENIED.format(
            address=rcpt)

    def _defer_unauth_destination(self, client: ClientFacts, sender: str,
                                  rcpt: str) -> Decision:
        return DUNNO if self.is_auth_destination(rcpt) else replies.RELAY_DEFERRED.format(
            address=rcpt)

    def _permit_auth_destination(self, client: ClientFacts, sender: str,
                                 rcpt: str) -> Decision:
        return PERMIT if self.is_auth_destination(rcpt) else DUNNO

    def _reject_unlisted_recipient(self, client: ClientFacts, sender: str,
                                   rcpt: str) -> Decision:
        domain = addr.domain_of(rcpt)
        if domain and self.mailboxes.is_local_domain(domain) and not self.mailboxes.exists(rcpt):
            return replies.USER_UNKNOWN.format(address=rcpt)
        return DUNNO
