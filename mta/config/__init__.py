"""Configuration: main.cf read once into a validated, read-only Config.

Listeners are master.cf services written in main.cf with postconf -M/-P
syntax: ``submission/inet = 127.0.0.1:2587`` defines a listener and
``submission/inet/smtpd_tls_security_level = encrypt`` overrides one
parameter for it, as ``-o`` does in master.cf.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mta.config.params import PARAMS, Param
from mta.config.parser import Setting, expand, parse_main_cf, references
from mta.config.types import BadValue, HostPort, parse_hostport
from mta.errors import ConfigError

__all__ = ["PARAMS", "Config", "ConfigError", "ListenerSpec", "find_config", "load"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ListenerSpec:
    """One smtpd listener: service name, address and its -o overrides."""

    name: str
    address: HostPort
    overrides: dict[str, Setting] = field(default_factory=dict)
    where: str = "(default)"


class Config:
    """Typed, expanded parameter values; attribute access by parameter name."""

    def __init__(self, settings: dict[str, Setting], path: str,
                 overrides: dict[str, Setting] | None = None) -> None:
        self.path = path
        self.directory = str(Path(path).resolve().parent) if path else os.getcwd()
        self._settings = dict(settings)
        if overrides:
            self._settings.update(overrides)
        self._cache: dict[str, Any] = {}
        self.warnings: list[str] = []
        self.listeners: tuple[ListenerSpec, ...] = ()
        self.text = ""  # main.cf as read (workers run exactly what the master runs)

    # -- raw access, as postconf shows it ---------------------------------------------
    def is_set(self, name: str) -> bool:
        return name in self._settings

    def where(self, name: str) -> str:
        setting = self._settings.get(name)
        return setting.where if setting else "(default)"

    def raw(self, name: str) -> str:
        """The unexpanded value: the main.cf text, or the table default."""
        if name == "config_directory":
            return self.directory
        setting = self._settings.get(name)
        if setting is not None:
            return setting.value
        if name == "mydomain":
            return self._default_mydomain()
        param = PARAMS.get(name)
        if param is None:
            raise KeyError(name)
        return param.default

    def _default_mydomain(self) -> str:
        """$myhostname minus its first label, Postfix's default for an unset mydomain."""
        text = self.raw("myhostname")

        def lookup(name: str) -> str | None:
            # myhostname = mx.$mydomain (at any depth) would come back here
            # through expand() forever: expand's own depth guard cannot see
            # this loop, since each pass through raw() starts it afresh.
            if name == "mydomain":
                raise ConfigError(f"{self.where('myhostname')}: myhostname = {text}: "
                                  "recursion: the default $mydomain is derived from "
                                  "$myhostname; set mydomain in main.cf")
            return self._lookup(name)

        host = expand(text, lookup)
        return host.partition(".")[2] or "localdomain"

    def _lookup(self, name: str) -> str | None:
        try:
            return self.raw(name)
        except KeyError:
            return None

    def expanded(self, name: str) -> str:
        return expand(self.raw(name), self._lookup)

    def expand_text(self, text: str) -> str:
        """Expand $name references in text that is not itself a parameter."""
        return expand(text, self._lookup)

    # -- typed access ------------------------------------------------------------------
    def get(self, name: str) -> Any:
        try:
            return self._cache[name]
        except KeyError:
            pass
        param = PARAMS.get(name)
        if param is None:
            raise AttributeError(f"unknown parameter {name!r}")
        value = self._convert(param)
        self._cache[name] = value
        return value

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        value = self.get(name)
        # A Config never changes (a reload builds a new one), so the value can
        # live in the instance: the next config.name is a plain attribute
        # lookup, not this method (1-2% of a receiver's time, per command).
        self.__dict__[name] = value
        return value

    def _convert(self, param: Param) -> Any:
        text = self.expanded(param.name)
        try:
            return param.convert(text)
        except BadValue as error:
            where = self.where(param.name)
            raise ConfigError(f"{where}: {param.name} = {text}: {error}") from None

    def path_of(self, value: str) -> Path:
        """A file or directory named in main.cf; relative to config_directory."""
        path = Path(value)
        return path if path.is_absolute() else Path(self.directory) / path

    def set_names(self) -> Iterator[str]:
        return iter(self._settings)

    def under_stress(self) -> Config:
        """This configuration with stress = yes, as Postfix's master starts
        the smtpd processes of a service at its process limit with -o
        stress=yes: the ${stress?{…}:{…}} defaults take their stress values.
        A stress set in main.cf or by the listener wins (forced on, or off
        when empty). Built once per configuration."""
        view = self.__dict__.get("_stressed")
        if view is None:
            if self.is_set("stress"):
                view = self
            else:
                view = Config(self._settings, self.path,
                              {"stress": Setting("stress", "yes", "(under stress)", 0)})
                view.listeners = self.listeners
                view.text = self.text
            self.__dict__["_stressed"] = view
        return view

    # -- per-listener view -------------------------------------------------------------
    def for_listener(self, listener: ListenerSpec) -> Config:
        """This configuration with the listener's -o overrides applied."""
        if not listener.overrides:
            return self
        view = Config(self._settings, self.path, listener.overrides)
        view.listeners = self.listeners
        view.text = self.text
        view.validate()
        return view

    def validate(self) -> None:
        """Convert every parameter once so a bad value stops the start: also
        under stress, where ${stress?{…}:{…}} may give another value, so that
        no bad value waits for the first overload to break the listener."""
        for name in PARAMS:
            self.get(name)
        stressed = self.under_stress()
        if stressed is not self:
            for name in PARAMS:
                stressed.get(name)


