"""The code standards the brief sets, checked on every run: ruff clean, and
the type hints of the package, the benchmark and the tests consistent (mypy),
so neither drifts between the sessions that check them by hand."""

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


def test_mypy_finds_nothing_in_the_package_the_benchmark_and_the_tests() -> None:
    # pyproject.toml's [tool.mypy] names what is checked (mta, bench, tests) and how.
    result = run("mypy")
    assert result.returncode == 0, result.stdout + result.stderr
