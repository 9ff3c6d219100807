"""A TLS session over memory buffers (pyOpenSSL), driven by the protocol that owns the socket.

asyncio's own TLS layer takes only a Python ``ssl.SSLContext``, which aborts
the handshake on a client certificate it cannot verify and cannot tell the
key-exchange group (docs/architecture.md, "Inbound TLS"). Here the protocol
hands every received byte to ``TlsEngine.receive`` and writes out whatever
the engine produces; after the handshake, ``TlsTransport`` makes the session
look like an ordinary asyncio transport to the code above it.
"""

from __future__ import annotations

import asyncio
from typing import Any

from OpenSSL import SSL

_READ_SIZE = 256 * 1024


class TlsError(Exception):
    """The TLS layer failed: a handshake or record error, with OpenSSL's reason."""


def describe(error: SSL.Error) -> str:
    """OpenSSL's reason text (``wrong version number``), not its tuple dump."""
    details = error.args[0] if error.args else None
    if isinstance(details, list) and details:
        reasons = [str(item[-1]) for item in details if isinstance(item, tuple) and item]
        if reasons:
            return ", ".join(reasons)
    if isinstance(error, SSL.SysCallError):
        return "lost connection"
    return str(error) or type(error).__name__


class TlsEngine:
    """One server- or client-side TLS connection whose bytes we carry ourselves."""

    def __init__(self, connection: SSL.Connection, *, server_side: bool = True) -> None:
        self.connection = connection
        if server_side:
            connection.set_accept_state()
        else:
            connection.set_connect_state()
        self.handshake_done = False
        self.peer_closed = False  # close_notify received

    def start(self) -> bytes:
        """Begin the handshake; the bytes to send first (a client's ClientHello)."""
        self._step_handshake()
        return self.outgoing()

    def receive(self, data: bytes) -> bytes:
        """Feed bytes from the network; return the application data they carried.

        Raises TlsError on a failed handshake or a corrupt record.
        """
        if data:  # pyOpenSSL's bio_write raises WantReadError on b""
            self.connection.bio_write(data)
        if not self.handshake_done and not self._step_handshake():
            return b""
        chunks = []
        while True:
            try:
                chunk = self.connection.recv(_READ_SIZE)
            except SSL.WantReadError:
                break
            except SSL.ZeroReturnError:
                self.peer_closed = True
                break
            except SSL.Error as error:
                raise TlsError(describe(error)) from None
            if not chunk:
                break
            chunks.append(chunk)
        return b"".join(chunks)

    def _step_handshake(self) -> bool:
        try:
            self.connection.do_handshake()
        except SSL.WantReadError:
            return False
        except SSL.Error as error:
            raise TlsError(describe(error)) from None
        self.handshake_done = True
        return True

    def send(self, data: bytes | bytearray | memoryview) -> bytes:
        """Encrypt application data; return the records to write."""
        view = memoryview(data)
        while view:
            try:
                written = self.connection.send(view)
            except SSL.Error as error:
                raise TlsError(describe(error)) from None
            view = view[written:]
        return self.outgoing()

    def outgoing(self) -> bytes:
        """Records the engine has produced and not yet handed out."""
        chunks = []
        while True:
            try:
                chunk = self.connection.bio_read(_READ_SIZE)
            except SSL.WantReadError:
                break
            chunks.append(chunk)
            if len(chunk) < _READ_SIZE:
                # A memory BIO hands out all it holds up to the size asked:
                # a short read emptied it, so no second call (which would
                # end in WantReadError, an exception per write).
                break
        return b"".join(chunks)

    def close(self) -> bytes:
        """Our close_notify (RFC 8446 §6.1), when the session is still sound."""
        try:
            self.connection.shutdown()
        except SSL.Error:
            pass
        return self.outgoing()


class TlsTransport(asyncio.Transport):
    """The plaintext side of a TLS session, over the raw socket transport.

    Reading stays with the raw transport (the owning protocol decrypts in
    data_received), so flow control of both directions is the raw transport's.
    """

    def __init__(self, raw: asyncio.Transport, engine: TlsEngine) -> None:
        super().__init__()
        self.raw = raw
        self.engine = engine
        self._closed = False

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if self._closed or self.raw.is_closing():
            return
        try:
            records = self.engine.send(data)
        except TlsError:
            self.raw.abort()
            return
        if records:
            self.raw.write(records)

    def writelines(self, list_of_data: Any) -> None:
        self.write(b"".join(list_of_data))

    def can_write_eof(self) -> bool:
        return False

    def close(self, final: bytes = b"") -> None:
        """Send close_notify and close; final, the last plaintext to send,
        goes in the same write (one TCP segment instead of two for a 221)."""
        if self._closed:
            return
        self._closed = True
        if not self.raw.is_closing():
            try:
                records = (self.engine.send(final) if final else b"") + self.engine.close()
            except TlsError:
                self.raw.abort()
                return
            if records:
                self.raw.write(records)
        self.raw.close()

    def abort(self) -> None:
        self._closed = True
        self.raw.abort()

    def is_closing(self) -> bool:
        return self._closed or self.raw.is_closing()

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        if name in ("ssl_object", "tls_connection"):
            return self.engine.connection
        return self.raw.get_extra_info(name, default)

    def pause_reading(self) -> None:
        self.raw.pause_reading()

    def resume_reading(self) -> None:
        self.raw.resume_reading()

    def is_reading(self) -> bool:
        return self.raw.is_reading()

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        self.raw.set_write_buffer_limits(high, low)

    def get_write_buffer_size(self) -> int:
        return self.raw.get_write_buffer_size()

    def set_protocol(self, protocol: asyncio.BaseProtocol) -> None:
        self.raw.set_protocol(protocol)

    def get_protocol(self) -> asyncio.BaseProtocol:
        return self.raw.get_protocol()
