"""A throwaway Postfix instance on loopback, for interoperability tests.

Debian's Postfix runs from a private config and queue directory
(``postfix -c DIR start``), listens on a free 127.0.0.1 port, delivers
``alice@postfix.test`` (and any user listed) to Maildirs with virtual(8), and
writes its own maillog file. Needs root (Postfix's master does); the tests
run as root on CI.
"""

from __future__ import annotations

import os
import pwd
import re
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Protocol

from tests.helpers import (
    free_port,
    maildir_messages,
    require_program,
    wait_for,
    wait_lines,
    wait_maildir_messages,
)
from tests.interop.postfix_layout import private_instance


class PostfixFactory(Protocol):
    """The postfix_factory fixture (tests/interop/conftest.py): the keyword
    arguments of PostfixInstance."""

    def __call__(self, *, hostname: str = ..., users: tuple[str, ...] = ...,
                 main_cf: str = ..., smtpd_options: dict[str, str] | None = ...
                 ) -> PostfixInstance: ...


class PostfixInstance:
    def __init__(self, *, hostname: str = "postfix.test", users: tuple[str, ...] = ("alice",),
                 main_cf: str = "", smtpd_options: dict[str, str] | None = None) -> None:
        require_program("postfix")
        if os.geteuid() != 0:
            import pytest
            pytest.skip("a private Postfix instance needs root")
        # Not under pytest's tmp_path: virtual(8) runs as the postfix user and
        # must be able to reach the Maildirs.
        self.root = Path(tempfile.mkdtemp(prefix="postfix-"))
        self.hostname = hostname
        self.port = free_port()
        self.conf = self.root / "conf"
        self.vmail = self.root / "vmail"
        self.maillog = self.root / "postfix.log"
        account = pwd.getpwnam("postfix")
        head = private_instance(self.root, hostname)
        mailboxes = ", ".join(f"{u}@{hostname}={u}/" for u in users)
        (self.conf / "main.cf").write_text(head + f"""\
virtual_mailbox_domains = {hostname}
virtual_mailbox_base = {self.vmail}
virtual_mailbox_maps = inline:{{ {mailboxes} }}
virtual_uid_maps = static:{account.pw_uid}
virtual_gid_maps = static:{account.pw_gid}
smtpd_relay_restrictions = permit_mynetworks, reject_unauth_destination
smtp_host_lookup = native
smtp_dns_support_level = disabled
disable_dns_lookups = yes
minimal_backoff_time = 1s
maximal_backoff_time = 2s
queue_run_delay = 1s
{main_cf}""")
        options = "".join(f"\n  -o {k}={v}" for k, v in (smtpd_options or {}).items())
        master = Path("/etc/postfix/master.cf").read_text()
        master = re.sub(r"(?m)^smtp\s+inet\s.*$",
                        f"{self.port}      inet  n       -       n       -       -       smtpd"
                        + options, master)
        (self.conf / "master.cf").write_text(master)
        self.started = False

    def postfix(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["postfix", "-c", str(self.conf), *args], capture_output=True,
                              text=True, timeout=60)

    def start(self) -> PostfixInstance:
        result = self.postfix("start")
        if result.returncode != 0:
            raise AssertionError(f"postfix start failed: {result.stdout}{result.stderr}"
                                 f"{self.log_text()}")
        self.started = True
        wait_for(lambda: "daemon started" in self.log_text(), message="postfix to start")
        return self

    def stop(self) -> None:
        if self.started:
            self.postfix("stop")
            self.started = False
        shutil.rmtree(self.root, ignore_errors=True)

    def log_text(self) -> str:
        return self.maillog.read_text() if self.maillog.exists() else ""

    def wait_log(self, pattern: str, count: int = 1, timeout: float = 20) -> list[str]:
        return wait_lines(self.log_text, pattern, count, timeout, "postfix log line")

    def maildir(self, user: str = "alice") -> list[Path]:
        return maildir_messages(self.vmail / user)

    def wait_maildir(self, user: str = "alice", count: int = 1,
                     timeout: float = 20) -> list[Path]:
        return wait_maildir_messages(self.vmail / user, count, timeout)
