"""A journaled ext4 file system for the spools, made for one benchmark run.

This machine's root file system is ext4 without a journal, where creating a
file costs more the more files were deleted in the last minutes (ext4 checks
every recently freed inode it passes, docs/performance.md): both MTAs' costs
then drift with what ran before. A fresh journaled ext4 on a loop device,
like a production spool's, gives every set the same start.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from bench.mtas import program


@contextmanager
def journaled_scratch(size_gb: int, parent: Path) -> Iterator[Path]:
    """A fresh journaled ext4 of size_gb GiB mounted under parent (needs root
    and a loop device); unmounted and deleted afterwards."""
    for name in ("mkfs.ext4", "mount", "umount"):
        if program(name) is None:
            raise SystemExit(f"--scratch-fs needs {name}")
    fd, image_name = tempfile.mkstemp(prefix="postern-bench-", suffix=".img", dir=parent)
    os.close(fd)
    image = Path(image_name)
    # A short mount point: the MTAs' UNIX sockets live a few levels below it,
    # and a socket's path must fit in 107 bytes.
    mount = Path(tempfile.mkdtemp(prefix="pb", dir=parent))
    mounted = False
    try:
        os.truncate(image, size_gb << 30)
        subprocess.run(["mkfs.ext4", "-q", "-F", "-O", "has_journal", str(image)], check=True)
        try:
            subprocess.run(["mount", "-o", "loop", str(image), str(mount)], check=True)
        except subprocess.CalledProcessError:
            raise SystemExit("could not mount a loop device for the spools (root and a "
                             "loop device are needed); --scratch-fs 0 runs in --workdir "
                             "itself") from None
        mounted = True
        os.chmod(mount, 0o755)  # Postfix's private instance checks its parents
        yield mount
    finally:
        if mounted:
            subprocess.run(["umount", str(mount)], check=False)
        shutil.rmtree(mount, ignore_errors=True)
        image.unlink(missing_ok=True)
