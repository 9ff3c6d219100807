"""A Dovecot auth server for Postfix's smtpd (smtpd_sasl_type = dovecot), in the test's loop.

Enough of Dovecot's authentication protocol 1.x (the one Postfix's
xsasl_dovecot_server.c speaks) to let a private Postfix check AUTH PLAIN
and AUTH LOGIN against a table of users, so that its AUTH replies and log
lines can be compared with Postern's. The server greets with VERSION, MECH,
SPID, CUID, COOKIE and DONE; each ``AUTH <id> <mech> ... [resp=<b64>]`` is
answered with ``CONT <id> <b64 challenge>``, ``OK <id> user=<name>`` or
``FAIL <id> user=<name> reason=<text>``, a CONT from the client continuing
the exchange. A failure's reason is the one given (Postern says
"authentication failure", Cyrus SASL's words; a real Dovecot often gives
none), so that the comparison is of everything around it.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import os
from pathlib import Path

USERNAME = base64.b64encode(b"Username:").decode()
PASSWORD = base64.b64encode(b"Password:").decode()


class DovecotAuth:
    def __init__(self, path: Path, users: dict[str, str],
                 reason: str = "authentication failure") -> None:
        self.path = path
        self.users = users
        self.reason = reason
        self.requests: list[str] = []  # the AUTH lines received, for the test to look at
        self._server: asyncio.AbstractServer | None = None
        self._sessions: set[asyncio.Task[None]] = set()

    async def __aenter__(self) -> DovecotAuth:
        self._server = await asyncio.start_unix_server(self._session, path=str(self.path))
        os.chmod(self.path, 0o666)  # Postfix's smtpd runs as the postfix user
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        for task in self._sessions:  # Postfix keeps its connection open
            task.cancel()
        await asyncio.gather(*self._sessions, return_exceptions=True)
        await self._server.wait_closed()

    async def _session(self, reader: asyncio.StreamReader,
                       writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._sessions.add(task)
        writer.write(b"VERSION\t1\t2\nMECH\tPLAIN\tplaintext\nMECH\tLOGIN\tplaintext\n"
                     b"SPID\t1\nCUID\t1\nCOOKIE\t0123456789abcdef\nDONE\n")
        # Per request id: the mechanism and what the client said so far.
        pending: dict[str, tuple[str, list[bytes]]] = {}
        try:
            while line := await reader.readline():
                fields = line.decode().rstrip("\n").split("\t")
                if fields[0] == "AUTH":
                    self.requests.append(line.decode().rstrip("\n"))
                    request, mechanism = fields[1], fields[2]
                    said: list[bytes] = []
                    pending[request] = (mechanism, said)
                    initial = [f[5:] for f in fields[3:] if f.startswith("resp=")]
                    if initial:
                        said.append(_decode(initial[0]))
                elif fields[0] == "CONT" and fields[1] in pending:
                    request = fields[1]
                    pending[request][1].append(_decode(fields[2] if len(fields) > 2 else ""))
                else:
                    continue  # VERSION, CPID
                writer.write(self._answer(request, *pending[request]).encode())
                await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    def _answer(self, request: str, mechanism: str, said: list[bytes]) -> str:
        if mechanism.upper() == "PLAIN":
            if not said:
                return f"CONT\t{request}\t\n"
            parts = said[0].split(b"\0")
            if len(parts) != 3:
                return f"FAIL\t{request}\treason={self.reason}\n"
            user, password = parts[1].decode(errors="replace"), parts[2].decode(errors="replace")
        elif mechanism.upper() == "LOGIN":
            if len(said) < 2:
                return f"CONT\t{request}\t{USERNAME if not said else PASSWORD}\n"
            user, password = (part.decode(errors="replace") for part in said[:2])
        else:
            return f"FAIL\t{request}\treason=Unsupported mechanism\n"
        if self.users.get(user) == password:
            return f"OK\t{request}\tuser={user}\n"
        return f"FAIL\t{request}\tuser={user}\treason={self.reason}\n"


def _decode(text: str) -> bytes:
    try:
        return base64.b64decode(text) if text not in ("", "=") else b""
    except (binascii.Error, ValueError):
        return b"\xff"  # fails every check
