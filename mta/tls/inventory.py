"""The certificates a configuration uses: which parameter names which file,
in which role, with which key.

Roles are a small fixed set (they are metric labels): ``smtpd`` (the server
certificate), ``smtpd_sni`` (per-name server certificates from
tls_server_sni_maps), ``smtpd_client_ca`` (the CAs that client certificates
chain to, smtpd_tls_CAfile) and ``smtp_client`` (the certificate the SMTP
client presents). Parameters are looked up only when the parameter table has
them, so the inventory grows as the TLS parameters land; per-listener
overrides (``submission/inet/smtpd_tls_cert_file``) count too.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from mta.config import PARAMS, Config
from mta.tls.server import sni_map_entries

ROLES = ("smtpd", "smtpd_sni", "smtpd_client_ca", "smtp_client")

# (role, certificate parameter, key parameter, or None for a CA file, which
# has no key). Postfix's second and third server certificates
# (smtpd_tls_eccert_file, smtpd_tls_dcert_file) and its *_tls_chain_files are
# not Postern parameters: one certificate per listener, SNI for more.
_CERT_PARAMETERS: tuple[tuple[str, str, str | None], ...] = (
    ("smtpd", "smtpd_tls_cert_file", "smtpd_tls_key_file"),
    ("smtpd_client_ca", "smtpd_tls_CAfile", None),
    ("smtp_client", "smtp_tls_cert_file", "smtp_tls_key_file"),
)
SNI_PARAMETER = "tls_server_sni_maps"


@dataclass(frozen=True)
class CertFile:
    """One certificate file the configuration names."""

    role: str
    parameter: str        # as an operator finds it: name, service/inet/name, or map key
    shown: str            # the file name as the configuration writes it
    path: Path            # resolved against config_directory
    key: Path | None      # the private key for it, None for CA files

    @property
    def ours(self) -> bool:
        """A certificate we present (we hold its key), not one we trust."""
        return self.key is not None


def _value(config: Config, name: str) -> str | None:
    """The expanded value of name, or None when the parameter table lacks it
    (it belongs to work that has not landed) or it is empty."""
    if name not in PARAMS:
        return None
    # The expanded text, not config.get(): whoever owns the parameter may
    # parse it into a richer type; the file names are in the text either way.
    return config.expanded(name).strip() or None


def _label(listener: str | None, name: str) -> str:
    return f"{listener}/inet/{name}" if listener else name


def _from_view(config: Config, listener: str | None, overridden: set[str]) -> list[CertFile]:
    found: list[CertFile] = []
    for role, cert_name, key_name in _CERT_PARAMETERS:
        names = {cert_name, key_name} - {None}
        if listener is not None and not names & overridden:
            continue
        if role == "smtp_client" and listener is not None:
            continue  # the SMTP client is not a listener
        cert_value = _value(config, cert_name)
        if cert_value is None:
            continue
        key_value = (_value(config, key_name) or cert_value) if key_name else None
        found.append(CertFile(role, _label(listener, cert_name), cert_value,
                              config.path_of(cert_value),
                              config.path_of(key_value) if key_value else None))
    if listener is None or SNI_PARAMETER in overridden:
        found.extend(_sni_files(config, _label(listener, SNI_PARAMETER)))
    return found


def _sni_files(config: Config, label: str) -> list[CertFile]:
    """tls_server_sni_maps: name → list of files, each a key with its chain
    (Postfix's format, the same as smtpd_tls_chain_files)."""
    if _value(config, SNI_PARAMETER) is None:
        return []
    found = []
    for entry, files in sni_map_entries(config):
        for item in files:
            path = config.path_of(item)
            found.append(CertFile("smtpd_sni", f"{label} {entry.key}", item, path, path))
    return found


def configured_certificates(config: Config) -> list[CertFile]:
    """Every certificate file the configuration names, main.cf's first, then
    each listener's overrides; a file named twice in one role is listed once."""
    found = _from_view(config, None, set())
    for listener in config.listeners:
        if listener.overrides:
            found += _from_view(config.for_listener(listener), listener.name,
                                set(listener.overrides))
    unique: dict[tuple[str, Path, Path | None], CertFile] = {}
    for item in found:
        unique.setdefault((item.role, item.path, item.key), item)
    return list(unique.values())
