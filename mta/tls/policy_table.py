"""The outbound TLS policy of a next hop: smtp_tls_policy_maps over smtp_tls_security_level.

Lookup follows Postfix (smtp_tls_policy.c): the key is the next hop as
written, so ``[mx.example.com]:587``, ``[mx.example.com]`` and
``mx.example.com`` are different keys; only a bare domain falls back to its
parent domains with a leading dot, nearest first (``a.example.com``, then
``.example.com``, then ``.com``). Tables are searched in order for each key.
No entry: the main.cf defaults.

Entries are ``level [attribute=value ...]``. Postfix defers mail for a bad
entry when it is used; Postern checks every entry when it starts and refuses
to start on a bad one, naming the file, the line and the reason.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path

from mta.config import Config
from mta.errors import BadValue, ConfigError
from mta.maps import CidrTable, TableList, open_tables
from mta.tls.fingerprints import parse_fingerprint_list
from mta.tls.levels import TlsLevel, parse_level
from mta.tls.names import parse_strategies
from mta.tls.protocols import (
    OUTBOUND,
    ProtocolRange,
    check_ciphers,
    cipher_string,
    parse_grade,
    parse_protocols,
    split_exclusions,
)

# Attributes Postfix has that Postern does not implement. Accepting them
# silently could weaken what the operator wrote (tafile= narrows the trusted
# CAs), so they are refused by name.
_UNSUPPORTED = {
    "tafile": "per-destination trust anchors are not implemented; use smtp_tls_CAfile",
    "connection_reuse": "TLS connection reuse is not implemented",
    "enable_rpk": "raw public keys (RFC 7250) are not implemented",
    "fallback": "fallback levels were removed from Postfix and are not supported",
}


@dataclass(frozen=True, slots=True)
class ClientPolicy:
    """Everything the SMTP client needs to know about TLS for one next hop."""

    level: TlsLevel
    match: tuple[str, ...] = ()  # name strategies (verify, secure)
    fingerprints: frozenset[bytes] = frozenset()  # (fingerprint)
    protocols: ProtocolRange | None = None
    ciphers: str = ""  # the OpenSSL cipher string
    servername: str = ""  # SNI: "", "hostname", "nexthop" or a name
    where: str = "smtp_tls_security_level"  # the main.cf parameter or file:line
    key: str = ""  # the table key that matched, "" for the default

    @property
    def settings(self) -> tuple[ProtocolRange | None, str]:
        """What the SSL context depends on (contexts are shared per settings)."""
        return self.protocols, self.ciphers

    def server_name(self, hostname: str, nexthop: str) -> str | None:
        """The SNI name to send, or None (Postfix sends none unless configured)."""
        if not self.servername:
            return None
        if self.servername == "hostname":
            return hostname or None
        if self.servername == "nexthop":
            return nexthop or None
        return self.servername


@dataclass
class _Attributes:
    match: list[str] = field(default_factory=list)
    protocols: ProtocolRange | None = None
    grade: str | None = None
    exclude: tuple[str, ...] | None = None
    servername: str | None = None


def parse_entry(text: str, config: Config, where: str) -> tuple[ClientPolicy, list[str]]:
    """One policy value (``secure match=nexthop ciphers=high``) with main.cf defaults
    filled in; returns the policy and warnings. Raises ConfigError naming where."""
    try:
        return _parse_entry(text, config, where)
    except BadValue as error:
        raise ConfigError(f"{where}: {error}") from None


def _parse_entry(text: str, config: Config, where: str) -> tuple[ClientPolicy, list[str]]:
    words = [w for w in re.split(r"[\s,]+", text.strip()) if w]
    if not words:
        raise BadValue("empty TLS policy: expected a level such as may, encrypt or secure")
    level = parse_level(words[0])
    warnings: list[str] = []
    if level < TlsLevel.MAY:
        for word in words[1:]:
            warnings.append(f"{where}: ignoring attribute {word!r} with TLS disabled")
        return default_policy(config, level, where), warnings
    attrs = _Attributes()
    seen: set[str] = set()
    for word in words[1:]:
        name, eq, value = word.partition("=")
        name = name.lower()
        if not eq:
            raise BadValue(f"malformed attribute {word!r}: expected name=value")
        if name in _UNSUPPORTED:
            raise BadValue(f"attribute {name!r} is not supported: {_UNSUPPORTED[name]}")
        if name != "match" and name in seen:
            raise BadValue(f"attribute {name!r} is specified more than once")
        seen.add(name)
        if not value:
            raise BadValue(f"attribute {name!r} has an empty value")
        if name == "match":
            if level not in (TlsLevel.FINGERPRINT, TlsLevel.VERIFY, TlsLevel.SECURE):
                raise BadValue(f"attribute 'match' is valid only at the fingerprint, verify "
                               f"or secure level, not {level.label}")
            attrs.match.append(value)
        elif name == "protocols":
            attrs.protocols = parse_protocols(value, OUTBOUND)
        elif name == "ciphers":
            attrs.grade = parse_grade(value, OUTBOUND)
        elif name == "exclude":
            attrs.exclude = split_exclusions(value)
        elif name == "servername":
            attrs.servername = value
        else:
            raise BadValue(f"unknown attribute {name!r}; expected match, protocols, ciphers, "
                           "exclude or servername")
    return _resolve(level, attrs, config, where), warnings


def default_policy(config: Config, level: TlsLevel | None = None,
                   where: str = "smtp_tls_security_level") -> ClientPolicy:
    """The policy of a next hop without a table entry (or with a bare level)."""
    return _resolve(config.smtp_tls_security_level if level is None else level,
                    _Attributes(), config, where)


def _resolve(level: TlsLevel, attrs: _Attributes, config: Config, where: str) -> ClientPolicy:
    if level == TlsLevel.NONE:
        return ClientPolicy(level, where=where)
    mandatory = level.requires_tls
    # Postfix: an exclude= attribute replaces the main.cf exclusion lists.
    if attrs.exclude is not None:
        exclusions = attrs.exclude
    else:
        exclusions = tuple(config.smtp_tls_exclude_ciphers) + (
            tuple(config.smtp_tls_mandatory_exclude_ciphers) if mandatory else ())
    if level.must_match:
        exclusions += ("aNULL",)  # a certificate is needed: no anonymous suites
    grade = attrs.grade or (config.smtp_tls_mandatory_ciphers if mandatory
                            else config.smtp_tls_ciphers)
    # Postfix lowers OpenSSL's security level to 0 for may and encrypt (any
    # encryption beats none) and uses 1 where the peer is authenticated.
    ciphers = cipher_string(grade, exclusions, OUTBOUND,
                            seclevel=1 if level.must_match else 0)
    check_ciphers(ciphers)
    protocols = attrs.protocols or (config.smtp_tls_mandatory_protocols if mandatory
                                    else config.smtp_tls_protocols)
    match: tuple[str, ...] = ()
    fingerprints: frozenset[bytes] = frozenset()
    if level == TlsLevel.FINGERPRINT:
        source = "|".join(attrs.match) if attrs.match else config.smtp_tls_fingerprint_cert_match
        fingerprints = parse_fingerprint_list(source)
        if not fingerprints:
            raise BadValue("the fingerprint level needs fingerprints to match: give "
                           "match=AA:BB:... (or set smtp_tls_fingerprint_cert_match)")
    elif level in (TlsLevel.VERIFY, TlsLevel.SECURE):
        if attrs.match:
            match = tuple(s for value in attrs.match for s in parse_strategies(value, ":"))
        else:
            param = ("smtp_tls_verify_cert_match" if level == TlsLevel.VERIFY
                     else "smtp_tls_secure_cert_match")
            match = parse_strategies(config.get(param))
        if not match:
            raise BadValue(f"the {level.label} level needs names to match")
    servername = attrs.servername if attrs.servername is not None else config.smtp_tls_servername
    return ClientPolicy(level, match, fingerprints, protocols, ciphers, servername.strip(),
                        where)


_HOSTNAME = re.compile(r"[A-Za-z0-9_](?:[A-Za-z0-9_-]*[A-Za-z0-9_])?"
                       r"(?:\.[A-Za-z0-9_](?:[A-Za-z0-9_-]*[A-Za-z0-9_])?)*\.?\Z")


def lookup_keys(nexthop: str) -> Iterator[str]:
    """The keys tried for a next hop, in order (Postfix tls_policy_lookup)."""
    yield nexthop
    if not _HOSTNAME.match(nexthop):
        return  # [host], host:port, [host]:port: only the key as written
    rest = nexthop
    while (dot := rest.find(".", 1)) != -1:
        rest = rest[dot:]
        yield rest
        rest = rest[1:] if rest.startswith(".") else rest


class PolicyTable:
    """smtp_tls_policy_maps, validated at start, over the main.cf default."""

    def __init__(self, tables: TableList, default: ClientPolicy,
                 parsed: dict[str, ClientPolicy], warnings: list[str]) -> None:
        self.tables = tables
        self.default = default
        self._parsed = parsed  # policy text -> policy (all entries, checked at load)
        self.warnings = warnings

    @classmethod
    def from_config(cls, config: Config) -> PolicyTable:
        default = default_policy(config)
        spec = config.smtp_tls_policy_maps
        tables = open_tables(spec, Path(config.directory)) if spec else TableList([])
        parsed: dict[str, ClientPolicy] = {}
        warnings: list[str] = []
        for table in tables.tables:
            if isinstance(table, CidrTable):
                raise ConfigError(f"smtp_tls_policy_maps: {table.name}: a cidr table cannot "
                                  "be keyed by next-hop destinations")
            for entry in table.entries():
                where = f"{entry.where}: {entry.key}"
                policy, notes = parse_entry(entry.value, config, where)
                parsed.setdefault(entry.value, policy)
                warnings.extend(notes)
        return cls(tables, default, parsed, warnings)

    def policies(self) -> list[ClientPolicy]:
        """The default and every entry's policy (each distinct value once)."""
        return [self.default, *self._parsed.values()]

    def lookup(self, nexthop: str) -> ClientPolicy:
        """The policy for a next hop as written (domain, [host] or [host]:port)."""
        for key in lookup_keys(nexthop.lower()):
            value = self.tables.lookup(key)
            if value is not None:
                policy = self._parsed.get(value)
                if policy is None:  # a table that cannot list its entries
                    raise ConfigError(f"smtp_tls_policy_maps: no checked entry for {key}")
                return replace(policy, key=key)
        return self.default
