"""Postfix protocol lists and cipher grades."""

from __future__ import annotations

import ssl

import pytest

from mta.config.types import BadValue
from mta.tls.protocol_list import (
    check_ciphers,
    cipher_string,
    parse_grade,
    parse_protocols,
    split_exclusions,
)

V = ssl.TLSVersion


@pytest.mark.parametrize(("text", "low", "high"), [
    (">=TLSv1", V.TLSv1, V.TLSv1_3),
    (">=TLSv1.2", V.TLSv1_2, V.TLSv1_3),
    (">=tlsv1.2, <=TLSv1.2", V.TLSv1_2, V.TLSv1_2),
    ("!SSLv2, !SSLv3", V.TLSv1, V.TLSv1_3),
    ("!SSLv2:!SSLv3:!TLSv1:!TLSv1.1", V.TLSv1_2, V.TLSv1_3),
    ("TLSv1.3", V.TLSv1_3, V.TLSv1_3),
    ("TLSv1.2 TLSv1.3", V.TLSv1_2, V.TLSv1_3),
    ("", V.TLSv1, V.TLSv1_3),
])
def test_protocols(text: str, low: ssl.TLSVersion, high: ssl.TLSVersion) -> None:
    result = parse_protocols(text)
    assert (result.minimum, result.maximum) == (low, high)


@pytest.mark.parametrize(("text", "message"), [
    (">=TLSv12", "unknown TLS protocol 'TLSv12'"),
    ("!TLSv1.2, >=TLSv1.1", "gap"),
    ("SSLv3", "leaves no usable TLS version"),
    (">=TLSv1.3, <=TLSv1.2", "leaves no usable TLS version"),
])
def test_bad_protocols(text: str, message: str) -> None:
    with pytest.raises(BadValue, match=message):
        parse_protocols(text)


def test_grades_and_exclusions() -> None:
    assert parse_grade("HIGH") == "high"
    with pytest.raises(BadValue, match="unknown cipher grade 'strong'"):
        parse_grade("strong")
    assert split_exclusions("aNULL, RC4:MD5  3DES") == ("aNULL", "RC4", "MD5", "3DES")
    text = cipher_string("high", ("aNULL", "CHACHA20"), seclevel=1)
    assert text == "aNULL:-aNULL:HIGH:@STRENGTH:!aNULL:!CHACHA20:@SECLEVEL=1"
    check_ciphers(text)
    with pytest.raises(BadValue, match="no TLS cipher left"):
        check_ciphers("aNULL:-aNULL:HIGH:!HIGH")
