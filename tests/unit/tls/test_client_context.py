"""Client SSL contexts on real loopback handshakes: no abort on bad certificates, the
chain read back, the client certificate presented when asked, protocols and SNI."""

from __future__ import annotations

import asyncio
import ssl
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.serialization import Encoding

from mta.config import from_text
from mta.errors import ConfigError
from mta.tls.chain import TrustStore
from mta.tls.client_context import ClientContexts, peer_chain, trust_store
from mta.tls.decision import trust_label
from mta.tls.evaluation import evaluate
from mta.tls.levels import TlsLevel
from mta.tls.policy_table import PolicyTable
from tests.fakes.certs import Issued, TestCA, self_signed


class TlsServer:
    """An implicit-TLS listener on 127.0.0.1 that records what each client showed."""

    def __init__(self, issued: Issued, tmp: Path, *, client_ca: TestCA | None = None,
                 maximum: ssl.TLSVersion | None = None) -> None:
        self.context = issued.write(tmp, "server").server_context()
        if maximum:
            self.context.maximum_version = maximum
        if client_ca is not None:
            self.context.verify_mode = ssl.CERT_REQUIRED
            self.context.load_verify_locations(cadata=client_ca.pem().decode())
        self.sni: list[str | None] = []
        self.client_certs: list[bytes | None] = []
        self.context.sni_callback = lambda sock, name, ctx: self.sni.append(name)

    async def __aenter__(self) -> TlsServer:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0, ssl=self.context)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.server.close()
        await self.server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        ssl_object = writer.get_extra_info("ssl_object")
        self.client_certs.append(ssl_object.getpeercert(binary_form=True))
        writer.write(b"hello\n")
        await writer.drain()
        writer.close()


