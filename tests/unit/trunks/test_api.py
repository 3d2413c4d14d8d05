"""Tests for :mod:`pbx.trunks.api`, mounted on the real API in memory with StubTreq."""

from __future__ import annotations

import json
from typing import Any

from treq.testing import StubTreq
from twisted.internet.defer import Deferred, succeed
from twisted.trial.unittest import SynchronousTestCase

from pbx.api.app import PBXApi
from pbx.api.http import make_site
from pbx.calls.signalling import LegServices, Location, SIPSender
from pbx.config import parse_config
from pbx.records import AdminRecord, ExtensionRecord
from pbx.security.passwords import hash_password, verify_password
from pbx.sip.core import SIPCore
from pbx.sip.dialog import LocalAddress
from pbx.sip.dialogs import DialogTable
from pbx.testing import FakePBX, FakeUDPReactor, MemoryStore
from pbx.trunks.api import TrunksAPI, openapi_paths
from pbx.trunks.registry import Trunks

ADMIN_PW = "Adm1n-secret-pass"
PREFIX = "/api/v1/trunks"
CONFIG = """
sip: {domain: pbx.test}
trunks:
  carrier: {uri: "sip:192.0.2.50", username: acct-1, password: "Very-secret-9", register: true,
            caller_id: "+15551230000", max_calls: 4, dids: {"+15551230000": {extension: "1001"}}}
  backup: {uri: "sip:192.0.2.51;transport=tcp", allow_from: [192.0.2.51/32]}
rates:
  carrier: {"1": 0.01, "1900": 1.5}
"""


def check(secret: str, encoded: str) -> Deferred[bool]:
    """Synchronous password verification."""
    return succeed(verify_password(secret, encoded))


def fast_hash(secret: str) -> Deferred[str]:
    """PBKDF2 with few iterations."""
    return succeed(hash_password(secret, iterations=1000))


class TrunksAPITests(SynchronousTestCase):
    """The trunks' state over the API."""

    def setUp(self) -> None:
        """The API with the trunks of CONFIG mounted; nothing sent yet."""
        self.clock = FakeUDPReactor()
        self.clock.advance(1_000)
        self.store = MemoryStore()
        self.store.admins["admin"] = AdminRecord("admin", hash_password(ADMIN_PW, iterations=1000))
        self.store.extensions["1001"] = ExtensionRecord("1001", pin_hash=hash_password("482913", iterations=1000))
        config = parse_config(CONFIG, "t.yml", {})
        pbx = FakePBX(clock=self.clock, store=self.store, config=config)
        core = SIPCore(self.clock)
        address = LocalAddress("udp", "192.0.2.1", 5060)
        services = LegServices(SIPSender(core), Location(lambda n: [], lambda t: address), self.clock,
                               DialogTable(), "pbx.test")
        self.trunks = Trunks(config.trunks, services, lambda t: address)
        self.api = PBXApi(pbx, check, fast_hash)
        self.api.mount("trunks", TrunksAPI(self.trunks, self.api.authenticate, self.store, self.clock).resource(),
                       openapi_paths())
        self.treq = StubTreq(make_site(self.api.resource(), 65536).resource)

    def request(self, method: str, path: str, body: Any = None, token: str | None = None) -> tuple[int, Any]:
        """One request; (status, decoded JSON body)."""
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        d = self.treq.request(method, "http://127.0.0.1" + path, headers=headers)
        self.treq.flush()
        response = self.successResultOf(d)
        content = self.successResultOf(response.content())
        return response.code, json.loads(content) if content else None

    def login(self, username: str = "admin", password: str = ADMIN_PW) -> str:
        """A bearer token."""
        d = self.treq.post("http://127.0.0.1/api/v1/auth/login",
                           json.dumps({"username": username, "password": password}).encode(),
                           headers={"Content-Type": "application/json"})
        self.treq.flush()
        response = self.successResultOf(d)
        return str(json.loads(self.successResultOf(response.content()))["token"])

    def test_list_with_state_and_no_password(self) -> None:
        """Every trunk is listed with its registration, up/down state and calls; no password anywhere."""
        self.trunks.get("carrier").take()
        status, body = self.request("GET", f"{PREFIX}/", token=self.login())
        self.assertEqual(status, 200)
        carrier, backup = body["trunks"]
        self.assertNotIn("Very-secret-9", json.dumps(body))
        self.assertEqual(
            (carrier["name"], carrier["transport"], carrier["register"], carrier["password_set"],
             carrier["calls_in_use"], carrier["max_calls"], carrier["up"], carrier["dids"]),
            ("carrier", "udp", True, True, 1, 4, True, {"+15551230000": {"extension": "1001"}}),
        )
        self.assertEqual(carrier["registration"],
                         {"state": "idle", "registered": False, "expires_in": 0, "last_status": 0, "failures": 0})
        self.assertEqual((backup["transport"], backup["allow_from"], backup["registration"], backup["password_set"]),
                         ("tcp", ["192.0.2.51/32"], None, False))

    def test_one_trunk_and_rates(self) -> None:
        """One trunk by name (404 for another); the rate table."""
        token = self.login()
        status, body = self.request("GET", f"{PREFIX}/backup", token=token)
        self.assertEqual((status, body["name"]), (200, "backup"))
        self.assertEqual(self.request("GET", f"{PREFIX}/nope", token=token)[0], 404)
        self.assertEqual(self.request("GET", f"{PREFIX}/rates", token=token),
                         (200, {"rates": {"carrier": {"1900": 1.5, "1": 0.01}}}))

    def test_admins_only(self) -> None:
        """Without a token 401; with a user's token 403."""
        self.assertEqual(self.request("GET", f"{PREFIX}/")[0], 401)
        user = self.login("1001", "482913")
        self.assertEqual(self.request("GET", f"{PREFIX}/", token=user)[0], 403)
        self.assertEqual(self.request("GET", f"{PREFIX}/carrier", token=user)[0], 403)

    def test_openapi(self) -> None:
        """The OpenAPI document lists exactly the routes served."""
        status, doc = self.request("GET", "/api/v1/openapi.json")
        documented = {(p, m.upper()) for p, ops in doc["paths"].items() for m in ops if m != "parameters"
                      if p.startswith(PREFIX)}
        served = set()
        for rule in TrunksAPI.app.url_map.iter_rules():
            path = PREFIX + rule.rule.replace("<", "{").replace(">", "}")
            served |= {(path, m) for m in rule.methods or () if m not in ("HEAD", "OPTIONS")}
        self.assertEqual(documented, served)
