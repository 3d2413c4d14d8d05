"""
Tests for the recording feature as the PBX runs it: the dropin and its
options, the service following call events (always-on policy, the toggle
keys, the end of a call), crash recovery of interrupted recordings and the
retention sweep.
"""

from __future__ import annotations

import io
import os
import wave
from typing import Any

import numpy as np

from zope.interface.verify import verifyObject

from twisted.trial.unittest import SynchronousTestCase

from pbx.calls.events import CallEvent
from pbx.config import parse_config
from pbx.errors import ConfigError
from pbx.features.recording.api import openapi_paths
from pbx.features.recording.errors import NotRecording
from pbx.features.recording.library import KIND
from pbx.features.recording.service import RecordingService
from pbx.interfaces import IFeature
from pbx.plugin_loader import configure, discover
from pbx.plugins.recording import recording
from pbx.testing import FakePBX

from support.recording import FakeTap, Talker


def make_pbx(test: SynchronousTestCase) -> FakePBX:
    """A fake PBX with a state directory."""
    state = os.path.abspath(test.mktemp())
    return FakePBX(
        config=parse_config(
            f"sip: {{domain: pbx.test}}\nstate_dir: {state}\n", "t.yml", {}
        )
    )


def event(
    kind: str,
    call_id: str = "c1",
    caller: str = "1001",
    callee: str = "1002",
    time: float = 0.0,
) -> CallEvent:
    """A call event."""
    return CallEvent(
        kind, call_id, caller, callee, time, "b" if kind == "answered" else ""
    )


def crashed_wav(samples: np.ndarray) -> bytes:
    """The bytes of a WAV file whose writer never closed it: RIFF and data sizes are 0."""
    buffer = io.BytesIO()
    w = wave.open(buffer, "wb")
    w.setnchannels(samples.shape[1])
    w.setsampwidth(2)
    w.setframerate(8000)
    w.writeframesraw(samples.astype("<i2").tobytes())
    data = buffer.getvalue()
    w.close()
    return data


class PluginTests(SynchronousTestCase):
    """The dropin and its options."""

    def test_plugin(self) -> None:
        """The dropin provides IFeature named recording and is discovered with the shipped plugins."""
        self.assertTrue(verifyObject(IFeature, recording))
        self.assertIs(discover()["recording"], recording)

    def test_options(self) -> None:
        """The documented options parse; defaults are stereo, 90 days, toggle *1."""
        options = recording.parse_options(
            {
                "always": ["1001", 1002],
                "format": "mixed",
                "retention_days": 30,
                "announce": False,
                "dir": "/var/rec",
                "toggle": "*9",
            }
        )
        self.assertEqual(options.always, frozenset({"1001", "1002"}))
        self.assertEqual(
            (options.format, options.retention_days, options.dir, options.toggle),
            ("mixed", 30.0, "/var/rec", "*9"),
        )
        default = recording.parse_options({})
        self.assertEqual(
            (default.format, default.retention_days, default.toggle),
            ("stereo", 90.0, "*1"),
        )
        self.assertTrue(options.records_always("1001", "2000"))
        self.assertFalse(options.records_always("1003", "2000"))

    def test_config_errors(self) -> None:
        """Each bad option is named under features.recording."""
        cases = {
            "always": ({"always": "1001"}, "features.recording.always"),
            "always item": ({"always": ["1001", "x"]}, "features.recording.always[1]"),
            "format": ({"format": "surround"}, "features.recording.format"),
            "retention": ({"retention_days": -1}, "features.recording.retention_days"),
            "announce": ({"announce": "loud"}, "features.recording.announce"),
            "toggle": ({"toggle": "*a"}, "features.recording.toggle"),
            "unknown": ({"colour": 1}, "features.recording.colour"),
        }
        for name, (options, key) in cases.items():
            with self.assertRaises(ConfigError, msg=name) as caught:
                configure({"recording": options}, {"recording": recording})
            self.assertEqual(caught.exception.key, key, name)


