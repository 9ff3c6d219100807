"""Postfix protocol lists and cipher grades, in both directions (one parser, two data sets)."""

from __future__ import annotations

import ssl

import pytest
from OpenSSL import SSL

from mta.config import from_text
from mta.config.types import BadValue
from mta.errors import ConfigError
from mta.tls.protocols import (
    INBOUND,
    OUTBOUND,
    Direction,
    check_ciphers,
    cipher_string,
    parse_grade,
    parse_protocols,
    split_exclusions,
)

V = ssl.TLSVersion
BOTH = pytest.mark.parametrize("direction", [INBOUND, OUTBOUND], ids=["smtpd", "smtp"])


@BOTH
@pytest.mark.parametrize(("text", "low", "high"), [
    (">=TLSv1", V.TLSv1, V.TLSv1_3),
    (">=TLSv1.2", V.TLSv1_2, V.TLSv1_3),
    ("<=TLSv1.2", V.TLSv1, V.TLSv1_2),
    (">=tlsv1.2, <=TLSv1.2", V.TLSv1_2, V.TLSv1_2),
    ("!SSLv2, !SSLv3", V.TLSv1, V.TLSv1_3),
    ("!SSLv2:!SSLv3:!TLSv1:!TLSv1.1", V.TLSv1_2, V.TLSv1_3),
    ("!SSLv2, !SSLv3, !TLSv1, !TLSv1.1", V.TLSv1_2, V.TLSv1_3),
    (">=SSLv3", V.TLSv1, V.TLSv1_3),
    ("TLSv1.3", V.TLSv1_3, V.TLSv1_3),
    ("TLSv1.2 TLSv1.3", V.TLSv1_2, V.TLSv1_3),
    ("TLSv1.2, TLSv1.3", V.TLSv1_2, V.TLSv1_3),
    ("", V.TLSv1, V.TLSv1_3),
])
def test_protocol_lists(direction: Direction, text: str, low: V, high: V) -> None:
    result = parse_protocols(text, direction)
    assert (result.minimum, result.maximum, result.holes) == (low, high, frozenset())
    # OpenSSL's own numbers, as pyOpenSSL's set_min_proto_version takes them.
    assert result.minimum == {V.TLSv1: 0x0301, V.TLSv1_2: 0x0303, V.TLSv1_3: 0x0304}[low]


@BOTH
@pytest.mark.parametrize(("text", "message"), [
    (">=TLSv12", "unknown TLS protocol 'TLSv12'"),
    ("TLSv9", "unknown TLS protocol 'TLSv9'"),
    ("SSLv3", "leaves no usable TLS version"),
    ("!TLSv1 !TLSv1.1 !TLSv1.2 !TLSv1.3", "leaves no usable TLS version"),
    (">=TLSv1.3, <=TLSv1.2", "leaves no usable TLS version"),
])
def test_bad_protocol_lists(direction: Direction, text: str, message: str) -> None:
    with pytest.raises(BadValue, match=message):
        parse_protocols(text, direction)


def test_a_gap_is_honoured_by_the_server_and_refused_by_the_client() -> None:
    # An OpenSSL server checks each excluded version; an OpenSSL client offers
    # only the lowest contiguous range, so the gap would drop TLS 1.3 unseen.
    server = parse_protocols("!SSLv2:!SSLv3:!TLSv1.2", INBOUND)
    assert (server.minimum, server.maximum, server.holes) == (V.TLSv1, V.TLSv1_3,
                                                              {V.TLSv1_2})
    assert server.names == ["TLSv1", "TLSv1.1", "TLSv1.3"]
    assert str(server) == "TLSv1..TLSv1.3 without TLSv1.2"
    with pytest.raises(BadValue, match="gap"):
        parse_protocols("!TLSv1.2, >=TLSv1.1", OUTBOUND)


def test_outbound_grades_are_postfixs() -> None:
    assert parse_grade("HIGH", OUTBOUND) == "high"
    for grade in ("medium", "low", "export", "null"):
        assert parse_grade(grade, OUTBOUND) == grade
    with pytest.raises(BadValue, match="unknown cipher grade 'strong'"):
        parse_grade("strong", OUTBOUND)
    text = cipher_string("high", ("aNULL", "CHACHA20"), OUTBOUND, seclevel=1)
    assert text == "aNULL:-aNULL:HIGH:@STRENGTH:!aNULL:!CHACHA20:@SECLEVEL=1"
    check_ciphers(text)
    with pytest.raises(BadValue, match="no TLS cipher left"):
        check_ciphers("aNULL:-aNULL:HIGH:!HIGH")


@pytest.mark.parametrize("grade", ["high", "medium"])
def test_inbound_grades_are_forward_secret_and_without_broken_ciphers(grade: str) -> None:
    context = SSL.Context(SSL.TLS_SERVER_METHOD)
    context.set_cipher_list(cipher_string(grade, (), INBOUND).encode())
    connection = SSL.Connection(context, None)
    tls12 = [name for name in connection.get_cipher_list() if not name.startswith("TLS_")]
    assert tls12
    for name in tls12:
        assert name.startswith(("ECDHE-", "DHE-")), name
        for weak in ("RC4", "DES-CBC3", "NULL", "EXP", "MD5", "ADH", "AECDH", "PSK"):
            assert weak not in name, name
    if grade == "high":
        assert all("GCM" in name or "CHACHA20" in name for name in tls12)


def test_inbound_refuses_the_weak_grades_by_name() -> None:
    for grade in ("low", "export", "null"):
        with pytest.raises(BadValue, match=f"cipher grade '{grade}' is not allowed for "
                                           "smtpd; expected one of high, medium"):
            parse_grade(grade, INBOUND)
    with pytest.raises(BadValue, match="unknown cipher grade 'strong'"):
        cipher_string("strong", (), INBOUND)


def test_exclusions() -> None:
    assert split_exclusions("aNULL, RC4:MD5  3DES") == ("aNULL", "RC4", "MD5", "3DES")
    assert cipher_string("high", ("ECDHE-RSA-CHACHA20-POLY1305",), INBOUND).endswith(
        ":!ECDHE-RSA-CHACHA20-POLY1305")
    for item in ("!RC4", "+RC4", "-RC4", "@STRENGTH"):
        with pytest.raises(BadValue) as refused:
            split_exclusions(f"aNULL, {item}")
        assert str(refused.value) == f"invalid unary '!+-@' in cipher exclusion: {item}"


def test_parameters_use_their_directions_data() -> None:
    config = from_text("smtpd_tls_protocols = !SSLv3, !TLSv1.1\n"
                       "smtpd_tls_exclude_ciphers = aNULL:RC4\n"
                       "smtp_tls_ciphers = LOW\n")
    assert config.smtpd_tls_protocols.holes == {V.TLSv1_1}
    assert config.smtpd_tls_exclude_ciphers == ("aNULL", "RC4")
    assert config.smtp_tls_ciphers == "low"
    with pytest.raises(ConfigError, match=r"main.cf:1: smtpd_tls_ciphers = low: cipher "
                                          "grade 'low' is not allowed for smtpd"):
        from_text("smtpd_tls_ciphers = low\n")
    with pytest.raises(ConfigError, match=r"main.cf:1: smtp_tls_protocols = !TLSv1.2: "
                                          ".*gap"):
        from_text("smtp_tls_protocols = !TLSv1.2\n")
