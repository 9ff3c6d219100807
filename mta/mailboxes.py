"""The local recipient table: which local addresses exist and where their Maildirs are.

``local_recipient_maps`` maps a recipient to its Maildir, relative to
``mail_spool_directory``. Lookups try, in Postfix's order, the full address,
the address without its extension (``alice+tag@localhost``), then the bare
local part with and without extension. An empty value means the Maildir is
named after the local part.
"""

from __future__ import annotations

from pathlib import Path

from mta import address as addr
from mta.config import Config
from mta.maps import TableList, open_tables


class Mailboxes:
    def __init__(self, table: TableList, domains: tuple[str, ...], spool_directory: Path,
                 delimiter: str) -> None:
        self.table = table
        self.domains = tuple(d.lower() for d in domains)
        self.spool_directory = spool_directory
        self.delimiter = delimiter

    @classmethod
    def from_config(cls, config: Config) -> Mailboxes:
        maps = config.local_recipient_maps
        table = open_tables(maps, Path(config.directory)) if maps else TableList([])
        return cls(table, config.mydestination, config.path_of(config.mail_spool_directory),
                   config.recipient_delimiter)

    def is_local_domain(self, domain: str) -> bool:
        return addr.domain_in(domain, self.domains)

    def _keys(self, address: str) -> list[str]:
        local, domain = addr.split(address)
        base = addr.strip_extension(local, self.delimiter)
        keys = [f"{local}@{domain}", f"{base}@{domain}", local, base]
        return list(dict.fromkeys(key.lower() for key in keys))

    def lookup(self, address: str) -> str | None:
        """The map value for a local address, or None if there is no such user."""
        for key in self._keys(address):
            value = self.table.lookup(key)
            if value is not None:
                return value
        return None

    def exists(self, address: str) -> bool:
        return self.lookup(address) is not None

    def maildir(self, address: str) -> Path | None:
        value = self.lookup(address)
        if value is None:
            return None
        local = addr.strip_extension(addr.split(address)[0], self.delimiter).lower()
        name = value.strip() or local
        path = Path(name)
        return path if path.is_absolute() else self.spool_directory / path
