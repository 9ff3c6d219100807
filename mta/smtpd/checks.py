"""smtpd restrictions: client, HELO, sender, relay control and recipient checks, as pure decisions.

The lists are Postfix's: ``smtpd_relay_restrictions`` is evaluated for every
RCPT, then ``smtpd_recipient_restrictions``, then the implicit
``reject_unlisted_recipient`` for local domains; ``smtpd_client_restrictions``
judge the client, at RCPT with ``smtpd_delay_reject`` (the default) or once
at connect; ``smtpd_helo_restrictions`` judge the HELO/EHLO name, at RCPT or
at HELO/EHLO itself; ``smtpd_sender_restrictions`` likewise judge the
envelope sender at RCPT or at MAIL. Each restriction answers permit, reject (with its
reply) or "dunno" (go on); the first answer that is not dunno ends the list.
The check_*_access restrictions take the next item of the list as their
table (access.py reads it). The protocol asks; this module decides.
"""

from __future__ import annotations

import functools
import ipaddress
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from mta import address as addr
from mta.config import Config
from mta.errors import ConfigError
from mta.mailboxes import Mailboxes
from mta.maps import TableList, open_tables, split_specs
from mta.smtpd import access, hostnames, replies
from mta.smtpd.access import AccessMap
from mta.smtpd.sender_login import SenderLogins

PERMIT = "permit"
DUNNO = None
# What keeps a server from relaying for anyone (Postfix's list, less what we
# do not implement: defer_if_permit, check_relay_domains).
_RELAY_STOPPERS = frozenset({"reject_unauth_destination", "defer_unauth_destination",
                             "reject", "defer"})
_RELAY_LISTS = ("smtpd_relay_restrictions", "smtpd_recipient_restrictions")
_ALL_LISTS = (*_RELAY_LISTS, "smtpd_client_restrictions", "smtpd_helo_restrictions",
              "smtpd_sender_restrictions", "smtpd_data_restrictions")
_DATA = "smtpd_data_restrictions"
# The access restrictions: what each judges (the reply's class), and the
# lists that can ask it. The client, HELO and sender lists are judged
# without the rest of the envelope (with smtpd_delay_reject = no there is
# none yet: the client list runs at connect), so they take the client and
# their own subject only.
_ACCESS: dict[str, tuple[str, tuple[str, ...]]] = {
    "check_client_access": (access.CLIENT, _ALL_LISTS),
    "check_helo_access": (access.HELO, (*_RELAY_LISTS, "smtpd_helo_restrictions", _DATA)),
    "check_sender_access": (access.SENDER, (*_RELAY_LISTS, "smtpd_sender_restrictions",
                                            _DATA)),
    "check_recipient_access": (access.RECIPIENT, (*_RELAY_LISTS, _DATA)),
    "check_ccert_access": (access.CCERT, _ALL_LISTS),
    "check_sasl_access": (access.SASL_USER, _ALL_LISTS),
}
# Postfix's modifier: the next restriction's refusal is logged as
# "reject_warning" instead of answered.
WARN_IF_REJECT = "warn_if_reject"
# Postfix's generic_checks: a bare type:table in a list is the access
# restriction of the list's own subject.
_IMPLICIT_ACCESS = {"smtpd_client_restrictions": "check_client_access",
                    "smtpd_helo_restrictions": "check_helo_access",
                    "smtpd_sender_restrictions": "check_sender_access",
                    "smtpd_recipient_restrictions": "check_recipient_access",
                    "smtpd_relay_restrictions": "check_recipient_access"}
# The restrictions that judge one part of the request, and the lists that
# know it (for the error that names them; the access restrictions are in
# _ACCESS). The client, HELO and sender lists see no recipient, and the
# client and sender lists no HELO name (see _ACCESS).
_HELO_CHECKS = ("reject_invalid_helo_hostname", "reject_non_fqdn_helo_hostname",
                "reject_invalid_hostname", "reject_non_fqdn_hostname")
_WORKS_IN: dict[str, tuple[str, tuple[str, ...]]] = {
    **{name: ("Helo command", (*_RELAY_LISTS, "smtpd_helo_restrictions", _DATA))
       for name in _HELO_CHECKS},
    "reject_non_fqdn_sender": ("Sender address", (*_RELAY_LISTS, "smtpd_sender_restrictions",
                                                  _DATA)),
    **{name: ("Data command", (_DATA,)) for name in (
        "reject_multi_recipient_bounce", "reject_unauth_pipelining")},
    **{name: ("Sender address", ("smtpd_sender_restrictions",)) for name in (
        "reject_sender_login_mismatch", "reject_authenticated_sender_login_mismatch",
        "reject_unauthenticated_sender_login_mismatch")},
    **{name: ("Recipient address", _RELAY_LISTS) for name in (
        "reject_non_fqdn_recipient", "reject_unauth_destination", "defer_unauth_destination",
        "permit_auth_destination", "reject_unlisted_recipient")},
}
# What the client chooses freely: an OK for it before the relay control
# lets anyone who says so relay.
_FORGEABLE = {"check_helo_access": "HELO name", "check_sender_access": "sender address"}


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
    ccert_fingerprints: tuple[str, ...] = ()  # certificate, public key (Postfix's order)
    ccert_name: str = ""  # the client certificate's CN
    extra: dict[str, object] = field(default_factory=dict)
    # (action, text) of the access maps' WARN and INFO met by the last
    # decision: the session logs them with what only it knows (queue ID,
    # command, protocol), as Postfix's log_whatsup does, and clears them.
    whatsup: list[tuple[str, str]] = field(default_factory=list)

    @property
    def peer(self) -> str:
        return f"{self.hostname}[{self.address}]"


