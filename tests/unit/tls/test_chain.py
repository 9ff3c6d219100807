"""Chain verification with OpenSSL's verdict, worded as Postfix logs it."""

from __future__ import annotations

from pathlib import Path

import pytest

from mta.errors import ConfigError
from mta.tls.chain import TrustStore
from tests.fakes.certs import TestCA, self_signed

NAMADDR = "mx.example.com[192.0.2.1]:25"


@pytest.fixture(scope="module")
def ca() -> TestCA:
    return TestCA("Postern Test CA")


@pytest.fixture(scope="module")
def store(ca: TestCA) -> TrustStore:
    return TrustStore(certificates=[ca.cert])


def test_trusted(ca: TestCA, store: TrustStore) -> None:
    result = store.verify(ca.issue("mx.example.com").chain_with_leaf)
    assert result.trusted and result.kind == "trusted"


def test_intermediate_sent_by_the_server(ca: TestCA, store: TrustStore) -> None:
    issued = ca.intermediate(org="Postern Tests").issue("mx.example.com")
    assert store.verify(issued.chain_with_leaf).trusted
    missing = store.verify([issued.cert])  # intermediate not sent
    assert missing.kind == "untrusted_issuer"
    assert missing.reason(NAMADDR) == (
        f"certificate verification failed for {NAMADDR}: untrusted issuer "
        "/O=Postern Tests/CN=Postern Test Intermediate")


def test_untrusted_issuer(store: TrustStore) -> None:
    other = TestCA("Some Other CA")
    result = store.verify(other.issue("mx.example.com").chain_with_leaf)
    assert not result.trusted
    assert result.reason(NAMADDR) == (f"certificate verification failed for {NAMADDR}: "
                                      "untrusted issuer /CN=Some Other CA")


def test_self_signed(store: TrustStore) -> None:
    result = store.verify(self_signed("mx.example.com").chain_with_leaf)
    assert result.kind == "self_signed"
    assert result.reason(NAMADDR) == (f"certificate verification failed for {NAMADDR}: "
                                      "self-signed certificate")


def test_expired(ca: TestCA, store: TrustStore) -> None:
    result = store.verify(ca.issue("mx.example.com", expired=True).chain_with_leaf)
    assert result.kind == "expired"
    assert result.reason(NAMADDR) == (f"server certificate verification failed for "
                                      f"{NAMADDR}: certificate has expired")


def test_the_error_nearest_the_leaf_wins(store: TrustStore) -> None:
    # Postfix's verify callback lets OpenSSL go on and reports the error at the
    # lowest depth; OpenSSL alone stops at the unknown root one level up.
    issued = TestCA("Unknown Root").intermediate().issue("mx.example.com", expired=True)
    result = store.verify(issued.chain_with_leaf)
    assert (result.kind, result.depth) == ("expired", 0)
    # At the same depth the first error stays: an unknown issuer of the leaf.
    assert store.verify([issued.cert]).kind == "untrusted_issuer"


def test_not_yet_valid(ca: TestCA, store: TrustStore) -> None:
    result = store.verify(ca.issue("mx.example.com", not_yet_valid=True).chain_with_leaf)
    assert result.reason(NAMADDR).endswith(": certificate not yet valid")


def test_expired_ca(store: TrustStore) -> None:
    old = TestCA("Expired CA", expired=True)
    result = TrustStore(certificates=[old.cert]).verify(old.issue("mx.example.com").chain_with_leaf)
    assert result.kind == "expired" and result.depth == 1
    assert result.reason(NAMADDR).startswith("CA certificate verification failed for")


def test_client_only_certificate_is_not_a_server_certificate(ca: TestCA,
                                                             store: TrustStore) -> None:
    result = store.verify(ca.client("mx.example.com").chain_with_leaf)
    assert result.kind == "invalid_purpose"
    assert result.reason(NAMADDR) == (f"certificate verification failed for {NAMADDR}: "
                                      "not designated for use as a server certificate")


def test_cafile(tmp_path: Path, ca: TestCA) -> None:
    store = TrustStore(cafile=str(ca.write(tmp_path / "ca.pem")))
    assert store.verify(ca.issue("mx.example.com").chain_with_leaf).trusted
    assert store.description == str(tmp_path / "ca.pem")


def test_system_store_does_not_trust_the_test_ca(ca: TestCA) -> None:
    store = TrustStore()
    assert store.description == "system store"
    assert store.verify(ca.issue("mx.example.com").chain_with_leaf).kind == "untrusted_issuer"


def test_bad_cafile(tmp_path: Path) -> None:
    bad = tmp_path / "ca.pem"
    bad.write_text("not a certificate\n")
    with pytest.raises(ConfigError, match="cannot load trusted CA certificates"):
        TrustStore(cafile=str(bad))
