"""main.cf syntax: logical lines, comments, continuation lines and $name expansion.

The grammar is Postfix's (postconf(5)):
- a logical line starts with non-whitespace text ``name = value``;
- a line that starts with whitespace continues the previous logical line;
- a line whose first non-whitespace character is ``#`` is a comment, also
  inside a continued line; a ``#`` elsewhere is part of the value;
- the last definition of a name wins;
- ``$name``, ``${name}`` and ``$(name)`` expand to another parameter's value,
  ``${name?text}`` to text when name is non-empty, ``${name:text}`` to text
  when name is empty, and ``$$`` to a literal dollar.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from mta.errors import ConfigError


@dataclass(frozen=True, slots=True)
class Setting:
    """One ``name = value`` definition and where it came from."""

    name: str
    value: str
    path: str
    line: int

    @property
    def where(self) -> str:
        return f"{self.path}:{self.line}"


_NAME = re.compile(r"[A-Za-z0-9_./-]+\Z")


def logical_lines(text: str, path: str, what: str = "a parameter") -> Iterator[tuple[int, str]]:
    """(first line number, joined text) of each logical line of a Postfix file.

    The rule of main.cf and of lookup tables alike: comments and empty lines
    are skipped, a line starting with whitespace continues the previous one.
    """
    current: list[str] = []
    start = 0
    for number, raw in enumerate(text.splitlines(), start=1):
        stripped = raw.strip()
        if not stripped or stripped.startswith("#"):
            continue
        if raw[0] in " \t":
            if not current:
                raise ConfigError(f"{path}:{number}: continuation line without {what}")
            current.append(stripped)
            continue
        if current:
            yield start, " ".join(current)
        current = [stripped]
        start = number
    if current:
        yield start, " ".join(current)


def parse_main_cf(text: str, path: str) -> dict[str, Setting]:
    """Parse main.cf text into settings by name, later definitions winning."""
    settings: dict[str, Setting] = {}
    for start, logical in logical_lines(text, path):
        name, eq, value = logical.partition("=")
        name = name.strip()
        if not eq:
            raise ConfigError(f"{path}:{start}: missing '=' after parameter name: {name!r}")
        if not name or not _NAME.match(name):
            raise ConfigError(f"{path}:{start}: bad parameter name: {name!r}")
        settings.pop(name, None)  # keep insertion order of the winning definition
        settings[name] = Setting(name, value.strip(), path, start)
    return settings


_REF = re.compile(
    r"\$(?:\{([A-Za-z0-9_]+)(?:([?:])([^}]*))?\}"  # ${name}, ${name?text}, ${name:text}
    r"|\(([A-Za-z0-9_]+)\)"  # $(name)
    r"|([A-Za-z0-9_]+)"  # $name
    r"|(\$))"  # $$
)


def expand(value: str, lookup: Callable[[str], str | None], *, _depth: int = 0) -> str:
    """Expand $name references in value; lookup returns None for an undefined name.

    Undefined names expand to the empty string, as in Postfix. Recursion is
    bounded so that ``a = $b`` / ``b = $a`` fails instead of looping.
    """
    if "$" not in value:
        return value
    if _depth > 20:
        raise ConfigError(f"parameter expansion is nested too deeply (a loop?): {value!r}")

    def one(match: re.Match[str]) -> str:
        if match.group(6):
            return "$"
        name = match.group(1) or match.group(4) or match.group(5)
        text = lookup(name)
        resolved = "" if text is None else expand(text, lookup, _depth=_depth + 1)
        operator = match.group(2)
        if operator == "?":
            return expand(match.group(3), lookup, _depth=_depth + 1) if resolved else ""
        if operator == ":":
            return resolved or expand(match.group(3), lookup, _depth=_depth + 1)
        return resolved

    return _REF.sub(one, value)


def references(value: str) -> list[str]:
    """Names that value refers to, for warnings about undefined parameters."""
    names = []
    for match in _REF.finditer(value):
        name = match.group(1) or match.group(4) or match.group(5)
        if name:
            names.append(name)
    return names
