"""Postfix's TLS protocol lists and cipher grades, for both directions, as OpenSSL settings.

Grammar of ``*_tls_protocols`` and ``protocols=`` (postconf(5), Postfix 3.6+):
items separated by commas, whitespace or colons, names compared without
regard to case; ``>=TLSv1.2`` sets a floor, ``<=TLSv1.3`` a ceiling,
``!TLSv1`` excludes one version and a bare name includes it (then every
version not included is excluded). SSLv2 and SSLv3 are known names (old
configurations exclude them) that OpenSSL never negotiates. A cipher grade is
one of Postfix's names, and ``*_exclude_ciphers`` / ``exclude=`` name ciphers
or OpenSSL aliases to remove.

One parser serves smtpd and the SMTP client; how the two differ is data, a
``Direction``:

- which grades it accepts and the cipher list behind each: the SMTP client
  takes Postfix's five grades (``may`` prefers any encryption to none);
  smtpd takes ``high`` and ``medium`` only, both forward-secret, and refuses
  ``low``, ``export`` and ``null`` (docs/inbound-tls.md says why);
- whether a protocol list may leave a gap (``!TLSv1.2`` while 1.1 and 1.3
  stay): an OpenSSL server honours each excluded version, but an OpenSSL
  client offers only the lowest contiguous range, so a gap would silently
  drop every version above it; the client direction refuses such a list.

TLS 1.3 cipher suites are not configured here; all of them are AEAD with
ephemeral key exchange.
"""

from __future__ import annotations

import functools
import re
import ssl
from collections.abc import Mapping
from dataclasses import dataclass

from mta.errors import BadValue

# Oldest first. ssl.TLSVersion's values are OpenSSL's version numbers
# (TLS1_VERSION = 0x0301 ...), which pyOpenSSL takes as they are.
VERSIONS: dict[str, ssl.TLSVersion | None] = {
    "sslv2": None,
    "sslv3": None,
    "tlsv1": ssl.TLSVersion.TLSv1,
    "tlsv1.1": ssl.TLSVersion.TLSv1_1,
    "tlsv1.2": ssl.TLSVersion.TLSv1_2,
    "tlsv1.3": ssl.TLSVersion.TLSv1_3,
}
_ORDER = list(VERSIONS)
_USABLE = [v for v in VERSIONS.values() if v is not None]
_SEPARATORS = re.compile(r"[\s,:]+")

# Postfix's tls_{high,medium,low,export,null}_cipherlist defaults. The leading
# "aNULL:-aNULL" keeps anonymous suites out while fixing their position, as
# Postfix does.
POSTFIX_GRADES: dict[str, str] = {
    "high": "aNULL:-aNULL:HIGH:@STRENGTH",
    "medium": "aNULL:-aNULL:HIGH:MEDIUM:+RC4:@STRENGTH",
    "low": "aNULL:-aNULL:HIGH:MEDIUM:LOW:+RC4:@STRENGTH",
    "export": "aNULL:-aNULL:HIGH:MEDIUM:LOW:EXPORT:+RC4:@STRENGTH",
    "null": "eNULL:!aNULL",
}

# smtpd's grades: ECDHE or DHE key exchange only, never RC4, 3DES, NULL or
# EXPORT; high is AEAD only. Postfix's own medium admits static-RSA key
# exchange (no forward secrecy); ours does not.
_WEAK = "!aNULL:!eNULL:!EXPORT:!LOW:!RC4:!3DES:!DES:!MD5:!PSK:!SRP:!DSS:!SEED:!IDEA"
FORWARD_SECRET_GRADES: dict[str, str] = {
    "high": f"ECDHE+AESGCM:ECDHE+CHACHA20:DHE+AESGCM:DHE+CHACHA20:{_WEAK}:@STRENGTH",
    "medium": f"ECDHE:DHE:{_WEAK}:@STRENGTH",
}


@dataclass(frozen=True, slots=True)
class Direction:
    """What one side of SMTP accepts in protocol lists and cipher grades."""

    name: str  # the program, as in error messages: smtpd or smtp
    grades: Mapping[str, str]  # grade -> OpenSSL cipher list
    allows_gaps: bool  # may a protocol list exclude a version between two allowed ones?
    refused_grades: str = ""  # why Postfix grades missing from grades are refused


INBOUND = Direction("smtpd", FORWARD_SECRET_GRADES, allows_gaps=True,
                    refused_grades="smtpd's grades are forward-secret only")
OUTBOUND = Direction("smtp", POSTFIX_GRADES, allows_gaps=False)


