"""
Recorded voice prompts: find them by id, and spell numbers, digits and dates
as sequences of prompt ids.

A prompt directory holds language packs laid out as
``<root>/<language>/<rate>/<id>.wav``, where an id such as ``vm/goodbye`` or
``digits/7`` is a ``/``-separated path and the rate is the sample rate in Hz
(``8000`` for narrowband codecs, ``16000`` for G.722).  :class:`PromptLibrary`
searches several roots in order, so a site directory with the same layout
placed before the system one replaces any prompt it holds, rate by rate.

The system prompts are installed under ``<prefix>/share/pbx/prompts``; in a
source checkout they are read from ``share/prompts``.  The library only reads
the file system when it is built (or :meth:`PromptLibrary.rescan` is called),
so looking up prompts does no I/O.
"""

from __future__ import annotations

import operator
import os
import sys
import sysconfig
from collections.abc import Iterable, Sequence
from datetime import datetime, time
from pathlib import Path

__all__ = [
    "PromptLibrary",
    "PromptNotFound",
    "default_prompt_dir",
    "english_datetime",
    "english_digits",
    "english_number",
    "english_time",
]

_SOURCE_PROMPTS = Path(__file__).resolve().parents[3] / "share" / "prompts"

_WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday",
             "sunday")  # fmt: skip
_MONTHS = ("january", "february", "march", "april", "may", "june", "july",
           "august", "september", "october", "november", "december")  # fmt: skip
_KEYS = {"*": "digits/star", "#": "digits/pound"}
MAX_NUMBER = 999_999_999


class PromptNotFound(KeyError):
    """
    A prompt id has no recording in any of the library's directories.
    """

    def __str__(self) -> str:
        # KeyError's own __str__ shows the repr of its argument.
        return str(self.args[0]) if self.args else "prompt not found"


def default_prompt_dir() -> str:
    """
    Locate the system prompt directory.

    :returns: the installed ``<prefix>/share/pbx/prompts`` when it exists,
        otherwise the source checkout's ``share/prompts``.
    """
    candidates = [
        Path(sysconfig.get_path("data")) / "share" / "pbx" / "prompts",
        Path(sys.prefix) / "share" / "pbx" / "prompts",
        _SOURCE_PROMPTS,
    ]
    for candidate in candidates:
        if candidate.is_dir():
            return str(candidate)
    return str(_SOURCE_PROMPTS)


def _below_thousand(n: int) -> list[str]:
    """
    Spell 0..999 (0 gives nothing: it is only ever part of a larger number).
    """
    ids: list[str] = []
    hundreds, rest = divmod(n, 100)
    if hundreds:
        ids += [f"digits/{hundreds}", "numbers/hundred"]
    if 10 <= rest <= 19:
        ids.append(f"numbers/{rest}")
    else:
        tens, units = divmod(rest, 10)
        if tens:
            ids.append(f"numbers/{tens * 10}")
        if units:
            ids.append(f"digits/{units}")
    return ids


def english_number(n: int) -> list[str]:
    """
    Spell a whole number in American English, without "and".

    :param n: 0 to 999,999,999.
    :returns: prompt ids, e.g. 1234 -> one thousand two hundred thirty four.
    :raises ValueError: when ``n`` is out of range.
    :raises TypeError: when ``n`` is not an integer.
    """
    if isinstance(n, bool):
        raise TypeError("say_number takes an int, not a bool")
    n = operator.index(n)
    if not 0 <= n <= MAX_NUMBER:
        raise ValueError(f"say_number: {n} is outside 0..{MAX_NUMBER:,}")
    if n == 0:
        return ["digits/0"]
    ids: list[str] = []
    for scale, word in ((1_000_000, "numbers/million"), (1000, "numbers/thousand")):
        count, n = divmod(n, scale)
        if count:
            ids += [*_below_thousand(count), word]
    return ids + _below_thousand(n)


