"""Postfix's TLS protocol lists and cipher grades, turned into OpenSSL settings.

Direction-neutral: ``smtpd_tls_protocols`` and ``smtp_tls_protocols`` share
Postfix's syntax (postconf(5)): either a range, ``>=TLSv1.2`` / ``<=TLSv1.3``,
or the older lists of included and ``!``-excluded names, separated by commas,
colons or spaces. Cipher grades are Postfix's names, but every grade we accept
is forward-secret only and excludes RC4, 3DES, NULL and EXPORT: ``low``,
``export`` and ``null`` are refused (docs/configuration.md says why).
TLS 1.3 cipher suites are not configured here; all of them are AEAD with
ephemeral key exchange.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from mta.config.types import BadValue

# Oldest to newest, as OpenSSL numbers them (TLS1_VERSION … TLS1_3_VERSION).
VERSIONS: dict[str, int] = {"TLSv1": 0x0301, "TLSv1.1": 0x0302, "TLSv1.2": 0x0303,
                            "TLSv1.3": 0x0304}
_OBSOLETE = {"SSLv2", "SSLv3"}  # never available; excluding them is a no-op

# The cipher lists behind the grades. Postfix's own "medium" admits static-RSA
# key exchange (no forward secrecy); ours does not.
_EXCLUDED = "!aNULL:!eNULL:!EXPORT:!LOW:!RC4:!3DES:!DES:!MD5:!PSK:!SRP:!DSS:!SEED:!IDEA"
GRADES: dict[str, str] = {
    "high": f"ECDHE+AESGCM:ECDHE+CHACHA20:DHE+AESGCM:DHE+CHACHA20:{_EXCLUDED}:@STRENGTH",
    "medium": f"ECDHE:DHE:{_EXCLUDED}:@STRENGTH",
}


@dataclass(frozen=True, slots=True)
class ProtocolRange:
    """The TLS versions allowed: a contiguous range, minus excluded holes."""

    minimum: int
    maximum: int
    holes: frozenset[int] = frozenset()

    @property
    def names(self) -> list[str]:
        return [name for name, number in VERSIONS.items()
                if self.minimum <= number <= self.maximum and number not in self.holes]


def parse_protocols(text: str) -> ProtocolRange:
    """Parse a Postfix ``*_tls_protocols`` value; raise BadValue when it allows nothing."""
    allowed = set(VERSIONS.values())
    included: set[int] = set()
    for token in (t for t in re.split(r"[\s,:]+", text.strip()) if t):
        for prefix in (">=", "<=", "!"):
            if token.startswith(prefix):
                name, operator = token[len(prefix):], prefix
                break
        else:
            name, operator = token, ""
        if name in _OBSOLETE:
            if operator == "!":
                continue
            raise BadValue(f"{name} is not supported")
        if name not in VERSIONS:
            raise BadValue(f"unknown protocol {name!r}; expected one of "
                           + ", ".join(VERSIONS))
        number = VERSIONS[name]
        if operator == ">=":
            allowed = {v for v in allowed if v >= number}
        elif operator == "<=":
            allowed = {v for v in allowed if v <= number}
        elif operator == "!":
            allowed.discard(number)
        else:
            included.add(number)
    if included:
        allowed &= included
    if not allowed:
        raise BadValue("no TLS protocol version is left enabled")
    low, high = min(allowed), max(allowed)
    holes = frozenset(v for v in VERSIONS.values() if low < v < high and v not in allowed)
    return ProtocolRange(low, high, holes)


def cipher_list(grade: str, exclusions: tuple[str, ...] = ()) -> str:
    """The OpenSSL cipher string for a Postfix grade plus ``*_exclude_ciphers``."""
    grade = grade.strip().lower()
    if grade not in GRADES:
        raise BadValue(f"cipher grade {grade!r} is not allowed; expected high or medium "
                       "(low, export and null are refused)")
    text = GRADES[grade]
    for item in exclusions:
        if item[:1] in "!+-@":
            raise BadValue(f"invalid unary '!+-@' in cipher exclusion: {item}")
        text += f":!{item}"
    return text
