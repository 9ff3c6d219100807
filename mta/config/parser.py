"""main.cf syntax: logical lines, comments, continuation lines and $name expansion.

The grammar is Postfix's (postconf(5)):
- a logical line starts with non-whitespace text ``name = value``;
- a line that starts with whitespace continues the previous logical line;
- a line whose first non-whitespace character is ``#`` is a comment, also
  inside a continued line; a ``#`` elsewhere is part of the value;
- the last definition of a name wins;
- ``$name``, ``${name}`` and ``$(name)`` expand to another parameter's value,
  ``${name?text}`` to text when name is non-empty, ``${name:text}`` to text
  when name is empty, ``${name?{text1}:{text2}}`` to text1 or text2 (Postfix
  3.0), and ``$$`` to a literal dollar.
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


_NAME_AT = re.compile(r"[A-Za-z0-9_]+")
# For references(): every $name, ${name...} and $(name), $$ skipped.
_REF = re.compile(r"\$(?:\$|\{([A-Za-z0-9_]+)|\(([A-Za-z0-9_]+)|([A-Za-z0-9_]+))")


def expand(value: str, lookup: Callable[[str], str | None], *, _depth: int = 0) -> str:
    """Expand $name references in value; lookup returns None for an undefined name.

    Undefined names expand to the empty string, as in Postfix. Recursion is
    bounded so that ``a = $b`` / ``b = $a`` fails instead of looping. Besides
    ``${name?text}`` and ``${name:text}``, Postfix 3.0's
    ``${name?{text1}:{text2}}`` (text1 when name is non-empty, else text2)
    and ``${name?{text}}`` / ``${name:{text}}``: the form of its
    stress-dependent defaults, ``${stress?{10}:{300}}s``. Anything that is no
    reference is kept as written.
    """
    if "$" not in value:
        return value
    if _depth > 20:
        raise ConfigError(f"parameter expansion is nested too deeply (a loop?): {value!r}")

    def resolve(name: str) -> str:
        text = lookup(name)
        return "" if text is None else expand(text, lookup, _depth=_depth + 1)

    def sub(text: str) -> str:
        return expand(text, lookup, _depth=_depth + 1)

    out: list[str] = []
    i, size = 0, len(value)
    while i < size:
        dollar = value.find("$", i)
        if dollar == -1:
            out.append(value[i:])
            break
        out.append(value[i:dollar])
        following = value[dollar + 1:dollar + 2]
        if following == "$":
            out.append("$")
            i = dollar + 2
        elif following == "{":
            close = _closing_brace(value, dollar + 1)
            conditional = None if close == -1 else _conditional(value[dollar + 2:close])
            if conditional is None:
                out.append("$")  # not a reference: kept as written
                i = dollar + 1
                continue
            name, operator, when_set, when_empty = conditional
            resolved = resolve(name)
            if operator == "":
                out.append(resolved)
            elif resolved:
                out.append(sub(when_set) if when_set is not None else "")
            else:
                out.append(sub(when_empty) if when_empty is not None else "")
            i = close + 1
        elif following == "(":
            close = value.find(")", dollar + 2)
            name = value[dollar + 2:close] if close != -1 else ""
            if not _NAME_AT.fullmatch(name):
                out.append("$")
                i = dollar + 1
                continue
            out.append(resolve(name))
            i = close + 1
        else:
            match = _NAME_AT.match(value, dollar + 1)
            if match is None:
                out.append("$")
                i = dollar + 1
                continue
            out.append(resolve(match.group()))
            i = match.end()
    return "".join(out)


def _closing_brace(value: str, opening: int) -> int:
    """Index of the brace that closes the one at opening, or -1."""
    depth = 0
    for index in range(opening, len(value)):
        char = value[index]
        if char == "{":
            depth += 1
        elif char == "}":
            depth -= 1
            if depth == 0:
                return index
    return -1


def _conditional(inner: str) -> tuple[str, str, str | None, str | None] | None:
    """The parts of what is between ``${`` and its ``}``: name, operator ("",
    "?" or ":"), the text when the name is set and the text when it is empty
    (None where there is none); None when it is no reference."""
    match = _NAME_AT.match(inner)
    if match is None:
        return None
    name, rest = match.group(), inner[match.end():]
    if not rest:
        return name, "", None, None
    operator, text = rest[0], rest[1:]
    if operator not in "?:":
        return None
    if not text.startswith("{"):  # the classic ${name?text} and ${name:text}
        return (name, operator, text, None) if operator == "?" else (name, operator, None, text)
    close = _closing_brace(text, 0)
    if close == -1:
        return None
    first, after = text[1:close], text[close + 1:]
    if not after:
        return (name, operator, first, None) if operator == "?" else (name, operator, None, first)
    if operator == "?" and after.startswith(":{") and _closing_brace(after, 1) == len(after) - 1:
        return name, operator, first, after[2:-1]
    return None


def references(value: str) -> list[str]:
    """Names that value refers to (in any branch of a conditional), for
    warnings about undefined parameters."""
    return [name for match in _REF.finditer(value)
            if (name := match.group(1) or match.group(2) or match.group(3))]
