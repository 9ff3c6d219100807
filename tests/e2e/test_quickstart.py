"""The README's first command: the embedded default (main.cf.example) works as
shipped, apart from the ports, which tests must not share."""

from __future__ import annotations

import shutil
import smtplib
import ssl
import subprocess
import sys
from pathlib import Path

from tests.helpers import REPO, DaemonFactory, free_port, mta_env, run_mta, wait_for


def test_embedded_default_delivers_to_alice(tmp_path: Path) -> None:
    ports = {"2525": free_port(), "2587": free_port(), "2465": free_port(),
             "9154": free_port()}
    text = (REPO / "main.cf.example").read_text()
    for old, new in ports.items():
        assert old in text
        text = text.replace(old, str(new))
    (tmp_path / "main.cf.example").write_text(text)
    shutil.copytree(REPO / "policy", tmp_path / "policy")
    log = open(tmp_path / "stderr.log", "wb")  # noqa: SIM115 - lives with the process
    # No -c: mta start finds ./main.cf.example by itself, as on a fresh clone.
    process = subprocess.Popen([sys.executable, "-m", "mta", "start"], cwd=tmp_path,
                               env=mta_env(), stdout=log, stderr=log)
    try:
        maillog = tmp_path / "maillog"
        wait_for(lambda: maillog.exists() and "daemon started" in maillog.read_text(),
                 message="daemon start")
        assert (tmp_path / "tls" / "server.pem").exists()
        assert oct((tmp_path / "tls" / "server.key").stat().st_mode & 0o777) == "0o600"
        assert "created a self-signed certificate" in maillog.read_text()
        # The self-signed certificate verifies for 127.0.0.1 (it is its own CA).
        context = ssl.create_default_context(cafile=str(tmp_path / "tls" / "server.pem"))
        with smtplib.SMTP("127.0.0.1", ports["2525"]) as client:  # plaintext is fine here
            client.sendmail("bob@example.org", ["alice@localhost"],
                            b"Subject: hello\r\n\r\nHello Alice\r\n")
        with smtplib.SMTP("127.0.0.1", ports["2587"]) as client:  # STARTTLS required
            client.starttls(context=context)
            client.sendmail("bob@example.org", ["alice@localhost"],
                            b"Subject: hello\r\n\r\nHello Alice\r\n")
        with smtplib.SMTP_SSL("127.0.0.1", ports["2465"], context=context) as client:
            client.sendmail("bob@example.org", ["alice@localhost"],
                            b"Subject: hello\r\n\r\nHello Alice\r\n")
        inbox = tmp_path / "mail" / "alice" / "new"
        files = wait_for(lambda: (found if len(found := list(inbox.glob("*"))) == 3 else []),
                         message="three messages for alice")
        assert all("Received: from " in f.read_text() for f in files)
        assert "Date: " in files[0].read_text()
        wait_for(lambda: run_mta("queue", "list", config=tmp_path / "main.cf.example").stdout
                 == b"Mail queue is empty\n", message="an empty queue")
    finally:
        process.terminate()
        assert process.wait(timeout=30) == 0
        log.close()
    assert "terminating on signal 15" in (tmp_path / "maillog").read_text()
    # The maillog went to standard error as well.
    assert "daemon started" in (tmp_path / "stderr.log").read_text()


def test_sendmail_t_reads_recipients_and_drops_bcc(daemon_factory: DaemonFactory) -> None:
    daemon = daemon_factory().start()
    message = (b"From: Bob <bob@example.test>\nTo: alice@example.test\n"
               b"Bcc: postmaster@example.test\nSubject: t\n\nbody line\n.\nnot read\n")
    run_mta("sendmail", "-t", config=daemon.config, input=message)
    alice = daemon.wait_maildir("alice")[0].read_text()
    postmaster = daemon.wait_maildir("postmaster")[0].read_text()
    for text in (alice, postmaster):
        assert "Bcc:" not in text and "body line\n" in text and "not read" not in text
        assert "Message-ID: <" in text and "\nDate: " in text
        assert "Received: by mx.example.test (Postern, from userid 0)" in text


def test_sendmail_without_recipients_is_a_usage_error(daemon_factory: DaemonFactory) -> None:
    daemon = daemon_factory()
    result = run_mta("sendmail", config=daemon.config, input=b"x\n", check=False)
    assert result.returncode == 64
