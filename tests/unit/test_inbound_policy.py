"""The TLS level per listener and per client network (Sun's musttlsserver)."""

from __future__ import annotations

from pathlib import Path

import pytest

from mta.config import from_text
from mta.errors import ConfigError
from mta.tls.inbound_policy import InboundTlsPolicy, parse_level


def policy(tmp_path: Path, text: str) -> tuple[InboundTlsPolicy, list[str]]:
    return InboundTlsPolicy.from_config(from_text(text, str(tmp_path / "main.cf")))


def test_levels_per_network(tmp_path: Path) -> None:
    (tmp_path / "smtpd_tls_policy").write_text(
        "# partners must use TLS; a broken appliance gets none\n"
        "192.0.2.0/24      encrypt\n"
        "198.51.100.7/32   notls\n"
        "2001:db8::/32     musttls\n"
        "203.0.113.0/24    maytls\n")
    got, warnings = policy(tmp_path, "smtpd_tls_security_level = may\n"
                                     "smtpd_tls_policy_maps = cidr:smtpd_tls_policy\n")
    assert warnings == []
    assert got.level_for("192.0.2.25") == "encrypt"
    assert got.level_for("198.51.100.7") == "none"
    assert got.level_for("2001:db8::1") == "encrypt"
    assert got.level_for("203.0.113.9") == "may"
    assert got.level_for("8.8.8.8") == "may"  # strangers: the listener's level
    assert got.uses_tls and not got.mandatory


def test_a_network_can_ask_for_tls_on_a_listener_without_it(tmp_path: Path) -> None:
    got, _ = policy(tmp_path, "smtpd_tls_policy_maps = inline:{ 127.0.0.1=encrypt }\n")
    assert got.uses_tls
    assert (got.level_for("127.0.0.1"), got.level_for("127.0.0.2")) == ("encrypt", "none")


def test_wrapper_mode_and_client_only_levels(tmp_path: Path) -> None:
    got, _ = policy(tmp_path, "smtpd_tls_wrappermode = yes\n")
    assert got.mandatory and got.level_for("192.0.2.1") == "encrypt"
    got, warnings = policy(tmp_path, "smtpd_tls_security_level = verify\n")
    assert got.level == "encrypt"
    assert warnings == ['smtpd_tls_security_level: unsupported TLS level "verify", '
                        'using "encrypt"']


def test_bad_values_name_their_place(tmp_path: Path) -> None:
    (tmp_path / "bad").write_text("192.0.2.0/24 sometimes\n")
    # file:line: key: reason, for cidr tables as for the others
    with pytest.raises(ConfigError, match=r"/bad:1: 192\.0\.2\.0/24: bad TLS level"):
        policy(tmp_path, "smtpd_tls_policy_maps = cidr:bad\n")
    (tmp_path / "bad2").write_text("192.0.2.1 sometimes\n")
    with pytest.raises(ConfigError, match=r"/bad2:1: 192\.0\.2\.1: bad TLS level"):
        policy(tmp_path, "smtpd_tls_policy_maps = texthash:bad2\n")
    with pytest.raises(ConfigError, match=r"^static:sometimes: \*: bad TLS level"):
        policy(tmp_path, "smtpd_tls_policy_maps = static:sometimes\n")
    assert parse_level("MUSTTLSSERVER") == "encrypt"
