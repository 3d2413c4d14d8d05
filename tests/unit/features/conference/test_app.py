"""
Tests for :mod:`pbx.features.conference.app` and :mod:`.room`: callers in
meet-me rooms, on real channels ticked together on a :class:`task.Clock`
(:class:`support.conference.Meeting`): who hears whom, keys, PINs,
moderators, locks, waiting music, the end of a room and its mix rate.
"""

from __future__ import annotations

from zope.interface.verify import verifyObject

from twisted.trial.unittest import SynchronousTestCase

from pbx.interfaces import IChannel, IDialplanApplication
from pbx.media.codecs import G722

from support.conference import SOUNDS, Meeting, Phone

OPEN = "rooms: {800: {}, 801: {max_participants: 2}}"
PINS = """
rooms:
  "800": {pin: "1234", moderator_pin: "9876"}
  "801": {moderator_pin: "9876"}
  "802": {moderators: ["1001"], pin: "1234"}
"""
MODERATED = """
rooms:
  "800": {moderators: ["1001"], wait_for_moderator: true, end_with_moderator: true}
"""


class MeetingTestCase(SynchronousTestCase):
    """A meeting with the rooms of :attr:`ROOMS`; every call must have ended at the end."""

    ROOMS = OPEN

    def setUp(self) -> None:
        """The meeting."""
        self.meeting = Meeting(self.ROOMS)

    def tearDown(self) -> None:
        """Everyone hangs up: every application returns, no room is left, no timer."""
        self.meeting.hang_up_all()
        self.meeting.run(0.1)
        for phone in self.meeting.phones:
            self.successResultOf(phone.done)
        self.assertEqual([n for n in self.meeting.rooms.options.rooms if self.meeting.rooms.live(n)], [])
        self.assertEqual(self.meeting.clock.getDelayedCalls(), [])

    def participant(self, phone: Phone, room: str = "800") -> object:
        """The room's participant on ``phone``'s channel."""
        live = self.meeting.rooms.live(room)
        assert live is not None
        [p] = [p for p in live if p.channel is phone.channel]
        return p


class MixTests(MeetingTestCase):
    """Everyone hears everyone else."""

    def test_application(self) -> None:
        """The application provides IDialplanApplication as ``conference``; a Channel has the rate it reads."""
        self.assertTrue(verifyObject(IDialplanApplication, self.meeting.app))
        self.assertEqual(self.meeting.app.name, "conference")
        phone = self.meeting.call("1001")
        self.assertTrue(verifyObject(IChannel, phone.channel))
        self.assertEqual(phone.channel.rate, 8000)

    def test_each_hears_the_others_not_itself(self) -> None:
        """Three callers with their own tones: each hears the other two and not its own."""
        tones = {"1001": 440.0, "1002": 700.0, "1003": 1100.0}
        phones = [self.meeting.call(n, frequency=f) for n, f in tones.items()]
        self.meeting.run(1.0)
        for phone in phones:
            for other, frequency in tones.items():
                share = phone.hears(frequency)
                if other == phone.number:
                    self.assertLess(share, 0.05, f"{phone.number} hears itself")
                else:
                    self.assertGreater(share, 0.5, f"{phone.number} does not hear {other}")

    def test_alone(self) -> None:
        """The first caller hears that they are alone; the second does not."""
        first = self.meeting.call("1001")
        self.meeting.run(0.2)
        second = self.meeting.call("1002")
        self.meeting.run(0.2)
        self.assertIn("conf/only-person", first.played)
        self.assertNotIn("conf/only-person", second.played)

    def test_join_and_leave_tones(self) -> None:
        """Those in the room hear the join tone when someone comes and the leave tone when they go."""
        first = self.meeting.call("1001")
        self.meeting.run(0.2)
        second = self.meeting.call("1002")
        self.meeting.run(0.2)
        self.assertIn("join-8000.wav", first.played)
        self.assertNotIn("join-8000.wav", second.played)
        second.hang_up()
        self.meeting.run(0.2)
        self.successResultOf(second.done)
        self.assertIn("leave-8000.wav", first.played)

    def test_room_from_args(self) -> None:
        """A route's ``room`` argument picks the room, whatever was dialled."""
        phone = self.meeting.call("1001", room="*88", args={"room": 801})
        self.meeting.run(0.1)
        self.assertIsNotNone(self.meeting.rooms.live("801"))
        self.assertFalse(phone.channel.hung_up)

    def test_no_such_room(self) -> None:
        """A number that is no room is told so and hung up."""
        phone = self.meeting.call("1001", room="899")
        self.meeting.run(0.5)
        self.successResultOf(phone.done)
        self.assertEqual(phone.played, ["general/invalid-number", "general/goodbye"])
        self.assertEqual(phone.hangups, ["normal"])

    def test_full(self) -> None:
        """A caller beyond ``max_participants`` is refused."""
        phones = [self.meeting.call(n, room="801") for n in ("1001", "1002", "1003")]
        self.meeting.run(0.5)
        self.successResultOf(phones[2].done)
        self.assertEqual(phones[2].played, ["general/not-available", "general/goodbye"])
        self.assertEqual(len(self.meeting.rooms.live("801") or ()), 2)


