"""The TLS summary: one record of a finished handshake, printed as Postfix prints it.

Direction-neutral, for smtpd and the smtp client alike:

- ``TlsSummary.log_text(role, namaddr)`` is the TLS loglevel-1 line of
  Postfix's tls_misc.c ``tls_log_summary``::

      Trusted TLS connection established from host[ip]: TLSv1.3 with cipher
      TLS_AES_256_GCM_SHA384 (256/256 bits) key-exchange X25519
      server-signature ECDSA (prime256v1) server-digest SHA256

  (one line), with ``to host[ip]:port`` for role "client". The trust word is
  Anonymous (no peer certificate), Untrusted, Trusted (the chain verified) or
  Verified (chain or fingerprint/DANE and the name matched; clients only).
- ``TlsSummary.received_lines(ask_ccert)`` is the TLS part of smtpd's Received
  header: the ``(using …)`` clause and the client certificate clause.

Build one from a pyOpenSSL connection with ``from_pyopenssl`` (smtpd), or
from a Python ``ssl`` client session with ``from_ssl_object`` /
``from_client_session`` (the SMTP client, ``mta tls-check``): Python's ssl
cannot tell the key-exchange group or signature digests, so those parts are
left empty, which drops them from the line as Postfix does when OpenSSL
cannot tell them. Like Postfix (tls_get_signature_params), the key-exchange
and signature parts exist for TLS 1.3 only.
"""

from __future__ import annotations

import ssl
import weakref
from dataclasses import dataclass, replace

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa
from OpenSSL import SSL

from mta.tls.clientcert import PeerCertificate, VerifyRecord

ANONYMOUS, UNTRUSTED, TRUSTED, VERIFIED = "Anonymous", "Untrusted", "Trusted", "Verified"

# Curve names as Postfix prints them when built with OpenSSL 3 (tls_misc.c
# ec_curve_name: EVP_PKEY_get_group_name), for key exchange ("ECDHE
# (prime256v1)") and ECDSA keys ("ECDSA (prime256v1)"). Postfix on OpenSSL
# 1.1 printed NIST names (P-256) instead; both appear in the wild.
_CURVE = {"secp256r1": "prime256v1", "prime256v1": "prime256v1", "secp384r1": "secp384r1",
          "secp521r1": "secp521r1"}
# TLS 1.3 ties each ECDSA curve to one digest (RFC 8446 §4.2.3).
_ECDSA_DIGEST = {"prime256v1": "SHA256", "secp384r1": "SHA384", "secp521r1": "SHA512"}


@dataclass(frozen=True)
class Signature:
    """A signature algorithm as Postfix prints it: RSA-PSS (2048 bits), ECDSA
    (prime256v1)."""

    name: str
    curve: str = ""
    bits: int = 0
    digest: str = ""

    def text(self, side: str) -> str:
        out = f"{side}-signature {self.name}"
        if self.curve:
            out += f" ({self.curve})"
        elif self.bits > 0:
            out += f" ({self.bits} bits)"
        if self.digest:
            out += f" {side}-digest {self.digest}"
        return out


