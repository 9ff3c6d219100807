"""Postern: a Postfix-style mail transfer agent whose reason to exist is transport security."""

__version__ = "0.1.0"
