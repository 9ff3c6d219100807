"""mta config prints parameters the way postconf does."""

from __future__ import annotations

from pathlib import Path

from tests.helpers import run_mta


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "main.cf"
    path.write_text(text)
    return path


def test_non_default_default_and_single_values(tmp_path: Path) -> None:
    config = write(tmp_path, "myhostname = mx.example.test\nmyorigin = $mydomain\n"
                             "smtp/inet = 127.0.0.1:2525\nsubmission/inet = 127.0.0.1:2587\n"
                             "submission/inet/smtpd_timeout = 60s\n")
    assert run_mta("config", "-n", config=config).stdout.decode() == \
        "myhostname = mx.example.test\nmyorigin = $mydomain\n"
    # Unexpanded, as postconf shows Postfix's stress-dependent default.
    assert run_mta("config", "myorigin", "smtpd_timeout", config=config).stdout.decode() == \
        "myorigin = $mydomain\nsmtpd_timeout = ${stress?{10}:{300}}s\n"
    assert run_mta("config", "-x", "smtpd_timeout", config=config).stdout.decode() == \
        "smtpd_timeout = 300s\n"
    assert run_mta("config", "-x", "myorigin", config=config).stdout.decode() == \
        "myorigin = example.test\n"
    assert run_mta("config", "-h", "-x", "smtpd_banner", config=config).stdout.decode() == \
        "mx.example.test ESMTP Postern\n"
    assert run_mta("config", "-d", "myorigin", "message_size_limit",
                   config=config).stdout.decode() == \
        "myorigin = $myhostname\nmessage_size_limit = 10240000\n"
    assert run_mta("config", "-M", config=config).stdout.decode() == \
        ("smtp/inet = 127.0.0.1:2525\nsubmission/inet = 127.0.0.1:2587\n"
         "submission/inet/smtpd_timeout = 60s\n")
    everything = run_mta("config", config=config).stdout.decode().splitlines()
    assert "relay_domains =" in everything and len(everything) > 40


def test_unknown_name_is_a_warning_and_a_failure(tmp_path: Path) -> None:
    config = write(tmp_path, "myhostname = mx.example.test\n")
    result = run_mta("config", "no_such_thing", config=config, check=False)
    assert result.returncode == 1
    assert result.stderr == b"mta config: warning: no_such_thing: unknown parameter\n"


def test_bad_value_is_fatal_with_file_and_line(tmp_path: Path) -> None:
    config = write(tmp_path, "myhostname = mx.example.test\nsmtpd_recipient_limit = many\n")
    result = run_mta("config", "-n", config=config, check=False)
    assert result.returncode == 1
    assert result.stderr.decode() == (f"mta: fatal: {config}:2: smtpd_recipient_limit = many: "
                                      "expected a whole number\n")


def test_a_macro_loop_is_fatal_in_one_line(tmp_path: Path) -> None:
    config = write(tmp_path, "myhostname = mx.$mydomain\n")
    for command in (("config",), ("config", "-x", "myorigin")):
        result = run_mta(*command, config=config, check=False)
        assert result.returncode == 1
        assert result.stderr.decode() == (
            f"mta: fatal: {config}:1: myhostname = mx.$mydomain: recursion: the default "
            "$mydomain is derived from $myhostname; set mydomain in main.cf\n")


def test_expanded_defaults_ignore_main_cf(tmp_path: Path) -> None:
    # postconf -dx expands a default against the other defaults, not main.cf.
    config = write(tmp_path, "myhostname = mx.example.com\nmail_name = Foo\n")
    default_host = run_mta("config", "-dh", "myhostname", config=config).stdout.decode()
    assert default_host.strip() != "mx.example.com"
    assert run_mta("config", "-dx", "smtpd_banner", "mydomain",
                   config=config).stdout.decode() == (
        f"smtpd_banner = {default_host.strip()} ESMTP Postern\n"
        f"mydomain = {default_host.strip().partition('.')[2] or 'localdomain'}\n")
