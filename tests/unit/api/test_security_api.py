"""Tests for :mod:`pbx.api.security`, mounted on the real API in memory with StubTreq."""

from __future__ import annotations

import json
from typing import Any

from treq.testing import StubTreq
from twisted.internet.defer import Deferred, succeed
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from pbx.api.app import PBXApi
from pbx.api.http import make_site
from pbx.api.security import SecurityAPI, openapi_paths
from pbx.config import parse_config
from pbx.records import AdminRecord, ExtensionRecord
from pbx.security.defence import SourceDefence
from pbx.security.passwords import hash_password, verify_password
from pbx.testing import FakePBX, MemoryStore

ADMIN_PW = "Adm1n-secret-pass"
PREFIX = "/api/v1/security"


def check(secret: str, encoded: str) -> Deferred[bool]:
    """Synchronous password verification."""
    return succeed(verify_password(secret, encoded))


def fast_hash(secret: str) -> Deferred[str]:
    """PBKDF2 with few iterations."""
    return succeed(hash_password(secret, iterations=1000))


class SecurityAPITests(SynchronousTestCase):
    """Listing and lifting bans, scores and the allow-list over the API."""

    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(1_000)
        self.store = MemoryStore()
        self.store.admins["admin"] = AdminRecord("admin", hash_password(ADMIN_PW, iterations=1000))
        self.store.extensions["1001"] = ExtensionRecord("1001", pin_hash=hash_password("482913", iterations=1000))
        pbx = FakePBX(clock=self.clock, store=self.store, config=parse_config("sip: {domain: pbx.test}", "t.yml", {}))
        self.api = PBXApi(pbx, check, fast_hash)
        self.defence = SourceDefence(self.clock)
        security = SecurityAPI(self.defence, self.api.authenticate, self.store.add_audit, self.clock)
        self.api.mount("security", security.resource(), openapi_paths())
        self.treq = StubTreq(make_site(self.api.resource(), 65536).resource)

    def request(self, method: str, path: str, body: Any = None, token: str | None = None) -> tuple[int, Any]:
        """One request; (status, decoded JSON body)."""
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        data = None
        if body is not None:
            headers["Content-Type"] = "application/json"
            data = json.dumps(body).encode()
        d = self.treq.request(method, "http://127.0.0.1" + path, data=data, headers=headers)
        self.treq.flush()
        response = self.successResultOf(d)
        content = self.successResultOf(response.content())
        return response.code, json.loads(content) if content else None

    def login(self, username: str = "admin", password: str = ADMIN_PW) -> str:
        """A bearer token."""
        status, body = self.request("POST", "/api/v1/auth/login", {"username": username, "password": password})
        self.assertEqual(status, 200)
        return str(body["token"])

    def test_bans_listed_and_lifted(self) -> None:
        """A ban is listed, lifted by DELETE (audited), and a second DELETE is 404."""
        self.defence.offence("192.0.2.7", "scanner")
        token = self.login()
        status, body = self.request("GET", f"{PREFIX}/bans", token=token)
        self.assertEqual((status, body), (200, {"bans": [
            {"address": "192.0.2.7", "since": 1000, "until": 1060, "remaining": 60, "strikes": 1,
             "reason": "scanner"}]}))
        self.assertEqual(self.request("DELETE", f"{PREFIX}/bans/192.0.2.7", token=token),
                         (200, {"unbanned": "192.0.2.7"}))
        self.assertFalse(self.defence.banned("192.0.2.7"))
        self.assertEqual(self.store.audit[-1].kind, "security.unban")
        self.assertEqual(self.request("DELETE", f"{PREFIX}/bans/192.0.2.7", token=token)[0], 404)

    def test_scores(self) -> None:
        """Scores are listed highest first."""
        self.defence.offence("192.0.2.7", "auth failure")
        self.defence.offence("192.0.2.8", "unknown user")
        status, body = self.request("GET", f"{PREFIX}/scores", token=self.login())
        self.assertEqual(body, {"scores": [{"address": "192.0.2.8", "score": 20.0},
                                           {"address": "192.0.2.7", "score": 10.0}]})

    def test_allow_list(self) -> None:
        """PUT replaces the allow-list; a bad network or body is 422 and changes nothing."""
        token = self.login()
        self.assertEqual(self.request("PUT", f"{PREFIX}/allow", {"allow": ["192.0.2.0/24"]}, token=token),
                         (200, {"allow": ["192.0.2.0/24"]}))
        self.assertEqual(self.request("GET", f"{PREFIX}/allow", token=token), (200, {"allow": ["192.0.2.0/24"]}))
        for bad in ({"allow": ["nonsense"]}, {"allow": "192.0.2.1"}, {"allow": [], "x": 1}, {"allow": [1]}):
            status, body = self.request("PUT", f"{PREFIX}/allow", bad, token=token)
            self.assertEqual(status, 422, bad)
            self.assertIn("error", body)
        self.assertEqual(self.defence.allow_list(), ["192.0.2.0/24"])
        self.assertEqual(self.store.audit[-1].kind, "security.allow")

    def test_admins_only(self) -> None:
        """Without a token 401; with a user's token 403."""
        self.assertEqual(self.request("GET", f"{PREFIX}/bans")[0], 401)
        user = self.login("1001", "482913")
        self.assertEqual(self.request("GET", f"{PREFIX}/bans", token=user)[0], 403)
        self.assertEqual(self.request("PUT", f"{PREFIX}/allow", {"allow": []}, token=user)[0], 403)

    def test_openapi(self) -> None:
        """The OpenAPI document lists exactly the routes served."""
        status, doc = self.request("GET", "/api/v1/openapi.json")
        documented = {(p, m.upper()) for p, ops in doc["paths"].items() for m in ops if m != "parameters"
                      if p.startswith(PREFIX)}
        served = set()
        for rule in SecurityAPI.app.url_map.iter_rules():
            path = PREFIX + rule.rule.replace("<", "{").replace(">", "}")
            served |= {(path, m) for m in rule.methods - {"HEAD", "OPTIONS"}}
        self.assertEqual(documented, served)
