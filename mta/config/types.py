"""Value types of main.cf parameters, with Postfix's units and spellings."""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from mta.errors import BadValue  # defined there; imported from here too

_TIME = re.compile(r"(\d+(?:\.\d+)?)([smhdw]?)\Z")
_TIME_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_bool(text: str) -> bool:
    lowered = text.strip().lower()
    if lowered in ("yes", "true", "on", "1"):
        return True
    if lowered in ("no", "false", "off", "0"):
        return False
    raise BadValue("expected yes or no")


def parse_time(text: str, unit: str = "s") -> float:
    """A time value: a number with an optional s/m/h/d/w unit (postconf(5) "time")."""
    match = _TIME.match(text.strip())
    if not match:
        raise BadValue("expected a time such as 300s, 5m, 1h or 5d")
    number, suffix = match.groups()
    return float(number) * _TIME_UNITS[suffix or unit]


def parse_int(text: str) -> int:
    try:
        return int(text.strip())
    except ValueError:
        raise BadValue("expected a whole number") from None


def parse_list(text: str) -> tuple[str, ...]:
    """A list separated by commas and/or whitespace, as Postfix lists are."""
    return tuple(part for part in re.split(r"[\s,]+", text.strip()) if part)


@dataclass(frozen=True, slots=True)
class HostPort:
    host: str
    port: int

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"


def parse_hostport(text: str, default_port: int | None = None) -> HostPort:
    """``host:port``, ``[v6addr]:port`` or ``:port`` (all addresses)."""
    text = text.strip()
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        port_text = rest[1:] if rest.startswith(":") else ""
    else:
        host, _, port_text = text.rpartition(":")
        if not _:
            host, port_text = text, ""
    if not port_text:
        if default_port is None:
            raise BadValue("expected host:port")
        return HostPort(host, default_port)
    try:
        port = int(port_text)
    except ValueError:
        raise BadValue(f"bad port {port_text!r}") from None
    if not 0 <= port <= 65535:
        raise BadValue(f"port {port} out of range")
    return HostPort(host, port)


def host_bits_problem(pattern: str,
                      network: ipaddress.IPv4Network | ipaddress.IPv6Network) -> str:
    """Postfix's words (cidr_match.c) for a pattern whose address has host bits set."""
    return (f"non-null host address bits in \"{pattern}\", "
            f"perhaps you should use \"{network.with_prefixlen}\" instead")


def parse_networks(text: str) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    """A mynetworks-style list: addresses and CIDR blocks, IPv6 optionally in [ ]."""
    networks = []
    for pattern in parse_list(text):
        item = pattern.replace("[", "").replace("]", "")
        try:
            network = ipaddress.ip_network(item, strict=False)
        except ValueError:
            raise BadValue(f"bad network address {item!r}") from None
        if network.network_address != ipaddress.ip_address(item.partition("/")[0]):
            # "203.0.113.5/8" is a typo for one host or for 203.0.113.0/24; read
            # as 203.0.0.0/8 it would let a whole /8 relay. Postfix refuses it.
            raise BadValue(host_bits_problem(pattern, network))
        networks.append(network)
    return tuple(networks)


def address_of_family(version: int, other: str) -> Callable[[str], str]:
    """An optional numerical address of one IP version (smtp_bind_address: 4,
    smtp_bind_address6: 6); other names the parameter for the other version,
    for the error message. Postfix finds a wrong family only when it connects
    (msg_fatal in smtp_connect.c); we refuse it at load, before any mail waits."""

    def parse(text: str) -> str:
        value = text.strip()
        if not value:
            return ""
        try:
            address = ipaddress.ip_address(value)
        except ValueError:
            raise BadValue(f"expected a numerical IPv{version} address") from None
        if address.version != version:
            raise BadValue(f"expected an IPv{version} address, not IPv{address.version}; "
                           f"use {other} for IPv{address.version}")
        return value

    return parse


def choice(*allowed: str) -> Callable[[str], str]:
    def parse(text: str) -> str:
        value = text.strip().lower()
        if value not in allowed:
            raise BadValue("expected one of " + ", ".join(allowed))
        return value

    return parse


Parser = Callable[[str], Any]