Decision = str | None  # PERMIT, a reject reply, or DUNNO
# (client, sender: None outside a transaction (VRFY), recipient, the HELO
# name: None when the client sent none)
Restriction = Callable[[ClientFacts, str | None, str, str | None], Decision]
# (client, its name[address]: what Postfix's generic_checks names in the reply)
ClientRestriction = Callable[[ClientFacts, str], Decision]
HeloRestriction = Callable[[ClientFacts, str], Decision]  # (client, HELO name)
SenderRestriction = Callable[[ClientFacts, str], Decision]  # (client, MAIL FROM address)


@dataclass(frozen=True)
class DataFacts:
    """What smtpd_data_restrictions judge at DATA, besides the client."""

    sender: str  # as sent; "" is the null sender
    # The recipient as sent when one RCPT was accepted; None for several, as
    # Postfix's smtpd_check_data judges no recipient then.
    recipient: str | None
    recipients: int  # RCPT commands accepted
    helo: str | None
    ill_pipelining: bool  # the client pipelined without PIPELINING


DataRestriction = Callable[[ClientFacts, DataFacts], Decision]
_R = TypeVar("_R", Restriction, ClientRestriction, HeloRestriction, SenderRestriction,
             DataRestriction)
AccessBuilders = Mapping[str, Callable[[AccessMap], _R]]
_LOGIN_MISMATCH = ("reject_sender_login_mismatch", "reject_authenticated_sender_login_mismatch",
                   "reject_unauthenticated_sender_login_mismatch")


