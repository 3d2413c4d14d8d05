"""
Tests for changing trunks and the rate table through :mod:`pbx.trunks.api`,
and for :mod:`pbx.trunks.stored` (the API's trunks over the file's at start).

The API runs in memory with StubTreq; the trunks' SIP goes out of a fake UDP
port, where the tests read the REGISTERs pbx sends and answer them.
"""

from __future__ import annotations

import json
from typing import Any

from treq.testing import StubTreq
from twisted.internet.defer import Deferred, succeed
from twisted.trial.unittest import SynchronousTestCase

from pbx.api.app import PBXApi
from pbx.api.http import make_site
from pbx.calls.dialplan import ToTrunks, parse_dialplan
from pbx.calls.signalling import LegServices, Location, SIPSender
from pbx.config import parse_config
from pbx.records import AdminRecord, ExtensionRecord
from pbx.security.passwords import hash_password, verify_password
from pbx.sip.core import SIPCore
from pbx.sip.dialog import LocalAddress
from pbx.sip.dialogs import DialogTable
from pbx.sip.message import Request, make_response, parse_message
from pbx.sip.transaction import Peer
from pbx.testing import FakePBX, FakeUDPPort, FakeUDPReactor, MemoryStore
from pbx.trunks.api import TrunksAPI, openapi_paths
from pbx.trunks.registry import Trunks
from pbx.trunks.routes import plan
from pbx.trunks.stored import RATES_KEY, RATES_KIND, TRUNK_KIND, load_trunks

ADMIN_PW = "Adm1n-secret-pass"
PREFIX = "/api/v1/trunks"
SECRET = "Very-secret-9"
NEW_SECRET = "Other-secret-4"
CARRIER = ("192.0.2.60", 5070)
CONFIG = """
sip: {domain: pbx.test}
trunks:
  carrier: {uri: "sip:192.0.2.50", username: acct-1, password: "File-secret-1", register: true,
            dids: {"+15551230000": {extension: "1001"}}}
  backup: {uri: "sip:192.0.2.51", allow_from: [192.0.2.51/32]}
rates:
  carrier: {"1": 0.01}
"""
NEWCO = {
    "uri": f"sip:{CARRIER[0]}:{CARRIER[1]}",
    "username": "acct-9",
    "password": SECRET,
    "register": True,
    "register_expires": 600,
    "caller_id": "+15554440000",
    "dids": {"+15554440000": {"extension": "1001"}},
}


def check(secret: str, encoded: str) -> Deferred[bool]:
    """Synchronous password verification."""
    return succeed(verify_password(secret, encoded))


def fast_hash(secret: str) -> Deferred[str]:
    """PBKDF2 with few iterations."""
    return succeed(hash_password(secret, iterations=1000))


