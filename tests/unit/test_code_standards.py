"""The code standards the brief sets, checked on every run: ruff clean, and
the package's type hints consistent (mypy), so neither drifts between the
sessions that check them by hand."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=300)


def test_ruff_finds_nothing() -> None:
    result = run("ruff", "check", "mta", "tests", "bench")
    assert result.returncode == 0, result.stdout + result.stderr


def test_mypy_finds_nothing_in_the_package_and_the_benchmark() -> None:
    # pyproject.toml's [tool.mypy] names what is checked and how.
    result = run("mypy")
    assert result.returncode == 0, result.stdout + result.stderr
