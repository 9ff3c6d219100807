"""Server-side TLS contexts: certificates, protocols, ciphers, client certificates, SNI.

One ``ServerTls`` per smtpd listener, built from that listener's view of
main.cf and replaced as a whole on reload (sessions in progress keep the
context they started with, so a new certificate never drops a session).
Contexts are pyOpenSSL's: the verify callback records the client
certificate's verification result and always lets the handshake go on
(clientcert.VerifyRecord), which Python's ssl module cannot do.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

from cryptography import x509
from OpenSSL import SSL

from mta.config import Config
from mta.config.types import parse_list
from mta.errors import BadValue, ConfigError
from mta.maps import Entry, open_tables
from mta.tls import keys
from mta.tls.clientcert import VerifyRecord
from mta.tls.engine import describe
from mta.tls.pemfiles import loose_mode
from mta.tls.protocols import INBOUND, ProtocolRange, cipher_string

log = logging.getLogger(__name__)

_NO_VERSION = {0x0301: SSL.OP_NO_TLSv1, 0x0302: SSL.OP_NO_TLSv1_1,
               0x0303: SSL.OP_NO_TLSv1_2, 0x0304: SSL.OP_NO_TLSv1_3}
# No compression (CRIME), no renegotiation (a client-driven CPU sink), no
# session resumption: every session is a full handshake, so the client
# certificate is always evaluated afresh. The server's order of ciphers and
# signature algorithms wins (our lists are forward-secret only); this also
# makes the RSA-PSS digest a known SHA256 for the summary (summary.py).
_OPTIONS = (SSL.OP_NO_COMPRESSION | SSL.OP_NO_RENEGOTIATION | SSL.OP_NO_TICKET
            | SSL.OP_CIPHER_SERVER_PREFERENCE | SSL.OP_SINGLE_ECDH_USE
            | SSL.OP_SINGLE_DH_USE)
_SESSION_ID = b"postern-smtpd"


@dataclass
class SessionTls:
    """Per-connection facts the callbacks fill in during the handshake."""

    verify: VerifyRecord = field(default_factory=VerifyRecord)
    sni: str = ""  # the server name that selected a non-default certificate
    sni_unmatched: str = ""  # a server name we had no certificate for


@dataclass(frozen=True)
class Identity:
    """A private key and its certificate chain, leaf first."""

    key: object
    chain: tuple[x509.Certificate, ...]
    files: tuple[str, ...]


def check_key_file(path: Path) -> None:
    """Refuse a private key that others than its owner may read (or write)."""
    try:
        mode = loose_mode(path)
    except OSError as error:
        raise ConfigError(f"{path}: cannot read private key: {error.strerror}") from None
    if mode is not None:
        raise ConfigError(f"{path}: private key file is accessible by group or others "
                          f"(mode {mode:04o}); run: chmod 600 {path}")


def load_identity(files: list[Path], config: Config | None = None) -> Identity:
    """Read a key and chain from PEM files (one file may hold both, in any order).
    An encrypted key is opened with the passphrase of tls_key_password_file."""
    key = None
    chain: list[x509.Certificate] = []
    for path in files:
        try:
            data = path.read_bytes()
        except OSError as error:
            raise ConfigError(f"{path}: cannot read: {error.strerror}") from None
        if keys.key_block(data) is not None:
            check_key_file(path)
            if key is None:
                key = (keys.load_private_key(path, config) if config is not None
                       else keys.parse_private_key(data, str(path), None, "no passphrase"))
        if b"-----BEGIN CERTIFICATE-----" in data:
            try:
                chain.extend(x509.load_pem_x509_certificates(data))
            except ValueError as error:
                raise ConfigError(f"{path}: bad certificate: {error}") from None
    names = ", ".join(str(p) for p in files)
    if key is None:
        raise ConfigError(f"{names}: no private key found")
    if not chain:
        raise ConfigError(f"{names}: no certificate found")
    return Identity(key, tuple(chain), tuple(str(p) for p in files))


@dataclass(frozen=True)
class ContextSettings:
    """What every context of one listener shares (only the identity differs)."""

    protocols: ProtocolRange
    ciphers: str
    ask_ccert: bool
    cafile: str
    verify_depth: int


class ServerTls:
    """The TLS contexts of one listener and the facts sessions need about them."""

    def __init__(self, settings: ContextSettings, identity: Identity,
                 sni: dict[str, Identity] | None = None) -> None:
        self.settings = settings
        self.identity = identity
        self.ask_ccert = settings.ask_ccert
        self._default = self._context(identity)
        self._sni = {name: self._context(ident) for name, ident in (sni or {}).items()}
        if self._sni:
            self._default.set_tlsext_servername_callback(self._on_server_name)

    @classmethod
    def from_config(cls, config: Config, *, required: bool) -> ServerTls:
        """Build from a listener's configuration; required: TLS is mandatory there
        (encrypt, wrapper mode), which selects the mandatory protocols and ciphers."""
        if not config.smtpd_tls_cert_file:
            raise ConfigError(f"{config.where('smtpd_tls_cert_file')}: TLS is enabled but "
                              "smtpd_tls_cert_file is empty")
        cert = config.path_of(config.smtpd_tls_cert_file)
        key = config.path_of(config.smtpd_tls_key_file or config.smtpd_tls_cert_file)
        identity = load_identity(list(dict.fromkeys([key, cert])), config)
        prefix = "smtpd_tls_mandatory_" if required else "smtpd_tls_"
        exclusions = tuple(config.smtpd_tls_exclude_ciphers)
        if required:
            exclusions += tuple(config.smtpd_tls_mandatory_exclude_ciphers)
        try:
            settings = ContextSettings(
                protocols=config.get(prefix + "protocols"),
                ciphers=cipher_string(config.get(prefix + "ciphers"), exclusions, INBOUND),
                ask_ccert=bool(config.smtpd_tls_ask_ccert
                               or (required and config.smtpd_tls_req_ccert)),
                cafile=str(config.path_of(config.smtpd_tls_CAfile))
                if config.smtpd_tls_CAfile else "",
                verify_depth=config.smtpd_tls_ccert_verifydepth)
        except BadValue as error:
            raise ConfigError(f"TLS settings: {error}") from None
        return cls(settings, identity, _sni_identities(config))

    # -- contexts -----------------------------------------------------------------
    def _context(self, identity: Identity) -> SSL.Context:
        s = self.settings
        ctx = SSL.Context(SSL.TLS_SERVER_METHOD)
        try:
            ctx.set_min_proto_version(s.protocols.minimum)
            ctx.set_max_proto_version(s.protocols.maximum)
            options = _OPTIONS
            for hole in s.protocols.holes:
                options |= _NO_VERSION[hole]
            ctx.set_options(options)
            ctx.set_cipher_list(s.ciphers.encode())
            ctx.set_session_cache_mode(SSL.SESS_CACHE_OFF)
            ctx.set_session_id(_SESSION_ID)
            ctx.use_privatekey(identity.key)  # type: ignore[arg-type]
            ctx.use_certificate(identity.chain[0])
            for extra in identity.chain[1:]:
                ctx.add_extra_chain_cert(extra)
            ctx.check_privatekey()
            if s.ask_ccert:
                ctx.set_verify(SSL.VERIFY_PEER | SSL.VERIFY_CLIENT_ONCE, _verify)
                ctx.set_verify_depth(s.verify_depth)
                if s.cafile:
                    ctx.load_verify_locations(s.cafile)
                    ctx.load_client_ca(s.cafile.encode())
            else:
                ctx.set_verify(SSL.VERIFY_NONE)
        except SSL.Error as error:
            raise ConfigError(f"{', '.join(identity.files)}: cannot set up TLS: "
                              f"{describe(error)}") from None
        return ctx

    def connection(self) -> tuple[SSL.Connection, SessionTls]:
        """A new server-side connection (memory BIOs) and its callback state."""
        state = SessionTls()
        conn = SSL.Connection(self._default, None)
        conn.set_app_data(state)
        return conn, state

    def _on_server_name(self, conn: SSL.Connection) -> None:
        raw = conn.get_servername()
        if not raw:
            return
        name = raw.decode("ascii", "replace").lower().rstrip(".")
        state: SessionTls = conn.get_app_data()
        # Postfix's order: the name, then .parent domains (tls_misc.c).
        candidates = [name]
        rest = name
        while "." in rest:
            rest = rest.partition(".")[2]
            candidates.append("." + rest)
        for candidate in candidates:
            ctx = self._sni.get(candidate)
            if ctx is not None:
                conn.set_context(ctx)
                state.sni = name
                return
        state.sni_unmatched = name


def _verify(conn: SSL.Connection, cert: object, error: int, depth: int, ok: int) -> bool:
    try:
        state: SessionTls = conn.get_app_data()
        return state.verify.callback(conn, cert, error, depth, ok)
    except Exception:  # a callback exception would abort the handshake
        log.exception("client certificate verify callback failed")
        return True


def sni_map_entries(config: Config) -> list[tuple[Entry, tuple[str, ...]]]:
    """tls_server_sni_maps: each entry with the files it names, as written (a
    private key and its chain, Postfix's format); ConfigError for an entry
    that names none. Shared with the certificate inventory (``mta cert list``)."""
    spec = config.tls_server_sni_maps
    if not spec:
        return []
    found = []
    for table in open_tables(spec, Path(config.directory)).tables:
        for entry in table.entries():
            files = parse_list(entry.value)
            if not files:
                raise ConfigError(f"{entry.where}: {entry.key}: no files given")
            found.append((entry, files))
    return found


def _sni_identities(config: Config) -> dict[str, Identity]:
    identities: dict[str, Identity] = {}
    for entry, files in sni_map_entries(config):
        key = entry.key.lower().rstrip(".")
        if key not in identities:  # the first entry for a name wins, as lookups do
            identities[key] = load_identity([config.path_of(f) for f in files], config)
    return identities