class KeyTests(MeetingTestCase):
    """Keys in the room."""

    def test_mute_and_unmute_own_line(self) -> None:
        """*6 mutes the caller (the others stop hearing them, they still hear the others); *6 again unmutes."""
        a = self.meeting.call("1001", frequency=440.0)
        b = self.meeting.call("1002", frequency=1000.0)
        self.meeting.run(0.5)
        a.press("*6")
        self.meeting.run(1.0)
        self.assertEqual(a.played[-1], "conf/muted")
        self.assertTrue(self.participant(a).muted)
        self.assertLess(b.hears(440.0), 0.05)
        self.assertGreater(a.hears(1000.0), 0.5)
        a.press("*6")
        self.meeting.run(1.0)
        self.assertEqual(a.played[-1], "conf/unmuted")
        self.assertGreater(b.hears(440.0), 0.5)

    def test_other_keys_do_nothing(self) -> None:
        """Single keys, ``*`` with another key, and a lone ``*`` change nothing."""
        a = self.meeting.call("1001", frequency=440.0)
        b = self.meeting.call("1002")
        self.meeting.run(0.5)
        a.press("5*9*")
        self.meeting.run(4.0)
        self.assertFalse(self.participant(a).muted)
        self.assertGreater(b.hears(440.0), 0.5)


class PinTests(MeetingTestCase):
    """PINs and moderators."""

    ROOMS = PINS

    def enter(self, number: str, pin: str, room: str = "800") -> Phone:
        """Call ``room`` and type ``pin`` during the PIN prompt."""
        phone = self.meeting.call(number, room=room)
        self.assertEqual(phone.played, ["vm/enter-password"])
        phone.press(pin)
        self.meeting.run(0.5)
        return phone

    def test_participant_pin(self) -> None:
        """The participants' PIN lets the caller in as a participant."""
        phone = self.enter("1001", "1234#")
        self.assertFalse(self.participant(phone).moderator)

    def test_moderator_pin(self) -> None:
        """The moderators' PIN lets the caller in as a moderator."""
        phone = self.enter("1001", "9876#")
        self.assertTrue(self.participant(phone).moderator)

    def test_three_wrong_pins(self) -> None:
        """Three wrong PINs: told so each time, then goodbye and hung up, never in the room."""
        phone = self.meeting.call("1001")
        for _ in range(3):
            phone.press("1111#")
            self.meeting.run(0.5)
        self.successResultOf(phone.done)
        self.assertEqual(phone.played, ["vm/enter-password", "vm/password-incorrect"] * 3 + ["general/goodbye"])
        self.assertEqual(phone.hangups, ["normal"])
        self.assertIsNone(self.meeting.rooms.live("800"))

    def test_timeout_counts_as_wrong(self) -> None:
        """No entry at all is a wrong PIN where participants need one."""
        phone = self.meeting.call("1001")
        self.meeting.run(35.0)
        self.successResultOf(phone.done)
        self.assertEqual(phone.played.count("vm/password-incorrect"), 3)

    def test_lockout(self) -> None:
        """Wrong PINs count in the PBX's lockout: after enough, a caller is refused before the prompt."""
        for n in range(2):
            phone = self.meeting.call(f"100{n}")
            for _ in range(3):
                phone.press("1111#")
                self.meeting.run(0.5)
            self.successResultOf(phone.done)
        self.assertTrue(self.meeting.pbx.lockout.is_locked(("conference", "800")))
        phone = self.meeting.call("1009")
        self.meeting.run(0.5)
        self.successResultOf(phone.done)
        self.assertEqual(phone.played, ["general/goodbye"])
        # The lockout expires; its timer is not the application's.
        self.meeting.clock.advance(3600)

    def test_only_moderator_pin_empty_entry(self) -> None:
        """With only a moderators' PIN, ``#`` alone joins as a participant."""
        phone = self.enter("1001", "#", room="801")
        self.assertFalse(self.participant(phone, "801").moderator)

    def test_key_during_prompt_starts_pin(self) -> None:
        """A key that cuts the PIN prompt short is the PIN's first digit."""
        phone = self.meeting.call("1001", room="801")
        phone.press("9")
        self.meeting.run(0.1)
        phone.press("876#")
        self.meeting.run(0.5)
        self.assertTrue(self.participant(phone, "801").moderator)

    def test_listed_moderator_needs_no_pin(self) -> None:
        """An extension listed in ``moderators`` joins as a moderator without the prompt; others need the PIN."""
        boss = self.meeting.call("1001", room="802")
        self.meeting.run(0.2)
        self.assertNotIn("vm/enter-password", boss.played)
        self.assertTrue(self.participant(boss, "802").moderator)
        other = self.meeting.call("1002", room="802")
        self.assertEqual(other.played, ["vm/enter-password"])

    def test_moderator_locks(self) -> None:
        """*5 from a moderator locks the room: a participant is refused, a moderator still comes in; *5 unlocks."""
        boss = self.enter("1001", "9876#")
        boss.press("*5")
        self.meeting.run(0.5)
        self.assertTrue(self.meeting.rooms.live("800").locked)
        refused = self.enter("1002", "1234#")
        self.successResultOf(refused.done)
        self.assertEqual(refused.played[-2:], ["general/not-available", "general/goodbye"])
        moderator = self.enter("1003", "9876#")
        self.assertFalse(moderator.channel.hung_up)
        boss.press("*5")
        self.meeting.run(0.5)
        self.assertFalse(self.meeting.rooms.live("800").locked)
        welcome = self.enter("1004", "1234#")
        self.assertFalse(welcome.channel.hung_up)

    def test_participant_cannot_lock(self) -> None:
        """*5 from a participant changes nothing."""
        phone = self.enter("1001", "1234#")
        phone.press("*5")
        self.meeting.run(0.5)
        self.assertFalse(self.meeting.rooms.live("800").locked)


