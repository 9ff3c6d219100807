"""Postfix's TLS protocol lists and cipher grades, turned into SSLContext settings.

Grammar of ``*_tls_protocols`` and ``protocols=`` (postconf(5), Postfix 3.6+):
items separated by commas, whitespace or colons; ``>=TLSv1.2`` sets a floor,
``<=TLSv1.3`` a ceiling, ``!TLSv1`` excludes one version and a bare name
includes it (then every version not included is excluded). Cipher grades are
Postfix's ``high``, ``medium``, ``low``, ``export`` and ``null``, with
``exclude`` naming ciphers (or OpenSSL aliases) to remove.
"""

from __future__ import annotations

import functools
import re
import ssl
from dataclasses import dataclass

from mta.config.types import BadValue

# Oldest first. SSLv2/SSLv3 are known names (old configurations exclude them)
# that the OpenSSL underneath never negotiates.
_VERSIONS: dict[str, ssl.TLSVersion | None] = {
    "sslv2": None,
    "sslv3": None,
    "tlsv1": ssl.TLSVersion.TLSv1,
    "tlsv1.1": ssl.TLSVersion.TLSv1_1,
    "tlsv1.2": ssl.TLSVersion.TLSv1_2,
    "tlsv1.3": ssl.TLSVersion.TLSv1_3,
}
_ORDER = list(_VERSIONS)

# Postfix's tls_{high,medium,low,export,null}_cipherlist defaults. The leading
# "aNULL:-aNULL" keeps anonymous suites out while fixing their position, as
# Postfix does.
CIPHER_GRADES = {
    "high": "aNULL:-aNULL:HIGH:@STRENGTH",
    "medium": "aNULL:-aNULL:HIGH:MEDIUM:+RC4:@STRENGTH",
    "low": "aNULL:-aNULL:HIGH:MEDIUM:LOW:+RC4:@STRENGTH",
    "export": "aNULL:-aNULL:HIGH:MEDIUM:LOW:EXPORT:+RC4:@STRENGTH",
    "null": "eNULL:!aNULL",
}


@dataclass(frozen=True, slots=True)
class ProtocolRange:
    """The TLS versions a protocol list allows, as a contiguous range."""

    minimum: ssl.TLSVersion
    maximum: ssl.TLSVersion

    def __str__(self) -> str:
        if self.minimum == self.maximum:
            return _label(self.minimum)
        return f"{_label(self.minimum)}..{_label(self.maximum)}"


def _label(version: ssl.TLSVersion) -> str:
    return version.name.replace("_", ".")


def _version_index(name: str, item: str) -> int:
    key = name.strip().lower()
    if key not in _VERSIONS:
        raise BadValue(f"unknown TLS protocol {name!r} in {item!r}; expected SSLv2, SSLv3, "
                       "TLSv1, TLSv1.1, TLSv1.2 or TLSv1.3")
    return _ORDER.index(key)


def parse_protocols(text: str) -> ProtocolRange:
    """A Postfix protocol list as the range of versions it allows."""
    allowed = set(range(len(_ORDER)))
    included: set[int] = set()
    for item in (part for part in re.split(r"[\s,:]+", text.strip()) if part):
        if item.startswith(">="):
            floor = _version_index(item[2:], item)
            allowed -= set(range(floor))
        elif item.startswith("<="):
            ceiling = _version_index(item[2:], item)
            allowed -= set(range(ceiling + 1, len(_ORDER)))
        elif item.startswith("!"):
            allowed.discard(_version_index(item[1:], item))
        else:
            included.add(_version_index(item, item))
    if included:
        allowed &= included
    usable = sorted(i for i in allowed if _VERSIONS[_ORDER[i]] is not None)
    if not usable:
        raise BadValue(f"protocol list {text.strip()!r} leaves no usable TLS version "
                       "(TLSv1 to TLSv1.3)")
    if usable != list(range(usable[0], usable[-1] + 1)):
        # OpenSSL expresses versions as a range; a hole (say, TLSv1.1 and 1.3
        # but not 1.2) needs deprecated per-version switches. Refuse it
        # rather than allow a version the operator excluded.
        raise BadValue(f"protocol list {text.strip()!r} allows versions with a gap between "
                       "them; give a contiguous range such as >=TLSv1.2")
    low, high = _VERSIONS[_ORDER[usable[0]]], _VERSIONS[_ORDER[usable[-1]]]
    assert low is not None and high is not None
    return ProtocolRange(low, high)


def parse_grade(text: str) -> str:
    grade = text.strip().lower()
    if grade not in CIPHER_GRADES:
        raise BadValue(f"unknown cipher grade {text.strip()!r}; expected one of "
                       + ", ".join(CIPHER_GRADES))
    return grade


def split_exclusions(text: str) -> tuple[str, ...]:
    """Cipher names or aliases to exclude, separated by commas, whitespace or colons."""
    return tuple(part for part in re.split(r"[\s,:]+", text.strip()) if part)


def cipher_string(grade: str, exclusions: tuple[str, ...] = (), seclevel: int | None = None,
                  ) -> str:
    """The OpenSSL cipher string for a grade minus exclusions."""
    text = CIPHER_GRADES[grade]
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
