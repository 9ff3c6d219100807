"""The daemon refuses to start on a bad TLS policy, naming the file, line and reason."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers import DaemonFactory, run_mta


@pytest.mark.parametrize(("policy", "setting", "message"), [
    ("good.test  secure\nbad.test   musttls match=nexthop\n", "",
     "tls_policy:2: bad.test: attribute 'match' is valid only at the fingerprint, verify "
     "or secure level, not encrypt"),
    ("dane.test  dane\n", "", "tls_policy:1: dane.test: TLS security level 'dane' is "
     "reserved"),
    ("", "smtp_tls_security_level = dane-only\n",
     "smtp_tls_security_level = dane-only: TLS security level 'dane-only' is reserved"),
])
def test_bad_policy_stops_the_start(daemon_factory: DaemonFactory, policy: str, setting: str,
                                    message: str) -> None:
    daemon = daemon_factory("smtp_tls_policy_maps = texthash:tls_policy\n" + setting)
    (daemon.root / "tls_policy").write_text(policy)
    daemon.start(wait=False)
    assert daemon.process is not None
    code = daemon.process.wait(timeout=30)
    output = daemon.stderr_path.read_text()
    daemon.stop()
    assert code != 0
    assert message in output, output
    assert "daemon started" not in daemon.log_text()


def test_warning_for_attributes_with_tls_off(daemon_factory: DaemonFactory) -> None:
    daemon = daemon_factory("smtp_tls_policy_maps = texthash:tls_policy\n")
    (daemon.root / "tls_policy").write_text("legacy.test none ciphers=high\n")
    daemon.start()
    daemon.wait_log(r"postern/master\[\d+\]: warning: .*tls_policy:1: legacy\.test: ignoring "
                    r"attribute 'ciphers=high' with TLS disabled")


def test_tls_check_reports_a_bad_policy(tmp_path: Path) -> None:
    (tmp_path / "main.cf").write_text("smtp_tls_policy_maps = texthash:tls_policy\n")
    (tmp_path / "tls_policy").write_text("x.test verify match=\n")
    result = run_mta("tls-check", "x.test", config=tmp_path / "main.cf", check=False)
    assert result.returncode == 1
    assert b"tls_policy:1: x.test: attribute 'match' has an empty value" in result.stderr