class Restrictions:
    """The configured restriction lists, compiled once per configuration."""

    def __init__(self, config: Config, mailboxes: Mailboxes,
                 relay_clientcerts: Callable[[tuple[str, ...]], bool] | None = None) -> None:
        self.config = config
        self.mailboxes = mailboxes
        self.warnings: list[str] = []  # logged by whoever builds the restrictions
        # The access maps of the relay and recipient lists by (list, item
        # position), for the open-relay check.
        self._access_maps: dict[tuple[str, int], AccessMap] = {}
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
            "reject_plaintext_session": self._reject_plaintext_session,
            "reject_unlisted_recipient": self._reject_unlisted_recipient,
            "reject_non_fqdn_recipient": lambda client, sender, rcpt, helo: (
                self._non_fqdn(rcpt, access.RECIPIENT)),
            # The sender and HELO restrictions judge their part here too, as
            # in Postfix; without one (VRFY, no HELO) they have nothing to judge.
            "reject_non_fqdn_sender": lambda client, sender, rcpt, helo: (
                DUNNO if not sender else self._non_fqdn(sender, access.SENDER)),
            **{name: functools.partial(_about_helo, check)
               for name, check in self._helo_name_checks().items()},
            "permit": lambda client, sender, rcpt, helo: PERMIT,
            "reject": lambda client, sender, rcpt, helo: self._reject(rcpt, access.RECIPIENT),
            "defer": lambda client, sender, rcpt, helo: self._defer(rcpt, access.RECIPIENT),
        }
        recipient_access = self._access_in_recipient_lists()
        self.relay = self._compile("smtpd_relay_restrictions", self._known, recipient_access)
        self.recipient = self._compile("smtpd_recipient_restrictions", self._known,
                                       recipient_access)
        self._refuse_open_relay()
        self.client = self._compile("smtpd_client_restrictions", self._client_known(),
                                    self._access_in_client_list())
        # Postfix's smtpd_delay_reject again: judged at each RCPT and VRFY
        # (before the HELO restrictions), or once when the client connects,
        # its refusal then taking the greeting's place (protocol.py).
        self.client_at_connect = bool(self.client) and not config.smtpd_delay_reject
        self.client_at_rcpt = bool(self.client) and config.smtpd_delay_reject
        self.helo = self._compile("smtpd_helo_restrictions", self._helo_known(),
                                  self._access_in_helo_list())
        # Postfix's smtpd_delay_reject: the HELO restrictions wait for RCPT
        # (and VRFY), so that the reject is logged with the sender and the
        # recipient, and a client is not turned away before it says whom it
        # writes to; or they answer HELO/EHLO itself. Two flags, so that each
        # caller's cost with the empty default is one attribute test.
        self.helo_at_helo = bool(self.helo) and not config.smtpd_delay_reject
        self.helo_at_rcpt = bool(self.helo) and config.smtpd_delay_reject
        maps = config.smtpd_sender_login_maps
        self.sender_logins = SenderLogins(
            open_tables(maps, Path(config.directory)) if maps else TableList([]),
            config.recipient_delimiter, mailboxes.is_local_domain)
        self.sender = self._compile("smtpd_sender_restrictions", self._sender_known(),
                                    self._access_in_sender_list())
        # The same two moments as the HELO restrictions (smtpd_delay_reject).
        self.sender_at_mail = bool(self.sender) and not config.smtpd_delay_reject
        self.sender_at_rcpt = bool(self.sender) and config.smtpd_delay_reject
        # Judged at DATA, before the 354 (Postfix's smtpd_check_data).
        self.data = self._compile(_DATA, self._data_known(), self._access_in_data_list())

    def _refuse_open_relay(self) -> None:
        """Postfix refuses to start (smtpd_check.c) unless one of the two
        lists can refuse mail for other domains before an unconditional
        permit: a list without one makes an open relay. An access map is no
        such refusal (it refuses what it lists, and its OK relays), so a map
        of HELO names or senders that can answer OK where it decides relaying
        gets a warning: the client writes those."""
        before_stopper: list[tuple[str, int]] = []
        for name in _RELAY_LISTS:
            warned = False  # a stopper after warn_if_reject only logs
            for index, item in self._restrictions_of(name):
                if item == "permit":
                    break  # what follows it is never reached
                if item in _RELAY_STOPPERS and not warned:
                    self._warn_forgeable_ok(before_stopper, item)
                    return
                warned = item == WARN_IF_REJECT
                before_stopper.append((name, index))
        raise ConfigError(
            f"{self.config.where('smtpd_relay_restrictions')}: in parameters "
            "smtpd_relay_restrictions and smtpd_recipient_restrictions, specify at least "
            "one working instance of: reject_unauth_destination, defer_unauth_destination, "
            "reject or defer")

    def _warn_forgeable_ok(self, positions: list[tuple[str, int]], stopper: str) -> None:
        for name, index in positions:
            table = self._access_maps.get((name, index))
            if table is None or table.restriction not in _FORGEABLE or not table.can_permit:
                continue
            self.warnings.append(
                f"{self.config.where(name)}: {name}: {table.restriction} {table.spec} can "
                f"answer OK before {stopper}: any client that sends a listed "
                f"{_FORGEABLE[table.restriction]} may relay; use DUNNO to make an exception, "
                f"or place it after {stopper}")

    def _items(self, name: str) -> list[str]:
        """The items of a restriction list, a table such as inline:{ a=b, c=d }
        one item with its commas and spaces (Postfix splits lists so)."""
        return split_specs(self.config.expanded(name))

    def _restrictions_of(self, name: str) -> list[tuple[int, str]]:
        """(position, lowercased name) of each restriction of a list, without
        the tables that follow the access restrictions."""
        found = []
        items = self._items(name)
        index = 0
        while index < len(items):
            item = items[index].lower()
            found.append((index, item))
            index += 2 if item in _ACCESS else 1
        return found

    def _compile(self, name: str, known: Mapping[str, _R],
                 access_checks: AccessBuilders[_R]) -> list[_R]:
        """The list named name, each item looked up in known, an access
        restriction with the table after it; an unknown item, a missing or
        unusable table stop start and reload."""
        compiled = []
        items = self._items(name)
        where = f"{self.config.where(name)}: {name}"
        warned = False  # the item before was warn_if_reject
        for index, item in self._restrictions_of(name):
            if item == WARN_IF_REJECT:
                warned = True
                continue
            restriction = self._compile_one(name, where, items, index, item, known,
                                            access_checks)
            compiled.append(_warn_if_reject(restriction) if warned else restriction)
            warned = False
        if warned:
            # Postfix ignores it; say so once.
            self.warnings.append(f"{where}: warn_if_reject at the end of the list has no "
                                 "restriction to act on; ignored")
        return compiled

    def _compile_one(self, name: str, where: str, items: list[str], index: int, item: str,
                     known: Mapping[str, _R], access_checks: AccessBuilders[_R]) -> _R:
        """One restriction of a list: a name, an access restriction with its
        table, or a bare table (the access restriction of the list's subject)."""
        if item in _ACCESS:
            what, lists = _ACCESS[item]
            spec = items[index + 1] if index + 1 < len(items) else None
            if spec is None:
                raise ConfigError(f"{where}: unknown restriction {items[index]!r} without "
                                  f"a table: write {item} type:name")
            if ":" not in spec:
                raise ConfigError(f"{where}: restriction {item}: bad argument {spec!r}: "
                                  "need type:name")
            if name not in lists:
                raise ConfigError(f"{where}: {item} judges no {what.lower()} here: it "
                                  f"works in {', '.join(lists)}")
        elif ":" in item and name in _IMPLICIT_ACCESS:
            item, spec = _IMPLICIT_ACCESS[name], items[index]
        else:
            function = known.get(item)
            if function is None and item in _WORKS_IN:
                what, lists = _WORKS_IN[item]
                raise ConfigError(f"{where}: {item} judges no {what.lower()} here: it works "
                                  f"in {', '.join(lists)}")
            if function is None:
                raise ConfigError(f"{where}: unknown restriction {items[index]!r}")
            return function
        if item == "check_sasl_access" and not self.config.smtpd_sasl_auth_enable:
            # As Postfix's "restriction `check_sasl_access' ignored: no SASL
            # support": nobody logs in here, so it never matches.
            self.warnings.append(f"{where}: restriction 'check_sasl_access' ignored: "
                                 "smtpd_sasl_auth_enable = no")
        table = self._access_map(where, item, spec, _ACCESS[item][0])
        if name in _RELAY_LISTS:
            self._access_maps[name, index] = table
        return access_checks[item](table)

    def _access_map(self, where: str, restriction: str, spec: str, what: str) -> AccessMap:
        try:
            tables = open_tables(spec, Path(self.config.directory))
        except ConfigError as error:
            raise ConfigError(f"{where}: {restriction} {spec}: {error}") from None
        table = AccessMap(restriction, spec, tables, what, self.config.access_map_reject_code,
                          self.config.access_map_defer_code)
        self.warnings += [w for w in table.warnings if w not in self.warnings]
        return table

    # -- the access restrictions, one builder per kind of list -----------------------
    def _judge(self, table: AccessMap, keys: list[access.Key], name: str,
               client: ClientFacts) -> Decision:
        """An access map's answer as a restriction's: permit, a refusal
        (451 4.3.5 for an action Postern cannot carry out), or dunno."""
        action = table.answer(keys)
        if action is None or action.verdict == access.DUNNO:
            return DUNNO
        if action.verdict == access.LOG:
            client.whatsup.append((action.word.lower(), action.text))
            return DUNNO
        if action.verdict == access.PERMIT:
            return PERMIT
        return action.reply(name, table.what)

    def _client_access(self, table: AccessMap, client: ClientFacts) -> Decision:
        return self._judge(table, access.client_keys(client.hostname, client.address),
                           client.peer, client)

    def _sender_access(self, table: AccessMap, client: ClientFacts, sender: str) -> Decision:
        """The sender as sent names it in the refusal; looked up as
        user@$myorigin when unqualified, as Postfix looks up its rewritten form."""
        keys = access.mail_keys(addr.qualify(sender, self.config.myorigin),
                                self.config.recipient_delimiter,
                                self.config.smtpd_null_access_lookup_key)
        return self._judge(table, keys, sender, client)

    def _helo_access(self, table: AccessMap, client: ClientFacts, helo: str | None) -> Decision:
        """The HELO name and its parents; as Postfix's: no HELO/EHLO, no lookup."""
        if helo is None:
            return DUNNO
        return self._judge(table, access.domain_keys(helo), helo, client)

    def _recipient_access(self, table: AccessMap, client: ClientFacts,
                          recipient: str | None) -> Decision:
        """The recipient as the sender is looked up (user@$myorigin when
        unqualified), named as sent; None (several at DATA): no lookup."""
        if recipient is None:
            return DUNNO
        keys = access.mail_keys(addr.qualify(recipient, self.config.myorigin),
                                self.config.recipient_delimiter)
        return self._judge(table, keys, recipient, client)

    def _ccert_access(self, table: AccessMap, client: ClientFacts) -> Decision:
        """check_ccert_access: the client certificate's fingerprint, then its
        public key's (smtpd's digest, sha256), as Postfix looks them up; any
        certificate the client presented, trusted or not ("When directly
        checking the fingerprint, it is OK if the issuing CA is not
        trusted"). A refusal names the certificate's CN, as Postfix's does."""
        if not client.ccert_fingerprints:
            return DUNNO
        keys = [(fingerprint, False) for fingerprint in client.ccert_fingerprints]
        return self._judge(table, keys, client.ccert_name, client)

    def _sasl_access(self, table: AccessMap, client: ClientFacts) -> Decision:
        """check_sasl_access: the SASL login name, as it is (no partial
        keys), for an authenticated client only; a refusal names it with
        its unprintable characters as "_", as Postfix's does."""
        if not client.sasl_username:
            return DUNNO
        name = "".join(c if c.isprintable() else "_" for c in client.sasl_username)
        return self._judge(table, [(client.sasl_username, False)], name, client)

    def _access_in_recipient_lists(self) -> dict[str, Callable[[AccessMap], Restriction]]:
        def by_client(table: AccessMap) -> Restriction:
            return lambda client, sender, rcpt, helo: self._client_access(table, client)

        def by_helo(table: AccessMap) -> Restriction:
            return lambda client, sender, rcpt, helo: self._helo_access(table, client, helo)

        def by_sender(table: AccessMap) -> Restriction:
            # No sender outside a transaction (VRFY); "" is the null sender.
            return lambda client, sender, rcpt, helo: (
                DUNNO if sender is None else self._sender_access(table, client, sender))

        def by_recipient(table: AccessMap) -> Restriction:
            return lambda client, sender, rcpt, helo: self._recipient_access(table, client, rcpt)

        return {"check_client_access": by_client, "check_helo_access": by_helo,
                "check_sender_access": by_sender, "check_recipient_access": by_recipient,
                "check_ccert_access": lambda table: lambda client, sender, rcpt, helo: (
                    self._ccert_access(table, client)),
                "check_sasl_access": lambda table: lambda client, sender, rcpt, helo: (
                    self._sasl_access(table, client))}

    def _access_in_client_list(self) -> dict[str, Callable[[AccessMap], ClientRestriction]]:
        def by_client(table: AccessMap) -> ClientRestriction:
            return lambda client, name: self._client_access(table, client)

        return {"check_client_access": by_client,
                "check_ccert_access": lambda table: lambda client, name: (
                    self._ccert_access(table, client)),
                "check_sasl_access": lambda table: lambda client, name: (
                    self._sasl_access(table, client))}

    def _access_in_helo_list(self) -> dict[str, Callable[[AccessMap], HeloRestriction]]:
        def by_client(table: AccessMap) -> HeloRestriction:
            return lambda client, helo: self._client_access(table, client)

        def by_helo(table: AccessMap) -> HeloRestriction:
            return lambda client, helo: self._helo_access(table, client, helo)

        return {"check_client_access": by_client, "check_helo_access": by_helo,
                "check_ccert_access": lambda table: lambda client, helo: (
                    self._ccert_access(table, client)),
                "check_sasl_access": lambda table: lambda client, helo: (
                    self._sasl_access(table, client))}

    def _access_in_sender_list(self) -> dict[str, Callable[[AccessMap], SenderRestriction]]:
        def by_client(table: AccessMap) -> SenderRestriction:
            return lambda client, sender: self._client_access(table, client)

        def by_sender(table: AccessMap) -> SenderRestriction:
            return lambda client, sender: self._sender_access(table, client, sender)

        return {"check_client_access": by_client, "check_sender_access": by_sender,
                "check_ccert_access": lambda table: lambda client, sender: (
                    self._ccert_access(table, client)),
                "check_sasl_access": lambda table: lambda client, sender: (
                    self._sasl_access(table, client))}

    def _access_in_data_list(self) -> dict[str, Callable[[AccessMap], DataRestriction]]:
        def by_client(table: AccessMap) -> DataRestriction:
            return lambda client, facts: self._client_access(table, client)

        def by_helo(table: AccessMap) -> DataRestriction:
            return lambda client, facts: self._helo_access(table, client, facts.helo)

        def by_sender(table: AccessMap) -> DataRestriction:
            return lambda client, facts: self._sender_access(table, client, facts.sender)

        def by_recipient(table: AccessMap) -> DataRestriction:
            return lambda client, facts: self._recipient_access(table, client, facts.recipient)

        return {"check_client_access": by_client, "check_helo_access": by_helo,
                "check_sender_access": by_sender, "check_recipient_access": by_recipient,
                "check_ccert_access": lambda table: lambda client, facts: (
                    self._ccert_access(table, client)),
                "check_sasl_access": lambda table: lambda client, facts: (
                    self._sasl_access(table, client))}

    def _data_known(self) -> dict[str, DataRestriction]:
        """smtpd_data_restrictions: what judges the client, the HELO name, the
        sender and a single recipient, as in the other lists, and the two
        that only DATA can judge. A refusal of the command itself names
        <DATA> and "Data command", as Postfix's does."""
        def about_client(restriction: Restriction) -> DataRestriction:
            return lambda client, facts: restriction(client, facts.sender, "", facts.helo)

        helo_checks = self._helo_name_checks()
        return {
            **self._client_permits(about_client),
            "permit": lambda client, facts: PERMIT,
            "reject": lambda client, facts: self._reject("DATA", access.DATA),
            "defer": lambda client, facts: self._defer("DATA", access.DATA),
            "reject_non_fqdn_sender": lambda client, facts: (
                self._non_fqdn(facts.sender, access.SENDER) if facts.sender else DUNNO),
            **{name: functools.partial(_data_helo, check) for name, check in helo_checks.items()},
            # Postfix counts the RCPTs accepted; at DATA a bounce for more
            # than one recipient is a forgery (bounces go to one sender).
            "reject_multi_recipient_bounce": lambda client, facts: (
                _coded(replies.MULTI_RECIPIENT_BOUNCE,
                       self.config.multi_recipient_bounce_reject_code, address="DATA",
                       what=access.DATA)
                if facts.sender == "" and facts.recipients > 1 else DUNNO),
            "reject_unauth_pipelining": lambda client, facts: (
                replies.UNAUTH_PIPELINING.format(address="DATA", what=access.DATA)
                if facts.ill_pipelining else DUNNO),
        }

    def _client_permits(self, adapt: Callable[[Restriction], _R]) -> dict[str, _R]:
        """The restrictions every list has that judge the client alone (the
        permits, and reject_plaintext_session), in the shape of one list's
        restrictions (adapt)."""
        return {"permit_mynetworks": adapt(self._permit_mynetworks),
                "permit_sasl_authenticated": adapt(self._permit_sasl_authenticated),
                "permit_tls_all_clientcerts": adapt(self._permit_tls_all_clientcerts),
                "permit_tls_clientcerts": adapt(self._permit_tls_clientcerts),
                "reject_plaintext_session": adapt(self._reject_plaintext_session)}

    def _client_known(self) -> dict[str, ClientRestriction]:
        def about_client(restriction: Restriction) -> ClientRestriction:
            return lambda client, name: restriction(client, None, "", None)

        return {
            **self._client_permits(about_client),
            "permit": lambda client, name: PERMIT,
            "reject": lambda client, name: self._reject(name, access.CLIENT),
            "defer": lambda client, name: self._defer(name, access.CLIENT),
        }

    def _helo_known(self) -> dict[str, HeloRestriction]:
        def about_client(restriction: Restriction) -> HeloRestriction:
            return lambda client, helo: restriction(client, "", "", helo)

        return {
            **self._client_permits(about_client),
            "permit": lambda client, helo: PERMIT,
            "reject": lambda client, helo: self._reject(helo, access.HELO),
            "defer": lambda client, helo: self._defer(helo, access.HELO),
            **self._helo_name_checks(),
        }

    def _helo_name_checks(self) -> dict[str, HeloRestriction]:
        invalid = self.config.invalid_hostname_reject_code
        non_fqdn = self.config.non_fqdn_reject_code
        reject_invalid = functools.partial(reject_invalid_helo_hostname, code=invalid)
        reject_non_fqdn = functools.partial(reject_non_fqdn_helo_hostname, code=non_fqdn,
                                            invalid_code=invalid)
        # The names before Postfix 2.3, which Postfix still takes, too.
        return {"reject_invalid_helo_hostname": reject_invalid,
                "reject_non_fqdn_helo_hostname": reject_non_fqdn,
                "reject_invalid_hostname": reject_invalid,
                "reject_non_fqdn_hostname": reject_non_fqdn}

    def _sender_known(self) -> dict[str, SenderRestriction]:
        def about_client(restriction: Restriction) -> SenderRestriction:
            return lambda client, sender: restriction(client, sender, "", None)

        known: dict[str, SenderRestriction] = {
            **self._client_permits(about_client),
            "permit": lambda client, sender: PERMIT,
            "reject": lambda client, sender: self._reject(sender, access.SENDER),
            "defer": lambda client, sender: self._defer(sender, access.SENDER),
            # The null sender is not judged (Postfix: "*state->sender").
            "reject_non_fqdn_sender": lambda client, sender: (
                self._non_fqdn(sender, access.SENDER) if sender else DUNNO),
            "reject_authenticated_sender_login_mismatch": self._reject_authenticated_mismatch,
            "reject_unauthenticated_sender_login_mismatch":
                self._reject_unauthenticated_mismatch,
            "reject_sender_login_mismatch": lambda client, sender: (
                self._reject_authenticated_mismatch(client, sender)
                or self._reject_unauthenticated_mismatch(client, sender)),
        }
        if not self.config.smtpd_sasl_auth_enable:
            # As Postfix's "restriction `...' ignored: no SASL support": on a
            # listener without AUTH nobody can log in, so "not logged in"
            # would refuse every listed sender (port 25 mail from outside).
            used = [item for item in self.config.get("smtpd_sender_restrictions")
                    if item.lower() in _LOGIN_MISMATCH]
            for item in used:
                self.warnings.append(f"{self.config.where('smtpd_sender_restrictions')}: "
                                     f"restriction {item!r} ignored: smtpd_sasl_auth_enable "
                                     "= no")
            for name in _LOGIN_MISMATCH:
                known[name] = lambda client, sender: DUNNO
        return known

    # -- the replies of reject, defer and reject_non_fqdn_* -------------------------
    def _reject(self, name: str, what: str) -> str:
        return _coded(replies.ACCESS_DENIED, self.config.reject_code, address=name, what=what)

    def _defer(self, name: str, what: str) -> str:
        return _coded(replies.TRY_AGAIN_LATER, self.config.defer_code, address=name, what=what)

    def _non_fqdn(self, address: str, what: str) -> Decision:
        if not hostnames.non_fqdn_address(address):
            return DUNNO
        return _coded(replies.NOT_FQDN_ADDRESS, self.config.non_fqdn_reject_code,
                      address=address, what=what)

    # -- the questions ------------------------------------------------------------
    def check_client(self, client: ClientFacts) -> str | None:
        """None to let the client pass, else the reject reply (a permit ends
        only this list, as in Postfix: the HELO name and the rest are judged
        next)."""
        return _refusal(self.client, client, client.peer)

    def check_helo(self, client: ClientFacts, helo: str) -> str | None:
        """None to let the HELO name pass, else the reject reply (a permit
        ends only this list, as in Postfix: the recipient is judged next)."""
        return _refusal(self.helo, client, helo)

    def check_sender(self, client: ClientFacts, sender: str) -> str | None:
        """None to let the MAIL FROM address pass, else the reject reply (a
        permit ends only this list, as for the HELO restrictions)."""
        return _refusal(self.sender, client, sender)

    def check_data(self, client: ClientFacts, facts: DataFacts) -> str | None:
        """None to let DATA go on to its 354, else the reject reply (a permit
        ends the list)."""
        return _refusal(self.data, client, facts)

    def check_recipient(self, client: ClientFacts, sender: str | None, recipient: str,
                        helo: str | None = None) -> str | None:
        """None to accept the recipient, else the reject reply. The sender and
        the recipient are as the client sent them (an unqualified address is
        looked up as user@$myorigin where a table or a domain is asked, and
        named as sent in replies, as Postfix names it). helo is the
        session's HELO name as kept; without one the HELO restrictions are
        skipped, as Postfix's smtpd_check_helo() skips a missing name.
        sender is None outside a transaction (VRFY): the sender restrictions
        are skipped then, as Postfix's smtpd_check_mail() skips no sender.
        The client restrictions come first, in Postfix's order (client,
        HELO, sender, then the recipient lists)."""
        if self.client_at_rcpt:
            refusal = self.check_client(client)
            if refusal is not None:
                return refusal
        if self.helo_at_rcpt and helo is not None:
            refusal = self.check_helo(client, helo)
            if refusal is not None:
                return refusal
        if self.sender_at_rcpt and sender is not None:
            refusal = self.check_sender(client, sender)
            if refusal is not None:
                return refusal
        for restrictions in (self.relay, self.recipient):
            for restriction in restrictions:
                decision = restriction(client, sender, recipient, helo)
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
        """Mail for this domain is ours to take: local or relay_domains. An
        unqualified recipient (as sent) is judged as user@$myorigin, where it
        goes, as Postfix's smtpd_resolve_addr rewrites it first: $myorigin
        need not be ours (a relay whose domain is hosted elsewhere)."""
        qualified = addr.qualify(recipient, self.config.myorigin)
        # Postfix's allow_untrusted_routing = no: an address that routes on
        # (user%elsewhere@, "user@elsewhere"@, elsewhere!user@) is no
        # destination of ours: in a relay domain the next hop may honour the
        # route and relay for anyone (the backup-MX hole), and in a local
        # domain Postfix resolves the route to elsewhere.
        if not self.config.allow_untrusted_routing and routed(qualified):
            return False
        domain = addr.domain_of(qualified)
        return self.mailboxes.is_local_domain(domain) or addr.domain_in(
            domain, self.relay_domains, subdomains=True)

    # -- the restrictions ---------------------------------------------------------
    def _permit_mynetworks(self, client: ClientFacts, sender: str | None, rcpt: str,
                           helo: str | None = None) -> Decision:
        return PERMIT if self.in_mynetworks(client.address) else DUNNO

    def _permit_sasl_authenticated(self, client: ClientFacts, sender: str | None,
                                   rcpt: str, helo: str | None = None) -> Decision:
        return PERMIT if client.sasl_username else DUNNO

    def _reject_plaintext_session(self, client: ClientFacts, sender: str | None,
                                  rcpt: str, helo: str | None = None) -> Decision:
        """Postfix's reject_plaintext_session: a session without TLS is
        refused (plaintext_reject_code, 450 by default)."""
        if client.tls:
            return DUNNO
        code = self.config.plaintext_reject_code
        return replies.PLAINTEXT_SESSION.format(code=code, code_class=str(code)[0])

    def _permit_tls_all_clientcerts(self, client: ClientFacts, sender: str | None,
                                    rcpt: str, helo: str | None = None) -> Decision:
        return PERMIT if client.ccert_trusted else DUNNO

    def _permit_tls_clientcerts(self, client: ClientFacts, sender: str | None, rcpt: str,
                                helo: str | None = None) -> Decision:
        if client.ccert_fingerprints and self._relay_clientcerts(client.ccert_fingerprints):
            return PERMIT
        return DUNNO

    def _reject_unauth_destination(self, client: ClientFacts, sender: str | None,
                                   rcpt: str, helo: str | None = None) -> Decision:
        # Named in Postfix's internal form ("x@y"@z is x@y@z there).
        return DUNNO if self.is_auth_destination(rcpt) else replies.RELAY_DENIED.format(
            address=hostnames.unquoted(rcpt))

    def _defer_unauth_destination(self, client: ClientFacts, sender: str | None,
                                  rcpt: str, helo: str | None = None) -> Decision:
        return DUNNO if self.is_auth_destination(rcpt) else replies.RELAY_DEFERRED.format(
            address=hostnames.unquoted(rcpt))

    def _permit_auth_destination(self, client: ClientFacts, sender: str | None,
                                 rcpt: str, helo: str | None = None) -> Decision:
        return PERMIT if self.is_auth_destination(rcpt) else DUNNO

    def _reject_authenticated_mismatch(self, client: ClientFacts, sender: str) -> Decision:
        return self._login_mismatch(self.sender_logins.authenticated_mismatch, client, sender)

    def _reject_unauthenticated_mismatch(self, client: ClientFacts, sender: str) -> Decision:
        return self._login_mismatch(self.sender_logins.unauthenticated_mismatch, client, sender)

    def _login_mismatch(self, verdict: Callable[[str | None, str, str], str | None],
                        client: ClientFacts, sender: str) -> Decision:
        # Postfix skips the null sender and an empty smtpd_sender_login_maps.
        if not sender or not self.sender_logins.table:
            return DUNNO
        return verdict(client.sasl_username, addr.qualify(sender, self.config.myorigin), sender)

    def _reject_unlisted_recipient(self, client: ClientFacts, sender: str | None,
                                   rcpt: str, helo: str | None = None) -> Decision:
        qualified = addr.qualify(rcpt, self.config.myorigin)
        domain = addr.domain_of(qualified)
        if domain and self.mailboxes.is_local_domain(domain) \
                and not self.mailboxes.exists(qualified):
            return replies.USER_UNKNOWN.format(address=rcpt)
        return DUNNO


