"""Access maps: what the check_*_access restrictions look up, and what a table's answer means.

Postfix's access(5) and smtpd_check.c (check_namadr_access, check_domain_access,
check_addr_access, check_mail_access, check_table_result), with its defaults:
``parent_domain_matches_subdomains`` lists smtpd_access_maps (the key
``example.com`` matches its subdomains; ``.example.com`` is not looked up),
``smtpd_null_access_lookup_key = <>``, ``access_map_reject_code = 554``,
``access_map_defer_code = 450``. The restrictions in checks.py ask; this module
reads the tables.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from mta import address as addr
from mta import log as maillog
from mta.maps import CidrTable, TableList
from mta.smtpd import hostnames, replies

# What was refused, as Postfix's replies name it (smtpd_check.h SMTPD_NAME_*).
CLIENT = "Client host"
HELO = "Helo command"
SENDER = "Sender address"
RECIPIENT = "Recipient address"
DATA = "Data command"
CCERT = "Client certificate"
SASL_USER = "SASL login name"

# Postfix's defaults of smtpd_null_access_lookup_key, access_map_reject_code
# and access_map_defer_code (the restrictions pass the configured ones).
NULL_SENDER_KEY = "<>"
REJECT_CODE = 554
DEFER_CODE = 450

# (key, partial): Postfix looks up parent domains, shorter address prefixes
# and address parts with DICT_FLAG_FIXED, which pattern tables (cidr:) do
# not answer; a cidr: table sees the full client address only.
Key = tuple[str, bool]

# What a value can mean; check_table_result's branches, in its order.
PERMIT = "permit"
DUNNO = "dunno"
REFUSE = "refuse"
LOG = "log"  # WARN and INFO: log the text, then go on
UNSUPPORTED = "unsupported"

# Postfix actions that change what happens to the message (or the session)
# rather than answer yes or no. Postern has none of them; a match is
# answered 451 4.3.5, as Postfix answers an action it does not know, rather
# than taken as DUNNO: a HOLD, DISCARD, FILTER, REDIRECT or BCC ignored would
# deliver mail the operator meant to stop, inspect or copy.
_POSTFIX_ONLY = frozenset({"HANGUP", "FILTER", "HOLD", "DELAY", "DISCARD", "REDIRECT", "BCC",
                           "DEFER_IF_PERMIT", "DEFER_IF_REJECT", "PREPEND"})
# RFC 3463 status at the start of the text (dsn_util.c dsn_valid): class,
# subject and detail of 1-3 digits, then a space or the end.
_DSN = re.compile(r"[245]\.\d{1,3}\.\d{1,3}(?=\s|\Z)")
_WORD = re.compile(r"([^ \t]*)[ \t]*(.*)", re.S)
_REPLY_LIMIT = 510  # smtpd_check_reject: RFC 5321 §4.5.3.1.5 less the CRLF

# smtpd_dsn_fix.c: an address status (X.1.Y) fitted to what is refused;
# by detail digit, (for a sender, for a recipient).
_ADDRESS_DSN = {"1": ("4.1.7", "4.1.1"), "2": ("4.1.8", "4.1.2"), "3": ("4.1.7", "4.1.3"),
                "4": ("4.1.7", "4.1.4"), "5": ("4.1.0", "4.1.5"), "6": ("4.1.7", "4.1.6"),
                "7": ("4.1.7", "4.1.3"), "8": ("4.1.8", "4.1.2")}


# -- lookup keys --------------------------------------------------------------------------
def parent_domains(name: str) -> list[str]:
    """The parents of a name as Postfix walks them (from each dot after the
    first character): ``a.b.example`` gives ``b.example``, ``example``."""
    parents = []
    start = 0
    while (dot := name.find(".", start + 1)) >= 0 and dot + 1 < len(name):
        start = dot + 1
        parents.append(name[start:])
    return parents


def domain_keys(name: str) -> list[Key]:
    """check_domain_access: the name, then its parent domains; an IP address
    only as it is ("Don't apply subdomain magic to numerical hostnames")."""
    if not name:
        return []
    if hostnames.valid_hostaddr(name):
        return [(name, False)]
    return [(name, False), *((parent, True) for parent in parent_domains(name))]


def address_keys(address: str) -> list[Key]:
    """check_addr_access: the address, then shorter prefixes at each dot
    (IPv4: 192.0.2.1, 192.0.2, 192.0, 192) or colon (IPv6, as written)."""
    delimiter = ":" if ":" in address else "."
    keys = [(address, False)]
    prefix = address
    while delimiter in prefix:
        prefix = prefix[:prefix.rindex(delimiter)]
        if prefix:
            keys.append((prefix, True))
    return keys


def client_keys(hostname: str, address: str) -> list[Key]:
    """check_namadr_access: the client's name and parent domains, then its
    address. A client without a name is looked up as ``unknown``, as Postfix
    does: a key ``unknown`` matches the clients whose address has no name."""
    return [*domain_keys(hostname), *address_keys(address)]


def mail_keys(address: str, delimiter: str, null_key: str = NULL_SENDER_KEY) -> list[Key]:
    """check_mail_access (mail_addr_find with FULL, NOEXT, DOMAIN, PDMS and
    LOCALPART_AT): user+ext@domain, user@domain, the domain and its parent
    domains, user+ext@, user@. The null sender is the key null_key
    (smtpd_null_access_lookup_key, ``<>``)."""
    if not address:
        return [(null_key, False)]
    if "@" not in address:
        return [(address, False)]  # not qualified: cannot happen after qualify()
    # The domain as relay control judges it (addr.split: a trailing dot off,
    # as Postfix's trivial-rewrite takes it off before the lookup), or
    # "a@bad.example." would get a listed address past its REJECT.
    local, domain = addr.split(address)
    address = f"{local}@{domain}"
    base = addr.strip_extension(local, delimiter)
    keys = [(address, False)]
    if base != local:
        keys.append((f"{base}@{domain}", True))
    if domain:
        keys += [(domain, True), *((parent, True) for parent in parent_domains(domain))]
    keys.append((f"{local}@", True))
    if base != local:
        keys.append((f"{base}@", True))
    return keys


# -- actions --------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Action:
    """One table value as check_table_result reads it."""

    verdict: str  # PERMIT, DUNNO, REFUSE, LOG or UNSUPPORTED
    code: int = 0
    dsn: str = ""
    text: str = ""  # REFUSE: the reply text; LOG: what to log; else the value
    word: str = ""  # the action as written ("REJECT", "WARN", "HOLD")

    @property
    def problem(self) -> str | None:
        """Why this value does not do what it seems to, for the operator."""
        if self.verdict == UNSUPPORTED:
            what = (f"action {self.word!r} is not supported" if self.word.upper() in _POSTFIX_ONLY
                    else f"unknown action {self.text!r}")
            return f"{what}: a match is answered {replies.SERVER_CONFIGURATION_ERROR}"
        if self.verdict == PERMIT and len(self.word) == 3 and self.word[0] in "45":
            return (f"{self.word!r} alone is all-numeric, which means OK (access(5)); "
                    f"write '{self.word} text' to refuse")
        return None

    def reply(self, name: str, what: str) -> str:
        """The refusal of name (what: CLIENT, HELO, SENDER or RECIPIENT), as
        smtpd_check_reject formats and fixes it."""
        if self.verdict == UNSUPPORTED:
            return replies.SERVER_CONFIGURATION_ERROR
        dsn = _fit_dsn(self.dsn, what)
        # "Enforce consistency between the SMTP code and DSN code. SMTP has
        # the higher precedence since it came here first."
        code = str(self.code)
        text = replies.ACCESS_MAP_REFUSED.format(code=code, dsn=code[0] + dsn[1:], name=name,
                                                 what=what, text=self.text)
        return _printable(text[:_REPLY_LIMIT])


def parse_action(value: str, reject_code: int = REJECT_CODE,
                 defer_code: int = DEFER_CODE) -> Action:
    """What a table value means, in check_table_result's order: DUNNO,
    REJECT, DEFER, INFO, WARN, an all-numeric value (OK), 4NN/5NN text, OK
    and RELAY, the restriction "permit"; anything else is not supported.
    REJECT and DEFER answer access_map_reject_code and access_map_defer_code."""
    match = _WORD.match(value)
    assert match is not None  # the pattern matches any string
    word, rest = match.groups()
    action = word.upper()
    if action == "DUNNO":
        return Action(DUNNO, word=word)
    if action == "REJECT":
        return _refusal(reject_code, "5.7.1", rest, word)
    if action == "DEFER":
        return _refusal(defer_code, "4.7.1", rest, word)
    if action in ("INFO", "WARN"):
        return Action(LOG, text=rest, word=word)
    if action not in _POSTFIX_ONLY and value:
        if value.isascii() and value.isdigit():
            # "Some out-of-band authentication mechanism uses this as time
            # stamp" (pop-before-smtp): Postfix's OK, even for "550".
            return Action(PERMIT, word=word)
        if (len(word) == 3 and rest and word[0] in "45" and word.isascii()
                and word[1:].isdigit()):
            return _refusal(int(word), f"{word[0]}.7.1", rest, word)
        # Postfix evaluates any other value as a list of restrictions; of
        # those, "permit" (which ends the list it starts) is the one every
        # list has and that needs no arguments or context.
        if action in ("OK", "RELAY") or re.split(r"[\s,]+", value)[0].lower() == "permit":
            return Action(PERMIT, word=word)
    return Action(UNSUPPORTED, text=value, word=word)


def _refusal(code: int, default_dsn: str, rest: str, word: str) -> Action:
    """dsn_split: an optional enhanced status code, then the text."""
    status = _DSN.match(rest)
    dsn = status.group() if status else default_dsn
    text = rest[status.end():].lstrip() if status else rest
    return Action(REFUSE, code, dsn, text or replies.ACCESS_MAP_TEXT, word)


def _fit_dsn(dsn: str, what: str) -> str:
    """smtpd_dsn_fix: an address status kept for the address it fits, mapped
    for the other (5.1.1 "bad destination mailbox" refusing a sender becomes
    5.1.7), and X.0.0 when no address is refused."""
    if dsn[1:4] != ".1.":
        return dsn
    fits = _ADDRESS_DSN.get(dsn[4:], ("4.1.0", "4.1.0"))
    if what == SENDER:
        return fits[0]
    if what == RECIPIENT:
        return fits[1]
    return "4.0.0"


def _printable(text: str) -> str:
    """Postfix's printable(text, ' '): a reply carries no control characters
    (a table value could hold a tab, an address odd bytes)."""
    if text.isprintable():
        return text
    return "".join(char if char.isprintable() else " " for char in text)


# -- the tables of one restriction ----------------------------------------------------------
class AccessMap:
    """The tables of one check_*_access restriction, each value read once at load."""

    def __init__(self, restriction: str, spec: str, tables: TableList, what: str,
                 reject_code: int = REJECT_CODE, defer_code: int = DEFER_CODE) -> None:
        self.restriction = restriction
        self.spec = spec
        self.tables = tables
        self.what = what
        self._codes = (reject_code, defer_code)
        self.warnings: list[str] = []  # for whoever builds the restrictions to log
        self._actions: dict[str, Action] = {}
        self.can_permit = False  # whether some entry answers OK
        for table in tables.tables:
            for entry in table.entries():
                if not entry.value:
                    self.warnings.append(f"{entry.where}: {table.name}: {entry.key}: expected "
                                         "format: key whitespace value -- ignoring this entry")
                    continue
                action = self._action(entry.value)
                self.can_permit = self.can_permit or action.verdict == PERMIT
                problem = action.problem
                if problem:
                    self.warnings.append(f"{entry.where}: {restriction} {table.name}: "
                                         f"{entry.key}: {problem}")

    def _action(self, value: str) -> Action:
        action = self._actions.get(value)
        if action is None:
            action = self._actions[value] = parse_action(value, *self._codes)
        return action

    def find(self, keys: Iterable[Key]) -> tuple[str, Action] | None:
        """The first key any table answers (tables in order for each key),
        with the answer's meaning. An entry without a value is no entry, as
        postmap and texthash skip such a line."""
        for key, partial in keys:
            for table in self.tables.tables:
                if partial and isinstance(table, CidrTable):
                    continue
                value = table.lookup(key)
                if value:
                    return key, self._action(value)
        return None

    def answer(self, keys: Iterable[Key]) -> Action | None:
        """The action for the first key found (None: no key is listed),
        warning of an unsupported action at each use, as Postfix warns of
        an unknown restriction. WARN and INFO are logged by the session
        (ClientFacts.whatsup), which knows the queue ID, command and protocol."""
        found = self.find(keys)
        if found is None:
            return None
        key, action = found
        if action.verdict == UNSUPPORTED:
            maillog.warning("smtpd", f"{self.restriction} {self.spec}: {key}: {action.problem}")
        return action