class ServiceTestCase(SynchronousTestCase):
    """A started service on a fake PBX."""

    options: dict[str, Any] = {"always": ["1001"]}

    def setUp(self) -> None:
        self.pbx = make_pbx(self)
        self.pbx.clock.advance(1_700_000_000)
        self.service = recording.make_service(
            self.pbx, recording.parse_options(self.options)
        )
        assert isinstance(self.service, RecordingService)
        self.service.startService()
        self.successResultOf(self.service.ready)
        self.addCleanup(self.service.stopService)

    def answer(
        self, call_id: str = "c1", caller: str = "1001", callee: str = "1002"
    ) -> FakeTap:
        """A call is answered: its tap becomes reachable and the event is published."""
        tap = self.pbx.taps[call_id] = FakeTap(call_id, caller, callee)
        self.pbx.events.publish(event("answered", call_id, caller, callee))
        return tap

    def talk(self, tap: FakeTap, seconds: float, a: Talker, b: Talker) -> None:
        """Both phones send a frame every 20 ms for ``seconds``."""
        for _ in range(round(seconds * 50)):
            for leg, talker in (("a", a), ("b", b)):
                if leg in tap.listeners:
                    tap.listeners[leg](talker.frame())
            self.pbx.clock.advance(0.02)

    def end(self, call_id: str = "c1") -> None:
        """The call ends: its tap goes away and the event is published."""
        tap = self.pbx.taps.pop(call_id)
        self.pbx.events.publish(event("ended", call_id, tap.caller, tap.callee))

    def items(self) -> list[dict[str, Any]]:
        """Every recording's metadata in the store."""
        return [d for _, _, d in self.successResultOf(self.pbx.store.list_items(KIND))]


class AnnounceTests(ServiceTestCase):
    """``announce: true``: both parties hear the recording prompt when a recording starts."""

    options = {"always": ["1001"], "announce": True}

    def test_recording_announced(self) -> None:
        """The always-on recording of 1001's call plays general/call-recorded into the call once."""
        tap = self.answer()
        self.assertEqual(tap.announced, ["general/call-recorded"])
        self.end()


class PolicyTests(ServiceTestCase):
    """Always-on recording for the configured extensions."""

    def test_started_mounted(self) -> None:
        """Starting mounts the API at recordings and makes the directory."""
        self.assertEqual(self.pbx.mounted["recordings"][1], openapi_paths())
        self.assertTrue(os.path.isdir(self.service.directory()))

    def test_always_on_call_recorded(self) -> None:
        """A call of 1001 is recorded from the answer to the hang-up: a complete stereo file and its metadata."""
        tap = self.answer()
        self.assertEqual(sorted(tap.listeners), ["a", "b"])
        [running] = self.items()
        self.assertEqual(
            (running["status"], running["started_by"]), ("recording", "policy")
        )
        self.talk(tap, 2.0, Talker(600), Talker(900))
        self.end()
        self.assertEqual(tap.listeners, {})
        [meta] = self.items()
        self.assertEqual(
            {
                k: meta[k]
                for k in ("call_id", "caller", "callee", "format", "status", "channels")
            },
            {
                "call_id": "c1",
                "caller": "1001",
                "callee": "1002",
                "format": "stereo",
                "status": "complete",
                "channels": 2,
            },
        )
        self.assertEqual(meta["duration"], 2.0)
        self.assertAlmostEqual(meta["ended"] - meta["started"], 2.0, places=3)
        with wave.open(
            os.path.join(self.service.directory(), meta["id"] + ".wav")
        ) as w:
            self.assertEqual((w.getnchannels(), w.getframerate()), (2, 8000))
            self.assertEqual(w.getnframes() / 8000, 2.0)
        self.assertEqual(
            [n for n in os.listdir(self.service.directory()) if n.endswith(".part")], []
        )

    def test_other_calls_not_tapped(self) -> None:
        """A call of extensions without policy is watched only for the toggle keys: not tapped, not recorded."""
        tap = self.answer("c2", "1003", "1004")
        self.assertEqual(self.items(), [])
        self.assertEqual(tap.listeners, {})
        self.assertEqual(len(tap.key_listeners), 1)
        self.end("c2")
        self.assertEqual(tap.key_listeners, [])

    def test_pause_and_resume_in_metadata(self) -> None:
        """Pause and resume through the service are kept as spans in the metadata; a second pause is refused."""
        tap = self.answer()
        a, b = Talker(600), Talker(900)
        self.talk(tap, 1.0, a, b)
        self.service.pause("c1", True)
        self.assertRaises(NotRecording, self.service.pause, "c1", True)
        self.talk(tap, 1.0, a, b)
        self.service.pause("c1", False)
        self.talk(tap, 1.0, a, b)
        self.end()
        [meta] = self.items()
        self.assertEqual(meta["pauses"], [[1.0, 2.0]])

    def test_stop_returns_final_metadata(self) -> None:
        """Stopping a running recording fires with its complete metadata; stopping again is refused."""
        tap = self.answer()
        self.talk(tap, 0.5, Talker(600), Talker(900))
        meta = self.successResultOf(
            self.service.ready.__class__.fromCoroutine(self.service.stop("c1"))
        )
        self.assertEqual(meta["status"], "complete")
        self.assertRaises(NotRecording, self.service.pause, "c1", True)
        self.failureResultOf(
            self.service.ready.__class__.fromCoroutine(self.service.stop("c1")),
            NotRecording,
        )

    def test_unknown_call(self) -> None:
        """A call that is not up is a 404."""
        with self.assertRaises(NotRecording) as caught:
            self.service.start("nope", "api:admin")
        self.assertEqual(caught.exception.status, 404)


