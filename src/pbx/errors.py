"""
The errors that cross layers: a bad configuration key, a listener that cannot
open, a startup that cannot finish.

Each carries a message fit for one operator-facing line.  This module is the
ground floor: it imports nothing from pbx, so every layer may raise them.
"""

from __future__ import annotations

__all__ = ["ConfigError", "ListenError", "StartupError"]


class ConfigError(Exception):
    """A problem with one key of the configuration."""

    def __init__(self, key: str, problem: str, path: str | None = None) -> None:
        super().__init__(key, problem, path)
        self.key = key
        self.problem = problem
        self.path = path

    def __str__(self) -> str:
        where = f"{self.path}: " if self.path else ""
        return f"{where}{self.key}: {self.problem}"


class ListenError(Exception):
    """A SIP listener could not be opened; the message names it."""


class StartupError(Exception):
    """Startup could not finish; the message is one line for the operator."""
