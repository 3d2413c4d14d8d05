"""Tests for :mod:`pbx.permissions.api`, mounted on the real API in memory with StubTreq."""

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
from pbx.permissions.api import PermissionsAPI, openapi_paths
from pbx.permissions.guard import Guard
from pbx.permissions.options import parse_permissions
from pbx.records import AdminRecord, ExtensionRecord
from pbx.security.passwords import hash_password, verify_password
from pbx.testing import FakePBX, MemoryStore

ADMIN_PW = "Adm1n-secret-pass"
PREFIX = "/api/v1/permissions"
SECTION = {
    "area_codes": ["408"],
    "default": "national",
    "groups": {"sales": {"class": "international", "members": ["1002", "1001"]}},
    "extensions": {
        "1001": "premium",
        "1003": {"class": "local", "limits": {"concurrent_outside": 1}},
    },
    "limits": {"concurrent_outside": 2, "international_per_hour": 10, "hold": True},
    "international_hours": {
        "timezone": "UTC",
        "hours": [{"days": "mon-fri", "from": "08:00", "to": "18:00"}],
    },
}


def check(secret: str, encoded: str) -> Deferred[bool]:
    """Synchronous password verification."""
    return succeed(verify_password(secret, encoded))


def fast_hash(secret: str) -> Deferred[str]:
    """PBKDF2 with few iterations."""
    return succeed(hash_password(secret, iterations=1000))


