"""smtp_tls_policy_maps: Postfix's lookup order, attributes, and bad entries stopping the start."""

from __future__ import annotations

from pathlib import Path

import pytest

from mta.config import from_text
from mta.errors import ConfigError
from mta.tls.levels import TlsLevel
from mta.tls.policy_table import PolicyTable, lookup_keys

FP1 = ":".join(["AB"] * 32)
FP2 = "CD" * 32

POLICY = f"""\
# comment
example.com           secure match=nexthop:dot-nexthop ciphers=high
.example.com          encrypt
.net                  maytls
partner.test          musttls protocols=>=TLSv1.3
[relay.example.org]:587  verify match=hostname
[relay.example.org]   fingerprint match={FP1}|{FP2}
relay.example.org     notls
pinned.test           fingerprint
    match={FP1}
sni.test              may servername=hostname exclude=CHACHA20
"""


def table(tmp_path: Path, text: str = POLICY, main_cf: str = "") -> PolicyTable:
    (tmp_path / "tls_policy").write_text(text)
    config = from_text(f"smtp_tls_policy_maps = texthash:tls_policy\n{main_cf}",
                       str(tmp_path / "main.cf"))
    return PolicyTable.from_config(config)


@pytest.mark.parametrize(("nexthop", "level", "key"), [
    ("example.com", TlsLevel.SECURE, "example.com"),  # exact domain
    ("EXAMPLE.com", TlsLevel.SECURE, "example.com"),  # keys ignore case
    ("mx.example.com", TlsLevel.ENCRYPT, ".example.com"),  # .parent
    ("a.b.example.com", TlsLevel.ENCRYPT, ".example.com"),  # nearest parent first
    ("example.net", TlsLevel.MAY, ".net"),  # maytls
    ("partner.test", TlsLevel.ENCRYPT, "partner.test"),  # musttls
    ("[relay.example.org]:587", TlsLevel.VERIFY, "[relay.example.org]:587"),
    ("[relay.example.org]", TlsLevel.FINGERPRINT, "[relay.example.org]"),
    ("relay.example.org", TlsLevel.NONE, "relay.example.org"),  # notls
    ("[relay.example.org]:25", TlsLevel.MAY, ""),  # :25 is another key: the default
    ("[mx.example.com]", TlsLevel.MAY, ""),  # no parent fallback for [host]
    ("mx.example.com:2525", TlsLevel.MAY, ""),  # nor for host:port
    ("example.org", TlsLevel.MAY, ""),  # no entry: smtp_tls_security_level
])
def test_lookup(tmp_path: Path, nexthop: str, level: TlsLevel, key: str) -> None:
    policy = table(tmp_path).lookup(nexthop)
    assert (policy.level, policy.key) == (level, key)


def test_attributes(tmp_path: Path) -> None:
    policies = table(tmp_path)
    secure = policies.lookup("example.com")
    assert secure.match == ("nexthop", "dot-nexthop")
    assert secure.ciphers.startswith("aNULL:-aNULL:HIGH:@STRENGTH") and "!aNULL" in secure.ciphers
    assert secure.where == f"{tmp_path}/tls_policy:2: example.com"
    assert str(policies.lookup("partner.test").protocols) == "TLSv1.3"
    # Mandatory levels default to TLS 1.2 and up, may to Postfix's >=TLSv1.
    assert str(policies.lookup("mx.example.com").protocols) == "TLSv1.2..TLSv1.3"
    assert str(policies.lookup("example.net").protocols) == "TLSv1..TLSv1.3"
    assert policies.lookup("[relay.example.org]").fingerprints == {
        bytes([0xAB]) * 32, bytes([0xCD]) * 32}
    assert policies.lookup("pinned.test").fingerprints == {bytes([0xAB]) * 32}
    verify = policies.lookup("[relay.example.org]:587")
    assert verify.match == ("hostname",)
    sni = policies.lookup("sni.test")
    assert sni.server_name("mx.sni.test", "sni.test") == "mx.sni.test"
    assert sni.ciphers.endswith(":!CHACHA20:@SECLEVEL=0")
    assert policies.default.server_name("mx", "nexthop") is None  # Postfix: no SNI


def test_defaults_from_main_cf(tmp_path: Path) -> None:
    policies = table(tmp_path, "a.test verify\nb.test secure\nc.test encrypt\n",
                     "smtp_tls_security_level = encrypt\n"
                     "smtp_tls_verify_cert_match = hostname, nexthop\n"
                     "smtp_tls_mandatory_protocols = TLSv1.3\n"
                     "smtp_tls_mandatory_exclude_ciphers = CHACHA20\n")
    assert policies.default.level is TlsLevel.ENCRYPT
    assert policies.lookup("a.test").match == ("hostname", "nexthop")
    assert policies.lookup("b.test").match == ("nexthop", "dot-nexthop")
    assert str(policies.lookup("c.test").protocols) == "TLSv1.3"
    assert "!CHACHA20" in policies.lookup("c.test").ciphers


