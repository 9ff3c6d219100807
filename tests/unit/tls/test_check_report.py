"""tls-check's verdicts come from the delivery decisions; text and JSON render them."""

from __future__ import annotations

import json
from pathlib import Path

from mta.config import from_text
from mta.tls.chain import TrustStore
from mta.tls.check_report import Probe, build, render_json, render_text
from mta.tls.fingerprints import pubkey_digest
from mta.tls.levels import TlsLevel
from mta.tls.policy_table import PolicyTable
from tests.fakes.certs import TestCA, self_signed

CA = TestCA()
STORE = TrustStore(certificates=[CA.cert])


def probe(**fields: object) -> Probe:
    base = dict(nexthop="example.com", hostname="mx.example.com", address="127.0.0.1",
                port=25, transcript=["< 220 mx.example.com ESMTP", "> EHLO client.test"],
                starttls_offered=True)
    base.update(fields)
    # fields may name any field of Probe, so their types are only known to the caller.
    return Probe(**base)  # type: ignore[arg-type]


def tls_probe(chain: list) -> Probe:
    return probe(protocol="TLSv1.3", cipher="TLS_AES_256_GCM_SHA384", cipher_bits=256,
                 chain=chain)


def verdicts(p: Probe, main_cf: str = "", table: str = "", tmp: Path | None = None) -> dict:
    config = from_text(main_cf + ("smtp_tls_policy_maps = texthash:tls_policy\n" if tmp else ""),
                       str(tmp / "main.cf") if tmp else "main.cf")
    if tmp:
        (tmp / "tls_policy").write_text(table)
    policy = PolicyTable.from_config(config).lookup(p.nexthop)
    report = build(p, STORE, config, policy)
    return {v.level.label: (v.how, v.dsn) for v in report.verdicts}


def test_valid_certificate_for_the_mx() -> None:
    result = verdicts(tls_probe(CA.issue("mx.example.com").chain_with_leaf))
    assert result == {"may": ("tls", None), "encrypt": ("tls", None),
                      "fingerprint": ("defer", "4.7.5"), "verify": ("tls", None),
                      "secure": ("tls", None)}  # mx.example.com is in .example.com


def test_self_signed() -> None:
    result = verdicts(tls_probe(self_signed("mx.example.com").chain_with_leaf))
    assert result["may"] == ("tls", None) and result["verify"] == ("defer", "4.7.5")


def test_no_starttls() -> None:
    result = verdicts(probe(starttls_offered=False))
    assert result == {"may": ("plaintext", None), **{
        level: ("defer", "4.7.4") for level in ("encrypt", "fingerprint", "verify", "secure")}}


def test_handshake_failure() -> None:
    result = verdicts(probe(handshake_error="sslv3 alert handshake failure"))
    assert result["may"] == ("retry_plaintext", None)
    assert result["encrypt"] == ("defer", "4.7.5")


def test_pinned_fingerprint_from_the_policy(tmp_path: Path) -> None:
    peer = self_signed("mx.example.com")
    fp = pubkey_digest(peer.cert).hex()
    result = verdicts(tls_probe(peer.chain_with_leaf), table=f"example.com fingerprint "
                      f"match={fp}\n", tmp=tmp_path)
    assert result["fingerprint"] == ("tls", None)


def test_text_and_json() -> None:
    issued = CA.issue("mail.elsewhere.test")
    p = tls_probe(issued.chain_with_leaf)
    config = from_text("")
    report = build(p, STORE, config, PolicyTable.from_config(config).default)
    text = render_text(report)
    assert "destination: example.com, policy may (smtp_tls_security_level)" in text
    assert ("Trusted TLS connection established to mx.example.com[127.0.0.1]:25: TLSv1.3 "
            "with cipher TLS_AES_256_GCM_SHA384 (256/256 bits)") in text
    assert "certificate 0: subject /CN=mail.elsewhere.test" in text
    assert "name hostname mx.example.com: no match" in text
    assert " *may          deliver over TLS (Trusted)" in text
    assert "  verify       defer: 4.7.5 Server certificate not verified" in text
    assert "num=62:hostname mismatch" in text
    data = json.loads(render_json(report))
    assert data["verdicts"]["verify"]["deliver"] is False
    assert data["chain"][0]["dns_names"] == ["mail.elsewhere.test"]
    assert data["chain_trusted"] is True and data["policy"]["level"] == "may"
    assert report.configured is not None and report.configured.level is TlsLevel.MAY
