"""Tests for :mod:`pbx.emergency.api`, mounted on the real API in memory with StubTreq."""

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
from pbx.emergency.api import EmergencyAPI, extension_paths, openapi_paths
from pbx.emergency.desk import make_desk
from pbx.emergency.options import parse_emergency
from pbx.records import AdminRecord, ExtensionRecord
from pbx.security.passwords import hash_password, verify_password
from pbx.testing import FakePBX, MemoryStore

ADMIN_PW = "Adm1n-secret-pass"
PREFIX = "/api/v1/emergency"
SECTION = {
    "locations": {
        "hq-2": {
            "country": "US",
            "A3": "San Jose",
            "RD": "Main",
            "HNO": "100",
            "FLR": "2",
        }
    },
    "extensions": {"1001": "hq-2"},
}
ANNEX = {"country": "US", "A3": "San Jose", "BLD": "Annex", "FLR": "1"}


def check(secret: str, encoded: str) -> Deferred[bool]:
    """Synchronous password verification."""
    return succeed(verify_password(secret, encoded))


def fast_hash(secret: str) -> Deferred[str]:
    """PBKDF2 with few iterations."""
    return succeed(hash_password(secret, iterations=1000))


class EmergencyAPITests(SynchronousTestCase):
    """Named locations, an extension's own location, events and callbacks over the API."""

    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(1_000)
        self.store = MemoryStore()
        self.store.admins["admin"] = AdminRecord(
            "admin", hash_password(ADMIN_PW, iterations=1000)
        )
        for number in ("1001", "1002"):
            self.store.extensions[number] = ExtensionRecord(
                number, pin_hash=hash_password("482913", iterations=1000)
            )
        pbx = FakePBX(
            clock=self.clock,
            store=self.store,
            config=parse_config("sip: {domain: pbx.test}", "t.yml", {}),
        )
        self.api = PBXApi(pbx, check, fast_hash)
        self.desk = make_desk(
            parse_emergency(SECTION), self.store, self.clock, lambda aor: []
        )
        emergency = EmergencyAPI(
            self.desk, self.store, self.api.authenticate, self.clock
        )
        self.api.mount("emergency", emergency.resource(), openapi_paths())
        self.api.mount_extension(
            "location", emergency.extension_location, extension_paths()
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
        status, body = self.request(
            "POST", "/api/v1/auth/login", {"username": username, "password": password}
        )
        self.assertEqual(status, 200)
        return str(body["token"])

    def test_named_locations(self) -> None:
        """An administrator lists, adds, replaces and deletes named locations; changes are audited."""
        token = self.login()
        status, body = self.request("GET", f"{PREFIX}/locations", token=token)
        self.assertEqual(
            (status, [(x["name"], x["source"]) for x in body["locations"]]),
            (200, [("hq-2", "config")]),
        )
        self.assertEqual(
            body["locations"][0]["description"], "100 Main, floor 2, San Jose, US"
        )
        status, body = self.request(
            "PUT", f"{PREFIX}/locations/annex", ANNEX, token=token
        )
        self.assertEqual((status, body["source"], body["address"]), (200, "api", ANNEX))
        status, body = self.request(
            "PUT",
            f"{PREFIX}/locations/annex",
            {"address": {**ANNEX, "FLR": "3"}},
            token=token,
        )
        self.assertEqual((status, body["address"]["FLR"]), (200, "3"))
        status, body = self.request("GET", f"{PREFIX}/locations", token=token)
        self.assertEqual([x["name"] for x in body["locations"]], ["annex", "hq-2"])
        self.assertEqual(
            self.request("DELETE", f"{PREFIX}/locations/annex", token=token),
            (204, None),
        )
        self.assertEqual(
            self.request("DELETE", f"{PREFIX}/locations/annex", token=token),
            (404, {"error": "no location annex"}),
        )
        kinds = [e.kind for e in self.successResultOf(self.store.list_audit())]
        self.assertEqual(kinds.count("emergency.location.put"), 2)
        self.assertIn("emergency.location.delete", kinds)

    def test_configured_locations_fixed(self) -> None:
        """A location from the configuration file cannot be changed or deleted here."""
        token = self.login()
        status, body = self.request(
            "PUT", f"{PREFIX}/locations/hq-2", ANNEX, token=token
        )
        self.assertEqual(status, 409)
        self.assertIn("configuration file", body["error"])
        self.assertEqual(
            self.request("DELETE", f"{PREFIX}/locations/hq-2", token=token)[0], 409
        )

    def test_bad_addresses(self) -> None:
        """An unknown element, a missing country or a bad name is a 422 naming the problem."""
        token = self.login()
        status, body = self.request(
            "PUT", f"{PREFIX}/locations/annex", {**ANNEX, "FLOOR": "1"}, token=token
        )
        self.assertEqual(status, 422)
        self.assertTrue(
            body["error"].startswith("address.FLOOR: unknown civic address element")
        )
        status, body = self.request(
            "PUT", f"{PREFIX}/locations/annex", {"A3": "X", "BLD": "Y"}, token=token
        )
        self.assertEqual(
            (status, body["error"].split(":")[0]), (422, "address.country")
        )
        self.assertEqual(
            self.request("PUT", f"{PREFIX}/locations/-bad", ANNEX, token=token)[0], 422
        )

    def test_administrators_only(self) -> None:
        """A user's session reaches none of the /emergency routes; no session is 401."""
        user = self.login("1001", "482913")
        for method, path in (
            ("GET", "/locations"),
            ("PUT", "/locations/x"),
            ("GET", "/events"),
            ("GET", "/callbacks"),
        ):
            self.assertEqual(
                self.request(
                    method,
                    PREFIX + path,
                    ANNEX if method == "PUT" else None,
                    token=user,
                )[0],
                403,
                path,
            )
        self.assertEqual(self.request("GET", f"{PREFIX}/locations")[0], 401)

    def test_user_sets_own_location(self) -> None:
        """A user sets, reads and clears their own location; the effective one follows."""
        user = self.login("1001", "482913")
        status, body = self.request(
            "GET", "/api/v1/extensions/1001/location", token=user
        )
        self.assertEqual(
            (
                status,
                body["set"],
                body["effective"]["origin"],
                body["effective"]["name"],
            ),
            (200, None, "extension", "hq-2"),
        )
        home = {"country": "US", "A3": "Home Town", "HNO": "5", "RD": "Elm"}
        status, body = self.request(
            "PUT", "/api/v1/extensions/1001/location", {"address": home}, token=user
        )
        self.assertEqual(
            (status, body["set"]["address"], body["effective"]["origin"]),
            (200, home, "user"),
        )
        status, body = self.request(
            "DELETE", "/api/v1/extensions/1001/location", token=user
        )
        self.assertEqual(
            (status, body["set"], body["effective"]["origin"]), (200, None, "extension")
        )
        audits = self.successResultOf(
            self.store.list_audit(kind="emergency.extension.location")
        )
        self.assertEqual(
            [a.detail for a in audits],
            ["by 1001: cleared", "by 1001: 5 Elm, Home Town, US"],
        )

    def test_user_reaches_only_own(self) -> None:
        """A user cannot read or set another extension's location; an administrator can."""
        user = self.login("1002", "482913")
        self.assertEqual(
            self.request("GET", "/api/v1/extensions/1001/location", token=user)[0], 403
        )
        self.assertEqual(
            self.request(
                "PUT",
                "/api/v1/extensions/1001/location",
                {"location": "hq-2"},
                token=user,
            )[0],
            403,
        )
        admin = self.login()
        status, body = self.request(
            "PUT", "/api/v1/extensions/1002/location", {"location": "hq-2"}, token=admin
        )
        self.assertEqual(
            (status, body["set"]["name"], body["effective"]["origin"]),
            (200, "hq-2", "user"),
        )

    def test_extension_location_errors(self) -> None:
        """Unknown extension 404; an unknown location, a bad body or a bad address 422; POST 405."""
        admin = self.login()
        self.assertEqual(
            self.request("GET", "/api/v1/extensions/1999/location", token=admin)[0], 404
        )
        path = "/api/v1/extensions/1001/location"
        self.assertEqual(
            self.request("PUT", path, {"location": "nowhere"}, token=admin),
            (422, {"error": "no location nowhere"}),
        )
        self.assertEqual(
            self.request("PUT", path, {"location": "hq-2", "address": {}}, token=admin)[
                0
            ],
            422,
        )
        self.assertEqual(
            self.request(
                "PUT", path, {"address": {"country": "US", "XYZ": "1"}}, token=admin
            )[0],
            422,
        )
        self.assertEqual(
            self.request("POST", path, {"location": "hq-2"}, token=admin)[0], 405
        )
        self.assertEqual(
            self.request("GET", "/api/v1/extensions/1001/nothing", token=admin)[0], 404
        )
        self.assertEqual(self.request("GET", path)[0], 401)

    def test_events(self) -> None:
        """Emergency calls are listed newest first from the audit trail, with their location."""
        admin = self.login()
        self.successResultOf(
            Deferred.fromCoroutine(self.desk.dialled("1001", "9911", call_id="a"))
        )
        self.clock.advance(10)
        self.successResultOf(
            Deferred.fromCoroutine(self.desk.dialled("1002", "933", call_id="b"))
        )
        status, body = self.request("GET", f"{PREFIX}/events", token=admin)
        self.assertEqual(status, 200)
        self.assertEqual(
            [
                (e["extension"], e["number"], e["dialled"], e["test"], e["time"])
                for e in body["events"]
            ],
            [("1002", "933", "933", True, 1010), ("1001", "911", "9911", False, 1000)],
        )
        self.assertEqual(body["events"][1]["location"]["name"], "hq-2")
        self.assertIsNone(body["events"][0]["location"])
        status, body = self.request("GET", f"{PREFIX}/events?limit=1", token=admin)
        self.assertEqual(len(body["events"]), 1)
        self.assertEqual(
            self.request("GET", f"{PREFIX}/events?limit=0", token=admin)[0], 400
        )
        self.assertEqual(
            self.request("GET", f"{PREFIX}/events?since=1", token=admin)[0], 400
        )

    def test_callbacks(self) -> None:
        """The open PSAP callback windows are listed with the time left."""
        admin = self.login()
        self.desk.callbacks.record_emergency("1001", "+15551230000")
        self.clock.advance(60)
        status, body = self.request("GET", f"{PREFIX}/callbacks", token=admin)
        self.assertEqual(
            (status, body),
            (
                200,
                {
                    "callbacks": [
                        {
                            "number": "5551230000",
                            "extension": "1001",
                            "until": 4600,
                            "remaining": 3540,
                        }
                    ]
                },
            ),
        )

    def test_openapi_documents_the_routes(self) -> None:
        """The OpenAPI document lists every emergency route and the extension's location."""
        status, doc = self.request("GET", "/api/v1/openapi.json")
        self.assertEqual(status, 200)
        documented = {
            (p, m.upper())
            for p, ops in doc["paths"].items()
            for m in ops
            if m != "parameters"
            if p.startswith(PREFIX) or p.endswith("/location")
        }
        served = {
            (PREFIX + rule.rule.replace("<", "{").replace(">", "}"), m)
            for rule in EmergencyAPI.app.url_map.iter_rules()
            for m in rule.methods - {"HEAD", "OPTIONS"}
        }
        served |= {
            ("/api/v1/extensions/{number}/location", m)
            for m in ("GET", "PUT", "DELETE")
        }
        self.assertEqual(documented, served)
