"""Tests for :mod:`pbx.api.park`, mounted on the real API in memory with StubTreq."""

from __future__ import annotations

import json
from typing import Any

from treq.testing import StubTreq
from twisted.internet.defer import Deferred, succeed
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from pbx.api.app import PBXApi
from pbx.api.http import make_site
from pbx.api.park import ParkAPI, openapi_paths
from pbx.config import parse_config
from pbx.records import AdminRecord, ExtensionRecord
from pbx.security.passwords import hash_password, verify_password
from pbx.testing import FakePBX, MemoryStore

ADMIN_PW = "Adm1n-secret-pass"
PREFIX = "/api/v1/park"
SLOT = {
    "slot": "71",
    "call_id": "abc@192.0.2.11",
    "parked": "1001",
    "parker": "1002",
    "since": 1000.0,
    "recalling": "",
}


def check(secret: str, encoded: str) -> Deferred[bool]:
    """Synchronous password verification."""
    return succeed(verify_password(secret, encoded))


def fast_hash(secret: str) -> Deferred[str]:
    """PBKDF2 with few iterations."""
    return succeed(hash_password(secret, iterations=1000))


class ParkAPITests(SynchronousTestCase):
    """Listing the occupied park slots over the API."""

    def setUp(self) -> None:
        """The API with slots 71-72, 71 occupied; an administrator and user 1001."""
        self.clock = Clock()
        self.clock.advance(1_000)
        self.store = MemoryStore()
        self.store.admins["admin"] = AdminRecord(
            "admin", hash_password(ADMIN_PW, iterations=1000)
        )
        self.store.extensions["1001"] = ExtensionRecord(
            "1001", pin_hash=hash_password("482913", iterations=1000)
        )
        pbx = FakePBX(
            clock=self.clock,
            store=self.store,
            config=parse_config("sip: {domain: pbx.test}", "t.yml", {}),
        )
        self.api = PBXApi(pbx, check, fast_hash)
        self.occupied = [SLOT]
        park = ParkAPI(lambda: self.occupied, ("71", "72"), self.api.authenticate)
        self.api.mount("park", park.resource(), openapi_paths())
        self.treq = StubTreq(make_site(self.api.resource(), 65536).resource)

    def request(self, path: str, token: str | None = None) -> tuple[int, Any]:
        """One GET; (status, decoded JSON body)."""
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        d = self.treq.request("GET", "http://127.0.0.1" + path, headers=headers)
        self.treq.flush()
        response = self.successResultOf(d)
        content = self.successResultOf(response.content())
        return response.code, json.loads(content) if content else None

    def login(self, username: str, password: str) -> str:
        """A bearer token."""
        d = self.treq.post(
            "http://127.0.0.1/api/v1/auth/login",
            data=json.dumps({"username": username, "password": password}).encode(),
            headers={"Content-Type": "application/json"},
        )
        self.treq.flush()
        response = self.successResultOf(d)
        self.assertEqual(response.code, 200)
        return str(json.loads(self.successResultOf(response.content()))["token"])

    def test_admin_lists(self) -> None:
        """An administrator sees the occupied slots and every slot."""
        status, body = self.request(f"{PREFIX}/", self.login("admin", ADMIN_PW))
        self.assertEqual(
            (status, body), (200, {"occupied": [SLOT], "slots": ["71", "72"]})
        )

    def test_user_lists(self) -> None:
        """A user sees the lot too (any phone may dial a slot)."""
        status, body = self.request(f"{PREFIX}/", self.login("1001", "482913"))
        self.assertEqual((status, body["occupied"][0]["slot"]), (200, "71"))

    def test_live(self) -> None:
        """Each request reads the lot as it is now."""
        token = self.login("admin", ADMIN_PW)
        self.occupied = []
        self.assertEqual(self.request(f"{PREFIX}/", token)[1]["occupied"], [])

    def test_anonymous_refused(self) -> None:
        """Without a token: 401 with a JSON error."""
        status, body = self.request(f"{PREFIX}/")
        self.assertEqual(status, 401)
        self.assertIn("error", body)

    def test_openapi(self) -> None:
        """The route is described for the OpenAPI document."""
        self.assertIn("get", openapi_paths()[f"{PREFIX}/"])