class ToggleTests(ServiceTestCase):
    """The toggle keys during a call."""

    options: dict[str, Any] = {"toggle": "*1"}

    def test_keys_start_and_stop(self) -> None:
        """*1 from the callee starts a recording; *1 again stops it."""
        tap = self.answer("c3", "1003", "1004")
        self.assertEqual(self.items(), [])
        tap.press("b", "*1")
        [meta] = self.items()
        self.assertEqual(
            (meta["status"], meta["started_by"]), ("recording", "keys:1004")
        )
        self.talk(tap, 1.0, Talker(600), Talker(900))
        tap.press("b", "*1")
        [meta] = self.items()
        self.assertEqual(meta["status"], "complete")
        self.end("c3")

    def test_other_keys_ignored(self) -> None:
        """Keys other than the toggle start nothing."""
        tap = self.answer("c3", "1003", "1004")
        tap.press("a", "*21#")
        tap.press("b", "*")
        tap.press("a", "1")
        self.assertEqual(self.items(), [])
        self.end("c3")


class NoToggleTests(ServiceTestCase):
    """Without policy or keys a call is not tapped at all."""

    options: dict[str, Any] = {"toggle": ""}

    def test_untapped(self) -> None:
        """The call's media is left alone; the API can still start a recording."""
        tap = self.answer("c4", "1003", "1004")
        self.assertEqual((tap.listeners, tap.key_listeners), ({}, []))
        meta = self.service.start("c4", "api:admin")
        self.assertEqual(meta["started_by"], "api:admin")
        self.assertEqual(sorted(tap.listeners), ["a", "b"])
        with self.assertRaises(NotRecording) as caught:
            self.service.start("c4", "api:admin")
        self.assertEqual(caught.exception.status, 409)
        self.end("c4")
        self.assertEqual(self.items()[0]["status"], "complete")


