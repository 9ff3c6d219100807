"""The TLS summary line and Received clauses, against Postfix's exact formats
(tls_misc.c tls_log_summary, smtpd.c data_cmd; reference: postfix-tls.md §3)."""

from __future__ import annotations

import re
from dataclasses import replace
from pathlib import Path

import pytest

from mta.cleanup import ReceivedInfo, received_header
from mta.tls import summary
from mta.tls.clientcert import PeerCertificate
from mta.tls.summary import Signature, TlsSummary
from tests.fakes.certs import TestCA, self_signed
from tests.unit.memory_tls import memory_handshake, server_tls

TLS13 = TlsSummary(protocol="TLSv1.3", cipher="TLS_AES_256_GCM_SHA384", cipher_usebits=256,
                   cipher_algbits=256, kex_name="X25519",
                   server_signature=Signature("RSA-PSS", bits=2048, digest="SHA256"))
TLS12 = TlsSummary(protocol="TLSv1.2", cipher="ECDHE-RSA-AES256-GCM-SHA384",
                   cipher_usebits=256, cipher_algbits=256)
PEER = PeerCertificate(common_name="laptop.example", issuer_common_name="Example Mail CA",
                       cert_fingerprint="AA", pkey_fingerprint="BB", trusted=True)


def test_log_line_server_and_client_side() -> None:
    # The line of DESIGN.md §5 and the kumina/postfix_exporter test data.
    client_side = TLS13.with_match(True)
    client_side = replace(client_side, peer=PEER)
    assert client_side.log_text("client", "gmail-smtp-in.l.google.com[108.177.14.26]:25") == (
        "Verified TLS connection established to gmail-smtp-in.l.google.com"
        "[108.177.14.26]:25: TLSv1.3 with cipher TLS_AES_256_GCM_SHA384 (256/256 bits) "
        "key-exchange X25519 server-signature RSA-PSS (2048 bits) server-digest SHA256")
    assert TLS13.log_text("server", "localhost[127.0.0.1]") == (
        "Anonymous TLS connection established from localhost[127.0.0.1]: TLSv1.3 with "
        "cipher TLS_AES_256_GCM_SHA384 (256/256 bits) key-exchange X25519 "
        "server-signature RSA-PSS (2048 bits) server-digest SHA256")
    assert TLS12.log_text("server", "mx[192.0.2.1]") == (
        "Anonymous TLS connection established from mx[192.0.2.1]: TLSv1.2 with cipher "
        "ECDHE-RSA-AES256-GCM-SHA384 (256/256 bits)")


def test_trust_words_and_sni() -> None:
    untrusted = PeerCertificate("c", "i", "AA", "BB", trusted=False)
    assert replace(TLS12, peer=untrusted).trust == "Untrusted"
    assert replace(TLS12, peer=PEER).trust == "Trusted"
    assert TLS12.trust == "Anonymous"
    with_sni = replace(TLS12, sni="mail.example.org")
    assert with_sni.log_text("server", "h[192.0.2.1]").startswith(
        "Anonymous TLS connection established from h[192.0.2.1] to mail.example.org: ")
    assert " to mail.example.org" not in with_sni.log_text("client", "h[192.0.2.1]:25")


def test_received_header_layout_tls13_with_client_certificate() -> None:
    peer = PeerCertificate("laptop.example", "Example Mail CA", "AA", "BB", trusted=True)
    tls = replace(TLS13, peer=peer,
                        client_signature=Signature("ECDSA", curve="prime256v1",
                                                      digest="SHA256"))
    header = received_header(ReceivedInfo(
        helo="laptop.example", client_name="rname", client_address="192.0.2.7",
        protocol="ESMTPS", myhostname="mx.example", mail_name="Postern", qid="QID",
        recipients=["rcpt@example.org"], tls_lines=tls.received_lines(ask_ccert=True),
        when=0)).decode()
    first, _, date = header.rpartition("; ")
    assert first == (
        "Received: from laptop.example (rname [192.0.2.7])\r\n"
        "\t(using TLSv1.3 with cipher TLS_AES_256_GCM_SHA384 (256/256 bits)\r\n"
        "\t key-exchange X25519 server-signature RSA-PSS (2048 bits) server-digest SHA256\r\n"
        "\t client-signature ECDSA (prime256v1) client-digest SHA256)\r\n"
        "\t(Client CN \"laptop.example\", Issuer \"Example Mail CA\" (verified OK))\r\n"
        "\tby mx.example (Postern) with ESMTPS id QID\r\n"
        "\tfor <rcpt@example.org>")
    assert re.match(r"\w{3}, \d{1,2} \w{3} \d{4} \d\d:\d\d:\d\d [+-]\d{4} \(\w+\)\r\n\Z", date)


def test_received_clauses_tls12_and_certificate_states() -> None:
    # The kernel.org header of postfix-tls.md §3.
    assert TLS12.received_lines(ask_ccert=False) == [
        "(using TLSv1.2 with cipher ECDHE-RSA-AES256-GCM-SHA384 (256/256 bits))",
        "(No client certificate requested)"]
    assert TLS12.received_lines(ask_ccert=True)[-1] == "(Client did not present a certificate)"
    untrusted = PeerCertificate('bad "name" (x)', "", "AA", "BB", trusted=False)
    assert replace(TLS12, peer=untrusted).received_lines(True)[-1] == (
        "(Client CN \"bad ?name? ?x?\", Issuer \"\" (not verified))")
    # No key exchange known: the server signature starts its own line.
    no_kex = replace(TLS13, kex_name="")
    assert no_kex.received_lines(False)[:2] == [
        "(using TLSv1.3 with cipher TLS_AES_256_GCM_SHA384 (256/256 bits)",
        " server-signature RSA-PSS (2048 bits) server-digest SHA256)"]


