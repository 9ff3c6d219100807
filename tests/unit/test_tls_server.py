"""Server contexts: key files, protocols, client certificates, SNI, relay_clientcerts."""

from __future__ import annotations

import os
import ssl
from pathlib import Path
from typing import cast

import pytest

from mta.config import from_text
from mta.errors import ConfigError
from mta.tls.clientcert import PeerCertificate, relay_clientcerts_lookup
from mta.tls.server import ServerTls, check_key_file, load_identity
from tests.fakes.certs import TestCA, self_signed
from tests.unit.memory_tls import memory_handshake, server_tls


@pytest.fixture
def ca(tmp_path: Path) -> TestCA:
    return TestCA(directory=tmp_path / "ca")


def test_private_key_readable_by_others_is_refused(tmp_path: Path, ca: TestCA) -> None:
    server = ca.issue("localhost")
    check_key_file(server.key_file)
    for mode in (0o640, 0o604, 0o644, 0o660):
        os.chmod(server.key_file, mode)
        with pytest.raises(ConfigError, match=f"accessible by group or others "
                                              f"\\(mode {mode:04o}\\); run: chmod 600"):
            load_identity([server.key_file, server.cert_file])


def test_key_and_chain_in_one_file(tmp_path: Path, ca: TestCA) -> None:
    server = ca.issue("localhost")
    combined = tmp_path / "combined.pem"
    assert ca.cert_file is not None
    combined.write_bytes(server.cert_file.read_bytes() + ca.cert_file.read_bytes()
                         + server.key_file.read_bytes())
    os.chmod(combined, 0o600)
    identity = load_identity([combined])
    assert [c.subject.rfc4514_string() for c in identity.chain] == [
        "CN=localhost", "CN=Postern Test CA"]


def test_config_without_certificate_or_with_a_foreign_key(tmp_path: Path,
                                                          ca: TestCA) -> None:
    with pytest.raises(ConfigError, match="smtpd_tls_cert_file is empty"):
        ServerTls.from_config(from_text("smtpd_tls_security_level = may\n",
                                        str(tmp_path / "main.cf")), required=False)
    one, other = ca.issue("one.example"), ca.issue("other.example")
    config = from_text(f"smtpd_tls_cert_file = {one.cert_file}\n"
                       f"smtpd_tls_key_file = {other.key_file}\n", str(tmp_path / "main.cf"))
    with pytest.raises(ConfigError, match="cannot set up TLS"):
        ServerTls.from_config(config, required=False)


def test_old_protocols_are_refused_by_default(ca: TestCA) -> None:
    tls = server_tls(ca, ca.issue("localhost"))
    _, _, client, error = memory_handshake(
        tls, ca.client_context(maximum=ssl.TLSVersion.TLSv1_1))
    assert (client, error) == (None, "unsupported protocol")
    engine, _, client, error = memory_handshake(
        tls, ca.client_context(maximum=ssl.TLSVersion.TLSv1_2))
    assert client is not None, error
    assert client.version() == "TLSv1.2"
    cipher = engine.connection.get_cipher_name()
    assert cipher is not None
    assert cipher.startswith(("ECDHE-", "DHE-"))


def test_a_gap_in_the_protocol_list_is_honoured(ca: TestCA) -> None:
    # smtpd's protocol lists may leave a gap (OpenSSL servers honour each
    # excluded version); the client direction refuses them (test_protocols.py).
    tls = server_tls(ca, ca.issue("localhost"), protocols="!SSLv2, !SSLv3, !TLSv1, !TLSv1.2")
    only_12 = ca.client_context()
    only_12.minimum_version = only_12.maximum_version = ssl.TLSVersion.TLSv1_2
    _, _, client, error = memory_handshake(tls, only_12)
    assert (client, error) == (None, "unsupported protocol")
    _, _, client, error = memory_handshake(tls, ca.client_context())
    assert client is not None, error
    assert client.version() == "TLSv1.3"


