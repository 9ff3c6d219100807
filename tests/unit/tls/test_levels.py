"""Outbound TLS levels: Postfix's order, Sun's synonyms, reserved DANE."""

from __future__ import annotations

import pytest

from mta.config import from_text
from mta.config.types import BadValue
from mta.errors import ConfigError
from mta.tls.levels import TlsLevel, parse_level


def test_postfix_order() -> None:
    order = ["none", "may", "encrypt", "fingerprint", "dane", "dane-only", "verify", "secure"]
    levels = [TlsLevel[name.upper().replace("-", "_")] for name in order]
    assert levels == sorted(levels)
    assert [level.label for level in levels] == order


@pytest.mark.parametrize(("text", "level"), [
    ("none", TlsLevel.NONE), ("may", TlsLevel.MAY), ("encrypt", TlsLevel.ENCRYPT),
    ("fingerprint", TlsLevel.FINGERPRINT), ("verify", TlsLevel.VERIFY),
    ("secure", TlsLevel.SECURE), ("SECURE", TlsLevel.SECURE),
    ("notls", TlsLevel.NONE), ("maytls", TlsLevel.MAY), ("musttls", TlsLevel.ENCRYPT),
    ("notlsclient", TlsLevel.NONE), ("maytlsclient", TlsLevel.MAY),
    ("musttlsclient", TlsLevel.ENCRYPT),
])
def test_parse(text: str, level: TlsLevel) -> None:
    assert parse_level(text) is level


@pytest.mark.parametrize(("text", "message"), [
    ("dane", "'dane' is reserved: DANE (RFC 7672) is not implemented yet"),
    ("dane-only", "'dane-only' is reserved"),
    ("halfdane", "unknown TLS security level 'halfdane'"),
    ("maytlsserver", "'maytlsserver' is a server-side channel keyword; the SMTP client "
                     "takes maytlsclient or maytls"),
    ("musttlsserver", "takes musttlsclient or musttls"),
    ("mandatory", "unknown TLS security level 'mandatory'; expected one of none, may, "
                  "encrypt, fingerprint, verify, secure (or notls, maytls, musttls)"),
])
def test_refused(text: str, message: str) -> None:
    with pytest.raises(BadValue) as caught:
        parse_level(text)
    assert message in str(caught.value)


def test_predicates() -> None:
    assert not TlsLevel.MAY.requires_tls and TlsLevel.ENCRYPT.requires_tls
    assert not TlsLevel.ENCRYPT.must_match and TlsLevel.FINGERPRINT.must_match
    assert not TlsLevel.FINGERPRINT.must_trust and TlsLevel.VERIFY.must_trust


def test_main_cf_default_and_check() -> None:
    assert from_text("").smtp_tls_security_level is TlsLevel.MAY
    assert from_text("smtp_tls_security_level = musttls\n").smtp_tls_security_level \
        is TlsLevel.ENCRYPT
    with pytest.raises(ConfigError) as caught:
        from_text("myhostname = a.test\nsmtp_tls_security_level = dane\n", "/etc/main.cf")
    assert str(caught.value).startswith("/etc/main.cf:2: smtp_tls_security_level = dane: "
                                        "TLS security level 'dane' is reserved")
