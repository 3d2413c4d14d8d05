"""
The options of the ``supervision`` feature (``features: supervision:`` in
the configuration), validated into one frozen :class:`SupervisionOptions`.

::

    features:
      supervision:
        supervisors:
          "1000": ["1001", "1002"]   # 1000 may supervise 1001 and 1002
          "1009": "*"                # 1009 may supervise every extension
        listen_code: "*33"           # *33 + extension: listen (silent monitor)
        whisper_code: "*34"          # *34 + extension: the agent hears the supervisor
        barge_code: "*35"            # *35 + extension: both parties hear the supervisor

    dialplan:
      - {match: "_*33X!", app: supervise}
      - {match: "_*34X!", app: supervise}
      - {match: "_*35X!", app: supervise}

Errors name the key relative to the feature's section
(``supervisors.1000[1]``); the plugin loader puts ``features.supervision.``
in front.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from attrs import field, frozen

from pbx.errors import ConfigError
from pbx.validation import extension_number_problem

__all__ = ["ANYONE", "MODES", "SupervisionOptions", "parse_options"]

#: The ways a supervisor joins a call, from quietest to loudest.
MODES = ("listen", "whisper", "barge")
#: A supervisor's targets: every extension.
ANYONE = "*"

_KEYS = frozenset({"supervisors", "listen_code", "whisper_code", "barge_code"})
_CODE = re.compile(r"[0-9*#]{1,10}")
_DEFAULT_CODES = {"listen": "*33", "whisper": "*34", "barge": "*35"}


@frozen
class SupervisionOptions:
    """Who may supervise whom, and the code of each mode."""

    supervisors: Mapping[str, frozenset[str] | str] = field(factory=dict)
    """Supervisor extension -> the extensions it may supervise, or :data:`ANYONE`."""
    codes: Mapping[str, str] = field(factory=lambda: dict(_DEFAULT_CODES))
    """Mode -> the code dialled in front of the extension."""

    def may_supervise(self, supervisor: str, target: str) -> bool:
        """Whether ``supervisor`` may listen to, whisper to or barge into ``target``'s calls."""
        allowed = self.supervisors.get(supervisor)
        if allowed is None or supervisor == target:
            return False
        return allowed == ANYONE or target in allowed

    def parse_dialled(self, dialled: str) -> tuple[str, str] | None:
        """
        ``(mode, extension)`` for a number dialled as code + extension, or
        None when it starts with no code.  The longest matching code wins
        (``*3`` and ``*35`` may both be codes).
        """
        found = [
            (code, mode)
            for mode, code in self.codes.items()
            if dialled.startswith(code)
        ]
        if not found:
            return None
        code, mode = max(found, key=lambda pair: len(pair[0]))
        return mode, dialled[len(code) :]


def _text(value: Any) -> Any:
    """A YAML integer (``1000``) is taken as its digits."""
    return (
        str(value) if isinstance(value, int) and not isinstance(value, bool) else value
    )


def _targets(raw: Any, key: str) -> frozenset[str] | str:
    raw = _text(raw)
    if raw == ANYONE:
        return ANYONE
    if not isinstance(raw, list) or not raw:
        raise ConfigError(key, 'must be "*" or a non-empty list of extensions')
    targets = []
    for i, item in enumerate(raw):
        number = _text(item)
        problem = extension_number_problem(number)
        if problem is not None:
            raise ConfigError(f"{key}[{i}]", problem)
        targets.append(number)
    return frozenset(targets)


def parse_options(raw: Any) -> SupervisionOptions:
    """
    Validate the feature's section.

    :raises ConfigError: naming the first bad key, relative to the section.
    """
    if raw is None:
        raw = {}
    if not isinstance(raw, Mapping):
        raise ConfigError("supervision", "must be a mapping")
    unknown = sorted(str(k) for k in raw if k not in _KEYS)
    if unknown:
        raise ConfigError(unknown[0], "unknown key")
    codes: dict[str, str] = {}
    for mode in MODES:
        key = f"{mode}_code"
        code = _text(raw.get(key, _DEFAULT_CODES[mode]))
        if not isinstance(code, str) or not _CODE.fullmatch(code):
            raise ConfigError(key, "must be 1 to 10 of the keys 0-9, * and #")
        if code in codes.values():
            raise ConfigError(
                key,
                f"is also the {next(m for m, c in codes.items() if c == code)}_code",
            )
        codes[mode] = code
    supervisors_raw = raw.get("supervisors")
    if supervisors_raw is None:
        supervisors_raw = {}
    if not isinstance(supervisors_raw, Mapping):
        raise ConfigError("supervisors", "must be a mapping of extension to extensions")
    supervisors: dict[str, frozenset[str] | str] = {}
    for key, value in supervisors_raw.items():
        number = _text(key)
        problem = extension_number_problem(number)
        if problem is not None:
            raise ConfigError(f"supervisors.{key}", problem)
        supervisors[number] = _targets(value, f"supervisors.{number}")
    return SupervisionOptions(supervisors=supervisors, codes=codes)