def english_digits(digits: str) -> list[str]:
    """
    Spell a string of keypad keys one by one.

    :param digits: characters from ``0-9``, ``*`` and ``#``.
    :returns: one prompt id per character.
    :raises ValueError: for any other character.
    """
    ids = []
    for c in digits:
        if c in _KEYS:
            ids.append(_KEYS[c])
        elif c in "0123456789":
            ids.append(f"digits/{c}")
        else:
            raise ValueError(f"say_digits: cannot say {c!r} in {digits!r}")
    return ids


def _ordinal(day: int) -> str:
    """
    The prompt id of a day of the month: 1 -> dates/1st, 22 -> dates/22nd.
    """
    if day % 100 in (11, 12, 13):
        suffix = "th"
    else:
        suffix = {1: "st", 2: "nd", 3: "rd"}.get(day % 10, "th")
    return f"dates/{day}{suffix}"


def english_time(when: time | datetime, oclock: bool = False) -> list[str]:
    """
    Spell a time of day on the 12-hour clock.

    Whole hours are "three p.m." (or "three o'clock p.m." with ``oclock``);
    minutes 1..9 are "three oh five p.m."; others "three forty five p.m.".
    Midnight is twelve a.m. and noon twelve p.m.

    :param when: the time (seconds are ignored).
    :param oclock: say "o'clock" after a whole hour.
    :returns: prompt ids.
    """
    ids = english_number(when.hour % 12 or 12)
    if when.minute == 0:
        if oclock:
            ids.append("time/oclock")
    elif when.minute < 10:
        ids += ["time/oh", f"digits/{when.minute}"]
    else:
        ids += english_number(when.minute)
    ids.append("time/am" if when.hour < 12 else "time/pm")
    return ids


def english_datetime(when: datetime, oclock: bool = False) -> list[str]:
    """
    Spell a date and time: "monday, january 5th, 3 pm".

    :param when: the moment, in the time zone it should be read in.
    :param oclock: say "o'clock" after a whole hour.
    :returns: prompt ids: weekday, month, day of the month, then the time.
    """
    return [
        f"dates/{_WEEKDAYS[when.weekday()]}",
        f"dates/{_MONTHS[when.month - 1]}",
        _ordinal(when.day),
        *english_time(when, oclock=oclock),
    ]


def _scan(root: Path) -> Iterable[tuple[str, int, str]]:
    """
    Yield (id, rate, path) for every WAV file in one language directory.
    """
    if not root.is_dir():
        return
    for rate_dir in sorted(root.iterdir()):
        if not (rate_dir.is_dir() and rate_dir.name.isdigit()):
            continue
        for dirpath, dirnames, filenames in os.walk(rate_dir):
            dirnames.sort()
            for name in sorted(filenames):
                if name.endswith(".wav") and not name.startswith("."):
                    path = Path(dirpath, name)
                    prompt_id = path.relative_to(rate_dir).with_suffix("").as_posix()
                    yield prompt_id, int(rate_dir.name), str(path)