@dataclass(frozen=True)
class TlsSummary:
    """Everything the logs and headers say about one TLS session."""

    protocol: str
    cipher: str
    cipher_usebits: int
    cipher_algbits: int
    kex_name: str = ""
    kex_curve: str = ""
    kex_bits: int = 0
    server_signature: Signature | None = None
    client_signature: Signature | None = None
    peer: PeerCertificate | None = None
    matched: bool = False  # the peer's name or pinned fingerprint matched (clients)
    sni: str = ""  # server side: the SNI name that chose a non-default certificate
    reused: bool = False

    @property
    def trust(self) -> str:
        if self.peer is None:
            return ANONYMOUS
        if self.matched:
            return VERIFIED
        return TRUSTED if self.peer.trusted else UNTRUSTED

    def _cipher_text(self) -> str:
        return (f"{self.protocol} with cipher {self.cipher} "
                f"({self.cipher_usebits}/{self.cipher_algbits} bits)")

    def _kex_text(self) -> str:
        """``key-exchange X25519``, ``… ECDHE (prime256v1)``, ``… DHE (2048 bits)``; "" unknown."""
        if not self.kex_name:
            return ""
        if self.kex_curve:
            return f"key-exchange {self.kex_name} ({self.kex_curve})"
        if self.kex_bits > 0:
            return f"key-exchange {self.kex_name} ({self.kex_bits} bits)"
        return f"key-exchange {self.kex_name}"

    def _signature_texts(self) -> tuple[str, str]:
        """The server's and the client's signature parts, "" where unknown."""
        return (self.server_signature.text("server") if self.server_signature else "",
                self.client_signature.text("client") if self.client_signature else "")

    def _details(self) -> str:
        parts = (self._cipher_text(), self._kex_text(), *self._signature_texts())
        return " ".join(part for part in parts if part)

    def log_text(self, role: str, namaddr: str) -> str:
        """The summary line; role is "server" (from namaddr) or "client" (to namaddr)."""
        direction = "from" if role == "server" else "to"
        sni = f" to {self.sni}" if role == "server" and self.sni else ""
        usage = "reused" if self.reused else "established"
        return f"{self.trust} TLS connection {usage} {direction} {namaddr}{sni}: " \
               f"{self._details()}"

    def received_lines(self, ask_ccert: bool) -> list[str]:
        """The Received header's TLS clauses, one string per header line, each
        without its leading tab (continuations start with a space)."""
        # Postfix's layout: the server's signature goes on the key-exchange
        # line (or on its own), the client's always starts a line.
        server, client = self._signature_texts()
        lines = [f"(using {self._cipher_text()}"]
        kex_line = " ".join(part for part in (self._kex_text(), server) if part)
        if kex_line:
            lines.append(" " + kex_line)
        if client:
            lines.append(" " + client)
        lines[-1] += ")"
        if self.peer is not None:
            verdict = "verified OK" if self.peer.trusted else "not verified"
            lines.append(f"(Client CN \"{comment_safe(self.peer.common_name)}\", "
                         f"Issuer \"{comment_safe(self.peer.issuer_common_name)}\" "
                         f"({verdict}))")
        elif ask_ccert:
            lines.append("(Client did not present a certificate)")
        else:
            lines.append("(No client certificate requested)")
        return lines

    def with_match(self, matched: bool) -> TlsSummary:
        return replace(self, matched=matched)


def comment_safe(text: str) -> str:
    """Text safe inside a header comment and a quoted string (Postfix's
    comment_sanitize): no controls, quotes, backslashes or parentheses."""
    return "".join(c if c.isprintable() and c not in '"\\()' else "?" for c in text)


def key_exchange(group: str | None) -> tuple[str, str, int]:
    """(name, curve, bits) for an OpenSSL group name: x25519 → X25519,
    secp256r1 → ECDHE (prime256v1), ffdhe2048 → DHE (2048 bits)."""
    if not group:
        return "", "", 0
    lowered = group.lower()
    if lowered in _CURVE:
        return "ECDHE", _CURVE[lowered], 0
    if lowered.startswith("ffdhe") and lowered[5:].isdigit():
        return "DHE", "", int(lowered[5:])
    if lowered in ("x25519", "x448"):
        return lowered.upper(), "", 0
    return group, "", 0


def signature_of(public_key: object, rsa_digest: str = "") -> Signature | None:
    """The TLS 1.3 signature a key makes, named as Postfix names it: RSA keys
    must sign with RSA-PSS; ECDSA is named by curve, whose digest TLS 1.3
    fixes; EdDSA has no separate digest. rsa_digest is the digest when the
    caller knows it (an RSA-PSS digest is negotiated, not implied)."""
    if isinstance(public_key, rsa.RSAPublicKey):
        return Signature("RSA-PSS", bits=public_key.key_size, digest=rsa_digest)
    if isinstance(public_key, ec.EllipticCurvePublicKey):
        curve = _CURVE.get(public_key.curve.name, public_key.curve.name)
        return Signature("ECDSA", curve=curve, digest=_ECDSA_DIGEST.get(curve, ""))
    if isinstance(public_key, ed25519.Ed25519PublicKey):
        return Signature("ED25519")
    if isinstance(public_key, ed448.Ed448PublicKey):
        return Signature("ED448")
    return None