def test_client_certificates_never_fail_the_handshake(tmp_path: Path, ca: TestCA) -> None:
    tls = server_tls(ca, ca.issue("localhost"))
    other_ca = TestCA("Someone Else's CA", directory=tmp_path / "other")
    cases = {
        "trusted": (ca.client_context(ca.client("laptop")), True, ""),
        "self-signed": (ca.client_context(self_signed("selfie", directory=tmp_path)), False,
                        "self-signed certificate"),
        "other CA": (ca.client_context(other_ca.client("x")), False,
                     "unable to get local issuer certificate"),
        "expired": (ca.client_context(ca.client("old", expired=True)), False,
                    "certificate has expired"),
        "server purpose": (ca.client_context(ca.issue("srv")), False,
                           "unsupported certificate purpose"),
        "none": (ca.client_context(), None, ""),
    }
    for name, (context, trusted, reason) in cases.items():
        engine, state, client, error = memory_handshake(tls, context)
        assert client is not None, f"{name}: {error}"
        cert = engine.connection.get_peer_certificate(as_cryptography=True)
        if trusted is None:
            assert cert is None, name
            continue
        assert cert is not None, name
        peer = PeerCertificate.from_certificate(cert, state.verify)
        assert (peer.trusted, peer.verify_error) == (trusted, reason), name


def test_certificate_not_asked_for(ca: TestCA) -> None:
    tls = server_tls(ca, ca.issue("localhost"), ask_ccert=False)
    engine, _, client, error = memory_handshake(
        tls, ca.client_context(ca.client("laptop")))
    assert client is not None, error
    assert engine.connection.get_peer_certificate() is None


def test_sni_chooses_a_certificate_by_name_and_parent_domain(ca: TestCA) -> None:
    default = ca.issue("mx.example.test")
    other = ca.issue("mail.other.test")
    wildcard = ca.issue("*.third.test", stem="third")
    tls = server_tls(ca, default, sni={"mail.other.test": other, ".third.test": wildcard})
    for name, expected, sni in (("mail.other.test", "mail.other.test", "mail.other.test"),
                                ("a.third.test", "*.third.test", "a.third.test"),
                                ("mx.example.test", "mx.example.test", "")):
        _engine, state, client, error = memory_handshake(tls, ca.client_context(), name)
        assert client is not None, f"{name}: {error}"  # the client verified the name
        leaf = client.getpeercert()
        assert leaf is not None, name
        # getpeercert(): the subject is a tuple of RDNs, each of (name, value) pairs.
        subject = cast(tuple[tuple[tuple[str, str], ...], ...], leaf["subject"])
        assert dict(x[0] for x in subject)["commonName"] == expected
        assert state.sni == sni
    assert state.sni_unmatched == "mx.example.test"


def test_sni_maps_from_config(tmp_path: Path, ca: TestCA) -> None:
    default = ca.issue("mx.example.test")
    other = ca.issue("mail.other.test")
    other.key_file.write_bytes(other.key_file.read_bytes() + other.cert_file.read_bytes())
    (tmp_path / "sni").write_text(f"mail.other.test {other.key_file}\n")
    config = from_text(f"smtpd_tls_cert_file = {default.cert_file}\n"
                       f"smtpd_tls_key_file = {default.key_file}\n"
                       "tls_server_sni_maps = texthash:sni\n", str(tmp_path / "main.cf"))
    tls = ServerTls.from_config(config, required=False)
    _, state, client, error = memory_handshake(tls, ca.client_context(), "mail.other.test")
    assert client is not None and state.sni == "mail.other.test", error
    os.chmod(other.key_file, 0o644)
    with pytest.raises(ConfigError, match="accessible by group or others"):
        ServerTls.from_config(config, required=False)


def test_relay_clientcerts_matches_either_fingerprint(tmp_path: Path, ca: TestCA) -> None:
    one = self_signed("one", directory=tmp_path)
    two = self_signed("two", directory=tmp_path)
    (tmp_path / "relay_clientcerts").write_text(
        f"# pinned mobile users\n{one.cert_fingerprint.lower()} alice's phone\n"
        f"{two.pkey_fingerprint} bob's laptop\n")
    config = from_text("relay_clientcerts = texthash:relay_clientcerts\n",
                       str(tmp_path / "main.cf"))
    listed = relay_clientcerts_lookup(config)
    assert listed((one.cert_fingerprint, one.pkey_fingerprint))
    assert listed((two.cert_fingerprint, two.pkey_fingerprint))
    three = self_signed("three", directory=tmp_path)
    assert not listed((three.cert_fingerprint, three.pkey_fingerprint))
    assert not relay_clientcerts_lookup(from_text("", str(tmp_path / "main.cf")))(
        (one.cert_fingerprint,))
