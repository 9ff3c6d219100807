"""mta tls-check against the same peers as the delivery table: its verdicts are the
delivery decisions, and its output shows chain, names and reasons."""

from __future__ import annotations

import asyncio
import io
import json
import sys
from pathlib import Path

import pytest

from mta.cli.tls_check import check
from mta.config import from_text
from mta.resolver import Resolver
from mta.tls.fingerprints import pubkey_digest
from mta.tls.levels import TlsLevel
from tests.fakes.smtp_peer import ScriptedPeer
from tests.helpers import free_port, mta_env
from tests.unit.smtp_helpers import BASE_CF
from tests.unit.tls.test_outbound_matrix import (
    CA,
    MX,
    NEXTHOP,
    SELF_SIGNED,
    TABLE,
    peer_as_mx,
)

VERDICT = {("sent", "tls"): "deliver over TLS", ("sent", "plaintext"): "deliver in plaintext"}


async def run_check(tmp_path: Path, peer_name: str, *args: object, **kwargs: object
                    ) -> tuple[int, str]:
    CA.write(tmp_path / "ca.pem")
    config = from_text(BASE_CF + "smtp_tls_CAfile = ca.pem\n", str(tmp_path / "main.cf"))
    out = io.StringIO()
    async with peer_as_mx(peer_name, tmp_path) as (_, dns, connect):
        # kwargs: more keyword arguments of check(), passed through as objects.
        status = await check(config, NEXTHOP, resolver=Resolver(("dns",), dns=dns),
                             connector=connect, out=out, timeout=10, **kwargs)  # type: ignore[arg-type]
    return status, out.getvalue()


@pytest.mark.parametrize("peer_name", list(TABLE))
async def test_verdicts_match_delivery(tmp_path: Path, peer_name: str) -> None:
    pin = frozenset({pubkey_digest(SELF_SIGNED.cert)})
    status, text = await run_check(tmp_path, peer_name, pins=pin)
    assert status == 0  # the default level, may, delivers to every one of them
    verdicts = {line.split()[0].lstrip("*"): line for line in
                text.split("verdicts:\n")[1].splitlines() if line.startswith(("  ", " *"))
                and line.split()[0].lstrip("*") in ("may", "encrypt", "fingerprint", "verify",
                                                      "secure")}
    row = TABLE[peer_name]
    for column, level in enumerate(("none", "may", "encrypt", "fingerprint", "verify",
                                    "secure")):
        if level == "none":
            continue
        expected = row[column]
        line = verdicts[level]
        if peer_name == "handshake_fails" and level == "may":
            assert "deliver in plaintext after the failed handshake" in line
        elif expected[0] == "sent":
            assert VERDICT[expected] in line, line
        else:
            assert f"defer: {expected[1]} {expected[2]}" in line, line


async def test_text_output_for_a_valid_server(tmp_path: Path) -> None:
    status, text = await run_check(tmp_path, "valid", level=TlsLevel.SECURE)
    assert status == 0
    assert text.startswith(f"destination: {NEXTHOP}, policy secure (tls-check -l)\n"
                           f"server: {MX}[127.0.0.1]:25\n< 220 peer.test ESMTP scripted\n")
    assert "> STARTTLS" in text
    assert f"Trusted TLS connection established to {MX}[127.0.0.1]:25: TLSv1.3" in text
    assert f"certificate 0: subject /CN={MX}" in text
    assert "  issuer /O=Postern Tests/CN=Postern Matrix CA" in text
    assert f"  names {MX}" in text
    assert "  sha256 public key " in text
    assert f"chain ({tmp_path}/ca.pem): trusted" in text
    assert f"name hostname {MX}: matched {MX}" in text
    assert f"name nexthop {NEXTHOP}: no match" in text
    assert f"name dot-nexthop .{NEXTHOP}: matched {MX}" in text
    assert " *secure       deliver over TLS (Verified)" in text


async def test_exit_status_and_json_for_a_refusal(tmp_path: Path) -> None:
    status, out = await run_check(tmp_path, "wrong_name", level=TlsLevel.VERIFY,
                                  as_json=True)
    assert status == 1
    data = json.loads(out)
    assert data["verdicts"]["verify"]["deliver"] is False
    assert data["verdicts"]["verify"]["text"] == "defer: 4.7.5 Server certificate not verified"
    assert data["verdicts"]["verify"]["log"].endswith("num=62:hostname mismatch")
    assert data["chain"][0]["dns_names"] == ["mx.elsewhere.test"]
    assert data["starttls_offered"] is True and data["tls"]["protocol"] == "TLSv1.3"


async def test_no_starttls_at_encrypt(tmp_path: Path) -> None:
    status, text = await run_check(tmp_path, "mitm_strip", level=TlsLevel.ENCRYPT)
    assert status == 1
    assert "> STARTTLS" not in text
    assert (f" *encrypt      defer: 4.7.4 TLS is required, but was not offered by host "
            f"{MX}[127.0.0.1]") in text


async def test_the_command_line(tmp_path: Path) -> None:
    """The real command, as a subprocess, against a peer with a localhost certificate."""
    CA.write(tmp_path / "ca.pem")
    (tmp_path / "main.cf").write_text("myhostname = client.test\nsmtp_host_lookup = native\n")
    async with ScriptedPeer(tls=CA.issue("localhost").write(tmp_path, "lh").server_context(),
                            hostname="localhost", port=free_port()) as peer:
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "mta", "tls-check", "-c", str(tmp_path / "main.cf"),
            "-F", str(tmp_path / "ca.pem"), "-l", "verify", "-p", str(peer.port), "localhost",
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=mta_env())
        stdout, stderr = await asyncio.wait_for(process.communicate(), 60)
    text = stdout.decode()
    assert process.returncode == 0, (text, stderr.decode())
    assert f"server: localhost[127.0.0.1]:{peer.port}" in text
    assert " *verify       deliver over TLS (Verified)" in text
