"""
Tests for the conference feature as the PBX runs it: the dropin, the
service (application, API mount, generated sounds) and the REST routes on
the real API, in memory with StubTreq, with callers in rooms on real
channels (:class:`support.conference.Meeting`).
"""

from __future__ import annotations

import json
import os
from typing import Any

import yaml

from zope.interface import implementer
from zope.interface.verify import verifyObject

from treq.testing import StubTreq
from twisted.internet.defer import Deferred, succeed
from twisted.trial.unittest import SynchronousTestCase

from pbx.api.app import PBXApi
from pbx.api.http import make_site
from pbx.config import parse_config
from pbx.errors import ConfigError
from pbx.features.conference.api import ConferenceAPI, openapi_paths
from pbx.features.conference.service import ConferenceService
from pbx.features.recording.interfaces import IRoomRecorder, IRoomRecordings
from pbx.interfaces import IFeature
from pbx.plugin_loader import configure, discover
from pbx.plugins.conference import conference
from pbx.records import AdminRecord, ExtensionRecord
from pbx.security.passwords import hash_password, verify_password
from pbx.testing import FakePBX, MemoryStore

from support.conference import Meeting

ADMIN_PW = "Adm1n-secret-pass"
PREFIX = "/api/v1/conference"
ROOMS = """
rooms:
  "800": {pin: "1234", moderators: ["1001"]}
  "801": {}
"""


def check(secret: str, encoded: str) -> Deferred[bool]:
    """Synchronous password verification."""
    return succeed(verify_password(secret, encoded))


def fast_hash(secret: str) -> Deferred[str]:
    """PBKDF2 with few iterations."""
    return succeed(hash_password(secret, iterations=1000))


class PluginTests(SynchronousTestCase):
    """The dropin and its service."""

    def test_plugin(self) -> None:
        """The dropin provides IFeature named conference and is discovered with the shipped plugins."""
        self.assertTrue(verifyObject(IFeature, conference))
        self.assertIs(discover()["conference"], conference)

    def test_config_errors_name_the_feature_key(self) -> None:
        """The loader reports a bad room under features.conference."""
        with self.assertRaises(ConfigError) as caught:
            configure({"conference": {"rooms": {"800": {"pin": "x"}}}}, {"conference": conference})
        self.assertEqual(caught.exception.key, "features.conference.rooms.800.pin")

    def test_service(self) -> None:
        """Starting registers the application, mounts the API and writes the sounds under state_dir before ready."""
        state = os.path.abspath(self.mktemp())
        pbx = FakePBX(config=parse_config(f"sip: {{domain: pbx.test}}\nstate_dir: {state}\n", "t.yml", {}))
        service = conference.make_service(pbx, conference.parse_options(yaml.safe_load(ROOMS)))
        assert isinstance(service, ConferenceService)
        service.startService()
        self.assertIn("conference", pbx.applications)
        _, paths = pbx.mounted["conference"]
        self.assertEqual(paths, openapi_paths())
        [work] = pbx.startup_work
        self.successResultOf(work)
        self.assertEqual(sorted(os.listdir(os.path.join(state, "conference", "sounds"))),
                         [f"{n}-{r}.wav" for n in ("join", "leave", "music", "record") for r in (16000, 8000)])