class TrunkEditingTests(SynchronousTestCase):
    """Trunks created, changed and deleted over the API, live."""

    def setUp(self) -> None:
        """The API with CONFIG's trunks running; SIP goes out of a fake UDP port."""
        self.clock = FakeUDPReactor()
        self.clock.advance(1_000)
        self.store = MemoryStore()
        self.store.admins["admin"] = AdminRecord(
            "admin", hash_password(ADMIN_PW, iterations=1000)
        )
        self.store.extensions["1001"] = ExtensionRecord(
            "1001", pin_hash=hash_password("482913", iterations=1000)
        )
        config = parse_config(CONFIG, "t.yml", {})
        pbx = FakePBX(clock=self.clock, store=self.store, config=config)
        self.core = SIPCore(self.clock)
        self.port = FakeUDPPort(5060, None)
        self.core.transports.udp = self.port
        address = LocalAddress("udp", "192.0.2.1", 5060)
        services = LegServices(
            SIPSender(self.core),
            Location(lambda n: [], lambda t: address),
            self.clock,
            DialogTable(),
            "pbx.test",
        )
        self.trunks = Trunks(config.trunks, services, lambda t: address)
        self.trunks.start()
        self.api = PBXApi(pbx, check, fast_hash)
        self.api.mount(
            "trunks",
            TrunksAPI(
                self.trunks, self.api.authenticate, self.store, self.clock
            ).resource(),
            openapi_paths(),
        )
        self.treq = StubTreq(make_site(self.api.resource(), 65536).resource)
        self.token = self.login()

    def tearDown(self) -> None:
        """Stop every trunk: no timer is left behind."""
        self.trunks.stop()
        self.clock.advance(64)
        self.assertEqual(self.clock.getDelayedCalls(), [])

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

    def admin(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        """One request as the administrator."""
        return self.request(method, path, body, self.token)

    def login(self, username: str = "admin", password: str = ADMIN_PW) -> str:
        """A bearer token."""
        status, body = self.request(
            "POST", "/api/v1/auth/login", {"username": username, "password": password}
        )
        self.assertEqual(status, 200)
        return str(body["token"])

    def registers(self, to: tuple[str, int] = CARRIER) -> list[Request]:
        """The REGISTERs sent to ``to`` so far, in order."""
        out = []
        for data, addr in self.port.written:
            message = parse_message(data)
            if (
                addr == to
                and isinstance(message, Request)
                and message.method == "REGISTER"
            ):
                out.append(message)
        return out

    def grant(self, request: Request, source: tuple[str, int] = CARRIER) -> None:
        """The carrier answers ``request`` 200 with the binding granted for 600 s."""
        response = make_response(request, 200, to_tag="c1")
        response.headers.add("Contact", f"{request.headers.get('Contact')};expires=600")
        self.core.receive(response.to_bytes(), Peer("udp", *source), False)

    def test_create_registers_at_once(self) -> None:
        """
        PUT a new registering trunk: 201, stored and audited; its REGISTER goes
        to the carrier now, and once granted the live state says registered.
        """
        status, body = self.admin("PUT", f"{PREFIX}/newco", NEWCO)
        self.assertEqual(
            (status, body["name"], body["source"], body["password_set"]),
            (201, "newco", "api", True),
        )
        self.assertEqual(body["registration"]["state"], "registering")
        [register] = self.registers()
        self.assertEqual(
            (str(register.uri), register.headers.get("Expires")),
            ("sip:192.0.2.60:5070", "600"),
        )
        self.grant(register)
        status, body = self.admin("GET", f"{PREFIX}/newco")
        self.assertEqual(
            (status, body["registration"]["state"], body["registration"]["registered"]),
            (200, "registered", True),
        )
        self.assertEqual(
            json.loads(self.store.items[(TRUNK_KIND, "", "newco")])["password"], SECRET
        )
        [event] = [e for e in self.store.audit if e.kind.startswith("trunks.")]
        self.assertEqual(
            (event.kind, event.subject, event.detail),
            ("trunks.put", "newco", "by admin: created"),
        )
        self.assertEqual(self.trunks.did_owner("+15554440000"), "newco")

    def test_password_is_write_only(self) -> None:
        """No answer carries the password; a PUT without one keeps it, a PUT with one replaces it."""
        self.admin("PUT", f"{PREFIX}/newco", NEWCO)
        status, body = self.admin(
            "PUT",
            f"{PREFIX}/newco",
            {**NEWCO, "password": "", "caller_id": "+15554440001"},
        )
        self.assertEqual(
            (status, body["caller_id"], body["password_set"]),
            (200, "+15554440001", True),
        )
        self.assertEqual(self.trunks.get("newco").config.password, SECRET)
        without = {k: v for k, v in NEWCO.items() if k != "password"}
        self.assertEqual(self.admin("PUT", f"{PREFIX}/newco", without)[0], 200)
        self.assertEqual(self.trunks.get("newco").config.password, SECRET)
        self.admin("PUT", f"{PREFIX}/newco", {**NEWCO, "password": NEW_SECRET})
        self.assertEqual(self.trunks.get("newco").config.password, NEW_SECRET)
        for path in (f"{PREFIX}/", f"{PREFIX}/newco", f"{PREFIX}/carrier"):
            text = json.dumps(self.admin("GET", path)[1])
            for secret in (SECRET, NEW_SECRET, "File-secret-1"):
                self.assertNotIn(secret, text)

    def test_change_restarts_the_registration(self) -> None:
        """Changing a registered trunk unregisters the old binding (Expires: 0) and registers the new settings."""
        self.admin("PUT", f"{PREFIX}/newco", NEWCO)
        self.grant(self.registers()[0])
        self.admin("PUT", f"{PREFIX}/newco", {**NEWCO, "username": "acct-10"})
        _, unregister, fresh = self.registers()
        self.assertEqual(
            (unregister.headers.get("Expires"), unregister.to.uri.user), ("0", "acct-9")
        )
        self.assertEqual(
            (fresh.headers.get("Expires"), fresh.to.uri.user), ("600", "acct-10")
        )

    def test_calls_in_progress_are_not_cut(self) -> None:
        """A call up on a trunk being changed stays counted on the trunk it went out on and is released there."""
        self.admin("PUT", f"{PREFIX}/newco", NEWCO)
        old = self.trunks.get("newco")
        old.take()
        self.admin("PUT", f"{PREFIX}/newco", {**NEWCO, "max_calls": 1})
        new = self.trunks.get("newco")
        self.assertIsNot(new, old)
        self.assertEqual(
            (old.in_use, new.in_use, new.calls_total, new.full), (1, 0, 1, False)
        )
        old.release()
        self.assertEqual(old.in_use, 0)

    def test_delete_unregisters(self) -> None:
        """DELETE of an API trunk: 204, Expires: 0 to the carrier, gone from the store, the API and DIDs."""
        self.admin("PUT", f"{PREFIX}/newco", NEWCO)
        self.grant(self.registers()[0])
        status, _ = self.admin("DELETE", f"{PREFIX}/newco")
        self.assertEqual(status, 204)
        self.assertEqual(self.registers()[-1].headers.get("Expires"), "0")
        self.assertEqual(self.admin("GET", f"{PREFIX}/newco")[0], 404)
        self.assertNotIn((TRUNK_KIND, "", "newco"), self.store.items)
        self.assertIsNone(self.trunks.did_owner("+15554440000"))
        self.assertEqual(self.admin("DELETE", f"{PREFIX}/newco")[0], 404)
        self.assertEqual(
            [e.kind for e in self.store.audit if e.kind.startswith("trunks.")],
            ["trunks.put", "trunks.delete"],
        )

    def test_file_trunks(self) -> None:
        """
        A file trunk cannot be deleted (409); the API's copy of it wins over
        the file's, and deleting that copy brings the file's settings back.
        """
        status, body = self.admin("DELETE", f"{PREFIX}/backup")
        self.assertEqual(status, 409)
        self.assertIn("configuration file", body["error"])
        status, body = self.admin(
            "PUT",
            f"{PREFIX}/backup",
            {"uri": "sip:192.0.2.52", "allow_from": ["192.0.2.52"]},
        )
        self.assertEqual(
            (status, body["source"], body["uri"]), (200, "api", "sip:192.0.2.52")
        )
        self.assertEqual(self.admin("DELETE", f"{PREFIX}/backup")[0], 204)
        status, body = self.admin("GET", f"{PREFIX}/backup")
        self.assertEqual(
            (body["source"], body["uri"], body["allow_from"]),
            ("file", "sip:192.0.2.51", ["192.0.2.51/32"]),
        )

    def test_file_trunk_not_brought_back_over_a_did_taken_since(self) -> None:
        """Going back to the file's trunk is refused (409) while another trunk holds one of the file's DIDs."""
        self.admin("PUT", f"{PREFIX}/carrier", {"uri": "sip:192.0.2.50"})
        body = {
            "uri": "sip:192.0.2.70",
            "dids": {"+15551230000": {"extension": "1001"}},
        }
        self.assertEqual(self.admin("PUT", f"{PREFIX}/newco", body)[0], 201)
        status, answer = self.admin("DELETE", f"{PREFIX}/carrier")
        self.assertEqual(status, 409)
        self.assertIn("+15551230000", answer["error"])
        self.assertEqual(self.trunks.get("carrier").config.dids, {})

    def test_bad_input_names_the_field(self) -> None:
        """Bad trunks get 400 naming the field, as the config file's errors do; nothing is stored or started."""
        cases = [
            ({**NEWCO, "uri": "http://example.com"}, "uri: "),
            ({**NEWCO, "max_calls": -1}, "max_calls: "),
            ({**NEWCO, "register": "yes"}, "register: "),
            ({**NEWCO, "colour": "blue"}, "colour: unknown key"),
            ({**NEWCO, "username": ""}, "username: is required to register"),
            (
                {**NEWCO, "dids": {"+15551230000": {"extension": "1001"}}},
                "dids.+15551230000: is a DID of trunk carrier",
            ),
            (
                {**NEWCO, "dids": {"+15554440000": {"extension": "x"}}},
                "dids.+15554440000.extension: ",
            ),
            ({**NEWCO, "name": "other"}, "name: differs"),
            ({"username": "x"}, "uri: is required"),
        ]
        for body, problem in cases:
            status, answer = self.admin("PUT", f"{PREFIX}/newco", body)
            self.assertEqual(status, 400, body)
            self.assertTrue(answer["error"].startswith(problem), (answer, problem))
        status, answer = self.admin("PUT", f"{PREFIX}/Bad_Name", NEWCO)
        self.assertEqual((status, answer["error"].split(":")[0]), (400, "name"))
        self.assertEqual(self.admin("PUT", f"{PREFIX}/newco", [1, 2])[0], 400)
        self.assertEqual([k for k in self.store.items if k[0] == TRUNK_KIND], [])
        self.assertIsNone(self.trunks.get("newco"))
        self.assertEqual(self.registers(), [])

    def test_administrators_only(self) -> None:
        """Without a token 401; with a user's token 403, and nothing changes."""
        user = self.login("1001", "482913")
        for method, path, body in [
            ("PUT", f"{PREFIX}/newco", NEWCO),
            ("DELETE", f"{PREFIX}/carrier", None),
            ("PUT", f"{PREFIX}/rates", {"rates": {}}),
        ]:
            self.assertEqual(self.request(method, path, body)[0], 401)
            self.assertEqual(self.request(method, path, body, user)[0], 403)
        self.assertIsNone(self.trunks.get("newco"))
        self.assertIsNotNone(self.trunks.get("carrier"))
        self.assertEqual(self.store.items, {})

    def test_rates(self) -> None:
        """PUT /rates replaces the table (stored, audited); the next call's plan is ordered by it; bad rows are 400."""
        route = ToTrunks(("carrier", "backup"))
        before = plan(route, "+15552345678", self.trunks.trunks, self.trunks.rates)
        self.assertEqual([a.trunk.name for a in before], ["carrier", "backup"])
        status, body = self.admin(
            "PUT",
            f"{PREFIX}/rates",
            {"rates": {"carrier": {"1": 0.5}, "backup": {"1": 0.1}}},
        )
        self.assertEqual(
            (status, body),
            (200, {"rates": {"carrier": {"1": 0.5}, "backup": {"1": 0.1}}}),
        )
        after = plan(route, "+15552345678", self.trunks.trunks, self.trunks.rates)
        self.assertEqual(
            [(a.trunk.name, a.price) for a in after],
            [("backup", 0.1), ("carrier", 0.5)],
        )
        self.assertEqual(
            json.loads(self.store.items[(RATES_KIND, "", RATES_KEY)]),
            {"rates": {"backup": {"1": 0.1}, "carrier": {"1": 0.5}}},
        )
        self.assertEqual(
            [e.kind for e in self.store.audit if e.kind.startswith("trunks.")],
            ["trunks.rates"],
        )
        for bad, problem in [
            ({"rates": {"nope": {"1": 1}}}, "rates.nope: no trunk"),
            ({"rates": {"carrier": {"1x": 1}}}, "rates.carrier.1x: "),
            ({"rates": {"carrier": {"1": -1}}}, "rates.carrier.1: "),
            ({"prices": {}}, "prices: unknown key"),
            ({}, "rates: required"),
        ]:
            status, answer = self.admin("PUT", f"{PREFIX}/rates", bad)
            self.assertEqual(status, 400, bad)
            self.assertTrue(answer["error"].startswith(problem), (answer, problem))
        self.assertEqual(
            self.trunks.rates.public(), {"carrier": {"1": 0.5}, "backup": {"1": 0.1}}
        )

    def test_tls_trunk_gets_a_verifying_creator(self) -> None:
        """A verifying TLS trunk's next hop gets a verifying creator in the connector's table; one with verify: false none."""
        self.trunks.tls = {}
        body = {"uri": "sips:carrier.example:5061", "verify": True}
        self.assertEqual(self.admin("PUT", f"{PREFIX}/secure", body)[0], 201)
        self.assertEqual(list(self.trunks.tls), [("carrier.example", 5061)])
        body = {"uri": "sips:other.example:5061", "verify": False}
        self.assertEqual(self.admin("PUT", f"{PREFIX}/loose", body)[0], 201)
        self.assertEqual(list(self.trunks.tls), [("carrier.example", 5061)])

    def test_unreadable_ca_is_400(self) -> None:
        """A ``ca`` that cannot be read is a 400 naming ``ca``; nothing is stored or started."""
        self.trunks.tls = {}
        body = {"uri": "sips:carrier.example:5061", "ca": "/nonexistent/ca.pem"}
        status, answer = self.admin("PUT", f"{PREFIX}/secure", body)
        self.assertEqual((status, answer["error"].split(":")[0]), (400, "ca"))
        self.assertIsNone(self.trunks.get("secure"))
        self.assertEqual([k for k in self.store.items if k[0] == TRUNK_KIND], [])


class RoutedTrunkTests(SynchronousTestCase):
    """A trunk a route names is not deleted from under it."""

    def test_routed_api_trunk_is_kept(self) -> None:
        """DELETE of an API trunk a route names is 409 and the trunk runs on; once no route names it, 204."""
        store = MemoryStore()
        store.admins["admin"] = AdminRecord(
            "admin", hash_password(ADMIN_PW, iterations=1000)
        )
        clock = FakeUDPReactor()
        config = parse_config(CONFIG, "t.yml", {})
        address = LocalAddress("udp", "192.0.2.1", 5060)
        services = LegServices(
            SIPSender(SIPCore(clock)),
            Location(lambda n: [], lambda t: address),
            clock,
            DialogTable(),
            "pbx.test",
        )
        trunks = Trunks(config.trunks, services, lambda t: address)
        dialplan = [parse_dialplan([{"match": "_9X.", "trunk": ["newco", "carrier"]}])]
        api = PBXApi(FakePBX(clock=clock, store=store, config=config), check, fast_hash)
        trunks_api = TrunksAPI(
            trunks, api.authenticate, store, clock, routes=lambda: dialplan[0]
        )
        api.mount("trunks", trunks_api.resource(), openapi_paths())
        treq = StubTreq(make_site(api.resource(), 65536).resource)

        def call(
            method: str, path: str, body: Any = None, token: str = ""
        ) -> tuple[int, Any]:
            headers = {"Content-Type": "application/json"}
            if token:
                headers["Authorization"] = f"Bearer {token}"
            data = json.dumps(body).encode() if body is not None else None
            d = treq.request(
                method, "http://127.0.0.1" + path, data=data, headers=headers
            )
            treq.flush()
            response = self.successResultOf(d)
            content = self.successResultOf(response.content())
            return response.code, json.loads(content) if content else None

        token = call(
            "POST", "/api/v1/auth/login", {"username": "admin", "password": ADMIN_PW}
        )[1]["token"]
        self.assertEqual(
            call("PUT", f"{PREFIX}/newco", {"uri": "sip:192.0.2.70"}, token)[0], 201
        )
        status, body = call("DELETE", f"{PREFIX}/newco", token=token)
        self.assertEqual(status, 409)
        self.assertIn("route 0 (_9X.)", body["error"])
        self.assertIsNotNone(trunks.get("newco"))
        dialplan[0] = parse_dialplan([{"match": "_9X.", "trunk": ["carrier"]}])
        self.assertEqual(call("DELETE", f"{PREFIX}/newco", token=token)[0], 204)


class LoadTrunksTests(SynchronousTestCase):
    """The stored trunks and rates at start."""

    def trunks(self) -> Trunks:
        """CONFIG's trunks, not started, sending nowhere."""
        config = parse_config(CONFIG, "t.yml", {})
        address = LocalAddress("udp", "192.0.2.1", 5060)
        clock = FakeUDPReactor()
        services = LegServices(
            SIPSender(SIPCore(clock)),
            Location(lambda n: [], lambda t: address),
            clock,
            DialogTable(),
            "pbx.test",
        )
        return Trunks(config.trunks, services, lambda t: address)

    def test_stored_over_the_file(self) -> None:
        """A stored trunk joins the file's, a stored copy of a file trunk replaces it, the stored rates replace the file's."""
        store = MemoryStore()
        store.put_item(TRUNK_KIND, "", "newco", NEWCO)
        store.put_item(TRUNK_KIND, "", "backup", {"uri": "sip:192.0.2.52"})
        store.put_item(RATES_KIND, "", RATES_KEY, {"rates": {"newco": {"44": 0.2}}})
        trunks = self.trunks()
        self.assertEqual(
            self.successResultOf(Deferred.fromCoroutine(load_trunks(store, trunks))), 2
        )
        self.assertEqual(list(trunks.trunks), ["carrier", "backup", "newco"])
        self.assertEqual(
            (trunks.get("backup").config.host, trunks.get("newco").config.password),
            ("192.0.2.52", SECRET),
        )
        self.assertIs(trunks.get("carrier").config, trunks.configured["carrier"])
        self.assertEqual(trunks.rates.public(), {"newco": {"44": 0.2}})

    def test_stored_trunk_with_a_did_of_another(self) -> None:
        """A stored trunk holding a DID the file gives another trunk is skipped."""
        store = MemoryStore()
        store.put_item(
            TRUNK_KIND,
            "",
            "newco",
            {**NEWCO, "dids": {"+15551230000": {"extension": "1001"}}},
        )
        trunks = self.trunks()
        self.assertEqual(
            self.successResultOf(Deferred.fromCoroutine(load_trunks(store, trunks))), 0
        )
        self.assertIsNone(trunks.get("newco"))

    def test_stored_trunk_that_no_longer_validates(self) -> None:
        """A stored trunk that is not valid is skipped (logged), and the rest start."""
        store = MemoryStore()
        store.put_item(TRUNK_KIND, "", "broken", {"uri": "not a uri"})
        trunks = self.trunks()
        self.assertEqual(
            self.successResultOf(Deferred.fromCoroutine(load_trunks(store, trunks))), 0
        )
        self.assertEqual(list(trunks.trunks), ["carrier", "backup"])
        self.assertEqual(trunks.rates.public(), {"carrier": {"1": 0.01}})
