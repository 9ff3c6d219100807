"""``mta cert list`` and ``show`` against golden transcripts, on certificates
with fixed keys and dates (tests/fakes/certs.py) judged at a fixed --at date.

Set POSTERN_UPDATE_GOLDEN=1 to rewrite the golden files after an intended
change of output, then review the diff.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from tests.fakes.certs import write_fixed_set
from tests.helpers import run_mta

GOLDEN = Path(__file__).parent / "golden" / "cert"

MAIN_CF = """\
myhostname = mx.example.test
queue_directory = queue
smtpd_tls_cert_file = certs/server.pem
smtpd_tls_key_file = certs/server.key
smtp/inet = 127.0.0.1:2525
submission/inet = 127.0.0.1:2587
submission/inet/smtpd_tls_cert_file = certs/submit-chain.pem
submission/inet/smtpd_tls_key_file = certs/submit.key
"""


@pytest.fixture
def site(tmp_path: Path) -> Path:
    write_fixed_set(tmp_path / "certs")
    (tmp_path / "main.cf").write_text(MAIN_CF)
    return tmp_path


def transcript(root: Path, *args: str) -> tuple[str, int]:
    """The command, its stdout, its stderr and its exit code, as one text."""
    result = run_mta("cert", *args, config=root / "main.cf", check=False)
    text = (f"$ mta cert {' '.join(args)}\n{result.stdout.decode()}"
            f"--- stderr\n{result.stderr.decode()}--- exit {result.returncode}\n")
    return text, result.returncode


def assert_golden(name: str, text: str) -> None:
    path = GOLDEN / name
    if os.environ.get("POSTERN_UPDATE_GOLDEN"):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    assert text == path.read_text(), f"output differs from {path}"


def test_list_golden_with_a_warning(site: Path) -> None:
    text, code = transcript(site, "list", "--at", "2026-12-15")
    assert_golden("list.txt", text)
    assert code == 0


def test_list_exits_non_zero_when_a_configured_certificate_expired(site: Path) -> None:
    text, code = transcript(site, "list", "--at", "2027-02-01")
    assert_golden("list-expired.txt", text)
    assert code == 1


def test_list_expired_now_without_at(site: Path) -> None:
    """The real clock: old.pem expired on 2025-01-01, whenever this runs."""
    config = site / "main.cf"
    config.write_text(MAIN_CF + "smtpd_tls_cert_file = certs/old.pem\n"
                      "smtpd_tls_key_file = certs/old.pem\n")
    result = run_mta("cert", "list", config=config, check=False)
    assert result.returncode == 1
    assert re.search(r"^smtpd_tls_cert_file +certs/old.pem +CN=old.example.test ",
                     result.stdout.decode(), re.M)
    assert "mta cert: error: certs/old.pem: CN=old.example.test: expired " in \
        result.stderr.decode()


def test_list_a_missing_file_is_an_error(site: Path) -> None:
    (site / "certs" / "server.pem").unlink()
    result = run_mta("cert", "list", "--at", "2026-06-01", config=site / "main.cf",
                     check=False)
    assert result.returncode == 1
    assert "mta cert: error: smtpd_tls_cert_file: " in result.stderr.decode()
    assert "server.pem: cannot read: No such file or directory" in result.stderr.decode()


def test_list_before_first_start_is_a_note(site: Path) -> None:
    config = site / "main.cf"
    config.write_text("smtpd_tls_cert_file = tls/server.pem\n"
                      "tls_self_signed_on_first_start = yes\n")
    result = run_mta("cert", "list", config=config, check=False)
    assert result.returncode == 0
    assert "tls/server.pem: not made yet; mta start makes a self-signed certificate" in \
        result.stderr.decode()


@pytest.mark.parametrize("name", ["server.pem", "alice.pem", "submit-chain.pem", "next.csr"])
def test_show_golden(site: Path, name: str) -> None:
    text, code = transcript(site, "show", f"certs/{name}", "--at", "2026-06-01")
    assert_golden(f"show-{name}.txt", text)
    assert code == 0


def test_show_expired(site: Path) -> None:
    text, code = transcript(site, "show", "--cert", "certs/old.pem", "--at", "2026-06-01")
    assert code == 0
    assert "expires:" in text and "(EXPIRED 516 days ago)" in text
