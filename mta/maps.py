"""Lookup tables named as Postfix names them: ``type:name``.

Supported types: ``texthash:`` (a text file of ``key value`` lines, read
without postmap), ``hash:`` and ``lmdb:`` (the same source file, read the same
way, so existing Postfix maps work unchanged), ``cidr:`` (network → value,
first match wins), ``inline:{ key=value, ... }`` and ``static:value``.
The file syntax is Postfix's: ``#`` comments, whitespace-indented continuation
lines, the key up to the first whitespace, keys matched case-insensitively.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from mta.config.parser import logical_lines
from mta.config.types import host_bits_problem
from mta.errors import ConfigError

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True, slots=True)
class Entry:
    key: str
    value: str
    path: str
    line: int

    @property
    def where(self) -> str:
        """``file:line``; just the table for entries without a line (inline:)."""
        return f"{self.path}:{self.line}" if self.line else self.path


def read_table(path: Path) -> list[Entry]:
    """The logical lines of a Postfix-style table file as (key, value) entries."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        raise ConfigError(f"{path}: cannot read table: {error.strerror}") from None
    entries: list[Entry] = []
    for start, logical in logical_lines(text, str(path), "a key"):
        key, *rest = re.split(r"\s+", logical, maxsplit=1)
        entries.append(Entry(key, rest[0] if rest else "", str(path), start))
    return entries


class Table:
    """A lookup table: lookup(key) gives the value or None."""

    name = ""

    def lookup(self, key: str) -> str | None:  # pragma: no cover - interface
        raise NotImplementedError

    def entries(self) -> list[Entry]:
        return []


class HashTable(Table):
    def __init__(self, name: str, entries: Iterable[Entry]) -> None:
        self.name = name
        self._entries = list(entries)
        self._data = {entry.key.lower(): entry.value for entry in self._entries}

    def lookup(self, key: str) -> str | None:
        return self._data.get(key.lower())

    def entries(self) -> list[Entry]:
        return list(self._entries)


class StaticTable(Table):
    def __init__(self, name: str, value: str) -> None:
        self.name = name
        self._value = value

    def lookup(self, key: str) -> str | None:
        return self._value

    def entries(self) -> list[Entry]:
        """One entry, keyed ``*``: the value every key gets (for validating it at start)."""
        return [Entry("*", self._value, self.name, 0)]


@dataclass
class CidrTable(Table):
    """Networks in file order; the first that contains the address wins."""

    name: str
    rules: list[tuple[Network, str]] = field(default_factory=list)
    _entries: list[Entry] = field(default_factory=list, repr=False)

    def lookup(self, key: str) -> str | None:
        try:
            address = ipaddress.ip_address(_unbracket(key.strip()))
        except ValueError:
            return None
        for network, value in self.rules:
            if address.version == network.version and address in network:
                return value
        return None

    def entries(self) -> list[Entry]:
        return list(self._entries)


def _unbracket(address: str) -> str:
    """``[addr]`` as ``addr``: cidr_table(5) allows the address "enclosed inside []"."""
    if address.startswith("[") and address.endswith("]"):
        return address[1:-1]
    return address


def parse_network(text: str) -> Network:
    """A cidr_table(5) pattern: ``addr/len`` or ``addr``, the address optionally
    in brackets (``[2001:db8::]/32``, ``[192.0.2.1]``); ValueError when bad."""
    address, slash, length = text.partition("/")
    return ipaddress.ip_network(_unbracket(address) + slash + length, strict=False)


def _parse_cidr(path: Path, name: str) -> CidrTable:
    table = CidrTable(name)
    for entry in read_table(path):
        try:
            network = parse_network(entry.key)
        except ValueError:
            raise ConfigError(f"{entry.where}: bad network {entry.key!r}; expected "
                              "address/length, e.g. 192.0.2.0/24 or [2001:db8::]/32") from None
        address = _unbracket(entry.key.partition("/")[0])
        if "/" in entry.key and ipaddress.ip_address(address) != network.network_address:
            # cidr_table(5): a pattern with host bits set is almost always a typo
            # that would match far more (or less) than meant; Postfix refuses it.
            raise ConfigError(f"{entry.where}: {host_bits_problem(entry.key, network)}")
        table.rules.append((network, entry.value))
        table._entries.append(entry)
    return table


_INLINE = re.compile(r"\{(.*)\}\Z", re.S)


def open_table(spec: str, base: Path) -> Table:
    """Open one ``type:name`` table; relative file names are relative to base."""
    kind, sep, name = spec.partition(":")
    if not sep:
        raise ConfigError(f"table {spec!r} has no type: expected type:name, "
                          "e.g. texthash:/etc/postern/mailboxes")
    kind = kind.lower()
    if kind in ("texthash", "hash", "lmdb", "btree"):
        path = Path(name) if Path(name).is_absolute() else base / name
        return HashTable(spec, read_table(path))
    if kind == "cidr":
        path = Path(name) if Path(name).is_absolute() else base / name
        return _parse_cidr(path, spec)
    if kind == "static":
        return StaticTable(spec, name.strip("{} "))
    if kind == "inline":
        match = _INLINE.match(name.strip())
        if not match:
            raise ConfigError(f"inline table {spec!r}: expected inline:{{ key=value, ... }}")
        entries = []
        for item in _inline_items(match.group(1), spec):
            key, eq, value = item.partition("=")
            if not eq:
                raise ConfigError(f"inline table {spec!r}: {item!r} is not key=value (a value "
                                  "with spaces or commas goes in braces: { key = some text })")
            entries.append(Entry(key.strip(), value.strip(), spec, 0))
        return HashTable(spec, entries)
    raise ConfigError(f"unsupported table type {kind!r} in {spec!r}")


def _inline_items(text: str, spec: str) -> list[str]:
    """The entries of inline:{ ... }: separated by commas; an entry in
    braces ({ key = text with spaces, or commas }) taken whole without its
    braces, as Postfix's dict_inline takes it. Unlike Postfix, blanks do not
    separate entries: a value may hold spaces without braces."""
    items: list[str] = []
    current = ""
    depth = 0
    braced = False  # the entry started with "{": its braces are not part of it
    for char in text:
        if char == "{":
            depth += 1
            if depth == 1 and not current.strip():
                current, braced = "", True
                continue
        elif char == "}" and depth:
            depth -= 1
            if depth == 0 and braced:
                items.append(current.strip())
                current, braced = "", False
                continue
        if char == "," and depth == 0:
            if current.strip():
                items.append(current.strip())
            current = ""
            continue
        current += char
    if depth:
        raise ConfigError(f"inline table {spec!r}: unbalanced {{")
    if current.strip():
        items.append(current.strip())
    return items


def split_specs(text: str) -> list[str]:
    """Split a list of table specs, keeping inline:{ ... } whole."""
    specs: list[str] = []
    depth = 0
    current = ""
    for char in text:
        if char == "{":
            depth += 1
        elif char == "}":
            depth -= 1
        if depth == 0 and (char == "," or char.isspace()):
            if current:
                specs.append(current)
            current = ""
            continue
        current += char
    if current:
        specs.append(current)
    return specs


class TableList:
    """Several tables searched in order, as a Postfix ``*_maps`` parameter is."""

    def __init__(self, tables: list[Table]) -> None:
        self.tables = tables

    def __bool__(self) -> bool:
        return bool(self.tables)

    def lookup(self, key: str) -> str | None:
        for table in self.tables:
            value = table.lookup(key)
            if value is not None:
                return value
        return None


def open_tables(text: str, base: Path) -> TableList:
    return TableList([open_table(spec, base) for spec in split_specs(text)])
