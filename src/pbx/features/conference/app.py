"""
The ``conference`` dialplan application: a caller joins a meet-me room.

A route names the room (``{app: conference, args: {room: "800"}}``), or
the number dialled is the room (``{match: "_8XX", app: conference}``).
Then:

- a room with a PIN asks for it (``vm/enter-password``); a room with only
  a moderator PIN asks too, and an empty entry (just ``#``) joins as a
  participant.  Three wrong entries end the call; wrong PINs count in the
  PBX's lockout under the room, so a guesser who calls again is refused.
  Extensions listed in ``moderators`` are moderators without a PIN;
- a locked room refuses everyone but moderators, a full room everyone
  (``general/not-available``);
- with ``wait_for_moderator``, a participant hears music until a
  moderator joins: the room's ``music`` file, its ``music_class`` (a
  music-on-hold class), or the generated music;
- a caller who comes into a room being recorded hears the recording tone
  (unless ``record_tone`` is off);
- a caller alone in the room hears ``conf/only-person``; with
  ``announce_count``, a caller who joins others hears how many ("there
  are three other participants in this conference");
- in the room, keys: ``*6`` mutes or unmutes one's own line
  (``conf/muted``, ``conf/unmuted``), ``*5`` locks or unlocks the room for
  a moderator (a beep says it was done), and the room's ``record_key``
  (``*1``) starts or stops recording the room for a moderator (everyone
  hears the recording tone when it starts; the moderator a beep when it
  stops, ``general/not-available`` when the recording feature is off).
"""

from __future__ import annotations

import hmac
from typing import Any

from zope.interface import implementer

from twisted.internet.defer import Deferred
from twisted.logger import Logger

from pbx.features.conference.room import Participant, Room, RoomFull, RoomLocked, Rooms
from pbx.features.conference.sounds import Sounds
from pbx.features.conference.taping import NoRecorder
from pbx.interfaces import IChannel, IDialplanApplication
from pbx.media.channel import HungUp
from pbx.security.lockout import Lockout

__all__ = ["PIN_ATTEMPTS", "Conference"]

#: PIN entries one call may get wrong.
PIN_ATTEMPTS = 3
#: Seconds to enter a PIN.
PIN_TIMEOUT = 10.0
#: Seconds allowed between ``*`` and the key after it.
COMMAND_TIMEOUT = 3.0
#: How long one wait for a key in the room lasts (it is simply renewed).
IDLE = 3600.0
#: The in-room keys after ``*``.
MUTE_KEY, LOCK_KEY = "6", "5"


