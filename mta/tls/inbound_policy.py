"""Which TLS level smtpd applies to a client: the listener's, or its network's.

``smtpd_tls_security_level`` is per listener (none, may, encrypt). Some
partners must always use TLS while strangers on the same public port may
still deliver in plaintext (RFC 3207 §4: a publicly-referenced MX must not
require TLS), which is Sun Messaging Server's ``musttlsserver`` on a channel
of known source networks. ``smtpd_tls_policy_maps`` expresses that as a table
keyed by client address, usually ``cidr:``, whose value is a level.
Wrapper mode (port 465) is always encrypt.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from mta.config import Config
from mta.errors import ConfigError
from mta.maps import TableList, open_tables
from mta.tls.levels import sun_synonyms

NONE, MAY, ENCRYPT = "none", "may", "encrypt"
_ORDER = {NONE: 0, MAY: 1, ENCRYPT: 2}
# Sun Messaging Server channel keywords, server halves included.
_SYNONYMS = sun_synonyms("server")
# Postfix: levels that need certificate checks mean encrypt in smtpd (smtpd.c).
_CLIENT_ONLY = ("fingerprint", "verify", "secure")


def parse_level(text: str) -> str:
    """A level from a policy table value (its first word); raise ValueError."""
    word = (text.split() or [""])[0].lower()
    word = _SYNONYMS.get(word, word)
    if word not in _ORDER:
        raise ValueError(f"bad TLS level {text!r}: expected none, may or encrypt "
                         "(or notls, maytls, musttls)")
    return word


@dataclass
class InboundTlsPolicy:
    """The level decision for one listener."""

    level: str
    wrappermode: bool
    networks: TableList | None = None

    @classmethod
    def from_config(cls, config: Config) -> tuple[InboundTlsPolicy, list[str]]:
        """The policy and any warnings to log (Postfix's level downgrades)."""
        warnings = []
        level = config.smtpd_tls_security_level
        if level in _CLIENT_ONLY:
            warnings.append(f"smtpd_tls_security_level: unsupported TLS level \"{level}\", "
                            "using \"encrypt\"")
            level = ENCRYPT
        networks = None
        if config.smtpd_tls_policy_maps:
            networks = open_tables(config.smtpd_tls_policy_maps, Path(config.directory))
            _validate(networks)
        return cls(level, config.smtpd_tls_wrappermode, networks), warnings

    @property
    def uses_tls(self) -> bool:
        """Whether any client of this listener may be offered TLS."""
        return self.wrappermode or self.level != NONE or bool(self.networks)

    @property
    def mandatory(self) -> bool:
        return self.wrappermode or self.level == ENCRYPT

    def level_for(self, address: str) -> str:
        if self.wrappermode:
            return ENCRYPT
        if self.networks:
            value = self.networks.lookup(address)
            if value is not None:
                return parse_level(value)
        return self.level


def _validate(tables: TableList) -> None:
    for table in tables.tables:
        for entry in table.entries():
            try:
                parse_level(entry.value)
            except ValueError as error:
                raise ConfigError(f"{entry.where}: {entry.key}: {error}") from None
