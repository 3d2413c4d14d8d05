"""Tests for :mod:`pbx.trunks.routes_api`: the outbound routes over the API."""

from __future__ import annotations

import json
from typing import Any

from treq.testing import StubTreq
from twisted.internet.defer import Deferred, succeed
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from pbx.api.app import PBXApi
from pbx.api.http import make_site
from pbx.config import parse_config
from pbx.records import AdminRecord, ExtensionRecord
from pbx.security.passwords import hash_password, verify_password
from pbx.testing import FakePBX, MemoryStore
from pbx.trunks.routes_api import RoutesAPI, openapi_paths

ADMIN_PW = "Adm1n-secret-pass"
CONFIG = """
sip: {domain: pbx.test}
trunks:
  carrier: {uri: "sip:192.0.2.50"}
  backup: {uri: "sip:192.0.2.51"}
dialplan:
  - {match: "1000", extension: "1001"}
  - {match: "_9NXXNXXXXXX", trunk: [carrier, backup], strip: 1, prepend: "+1", caller_id: "+15551230000"}
  - {match: "_9011.", trunk: [backup], strip: 1, share: weighted}
"""


def check(secret: str, encoded: str) -> Deferred[bool]:
    """Synchronous password verification."""
    return succeed(verify_password(secret, encoded))


def fast_hash(secret: str) -> Deferred[str]:
    """PBKDF2 with few iterations."""
    return succeed(hash_password(secret, iterations=1000))


class RoutesAPITests(SynchronousTestCase):
    """GET /api/v1/routes/."""

    def setUp(self) -> None:
        """The routes API over CONFIG's dialplan."""
        store = MemoryStore()
        store.admins["admin"] = AdminRecord(
            "admin", hash_password(ADMIN_PW, iterations=1000)
        )
        store.extensions["1001"] = ExtensionRecord(
            "1001", pin_hash=hash_password("482913", iterations=1000)
        )
        config = parse_config(CONFIG, "t.yml", {})
        self.api = PBXApi(
            FakePBX(clock=Clock(), store=store, config=config), check, fast_hash
        )
        self.api.mount(
            "routes",
            RoutesAPI(lambda: config.dialplan, self.api.authenticate).resource(),
            openapi_paths(),
        )
        self.treq = StubTreq(make_site(self.api.resource(), 65536).resource)

    def request(
        self, method: str, path: str, body: Any = None, token: str | None = None
    ) -> tuple[int, Any]:
        """One request; (status, decoded JSON body)."""
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        data = None
        if body is not None:
            headers["Content-Type"] = "application/json"
            data = json.dumps(body).encode()
        d = self.treq.request(
            method, "http://127.0.0.1" + path, data=data, headers=headers
        )
        self.treq.flush()
        response = self.successResultOf(d)
        content = self.successResultOf(response.content())
        return response.code, json.loads(content) if content else None

    def login(self, username: str = "admin", password: str = ADMIN_PW) -> str:
        """A bearer token."""
        return str(
            self.request(
                "POST",
                "/api/v1/auth/login",
                {"username": username, "password": password},
            )[1]["token"]
        )

    def test_trunk_routes_in_order(self) -> None:
        """Only the trunk routes, in dialplan order, with pattern, strip/prepend, caller ID and trunks in order."""
        status, body = self.request("GET", "/api/v1/routes/", token=self.login())
        self.assertEqual(status, 200)
        self.assertEqual(
            body["routes"],
            [
                {
                    "index": 1,
                    "pattern": "_9NXXNXXXXXX",
                    "trunks": ["carrier", "backup"],
                    "strip": 1,
                    "prepend": "+1",
                    "caller_id": "+15551230000",
                    "share": "",
                    "emergency": False,
                    "public": False,
                },
                {
                    "index": 2,
                    "pattern": "_9011.",
                    "trunks": ["backup"],
                    "strip": 1,
                    "prepend": "",
                    "caller_id": "",
                    "share": "weighted",
                    "emergency": False,
                    "public": False,
                },
            ],
        )

    def test_administrators_only(self) -> None:
        """Without a token 401; a user's token 403."""
        self.assertEqual(self.request("GET", "/api/v1/routes/")[0], 401)
        self.assertEqual(
            self.request("GET", "/api/v1/routes/", token=self.login("1001", "482913"))[
                0
            ],
            403,
        )

    def test_openapi(self) -> None:
        """The OpenAPI document lists exactly the routes served."""
        doc = self.request("GET", "/api/v1/openapi.json")[1]
        documented = {
            (p, m.upper())
            for p, ops in doc["paths"].items()
            for m in ops
            if m != "parameters"
            if p.startswith("/api/v1/routes")
        }
        self.assertEqual(documented, {("/api/v1/routes/", "GET")})
