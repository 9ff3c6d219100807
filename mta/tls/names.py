"""Server certificate name matching, as the Postfix SMTP client does it.

The names a certificate offers are its DNS subjectAltNames, or its subject
CommonName only when it has no DNS SAN (RFC 6125 §6.4.4; Postfix
tls_client.c). A match strategy list says what they must match
(smtp_tls_verify_cert_match, smtp_tls_secure_cert_match, ``match=``):

- ``hostname``: the MX host name (with ``[host]`` next hops, the host);
- ``nexthop``: the next-hop domain, ``[]`` and ``:port`` stripped;
- ``dot-nexthop``: any subdomain of the next-hop domain;
- ``example.com``: exactly that name; ``.example.com``: any subdomain of it.

Comparison ignores case. A leftmost ``*.`` label in a certificate name is a
wildcard for the leftmost label of the wanted name; with
tls_wildcard_matches_multiple_labels (Postfix's default) it covers several
labels. Partial wildcards (``f*.example.com``) never match.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from cryptography import x509

from mta.errors import BadValue
from mta.smtp.nexthop import parse_nexthop
from mta.tls import certinfo


def certificate_names(cert: x509.Certificate) -> tuple[tuple[str, ...], str]:
    """(the names that count for matching, and where they came from: 'SAN' or 'CN')."""
    try:
        sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        dns = tuple(_printable(name) for name in sans.get_values_for_type(x509.DNSName))
    except x509.ExtensionNotFound:
        dns = ()
    dns = tuple(name for name in dns if name)
    if dns:
        return dns, "SAN"
    cn = common_name(cert)
    return ((cn,) if cn else ()), "CN"


def common_name(cert: x509.Certificate) -> str:
    """The subject CN as a name to match: "" when absent or not printable."""
    return _printable(certinfo.common_name(cert.subject))


def _printable(name: str) -> str:
    # Postfix (tls_dns_name) drops names with NULs or non-printable characters:
    # such a name can only be an attempt to fool a comparison.
    if any(not (0x20 < ord(ch) < 0x7F) for ch in name):
        return ""
    return name.rstrip(".")


@dataclass(frozen=True, slots=True)
class MatchTarget:
    """What the certificate is checked against: the strategies and their inputs."""

    strategies: tuple[str, ...]
    hostname: str
    nexthop: str

    def patterns(self) -> list[tuple[str, bool, str]]:
        """(domain, subdomains only?, the strategy that produced it) per strategy."""
        result = []
        for strategy in self.strategies:
            lowered = strategy.lower()
            if lowered == "hostname":
                result.append((self.hostname, False, strategy))
            elif lowered == "nexthop":
                result.append((self.nexthop, False, strategy))
            elif lowered == "dot-nexthop":
                result.append((self.nexthop, True, strategy))
            elif strategy.startswith(".") and len(strategy) > 1:
                result.append((strategy[1:], True, strategy))
            else:
                result.append((strategy, False, strategy))
        return result


def parse_strategies(text: str, separators: str = ", \t:") -> tuple[str, ...]:
    """A match list; main.cf separates with commas/space, policy entries with colons."""
    items: list[str] = []
    current = ""
    for char in text:
        if char in separators:
            if current:
                items.append(current)
            current = ""
        else:
            current += char
    if current:
        items.append(current)
    for item in items:
        if item == ".":
            raise BadValue("'.' is not a usable match pattern")
    return tuple(items)


def name_matches(cert_name: str, domain: str, subdomains: bool,
                 multi_label_wildcard: bool = True) -> bool:
    """One certificate name against one wanted domain (Postfix match_servername)."""
    if not cert_name or not domain:
        return False
    cert_name = cert_name.lower().rstrip(".")
    domain = domain.lower().rstrip(".")
    if subdomains:
        # Postfix compares the certificate name as text here, so a wildcard
        # name *.example.com counts as a subdomain of example.com.
        return len(cert_name) > len(domain) + 1 and cert_name.endswith("." + domain)
    if cert_name == domain:
        return True
    if cert_name.startswith("*.") and len(cert_name) > 2:
        suffix = cert_name[1:]  # ".example.com"
        if "*" in suffix or "." not in domain:
            return False
        if multi_label_wildcard:
            return domain.endswith(suffix) and len(domain) > len(suffix)
        return domain[domain.index("."):] == suffix
    return False


@dataclass(frozen=True, slots=True)
class NameMatch:
    """The outcome of matching: the certificate name that matched and why."""

    cert_name: str
    strategy: str


def match_certificate(names: Iterable[str], target: MatchTarget,
                      multi_label_wildcard: bool = True) -> NameMatch | None:
    """The first certificate name that satisfies one of the target's strategies."""
    patterns = target.patterns()
    for name in names:
        for domain, subdomains, strategy in patterns:
            if name_matches(name, domain, subdomains, multi_label_wildcard):
                return NameMatch(name, strategy)
    return None


def strip_nexthop(nexthop: str) -> str:
    """The next-hop domain for matching: [] and :port removed (Postfix tls_nexthop),
    read as delivery reads the next hop (mta/smtp/nexthop.py)."""
    return parse_nexthop(nexthop).host


def describe(names: Sequence[str], source: str) -> str:
    return f"{source} " + ", ".join(names) if names else "no names"