@pytest.mark.parametrize(("entry", "line", "reason"), [
    ("x.test  mayb", 2, "x.test: unknown TLS security level 'mayb'"),
    ("x.test  dane", 2, "x.test: TLS security level 'dane' is reserved"),
    ("x.test  dane-only", 2, "'dane-only' is reserved"),
    ("x.test  encrypt match=nexthop", 2,
     "attribute 'match' is valid only at the fingerprint, verify or secure level, "
     "not encrypt"),
    ("x.test  secure match=", 2, "attribute 'match' has an empty value"),
    ("x.test  secure ciphers=high ciphers=medium", 2, "'ciphers' is specified more than once"),
    ("x.test  secure cipher=high", 2, "unknown attribute 'cipher'"),
    ("x.test  secure protocols=TLSv1.4", 2, "unknown TLS protocol 'TLSv1.4'"),
    ("x.test  secure ciphers=strong", 2, "unknown cipher grade 'strong'"),
    ("x.test  secure tafile=/etc/ta.pem", 2, "'tafile' is not supported"),
    ("x.test  verify nexthop", 2, "malformed attribute 'nexthop': expected name=value"),
    ("x.test  fingerprint", 2, "the fingerprint level needs fingerprints to match"),
    ("x.test  fingerprint match=AB:CD", 2, "has 2 bytes"),
    ("x.test  may exclude=ALL:COMPLEMENTOFALL", 2, "no TLS cipher left"),
    ("x.test", 2, "x.test: empty TLS policy"),
    ("x.test  secure\n  match=nexthop ciphers=bogus", 2, "unknown cipher grade 'bogus'"),
])
def test_bad_entry_stops_the_start(tmp_path: Path, entry: str, line: int,
                                   reason: str) -> None:
    with pytest.raises(ConfigError) as caught:
        table(tmp_path, f"ok.test may\n{entry}\n")
    message = str(caught.value)
    assert message.startswith(f"{tmp_path}/tls_policy:{line}: x.test: "), message
    assert reason in message


def test_warning_for_attributes_with_tls_off(tmp_path: Path) -> None:
    policies = table(tmp_path, "x.test none ciphers=high\n")
    assert policies.warnings == [
        f"{tmp_path}/tls_policy:1: x.test: ignoring attribute 'ciphers=high' with TLS "
        "disabled"]


def test_several_tables_are_searched_in_order_for_each_key(tmp_path: Path) -> None:
    (tmp_path / "first").write_text(".example.com encrypt\n")
    (tmp_path / "second").write_text("mx.example.com secure\n")
    config = from_text("smtp_tls_policy_maps = texthash:first, texthash:second\n",
                       str(tmp_path / "main.cf"))
    policies = PolicyTable.from_config(config)
    # The exact key in the second table beats the parent in the first.
    assert policies.lookup("mx.example.com").level is TlsLevel.SECURE


def test_inline_and_static(tmp_path: Path) -> None:
    config = from_text("smtp_tls_policy_maps = inline:{ a.test=secure, b.test=musttls }, "
                       "static:maytls\n", str(tmp_path / "main.cf"))
    policies = PolicyTable.from_config(config)
    assert policies.lookup("a.test").level is TlsLevel.SECURE
    assert policies.lookup("b.test").level is TlsLevel.ENCRYPT
    assert policies.lookup("anything.test").level is TlsLevel.MAY
    with pytest.raises(ConfigError, match=r"inline:.*b\.test: unknown TLS security level"):
        PolicyTable.from_config(from_text("smtp_tls_policy_maps = inline:{ b.test=must }\n"))


def test_missing_file(tmp_path: Path) -> None:
    config = from_text("smtp_tls_policy_maps = texthash:nope\n", str(tmp_path / "main.cf"))
    with pytest.raises(ConfigError, match="nope: cannot read table"):
        PolicyTable.from_config(config)


def test_lookup_keys() -> None:
    assert list(lookup_keys("a.b.example.com")) == [
        "a.b.example.com", ".b.example.com", ".example.com", ".com"]
    assert list(lookup_keys("[192.0.2.1]:587")) == ["[192.0.2.1]:587"]


def test_the_example_policy_file_is_valid() -> None:
    repo = Path(__file__).resolve().parents[3]
    config = from_text("smtp_tls_policy_maps = texthash:policy/tls_policy\n",
                       str(repo / "main.cf"))
    policies = PolicyTable.from_config(config)
    assert policies.tables.tables[0].entries(), "policy/tls_policy has examples"
