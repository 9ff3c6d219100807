"""Postfix's protocol and cipher-grade syntax, as OpenSSL settings."""

from __future__ import annotations

import pytest
from OpenSSL import SSL

from mta.config.types import BadValue
from mta.tls.protocols import cipher_list, parse_protocols

TLS1, TLS11, TLS12, TLS13 = 0x0301, 0x0302, 0x0303, 0x0304


@pytest.mark.parametrize(("text", "minimum", "maximum", "holes"), [
    (">=TLSv1.2", TLS12, TLS13, set()),
    (">=TLSv1", TLS1, TLS13, set()),
    ("<=TLSv1.2", TLS1, TLS12, set()),
    (">=TLSv1.2 <=TLSv1.2", TLS12, TLS12, set()),
    ("!SSLv2, !SSLv3, !TLSv1, !TLSv1.1", TLS12, TLS13, set()),
    ("!SSLv2:!SSLv3:!TLSv1.2", TLS1, TLS13, {TLS12}),
    ("TLSv1.3", TLS13, TLS13, set()),
    ("TLSv1.2, TLSv1.3", TLS12, TLS13, set()),
])
def test_protocol_lists(text: str, minimum: int, maximum: int, holes: set[int]) -> None:
    parsed = parse_protocols(text)
    assert (parsed.minimum, parsed.maximum, set(parsed.holes)) == (minimum, maximum, holes)


@pytest.mark.parametrize("text", ["SSLv3", "TLSv9", "!TLSv1 !TLSv1.1 !TLSv1.2 !TLSv1.3",
                                  ">=TLSv1.3 <=TLSv1.2"])
def test_protocol_lists_that_allow_nothing_or_are_unknown(text: str) -> None:
    with pytest.raises(BadValue):
        parse_protocols(text)


@pytest.mark.parametrize("grade", ["high", "medium"])
def test_grades_are_forward_secret_and_without_broken_ciphers(grade: str) -> None:
    context = SSL.Context(SSL.TLS_SERVER_METHOD)
    context.set_cipher_list(cipher_list(grade).encode())
    connection = SSL.Connection(context, None)
    tls12 = [name for name in connection.get_cipher_list() if not name.startswith("TLS_")]
    assert tls12
    for name in tls12:
        assert name.startswith(("ECDHE-", "DHE-")), name
        for weak in ("RC4", "DES-CBC3", "NULL", "EXP", "MD5", "ADH", "AECDH", "PSK"):
            assert weak not in name, name
    if grade == "high":
        assert all("GCM" in name or "CHACHA20" in name for name in tls12)


def test_refused_grades_and_exclusions() -> None:
    for grade in ("low", "export", "null"):
        with pytest.raises(BadValue):
            cipher_list(grade)
    assert cipher_list("high", ("ECDHE-RSA-CHACHA20-POLY1305",)).endswith(
        ":!ECDHE-RSA-CHACHA20-POLY1305")
    with pytest.raises(BadValue):
        cipher_list("high", ("!RC4",))
