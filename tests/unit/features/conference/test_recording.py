"""
Tests for recording a conference room (:mod:`pbx.features.conference.taping`
and the room's recording methods) with the recording feature's real provider
(:class:`pbx.features.recording.rooms.RoomRecordings`, looked up through
:meth:`pbx.interfaces.IPBX.lookup`) on a :class:`FakePBX`: by the room's
``record`` option, by a moderator's ``*1``, the files it writes and the
metadata it stores; and the room's music-on-hold class.
"""

from __future__ import annotations

import os
import wave

import numpy as np
import yaml

from zope.interface.verify import verifyObject

from twisted.internet import task
from twisted.trial.unittest import SynchronousTestCase

from pbx.config import parse_config
from pbx.errors import ConfigError
from pbx.features.conference.options import parse_options
from pbx.features.conference.service import ConferenceService
from pbx.features.conference.taping import AlreadyRecording, NoRecorder, NotRecording
from pbx.features.recording.interfaces import IRoomRecorder, IRoomRecordings
from pbx.features.recording.library import KIND
from pbx.features.recording.service import RecordingService
from pbx.media.codecs import G722
from pbx.plugins.conference import conference
from pbx.plugins.recording import recording
from pbx.testing import FakePBX

from support.conference import Meeting, Phone, level

RECORDED = """
rooms:
  "800": {moderators: ["1001"]}
  "801": {record: true, record_tone: false}
  "802": {moderators: ["1001"], record_key: ""}
"""


def recording_pbx(test: SynchronousTestCase, moh: str = "") -> FakePBX:
    """A fake PBX with a state directory and the recording feature started in it."""
    state = os.path.abspath(test.mktemp())
    clock = task.Clock()
    clock.advance(1_700_000_000)
    pbx = FakePBX(
        clock=clock,
        config=parse_config(
            f"sip: {{domain: pbx.test}}\nstate_dir: {state}\n{moh}",
            os.path.join(state, "t.yml"),
            {},
        ),
    )
    service = recording.make_service(pbx, recording.parse_options({}))
    assert isinstance(service, RecordingService)
    service.startService()
    test.successResultOf(service.ready)
    test.addCleanup(service.stopService)
    return pbx


def read_recording(path: str) -> tuple[int, np.ndarray]:
    """A finished recording's rate and samples."""
    with wave.open(path, "rb") as w:
        return w.getframerate(), np.frombuffer(
            w.readframes(w.getnframes()), dtype="<i2"
        )


class RecordingTestCase(SynchronousTestCase):
    """A meeting whose PBX runs the recording feature."""

    def setUp(self) -> None:
        """The PBX and the meeting."""
        self.pbx = recording_pbx(self)
        self.meeting = Meeting(RECORDED, self.pbx)

    def tearDown(self) -> None:
        """Everyone hangs up; no room, no timer is left."""
        self.meeting.hang_up_all()
        self.meeting.run(0.1)
        self.assertEqual(
            [n for n in self.meeting.rooms.options.rooms if self.meeting.rooms.live(n)],
            [],
        )
        self.assertEqual(self.meeting.clock.getDelayedCalls(), [])

    def stored(self) -> list[dict[str, object]]:
        """Every recording's metadata in the store."""
        return [
            data
            for _, _, data in self.successResultOf(
                self.pbx.store.list_items(KIND, "", None)
            )
        ]

    def finish(self, phones: list[Phone]) -> dict[str, object]:
        """Everyone hangs up; the one recording, finished."""
        for phone in phones:
            phone.hang_up()
        self.meeting.run(0.1)
        [meta] = self.stored()
        self.assertEqual(meta["status"], "complete")
        return meta


