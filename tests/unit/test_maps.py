"""Lookup tables (mta/maps.py) against Postfix's table syntax: texthash, cidr, inline, static."""

from __future__ import annotations

from pathlib import Path

import pytest

from mta.errors import ConfigError
from mta.maps import CidrTable, HashTable, StaticTable, open_table, open_tables, split_specs


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


# --- texthash (and hash:/lmdb:, read from the same source file) ------------------------
TEXTHASH = """\
# relay_clientcerts, as Postfix's texthash reads it
alice@example.org   alice's phone
Bob@Example.ORG     bob's
    laptop, the old one
# a comment line inside a continued entry does not end it
    and its spare

carol@example.org
   # indented comment
dave@example.org    ok   # not a comment: '#' only starts one at the line's start
"""


def test_texthash_lines_continuations_and_comments(tmp_path: Path) -> None:
    write(tmp_path, "table", TEXTHASH)
    for kind in ("texthash", "hash", "lmdb"):
        table = open_table(f"{kind}:table", tmp_path)
        assert isinstance(table, HashTable)
        assert table.lookup("alice@example.org") == "alice's phone"
        # keys compare without case; a continuation joins with one space
        assert table.lookup("bob@example.org") == "bob's laptop, the old one and its spare"
        assert table.lookup("carol@example.org") == ""  # listed, empty value
        assert table.lookup("dave@example.org") == "ok   # not a comment: '#' only starts " \
                                                   "one at the line's start"
        assert table.lookup("erin@example.org") is None
    entries = open_table("texthash:table", tmp_path).entries()
    assert [(e.key, e.line) for e in entries] == [
        ("alice@example.org", 2), ("Bob@Example.ORG", 3), ("carol@example.org", 8),
        ("dave@example.org", 10)]
    assert entries[1].where == f"{tmp_path / 'table'}:3"


def test_texthash_errors_name_file_and_line(tmp_path: Path) -> None:
    write(tmp_path, "orphan", "# header\n  continued without a key\n")
    with pytest.raises(ConfigError) as error:
        open_table("texthash:orphan", tmp_path)
    assert str(error.value) == f"{tmp_path / 'orphan'}:2: continuation line without a key"
    with pytest.raises(ConfigError, match=r"/missing: cannot read table: No such file"):
        open_table("texthash:missing", tmp_path)


def test_relative_and_absolute_file_names(tmp_path: Path) -> None:
    path = write(tmp_path, "t", "k v\n")
    assert open_table("texthash:t", tmp_path).lookup("k") == "v"
    assert open_table(f"texthash:{path}", Path("/nonexistent")).lookup("k") == "v"


# --- cidr ------------------------------------------------------------------------------
CIDR = """\
# first match wins, in file order
192.0.2.7           host
192.0.2.0/24        net24
192.0.0.0/16        net16
[198.51.100.1]      bracketed-v4
[2001:db8::]/32     bracketed-v6
2001:db8::1         never (2001:db8::/32 came first)
::/0                any-v6
0.0.0.0/0           any-v4
"""


@pytest.mark.parametrize(("address", "value"), [
    ("192.0.2.7", "host"),
    ("192.0.2.8", "net24"),
    ("192.0.3.1", "net16"),
    ("198.51.100.1", "bracketed-v4"),
    ("198.51.100.2", "any-v4"),
    ("2001:db8::1", "bracketed-v6"),
    ("2001:db8:ffff::9", "bracketed-v6"),
    ("2001:0db8:0000::0001", "bracketed-v6"),  # compared as numbers, not text
    ("[2001:db8::1]", "bracketed-v6"),  # a bracketed lookup key too
    ("2001:db9::1", "any-v6"),
    ("10.0.0.1", "any-v4"),
])
def test_cidr_first_match_v4_and_v6(tmp_path: Path, address: str, value: str) -> None:
    write(tmp_path, "cidr", CIDR)
    assert open_table("cidr:cidr", tmp_path).lookup(address) == value


def test_cidr_families_do_not_mix_and_names_do_not_match(tmp_path: Path) -> None:
    write(tmp_path, "v4", "0.0.0.0/0 any-v4\n")
    table = open_table("cidr:v4", tmp_path)
    assert isinstance(table, CidrTable)
    assert table.lookup("::ffff:192.0.2.1") is None
    assert table.lookup("2001:db8::1") is None
    assert table.lookup("mx.example.com") is None
    assert [(e.key, e.value, e.line) for e in table.entries()] == [("0.0.0.0/0", "any-v4", 1)]


