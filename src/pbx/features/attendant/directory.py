"""
Dial by name: the caller spells the first three letters of a person's last
name on the keypad (2 = ABC ... 9 = WXYZ) and picks from the people found.

The name searched is the last word of the extension's name (``Alice
Smith`` -> ``Smith``; a trailing ``Jr.``, ``Sr.``, ``II``... is skipped), or
the only word of a one-word name.  Accents are ignored (``Müller`` is
``MULLER``).  Only enabled extensions with a name are listed.

One match is read out ("extension 1 0 0 1", or the person's recorded name)
with "press 1 to connect, star to try again"; several are listed as "for
<name>, press N", eight at a time, 9 hearing the next eight.  Star while
spelling goes back to the menu.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from attrs import define, frozen

from twisted.logger import Logger

from pbx.interfaces import IChannel

_LETTERS = {"2": "ABC", "3": "DEF", "4": "GHI", "5": "JKL", "6": "MNO", "7": "PQRS", "8": "TUV", "9": "WXYZ"}
_KEY_OF = {letter: key for key, letters in _LETTERS.items() for letter in letters}
_SUFFIXES = {"JR", "SR", "II", "III", "IV", "V"}
#: How many letters are spelled.
LETTERS = 3
#: How many people one listing names (keys 1-8; 9 is "more").
PAGE = 8
#: Every key that can interrupt a prompt.
KEYS = "0123456789*#"
#: What :meth:`DialByName._pick` returns when the caller asked to spell again.
_AGAIN = "*"


def keypad_digits(text: str) -> str:
    """The keys that spell ``text``'s letters (other characters are dropped)."""
    plain = unicodedata.normalize("NFKD", text).upper()
    return "".join(_KEY_OF[c] for c in plain if c in _KEY_OF)


def search_word(name: str) -> str:
    """The word of a name that dial-by-name spells: the last name."""
    words = [w for w in re.split(r"[\s,]+", name) if w]
    if len(words) > 1 and words[-1].upper().rstrip(".") in _SUFFIXES:
        words = words[:-1]
    return words[-1] if words else ""


@frozen
class Entry:
    """One person in the directory: the keys of the first letters of the last name."""

    number: str
    name: str
    keys: str


def directory_entries(extensions: Iterable[Any]) -> list[Entry]:
    """
    The directory from extension records: enabled ones with a name that
    has letters, ordered by name then number.
    """
    entries = []
    for record in extensions:
        name = (record.name or "").strip()
        keys = keypad_digits(search_word(name))[:LETTERS]
        if record.enabled and keys:
            entries.append(Entry(record.number, name, keys))
    return sorted(entries, key=lambda e: (e.name.casefold(), e.number))


def find(entries: Iterable[Entry], typed: str) -> list[Entry]:
    """
    The people whose last name starts with the letters of ``typed``; fewer
    than three keys find only names that short (``Li`` for ``54``).
    """
    return [e for e in entries if e.keys == typed]


@define(eq=False)
class DialByName:
    """
    One dial-by-name session on a channel.

    :ivar name_items: what to play for a person's name (prompt ids or a WAV).
    :ivar play: plays items with interrupt keys (the application's safe play).
    :ivar attempts: spellings that find nobody (or get no answer) before
        giving up.
    """

    channel: IChannel
    entries: list[Entry]
    name_items: Callable[[Entry], Awaitable[list[str]]]
    play: Callable[[list[str], str], Awaitable[str | None]]
    timeout: float = 5.0
    digit_timeout: float = 3.0
    attempts: int = 3
    log = Logger()

    async def run(self) -> str | None:
        """The extension number picked, or None to go back to the menu."""
        failures = 0
        while failures < self.attempts:
            typed = await self._spell()
            if typed is None:
                return None
            if not typed:
                failures += 1
                await self.play(["aa/timeout"], "")
                continue
            matches = find(self.entries, typed)
            self.log.debug("dial by name {typed}: {count} found", typed=typed, count=len(matches))
            if not matches:
                failures += 1
                await self.play(["aa/no-match"], "")
                continue
            picked = await self._pick(matches)
            if picked == _AGAIN:
                continue
            if picked:
                return picked
            failures += 1
        return None

    async def _key(self, items: list[str], timeout: float) -> str:
        """Play ``items``; the key that interrupted them, or the next one within ``timeout``."""
        key = await self.play(items, KEYS)
        if key is None:
            key = await self.channel.collect_digits(max_digits=1, timeout=timeout, terminator="")
        return key

    async def _spell(self) -> str | None:
        """Up to three keys (``#`` or a pause ends them early); None for star."""
        typed = await self._key(["aa/dial-by-name"], self.timeout)
        while typed and typed[-1] not in "*#" and len(typed) < LETTERS:
            more = await self.channel.collect_digits(max_digits=1, timeout=self.digit_timeout, terminator="")
            if not more:
                break
            typed += more
        if "*" in typed:
            return None
        return typed.rstrip("#")

    async def _pick(self, matches: list[Entry]) -> str:
        """A number, :data:`_AGAIN`, or ``""`` when the caller chose nothing valid."""
        if len(matches) == 1:
            key = await self._key([*await self.name_items(matches[0]), "aa/connect-or-retry"], self.timeout)
            if key == "1":
                return matches[0].number
            if key == "*":
                return _AGAIN
            await self.play(["aa/invalid" if key else "aa/timeout"], "")
            return ""
        start = 0
        while True:
            shown = matches[start : start + PAGE]
            more = len(matches) > start + PAGE
            items: list[str] = []
            for i, entry in enumerate(shown, 1):
                items += ["aa/for", *await self.name_items(entry), "aa/press", f"digits/{i}"]
            items += ["aa/more-names"] if more else []
            items += ["aa/retry-star"]
            key = await self._key(items, self.timeout)
            if key and key in "12345678"[: len(shown)]:
                return shown[int(key) - 1].number
            if key == "9" and more:
                start += PAGE
                continue
            if key == "*":
                return _AGAIN
            await self.play(["aa/invalid" if key else "aa/timeout"], "")
            return ""