def from_pyopenssl(connection: SSL.Connection, *, server_side: bool,
                   peer: PeerCertificate | None, sni: str = "") -> TlsSummary:
    """Summarise a finished handshake of a pyOpenSSL connection.

    On the server side the RSA-PSS digest is SHA256: our contexts prefer the
    server's signature-algorithm order (OP_CIPHER_SERVER_PREFERENCE), whose
    first RSA-PSS entry is rsa_pss_rsae_sha256, which every TLS 1.3 client
    must support (RFC 8446 §9.1). The peer's RSA-PSS digest is the peer's
    choice and cannot be read through pyOpenSSL, so it is left out.
    """
    protocol = connection.get_protocol_version_name()
    cipher = connection.get_cipher_name() or ""
    bits = connection.get_cipher_bits() or 0
    if protocol != "TLSv1.3":
        return TlsSummary(protocol=protocol, cipher=cipher, cipher_usebits=bits,
                          cipher_algbits=bits, peer=peer, sni=sni)
    kex_name, kex_curve, kex_bits = key_exchange(connection.get_group_name())
    local_sig = _local_signature(connection, server_side)
    peer_sig = signature_of(peer.public_key) if peer is not None else None
    server_sig, client_sig = (local_sig, peer_sig) if server_side else (peer_sig, local_sig)
    # One constructor call: dataclasses.replace on every handshake was 1% of
    # a receiver under STARTTLS.
    return TlsSummary(protocol=protocol, cipher=cipher, cipher_usebits=bits,
                      cipher_algbits=bits, peer=peer, sni=sni, kex_name=kex_name,
                      kex_curve=kex_curve, kex_bits=kex_bits, server_signature=server_sig,
                      client_signature=client_sig)


# Our own certificate's signature part, per context (SNI may switch it): one
# parse per context, not a certificate conversion in every handshake (7% of a
# receiver's time under STARTTLS on every session).
_LOCAL_SIGNATURES: weakref.WeakKeyDictionary[SSL.Context, dict[bool, Signature | None]] = (
    weakref.WeakKeyDictionary())


def _local_signature(connection: SSL.Connection, server_side: bool) -> Signature | None:
    context = connection.get_context()
    try:
        return _LOCAL_SIGNATURES[context][server_side]
    except KeyError:
        pass
    local = connection.get_certificate(as_cryptography=True)
    signature = None
    if isinstance(local, x509.Certificate):
        signature = signature_of(local.public_key(),
                                 rsa_digest="SHA256" if server_side else "")
    _LOCAL_SIGNATURES.setdefault(context, {})[server_side] = signature
    return signature


def from_ssl_object(session: ssl.SSLObject | ssl.SSLSocket, *, trusted: bool,
                    matched: bool = False, digest: str = "sha256") -> TlsSummary:
    """Summarise a client session on Python's ssl module (the SMTP client).

    trusted: the server's chain verified; matched: its name (or a pinned
    fingerprint, or DANE) matched as well, which prints "Verified".
    """
    name, _, bits = session.cipher() or ("", "", 0)
    der = session.getpeercert(binary_form=True)
    return from_client_session(session.version() or "", name, bits or 0,
                               x509.load_der_x509_certificate(der) if der else None,
                               trusted=trusted, matched=matched, digest=digest)


def from_client_session(protocol: str, cipher: str, bits: int,
                        server_cert: x509.Certificate | None, *, trusted: bool,
                        matched: bool = False, digest: str = "sha256") -> TlsSummary:
    """Summarise a client session from what Python's ssl tells of it: protocol,
    cipher, its secret bits and the server's certificate (the SMTP client's
    TlsFacts, or mta tls-check's probe).

    Python's ssl cannot tell the key-exchange group or the signature
    algorithm the server chose, so the summary has no key-exchange part, and
    the server-signature part is derived from the server's key: exact for
    TLS 1.3 (an RSA key must sign with RSA-PSS, an ECDSA curve fixes its
    digest, EdDSA has none), but without the digest of an RSA-PSS signature,
    which is the server's choice. Python's ssl does not tell whether our
    client certificate was asked for either, so there is no client-signature
    part. docs/tls-policy.md lists what is missing against Postfix's line.
    """
    peer = None
    if server_cert is not None:
        record = VerifyRecord(called=True, error=0 if trusted else 1)
        peer = PeerCertificate.from_certificate(server_cert, record, digest)
    summary = TlsSummary(protocol=protocol, cipher=cipher, cipher_usebits=bits,
                         cipher_algbits=bits, peer=peer, matched=matched and peer is not None)
    if protocol == "TLSv1.3" and peer is not None:
        summary = replace(summary, server_signature=signature_of(peer.public_key))
    return summary
