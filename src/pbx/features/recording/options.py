"""
The options of the ``recording`` feature (``features: recording:`` in the
configuration), validated into one frozen :class:`RecordingOptions`.

Errors name the key relative to the feature's section (``always[1]``,
``format``); the plugin loader puts ``features.recording.`` in front.
Who policy records (``always``, ``trunks``, ``routes``) is
:mod:`pbx.features.recording.policy`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from attrs import field, frozen

from pbx.errors import ConfigError
from pbx.features.recording.policy import Decision, parse_rule_names

__all__ = ["FORMATS", "RecordingOptions", "parse_recording_options"]

FORMATS = ("stereo", "mixed")
"""``stereo``: the caller on the left channel, the callee on the right; ``mixed``: both in one."""

_NUMBER = re.compile(r"[0-9]{2,10}")
_TOGGLE = re.compile(r"[0-9*#]{1,4}")
_KEYS = frozenset({"always", "trunks", "routes", "format", "retention_days", "announce", "dir", "toggle"})


@frozen
class RecordingOptions:
    """What the recording feature was configured with."""

    always: frozenset[str] = frozenset()
    """Extensions whose every answered call (as caller or callee) is recorded."""
    format: str = "stereo"
    """One of :data:`FORMATS`."""
    retention_days: float = 90.0
    """Recordings older than this are deleted by the daily sweep; 0 keeps them forever."""
    dir: str = "recordings"
    """Where the files go; a relative path is under the PBX's ``state_dir``."""
    toggle: str = "*1"
    """The keys (RFC 4733 events) either party presses to start or stop recording; "" for none."""
    announce: bool = False
    """Whether both parties hear "this call is recorded" when a recording starts."""
    trunks: Mapping[str, bool] = field(factory=dict)
    """Trunks whose every call (in or out) is recorded -> whether it is announced."""
    routes: Mapping[str, bool] = field(factory=dict)
    """Trunk routes (by name) whose every call is recorded -> whether it is announced."""

    def records_always(self, caller: str, callee: str) -> bool:
        """Whether policy records a call between ``caller`` and ``callee`` for their extensions."""
        return caller in self.always or callee in self.always

    def decide(self, caller: str, callee: str, trunk: str = "", route: str = "") -> Decision | None:
        """
        Whether policy records a call between ``caller`` and ``callee``
        over ``trunk`` by ``route`` ("" for none), and if it is announced;
        None when no rule records it.
        """
        rules: list[tuple[str, bool]] = [(f"extension {n}", self.announce) for n in (caller, callee)
                                         if n in self.always]
        if trunk in self.trunks:
            rules.append((f"trunk {trunk}", self.trunks[trunk]))
        if route in self.routes:
            rules.append((f"route {route}", self.routes[route]))
        if not rules:
            return None
        return Decision(tuple(rule for rule, _ in rules), any(said for _, said in rules))


def parse_recording_options(raw: Mapping[str, Any]) -> RecordingOptions:
    """
    Validate the feature's options.

    :param raw: the mapping under ``features: recording:`` (without ``enabled``).
    :raises ConfigError: naming the first bad key and its problem.
    """
    if not isinstance(raw, Mapping):
        raise ConfigError("recording", "must be a mapping")
    unknown = sorted(str(k) for k in raw if k not in _KEYS)
    if unknown:
        raise ConfigError(unknown[0], "unknown key")
    always = raw.get("always", [])
    if always is None:
        always = []
    if not isinstance(always, list):
        raise ConfigError("always", "must be a list of extension numbers")
    numbers = []
    for i, item in enumerate(always):
        if (
            isinstance(item, bool)
            or not isinstance(item, str | int)
            or not _NUMBER.fullmatch(str(item))
        ):
            raise ConfigError(f"always[{i}]", "an extension number is 2-10 digits")
        numbers.append(str(item))
    format_ = raw.get("format", "stereo")
    if format_ not in FORMATS:
        raise ConfigError("format", "must be stereo or mixed")
    days = raw.get("retention_days", 90)
    if (
        isinstance(days, bool)
        or not isinstance(days, int | float)
        or not 0 <= days <= 36500
    ):
        raise ConfigError(
            "retention_days", "must be a number of days from 0 (keep forever) to 36500"
        )
    announce = raw.get("announce", False)
    if not isinstance(announce, bool):
        raise ConfigError("announce", "must be true or false")
    directory = raw.get("dir", "recordings")
    if not isinstance(directory, str) or not directory.strip():
        raise ConfigError("dir", "must be a directory path")
    toggle = raw.get("toggle", "*1")
    if isinstance(toggle, int) and not isinstance(toggle, bool):
        toggle = str(toggle)
    if not isinstance(toggle, str) or (toggle and not _TOGGLE.fullmatch(toggle)):
        raise ConfigError("toggle", 'must be 1-4 keys of 0-9, * and #, or "" for none')
    return RecordingOptions(frozenset(numbers), format_, float(days), directory, toggle, announce,
                            parse_rule_names(raw.get("trunks"), "trunks", announce),
                            parse_rule_names(raw.get("routes"), "routes", announce))