async def handshake(port: int, context: ssl.SSLContext, server_hostname: str | None = None,
                    expect: bytes = b"hello\n") -> ssl.SSLObject:
    """Plain TCP first, then start_tls, as the SMTP client does after 220."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        await writer.start_tls(context, server_hostname=server_hostname)
        assert await reader.readline() == expect
        return writer.get_extra_info("ssl_object")
    finally:
        writer.close()


def policies(tmp: Path, table: str = "", main_cf: str = "") -> tuple[PolicyTable, ClientContexts]:
    (tmp / "tls_policy").write_text(table)
    config = from_text(f"smtp_tls_policy_maps = texthash:tls_policy\n{main_cf}",
                       str(tmp / "main.cf"))
    table_ = PolicyTable.from_config(config)
    return table_, ClientContexts.from_config(config, [table_.default])


async def test_untrusted_certificate_does_not_abort_the_handshake(tmp_path: Path) -> None:
    peer = self_signed("mx.example.com")
    table, contexts = policies(tmp_path, "example.com secure\n")
    async with TlsServer(peer, tmp_path) as server:
        # Even at secure the handshake completes; the decision comes after it.
        ssl_object = await handshake(server.port, contexts.for_policy(table.lookup("example.com")))
        chain = peer_chain(ssl_object)
    assert [c.subject for c in chain] == [peer.cert.subject]
    evaluation = evaluate(chain, TrustStore(certificates=[TestCA().cert]))
    assert trust_label(TlsLevel.MAY, evaluation) == "Untrusted"


async def test_the_chain_as_sent(tmp_path: Path) -> None:
    root = TestCA()
    issued = root.intermediate().issue("mx.example.com")
    _, contexts = policies(tmp_path)
    async with TlsServer(issued, tmp_path) as server:
        chain = peer_chain(await handshake(server.port,
                                           contexts.for_policy(PolicyTable.from_config(
                                               from_text("")).default)))
    assert chain == issued.chain_with_leaf
    assert TrustStore(certificates=[root.cert]).verify(chain).trusted


async def test_client_certificate_presented_when_asked(tmp_path: Path) -> None:
    server_ca, client_ca = TestCA("Server CA"), TestCA("Client CA")
    mine = client_ca.client("client.example.net").write(tmp_path, "me")
    table, contexts = policies(tmp_path, "", f"smtp_tls_cert_file = {mine.cert_file}\n"
                                             f"smtp_tls_key_file = {mine.key_file}\n")
    async with TlsServer(server_ca.issue("mx.example.com"), tmp_path,
                         client_ca=client_ca) as server:
        await handshake(server.port, contexts.for_policy(table.default))
    assert server.client_certs == [mine.cert.public_bytes(Encoding.DER)]


async def test_no_client_certificate_when_none_configured(tmp_path: Path) -> None:
    server_ca, client_ca = TestCA("Server CA"), TestCA("Client CA")
    table, contexts = policies(tmp_path)
    async with TlsServer(server_ca.issue("mx.example.com"), tmp_path,
                         client_ca=client_ca) as server:
        try:
            # TLS 1.3: the server refuses after the client's Finished; we see EOF.
            await handshake(server.port, contexts.for_policy(table.default), expect=b"")
        except (ssl.SSLError, ConnectionError):
            pass
    assert server.client_certs == []


async def test_policy_protocols_are_enforced(tmp_path: Path) -> None:
    table, contexts = policies(tmp_path, "new.test encrypt protocols=TLSv1.3\n")
    async with TlsServer(TestCA().issue("mx.new.test"), tmp_path,
                         maximum=ssl.TLSVersion.TLSv1_2) as server:
        ssl_object = await handshake(server.port, contexts.for_policy(table.default))
        assert ssl_object.version() == "TLSv1.2"
        with pytest.raises((ssl.SSLError, ConnectionError)):
            await handshake(server.port, contexts.for_policy(table.lookup("new.test")))


async def test_sni_only_when_configured(tmp_path: Path) -> None:
    table, contexts = policies(tmp_path, "sni.test may servername=hostname\n")
    async with TlsServer(TestCA().issue("mx.sni.test"), tmp_path) as server:
        default = table.default
        await handshake(server.port, contexts.for_policy(default),
                        default.server_name("mx.sni.test", "sni.test"))
        sni = table.lookup("sni.test")
        await handshake(server.port, contexts.for_policy(sni),
                        sni.server_name("mx.sni.test", "sni.test"))
    assert server.sni == [None, "mx.sni.test"]


def test_contexts_are_shared_per_settings(tmp_path: Path) -> None:
    table, contexts = policies(tmp_path, "a.test encrypt\nb.test musttls\nc.test may\n")
    assert contexts.for_policy(table.lookup("a.test")) is \
        contexts.for_policy(table.lookup("b.test"))
    assert contexts.for_policy(table.lookup("c.test")) is contexts.for_policy(table.default)
    assert contexts.for_policy(table.lookup("a.test")) is not contexts.for_policy(table.default)


def test_bad_client_certificate_stops_the_start(tmp_path: Path) -> None:
    (tmp_path / "tls_policy").write_text("")
    config = from_text("smtp_tls_cert_file = missing.pem\n", str(tmp_path / "main.cf"))
    with pytest.raises(ConfigError, match=r"smtp_tls_cert_file.*missing\.pem"):
        ClientContexts.from_config(config, [PolicyTable.from_config(config).default])


def test_trust_store_from_config(tmp_path: Path) -> None:
    ca = TestCA()
    ca.write(tmp_path / "ca.pem")
    config = from_text("smtp_tls_CAfile = ca.pem\n", str(tmp_path / "main.cf"))
    store = trust_store(config)
    assert store.verify(ca.issue("mx.example.com").chain_with_leaf).trusted


async def test_encrypted_client_key_with_the_password_file(tmp_path: Path) -> None:
    server_ca, client_ca = TestCA("Server CA"), TestCA("Client CA")
    mine = client_ca.client("client.example.net").write(tmp_path, "me", password=b"sesame")
    password = tmp_path / "password"
    password.write_text("sesame\n")
    password.chmod(0o600)
    table, contexts = policies(tmp_path, "", f"smtp_tls_cert_file = {mine.cert_file}\n"
                                             f"smtp_tls_key_file = {mine.key_file}\n"
                                             f"tls_key_password_file = {password}\n")
    async with TlsServer(server_ca.issue("mx.example.com"), tmp_path,
                         client_ca=client_ca) as server:
        await handshake(server.port, contexts.for_policy(table.default))
    assert server.client_certs == [mine.cert.public_bytes(Encoding.DER)]
