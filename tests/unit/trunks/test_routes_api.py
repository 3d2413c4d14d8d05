"""Tests for :mod:`pbx.trunks.routes_api` (the outbound routes over the API) and their stored changes."""

from __future__ import annotations

import json
from typing import Any

from treq.testing import StubTreq
from twisted.internet.defer import Deferred, succeed
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from pbx.api.app import PBXApi
from pbx.api.http import make_site
from pbx.calls.dialplan import Dialplan
from pbx.config import parse_config
from pbx.records import AdminRecord, ExtensionRecord
from pbx.security.passwords import hash_password, verify_password
from pbx.testing import FakePBX, MemoryStore
from pbx.trunks.routes_api import RoutesAPI, openapi_paths, trunk_routes
from pbx.trunks.stored import ROUTE_KIND, load_routes

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
        """The routes API over CONFIG's dialplan; a changed dialplan is kept in ``self.dialplan``."""
        self.store = MemoryStore()
        self.store.admins["admin"] = AdminRecord(
            "admin", hash_password(ADMIN_PW, iterations=1000)
        )
        self.store.extensions["1001"] = ExtensionRecord(
            "1001", pin_hash=hash_password("482913", iterations=1000)
        )
        config = parse_config(CONFIG, "t.yml", {})
        self.file = self.dialplan = config.dialplan
        self.api = PBXApi(
            FakePBX(clock=Clock(), store=self.store, config=config), check, fast_hash
        )
        routes = RoutesAPI(
            lambda: self.dialplan,
            self.api.authenticate,
            file_dialplan=self.file,
            trunk_names=lambda: {"carrier", "backup", "newco"},
            use=self.use,
            store=self.store,
            clock=Clock(),
        )
        self.api.mount("routes", routes.resource(), openapi_paths())
        self.treq = StubTreq(make_site(self.api.resource(), 65536).resource)

    def use(self, dialplan: Dialplan) -> None:
        """What the switch does: route by ``dialplan`` from now on."""
        self.dialplan = dialplan

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
        """Only the trunk routes, in dialplan order, with pattern, name, class, strip/prepend, caller ID and trunks."""
        status, body = self.request("GET", "/api/v1/routes/", token=self.login())
        self.assertEqual(status, 200)
        self.assertEqual(
            body["routes"],
            [
                {
                    "index": 1,
                    "pattern": "_9NXXNXXXXXX",
                    "name": "_9NXXNXXXXXX",
                    "moh": "",
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
                    "name": "_9011.",
                    "moh": "",
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
        self.assertEqual(
            documented,
            {
                ("/api/v1/routes/", "GET"),
                ("/api/v1/routes/{index}", "PUT"),
                ("/api/v1/routes/{index}", "DELETE"),
            },
        )

    def test_change_a_trunk_route(self) -> None:
        """
        PUT changes a trunk route's trunks and digits (pattern and place
        kept): the dialplan in use resolves to the new trunks; stored by
        pattern and audited.
        """
        token = self.login()
        change = {"trunk": ["newco", "carrier"], "prepend": "+44", "share": "ordered"}
        status, body = self.request("PUT", "/api/v1/routes/1", change, token)
        self.assertEqual(
            (
                status,
                body["index"],
                body["pattern"],
                body["trunks"],
                body["strip"],
                body["prepend"],
            ),
            (200, 1, "_9NXXNXXXXXX", ["newco", "carrier"], 1, "+44"),
        )
        action = self.dialplan.resolve("95552345678", authenticated=True)
        self.assertEqual(
            (action.trunks, action.strip, action.prepend),
            (("newco", "carrier"), 1, "+44"),
        )
        self.assertEqual(
            self.dialplan.resolve("1000", authenticated=True),
            self.file.resolve("1000", authenticated=True),
        )
        self.assertEqual(
            json.loads(self.store.items[(ROUTE_KIND, "", "_9NXXNXXXXXX")]), change
        )
        [event] = [e for e in self.store.audit if e.kind.startswith("routes.")]
        self.assertEqual((event.kind, event.subject), ("routes.put", "_9NXXNXXXXXX"))

        self.assertEqual(
            self.request("DELETE", "/api/v1/routes/1", token=token), (204, None)
        )
        self.assertEqual(
            self.dialplan.resolve("95552345678", authenticated=True).trunks,
            ("carrier", "backup"),
        )
        self.assertEqual(
            self.request("DELETE", "/api/v1/routes/1", token=token)[0], 404
        )

    def test_bad_changes(self) -> None:
        """A bad field is 400 naming it; a route that is not a trunk route, or none, is 404; nothing changes."""
        token = self.login()
        for body, problem in [
            ({"trunk": ["nope"]}, "trunk: no trunk named 'nope'"),
            ({"trunk": []}, "trunk: "),
            ({"strip": 99}, "strip: "),
            ({"prepend": "abc"}, "prepend: "),
            ({"match": "_X."}, "match: unknown key"),
            ({"share": "random"}, "share: "),
        ]:
            status, answer = self.request("PUT", "/api/v1/routes/1", body, token)
            self.assertEqual(status, 400, body)
            self.assertTrue(answer["error"].startswith(problem), (answer, problem))
        self.assertEqual(
            self.request("PUT", "/api/v1/routes/0", {"strip": 1}, token)[0], 404
        )
        self.assertEqual(
            self.request("PUT", "/api/v1/routes/7", {"strip": 1}, token)[0], 404
        )
        self.assertEqual(
            self.request("PUT", "/api/v1/routes/x", {"strip": 1}, token)[0], 404
        )
        user = self.login("1001", "482913")
        self.assertEqual(
            self.request("PUT", "/api/v1/routes/1", {"strip": 2}, user)[0], 403
        )
        self.assertIs(self.dialplan, self.file)
        self.assertEqual([k for k in self.store.items if k[0] == ROUTE_KIND], [])


class LoadRoutesTests(SynchronousTestCase):
    """The stored route changes at start."""

    def test_stored_changes_applied_by_pattern(self) -> None:
        """A stored change applies to the file's route of its pattern; one for a gone route or trunk is skipped."""
        dialplan = parse_config(CONFIG, "t.yml", {}).dialplan
        store = MemoryStore()
        self.assertIs(
            self.successResultOf(load_routes(store, dialplan, {"carrier", "backup"})),
            dialplan,
        )
        store.put_item(ROUTE_KIND, "", "_9NXXNXXXXXX", {"trunk": ["backup"]})
        store.put_item(ROUTE_KIND, "", "_9011.", {"trunk": ["gone"]})
        store.put_item(ROUTE_KIND, "", "_7X.", {"trunk": ["backup"]})
        loaded = self.successResultOf(
            load_routes(store, dialplan, {"carrier", "backup"})
        )
        self.assertEqual(
            [r["trunks"] for r in trunk_routes(loaded)], [["backup"], ["backup"]]
        )
        self.assertEqual(trunk_routes(loaded)[0]["prepend"], "+1")
        self.assertEqual(len(loaded.routes), 3)
