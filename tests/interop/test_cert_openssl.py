"""What ``mta cert`` writes, checked by openssl: certificates verify, requests
carry a valid self-signature, PKCS#12 files open with the password, encrypted
keys open with the passphrase, and our fingerprints are openssl's."""

from __future__ import annotations

import hashlib
import re
import stat
import subprocess
from pathlib import Path

import pytest

from tests.helpers import require_program, run_mta

pytestmark = pytest.mark.interop


def openssl(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    command = [require_program("openssl"), *args]
    result = subprocess.run(command, capture_output=True, text=True, timeout=60)
    if check and result.returncode != 0:
        raise AssertionError(f"{command} exited {result.returncode}:\n{result.stdout}"
                             f"{result.stderr}")
    return result


def mta_cert(cwd: Path, *args: str) -> subprocess.CompletedProcess[bytes]:
    """``mta cert ...`` in cwd (so default file names land there)."""
    (cwd / "main.cf").touch()
    return run_mta("cert", *args, config=cwd / "main.cf")


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture
def password(tmp_path: Path) -> Path:
    path = tmp_path / "pw"
    path.write_text("mobile-secret\n")
    path.chmod(0o600)
    return path


def openssl_cert_fingerprint(path: Path) -> str:
    out = openssl("x509", "-in", str(path), "-noout", "-fingerprint", "-sha256").stdout
    return out.strip().split("=", 1)[1]


def openssl_pubkey_fingerprint(path: Path) -> str:
    pem = openssl("x509", "-in", str(path), "-noout", "-pubkey").stdout
    der = subprocess.run([require_program("openssl"), "pkey", "-pubin", "-outform", "DER"],
                         input=pem.encode(), capture_output=True, check=True).stdout
    return ":".join(f"{b:02X}" for b in hashlib.sha256(der).digest())


def test_self_signed_verifies_and_has_the_names(tmp_path: Path) -> None:
    mta_cert(tmp_path, "self-signed", "--name", "mx.example.test", "--san",
             "mail.example.test,192.0.2.1", "--san", "smtp.example.test")
    cert, key = tmp_path / "mx.example.test.pem", tmp_path / "mx.example.test.key"
    assert mode(key) == 0o600
    assert "OK" in openssl("verify", "-CAfile", str(cert), str(cert)).stdout
    text = openssl("x509", "-in", str(cert), "-noout", "-text").stdout
    assert ("DNS:mx.example.test, DNS:mail.example.test, IP Address:192.0.2.1, "
            "DNS:smtp.example.test") in text
    assert "NIST CURVE: P-256" in text
    assert "TLS Web Server Authentication" in text
    # the key belongs to the certificate
    assert openssl("pkey", "-in", str(key), "-pubout").stdout == \
        openssl("x509", "-in", str(cert), "-noout", "-pubkey").stdout


def test_rsa_key_on_request(tmp_path: Path) -> None:
    mta_cert(tmp_path, "self-signed", "--name", "rsa.example.test", "--key-type", "rsa",
             "--bits", "3072")
    text = openssl("pkey", "-in", str(tmp_path / "rsa.example.test.key"), "-noout",
                   "-text").stdout
    assert "3072 bit" in text


def test_encrypted_key_opens_with_the_passphrase_only(tmp_path: Path, password: Path) -> None:
    mta_cert(tmp_path, "self-signed", "--name", "mx.example.test", "--password-file",
             str(password))
    key = tmp_path / "mx.example.test.key"
    assert key.read_text().startswith("-----BEGIN ENCRYPTED PRIVATE KEY-----")
    openssl("pkey", "-in", str(key), "-passin", f"file:{password}", "-noout")
    wrong = openssl("pkey", "-in", str(key), "-passin", "pass:wrong", "-noout", check=False)
    assert wrong.returncode != 0


def test_request_verifies(tmp_path: Path) -> None:
    mta_cert(tmp_path, "request", "--name", "mx.example.test", "--org", "Example Ltd",
             "--san", "mail.example.test")
    csr = tmp_path / "mx.example.test.csr"
    result = openssl("req", "-verify", "-in", str(csr), "-noout", "-subject")
    assert "verify OK" in result.stdout + result.stderr
    assert "O = Example Ltd, CN = mx.example.test" in result.stdout
    text = openssl("req", "-in", str(csr), "-noout", "-text").stdout
    assert "DNS:mx.example.test, DNS:mail.example.test" in text
    assert mode(tmp_path / "mx.example.test.key") == 0o600


def test_client_certificate_verifies_and_exports(tmp_path: Path, password: Path) -> None:
    mta_cert(tmp_path, "ca", "init", "--name", "Example Mail CA")
    result = mta_cert(tmp_path, "issue-client", "alice@example.test", "--days", "90",
                      "--password-file", str(password))
    cert = tmp_path / "alice@example.test.pem"
    p12 = tmp_path / "alice@example.test.p12"
    ca = tmp_path / "ca.pem"
    assert "OK" in openssl("verify", "-CAfile", str(ca), "-purpose", "sslclient",
                           str(cert)).stdout
    server = openssl("verify", "-CAfile", str(ca), "-purpose", "sslserver", str(cert),
                     check=False)
    assert server.returncode != 0  # clientAuth only: it cannot pose as a server
    assert "CA:TRUE, pathlen:0" in openssl("x509", "-in", str(ca), "-noout", "-text").stdout
    # PKCS#12: opens with the password, holds the key and certificate, no CA
    info = openssl("pkcs12", "-info", "-in", str(p12), "-passin", f"file:{password}",
                   "-nodes")
    assert "PBES2, PBKDF2, AES-256-CBC" in info.stderr
    assert "friendlyName: alice@example.test" in info.stdout
    assert "subject=CN = alice@example.test" in info.stdout
    assert "issuer=CN = Example Mail CA" in info.stdout
    assert info.stdout.count("BEGIN CERTIFICATE") == 1
    assert "BEGIN PRIVATE KEY" in info.stdout
    assert mode(p12) == 0o600
    bad = openssl("pkcs12", "-info", "-in", str(p12), "-passin", "pass:wrong", "-nodes",
                  check=False)
    assert bad.returncode != 0
    # the kept key is encrypted with the same password
    openssl("pkey", "-in", str(tmp_path / "alice@example.test.key"), "-passin",
            f"file:{password}", "-noout")
    # the printed line: the certificate fingerprint as openssl computes it, then the user
    line = result.stdout.decode()
    assert line == f"{openssl_cert_fingerprint(cert)} alice@example.test\n"


def test_legacy_pkcs12_for_old_clients(tmp_path: Path, password: Path) -> None:
    mta_cert(tmp_path, "ca", "init", "--name", "Example Mail CA")
    mta_cert(tmp_path, "issue-client", "bob@example.test", "--legacy-p12", "--password-file",
             str(password))
    info = openssl("pkcs12", "-info", "-in", str(tmp_path / "bob@example.test.p12"),
                   "-passin", f"file:{password}", "-nodes")
    assert "pbeWithSHA1And3-KeyTripleDES-CBC" in info.stderr


def test_encrypted_ca_key(tmp_path: Path, password: Path) -> None:
    mta_cert(tmp_path, "ca", "init", "--name", "Example Mail CA", "--password-file",
             str(password))
    client_pw = tmp_path / "client-pw"
    client_pw.write_text("other\n")
    mta_cert(tmp_path, "issue-client", "carol@example.test", "--password-file",
             str(client_pw), "--ca-password-file", str(password))
    assert "OK" in openssl("verify", "-CAfile", str(tmp_path / "ca.pem"),
                           str(tmp_path / "carol@example.test.pem")).stdout


def test_show_fingerprints_are_openssls(tmp_path: Path) -> None:
    mta_cert(tmp_path, "self-signed", "--name", "mx.example.test")
    cert = tmp_path / "mx.example.test.pem"
    out = mta_cert(tmp_path, "show", str(cert)).stdout.decode()
    assert re.search(rf"^SHA-256 certificate fingerprint: {openssl_cert_fingerprint(cert)}$",
                     out, re.M)
    assert re.search(rf"^SHA-256 public-key fingerprint: +{openssl_pubkey_fingerprint(cert)}$",
                     out, re.M)


def test_renew_self_signed_keeps_key_and_names(tmp_path: Path, password: Path) -> None:
    mta_cert(tmp_path, "self-signed", "--name", "mx.example.test", "--san", "mail.example.test",
             "--days", "30", "--password-file", str(password))
    cert = tmp_path / "mx.example.test.pem"
    before = openssl("x509", "-in", str(cert), "-noout", "-serial", "-pubkey", "-ext",
                     "subjectAltName").stdout
    mta_cert(tmp_path, "renew", str(cert), "--days", "400", "--password-file", str(password))
    after = openssl("x509", "-in", str(cert), "-noout", "-serial", "-pubkey", "-ext",
                    "subjectAltName").stdout
    assert before.split("\n", 1)[1] == after.split("\n", 1)[1]  # same key and SANs
    assert before.split("\n", 1)[0] != after.split("\n", 1)[0]  # new serial
    assert (tmp_path / "mx.example.test.pem.old").read_text().startswith("-----BEGIN CERT")
    assert "OK" in openssl("verify", "-CAfile", str(cert), str(cert)).stdout
    end = openssl("x509", "-in", str(cert), "-noout", "-checkend", str(399 * 86400))
    assert "will not expire" in end.stdout


def test_renew_with_the_ca_and_as_a_request(tmp_path: Path, password: Path) -> None:
    mta_cert(tmp_path, "ca", "init", "--name", "Example Mail CA")
    mta_cert(tmp_path, "issue-client", "dave@example.test", "--password-file", str(password))
    cert = tmp_path / "dave@example.test.pem"
    old_fp = openssl_cert_fingerprint(cert)
    result = mta_cert(tmp_path, "renew", str(cert), "--password-file", str(password),
                      "--ca-cert", str(tmp_path / "ca.pem"), "--ca-key",
                      str(tmp_path / "ca.key"), "--p12", str(tmp_path / "dave2.p12"))
    new_fp = openssl_cert_fingerprint(cert)
    assert new_fp != old_fp
    assert result.stdout.decode() == f"{new_fp} dave@example.test\n"
    assert "OK" in openssl("verify", "-CAfile", str(tmp_path / "ca.pem"), str(cert)).stdout
    openssl("pkcs12", "-info", "-in", str(tmp_path / "dave2.p12"), "-passin",
            f"file:{password}", "-nodes")
    # without the CA: a request with the same subject and names, the same key
    mta_cert(tmp_path, "renew", str(cert), "--password-file", str(password))
    csr = tmp_path / "dave@example.test.csr"
    request = openssl("req", "-verify", "-in", str(csr), "-noout", "-subject", "-pubkey")
    assert "verify OK" in request.stdout + request.stderr
    assert "subject=CN = dave@example.test" in request.stdout
    assert openssl("x509", "-in", str(cert), "-noout", "-pubkey").stdout in request.stdout


def test_refuses_to_overwrite_without_force(tmp_path: Path) -> None:
    mta_cert(tmp_path, "self-signed", "--name", "mx.example.test")
    again = run_mta("cert", "self-signed", "--name", "mx.example.test",
                    config=tmp_path / "main.cf", check=False)
    assert again.returncode == 1
    assert f"{tmp_path / 'mx.example.test.pem'} exists; use --force" in again.stderr.decode()
    mta_cert(tmp_path, "self-signed", "--name", "mx.example.test", "--force")


def test_no_password_and_no_terminal(tmp_path: Path) -> None:
    mta_cert(tmp_path, "ca", "init", "--name", "Example Mail CA")
    result = run_mta("cert", "issue-client", "erin@example.test",
                     config=tmp_path / "main.cf", check=False)
    assert result.returncode == 1
    assert "no password file given and no terminal to ask on" in result.stderr.decode()
    assert not (tmp_path / "erin@example.test.p12").exists()


def test_renew_a_file_that_holds_key_and_certificate(tmp_path: Path) -> None:
    both = tmp_path / "both.pem"
    mta_cert(tmp_path, "self-signed", "--name", "mx.example.test", "--cert", str(both),
             "--key", str(both))
    key_before = openssl("pkey", "-in", str(both)).stdout
    mta_cert(tmp_path, "renew", str(both), "--days", "90")
    assert mode(both) == 0o600
    assert openssl("pkey", "-in", str(both)).stdout == key_before
    assert "OK" in openssl("verify", "-CAfile", str(both), str(both)).stdout
    assert openssl("x509", "-in", str(both), "-noout", "-checkend", str(89 * 86400)).returncode \
        == 0
    assert mode(tmp_path / "both.pem.old") == 0o600  # the old copy holds the key too


def test_renew_with_a_new_key(tmp_path: Path) -> None:
    mta_cert(tmp_path, "self-signed", "--name", "mx.example.test", "--key-type", "rsa")
    cert, key = tmp_path / "mx.example.test.pem", tmp_path / "mx.example.test.key"
    before = openssl("x509", "-in", str(cert), "-noout", "-pubkey").stdout
    mta_cert(tmp_path, "renew", str(cert), "--new-key")
    after = openssl("x509", "-in", str(cert), "-noout", "-pubkey").stdout
    assert before != after
    assert openssl("pkey", "-in", str(key), "-pubout").stdout == after
    assert "2048 bit" in openssl("pkey", "-in", str(key), "-noout", "-text").stdout
    assert openssl("pkey", "-in", str(tmp_path / "mx.example.test.key.old"),
                   "-pubout").stdout == before