class APITests(SynchronousTestCase):
    """The REST routes on the real API with a meeting in progress."""

    def setUp(self) -> None:
        """An admin, a user, the API, and the conference routes mounted on it."""
        self.meeting = Meeting(ROOMS)
        store = MemoryStore()
        store.admins["admin"] = AdminRecord("admin", hash_password(ADMIN_PW, iterations=1000))
        store.extensions["1001"] = ExtensionRecord("1001", pin_hash=hash_password("482913", iterations=1000))
        self.pbx = FakePBX(clock=self.meeting.clock, store=store,
                           config=parse_config("sip: {domain: pbx.test}\napi: {token_lifetime: 600}\n", "t.yml", {}))
        self.api = PBXApi(self.pbx, check, fast_hash)
        self.pbx.api = self.api
        self.pbx.mount_api("conference", ConferenceAPI(self.pbx, self.meeting.rooms).resource(), openapi_paths())
        self.treq = StubTreq(make_site(self.api.resource(), 65536).resource)
        self.token = self.login()

    def tearDown(self) -> None:
        """Everyone hangs up; no timer is left behind."""
        self.meeting.hang_up_all()
        self.meeting.run(0.1)
        self.assertEqual(self.meeting.clock.getDelayedCalls(), [])

    def request(self, method: str, path: str, body: Any = None, token: str | None = None) -> tuple[int, Any]:
        """One request to the API; (status, decoded JSON body)."""
        token = self.token if token is None else token
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        data = json.dumps(body).encode() if body is not None else None
        if data is not None:
            headers["Content-Type"] = "application/json"
        d = self.treq.request(method, "http://127.0.0.1" + path, data=data, headers=headers)
        self.treq.flush()
        response = self.successResultOf(d)
        content = self.successResultOf(response.content())
        return response.code, json.loads(content) if content else None

    def login(self, username: str = "admin", password: str = ADMIN_PW) -> str:
        """A bearer token."""
        self.token = ""
        status, body = self.request("POST", "/api/v1/auth/login", {"username": username, "password": password})
        self.assertEqual(status, 200)
        return str(body["token"])

    def people(self) -> list[dict[str, Any]]:
        """The participants of room 800 as the API lists them."""
        status, body = self.request("GET", f"{PREFIX}/rooms/800/participants")
        self.assertEqual(status, 200)
        return list(body["participants"])

    def test_rooms(self) -> None:
        """The rooms list says which have PINs (never the PINs) and how many are in each."""
        self.meeting.call("1001")
        self.meeting.run(0.2)
        status, body = self.request("GET", f"{PREFIX}/rooms")
        self.assertEqual(status, 200)
        self.assertEqual([(r["room"], r["participants"], r["pin"], r["moderator_present"], r["sample_rate"])
                          for r in body["rooms"]],
                         [("800", 1, True, True, 8000), ("801", 0, False, False, None)])
        self.assertNotIn("1234", json.dumps(body))
        status, room = self.request("GET", f"{PREFIX}/rooms/801")
        self.assertEqual((status, room["room"], room["locked"]), (200, "801", False))
        self.assertEqual(self.request("GET", f"{PREFIX}/rooms/899")[0], 404)

    def test_participants_mute_kick(self) -> None:
        """An admin lists participants, mutes and unmutes one (heard again), and kicks one (hung up)."""
        boss = self.meeting.call("1001", frequency=440.0)
        other = self.meeting.call("1002", frequency=1000.0)
        other.press("1234#")
        self.meeting.run(0.5)
        people = self.people()
        self.assertEqual([(p["caller"], p["moderator"], p["muted"], p["waiting"]) for p in people],
                         [("1001", True, False, False), ("1002", False, False, False)])
        boss_id, other_id = people[0]["id"], people[1]["id"]
        status, body = self.request("POST", f"{PREFIX}/rooms/800/participants/{other_id}/mute")
        self.assertEqual((status, body["muted"]), (200, True))
        self.meeting.run(0.5)
        self.assertLess(boss.hears(1000.0), 0.05)
        self.request("POST", f"{PREFIX}/rooms/800/participants/{other_id}/unmute")
        self.meeting.run(0.5)
        self.assertGreater(boss.hears(1000.0), 0.5)
        status, body = self.request("DELETE", f"{PREFIX}/rooms/800/participants/{boss_id}")
        self.assertEqual((status, body), (200, {"kicked": boss_id}))
        self.meeting.run(0.1)
        self.assertTrue(boss.channel.hung_up)
        self.successResultOf(boss.done)
        self.assertEqual([p["caller"] for p in self.people()], ["1002"])
        kinds = [e.kind for e in self.successResultOf(self.pbx.store.list_audit()) if e.kind.startswith("conference.")]
        self.assertEqual(sorted(kinds), ["conference.kick", "conference.mute", "conference.unmute"])

    def test_lock(self) -> None:
        """Lock and unlock a room someone is in; a locked room refuses participants; an empty room is 409."""
        self.assertEqual(self.request("POST", f"{PREFIX}/rooms/801/lock")[0], 409)
        self.meeting.call("1001", room="801")
        self.meeting.run(0.2)
        status, body = self.request("POST", f"{PREFIX}/rooms/801/lock")
        self.assertEqual((status, body["locked"]), (200, True))
        refused = self.meeting.call("1002", room="801")
        self.meeting.run(0.5)
        self.successResultOf(refused.done)
        self.assertEqual(refused.played, ["general/not-available", "general/goodbye"])
        status, body = self.request("POST", f"{PREFIX}/rooms/801/unlock")
        self.assertEqual((status, body["locked"]), (200, False))

    def test_unknown_participant(self) -> None:
        """Muting or kicking a participant who is not there is 404, in an empty room too."""
        for method, path in (("POST", "/rooms/801/participants/9/mute"), ("DELETE", "/rooms/801/participants/9"),
                             ("POST", "/rooms/899/participants/9/unmute")):
            status, body = self.request(method, PREFIX + path)
            self.assertEqual(status, 404, path)
            self.assertIn("error", body)

    def test_admins_only(self) -> None:
        """Without a session 401; a user's session 403."""
        self.assertEqual(self.request("GET", f"{PREFIX}/rooms", token="")[0], 401)
        user = self.login("1001", "482913")
        self.assertEqual(self.request("GET", f"{PREFIX}/rooms", token=user)[0], 403)

    def test_openapi(self) -> None:
        """The OpenAPI document lists every conference route."""
        status, doc = self.request("GET", "/api/v1/openapi.json")
        self.assertEqual(status, 200)
        self.assertLessEqual(set(openapi_paths()), set(doc["paths"]))
        self.assertIn(f"{PREFIX}/rooms/{{room}}/participants/{{id}}/mute", doc["paths"])

    def test_recording(self) -> None:
        """POST .../recording starts (201, then 409), DELETE stops with the finished metadata (then 409); audited."""
        recordings = TapeRecordings()
        self.meeting.pbx.provide(IRoomRecordings, recordings)
        self.assertEqual(self.request("POST", f"{PREFIX}/rooms/801/recording")[0], 409)  # nobody there
        self.meeting.call("1001", room="801", frequency=600.0)
        self.meeting.run(0.3)
        status, body = self.request("POST", f"{PREFIX}/rooms/801/recording")
        self.assertEqual((status, body), (201, {"room": "801", "recording": "r1"}))
        self.assertEqual(self.request("POST", f"{PREFIX}/rooms/801/recording")[0], 409)
        self.assertEqual(self.request("GET", f"{PREFIX}/rooms/801")[1]["recording"], "r1")
        self.meeting.run(0.5)
        status, body = self.request("DELETE", f"{PREFIX}/rooms/801/recording")
        self.assertEqual(status, 200)
        self.assertEqual((body["id"], body["room"], body["participants"], body["started_by"]),
                         ("r1", "801", ["1001"], "api:admin"))
        [recorder] = recordings.started
        self.assertGreaterEqual(len(recorder.frames), 20)
        self.assertEqual(self.request("DELETE", f"{PREFIX}/rooms/801/recording")[0], 409)
        kinds = [e.kind for e in self.pbx.store.audit]
        self.assertIn("conference.record", kinds)
        self.assertIn("conference.unrecord", kinds)

    def test_recording_without_the_feature(self) -> None:
        """Without the recording feature, starting a room's recording is 503; an unknown room 404."""
        self.meeting.call("1001", room="801")
        self.meeting.run(0.3)
        status, body = self.request("POST", f"{PREFIX}/rooms/801/recording")
        self.assertEqual(status, 503)
        self.assertIn("recording", body["error"])
        self.assertEqual(self.request("POST", f"{PREFIX}/rooms/899/recording")[0], 404)


@implementer(IRoomRecorder)
class TapeRecorder:
    """A room recorder that keeps the frames and the participants in memory."""

    def __init__(self, recording_id: str, room: str, rate: int, participants: list[str], started_by: str) -> None:
        self.recording_id = recording_id
        self.sample_rate = rate
        self.frames: list[Any] = []
        self.meta = {"id": recording_id, "room": room, "participants": list(participants),
                     "started_by": started_by}

    def write(self, pcm: Any) -> None:
        """Keep the frame."""
        self.frames.append(pcm)

    def joined(self, party: str) -> None:
        """Note the participant."""
        self.meta["participants"].append(party)

    def stop(self) -> Deferred[dict[str, Any] | None]:
        """The metadata at once."""
        return succeed(self.meta)


@implementer(IRoomRecordings)
class TapeRecordings:
    """Starts :class:`TapeRecorder` instances, ``r1``, ``r2``..."""

    def __init__(self) -> None:
        self.started: list[TapeRecorder] = []

    def start(self, room: str, sample_rate: int, participants: list[str], started_by: str) -> TapeRecorder:
        """A new recorder."""
        recorder = TapeRecorder(f"r{len(self.started) + 1}", room, sample_rate, participants, started_by)
        self.started.append(recorder)
        return recorder
