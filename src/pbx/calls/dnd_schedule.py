"""
Do not disturb by schedule: outside an extension's working hours, and on
its holidays, the extension is in do-not-disturb, as if its ``dnd`` flag
were set (callers get busy, or the diverters' answer for ``dnd``).

The ``dnd_schedule:`` section maps extension numbers to schedules in the
attendant's format (:mod:`pbx.features.attendant.schedule`), without the
menu names::

    dnd_schedule:
      "1001":
        timezone: Europe/Berlin
        hours:
          - {days: mon-fri, from: "08:00", to: "17:30"}
        holidays: ["12-25", "2026-12-31"]
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pbx.errors import ConfigError
from pbx.features.attendant.schedule import Schedule, parse_schedule
from pbx.validation import extension_number_problem

#: The keys of one DND schedule (the attendant's, less the menus it picks).
_KEYS = {"timezone", "hours", "holidays"}


def parse_dnd_schedules(raw: Any) -> dict[str, Schedule]:
    """
    Validate the ``dnd_schedule:`` section: extension number -> schedule.

    :raises ConfigError: naming the key and the problem.
    """
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise ConfigError(
            "dnd_schedule", "must be a mapping of extension number to a schedule"
        )
    schedules = {}
    for number, value in raw.items():
        key = f"dnd_schedule.{number}"
        if isinstance(number, bool) or extension_number_problem(str(number)):
            raise ConfigError(key, "an extension number is 2-10 digits")
        if not isinstance(value, dict):
            raise ConfigError(key, "must be a mapping with hours: and holidays:")
        unknown = sorted(set(map(str, value)) - _KEYS)
        if unknown:
            raise ConfigError(
                f"{key}.{unknown[0]}",
                f"unknown key (known: {', '.join(sorted(_KEYS))})",
            )
        # "open"/"closed" name the states the attendant maps to menus.
        schedules[str(number)] = parse_schedule(
            {**value, "open": "open", "closed": "closed"}, key, str(number)
        )
    return schedules


def scheduled_dnd(schedules: Mapping[str, Schedule], number: str, now: float) -> bool:
    """Whether extension ``number`` is outside its working hours (or on a holiday) at POSIX time ``now``."""
    schedule = schedules.get(number)
    return schedule is not None and schedule.state_at(now) != "open"
