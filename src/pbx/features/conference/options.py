"""
The options of the ``conference`` feature (``features: conference:`` in
the configuration), validated into one frozen :class:`ConferenceOptions`.

::

    features:
      conference:
        rooms:
          "800": {}                           # open to anyone who dials it
          "801":
            pin: "4711"                       # participants' PIN
            moderator_pin: "9051"             # moderators' PIN
            moderators: ["1001"]              # these extensions moderate without a PIN
            wait_for_moderator: true          # music until a moderator is in
            end_with_moderator: true          # the last moderator leaving ends it
            max_participants: 50
            music: /srv/pbx/hold.wav          # replaces the generated hold music
            music_class: sales                # or: a music-on-hold class (moh.classes)
            record: true                      # recorded whenever someone is in it
            record_key: "1"                   # a moderator's *1 starts or stops recording
            record_tone: true                 # everyone hears a tone when recording starts
            sounds: true                      # join and leave tones
            announce: true                    # "you are the only person..."
            announce_count: true              # "there are 3 other participants..."

Errors name the key relative to the feature's section
(``rooms.801.pin``); the plugin loader puts ``features.conference.`` in
front.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

from attrs import field, frozen

from pbx.errors import ConfigError
from pbx.validation import extension_number_problem, pin_format_problem, text_problem

__all__ = ["ConferenceOptions", "RoomOptions", "parse_options"]

_ROOM = re.compile(r"[0-9]{1,20}")
_FEATURE_KEYS = frozenset({"rooms"})
_ROOM_KEYS = frozenset({
    "pin", "moderator_pin", "moderators", "wait_for_moderator", "end_with_moderator",
    "max_participants", "music", "sounds", "announce", "music_class", "record", "record_key",
    "record_tone", "announce_count",
})
#: Keys after ``*`` the room uses itself (mute, lock): not a recording key.
_TAKEN_KEYS = frozenset({"5", "6"})
_CLASS = re.compile(r"[A-Za-z0-9_.-]{1,64}")
#: The most participants one room may be configured for.
MAX_PARTICIPANTS = 500


@frozen
class RoomOptions:
    """How one room is configured."""

    number: str
    """The room's number: what callers dial, or a route's ``args: {room: ...}``."""
    pin: str = ""
    """The participants' PIN; "" for none."""
    moderator_pin: str = ""
    """The moderators' PIN; "" for none."""
    moderators: frozenset[str] = field(factory=frozenset)
    """Extensions that join as moderators without a PIN."""
    wait_for_moderator: bool = False
    """Participants hear hold music until a moderator has joined."""
    end_with_moderator: bool = False
    """When the last moderator leaves, everyone else is hung up."""
    max_participants: int = 50
    music: str = ""
    """A WAV file played while waiting for a moderator; "" for the generated music."""
    sounds: bool = True
    """Join and leave tones."""
    announce: bool = True
    """Tell a caller who joins an empty room that they are alone."""
    music_class: str = ""
    """A music-on-hold class (``moh: classes:``) played while waiting; "" for none."""
    record: bool = False
    """Record the room whenever someone is in it."""
    record_key: str = "1"
    """The key after ``*`` with which a moderator starts or stops recording; "" for none."""
    record_tone: bool = True
    """Everyone in the room hears a tone when recording starts."""
    announce_count: bool = False
    """Tell a caller who joins how many others are in the room."""

    @property
    def has_moderators(self) -> bool:
        """Whether anyone can join as a moderator."""
        return bool(self.moderator_pin or self.moderators)


@frozen
class ConferenceOptions:
    """Every configured room, by number."""

    rooms: Mapping[str, RoomOptions] = field(factory=dict)


def _flag(raw: Mapping[str, Any], key: str, where: str, default: bool) -> bool:
    value = raw.get(key, default)
    if not isinstance(value, bool):
        raise ConfigError(f"{where}.{key}", "must be true or false")
    return value


def _digits(value: Any, key: str, problem: Callable[[Any], str | None]) -> str:
    """Digits (a YAML integer is taken as its digits) that pass ``problem``, the shared check."""
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    trouble = problem(value)
    if trouble is not None:
        raise ConfigError(key, trouble)
    return str(value)


