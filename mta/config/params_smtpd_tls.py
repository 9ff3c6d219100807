"""Parameters of one area, added to the one table in params.py (see its docstring)."""

from __future__ import annotations

from mta.config import types as t  # noqa: F401
from mta.config.params import _bool, _int, _list, _p, _str, _time  # noqa: F401
