"""check_ccert_access: Postfix's smtpd and ours, the same client
certificate, the same table, the same answers.

A client presents a certificate (from a CA neither server trusts: a
fingerprint is judged without the issuer, as Postfix says) over STARTTLS to
a private Postfix and to an in-process Postern receiver, both asking for
client certificates, with smtpd_relay_restrictions = check_ccert_access
texthash:certs, reject_unauth_destination. The table lists the
certificate's fingerprint (or its public key's) with OK or REJECT, or does
not list it; relaying to a foreign domain must get the same reply from
both, and a refusal the same reject line (naming the certificate's CN).
"""

from __future__ import annotations

import asyncio
import re
import smtplib
import ssl
from pathlib import Path

import pytest

from tests.fakes.certs import Issued, TestCA
from tests.helpers import IN_PROCESS_CF, in_process_smtpd
from tests.interop.postfix import PostfixFactory

pytestmark = pytest.mark.interop

RESTRICTIONS = ("smtpd_relay_restrictions = check_ccert_access texthash:{dir}/certs, "
                "reject_unauth_destination\n")
REJECTED = re.compile(r"NOQUEUE: reject: (RCPT from .*)$")


def tls_settings(directory: Path, server: Issued) -> str:
    return (f"smtpd_tls_cert_file = {server.cert_file}\n"
            f"smtpd_tls_key_file = {server.key_file}\n"
            "smtpd_tls_security_level = may\nsmtpd_tls_ask_ccert = yes\n"
            "smtpd_peername_lookup = no\nmynetworks = 192.0.2.0/24\n"
            + RESTRICTIONS.format(dir=directory))


def relay_reply(port: int, client: Issued) -> str:
    """RCPT to a foreign domain over STARTTLS, presenting client's certificate."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    context.load_cert_chain(client.cert_file, client.key_file)
    with smtplib.SMTP("127.0.0.1", port, timeout=20) as smtp:
        smtp.ehlo("laptop.test")
        smtp.starttls(context=context)
        smtp.ehlo("laptop.test")
        smtp.mail("a@b.test")
        code, text = smtp.rcpt("x@elsewhere.test")
        return f"{code} {text.decode()}"


@pytest.mark.parametrize("entry", ["cert-ok", "cert-reject", "key-ok", "key-reject", "none"])
async def test_check_ccert_access_as_postfix_has_it(
        postfix_factory: PostfixFactory, tmp_path: Path, maillog_lines: list[str],
        entry: str) -> None:
    server_ca, client_ca = TestCA("Interop Server CA"), TestCA("Interop Client CA")
    client = client_ca.client("laptop.test").write(tmp_path, "client")
    fingerprint = client.cert_fingerprint if entry.startswith("cert") else client.pkey_fingerprint
    action = "REJECT" if entry.endswith("reject") else "OK"
    table = f"{fingerprint} {action}\n" if entry != "none" else "AA:BB OK\n"

    postfix = postfix_factory()
    server = server_ca.issue("localhost").write(postfix.conf, "smtpd")
    (postfix.conf / "certs").write_text(table)
    with open(postfix.conf / "main.cf", "a") as main_cf:
        main_cf.write(tls_settings(Path("$config_directory"), server))
    postfix.start()
    theirs = await asyncio.to_thread(relay_reply, postfix.port, client)

    ours_server = server_ca.issue("localhost").write(tmp_path, "server")
    (tmp_path / "certs").write_text(table)
    async with in_process_smtpd(tmp_path, IN_PROCESS_CF + tls_settings(tmp_path, ours_server)
                                ) as smtpd:
        ours = await asyncio.to_thread(relay_reply, smtpd.port, client)
    assert ours == theirs
    expected = {"cert-ok": "250", "key-ok": "250", "cert-reject": "554", "key-reject": "554",
                "none": "554"}[entry]
    assert ours[:3] == expected, ours
    if entry.endswith("reject"):
        assert ours == "554 5.7.1 <laptop.test>: Client certificate rejected: Access denied"
    if ours[:3] != "250":
        postfix.wait_log(r"NOQUEUE: reject: RCPT")
        theirs_logged = [m.group(1) for line in postfix.log_text().splitlines()
                         if (m := REJECTED.search(line))]
        ours_logged = [m.group(1) for line in maillog_lines if (m := REJECTED.search(line))]
        assert ours_logged == theirs_logged
