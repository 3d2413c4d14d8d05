"""
Schedules: which menu plays now, by opening hours and holidays.

A schedule::

    timezone: Europe/Berlin            # default: the feature's timezone, then UTC
    hours:
      - {days: mon-fri, from: "08:00", to: "17:30"}
      - {days: sat, from: "09:00", to: "12:00"}
    holidays: ["2026-12-25", "01-01"]  # a date, or MM-DD for every year
    open: main                         # the menu inside the hours
    closed: after_hours                # the menu outside them
    holiday: holiday_menu              # on holidays (default: the closed menu)

``days`` is a day (``mon``), a range (``mon-fri``; ``fri-mon`` wraps), or a
comma-separated list of those (``mon-wed,fri``), or a YAML list of them.
``from``/``to`` are ``"HH:MM"`` local times; ``to`` may be ``"24:00"`` and
must be after ``from`` (an overnight stretch is two entries).  Local time
follows the time zone's rules, daylight saving time included.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from datetime import date, datetime
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from attrs import frozen

from pbx.errors import ConfigError
from pbx.features.attendant import validate as v

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_CLOCK = re.compile(r"([01][0-9]|2[0-4]):([0-5][0-9])")
_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
_ANNUAL = re.compile(r"([0-9]{2})-([0-9]{2})")


@frozen
class Hours:
    """Opening hours on some days: minutes after midnight, ``start <= t < end``."""

    days: frozenset[int]
    start: int
    end: int


@frozen
class Schedule:
    """
    One schedule.

    :ivar holidays: ``YYYY-MM-DD`` dates and ``MM-DD`` yearly dates.
    :ivar holiday: the menu on holidays; ``""`` means the closed menu.
    :ivar timezone: an IANA zone; ``""`` means the feature's.
    """

    name: str
    hours: tuple[Hours, ...]
    open: str
    closed: str
    holiday: str = ""
    holidays: frozenset[str] = frozenset()
    timezone: str = ""

    def state_at(self, when: float, default_timezone: str = "UTC") -> str:
        """
        ``"open"``, ``"closed"`` or ``"holiday"`` at POSIX time ``when``.
        """
        local = datetime.fromtimestamp(when, ZoneInfo(self.timezone or default_timezone))
        day = local.date()
        if day.isoformat() in self.holidays or day.isoformat()[5:] in self.holidays:
            return "holiday"
        minute = local.hour * 60 + local.minute
        for hours in self.hours:
            if local.weekday() in hours.days and hours.start <= minute < hours.end:
                return "open"
        return "closed"

    def menu_at(self, when: float, default_timezone: str = "UTC") -> str:
        """The name of the menu that plays at POSIX time ``when``."""
        state = self.state_at(when, default_timezone)
        if state == "open":
            return self.open
        if state == "holiday" and self.holiday:
            return self.holiday
        return self.closed

    def menus(self) -> list[tuple[str, str]]:
        """The menus this schedule names, with the key (relative to it) naming each."""
        found = [("open", self.open), ("closed", self.closed)]
        return found + ([("holiday", self.holiday)] if self.holiday else [])


def parse_timezone(raw: Any, key: str) -> str:
    """
    An IANA time zone name that this system knows.

    :raises ConfigError: for an unknown zone.
    """
    zone = v.string(raw, key, what="a time zone")
    try:
        ZoneInfo(zone)
    except (ZoneInfoNotFoundError, ValueError):
        raise ConfigError(key, f"unknown time zone {zone!r} (an IANA name such as Europe/Berlin)") from None
    return zone


def parse_days(raw: Any, key: str) -> frozenset[int]:
    """
    Days of the week (0 = Monday) from ``mon-fri,sun`` or a list of such.

    :raises ConfigError: for an unknown day.
    """
    parts = raw if isinstance(raw, list) else [raw]
    days: set[int] = set()
    for part in parts:
        text = v.string(part, key, what="days such as mon-fri")
        for piece in text.lower().replace(" ", "").split(","):
            first, dash, last = piece.partition("-")
            if first not in DAYS or (dash and last not in DAYS):
                raise ConfigError(key, f"{text!r} is not days such as mon-fri or sat,sun")
            a, b = DAYS.index(first), DAYS.index(last if dash else first)
            days.update((a + i) % 7 for i in range((b - a) % 7 + 1))
    if not days:
        raise ConfigError(key, "names no day")
    return frozenset(days)


def _clock(raw: Any, key: str) -> int:
    if isinstance(raw, int) and not isinstance(raw, bool):
        # YAML 1.1 reads unquoted 17:30 as the base-60 integer 1050.
        raise ConfigError(key, 'must be a time "HH:MM" (quote it)')
    text = v.string(raw, key, what='a time "HH:MM"')
    m = _CLOCK.fullmatch(text)
    if m is None or (m.group(1) == "24" and m.group(2) != "00"):
        raise ConfigError(key, f'{text!r} is not a time "HH:MM"')
    return int(m.group(1)) * 60 + int(m.group(2))


def _hours(raw: Any, key: str) -> Hours:
    m = v.mapping(raw, key, {"days", "from", "to"})
    for required in ("days", "from", "to"):
        if required not in m:
            raise ConfigError(v.join(key, required), "required")
    start, end = _clock(m["from"], v.join(key, "from")), _clock(m["to"], v.join(key, "to"))
    if start >= 24 * 60:
        raise ConfigError(v.join(key, "from"), "must be before 24:00")
    if end <= start:
        raise ConfigError(v.join(key, "to"), "must be after from (split overnight hours in two)")
    return Hours(parse_days(m["days"], v.join(key, "days")), start, end)


def _holiday(raw: Any, key: str) -> str:
    if isinstance(raw, date):
        # YAML reads an unquoted 2026-12-25 as a date.
        return raw.isoformat()
    text = v.string(raw, key, what='a date "YYYY-MM-DD" or "MM-DD"')
    try:
        if _DATE.fullmatch(text):
            return date.fromisoformat(text).isoformat()
        m = _ANNUAL.fullmatch(text)
        if m:
            date(2000, int(m.group(1)), int(m.group(2)))  # a leap year: 02-29 is allowed
            return text
    except ValueError:
        pass
    raise ConfigError(key, f'{text!r} is not a date "YYYY-MM-DD" or "MM-DD"')


def parse_schedule(raw: Any, key: str, name: str) -> Schedule:
    """
    Validate one schedule (menu names are checked by
    :func:`pbx.features.attendant.options.reference_problems`).

    :param key: where it is, for errors (``schedules.office``; ``""`` for an API body).
    :raises ConfigError: naming the offending key below ``key``.
    """
    m = v.mapping(raw, key, {"timezone", "hours", "holidays", "open", "closed", "holiday"})
    for required in ("open", "closed"):
        if required not in m:
            raise ConfigError(v.join(key, required), "required (a menu name)")
    hours_raw = m.get("hours") or []
    if not isinstance(hours_raw, list):
        raise ConfigError(v.join(key, "hours"), f"must be a list, not {v.kind(hours_raw)}")
    holidays_raw = m.get("holidays") or []
    if not isinstance(holidays_raw, list):
        raise ConfigError(v.join(key, "holidays"), f"must be a list of dates, not {v.kind(holidays_raw)}")
    timezone = m.get("timezone")
    holiday = m.get("holiday")
    return Schedule(
        name=name,
        hours=tuple(_hours(h, v.join(key, f"hours[{i}]")) for i, h in enumerate(hours_raw)),
        open=v.name(m["open"], v.join(key, "open")),
        closed=v.name(m["closed"], v.join(key, "closed")),
        holiday="" if holiday is None else v.name(holiday, v.join(key, "holiday")),
        holidays=frozenset(_holiday(h, v.join(key, f"holidays[{i}]")) for i, h in enumerate(holidays_raw)),
        timezone="" if timezone is None else parse_timezone(timezone, v.join(key, "timezone")),
    )


def _days_text(days: Iterable[int]) -> str:
    """``{0, 1, 2, 3, 4, 6}`` -> ``mon-fri,sun``."""
    chosen = sorted(set(days))
    runs: list[list[int]] = []
    for day in chosen:
        if runs and runs[-1][-1] == day - 1:
            runs[-1].append(day)
        else:
            runs.append([day])
    return ",".join(
        DAYS[r[0]] if len(r) == 1 else f"{DAYS[r[0]]}-{DAYS[r[-1]]}" for r in runs
    )


def _clock_text(minutes: int) -> str:
    return f"{minutes // 60:02d}:{minutes % 60:02d}"


def dump_schedule(schedule: Schedule) -> dict[str, Any]:
    """The JSON-ready form of a schedule; :func:`parse_schedule` reads it back equal."""
    out: dict[str, Any] = {
        "hours": [
            {"days": _days_text(h.days), "from": _clock_text(h.start), "to": _clock_text(h.end)}
            for h in schedule.hours
        ],
        "holidays": sorted(schedule.holidays),
        "open": schedule.open,
        "closed": schedule.closed,
    }
    if schedule.holiday:
        out["holiday"] = schedule.holiday
    if schedule.timezone:
        out["timezone"] = schedule.timezone
    return out
