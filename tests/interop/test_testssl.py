"""TLS hygiene of the STARTTLS port, as testssl.sh sees it: no SSLv3, TLS 1.0
or 1.1, no weak cipher classes, forward secrecy (docs/tls-hygiene.md)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from tests.helpers import DaemonFactory, require_program

TLS = """\
smtpd_tls_cert_file = tls/server.pem
smtpd_tls_key_file = tls/server.key
tls_self_signed_on_first_start = yes
smtpd_tls_security_level = may
"""


def test_testssl_finds_no_weak_protocols_or_ciphers(daemon_factory: DaemonFactory,
                                                    tmp_path: Path) -> None:
    testssl = require_program("testssl")
    daemon = daemon_factory(TLS).start()
    report = tmp_path / "testssl.json"
    subprocess.run([testssl, "--quiet", "--color", "0", "--warnings", "off",
                    "--starttls", "smtp", "-p", "-s", "-f", "--jsonfile", str(report),
                    f"127.0.0.1:{daemon.smtp_port}"], capture_output=True, timeout=600)
    findings = {item["id"]: item["finding"] for item in json.loads(report.read_text())}
    for protocol in ("SSLv2", "SSLv3", "TLS1", "TLS1_1"):
        assert findings[protocol] == "not offered", (protocol, findings[protocol])
    assert findings["TLS1_2"] == "offered"
    assert findings["TLS1_3"].startswith("offered")
    for weak in ("NULL", "aNULL", "EXPORT", "LOW", "3DES_IDEA"):
        assert findings[f"cipherlist_{weak}"] == "not offered", weak
    assert findings["cipherlist_STRONG"] == "offered"
    assert findings["PFS"] == "offered"