class InterfaceTests(RecordingTestCase):
    """The recording feature offers rooms a recorder through IPBX.provide."""

    def test_provided(self) -> None:
        """The recording service provides IRoomRecordings; its recorders provide IRoomRecorder."""
        recordings = self.pbx.lookup(IRoomRecordings)
        self.assertTrue(verifyObject(IRoomRecordings, recordings))
        recorder = recordings.start("800", 8000, ["1001", "", "1001"], "api:admin")
        self.assertTrue(verifyObject(IRoomRecorder, recorder))
        self.assertEqual(recorder.meta["participants"], ["1001"])
        recorder.joined("1002")
        recorder.write(np.full(160, 100, dtype=np.int16))
        meta = self.successResultOf(recorder.stop())
        self.assertEqual(self.successResultOf(recorder.stop()), meta)
        self.assertEqual(
            (meta["kind"], meta["room"], meta["participants"]),
            ("conference", "800", ["1001", "1002"]),
        )
        self.assertEqual(meta["duration"], 0.02)

    def test_recovered_after_a_crash(self) -> None:
        """A room recording cut off by a crash is kept as interrupted, still a conference's, with what was written."""
        recordings = self.pbx.lookup(IRoomRecordings)
        recorder = recordings.start("801", 8000, ["1001"], "config")
        for _ in range(60):
            recorder.write(np.full(160, 100, dtype=np.int16))
        library = recordings.library()
        self.assertEqual(self.successResultOf(library.recover()), 1)
        meta = self.successResultOf(library.get(recorder.recording_id))
        self.assertEqual(
            (meta["status"], meta["kind"], meta["room"]),
            ("interrupted", "conference", "801"),
        )
        self.assertEqual(meta["duration"], 1.0)  # the two batches of 25 frames on disk

    def test_conference_looks_it_up(self) -> None:
        """The conference service's rooms find the recording feature's provider through the PBX."""
        service = conference.make_service(
            self.pbx, conference.parse_options(yaml.safe_load(RECORDED))
        )
        assert isinstance(service, ConferenceService)
        service.startService()
        assert service.rooms is not None
        self.assertIs(service.rooms.recordings(), self.pbx.lookup(IRoomRecordings))
        self.successResultOf(service.stopService())

    def test_without_the_feature(self) -> None:
        """Without the recording feature a room cannot be recorded: its moderator is told so."""
        meeting = Meeting(RECORDED)
        boss = meeting.call("1001")
        meeting.run(0.3)
        room = meeting.rooms.live("800")
        assert room is not None
        self.assertRaises(NoRecorder, room.start_recording, "api:admin")
        boss.press("*1")
        meeting.run(0.5)
        self.assertEqual(boss.played[-1], "general/not-available")
        boss.hang_up()
        meeting.run(0.1)


