"""Which certificates a configuration uses (inventory.py), and the expiry watch
(expiry.py): warnings and the metric, with an injected clock."""

from __future__ import annotations

import datetime
from pathlib import Path

import pytest

from mta import config as configuration
from mta.config.params import PARAMS
from mta.metrics import REGISTRY
from mta.tls import certinfo, certs, expiry, keys
from mta.tls.inventory import configured_certificates
from tests.fakes.certs import at, self_signed, write_fixed_set


def load(directory: Path, text: str) -> configuration.Config:
    (directory / "main.cf").write_text(text)
    return configuration.load(str(directory / "main.cf"))


def test_only_the_server_certificate_on_main(tmp_path: Path) -> None:
    config = load(tmp_path, "smtpd_tls_cert_file = tls/server.pem\n")
    [item] = configured_certificates(config)
    assert (item.role, item.parameter, item.shown) == ("smtpd", "smtpd_tls_cert_file",
                                                       "tls/server.pem")
    assert item.path == tmp_path / "tls/server.pem"
    assert item.key == tmp_path / "tls/server.pem"  # key defaults to $smtpd_tls_cert_file


def test_nothing_configured(tmp_path: Path) -> None:
    assert configured_certificates(load(tmp_path, "")) == []


def test_listener_overrides_and_duplicates(tmp_path: Path) -> None:
    config = load(tmp_path, "smtpd_tls_cert_file = a.pem\nsmtpd_tls_key_file = a.key\n"
                            "smtp/inet = 127.0.0.1:25\n"
                            "submission/inet = 127.0.0.1:587\n"
                            "submission/inet/smtpd_tls_cert_file = b.pem\n"
                            "submission/inet/smtpd_tls_key_file = b.key\n"
                            "submissions/inet = 127.0.0.1:465\n"
                            "submissions/inet/smtpd_tls_cert_file = a.pem\n"
                            "submissions/inet/smtpd_tls_key_file = a.key\n")
    found = [(i.parameter, i.shown, i.key.name if i.key else None)
             for i in configured_certificates(config)]
    assert found == [("smtpd_tls_cert_file", "a.pem", "a.key"),
                     ("submission/inet/smtpd_tls_cert_file", "b.pem", "b.key")]


EVERY_ROLE = ("smtpd_tls_cert_file = server.pem\n"
              "smtpd_tls_CAfile = clients-ca.pem\n"
              "smtp_tls_cert_file = client.pem\n"
              "smtp_tls_key_file = client.key\n"
              "tls_server_sni_maps = texthash:sni\n")


def test_every_role(tmp_path: Path) -> None:
    (tmp_path / "sni").write_text("mx2.example.test  sni/mx2.pem\n"
                                  "mx3.example.test  sni/mx3.pem, sni/mx3-rsa.pem\n")
    config = load(tmp_path, EVERY_ROLE)
    found = [(i.role, i.parameter, i.shown, i.ours) for i in configured_certificates(config)]
    assert found == [
        ("smtpd", "smtpd_tls_cert_file", "server.pem", True),
        ("smtpd_client_ca", "smtpd_tls_CAfile", "clients-ca.pem", False),
        ("smtp_client", "smtp_tls_cert_file", "client.pem", True),
        ("smtpd_sni", "tls_server_sni_maps mx2.example.test", "sni/mx2.pem", True),
        ("smtpd_sni", "tls_server_sni_maps mx3.example.test", "sni/mx3.pem", True),
        ("smtpd_sni", "tls_server_sni_maps mx3.example.test", "sni/mx3-rsa.pem", True),
    ]
    assert [i.key.name if i.key else None for i in configured_certificates(config)][:3] == [
        "server.pem", None, "client.key"]  # the key defaults to the certificate's file


def test_a_parameter_the_table_lacks_is_skipped(tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "sni").write_text("mx2.example.test  sni/mx2.pem\n")
    config = load(tmp_path, EVERY_ROLE)
    for name in ("smtp_tls_cert_file", "tls_server_sni_maps"):
        monkeypatch.delitem(PARAMS, name)
    assert [i.parameter for i in configured_certificates(config)] == [
        "smtpd_tls_cert_file", "smtpd_tls_CAfile"]


