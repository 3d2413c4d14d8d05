"""
Tests for the recordings REST API on the real API, in memory with StubTreq:
who sees, downloads and deletes which recording, and starting, pausing,
resuming and stopping the recording of a live call.
"""

from __future__ import annotations

import io
import json
import os
import wave
from typing import Any

from treq.testing import StubTreq
from twisted.internet.defer import Deferred, succeed
from twisted.trial.unittest import SynchronousTestCase

from pbx.api.app import PBXApi
from pbx.api.http import make_site
from pbx.calls.events import CallEvent
from pbx.config import parse_config
from pbx.features.recording.service import RecordingService
from pbx.plugins.recording import recording
from pbx.records import AdminRecord, ExtensionRecord
from pbx.security.passwords import hash_password, verify_password
from pbx.testing import FakePBX, MemoryStore

from support.recording import FakeTap, Talker

ADMIN_PW = "Adm1n-secret-pass"
PINS = {"1001": "482913", "1002": "582914", "1003": "682915"}
PREFIX = "/api/v1/recordings"


def check(secret: str, encoded: str) -> Deferred[bool]:
    """Synchronous password verification."""
    return succeed(verify_password(secret, encoded))


def fast_hash(secret: str) -> Deferred[str]:
    """PBKDF2 with few iterations."""
    return succeed(hash_password(secret, iterations=1000))