def find_config(explicit: str | None = None) -> str:
    """main.cf to use: -c PATH (a file or a directory), $MTA_CONFIG, ./main.cf,
    else ./main.cf.example, the embedded default."""
    candidates = [explicit, os.environ.get("MTA_CONFIG")]
    for candidate in candidates:
        if candidate:
            path = Path(candidate)
            if path.is_dir():
                path = path / "main.cf"
            if not path.exists():
                raise ConfigError(f"{path}: no such configuration file")
            return str(path)
    for name in ("main.cf", "main.cf.example"):
        if Path(name).exists():
            return str(Path(name).resolve())
    raise ConfigError("no main.cf here: give one with -c, or run from a directory "
                      "that has main.cf or main.cf.example")


def load(path: str) -> Config:
    """Read, parse and validate main.cf; raise ConfigError naming file:line."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as error:
        raise ConfigError(f"{path}: cannot read: {error.strerror}") from None
    return from_text(text, path)


def from_text(text: str, path: str = "main.cf") -> Config:
    settings = parse_main_cf(text, path)
    plain: dict[str, Setting] = {}
    services: dict[str, Setting] = {}
    service_overrides: dict[str, dict[str, Setting]] = {}
    for name, setting in settings.items():
        parts = name.split("/")
        if len(parts) == 1:
            plain[name] = setting
        elif len(parts) == 2 and parts[1] == "inet":
            services[parts[0]] = setting
        elif len(parts) == 3 and parts[1] == "inet":
            if parts[2] not in PARAMS:
                raise ConfigError(f"{setting.where}: unknown parameter {parts[2]!r} "
                                  f"in override {name}")
            service_overrides.setdefault(parts[0], {})[parts[2]] = Setting(
                parts[2], setting.value, setting.path, setting.line)
        else:
            raise ConfigError(f"{setting.where}: bad service parameter name {name!r}; "
                              "expected service/inet or service/inet/parameter")
    config = Config(plain, path)
    config.text = text
    for name, setting in plain.items():
        if name not in PARAMS and not _referenced(name, settings):
            config.warnings.append(f"{setting.where}: unused parameter: {name}={setting.value}")
    for name in service_overrides:
        if name not in services:
            where = next(iter(service_overrides[name].values())).where
            raise ConfigError(f"{where}: override for undefined service {name}/inet")
    listeners = []
    for name, setting in services.items():
        try:
            address = parse_hostport(config.expand_text(setting.value))
        except BadValue as error:
            raise ConfigError(f"{setting.where}: {name}/inet = {setting.value}: {error}") from None
        listeners.append(ListenerSpec(name, address, service_overrides.get(name, {}),
                                      setting.where))
    if not listeners:
        listeners.append(ListenerSpec("smtp", HostPort("127.0.0.1", 25)))
    config.listeners = tuple(listeners)
    config.validate()
    for listener in listeners:
        config.for_listener(listener)
    return config


def _referenced(name: str, settings: dict[str, Setting]) -> bool:
    return any(name in references(s.value) for s in settings.values()) or any(
        name in references(p.default) for p in PARAMS.values())