@dataclass(frozen=True, slots=True)
class ProtocolRange:
    """The TLS versions a protocol list allows: a range, minus excluded holes."""

    minimum: ssl.TLSVersion
    maximum: ssl.TLSVersion
    holes: frozenset[ssl.TLSVersion] = frozenset()

    @property
    def names(self) -> list[str]:
        return [_label(v) for v in _USABLE
                if self.minimum <= v <= self.maximum and v not in self.holes]

    def __str__(self) -> str:
        if self.minimum == self.maximum:
            return _label(self.minimum)
        text = f"{_label(self.minimum)}..{_label(self.maximum)}"
        if self.holes:
            text += " without " + ", ".join(_label(v) for v in sorted(self.holes))
        return text


def _label(version: ssl.TLSVersion) -> str:
    return version.name.replace("_", ".")


def _version_index(name: str, item: str) -> int:
    key = name.strip().lower()
    if key not in VERSIONS:
        raise BadValue(f"unknown TLS protocol {name!r} in {item!r}; expected SSLv2, SSLv3, "
                       "TLSv1, TLSv1.1, TLSv1.2 or TLSv1.3")
    return _ORDER.index(key)


def parse_protocols(text: str, direction: Direction) -> ProtocolRange:
    """A Postfix protocol list as the versions it allows; BadValue when it allows
    none, or leaves a gap where the direction cannot honour one."""
    allowed = set(range(len(_ORDER)))
    included: set[int] = set()
    for item in (part for part in _SEPARATORS.split(text.strip()) if part):
        if item.startswith(">="):
            allowed -= set(range(_version_index(item[2:], item)))
        elif item.startswith("<="):
            allowed -= set(range(_version_index(item[2:], item) + 1, len(_ORDER)))
        elif item.startswith("!"):
            allowed.discard(_version_index(item[1:], item))
        else:
            included.add(_version_index(item, item))
    if included:
        allowed &= included
    usable = sorted(i for i in allowed if VERSIONS[_ORDER[i]] is not None)
    if not usable:
        raise BadValue(f"protocol list {text.strip()!r} leaves no usable TLS version "
                       "(TLSv1 to TLSv1.3)")
    gaps = set(range(usable[0], usable[-1] + 1)) - set(usable)
    if gaps and not direction.allows_gaps:
        raise BadValue(f"protocol list {text.strip()!r} allows versions with a gap between "
                       f"them, which an OpenSSL client cannot offer ({direction.name} would "
                       "silently lose the versions above the gap); give a contiguous range "
                       "such as >=TLSv1.2")
    low, high = VERSIONS[_ORDER[usable[0]]], VERSIONS[_ORDER[usable[-1]]]
    assert low is not None and high is not None
    holes = frozenset(v for v in (VERSIONS[_ORDER[i]] for i in gaps) if v is not None)
    return ProtocolRange(low, high, holes)


def parse_grade(text: str, direction: Direction) -> str:
    """A cipher grade the direction accepts, lower-cased."""
    grade = text.strip().lower()
    if grade in direction.grades:
        return grade
    expected = ", ".join(direction.grades)
    if grade in POSTFIX_GRADES:
        refused = ", ".join(g for g in POSTFIX_GRADES if g not in direction.grades)
        raise BadValue(f"cipher grade {grade!r} is not allowed for {direction.name}; expected "
                       f"one of {expected} ({refused} are refused: "
                       f"{direction.refused_grades})")
    raise BadValue(f"unknown cipher grade {text.strip()!r}; expected one of {expected}")


def split_exclusions(text: str) -> tuple[str, ...]:
    """Cipher names or aliases to exclude, separated by commas, whitespace or colons.

    Each is a name, not an OpenSSL operator: Postfix refuses a leading
    ``!+-@`` (tls_misc.c tls_set_ciphers) with the same words.
    """
    items = tuple(part for part in _SEPARATORS.split(text.strip()) if part)
    for item in items:
        if item[0] in "!+-@":
            raise BadValue(f"invalid unary '!+-@' in cipher exclusion: {item}")
    return items


def cipher_string(grade: str, exclusions: tuple[str, ...], direction: Direction,
                  seclevel: int | None = None) -> str:
    """The OpenSSL cipher string for a grade of the direction, minus exclusions."""
    text = direction.grades[parse_grade(grade, direction)]
    for name in exclusions:
        text += f":!{name}"
    if seclevel is not None:
        text += f":@SECLEVEL={seclevel}"
    return text


@functools.lru_cache(maxsize=256)
def check_ciphers(text: str) -> None:
    """Raise BadValue when OpenSSL selects no cipher from text (each text checked once:
    a policy table of thousands of entries has a handful of distinct cipher lists)."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    try:
        context.set_ciphers(text)
    except ssl.SSLError:
        raise BadValue(f"no TLS cipher left by {text!r}") from None
