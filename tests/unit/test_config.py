"""main.cf parsing: expansion, continuation lines, errors with file:line."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from mta import config as configuration
from mta.config import ConfigError, from_text
from mta.config.parser import expand, parse_main_cf


def test_logical_lines_comments_and_continuations() -> None:
    text = ("# a comment\n"
            "mydestination = localhost,\n"
            "    example.test\n"
            "  # a comment inside a continued line\n"
            "\texample.org\n"
            "\n"
            "myhostname = mx.example.test # not a comment\n")
    settings = parse_main_cf(text, "main.cf")
    assert settings["mydestination"].value == "localhost, example.test example.org"
    assert settings["mydestination"].line == 2
    assert settings["myhostname"].value == "mx.example.test # not a comment"


def test_later_definition_wins() -> None:
    config = configuration.from_text("myhostname = a.example\nmyhostname = b.example\n")
    assert config.myhostname == "b.example"
    assert config.where("myhostname") == "main.cf:2"


@pytest.mark.parametrize(("text", "expected"), [
    ("$myhostname", "mx.example.test"),
    ("${myhostname}", "mx.example.test"),
    ("$(myhostname)", "mx.example.test"),
    ("x${myhostname}y", "xmx.example.testy"),
    ("${myhostname?yes}", "yes"),
    ("${relay_domains?yes}", ""),
    ("${relay_domains:empty}", "empty"),
    # As Postfix's postconf -x: ":" gives its text when the name is empty,
    # and nothing otherwise (not the name's value).
    ("${myhostname:empty}", ""),
    ("${myhostname?{set}:{empty}}", "set"),
    ("${relay_domains?{set}:{empty}}", "empty"),
    ("${myhostname?{${relay_domains:{$myhostname}}}}", "mx.example.test"),
    ("${myhostname?{x}:y}", "${myhostname?{x}:y}"),
    ("$$myhostname", "$myhostname"),
    ("$undefined_thing", ""),
])
def test_expansion(text: str, expected: str) -> None:
    config = configuration.from_text("myhostname = mx.example.test\n")
    assert config.expand_text(text) == expected


def test_expansion_is_lazy_and_uses_final_values() -> None:
    config = configuration.from_text(
        "myorigin = $mydomain\nmyhostname = mx.one.example\nmyhostname = mx.two.example\n")
    assert config.mydomain == "two.example"
    assert config.myorigin == "two.example"


def test_default_refers_to_other_parameters() -> None:
    config = configuration.from_text("myhostname = mx.example.test\n")
    assert config.mydestination == ("mx.example.test", "localhost.example.test", "localhost")
    assert config.smtpd_banner == "mx.example.test ESMTP Postern"


def test_expansion_loop_is_an_error() -> None:
    with pytest.raises(ConfigError, match="nested too deeply"):
        expand("$a", {"a": "$b", "b": "$a"}.get)


@pytest.mark.parametrize("text", ["myhostname = mx.$mydomain\n",
                                  "myhostname = $a\na = mx.${mydomain}\n"])
def test_myhostname_through_the_default_mydomain_is_a_loop(text: str) -> None:
    # The default mydomain is derived from myhostname, so this loop runs
    # through Config, past expand()'s own depth guard.
    with pytest.raises(ConfigError, match=r"main.cf:1: myhostname = .*: recursion: "):
        configuration.from_text(text)


@pytest.mark.parametrize(("text", "message"), [
    ("smtpd_timeout = 5 minutes\n", r"main.cf:1: smtpd_timeout = 5 minutes: expected a time"),
    ("myhostname = x\n\nsmtpd_recipient_limit = 0\n",
     r"main.cf:3: smtpd_recipient_limit = 0: must be at least 1"),
    ("smtpd_helo_required = maybe\n", r"main.cf:1: .*expected yes or no"),
    ("mynetworks = 127.0.0.0/8 300.1.2.3\n", r"main.cf:1: .*bad network address '300.1.2.3'"),
    # A typo must not widen who may relay: 203.0.113.5/8 is not read as 203.0.0.0/8.
    ("mynetworks = 127.0.0.0/8, 203.0.113.5/8\n",
     r"main.cf:1: mynetworks = .*: non-null host address bits in \"203\.0\.113\.5/8\", "
     r"perhaps you should use \"203\.0\.0\.0/8\" instead"),
    ("mynetworks = [2001:db8::1]/32\n",
     r"main.cf:1: .*non-null host address bits in \"\[2001:db8::1\]/32\", "
     r"perhaps you should use \"2001:db8::/32\" instead"),
    ("smtpd_client_event_limit_exceptions = 192.0.2.1/24\n",
     r"main.cf:1: smtpd_client_event_limit_exceptions = .*non-null host address bits"),
    ("  indented = value\n", r"main.cf:1: continuation line without a parameter"),
    ("no equals sign here\n", r"main.cf:1: missing '='"),
    ("smtp/inet = 127.0.0.1:notaport\n", r"main.cf:1: smtp/inet = .*bad port"),
    ("smtp/inet = 127.0.0.1:25\nsmtp/inet/bogus = 1\n",
     r"main.cf:2: unknown parameter 'bogus' in override"),
    ("submission/inet/smtpd_timeout = 1s\n", r"main.cf:1: override for undefined service"),
    ("smtpd_forbid_bare_newline = sometimes\n", r"main.cf:1: .*expected one of normalize"),
    # Each bind address is for its own family (Postfix: msg_fatal when it connects).
    ("smtp_bind_address = ::1\n", r"main.cf:1: smtp_bind_address = ::1: expected an IPv4 "
     r"address, not IPv6; use smtp_bind_address6 for IPv6"),
    ("smtp_bind_address6 = 127.0.0.1\n", r"main.cf:1: smtp_bind_address6 = 127.0.0.1: "
     r"expected an IPv6 address, not IPv4; use smtp_bind_address for IPv4"),
    ("smtp_bind_address = mail.example.com\n",
     r"main.cf:1: smtp_bind_address = mail.example.com: expected a numerical IPv4 address"),
    ("smtp_bind_address6 = [::1]\n", r"main.cf:1: .*expected a numerical IPv6 address"),
])
def test_bad_values_name_file_and_line(text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        configuration.from_text(text)


def test_bind_addresses_of_their_own_family_load() -> None:
    config = configuration.from_text("smtp_bind_address = 192.0.2.7\n"
                                     "smtp_bind_address6 = 2001:db8::7\n")
    assert (config.smtp_bind_address, config.smtp_bind_address6) == ("192.0.2.7", "2001:db8::7")
    defaults = configuration.from_text("")
    assert (defaults.smtp_bind_address, defaults.smtp_bind_address6) == ("", "")


def test_time_units() -> None:
    config = configuration.from_text("smtpd_timeout = 5m\nmaximal_queue_lifetime = 2\n"
                                     "minimal_backoff_time = 1h\n")
    assert config.smtpd_timeout == 300
    assert config.maximal_queue_lifetime == 2 * 86400  # this one's default unit is days
    assert config.minimal_backoff_time == 3600


def test_unknown_parameter_is_warned_not_fatal() -> None:
    config = configuration.from_text("myhostname = x.example\nno_such_parameter = 1\n"
                                     "used_by_reference = 2\nrelay_domains = $used_by_reference\n")
    assert config.warnings == ["main.cf:2: unused parameter: no_such_parameter=1"]


def test_listeners_and_overrides() -> None:
    config = configuration.from_text(
        "smtpd_timeout = 300s\n"
        "smtp/inet = 127.0.0.1:2525\n"
        "submission/inet = [::1]:2587\n"
        "submission/inet/smtpd_timeout = 10s\n")
    smtp, submission = config.listeners
    assert (smtp.name, smtp.address.host, smtp.address.port) == ("smtp", "127.0.0.1", 2525)
    assert (submission.address.host, submission.address.port) == ("::1", 2587)
    assert config.for_listener(smtp).smtpd_timeout == 300
    assert config.for_listener(submission).smtpd_timeout == 10
    assert config.smtpd_timeout == 300


def test_override_with_a_bad_value_is_an_error() -> None:
    with pytest.raises(ConfigError, match=r"main.cf:2: smtpd_timeout = never"):
        configuration.from_text("smtp/inet = 127.0.0.1:25\nsmtp/inet/smtpd_timeout = never\n")


def test_relative_paths_are_relative_to_the_config_directory(tmp_path: Path) -> None:
    path = tmp_path / "main.cf"
    path.write_text("queue_directory = spool\n")
    config = configuration.load(str(path))
    assert config.path_of(config.queue_directory) == tmp_path / "spool"


def test_the_embedded_default_loads() -> None:
    config = configuration.load(str(Path(__file__).parents[2] / "main.cf.example"))
    assert [(s.name, s.address.port) for s in config.listeners] == [
        ("smtp", 2525), ("submission", 2587), ("submissions", 2465)]
    assert config.warnings == []


def test_configuration_reference_is_current() -> None:
    from mta.config.reference import markdown

    document = Path(__file__).parents[2] / "docs" / "configuration.md"
    assert document.read_text() == markdown(), \
        "regenerate it: python -m mta.config.reference > docs/configuration.md"


def test_a_parameter_defined_twice_stops_the_import() -> None:
    from mta.config import params, params_smtp_tls  # noqa: F401

    before = dict(params.PARAMS)
    first = params.PARAMS["tls_wildcard_matches_multiple_labels"].origin
    assert first.startswith("mta.config.params_smtp_tls:")
    with pytest.raises(params.DuplicateParameter) as error:
        params._bool("tls_wildcard_matches_multiple_labels", "no", "a second definition")
    assert str(error.value) == (
        f"parameter tls_wildcard_matches_multiple_labels is defined twice: at {first} and at "
        f"{__name__}:{error.tb.tb_lineno}; keep one definition")
    assert before == params.PARAMS  # the first definition stands
    # Every parameter says where it is defined, one place each.
    assert all(p.origin.startswith("mta.config.params") for p in params.PARAMS.values())


def test_every_module_imports_first() -> None:
    # The parameter table imports value parsers from mta/tls/ (levels,
    # protocols); those must not import the mta.config package back, or
    # whichever is imported first breaks. Each module, in a fresh mta.
    import subprocess
    import sys

    script = (
        "import importlib, pathlib, sys\n"
        "names = sorted('mta.' + '.'.join(p.with_suffix('').parts[1:])\n"
        "               for p in pathlib.Path('mta').rglob('*.py') if p.name != '__main__.py')\n"
        "failed = []\n"
        "for name in names:\n"
        "    for loaded in [m for m in sys.modules if m == 'mta' or m.startswith('mta.')]:\n"
        "        del sys.modules[loaded]\n"
        "    try:\n"
        "        importlib.import_module(name.removesuffix('.__init__'))\n"
        "    except Exception as error:\n"
        "        failed.append(f'{name}: {error!r}')\n"
        "print('\\n'.join(failed))\n")
    root = Path(__file__).resolve().parents[2]
    result = subprocess.run([sys.executable, "-c", script], cwd=root, capture_output=True,
                            text=True, timeout=120, check=True)
    assert result.stdout.strip() == ""


@pytest.mark.parametrize(("cpus", "expected"), [(1, 0), (2, 2), (3, 3), (16, 4)])
def test_receiver_processes_auto_is_one_per_cpu_we_may_use(monkeypatch: pytest.MonkeyPatch,
                                                           cpus: int,
                                                           expected: int) -> None:
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(cpus)))
    assert from_text("").receiver_processes == expected
    assert from_text("receiver_processes = 3\n").receiver_processes == 3