class ModeratorTests(MeetingTestCase):
    """Waiting for a moderator, and the room ending with the last one."""

    ROOMS = MODERATED

    def test_wait_for_moderator(self) -> None:
        """Participants hear music, not each other, until the moderator comes; then everyone hears everyone."""
        a = self.meeting.call("1002", frequency=440.0)
        b = self.meeting.call("1003", frequency=700.0)
        self.meeting.run(1.0)
        self.assertGreaterEqual(a.played.count("music-8000.wav"), 2)
        self.assertLess(a.hears(700.0), 0.05)
        self.assertTrue(self.participant(a).waiting)
        boss = self.meeting.call("1001", frequency=1000.0)
        self.meeting.run(1.0)
        self.assertFalse(self.participant(a).waiting)
        self.assertGreater(a.hears(700.0), 0.5)
        self.assertGreater(a.hears(1000.0), 0.5)
        self.assertGreater(boss.hears(440.0), 0.5)
        self.assertGreater(b.hears(440.0), 0.5)

    def test_room_music_option(self) -> None:
        """A room's ``music`` file is what waiting callers hear."""
        self.meeting = Meeting('rooms: {"800": {moderators: ["1001"], wait_for_moderator: true,'
                               ' music: /srv/hold.wav}}')
        phone = self.meeting.call("1002")
        self.meeting.run(0.3)
        self.assertEqual(phone.played[:2], ["hold.wav", "hold.wav"])

    def test_end_with_moderator(self) -> None:
        """When the last moderator leaves, the others hear goodbye and are hung up."""
        boss = self.meeting.call("1001")
        others = [self.meeting.call(n) for n in ("1002", "1003")]
        self.meeting.run(0.5)
        boss.hang_up()
        self.meeting.run(0.5)
        for phone in others:
            self.successResultOf(phone.done)
            self.assertIn("general/goodbye", phone.played)
            self.assertEqual(phone.hangups, ["normal"])
        self.assertIsNone(self.meeting.rooms.live("800"))


class RateTests(MeetingTestCase):
    """The mix runs at 16 kHz while a wideband caller is in it."""

    def test_wideband_switches_the_mix(self) -> None:
        """Two G.722 callers hear each other's 5 kHz tone; a G.711 caller stays heard; back to 8 kHz after."""
        n = self.meeting.call("1001", frequency=440.0)
        n.press("*6")
        self.meeting.run(0.5)
        room = self.meeting.rooms.live("800")
        assert room is not None
        self.assertEqual(room.mix.sample_rate, 8000)
        w1 = self.meeting.call("1002", codec=G722(), frequency=5000.0)
        w2 = self.meeting.call("1003", codec=G722(), frequency=3000.0)
        self.meeting.run(1.0)
        self.assertEqual(room.mix.sample_rate, 16000)
        self.assertGreater(w2.hears(5000.0), 0.5)
        self.assertGreater(n.hears(3000.0), 0.5)
        # The mute of the G.711 caller moved to the new mix.
        self.assertLess(w1.hears(440.0), 0.05)
        n.press("*6")
        self.meeting.run(1.0)
        self.assertGreater(w1.hears(440.0), 0.5)
        self.assertIn("join-16000.wav", w1.played)
        w1.hang_up()
        w2.hang_up()
        self.meeting.run(0.2)
        self.assertEqual(room.mix.sample_rate, 8000)
        self.assertEqual(room.mix.members, (n.channel,))

    def test_sound_paths(self) -> None:
        """Narrowband channels get the 8 kHz files, wideband and Opus the 16 kHz ones."""
        self.assertEqual(SOUNDS.path("join", 8000), "/conference-sounds/join-8000.wav")
        self.assertEqual(SOUNDS.path("music", 48000), "/conference-sounds/music-16000.wav")