class PermissionsAPITests(SynchronousTestCase):
    """Classes, limits, alerts and holds over the API (administrators only)."""

    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(1796659200.0)  # a Monday, 16:00 UTC
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
        self.guard = Guard(parse_permissions(SECTION), self.clock, self.store)
        permissions = PermissionsAPI(
            self.guard, self.store, self.api.authenticate, self.clock
        )
        self.api.mount("permissions", permissions.resource(), openapi_paths())
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
        status, body = self.request(
            "POST", "/api/v1/auth/login", {"username": username, "password": password}
        )
        self.assertEqual(status, 200)
        return str(body["token"])

    def trip(self) -> None:
        """1003 trips its concurrent limit (and is held)."""
        self.guard.check("1003", "+14085550000")
        self.assertFalse(self.guard.check("1003", "+14085550000").allowed)

    def test_overview(self) -> None:
        """GET /api/v1/permissions/ shows the ladder, table, classes, groups, limits, hours, holds and counters."""
        token = self.login()
        self.guard.check("1002", "+442071234567")
        status, body = self.request("GET", f"{PREFIX}/", token=token)
        self.assertEqual(status, 200)
        self.assertEqual(
            body["classes"],
            ["internal", "local", "national", "international", "premium"],
        )
        self.assertEqual(
            (body["table"]["+1408"], body["table"]["+1900"], body["table"]["+"]),
            ("local", "premium", "international"),
        )
        self.assertEqual(body["default"], "national")
        self.assertEqual(
            body["groups"],
            {"sales": {"class": "international", "members": ["1001", "1002"]}},
        )
        self.assertEqual(body["extensions"], {"1001": "premium", "1003": "local"})
        self.assertEqual(
            body["limits"],
            {"concurrent_outside": 2, "international_per_hour": 10, "hold": True},
        )
        self.assertEqual(body["extension_limits"]["1003"]["concurrent_outside"], 1)
        self.assertEqual(
            body["international_hours"],
            {
                "timezone": "UTC",
                "hours": [{"days": "mon-fri", "from": "08:00", "to": "18:00"}],
                "holidays": [],
            },
        )
        self.assertEqual(body["announcement"], "general/not-available")
        self.assertEqual(body["holds"], [])
        self.assertEqual(
            body["usage"],
            [
                {
                    "extension": "1002",
                    "outside_calls": 1,
                    "international_last_hour": 1,
                    "held": False,
                }
            ],
        )

    def test_extension(self) -> None:
        """GET /extensions/<n> shows the class and where it comes from, the limits and the counters."""
        token = self.login()
        expected = {
            "1001": ("premium", "extension"),
            "1002": ("international", "group sales"),
            "1009": ("national", "default"),
        }
        for number, (service_class, source) in expected.items():
            status, body = self.request(
                "GET", f"{PREFIX}/extensions/{number}", token=token
            )
            self.assertEqual(
                (status, body["class"], body["source"]), (200, service_class, source)
            )
        self.trip()
        status, body = self.request("GET", f"{PREFIX}/extensions/1003", token=token)
        self.assertEqual(
            (
                body["limits"]["concurrent_outside"],
                body["outside_calls"],
                body["international_last_hour"],
                body["hold"]["limit"],
            ),
            (1, 1, 0, "concurrent_outside"),
        )
        status, body = self.request("GET", f"{PREFIX}/extensions/x1", token=token)
        self.assertEqual((status, body), (404, {"error": "no extension x1"}))

    def test_check(self) -> None:
        """GET /check says what a call would get now, and counts nothing."""
        token = self.login()
        status, body = self.request(
            "GET", f"{PREFIX}/check?extension=1002&number=%2B19005550000", token=token
        )
        self.assertEqual(
            (status, body["allowed"], body["class"], body["source"]),
            (200, False, "international", "group sales"),
        )
        self.assertEqual(
            (body["number_class"], body["status"], body["reason"], body["verdict"]),
            ("premium", 403, "Call Not Permitted", "refuse"),
        )
        status, body = self.request(
            "GET", f"{PREFIX}/check?extension=1002&number=+442071234567", token=token
        )
        self.assertEqual(
            (status, body["number"], body["allowed"], body["number_class"]),
            (200, "+442071234567", True, "international"),
        )
        status, body = self.request(
            "GET", f"{PREFIX}/check?extension=1009&number=911", token=token
        )
        self.assertEqual((body["allowed"], body["emergency"]), (True, "911"))
        self.assertEqual(self.guard.usage(), [])
        for query, error in (
            ("extension=1&number=911", "extension must be"),
            ("extension=1001&number=abc", "number must be"),
            ("extension=1001", "number must be"),
            ("extension=1001&number=1&x=1", "unknown query parameter: x"),
        ):
            status, body = self.request("GET", f"{PREFIX}/check?{query}", token=token)
            self.assertEqual(status, 400, query)
            self.assertIn(error, body["error"])

    def test_alerts_and_acknowledge(self) -> None:
        """A tripped limit is listed; an admin acknowledges it, audited; unknown ids are 404."""
        token = self.login()
        self.trip()
        status, body = self.request("GET", f"{PREFIX}/alerts", token=token)
        [alert] = body["alerts"]
        self.assertEqual(
            (
                status,
                alert["extension"],
                alert["limit"],
                alert["number"],
                alert["acknowledged"],
                alert["count"],
            ),
            (200, "1003", "concurrent_outside", "+14085550000", False, 1),
        )
        status, body = self.request(
            "POST", f"{PREFIX}/alerts/{alert['id']}/acknowledge", token=token
        )
        self.assertEqual(
            (status, body["acknowledged"], body["acknowledged_by"]),
            (200, True, "admin"),
        )
        status, body = self.request(
            "GET", f"{PREFIX}/alerts?unacknowledged=true", token=token
        )
        self.assertEqual((status, body), (200, {"alerts": []}))
        self.assertEqual(
            len(
                self.request(
                    "GET", f"{PREFIX}/alerts?unacknowledged=false", token=token
                )[1]["alerts"]
            ),
            1,
        )
        [ack] = [
            e for e in self.store.audit if e.kind == "permissions.alert.acknowledge"
        ]
        self.assertEqual(
            (ack.subject, ack.detail),
            ("1003", f"by admin: alert {alert['id']} (concurrent_outside)"),
        )
        for bad in ("99", "abc", "1" * 13):
            self.assertEqual(
                self.request("POST", f"{PREFIX}/alerts/{bad}/acknowledge", token=token)[
                    0
                ],
                404,
            )
        self.assertEqual(
            self.request("GET", f"{PREFIX}/alerts?unacknowledged=yes", token=token)[0],
            400,
        )
        self.assertEqual(
            self.request("GET", f"{PREFIX}/alerts?limit=3", token=token)[0], 400
        )

    def test_holds(self) -> None:
        """A held extension is listed and released by DELETE (audited); releasing it twice is 404."""
        token = self.login()
        self.trip()
        status, body = self.request("GET", f"{PREFIX}/holds", token=token)
        self.assertEqual(
            (status, [h["extension"] for h in body["holds"]]), (200, ["1003"])
        )
        status, body = self.request("DELETE", f"{PREFIX}/holds/1003", token=token)
        self.assertEqual((status, body), (204, None))
        self.assertEqual(
            self.request("DELETE", f"{PREFIX}/holds/1003", token=token)[0], 404
        )
        self.assertEqual(
            self.request("DELETE", f"{PREFIX}/holds/..", token=token)[0], 404
        )
        self.assertEqual(
            self.request("GET", f"{PREFIX}/holds", token=token)[1], {"holds": []}
        )
        self.assertEqual(
            [
                e.subject
                for e in self.store.audit
                if e.kind == "permissions.hold.release"
            ],
            ["1003"],
        )

    def test_administrators_only(self) -> None:
        """Without a token every route is 401; a user's token is 403."""
        user = self.login("1001", "482913")
        for method, path in (
            ("GET", f"{PREFIX}/"),
            ("GET", f"{PREFIX}/extensions/1001"),
            ("GET", f"{PREFIX}/check?extension=1001&number=911"),
            ("GET", f"{PREFIX}/alerts"),
            ("POST", f"{PREFIX}/alerts/1/acknowledge"),
            ("GET", f"{PREFIX}/holds"),
            ("DELETE", f"{PREFIX}/holds/1001"),
        ):
            self.assertEqual(self.request(method, path)[0], 401, path)
            status, body = self.request(method, path, token=user)
            self.assertEqual(
                (status, body), (403, {"error": "administrators only"}), path
            )

    def test_openapi(self) -> None:
        """The routes are documented in the API's OpenAPI document."""
        status, body = self.request("GET", "/api/v1/openapi.json")
        self.assertEqual(status, 200)
        for path in (
            "/",
            "/alerts",
            "/alerts/{id}/acknowledge",
            "/holds/{number}",
            "/extensions/{number}",
        ):
            self.assertIn(PREFIX + path, body["paths"])
