"""Mail address helpers: split, qualify, compare domains, strip extensions."""

from __future__ import annotations


def split(address: str) -> tuple[str, str]:
    """(local part, domain) of an address; the domain is lowercased, may be ''."""
    local, at, domain = address.rpartition("@")
    if not at:
        return address, ""
    return local, domain.lower().rstrip(".")


def domain_of(address: str) -> str:
    return split(address)[1]


def qualify(address: str, origin: str) -> str:
    """Append @origin to a bare local part, as Postfix's trivial-rewrite does."""
    if not address or "@" in address:
        return address
    return f"{address}@{origin}"


def domain_in(domain: str, domains: tuple[str, ...] | list[str], *,
              subdomains: bool = False) -> bool:
    """Whether domain is listed; with subdomains, a listed parent domain matches
    too (Postfix's parent_domain_matches_subdomains for relay_domains)."""
    domain = domain.lower().rstrip(".")
    for listed in domains:
        listed = listed.lower().rstrip(".")
        if listed.startswith("."):
            if domain.endswith(listed):
                return True
            continue
        if domain == listed or (subdomains and domain.endswith("." + listed)):
            return True
    return False


def strip_extension(local: str, delimiters: str) -> str:
    """alice+tag -> alice for each delimiter character in recipient_delimiter."""
    if not delimiters:
        return local
    positions = [local.find(d) for d in delimiters if d in local]
    positions = [p for p in positions if p > 0]
    return local[:min(positions)] if positions else local
