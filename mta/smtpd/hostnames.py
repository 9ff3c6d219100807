"""HELO name syntax as Postfix judges it (util/valid_hostname.c, global/valid_mailhost_addr.c).

These decide reject_invalid_helo_hostname and reject_non_fqdn_helo_hostname,
and the domain of reject_non_fqdn_sender and reject_non_fqdn_recipient, so
they follow Postfix's rules rather than RFC 5321's grammar: an underscore
is allowed in a label ("grr.." says the source: too many hosts have one), an
all-numeric name is not a hostname, and a bare dotted quad or IPv6 address
passes as an address.
"""

from __future__ import annotations

_HOSTNAME_LENGTH = 255  # RFC 1035
_LABEL_LENGTH = 63
_HEX = frozenset("0123456789abcdefABCDEF")
_IPV6_TAG = "ipv6:"


def _ascii_alnum(char: str) -> bool:
    return char.isascii() and char.isalnum()


def valid_hostname(name: str) -> bool:
    """Postfix's valid_hostname(): labels of ASCII letters, digits, '_' and
    inner '-', 63 octets at most, 255 in all, and not all digits and dots."""
    if not name or len(name) > _HOSTNAME_LENGTH:
        return False
    label = 0
    numeric = True
    for index, char in enumerate(name):
        following = name[index + 1:index + 2]
        if _ascii_alnum(char) or char == "_":
            label += 1
            if label > _LABEL_LENGTH:
                return False
            numeric = numeric and char.isdigit()
        elif char == ".":
            if label == 0 or not following:
                return False
            label = 0
        elif char == "-":
            label += 1
            numeric = False
            if label == 1 or following in ("", "."):
                return False
        else:
            return False
    return not numeric


def valid_ipv4(text: str) -> bool:
    """A dotted quad: four decimal octets up to 255 (0.0.0.0 passes, 0.1.2.3
    does not), as valid_ipv4_hostaddr()."""
    parts = text.split(".")
    if len(parts) != 4 or not all(part.isascii() and part.isdigit() for part in parts):
        return False
    if any(int(part) > 255 for part in parts):
        return False
    return not (int(parts[0]) == 0 and text.lstrip("0.") != "")


def valid_ipv6(text: str) -> bool:
    """valid_ipv6_hostaddr()'s scan, kept as lax as it is: hex fields of at
    most four digits, two to seven colons, one "::" at most, and an IPv4
    tail after the second to sixth colon."""
    colons = 0
    null_field = 0  # the colon count at the "::", if any
    run = 0  # the length of the hex field being read
    index = 0
    while index < len(text):
        char = text[index]
        if char == ".":
            return 2 <= colons <= 6 and valid_ipv4(text[index - run:])
        if char == ":":
            if colons == 0 and run == 0 and _ascii_alnum(text[index + 1:index + 2]):
                return False  # ":1:..." : a null first field without "::"
            colons += 1
            if colons > 7:
                return False
            index += 1
            run = 0
            if text[index:index + 1] == ":":
                if null_field:
                    return False
                null_field = colons
            continue
        end = index
        while end < len(text) and text[end] in _HEX:
            end += 1
        run = end - index
        if not 0 < run <= 4:
            return False
        index = end
    # "1:2:" ends in a null field, allowed only as the "::" in "1:2::".
    return colons >= 2 and (run > 0 or null_field == colons - 1)


def valid_hostaddr(text: str) -> bool:
    """An IPv4 or IPv6 address without brackets (valid_hostaddr())."""
    return valid_ipv6(text) if ":" in text else valid_ipv4(text)


def valid_address_literal(name: str) -> bool:
    """A HELO address literal, "[192.0.2.1]" or "[IPv6:2001:db8::1]" (RFC 5321
    §4.1.3), as reject_invalid_hostaddr() checks it: the brackets taken off,
    then valid_mailhost_addr(), where an IPv6 address needs its tag."""
    if len(name) > 2 and name.startswith("[") and name.endswith("]"):
        name = name[1:-1]
    if name[:len(_IPV6_TAG)].lower() == _IPV6_TAG:
        return valid_ipv6(name[len(_IPV6_TAG):])
    return valid_ipv4(name)


def without_root_dot(name: str) -> str:
    """The name without one trailing dot ("mail.example." is fully qualified;
    "a.." stays invalid), as smtpd_check.c's dup_if_truncate()."""
    if len(name) > 1 and name.endswith(".") and name[-2] != ".":
        return name[:-1]
    return name


def non_fqdn_address(address: str) -> bool:
    """Whether reject_non_fqdn_sender/recipient refuse the address: its domain
    (after the last "@"; none is "") is not a hostname with a dot once one
    trailing dot is taken off. An address literal ("user@[192.0.2.1]") is not
    judged, as Postfix's reject_non_fqdn_address skips it. The address is
    judged in Postfix's internal form, its quotes and backslashes taken
    off: <"a@b.example"> has the domain b.example there."""
    address = unquoted(address)
    domain = address.rpartition("@")[2] if "@" in address else ""
    if domain.startswith("[") and domain.endswith("]"):
        return False
    domain = without_root_dot(domain)
    return not valid_hostname(domain) or "." not in domain


def unquoted(address: str) -> str:
    """The address without RFC 5321 quoting: quotes dropped, a backslash's
    character kept (Postfix's internal form, what its restrictions see)."""
    if '"' not in address and "\\" not in address:
        return address
    out = []
    escaped = False
    for char in address:
        if escaped:
            out.append(char)
            escaped = False
        elif char == "\\":
            escaped = True
        elif char != '"':
            out.append(char)
    return "".join(out)