def _warn_if_reject(restriction: _R) -> _R:
    """Postfix's warn_if_reject: the restriction's refusal (a 4xx or 5xx) is
    logged as ``reject_warning`` (ClientFacts.whatsup, logged by the
    session with the command) and the list goes on; a permit stays one."""
    def warned(client: ClientFacts, *rest: Any) -> Decision:
        decision = restriction(client, *rest)
        if decision is PERMIT or decision is DUNNO \
                or decision == replies.SERVER_CONFIGURATION_ERROR:
            # "Configuration errors cannot be converted into warnings"
            # (Postfix's smtpd_check_reject): an action we cannot carry out
            # (HOLD, DISCARD, …) must not let the mail through.
            return decision
        client.whatsup.append(("reject_warning", decision))
        return DUNNO

    return warned


def _coded(template: str, code: int, **fields: str) -> str:
    """A refusal with the configured code; the enhanced code's class is the
    code's ("SMTP has the higher precedence", Postfix's smtpd_check_reject)."""
    return template.format(code=code, code_class=str(code)[0], **fields)


def _data_helo(check: HeloRestriction, client: ClientFacts, facts: DataFacts) -> Decision:
    """A HELO restriction in the DATA list: no HELO, nothing judged."""
    return DUNNO if facts.helo is None else check(client, facts.helo)