class RecoveryTests(SynchronousTestCase):
    """Recordings interrupted by a crash keep their audio; old ones are swept."""

    def start(
        self, pbx: FakePBX, options: dict[str, Any] | None = None
    ) -> RecordingService:
        """Start a service on ``pbx``."""
        service = recording.make_service(pbx, recording.parse_options(options or {}))
        assert isinstance(service, RecordingService)
        service.startService()
        self.successResultOf(service.ready)
        self.addCleanup(service.stopService)
        return service

    def test_interrupted_recording_kept(self) -> None:
        """
        A recording whose process died keeps what its temporary file holds,
        marked interrupted; a temporary file nobody owns or writes is removed.
        """
        pbx = make_pbx(self)
        pbx.clock.advance(1_700_000_000)
        directory = os.path.join(pbx.config.state_dir, "recordings")
        os.makedirs(directory)
        final = os.path.join(directory, "1700000000000-0a0b0c0d.wav")
        part = os.path.join(directory, ".1700000000000-0a0b0c0d.wav.0123456789ab.part")
        with open(part, "wb") as f:
            # What a writer leaves when killed: a header whose sizes are still 0, then the audio.
            f.write(crashed_wav(np.full((8000, 2), 1000, dtype=np.int16)))
        meta = {
            "id": "1700000000000-0a0b0c0d",
            "call_id": "c9",
            "caller": "1001",
            "callee": "1002",
            "started": 1_700_000_000.0,
            "ended": None,
            "status": "recording",
            "rate": 8000,
            "channels": 2,
            "part": os.path.basename(part),
            "started_by": "policy",
            "format": "stereo",
        }
        self.successResultOf(pbx.store.put_item(KIND, "", meta["id"], meta))
        empty = dict(meta, id="1700000000001-00000000", part=".missing.part")
        self.successResultOf(pbx.store.put_item(KIND, "", empty["id"], empty))
        stray, live = (
            os.path.join(directory, f".{n}.wav.000000000000.part")
            for n in ("stray", "live")
        )
        for path in (stray, live):
            with open(path, "wb") as f:
                f.write(b"RIFF")
        os.utime(
            stray, (1_600_000_000, 1_600_000_000)
        )  # untouched for long: nobody writes it
        # The process "dies": the writer is never closed.  The next start recovers.
        self.start(pbx)
        self.assertFalse(os.path.exists(stray))
        self.assertTrue(os.path.exists(live))
        [kept] = [d for _, _, d in self.successResultOf(pbx.store.list_items(KIND))]
        self.assertEqual((kept["status"], kept["duration"]), ("interrupted", 1.0))
        with wave.open(final) as w:
            self.assertEqual(w.getnframes(), 8000)
            self.assertTrue((np.frombuffer(w.readframes(8000), "<i2") == 1000).all())
        self.assertFalse(os.path.exists(part))

    def test_retention_sweep(self) -> None:
        """The hourly sweep deletes recordings that ended before the retention period, file and metadata."""
        pbx = make_pbx(self)
        pbx.clock.advance(100 * 86400)
        directory = os.path.join(pbx.config.state_dir, "recordings")
        os.makedirs(directory)
        for rid, ended in (
            ("0000000000001-00000001", 5 * 86400.0),
            ("0000000000002-00000002", 95 * 86400.0),
        ):
            with open(os.path.join(directory, rid + ".wav"), "wb") as f:
                f.write(b"RIFF")
            meta = {
                "id": rid,
                "caller": "1001",
                "callee": "1002",
                "started": ended - 10,
                "ended": ended,
                "status": "complete",
            }
            self.successResultOf(pbx.store.put_item(KIND, "", rid, meta))
        service = self.start(pbx, {"retention_days": 10})
        left = [k for _, k, _ in self.successResultOf(pbx.store.list_items(KIND))]
        self.assertEqual(left, ["0000000000002-00000002"])
        self.assertEqual(os.listdir(directory), ["0000000000002-00000002.wav"])
        pbx.clock.advance(
            6 * 86400
        )  # the sweep runs hourly; the second one is now past 10 days too
        self.assertEqual(self.successResultOf(pbx.store.list_items(KIND)), [])
        self.assertEqual(os.listdir(directory), [])
        self.successResultOf(service.stopService())
        self.assertEqual(pbx.clock.getDelayedCalls(), [])

    def test_keep_forever(self) -> None:
        """retention_days 0 runs no sweep."""
        pbx = make_pbx(self)
        self.start(pbx, {"retention_days": 0})
        self.assertEqual(pbx.clock.getDelayedCalls(), [])


class PolicyToggleTests(ServiceTestCase):
    """On an always-on recording the toggle keys pause and resume; they never stop it."""

    options: dict[str, Any] = {"always": ["1001"], "toggle": "*1"}

    def test_keys_pause_and_resume(self) -> None:
        """*1 pauses the policy recording, *1 again resumes it; the call's end completes it."""
        tap = self.answer()
        a, b = Talker(600), Talker(900)
        self.talk(tap, 1.0, a, b)
        tap.press("a", "*1")
        self.talk(tap, 1.0, a, b)
        tap.press("a", "*1")
        self.talk(tap, 1.0, a, b)
        self.end()
        [meta] = self.items()
        self.assertEqual((meta["status"], meta["started_by"]), ("complete", "policy"))
        self.assertEqual(meta["pauses"], [[1.0, 2.0]])