def parse_room(number: str, raw: Any, where: str) -> RoomOptions:
    """
    Validate one room.

    :raises ConfigError: naming the first bad key.
    """
    if raw is None:
        raw = {}
    if not isinstance(raw, Mapping):
        raise ConfigError(where, "must be a mapping")
    unknown = sorted(str(k) for k in raw if k not in _ROOM_KEYS)
    if unknown:
        raise ConfigError(f"{where}.{unknown[0]}", "unknown key")
    pins = {}
    for key in ("pin", "moderator_pin"):
        value = raw.get(key)
        pins[key] = "" if value in (None, "") else _digits(value, f"{where}.{key}", pin_format_problem)
    if pins["pin"] and pins["pin"] == pins["moderator_pin"]:
        raise ConfigError(f"{where}.moderator_pin", "must differ from pin")
    moderators = raw.get("moderators", [])
    if not isinstance(moderators, list):
        raise ConfigError(f"{where}.moderators", "must be a list of extension numbers")
    numbers = frozenset(
        _digits(m, f"{where}.moderators[{i}]", extension_number_problem)
        for i, m in enumerate(moderators)
    )
    limit = raw.get("max_participants", 50)
    if isinstance(limit, bool) or not isinstance(limit, int) or not 2 <= limit <= MAX_PARTICIPANTS:
        raise ConfigError(f"{where}.max_participants", f"must be a whole number from 2 to {MAX_PARTICIPANTS}")
    music = raw.get("music", "")
    trouble = text_problem(music, 4096)
    if trouble is not None:
        raise ConfigError(f"{where}.music", trouble)
    if music and not (music.startswith("/") and music.endswith(".wav")):
        raise ConfigError(f"{where}.music", "must be the absolute path of a .wav file")
    if music and raw.get("music_class"):
        raise ConfigError(f"{where}.music_class", "give music or music_class, not both")
    music_class = raw.get("music_class", "")
    if music_class and (not isinstance(music_class, str) or not _CLASS.fullmatch(music_class)):
        raise ConfigError(f"{where}.music_class", "must be the name of a class in moh.classes")
    record_key = raw.get("record_key", "1")
    if isinstance(record_key, int) and not isinstance(record_key, bool):
        record_key = str(record_key)
    if record_key is None or record_key is False:
        record_key = ""
    if not isinstance(record_key, str) or (record_key and not re.fullmatch(r"[0-9]", record_key)):
        raise ConfigError(f"{where}.record_key", "must be one digit (pressed after *), or empty")
    if record_key in _TAKEN_KEYS:
        raise ConfigError(f"{where}.record_key", "*5 locks and *6 mutes: choose another digit")
    room = RoomOptions(
        number=number,
        pin=pins["pin"],
        moderator_pin=pins["moderator_pin"],
        moderators=numbers,
        wait_for_moderator=_flag(raw, "wait_for_moderator", where, False),
        end_with_moderator=_flag(raw, "end_with_moderator", where, False),
        max_participants=limit,
        music=music,
        sounds=_flag(raw, "sounds", where, True),
        announce=_flag(raw, "announce", where, True),
        music_class=music_class or "",
        record=_flag(raw, "record", where, False),
        record_key=record_key,
        record_tone=_flag(raw, "record_tone", where, True),
        announce_count=_flag(raw, "announce_count", where, False),
    )
    needs = (("wait_for_moderator", room.wait_for_moderator), ("end_with_moderator", room.end_with_moderator))
    for key, on in needs:
        if on and not room.has_moderators:
            raise ConfigError(f"{where}.{key}", "needs moderator_pin or moderators")
    return room


def parse_options(raw: Any) -> ConferenceOptions:
    """
    Validate the feature's section.

    :raises ConfigError: naming the first bad key, relative to the section.
    """
    if raw is None:
        raw = {}
    if not isinstance(raw, Mapping):
        raise ConfigError("conference", "must be a mapping")
    unknown = sorted(str(k) for k in raw if k not in _FEATURE_KEYS)
    if unknown:
        raise ConfigError(unknown[0], "unknown key")
    rooms_raw = raw.get("rooms") or {}
    if not isinstance(rooms_raw, Mapping):
        raise ConfigError("rooms", "must be a mapping of room number to room")
    rooms = {}
    for key, value in rooms_raw.items():
        number = str(key) if isinstance(key, int) and not isinstance(key, bool) else key
        if not isinstance(number, str) or not _ROOM.fullmatch(number):
            raise ConfigError(f"rooms.{key}", "a room number is 1 to 20 digits")
        rooms[number] = parse_room(number, value, f"rooms.{number}")
    return ConferenceOptions(rooms=rooms)
