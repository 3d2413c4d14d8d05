"""
Live conference rooms: who is in each, its mix, its lock, and what
happens to the others when someone comes, goes, is muted or is kicked.

A :class:`Room` exists while someone is in it (:class:`Rooms` makes it
from the room's options at the first arrival and forgets it when the last
one leaves, so a lock does not outlive the meeting).  A participant is
first *admitted* (counted, refused when the room is locked or full), may
then wait for a moderator (the application plays music meanwhile), and
*enters*: from then on it is in the room's :class:`~pbx.media.mix.Mix`.

The mix runs at 8 kHz until a participant with a wideband codec (G.722,
Opus: a channel rate above 8 kHz) enters; then every member moves to a
new 16 kHz mix, and back to 8 kHz when the last wideband participant
leaves.  Mute states move with them.

A room may be recorded (its ``record`` option, a moderator's key, the
API): a :class:`~pbx.features.conference.taping.RoomTape` listens to the
mix and hands it to the recording feature, found through
:class:`~pbx.features.recording.interfaces.IRoomRecordings`; the recording
ends when nobody is left in the mix.

Nothing here waits: the dialplan application (:mod:`.app`) drives each
participant's own channel; the room only plays short sounds to the
others, mutes them in the mix, and hangs them up.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from itertools import count
from typing import Any

from attrs import Factory, define, field

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from pbx.features.conference.options import ConferenceOptions, RoomOptions
from pbx.features.conference.sounds import Sounds
from pbx.features.conference.taping import (
    AlreadyRecording,
    NoRecorder,
    NotRecording,
    RoomTape,
)
from pbx.features.recording.interfaces import IRoomRecordings
from pbx.interfaces import IChannel
from pbx.media.channel import HungUp
from pbx.media.mix import Mix

__all__ = ["Participant", "Room", "RoomFull", "RoomLocked", "Rooms"]

#: Above this channel rate a participant is wideband and the mix runs at 16 kHz.
NARROWBAND = 8000
WIDEBAND = 16000


class RoomLocked(Exception):
    """The room is locked: only moderators may come in."""


class RoomFull(Exception):
    """The room has its ``max_participants``."""


@define(eq=False)
class Participant:
    """
    One caller in a room.

    :ivar id: unique among all rooms while the PBX runs (the API's handle).
    :ivar waiting: admitted but not in the mix yet (waiting for a moderator).
    """

    id: str
    channel: IChannel
    moderator: bool
    joined_at: float
    muted: bool = False
    waiting: bool = True

    def describe(self) -> dict[str, Any]:
        """The participant as the API shows it."""
        return {
            "id": self.id,
            "caller": self.channel.caller,
            "caller_name": self.channel.caller_name,
            "moderator": self.moderator,
            "muted": self.muted,
            "waiting": self.waiting,
            "joined_at": self.joined_at,
        }


@define(eq=False)
class Room:
    """
    One room while someone is in it.

    :param options: how the room is configured.
    :param sounds: the join and leave tones.
    """

    options: RoomOptions
    sounds: Sounds
    mix: Mix = Factory(Mix)
    locked: bool = False
    _participants: dict[str, Participant] = field(factory=dict)
    recordings: Callable[[], IRoomRecordings | None] = lambda: None
    """The recording feature's room recorder (:meth:`pbx.interfaces.IPBX.lookup`), if enabled."""
    tape: RoomTape | None = None
    """The room's recording while it runs."""
    log = Logger()

    @property
    def number(self) -> str:
        """The room's number."""
        return self.options.number

    @property
    def participants(self) -> list[Participant]:
        """Everyone admitted, in the order they came."""
        return list(self._participants.values())

    def __len__(self) -> int:
        return len(self._participants)

    def __iter__(self) -> Iterator[Participant]:
        return iter(self.participants)

    def get(self, participant_id: str) -> Participant:
        """
        A participant by id.

        :raises KeyError: if there is none in this room.
        """
        return self._participants[participant_id]

    @property
    def moderator_present(self) -> bool:
        """Whether a moderator is in the room."""
        return any(p.moderator for p in self._participants.values())

    def in_mix(self) -> list[Participant]:
        """The participants who have entered (are heard and hear the others)."""
        return [p for p in self._participants.values() if not p.waiting]

    def describe(self) -> dict[str, Any]:
        """The live state as the API shows it."""
        return {
            "participants": len(self._participants),
            "locked": self.locked,
            "moderator_present": self.moderator_present,
            "sample_rate": self.mix.sample_rate,
            "recording": self.tape.recording_id if self.tape is not None else None,
        }

    # -- coming and going ----------------------------------------------------

    def admit(self, participant: Participant) -> None:
        """
        Count ``participant`` in (not heard yet: see :meth:`enter`).

        :raises RoomLocked: for a participant who is not a moderator when locked.
        :raises RoomFull: at ``max_participants``.
        """
        if self.locked and not participant.moderator:
            raise RoomLocked(self.number)
        if len(self._participants) >= self.options.max_participants:
            raise RoomFull(self.number)
        self._participants[participant.id] = participant

    def must_wait(self, participant: Participant) -> bool:
        """Whether ``participant`` waits for a moderator before entering."""
        return self.options.wait_for_moderator and not participant.moderator and not self.moderator_present

    def enter(self, participant: Participant) -> None:
        """
        Put an admitted participant into the mix; the others hear the join
        tone.  A moderator's entry ends everyone's wait (their music stops
        and their application enters them).

        :raises HungUp: if the participant's call has ended.
        """
        if participant.id not in self._participants or not participant.waiting:
            return
        participant.waiting = False
        participant.channel.join(self.mix)
        self.mix.set_muted(participant.channel, participant.muted)
        self._fit_rate()
        self._sound("join", exclude=participant)
        if self.tape is not None:
            self.tape.recorder.joined(participant.channel.caller)
        elif self.options.record:
            self._record_by_config()
        if participant.moderator:
            for waiting in [p for p in self._participants.values() if p.waiting]:
                waiting.channel.stop_playing()

    def remove(self, participant: Participant) -> list[Participant]:
        """
        Take ``participant`` out: out of the mix, the others hear the leave
        tone; when the room ends with its last moderator, every other
        participant is hung up (after "goodbye").

        :returns: the participants dismissed because the room ended.
        """
        if self._participants.pop(participant.id, None) is None:
            return []
        was_in = not participant.waiting
        participant.waiting = True
        participant.channel.leave()
        if not was_in:
            return []
        self._fit_rate()
        if participant.moderator and self.options.end_with_moderator and not self.moderator_present:
            dismissed = self.participants
            for other in dismissed:
                self.dismiss(other)
            return dismissed
        self._sound("leave")
        return []

    def dismiss(self, participant: Participant) -> Deferred[None]:
        """Say goodbye to ``participant`` and hang up (the room ended)."""
        return Deferred.fromCoroutine(self._dismiss(participant))

    async def _dismiss(self, participant: Participant) -> None:
        channel = participant.channel
        try:
            channel.stop_playing()
            await channel.play(["general/goodbye"])
            await channel.hangup()
        except HungUp:
            pass
        except Exception:
            self.log.failure("conference {room}: ending the call of {caller} failed",
                             room=self.number, caller=channel.caller)

    # -- control -------------------------------------------------------------

    def set_muted(self, participant: Participant, muted: bool) -> None:
        """Mute or unmute a participant: muted, they still hear everyone."""
        participant.muted = muted
        if not participant.waiting:
            self.mix.set_muted(participant.channel, muted)

    def start_recording(self, started_by: str) -> RoomTape:
        """
        Record the room's mix from now on, with everyone who has entered
        noted as a participant; everyone in it hears the recording tone.

        :param started_by: ``config``, ``keys:<caller>`` or ``api:<user>``.
        :raises NoRecorder: if the recording feature is not enabled (or not
            running yet).
        :raises AlreadyRecording: if the room is being recorded.
        """
        if self.tape is not None:
            raise AlreadyRecording(self.number)
        recordings = self.recordings()
        if recordings is None:
            raise NoRecorder(self.number)
        callers = [p.channel.caller for p in self.in_mix()]
        try:
            recorder = recordings.start(self.number, self.mix.sample_rate, callers, started_by)
        except RuntimeError as e:
            raise NoRecorder(self.number) from e
        self.tape = RoomTape(recorder, started_by)
        self.tape.attach(self.mix)
        if self.options.record_tone:
            self._sound("record", always=True)
        return self.tape

    def stop_recording(self) -> Deferred[dict[str, Any] | None]:
        """
        Stop recording the room.

        :returns: a Deferred firing with the recording's final metadata once
            its file is complete.
        :raises NotRecording: if the room is not being recorded.
        """
        tape, self.tape = self.tape, None
        if tape is None:
            raise NotRecording(self.number)
        tape.detach()
        d: Deferred[dict[str, Any] | None] = tape.recorder.stop()
        return d

    def _record_by_config(self) -> None:
        try:
            self.start_recording("config")
        except NoRecorder:
            self.log.warn("conference {room}: record is set but the recording feature is not enabled",
                          room=self.number)
        except Exception:
            self.log.failure("conference {room}: starting the recording failed", room=self.number)

    def kick(self, participant: Participant) -> Deferred[None]:
        """Hang up a participant (their application then removes them)."""
        return participant.channel.hangup()

    # -- internals -----------------------------------------------------------

    def _fit_rate(self) -> None:
        """Move everyone to a 16 kHz mix when someone is wideband, back to 8 kHz when nobody is."""
        members = self.in_mix()
        wanted = WIDEBAND if any(p.channel.rate > NARROWBAND for p in members) else NARROWBAND
        if wanted == self.mix.sample_rate:
            return
        self.mix = Mix(wanted)
        for p in members:
            p.channel.join(self.mix)
            self.mix.set_muted(p.channel, p.muted)
        if self.tape is not None:
            self.tape.attach(self.mix)
        self.log.info("conference {room}: mixing at {rate} Hz", room=self.number, rate=wanted)

    def _sound(self, name: str, exclude: Participant | None = None, always: bool = False) -> None:
        """
        Play a tone to everyone in the mix but ``exclude`` who is not hearing
        something else: join and leave tones when the room has ``sounds``,
        others (``always``) regardless.
        """
        if not (self.options.sounds or always):
            return
        for p in self.in_mix():
            if p is exclude or p.channel.hung_up:
                continue
            d = p.channel.play([self.sounds.path(name, p.channel.rate)])
            # Someone hearing a prompt of their own ("already playing") or
            # gone meanwhile just misses the tone.
            d.addErrback(lambda _: None)


@define(eq=False)
class Rooms:
    """
    Every room: their options, and the live ones.

    :param options: the configured rooms.
    :param sounds: the join and leave tones.
    :param clock: for participants' join times.
    """

    options: ConferenceOptions
    sounds: Sounds
    clock: IReactorTime
    recordings: Callable[[], IRoomRecordings | None] = lambda: None
    """The recording feature's room recorder, looked up when a room starts recording."""
    _live: dict[str, Room] = field(factory=dict)
    _ids: Iterator[int] = field(factory=lambda: count(1))
    log = Logger()

    def configured(self, number: str) -> RoomOptions | None:
        """The options of room ``number``, or None if there is no such room."""
        return self.options.rooms.get(number)

    def live(self, number: str) -> Room | None:
        """Room ``number`` if someone is in it."""
        return self._live.get(number)

    def admit(self, number: str, channel: IChannel, moderator: bool) -> tuple[Room, Participant]:
        """
        Admit the caller on ``channel`` to room ``number``.

        :raises KeyError: if no such room is configured.
        :raises RoomLocked: see :meth:`Room.admit`.
        :raises RoomFull: see :meth:`Room.admit`.
        """
        room = self._live.get(number)
        if room is None:
            room = Room(self.options.rooms[number], self.sounds, recordings=self.recordings)
        participant = Participant(str(next(self._ids)), channel, moderator, self.clock.seconds())
        room.admit(participant)
        self._live[number] = room
        self.log.info("conference {room}: {caller} joined{role} ({count} in the room)", room=number,
                      caller=channel.caller or "anonymous", role=" as moderator" if moderator else "",
                      count=len(room))
        return room, participant

    def recorded(self) -> list[Room]:
        """The live rooms being recorded."""
        return [room for room in self._live.values() if room.tape is not None]

    def leave(self, room: Room, participant: Participant) -> None:
        """Take ``participant`` out of ``room``; an empty room is forgotten."""
        if participant.id not in {p.id for p in room}:
            return
        dismissed = room.remove(participant)
        self.log.info("conference {room}: {caller} left ({count} in the room)", room=room.number,
                      caller=participant.channel.caller or "anonymous", count=len(room))
        if dismissed:
            self.log.info("conference {room}: the last moderator left; the conference ends", room=room.number)
        if not len(room) and self._live.get(room.number) is room:
            del self._live[room.number]
        if not room.in_mix() and room.tape is not None:
            # Nobody left to hear: the recording ends with the meeting.
            room.stop_recording().addErrback(
                lambda f: self.log.failure("conference {room}: finishing the recording failed", f,
                                           room=room.number))
