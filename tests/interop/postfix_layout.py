"""The directory layout and main.cf head of a private Postfix instance.

Apart from tests/interop/postfix.py because the benchmark (bench/mtas.py)
lays out its Postfix the same way and must not need pytest, which the
tests' helpers import.
"""

from __future__ import annotations

import os
import pwd
from pathlib import Path


def private_instance(root: Path, hostname: str) -> str:
    """Lay out a private Postfix instance in root and return the head of its
    main.cf: its own config, queue, data and Maildir directories, Debian's
    programs, loopback only, its own maillog file. root is made 0755 because
    virtual(8) runs as postfix and must reach root/vmail. Shared with the
    benchmark (bench/mtas.py), whose Postfix is the same kind of instance.
    """
    account = pwd.getpwnam("postfix")
    os.chmod(root, 0o755)
    for name in ("conf", "queue", "data", "vmail"):
        (root / name).mkdir()
    for name in ("vmail", "data"):
        os.chown(root / name, account.pw_uid, account.pw_gid)
    return f"""\
compatibility_level = 3.6
queue_directory = {root}/queue
data_directory = {root}/data
command_directory = /usr/sbin
daemon_directory = /usr/lib/postfix/sbin
meta_directory = /etc/postfix
shlib_directory = /usr/lib/postfix
mail_owner = postfix
setgid_group = postdrop
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
myhostname = {hostname}
mydestination =
mynetworks = 127.0.0.0/8
maillog_file = {root}/postfix.log
maillog_file_prefixes = {root}
"""