@pytest.mark.parametrize(("group", "expected"), [
    ("x25519", ("X25519", "", 0)), ("X448", ("X448", "", 0)),
    ("secp256r1", ("ECDHE", "prime256v1", 0)), ("secp384r1", ("ECDHE", "secp384r1", 0)),
    ("ffdhe2048", ("DHE", "", 2048)), ("X25519MLKEM768", ("X25519MLKEM768", "", 0)),
    (None, ("", "", 0)),
])
def test_key_exchange_names(group: str | None, expected: tuple[str, str, int]) -> None:
    assert summary.key_exchange(group) == expected


def test_summary_of_a_real_handshake(tmp_path: Path) -> None:
    ca = TestCA(directory=tmp_path)
    rsa_server = ca.issue("localhost", kind="rsa", stem="rsa")
    laptop = ca.client("laptop.example")
    stranger = self_signed("stranger.example", directory=tmp_path)
    tls = server_tls(ca, rsa_server)
    engine, state, client, error = memory_handshake(tls, ca.client_context(laptop))
    assert client is not None, error
    cert = engine.connection.get_peer_certificate(as_cryptography=True)
    assert cert is not None
    peer = PeerCertificate.from_certificate(cert, state.verify)
    got = summary.from_pyopenssl(engine.connection, server_side=True, peer=peer)
    cipher = client.cipher()
    assert cipher is not None
    name, _, bits = cipher
    assert (got.protocol, got.cipher, got.cipher_usebits) == (client.version(), name, bits)
    assert got.trust == "Trusted"
    assert got.kex_name == "X25519"
    assert got.server_signature == Signature("RSA-PSS", bits=2048, digest="SHA256")
    assert got.client_signature == Signature("ECDSA", curve="prime256v1", digest="SHA256")
    # A certificate that chains to nothing: the handshake still completes.
    engine, state, client, error = memory_handshake(tls, ca.client_context(stranger))
    assert client is not None, error
    cert = engine.connection.get_peer_certificate(as_cryptography=True)
    assert cert is not None
    peer = PeerCertificate.from_certificate(cert, state.verify)
    assert (peer.trusted, peer.verify_error) == (False, "self-signed certificate")
    assert summary.from_pyopenssl(engine.connection, server_side=True,
                                  peer=peer).trust == "Untrusted"


def test_summary_of_a_python_ssl_client_session(tmp_path: Path) -> None:
    """The SMTP client's view (Python's ssl): no key exchange, Verified when matched."""
    ca = TestCA(directory=tmp_path)
    tls = server_tls(ca, ca.issue("mx.example.test", stem="mx"), ask_ccert=False)
    _, _, client, error = memory_handshake(tls, ca.client_context(), "mx.example.test")
    assert client is not None, error
    got = summary.from_ssl_object(client, trusted=True, matched=True)
    assert got.log_text("client", "mx.example.test[127.0.0.1]:25") == (
        "Verified TLS connection established to mx.example.test[127.0.0.1]:25: TLSv1.3 "
        "with cipher TLS_AES_256_GCM_SHA384 (256/256 bits) server-signature ECDSA "
        "(prime256v1) server-digest SHA256")
    assert summary.from_ssl_object(client, trusted=True).trust == "Trusted"
    assert summary.from_ssl_object(client, trusted=False).trust == "Untrusted"


def test_client_session_summary_by_server_key() -> None:
    """What the SMTP client and mta tls-check print, per server key type: the
    signature follows from the key in TLS 1.3; an RSA-PSS digest and the key
    exchange cannot be told through Python's ssl and are left out."""
    ca = TestCA()
    rsa = ca.issue("mx.example.test", kind="rsa").cert
    ecdsa = ca.issue("mx.example.test").cert
    line = summary.from_client_session(
        "TLSv1.3", "TLS_AES_256_GCM_SHA384", 256, rsa, trusted=True
    ).log_text("client", "mx.example.test[192.0.2.1]:25")
    assert line == ("Trusted TLS connection established to mx.example.test[192.0.2.1]:25: "
                    "TLSv1.3 with cipher TLS_AES_256_GCM_SHA384 (256/256 bits) "
                    "server-signature RSA-PSS (2048 bits)")
    untrusted = summary.from_client_session("TLSv1.3", "TLS_AES_128_GCM_SHA256", 128, ecdsa,
                                            trusted=False)
    assert untrusted.log_text("client", "h[192.0.2.1]:25").endswith(
        ": TLSv1.3 with cipher TLS_AES_128_GCM_SHA256 (128/128 bits) server-signature ECDSA "
        "(prime256v1) server-digest SHA256")
    assert untrusted.trust == "Untrusted"
    # TLS 1.2: Postfix prints neither part either.
    tls12 = summary.from_client_session("TLSv1.2", "ECDHE-RSA-AES256-GCM-SHA384", 256, rsa,
                                        trusted=True, matched=True)
    assert tls12.log_text("client", "h[192.0.2.1]:25") == (
        "Verified TLS connection established to h[192.0.2.1]:25: TLSv1.2 with cipher "
        "ECDHE-RSA-AES256-GCM-SHA384 (256/256 bits)")
    anonymous = summary.from_client_session("TLSv1.3", "TLS_AES_256_GCM_SHA384", 256, None,
                                            trusted=False, matched=True)
    assert anonymous.trust == "Anonymous" and anonymous.server_signature is None