class ConfigTests(RecordingTestCase):
    """``record: true``: recorded whenever someone is in the room."""

    def test_recorded_room(self) -> None:
        """The whole mix is written: both callers' tones, both named as participants, status complete."""
        a = self.meeting.call("1001", room="801", frequency=600.0)
        self.meeting.run(0.3)
        b = self.meeting.call("1002", room="801", frequency=1300.0)
        self.meeting.run(1.0)
        room = self.meeting.rooms.live("801")
        assert room is not None and room.tape is not None
        self.assertEqual(room.describe()["recording"], room.tape.recording_id)
        self.assertRaises(AlreadyRecording, room.start_recording, "api:admin")
        meta = self.finish([a, b])
        self.assertEqual(
            (meta["kind"], meta["room"], meta["started_by"]),
            ("conference", "801", "config"),
        )
        self.assertEqual(meta["participants"], ["1001", "1002"])
        self.assertNotIn("record-8000.wav", a.played)  # record_tone: false
        rate, samples = read_recording(
            self.pbx.lookup(IRoomRecordings).library().path(meta["id"])
        )
        self.assertEqual(rate, 8000)
        last = samples[-8000 // 2 :]
        self.assertGreater(level(last, 600.0, rate), 0.5 * 6000)
        self.assertGreater(level(last, 1300.0, rate), 0.5 * 6000)
        self.assertAlmostEqual(float(meta["duration"]), len(samples) / 8000, places=3)


class KeyTests(RecordingTestCase):
    """A moderator's ``*1`` starts and stops recording."""

    def test_toggle(self) -> None:
        """*1 from the moderator starts recording (everyone hears the tone), *1 again stops it (a beep)."""
        boss = self.meeting.call("1001", frequency=600.0)
        other = self.meeting.call("1002", frequency=900.0)
        self.meeting.run(0.5)
        boss.press("*1")
        self.meeting.run(1.0)
        room = self.meeting.rooms.live("800")
        assert room is not None and room.tape is not None
        self.assertEqual(room.tape.started_by, "keys:1001")
        self.assertIn("record-8000.wav", other.played)
        self.assertIn("record-8000.wav", boss.played)
        self.assertEqual(self.stored()[0]["status"], "recording")
        boss.press("*1")
        self.meeting.run(0.5)
        self.assertIsNone(room.tape)
        self.assertEqual(boss.played[-1], "general/beep")
        [meta] = self.stored()
        self.assertEqual(meta["status"], "complete")
        self.assertGreater(float(meta["duration"]), 0.5)
        self.assertRaises(NotRecording, room.stop_recording)

    def test_latecomer_hears_the_tone(self) -> None:
        """A caller who comes into a room being recorded hears the recording tone; no tone once it stops."""
        boss = self.meeting.call("1001")
        self.meeting.run(0.3)
        boss.press("*1")
        self.meeting.run(0.5)
        late = self.meeting.call("1002")
        self.meeting.run(0.5)
        self.assertEqual(late.played[0], "record-8000.wav")
        boss.press("*1")
        self.meeting.run(0.5)
        later = self.meeting.call("1003")
        self.meeting.run(0.5)
        self.assertNotIn("record-8000.wav", later.played)

    def test_participant_cannot(self) -> None:
        """*1 from someone who is not a moderator records nothing."""
        self.meeting.call("1001")
        other = self.meeting.call("1002")
        self.meeting.run(0.5)
        other.press("*1")
        self.meeting.run(1.0)
        self.assertEqual(self.stored(), [])

    def test_no_key(self) -> None:
        """A room with an empty record_key is not recorded by keys."""
        boss = self.meeting.call("1001", room="802")
        self.meeting.run(0.5)
        boss.press("*1")
        self.meeting.run(1.0)
        self.assertEqual(self.stored(), [])

    def test_follows_the_mix_rate(self) -> None:
        """A recording started at 8 kHz keeps its rate when a G.722 caller moves the room to 16 kHz, and holds both."""
        boss = self.meeting.call("1001", frequency=600.0)
        self.meeting.run(0.3)
        boss.press("*1")
        self.meeting.run(0.5)
        wide = self.meeting.call("1002", codec=G722(), frequency=1300.0)
        self.meeting.run(1.0)
        room = self.meeting.rooms.live("800")
        assert room is not None
        self.assertEqual(room.mix.sample_rate, 16000)
        meta = self.finish([boss, wide])
        self.assertEqual(meta["rate"], 8000)
        rate, samples = read_recording(
            self.pbx.lookup(IRoomRecordings).library().path(meta["id"])
        )
        self.assertEqual(rate, 8000)
        last = samples[-4000:]
        self.assertGreater(level(last, 600.0, rate), 0.5 * 6000)
        self.assertGreater(level(last, 1300.0, rate), 0.5 * 6000)

    def test_not_running(self) -> None:
        """A recording feature that cannot record yet is told to the moderator, who stays in the room."""
        recordings = self.pbx.lookup(IRoomRecordings)
        self.patch(recordings, "library", lambda: None)
        boss = self.meeting.call("1001")
        self.meeting.run(0.3)
        boss.press("*1")
        self.meeting.run(0.5)
        self.assertEqual(boss.played[-1], "general/not-available")
        self.assertFalse(boss.channel.hung_up)
        self.assertEqual(self.stored(), [])

    def test_ends_with_the_room(self) -> None:
        """A recording started by keys ends when the last caller leaves."""
        boss = self.meeting.call("1001")
        self.meeting.run(0.3)
        boss.press("*1")
        self.meeting.run(0.5)
        self.finish([boss])


class OptionTests(SynchronousTestCase):
    """The recording and music options are checked."""

    def test_defaults(self) -> None:
        """By default a room is not recorded, *1 is the key, the tone is on, no music class."""
        room = parse_options({"rooms": {"800": {}}}).rooms["800"]
        self.assertEqual(
            (room.record, room.record_key, room.record_tone, room.music_class),
            (False, "1", True, ""),
        )

    def test_bad(self) -> None:
        """A taken, long or non-digit key, a bad flag, a bad class name, or both music options are errors naming the key."""
        cases = [
            ({"record_key": "5"}, "rooms.800.record_key"),
            ({"record_key": "12"}, "rooms.800.record_key"),
            ({"record_key": "x"}, "rooms.800.record_key"),
            ({"record": "yes"}, "rooms.800.record"),
            ({"record_tone": 1}, "rooms.800.record_tone"),
            ({"music_class": "a b"}, "rooms.800.music_class"),
            ({"music_class": "sales", "music": "/srv/a.wav"}, "rooms.800.music_class"),
        ]
        for raw, key in cases:
            with self.assertRaises(ConfigError, msg=repr(raw)) as caught:
                parse_options({"rooms": {"800": raw}})
            self.assertEqual(caught.exception.key, key)

    def test_key_as_number(self) -> None:
        """A YAML integer key is taken as its digit."""
        self.assertEqual(
            parse_options({"rooms": {"800": {"record_key": 9}}})
            .rooms["800"]
            .record_key,
            "9",
        )


class CountTests(SynchronousTestCase):
    """``announce_count``: a caller who joins hears how many others are in."""

    def test_count(self) -> None:
        """The first hears they are alone, the second of one other, the third of "two other participants"."""
        meeting = Meeting('rooms: {"800": {announce_count: true}, "801": {}}')
        phones = []
        for number in ("1001", "1002", "1003"):
            phones.append(meeting.call(number))
            meeting.run(0.5)
        self.assertEqual(phones[0].played[0], "conf/only-person")
        self.assertEqual(phones[1].played[0], "conf/one-other")
        self.assertEqual(
            phones[2].played[:3],
            ["conf/there-are", "digits/2", "conf/other-participants"],
        )
        quiet = meeting.call("1004", room="801")
        meeting.run(0.5)
        self.assertNotIn("conf/one-other", quiet.played)
        meeting.hang_up_all()
        meeting.run(0.1)
        self.assertEqual(meeting.clock.getDelayedCalls(), [])


class MusicClassTests(SynchronousTestCase):
    """Waiting callers hear a music-on-hold class."""

    def moh_pbx(self) -> FakePBX:
        """A PBX whose ``moh:`` has a class ``sales`` (a 440 Hz second)."""
        folder = os.path.abspath(self.mktemp())
        os.makedirs(folder)
        t = np.arange(8000) / 8000
        with wave.open(os.path.join(folder, "a.wav"), "wb") as w:
            w.setnchannels(1)
            w.setsampwidth(2)
            w.setframerate(8000)
            w.writeframes((np.sin(2 * np.pi * 440 * t) * 8000).astype("<i2").tobytes())
        return recording_pbx(self, f"moh: {{classes: {{sales: {folder}}}}}\n")

    def test_class_written_and_played(self) -> None:
        """The service writes the class's track at both rates; a waiting caller hears it."""
        pbx = self.moh_pbx()
        rooms = 'rooms: {"800": {moderators: ["1001"], wait_for_moderator: true, music_class: sales}}'
        service = conference.make_service(
            pbx, conference.parse_options(yaml.safe_load(rooms))
        )
        assert isinstance(service, ConferenceService)
        service.startService()
        for work in pbx.startup_work:
            self.successResultOf(work)
        path = os.path.join(service.sound_directory(), "moh-sales-16000.wav")
        rate, samples = read_recording(path)
        self.assertEqual((rate, len(samples)), (16000, 16000))
        self.assertGreater(level(samples, 440.0, rate), 7000)
        meeting = Meeting(rooms, pbx)
        phone = meeting.call("1002")
        meeting.run(0.3)
        self.assertEqual(phone.played[:2], ["moh-sales-8000.wav", "moh-sales-8000.wav"])
        phone.hang_up()
        meeting.run(0.1)
        self.successResultOf(service.stopService())

    def test_unknown_class(self) -> None:
        """A room naming a class moh: does not have stops the start with an error naming the key."""
        pbx = self.moh_pbx()
        rooms = 'rooms: {"800": {music_class: support}}'
        service = conference.make_service(
            pbx, conference.parse_options(yaml.safe_load(rooms))
        )
        with self.assertRaises(ConfigError) as caught:
            service.startService()
        self.assertEqual(
            caught.exception.key, "features.conference.rooms.800.music_class"
        )
