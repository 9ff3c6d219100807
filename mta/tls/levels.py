"""TLS security levels: Postfix's ordered client levels, and Sun's channel keywords for both sides.

Postfix orders the client levels none < may < encrypt < fingerprint < dane <
dane-only < verify < secure (src/tls/tls.h; halfdane is internal and never
configured). Every check in Postern compares levels with this order, so
"at least encrypt" means the same thing everywhere.
"""

from __future__ import annotations

from enum import IntEnum

from mta.errors import BadValue


class TlsLevel(IntEnum):
    """A client TLS security level; larger is stricter."""

    NONE = 0
    MAY = 1
    ENCRYPT = 2
    FINGERPRINT = 3
    DANE = 5
    DANE_ONLY = 6
    VERIFY = 7
    SECURE = 8

    @property
    def label(self) -> str:
        """The name as main.cf and the maillog spell it (dane-only, not DANE_ONLY)."""
        return self.name.lower().replace("_", "-")

    @property
    def requires_tls(self) -> bool:
        """encrypt and above: never a byte of mail in plaintext."""
        return self >= TlsLevel.ENCRYPT

    @property
    def must_match(self) -> bool:
        """fingerprint and above: the peer's certificate must match the policy."""
        return self >= TlsLevel.FINGERPRINT

    @property
    def must_trust(self) -> bool:
        """verify and secure (and dane): the chain must lead to a trusted anchor."""
        return self >= TlsLevel.DANE

    def __str__(self) -> str:
        return self.label


_NAMES = {level.label: level for level in TlsLevel}

# Sun/Oracle Messaging Server channel keywords (reference §6), for smtpd
# (inbound_policy.py) and the client alike: each names both halves, and
# ...client / ...server name one side. "must" never validates certificates,
# so it is Postfix's encrypt.
SUN_KEYWORDS = {"notls": "none", "maytls": "may", "musttls": "encrypt"}


def sun_synonyms(side: str) -> dict[str, str]:
    """The keywords one side ("client" or "server") takes, with the level each means."""
    return {word + half: level for word, level in SUN_KEYWORDS.items() for half in ("", side)}


SYNONYMS = {word: _NAMES[level] for word, level in sun_synonyms("client").items()}
_SERVER_HALVES = sun_synonyms("server").keys() - SUN_KEYWORDS.keys()

# Levels Postfix has and Postern does not implement yet. Refusing them is the
# only safe answer: silently treating "dane" as "may" would send mail with less
# protection than the operator asked for.
RESERVED = {
    TlsLevel.DANE: "DANE (RFC 7672) is not implemented yet",
    TlsLevel.DANE_ONLY: "DANE (RFC 7672) is not implemented yet",
}

SUPPORTED = ("none", "may", "encrypt", "fingerprint", "verify", "secure")


def parse_level(text: str) -> TlsLevel:
    """A client level from main.cf or a policy entry; BadValue says why not."""
    word = text.strip().lower()
    # Not "or": TlsLevel.NONE is 0 and falsy.
    level = _NAMES.get(word)
    if level is None:
        level = SYNONYMS.get(word)
    if word == "halfdane":
        level = None
    if level is None:
        if word in _SERVER_HALVES:
            raise BadValue(f"{word!r} is a server-side channel keyword; the SMTP client "
                           f"takes {word.replace('server', 'client')} or "
                           f"{word.replace('server', '')}")
        raise BadValue(f"unknown TLS security level {text.strip()!r}; expected one of "
                       f"{', '.join(SUPPORTED)} (or notls, maytls, musttls)")
    if level in RESERVED:
        raise BadValue(f"TLS security level {level.label!r} is reserved: {RESERVED[level]}; "
                       "use verify or secure for authenticated TLS, or may")
    return level