class PromptLibrary:
    """
    Prompts of one language from several directories, earlier ones winning.

    :param paths: prompt roots in precedence order (site directories first);
        each holds ``<language>/<rate>/<id>.wav``.  ``None`` means just
        :func:`default_prompt_dir`.
    :param language: the language pack to use, e.g. ``"en"``.
    """

    def __init__(self, paths: Sequence[str] | None = None, language: str = "en"):
        if isinstance(paths, str):
            raise TypeError("PromptLibrary takes a list of directories, not a str")
        self.paths: tuple[str, ...] = (
            (default_prompt_dir(),) if paths is None else tuple(paths)
        )
        self.language = language
        self._index: dict[tuple[str, int], str] = {}
        self._ids: frozenset[str] = frozenset()
        self.rescan()

    def rescan(self) -> None:
        """
        Read the directories again, picking up added or removed prompts.
        """
        index: dict[tuple[str, int], str] = {}
        for root in self.paths:
            for prompt_id, rate, path in _scan(Path(root, self.language)):
                index.setdefault((prompt_id, rate), path)
        self._index = index
        self._ids = frozenset(prompt_id for prompt_id, _ in index)

    def _where(self) -> str:
        """
        Describe where prompts were looked for, for error messages.
        """
        return ", ".join(str(Path(p, self.language)) for p in self.paths) or "nowhere"

    def path(self, prompt_id: str, rate: int = 8000) -> str:
        """
        Find the file of a prompt.

        :param prompt_id: e.g. ``"vm/goodbye"``.
        :param rate: the sample rate in Hz (8000 or 16000).
        :returns: the path of the WAV file.
        :raises PromptNotFound: (a ``KeyError``) when no directory has it.
        """
        try:
            return self._index[(prompt_id, rate)]
        except KeyError:
            raise PromptNotFound(
                f"no prompt {prompt_id!r} at {rate} Hz for language "
                f"{self.language!r} in {self._where()}"
            ) from None

    def ids(self) -> list[str]:
        """
        List the prompt ids available at any rate.

        :returns: sorted ids.
        """
        return sorted(self._ids)

    def rates(self, prompt_id: str) -> list[int]:
        """
        List the sample rates a prompt is recorded at.

        :param prompt_id: a prompt id.
        :returns: sorted rates in Hz; empty when the prompt is unknown.
        """
        return sorted(rate for pid, rate in self._index if pid == prompt_id)

    def __contains__(self, prompt_id: object) -> bool:
        """
        Tell whether a prompt id is recorded at any rate.
        """
        return prompt_id in self._ids

    def _checked(self, ids: list[str]) -> list[str]:
        """
        Return ``ids`` after checking that the library has every one.

        :raises PromptNotFound: naming the missing ids.
        """
        missing = [i for i in dict.fromkeys(ids) if i not in self._ids]
        if missing:
            raise PromptNotFound(
                f"no prompt {', '.join(map(repr, missing))} for language "
                f"{self.language!r} in {self._where()}"
            )
        return ids

    def _english(self, helper: str) -> None:
        """
        Refuse a say helper for a language whose grammar we don't have.

        :raises NotImplementedError: unless the language is English.
        """
        if self.language != "en" and not self.language.startswith("en-"):
            raise NotImplementedError(
                f"{helper}: no rules for language {self.language!r}"
            )

    def say_digits(self, digits: str) -> list[str]:
        """
        Prompt ids that read out keypad keys one by one: "1#" -> one, pound.

        :param digits: characters from ``0-9``, ``*`` and ``#``.
        :raises ValueError: for any other character.
        :raises PromptNotFound: when a needed prompt is missing.
        """
        self._english("say_digits")
        return self._checked(english_digits(digits))

    def say_number(self, n: int) -> list[str]:
        """
        Prompt ids that say a number: 1234 -> one thousand two hundred
        thirty four.

        :param n: 0 to 999,999,999.
        :raises ValueError: when ``n`` is out of range.
        :raises PromptNotFound: when a needed prompt is missing.
        """
        self._english("say_number")
        return self._checked(english_number(n))

    def say_time(self, when: time | datetime, oclock: bool = False) -> list[str]:
        """
        Prompt ids that say a time of day: 15:05 -> three oh five p.m.

        :param when: the time (seconds are ignored).
        :param oclock: say "o'clock" after a whole hour.
        :raises PromptNotFound: when a needed prompt is missing.
        """
        self._english("say_time")
        return self._checked(english_time(when, oclock=oclock))

    def say_datetime(self, when: datetime, oclock: bool = False) -> list[str]:
        """
        Prompt ids that say a date and time: monday, january 5th, 3 p.m.

        :param when: the moment, in the time zone it should be read in.
        :param oclock: say "o'clock" after a whole hour.
        :raises PromptNotFound: when a needed prompt is missing.
        """
        self._english("say_datetime")
        return self._checked(english_datetime(when, oclock=oclock))