@pytest.mark.parametrize("bad", ["192.0.2.0/33", "2001:db8::/129", "[2001:db8::/32",
                                 "example.com", "192.0.2.0/x", "[192.0.2.0]/24]"])
def test_cidr_errors_name_file_and_line(tmp_path: Path, bad: str) -> None:
    write(tmp_path, "cidr", f"# comment\n192.0.2.0/24 ok\n{bad} broken\n")
    with pytest.raises(ConfigError) as error:
        open_table("cidr:cidr", tmp_path)
    assert str(error.value).startswith(f"{tmp_path / 'cidr'}:3: bad network {bad!r}; "
                                       "expected address/length")


# --- inline, static, lists -------------------------------------------------------------
def test_inline() -> None:
    table = open_table("inline:{ 127.0.0.1=encrypt, Example.COM = may , }", Path("."))
    assert table.lookup("127.0.0.1") == "encrypt"
    assert table.lookup("example.com") == "may"
    assert table.lookup("other") is None
    assert [e.where for e in table.entries()] == ["inline:{ 127.0.0.1=encrypt, Example.COM "
                                                  "= may , }"] * 2
    with pytest.raises(ConfigError, match=r"inline table 'inline:\{ a=b, c \}': 'c' is not "
                                          "key=value"):
        open_table("inline:{ a=b, c }", Path("."))
    with pytest.raises(ConfigError, match=r"expected inline:\{ key=value, \.\.\. \}"):
        open_table("inline:a=b", Path("."))


def test_inline_entries_in_braces() -> None:
    """Postfix's form for a value with spaces or commas: { key = text }; it
    was read as the key "{127.0.0.1", which never matched (found by a
    review)."""
    table = open_table("inline:{ {127.0.0.1 = REJECT go away, now}, a={x}, { e=f } }",
                       Path("."))
    assert table.lookup("127.0.0.1") == "REJECT go away, now"
    assert table.lookup("a") == "{x}"
    assert table.lookup("e") == "f"
    with pytest.raises(ConfigError, match="unbalanced"):
        open_table("inline:{ {a=b }", Path("."))


def test_static() -> None:
    table = open_table("static:encrypt", Path("."))
    assert isinstance(table, StaticTable)
    assert table.lookup("anything") == table.lookup("") == "encrypt"
    assert open_table("static:{ may }", Path(".")).lookup("x") == "may"
    # its one value, for checking at start (smtp_tls_policy_maps = static:encrypt)
    assert [(e.key, e.value, e.where) for e in table.entries()] == [
        ("*", "encrypt", "static:encrypt")]


def test_bad_specs() -> None:
    with pytest.raises(ConfigError, match="has no type: expected type:name"):
        open_table("/etc/postern/table", Path("."))
    with pytest.raises(ConfigError, match="unsupported table type 'mysql'"):
        open_table("mysql:/etc/postern/mysql.cf", Path("."))


def test_table_lists_search_in_order(tmp_path: Path) -> None:
    write(tmp_path, "first", "a 1\n")
    write(tmp_path, "second", "a 2\nb 2\n")
    assert split_specs("texthash:first, inline:{ c=3, d=4 } static:5") == [
        "texthash:first", "inline:{ c=3, d=4 }", "static:5"]
    tables = open_tables("texthash:first, texthash:second inline:{ c=3, d=4 } static:5",
                         tmp_path)
    assert [tables.lookup(k) for k in ("a", "b", "c", "d", "z")] == ["1", "2", "3", "4", "5"]
    assert not open_tables("", tmp_path)


def test_cidr_refuses_host_bits_like_postfix(tmp_path: Path) -> None:
    path = tmp_path / "clients.cidr"
    path.write_text("192.0.2.0/24 ok\n10.1.2.3/8 typo\n")
    with pytest.raises(ConfigError, match=r"clients\.cidr:2: non-null host address bits in "
                                          r"\"10\.1\.2\.3/8\", perhaps you should use "
                                          r"\"10\.0\.0\.0/8\" instead"):
        open_table(f"cidr:{path}", tmp_path)
