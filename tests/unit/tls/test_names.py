"""Certificate name matching as the Postfix SMTP client does it."""

from __future__ import annotations

import pytest

from mta.tls.names import (
    MatchTarget,
    certificate_names,
    match_certificate,
    name_matches,
    parse_strategies,
    strip_nexthop,
)
from tests.fakes.certs import TestCA


@pytest.mark.parametrize(("cert_name", "domain", "sub", "multi", "expected"), [
    ("mx.example.com", "mx.example.com", False, True, True),
    ("MX.Example.COM", "mx.example.com", False, True, True),  # case ignored
    ("mx.example.com.", "mx.example.com", False, True, True),
    ("mx.example.com", "mx2.example.com", False, True, False),
    ("*.example.com", "mx.example.com", False, True, True),
    ("*.example.com", "example.com", False, True, False),  # not the parent itself
    ("*.example.com", "a.b.example.com", False, True, True),  # Postfix's default
    ("*.example.com", "a.b.example.com", False, False, False),  # RFC 6125: one label
    ("*.example.com", "mx.xexample.com", False, True, False),
    ("f*.example.com", "foo.example.com", False, True, False),  # no partial wildcards
    ("*.*.example.com", "a.b.example.com", False, True, False),
    ("*", "localhost", False, True, False),
    ("*.com", "example.com", False, True, True),  # as Postfix: it is the CA's job
    ("mx.example.com", "example.com", True, True, True),  # dot-nexthop / .domain
    ("example.com", "example.com", True, True, False),  # subdomains only
    ("mx.notexample.com", "example.com", True, True, False),
    ("*.example.com", "example.com", True, True, True),  # Postfix compares text
    ("", "example.com", False, True, False),
])
def test_name_matches(cert_name: str, domain: str, sub: bool, multi: bool,
                      expected: bool) -> None:
    assert name_matches(cert_name, domain, sub, multi) is expected


def target(*strategies: str) -> MatchTarget:
    return MatchTarget(strategies, hostname="mx1.mail.example.net", nexthop="example.com")


@pytest.mark.parametrize(("strategies", "names", "matched"), [
    (("hostname",), ["mx1.mail.example.net"], ("mx1.mail.example.net", "hostname")),
    (("hostname",), ["example.com"], None),
    (("nexthop",), ["example.com"], ("example.com", "nexthop")),
    (("nexthop", "dot-nexthop"), ["mx.example.com"], ("mx.example.com", "dot-nexthop")),
    (("nexthop", "dot-nexthop"), ["mx1.mail.example.net"], None),
    ((".mail.example.net",), ["mx1.mail.example.net"], ("mx1.mail.example.net",
                                                          ".mail.example.net")),
    (("other.test", "hostname"), ["x.test", "*.mail.example.net"],
     ("*.mail.example.net", "hostname")),
])
def test_strategies(strategies: tuple[str, ...], names: list[str],
                    matched: tuple[str, str] | None) -> None:
    result = match_certificate(names, target(*strategies))
    assert (None if result is None else (result.cert_name, result.strategy)) == matched


def test_names_from_certificate() -> None:
    ca = TestCA()
    with_san = ca.issue("mx.example.com", "mail.example.com", cn="other.example.com").cert
    assert certificate_names(with_san) == (("mx.example.com", "mail.example.com"), "SAN")
    cn_only = ca.issue("mx.example.com", san=False).cert
    assert certificate_names(cn_only) == (("mx.example.com",), "CN")
    nothing = ca.issue(cn=None, san=False).cert
    assert certificate_names(nothing) == ((), "CN")


@pytest.mark.parametrize(("text", "separators", "expected"), [
    ("nexthop, dot-nexthop", ", \t:", ("nexthop", "dot-nexthop")),
    ("hostname:dot-nexthop", ":", ("hostname", "dot-nexthop")),
    (".example.net:example.net", ":", (".example.net", "example.net")),
])
def test_parse_strategies(text: str, separators: str, expected: tuple[str, ...]) -> None:
    assert parse_strategies(text, separators) == expected


@pytest.mark.parametrize(("nexthop", "domain"), [
    ("example.com", "example.com"), ("[mail.example.org]:587", "mail.example.org"),
    ("[mail.example.org]", "mail.example.org"), ("example.com:2525", "example.com"),
    ("inet:[mx.example]:25", "mx.example"),
])
def test_strip_nexthop(nexthop: str, domain: str) -> None:
    assert strip_nexthop(nexthop) == domain
