"""Whether a server is this MTA's own listener, so that mail sent there would loop.

Postfix's smtp client (smtp_addr.c, smtp_find_self) looks for its own
addresses among a next hop's server addresses before it connects: the
addresses in inet_interfaces and proxy_interfaces, and only when the next
hop's port is 25 (SMTP_MISC_FLAG_LOOP_DETECT), since its smtpd's port is in
master.cf, not main.cf, and another port is usually a content filter. Postern
knows its listeners' ports (``smtp/inet = host:port``), so a server is
"myself" when both its address and its port are a listener's: another mail
server on this machine at another port is no loop, and a relayhost that
points back at our own listener on port 2525 is one.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable, Iterable

from mta.config import Config

# Listener hosts that mean every address of the machine (of one family, or
# of both for an empty host, which asyncio binds on IPv4 and IPv6).
_ANY: dict[str, int | None] = {"": None, "0.0.0.0": 4, "::": 6}


def this_machines(address: str) -> bool:
    """True when address belongs to this machine: all of 127/8 and ::1 (the
    loopback interface's), or an address the kernel routes to itself, which
    it then also picks as the source of a datagram socket connected to it
    (no packet is sent). Not a test bind(): with net.ipv4.ip_nonlocal_bind
    = 1, usual on hosts that carry floating service addresses, any address
    binds, and every server on the Internet would look like us. Postfix reads
    the interface list (inet_addr_local); the kernel's own answer is the
    same fact without parsing it."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    if ip.is_loopback:
        return True
    family = socket.AF_INET6 if ip.version == 6 else socket.AF_INET
    try:
        with socket.socket(family, socket.SOCK_DGRAM) as sock:
            sock.connect((address, 9))
            source = str(sock.getsockname()[0]).partition("%")[0]
    except OSError:
        return False  # no route: certainly not ours
    return ipaddress.ip_address(source) == ip


def _numeric(host: str) -> list[str]:
    """The addresses a listener host names: itself when numerical, else what the
    system resolver says (a name such as localhost)."""
    try:
        return [str(ipaddress.ip_address(host))]
    except ValueError:
        pass
    try:
        infos = socket.getaddrinfo(host, None, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError):
        return []  # the listener could not have been bound either
    return [str(ipaddress.ip_address(str(info[4][0]).partition("%")[0])) for info in infos]


class Myself:
    """The endpoints this MTA listens on: exact (address, port) pairs, and ports
    on which every local address (of one IP version, or of both) is ours."""

    def __init__(self, endpoints: Iterable[tuple[str, int]], *,
                 is_local: Callable[[str], bool] = this_machines) -> None:
        self._exact: set[tuple[str, int]] = set()
        self._any: dict[int, set[int | None]] = {}  # port -> IP versions (None: both)
        self._is_local = is_local
        for host, port in endpoints:
            if port == 0:
                continue  # an ephemeral port: nobody can name it in a next hop
            if host in _ANY:
                self._any.setdefault(port, set()).add(_ANY[host])
            else:
                self._exact.update((address, port) for address in _numeric(host))

    @classmethod
    def from_config(cls, config: Config, *,
                    is_local: Callable[[str], bool] = this_machines) -> Myself:
        """The smtpd listeners of config (the names resolved once, here)."""
        return cls(((listener.address.host, listener.address.port)
                    for listener in config.listeners), is_local=is_local)

    def listens_at(self, address: str, port: int) -> bool:
        """Is address:port (a server's numerical address) one of our listeners?"""
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            return False
        if (str(ip), port) in self._exact:
            return True
        versions = self._any.get(port)
        if not versions or not (None in versions or ip.version in versions):
            return False
        # Asked afresh each time (a socket and a connect, some microseconds next
        # to the connection that follows), so an address the machine gains or
        # loses while we run is judged right; Postfix reads its list once.
        return self._is_local(str(ip))
