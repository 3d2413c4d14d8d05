"""
Tests for :mod:`pbx.features.supervision.api`: the routes on the real API,
in memory with StubTreq, over a fake live call (:class:`support.supervision.Desk`).
"""

from __future__ import annotations

import json
from typing import Any

from treq.testing import StubTreq
from twisted.internet.defer import Deferred, succeed
from twisted.trial.unittest import SynchronousTestCase

from pbx.api.app import PBXApi
from pbx.api.http import make_site
from pbx.config import parse_config
from pbx.features.supervision.api import SupervisionAPI, openapi_paths
from pbx.media.codecs import PCMU
from pbx.records import AdminRecord, ExtensionRecord
from pbx.security.passwords import hash_password, verify_password

from support.conference import Phone
from support.supervision import SUPERVISOR_TONE, TONES, Desk

ADMIN_PW = "Adm1n-secret-pass"
PREFIX = "/api/v1/supervision"


def check(secret: str, encoded: str) -> Deferred[bool]:
    """Synchronous password verification."""
    return succeed(verify_password(secret, encoded))


def fast_hash(secret: str) -> Deferred[str]:
    """PBKDF2 with few iterations."""
    return succeed(hash_password(secret, iterations=1000))


class APITests(SynchronousTestCase):
    """The routes, with the supervisor's phone answering what the API rings."""

    def setUp(self) -> None:
        """An admin, a user, the API with the supervision routes, and the supervisor's phone."""
        self.desk = Desk('supervisors: {"1000": ["1002"]}')
        pbx = self.desk.pbx
        pbx.config = parse_config(
            "sip: {domain: pbx.test}\napi: {token_lifetime: 600}\n", "t.yml", {}
        )
        pbx.store.admins["admin"] = AdminRecord(
            "admin", hash_password(ADMIN_PW, iterations=1000)
        )
        pbx.store.extensions["1001"] = ExtensionRecord(
            "1001", pin_hash=hash_password("482913", iterations=1000)
        )
        self.api = PBXApi(pbx, check, fast_hash)
        pbx.api = self.api
        pbx.mount_api(
            "supervision",
            SupervisionAPI(pbx, self.desk.supervision).resource(),
            openapi_paths(),
        )
        self.treq = StubTreq(make_site(self.api.resource(), 65536).resource)
        self.phone = Phone(self.desk.clock, "1000", "", PCMU(), SUPERVISOR_TONE)
        pbx.answerers["1000"] = self.phone.channel
        self.desk.phones.append(self.phone)
        self.token = self.login()

    def tearDown(self) -> None:
        """The supervisor hangs up; nothing keeps running."""
        self.phone.hang_up()
        self.desk.run(0.1)
        self.assertEqual(self.desk.supervision.monitors, {})
        self.assertEqual(self.desk.tap.feeds, {})
        self.assertEqual(self.desk.clock.getDelayedCalls(), [])

    def request(
        self, method: str, path: str, body: Any = None, token: str | None = None
    ) -> tuple[int, Any]:
        """One request to the API; (status, decoded JSON body)."""
        token = self.token if token is None else token
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        data = json.dumps(body).encode() if body is not None else None
        if data is not None:
            headers["Content-Type"] = "application/json"
        d = self.treq.request(
            method, "http://127.0.0.1" + path, data=data, headers=headers
        )
        self.treq.flush()
        response = self.successResultOf(d)
        content = self.successResultOf(response.content())
        return response.code, json.loads(content) if content else None

    def login(self, username: str = "admin", password: str = ADMIN_PW) -> str:
        """A bearer token."""
        self.token = ""
        status, body = self.request(
            "POST", "/api/v1/auth/login", {"username": username, "password": password}
        )
        self.assertEqual(status, 200)
        return str(body["token"])

    def test_supervise_call(self) -> None:
        """POST rings the supervisor, who on answer listens; the mode changes by POST; DELETE hangs it up; all audited."""
        status, body = self.request(
            "POST", f"{PREFIX}/calls/call-1", {"supervisor": "1000", "mode": "listen"}
        )
        self.assertEqual((status, body["status"]), (202, "ringing"))
        self.assertEqual(self.desk.pbx.originated, ["1000"])
        self.desk.run(1.0)
        self.assertGreater(self.phone.hears(TONES["a"]), 0.8)
        self.assertGreater(self.phone.hears(TONES["b"]), 0.8)
        status, body = self.request("GET", f"{PREFIX}/monitors")
        self.assertEqual(
            body["monitors"],
            [
                {
                    "supervisor": "1000",
                    "call_id": "call-1",
                    "mode": "listen",
                    "agent_leg": "b",
                }
            ],
        )
        status, body = self.request(
            "POST", f"{PREFIX}/monitors/1000", {"mode": "whisper"}
        )
        self.assertEqual((status, body["mode"]), (200, "whisper"))
        self.desk.run(0.5)
        self.assertGreater(self.desk.tap.hears("b", SUPERVISOR_TONE), 0.8)
        status, body = self.request("DELETE", f"{PREFIX}/monitors/1000")
        self.assertEqual((status, body["stopped"]), (200, True))
        self.desk.run(0.1)
        self.assertTrue(self.phone.channel.hung_up)
        self.assertEqual(self.desk.tap.feeds, {})
        kinds = sorted(
            e.kind
            for e in self.successResultOf(self.desk.pbx.store.list_audit())
            if e.kind.startswith("supervision.")
        )
        self.assertEqual(
            kinds, ["supervision.mode", "supervision.start", "supervision.stop"]
        )

    def test_refusals(self) -> None:
        """Bad bodies are 400, an unknown call 404, a supervisor not allowed 403, no monitor 404; nothing rings."""
        cases = [
            ({"supervisor": "1000", "mode": "shout"}, "call-1", 400),
            ({"supervisor": 1000}, "call-1", 400),
            ({"supervisor": "1000"}, "nope", 404),
            ({"supervisor": "1001"}, "call-1", 403),
        ]
        for body, call, expected in cases:
            status, answer = self.request("POST", f"{PREFIX}/calls/{call}", body)
            self.assertEqual(status, expected, body)
            self.assertIn("error", answer)
        d = self.treq.request(
            "POST",
            f"http://127.0.0.1{PREFIX}/calls/call-1",
            data=b"[1",
            headers={"Authorization": f"Bearer {self.token}"},
        )
        self.treq.flush()
        self.assertEqual(self.successResultOf(d).code, 400)
        self.assertEqual(self.request("DELETE", f"{PREFIX}/monitors/1000")[0], 404)
        self.assertEqual(
            self.request("POST", f"{PREFIX}/monitors/1000", {"mode": "barge"})[0], 404
        )
        self.assertEqual(self.desk.pbx.originated, [])

    def test_admins_only(self) -> None:
        """Without a session 401; a user's session 403."""
        self.assertEqual(self.request("GET", f"{PREFIX}/monitors", token="")[0], 401)
        user = self.login("1001", "482913")
        self.assertEqual(
            self.request(
                "POST", f"{PREFIX}/calls/call-1", {"supervisor": "1000"}, token=user
            )[0],
            403,
        )

    def test_supervisor_does_not_answer(self) -> None:
        """A supervisor whose phone does not answer starts nothing."""
        self.desk.pbx.outcomes["1000"] = "no_answer"
        self.assertEqual(
            self.request("POST", f"{PREFIX}/calls/call-1", {"supervisor": "1000"})[0],
            202,
        )
        self.desk.run(0.1)
        self.assertEqual(self.desk.supervision.monitors, {})