@implementer(IDialplanApplication)
class Conference:
    """
    The meet-me conference application.

    :param rooms: the configured and live rooms.
    :param sounds: the generated sounds (hold music).
    :param lockout: where wrong PINs are counted (the PBX's).
    """

    name = "conference"
    log = Logger()

    def __init__(self, rooms: Rooms, sounds: Sounds, lockout: Lockout) -> None:
        self.rooms = rooms
        self.sounds = sounds
        self.lockout = lockout

    def run(self, channel: IChannel, args: Any) -> Deferred[None]:
        """Bring the caller into the room until they hang up (or are hung up)."""
        return Deferred.fromCoroutine(self._run(channel, args))

    async def _run(self, channel: IChannel, args: Any) -> None:
        await channel.answer()
        try:
            await self._call(channel, args)
        except HungUp:
            return
        if not channel.hung_up:
            await channel.hangup()

    async def _call(self, channel: IChannel, args: Any) -> None:
        room_arg = args.get("room") if isinstance(args, dict) else None
        number = str(room_arg) if room_arg is not None else channel.callee
        options = self.rooms.configured(number)
        if options is None:
            self.log.warn("conference: no room {number!r}", number=number)
            await channel.play(["general/invalid-number", "general/goodbye"])
            return
        moderator = await self._authorize(channel, number)
        if moderator is None:
            return
        try:
            room, participant = self.rooms.admit(number, channel, moderator)
        except (RoomLocked, RoomFull) as e:
            why = "locked" if isinstance(e, RoomLocked) else "full"
            self.log.info("conference {room}: {caller} refused, the room is {why}", room=number,
                          caller=channel.caller or "anonymous", why=why)
            await channel.play(["general/not-available", "general/goodbye"])
            return
        try:
            await self._attend(room, participant)
        finally:
            self.rooms.leave(room, participant)

    async def _authorize(self, channel: IChannel, number: str) -> bool | None:
        """Whether the caller moderates (None: refused, told so)."""
        options = self.rooms.configured(number)
        assert options is not None
        if channel.caller and channel.caller in options.moderators:
            return True
        if not options.pin and not options.moderator_pin:
            return False
        key = ("conference", number)
        for _ in range(PIN_ATTEMPTS):
            if self.lockout.is_locked(key):
                self.log.warn("conference {room}: {caller} refused, PIN entry locked out", room=number,
                              caller=channel.caller or "anonymous")
                break
            # The key that cuts the prompt short is the PIN's first ("#": an empty PIN).
            first = await channel.play(["vm/enter-password"], interrupt="0123456789#") or ""
            entered = "" if first == "#" else first + await channel.collect_digits(
                max_digits=12 - len(first), timeout=PIN_TIMEOUT, terminator="#")
            if options.moderator_pin and hmac.compare_digest(entered, options.moderator_pin):
                self.lockout.record_success(key)
                return True
            if options.pin and hmac.compare_digest(entered, options.pin):
                self.lockout.record_success(key)
                return False
            if not options.pin and entered == "":
                return False
            self.lockout.record_failure(key)
            self.log.info("conference {room}: wrong PIN from {caller}", room=number,
                          caller=channel.caller or "anonymous")
            await channel.play(["vm/password-incorrect"])
        await channel.play(["general/goodbye"])
        return None

    async def _attend(self, room: Room, participant: Participant) -> None:
        """Wait for a moderator if need be, enter, then act on keys until the call ends."""
        channel = participant.channel
        if room.must_wait(participant):
            await self._hold(room, participant)
        room.enter(participant)
        others = len(room.in_mix()) - 1
        intro = []
        if room.tape is not None and room.options.record_tone:
            # Whoever comes into a room being recorded hears so too.
            intro.append(self.sounds.path("record", channel.rate))
        if room.options.announce and others == 0:
            intro.append("conf/only-person")
        elif room.options.announce_count and others > 0:
            intro += self._count(channel, others)
        if intro:
            await self._say(channel, intro)
        while True:
            key = await channel.collect_digits(max_digits=1, timeout=IDLE, terminator="")
            if key != "*":
                continue
            command = await channel.collect_digits(max_digits=1, timeout=COMMAND_TIMEOUT, terminator="")
            if command == MUTE_KEY:
                room.set_muted(participant, not participant.muted)
                self.log.info("conference {room}: {caller} {state} their line", room=room.number,
                              caller=channel.caller or "anonymous",
                              state="muted" if participant.muted else "unmuted")
                await self._say(channel, ["conf/muted" if participant.muted else "conf/unmuted"])
            elif command and command == room.options.record_key and participant.moderator:
                await self._toggle_recording(room, participant)
            elif command == LOCK_KEY and participant.moderator:
                room.locked = not room.locked
                self.log.info("conference {room}: {state} by {caller}", room=room.number,
                              state="locked" if room.locked else "unlocked", caller=channel.caller or "anonymous")
                await self._say(channel, ["general/beep"])

    async def _toggle_recording(self, room: Room, participant: Participant) -> None:
        """A moderator's record key: start recording the room, or stop it."""
        channel = participant.channel
        who = channel.caller or "anonymous"
        if room.tape is None:
            try:
                room.start_recording(f"keys:{who}")
            except NoRecorder:
                self.log.warn("conference {room}: {caller} asked for a recording; the recording "
                              "feature is not enabled", room=room.number, caller=who)
                await self._say(channel, ["general/not-available"])
                return
            self.log.info("conference {room}: recording started by {caller}", room=room.number, caller=who)
            return
        finished = room.stop_recording()
        finished.addErrback(lambda f: self.log.failure(
            "conference {room}: finishing the recording failed", f, room=room.number))
        self.log.info("conference {room}: recording stopped by {caller}", room=room.number, caller=who)
        await self._say(channel, ["general/beep"])

    async def _hold(self, room: Room, participant: Participant) -> None:
        """
        Music until a moderator comes in (:meth:`Room.enter` stops it): the
        room's own file, else the generated music, else a ringback tone.
        """
        channel = participant.channel
        music = [room.options.music] if room.options.music else []
        if room.options.music_class:
            music.append(self.sounds.music_path(room.options.music_class, channel.rate))
        music.append(self.sounds.path("music", channel.rate))
        while room.must_wait(participant):
            if not music:
                await channel.tone("ringback", 6.0)
                continue
            try:
                await channel.play([music[0]])
            except HungUp:
                raise
            except Exception as e:
                self.log.error("conference {room}: cannot play {path}: {error}", room=room.number,
                               path=music.pop(0), error=str(e))

    @staticmethod
    def _count(channel: IChannel, others: int) -> list[str]:
        """The prompts that tell a caller how many others are in the room."""
        if others == 1:
            return ["conf/one-other"]
        return ["conf/there-are", *channel.prompts.say_number(others), "conf/other-participants"]

    @staticmethod
    async def _say(channel: IChannel, items: list[str]) -> None:
        """
        Play to this participant only, cutting off a join or leave tone (one
        that starts meanwhile is cut off in turn).
        """
        for _ in range(3):
            channel.stop_playing()
            try:
                await channel.play(items)
                return
            except RuntimeError:
                continue