class APITests(SynchronousTestCase):
    """The routes with one recorded call between 1001 and 1002 and a live one."""

    def setUp(self) -> None:
        """Admin and three users; the recording service mounted on the API; one finished recording."""
        store = MemoryStore()
        store.admins["admin"] = AdminRecord(
            "admin", hash_password(ADMIN_PW, iterations=1000)
        )
        for number, pin in PINS.items():
            store.extensions[number] = ExtensionRecord(
                number, pin_hash=hash_password(pin, iterations=1000)
            )
        state = os.path.abspath(self.mktemp())
        config = f"sip: {{domain: pbx.test}}\napi: {{token_lifetime: 600}}\nstate_dir: {state}\n"
        self.pbx = FakePBX(store=store, config=parse_config(config, "t.yml", {}))
        self.pbx.clock.advance(1_700_000_000)
        self.api = PBXApi(self.pbx, check, fast_hash)
        self.pbx.api = self.api
        self.service = recording.make_service(
            self.pbx, recording.parse_options({"always": ["1001"]})
        )
        assert isinstance(self.service, RecordingService)
        self.service.startService()
        self.addCleanup(self.service.stopService)
        self.treq = StubTreq(make_site(self.api.resource(), 65536).resource)
        self.tokens = {
            name: self.login(name, pw)
            for name, pw in [("admin", ADMIN_PW), *PINS.items()]
        }
        self.call("c1", "1001", "1002", seconds=1.0)
        [self.first] = self.listed("admin")

    def request(
        self, method: str, path: str, who: str = "admin"
    ) -> tuple[int, Any, Any]:
        """One request as ``who`` ("" for none): status, body (JSON decoded when JSON) and the response."""
        headers = {"Authorization": f"Bearer {self.tokens[who]}"} if who else {}
        d = self.treq.request(method, "http://127.0.0.1" + path, headers=headers)
        self.treq.flush()
        response = self.successResultOf(d)
        content = self.successResultOf(response.content())
        kind = response.headers.getRawHeaders("content-type", [""])[0]
        return (
            response.code,
            json.loads(content) if "json" in kind else content,
            response,
        )

    def login(self, username: str, password: str) -> str:
        """A bearer token."""
        d = self.treq.post(
            "http://127.0.0.1/api/v1/auth/login",
            json.dumps({"username": username, "password": password}).encode(),
            headers={"Content-Type": "application/json"},
        )
        self.treq.flush()
        response = self.successResultOf(d)
        self.assertEqual(response.code, 200)
        return str(json.loads(self.successResultOf(response.content()))["token"])

    def call(
        self, call_id: str, caller: str, callee: str, seconds: float, end: bool = True
    ) -> FakeTap:
        """An answered call whose phones talk for ``seconds``, then (if ``end``) hang up."""
        tap = self.pbx.taps[call_id] = FakeTap(call_id, caller, callee)
        self.pbx.events.publish(
            CallEvent(
                "answered", call_id, caller, callee, self.pbx.clock.seconds(), "b"
            )
        )
        self.talk(tap, seconds)
        if end:
            self.hang_up(tap)
        return tap

    def talk(self, tap: FakeTap, seconds: float) -> None:
        """Both phones send 20 ms frames for ``seconds``."""
        a, b = Talker(600), Talker(900)
        for _ in range(round(seconds * 50)):
            for leg, talker in (("a", a), ("b", b)):
                if leg in tap.listeners:
                    tap.listeners[leg](talker.frame())
            self.pbx.clock.advance(0.02)

    def hang_up(self, tap: FakeTap) -> None:
        """The call ends."""
        del self.pbx.taps[tap.call_id]
        self.pbx.events.publish(
            CallEvent(
                "ended", tap.call_id, tap.caller, tap.callee, self.pbx.clock.seconds()
            )
        )

    def listed(self, who: str, query: str = "") -> list[dict[str, Any]]:
        """The recordings ``who`` sees."""
        status, body, _ = self.request("GET", f"{PREFIX}/{query}", who)
        self.assertEqual(status, 200, body)
        return list(body["recordings"])

    def test_parties_and_admin_see_it(self) -> None:
        """The caller, the callee and an admin list and read the recording; nobody else sees it."""
        for who in ("admin", "1001", "1002"):
            self.assertEqual(
                [r["id"] for r in self.listed(who)], [self.first["id"]], who
            )
            status, body, _ = self.request("GET", f"{PREFIX}/{self.first['id']}", who)
            self.assertEqual(
                (status, body["call_id"], body["caller"], body["callee"]),
                (200, "c1", "1001", "1002"),
            )
            self.assertNotIn("part", body)
        self.assertEqual(self.listed("1003"), [])
        self.assertEqual(
            self.request("GET", f"{PREFIX}/{self.first['id']}", "1003")[0], 404
        )
        self.assertEqual(
            self.request("GET", f"{PREFIX}/{self.first['id']}/audio", "1003")[0], 404
        )

    def test_download(self) -> None:
        """The audio downloads as a stereo WAV of the call's length."""
        status, data, response = self.request(
            "GET", f"{PREFIX}/{self.first['id']}/audio", "1002"
        )
        self.assertEqual(status, 200)
        self.assertEqual(response.headers.getRawHeaders("content-type"), ["audio/wav"])
        with wave.open(io.BytesIO(data)) as w:
            self.assertEqual(w.getnchannels(), 2)
            self.assertEqual(w.getnframes() / 8000, 1.0)

    def test_filters(self) -> None:
        """Filters narrow the list; an unknown one or a bad time is 400."""
        self.call("c2", "1003", "1001", seconds=0.2)
        self.assertEqual(len(self.listed("admin")), 2)
        self.assertEqual(
            [r["call_id"] for r in self.listed("admin", "?caller=1003")], ["c2"]
        )
        self.assertEqual(
            [r["call_id"] for r in self.listed("admin", "?party=1002")], ["c1"]
        )
        self.assertEqual(
            [r["call_id"] for r in self.listed("admin", "?call_id=c1")], ["c1"]
        )
        self.assertEqual(len(self.listed("1001", "?status=complete")), 2)
        self.assertEqual([r["call_id"] for r in self.listed("1003")], ["c2"])
        since = self.first["started"] + 0.5
        self.assertEqual(
            [r["call_id"] for r in self.listed("admin", f"?since={since}")], ["c2"]
        )
        self.assertEqual(
            [r["call_id"] for r in self.listed("admin", f"?until={since}")], ["c1"]
        )
        self.assertEqual(self.request("GET", f"{PREFIX}/?colour=red")[0], 400)
        self.assertEqual(self.request("GET", f"{PREFIX}/?since=yesterday")[0], 400)

    def test_delete_permissions(self) -> None:
        """A party cannot delete a policy recording; an admin can; a missing one is 404."""
        rid = self.first["id"]
        self.assertEqual(self.request("DELETE", f"{PREFIX}/{rid}", "1002")[0], 403)
        self.assertEqual(self.request("DELETE", f"{PREFIX}/{rid}", "admin")[0], 204)
        self.assertEqual(self.listed("admin"), [])
        self.assertEqual(self.request("DELETE", f"{PREFIX}/{rid}", "admin")[0], 404)
        self.assertEqual(os.listdir(self.service.directory()), [])

    def test_user_deletes_what_they_started(self) -> None:
        """A user who started a recording on demand may delete it."""
        tap = self.call("c5", "1003", "1002", seconds=0.0, end=False)
        status, started, _ = self.request("POST", f"{PREFIX}/calls/c5/start", "1003")
        self.assertEqual((status, started["started_by"]), (201, "api:1003"))
        self.talk(tap, 0.5)
        self.hang_up(tap)
        self.assertEqual(
            self.request("DELETE", f"{PREFIX}/{started['id']}", "1002")[0], 403
        )
        self.assertEqual(
            self.request("DELETE", f"{PREFIX}/{started['id']}", "1003")[0], 204
        )

    def test_live_controls(self) -> None:
        """A party starts, pauses, resumes and stops its live call's recording; each wrong step is 409."""
        tap = self.call("c3", "1002", "1003", seconds=0.2, end=False)
        base = f"{PREFIX}/calls/c3"
        self.assertEqual(self.request("POST", f"{base}/pause", "1002")[0], 409)
        status, body, _ = self.request("POST", f"{base}/start", "1002")
        self.assertEqual(
            (status, body["status"], body["caller"]), (201, "recording", "1002")
        )
        self.assertEqual(self.request("POST", f"{base}/start", "1003")[0], 409)
        self.assertEqual(
            self.request("GET", f"{PREFIX}/{body['id']}/audio", "1002")[0], 409
        )
        self.talk(tap, 0.5)
        status, paused, _ = self.request("POST", f"{base}/pause", "1003")
        self.assertEqual((status, paused["paused"]), (200, True))
        self.assertEqual(self.request("POST", f"{base}/pause", "1003")[0], 409)
        self.talk(tap, 0.5)
        status, resumed, _ = self.request("POST", f"{base}/resume", "1002")
        self.assertEqual(
            (status, resumed["paused"], resumed["pauses"]), (200, False, [[0.5, 1.0]])
        )
        self.talk(tap, 0.5)
        status, stopped, _ = self.request("POST", f"{base}/stop", "admin")
        self.assertEqual((status, stopped["status"]), (200, "complete"))
        self.assertEqual(stopped["duration"], 1.5)
        self.assertEqual(self.request("POST", f"{base}/stop", "admin")[0], 409)
        self.hang_up(tap)

    def test_live_controls_of_others_calls(self) -> None:
        """A user cannot touch a call it is not in (404, as for a call that is not up)."""
        tap = self.call("c4", "1002", "1003", seconds=0.0, end=False)
        self.assertEqual(
            self.request("POST", f"{PREFIX}/calls/c4/start", "1001")[0], 404
        )
        self.assertEqual(
            self.request("POST", f"{PREFIX}/calls/nope/start", "admin")[0], 404
        )
        self.assertEqual(
            self.request("POST", f"{PREFIX}/calls/c4/rewind", "admin")[0], 404
        )
        self.hang_up(tap)

    def test_needs_a_session(self) -> None:
        """Without a token every route is 401."""
        for method, path in (
            ("GET", "/"),
            ("GET", f"/{self.first['id']}"),
            ("POST", "/calls/c1/start"),
        ):
            self.assertEqual(self.request(method, PREFIX + path, "")[0], 401, path)