# --- the expiry watch ---------------------------------------------------------------
def metric(role: str) -> float | None:
    return REGISTRY.get_sample_value("mta_tls_certificate_expiry_seconds", {"role": role})


@pytest.fixture
def maillog(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    lines: list[str] = []
    monkeypatch.setattr(expiry.maillog, "warning",
                        lambda program, text: lines.append(f"{program}: warning: {text}"))
    return lines


def test_watch_sets_the_metric_and_warns(tmp_path: Path, maillog: list[str]) -> None:
    write_fixed_set(tmp_path / "certs")
    config = load(tmp_path, "smtpd_tls_cert_file = certs/server.pem\n"
                            "smtpd_tls_key_file = certs/server.key\n"
                            "smtpd_tls_CAfile = certs/ca.pem\n")
    now = at("2026-12-22T00:00:00")  # ten days before server.pem expires
    watch = expiry.CertificateWatch(config, clock=now.timestamp)
    watch.check()
    assert metric("smtpd") == 10 * 86400
    assert metric("smtpd_client_ca") == (at("2036-01-01T00:00:00") - now).total_seconds()
    assert metric("smtp_client") is None
    assert maillog == ["master: warning: certificate certs/server.pem (smtpd_tls_cert_file) "
                       "for CN=mx.example.test expires in 10 days, on 2027-01-01 00:00:00 UTC"]


def test_metric_counts_down_between_checks(tmp_path: Path, maillog: list[str]) -> None:
    write_fixed_set(tmp_path / "certs")
    config = load(tmp_path, "smtpd_tls_cert_file = certs/old.pem\n")
    clock = [at("2025-01-03T00:00:00").timestamp()]
    watch = expiry.CertificateWatch(config, clock=lambda: clock[0])
    watch.check()
    assert metric("smtpd") == -2 * 86400
    clock[0] += 3600
    assert metric("smtpd") == -2 * 86400 - 3600
    assert maillog == ["master: warning: certificate certs/old.pem (smtpd_tls_cert_file) for "
                       "CN=old.example.test expired 2 days ago, on 2025-01-01 00:00:00 UTC"]


def test_watch_reports_an_unreadable_certificate(tmp_path: Path, maillog: list[str]) -> None:
    config = load(tmp_path, "smtpd_tls_cert_file = missing.pem\n")
    expiry.CertificateWatch(config).check()
    assert metric("smtpd") is None
    assert maillog == [f"master: warning: smtpd_tls_cert_file: {tmp_path / 'missing.pem'}: "
                       "cannot read: No such file or directory"]


def test_no_warning_outside_the_window(tmp_path: Path, maillog: list[str]) -> None:
    write_fixed_set(tmp_path / "certs")
    config = load(tmp_path, "smtpd_tls_cert_file = certs/server.pem\n"
                            "smtpd_tls_key_file = certs/server.key\n"
                            "tls_cert_expiry_warning_time = 7d\n")
    expiry.CertificateWatch(config, clock=at("2026-12-22T00:00:00").timestamp).check()
    assert maillog == []


def test_check_keys_refuses_a_mismatched_key(tmp_path: Path) -> None:
    write_fixed_set(tmp_path / "certs")
    config = load(tmp_path, "smtpd_tls_cert_file = certs/server.pem\n"
                            "smtpd_tls_key_file = certs/submit.key\n")
    with pytest.raises(configuration.ConfigError, match="does not match the certificate"):
        expiry.check_keys(config)


def test_check_keys_passes_a_good_pair_and_skips_missing_files(tmp_path: Path) -> None:
    self_signed("s.example", directory=tmp_path, stem="s")
    config = load(tmp_path, "smtpd_tls_cert_file = s.pem\nsmtpd_tls_key_file = s.key\n"
                            "submission/inet = 127.0.0.1:587\n"
                            "submission/inet/smtpd_tls_cert_file = none.pem\n")
    assert expiry.check_keys(config) == []


def test_days_and_seconds_agree_with_the_clock() -> None:
    now = datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC)
    cert = certs.self_signed(keys.generate_key(), "x.example", days=10, now=now)
    assert certinfo.days_left(cert, now) == 10
    assert certinfo.days_left(cert, now + datetime.timedelta(days=10, hours=1)) == 0
    assert certinfo.is_expired(cert, now + datetime.timedelta(days=10, hours=1))