def _about_helo(check: HeloRestriction, client: ClientFacts, sender: str | None, rcpt: str,
                helo: str | None) -> Decision:
    """A HELO restriction in the relay or recipient list: no HELO, nothing judged."""
    return DUNNO if helo is None else check(client, helo)


def _refusal(restrictions: list[Callable[[ClientFacts, Any], Decision]], client: ClientFacts,
             what: Any) -> str | None:
    """The first answer of one list that is not dunno: None for a permit (it
    ends only this list) or the end of the list, else the reject reply."""
    for restriction in restrictions:
        decision = restriction(client, what)
        if decision is PERMIT:
            return None
        if decision is not DUNNO:
            return decision
    return None


# -- the HELO name restrictions (smtpd_check.c) ----------------------------------------
def reject_invalid_helo_hostname(client: ClientFacts, helo: str, code: int = 501) -> Decision:
    """A name that is neither a hostname nor an IP address, or an address
    literal that is not a valid address. A bare address passes, as Postfix
    lets it ("XXX back compat"); one trailing dot is allowed."""
    if helo.startswith("["):
        return _reject_invalid_address_literal(helo, code)
    name = hostnames.without_root_dot(helo)
    if hostnames.valid_hostname(name) or hostnames.valid_hostaddr(name):
        return DUNNO
    return _coded(replies.HELO_INVALID, code, name=helo)


def reject_non_fqdn_helo_hostname(client: ClientFacts, helo: str, code: int = 504,
                                  invalid_code: int = 501) -> Decision:
    """A name that is not a valid hostname with a dot in it (a bare IP
    address fails too); an address literal is judged as an address."""
    if helo.startswith("["):
        return _reject_invalid_address_literal(helo, invalid_code)
    name = hostnames.without_root_dot(helo)
    if hostnames.valid_hostname(name) and "." in name:
        return DUNNO
    return _coded(replies.HELO_NOT_FQDN, code, name=helo)


def _reject_invalid_address_literal(helo: str, code: int) -> Decision:
    if hostnames.valid_address_literal(helo):
        return DUNNO
    return _coded(replies.HELO_INVALID_ADDRESS, code, name=helo)


def routed(address: str) -> bool:
    """Whether an address carries a sender-specified route: "@", "%" or "!"
    in its local part, quotes taken off (Postfix's RESOLVE_FLAG_ROUTED)."""
    local = hostnames.unquoted(address).rpartition("@")[0]
    return any(char in local for char in "@%!")
