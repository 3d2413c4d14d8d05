"""
Tests for the attendant feature as the PBX runs it: the dropin, the store
catalogue (config seeding, API overrides) and the REST routes mounted on
the real API, in memory with StubTreq.
"""

from __future__ import annotations

import json
from collections import deque
from typing import Any

import yaml

from zope.interface.verify import verifyObject

from treq.testing import StubTreq
from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.task import Clock
from twisted.logger import LogLevel, capturedLogs
from twisted.trial.unittest import SynchronousTestCase

from pbx.api.app import PBXApi
from pbx.api.http import make_site
from pbx.config import parse_config
from pbx.errors import ConfigError, StartupError
from pbx.features.attendant.catalogue import MENU, SCHEDULE, Catalogue
from pbx.features.attendant.service import AttendantService
from pbx.interfaces import IFeature
from pbx.plugin_loader import configure, discover
from pbx.plugins.attendant import attendant
from pbx.records import AdminRecord, ExtensionRecord
from pbx.security.passwords import hash_password, verify_password
from pbx.testing import FakePBX, MemoryStore

from support.attendant_fakes import ScriptedChannel
from support.paths import ROOT

ADMIN_PW = "Adm1n-secret-pass"
CONFIG = """
sip: {domain: pbx.test}
api: {token_lifetime: 600, max_body: 65536}
dialplan:
  - {match: "*50", app: attendant, args: {menu: main}}
  - {match: "*51", app: attendant, args: {schedule: late}}
"""
FEATURE = """
operator: "1000"
menus:
  main:
    greeting: aa/welcome
    options: {1: {extension: "1001"}, 2: {menu: sales}, "*": {hangup: true}}
  sales: {greeting: aa/operator, options: {9: {menu: main}}}
  closed: {greeting: aa/closed}
schedules:
  office: {hours: [{days: mon-fri, from: "08:00", to: "17:00"}], open: main, closed: closed}
"""
PREFIX = "/api/v1/attendant"


def check(secret: str, encoded: str) -> Deferred[bool]:
    """Synchronous password verification."""
    return succeed(verify_password(secret, encoded))


def fast_hash(secret: str) -> Deferred[str]:
    """PBKDF2 with few iterations."""
    return succeed(hash_password(secret, iterations=1000))


class FeatureTestCase(SynchronousTestCase):
    """A fake PBX with the real API, and the attendant feature started on it."""

    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(1_700_000_000)
        self.store = MemoryStore()
        self.store.admins["admin"] = AdminRecord("admin", hash_password(ADMIN_PW, iterations=1000))
        self.store.extensions["1001"] = ExtensionRecord(
            "1001", name="Alice Smith", pin_hash=hash_password("482913", iterations=1000))
        self.pbx = FakePBX(clock=self.clock, store=self.store, config=parse_config(CONFIG, "t.yml", {}))
        self.api = PBXApi(self.pbx, check, fast_hash)
        self.pbx.api = self.api
        self.treq = StubTreq(make_site(self.api.resource(), 65536).resource)
        self.service = self.start()

    def start(self, feature: str = FEATURE) -> AttendantService:
        """Make and start the feature's service as PBXService does (a restart when called again)."""
        self.pbx.applications.pop("attendant", None)
        self.api._mounts.pop("attendant", None)
        with capturedLogs() as self.logs:
            service = attendant.make_service(self.pbx, attendant.parse_options(yaml.safe_load(feature)))
            assert isinstance(service, AttendantService)
            service.startService()
        self.successResultOf(service.seeded)
        return service

    def request(self, method: str, path: str, body: Any = None, token: str | None = None,
                raw: bytes | None = None) -> tuple[int, Any]:
        """One request to the API; (status, decoded JSON body)."""
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        data = raw
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

    def call_attendant(self, *script: Any, args: dict[str, Any] | None = None) -> ScriptedChannel:
        """One call through the registered application."""
        channel = ScriptedChannel(self.clock, deque(script))
        d = self.pbx.applications["attendant"].run(channel, args or {"menu": "main"})
        for _ in range(1000):
            if d.called:
                break
            self.clock.advance(0.5)
        self.successResultOf(d)
        return channel


class PluginTests(FeatureTestCase):
    """The dropin and its service."""

    def test_plugin(self) -> None:
        """The dropin provides IFeature named attendant and is discovered with the shipped plugins."""
        self.assertTrue(verifyObject(IFeature, attendant))
        self.assertIs(discover()["attendant"], attendant)

    def test_config_errors_name_the_feature_key(self) -> None:
        """The loader reports a bad menu under features.attendant."""
        raw = {"attendant": {"menus": {"main": {"greeting": "aa/welcome", "options": {7: {"extension": 7}}}}}}
        with self.assertRaises(ConfigError) as caught:
            configure(raw, {"attendant": attendant})
        self.assertEqual(caught.exception.key, "features.attendant.menus.main.options.7.extension")

    def test_started(self) -> None:
        """Starting registers the application, mounts the API with its OpenAPI paths, and seeds the store."""
        self.assertIn("attendant", self.pbx.applications)
        _, paths = self.pbx.mounted["attendant"]
        self.assertEqual(set(paths), {f"{PREFIX}/menus", f"{PREFIX}/menus/{{name}}",
                                      f"{PREFIX}/schedules", f"{PREFIX}/schedules/{{name}}"})
        self.assertEqual(
            sorted((kind, key, data["source"]) for (kind, _, key), data in self.items().items()),
            [(MENU, "closed", "config"), (MENU, "main", "config"), (MENU, "sales", "config"),
             (SCHEDULE, "office", "config")],
        )
        status, doc = self.request("GET", "/api/v1/openapi.json")
        self.assertIn(f"{PREFIX}/menus/{{name}}", doc["paths"])

    def items(self) -> dict[tuple[str, str, str], dict[str, Any]]:
        """The store's documents, decoded."""
        return {k: json.loads(v) for k, v in self.store.items.items()}

    def test_dangling_route_logged(self) -> None:
        """A route naming a schedule that neither the file nor the store has is logged as an error."""
        errors = [e for e in self.logs if e.get("log_level") is LogLevel.error]
        self.assertEqual([(e["key"], e["problem"]) for e in errors],
                         [("dialplan[1].args.schedule", "no attendant schedule 'late'")])

    def test_bad_route_args_stop_startup(self) -> None:
        """Route arguments the attendant does not understand stop startup with one line."""
        self.pbx.config = parse_config(CONFIG.replace("{schedule: late}", "{menu: a, schedule: b}"), "t.yml", {})
        with self.assertRaises(StartupError) as caught:
            attendant.make_service(self.pbx, attendant.parse_options({}))
        self.assertEqual(str(caught.exception), "dialplan[1].args: give either menu or schedule, not both")

    def test_stale_config_documents_removed(self) -> None:
        """A restart removes config copies of menus the file no longer has, and keeps API ones."""
        self.store.items[(MENU, "", "gone")] = json.dumps({"source": "config", "definition": {"greeting": "aa/closed"}})
        self.store.items[(MENU, "", "mine")] = json.dumps({"source": "api", "definition": {"greeting": "aa/closed"}})
        self.start()
        self.assertNotIn((MENU, "", "gone"), self.store.items)
        self.assertIn((MENU, "", "mine"), self.store.items)

    def test_store_failure_uses_file(self) -> None:
        """When the store cannot be read, calls use the file's menus."""
        catalogue = Catalogue(self.store, attendant.parse_options(yaml.safe_load(FEATURE)))
        self.patch(self.store, "list_items", lambda *a, **k: fail(RuntimeError("database down")))
        menu_set = self.successResultOf(Deferred.fromCoroutine(catalogue.current()))
        self.assertEqual(sorted(menu_set.menus), ["closed", "main", "sales"])
        self.flushLoggedErrors(RuntimeError)


class MenuAPITests(FeatureTestCase):
    """/api/v1/attendant/menus."""

    def setUp(self) -> None:
        super().setUp()
        self.token = self.login()

    def test_list_and_get(self) -> None:
        """GET lists the menus in effect with name and source; GET one returns it; unknown is 404."""
        status, body = self.request("GET", f"{PREFIX}/menus", token=self.token)
        self.assertEqual(status, 200)
        self.assertEqual([(m["name"], m["source"]) for m in body["menus"]],
                         [("closed", "config"), ("main", "config"), ("sales", "config")])
        status, body = self.request("GET", f"{PREFIX}/menus/main", token=self.token)
        self.assertEqual((status, body["options"]["1"], body["retries"]), (200, {"extension": "1001"}, 3))
        self.assertEqual(self.request("GET", f"{PREFIX}/menus/nope", token=self.token),
                         (404, {"error": "no menu 'nope'"}))

    def test_admins_only(self) -> None:
        """Without a token the answer is 401; a user's session gets 403."""
        self.assertEqual(self.request("GET", f"{PREFIX}/menus")[0], 401)
        user = self.login("1001", "482913")
        for method, path in (("GET", "/menus"), ("PUT", "/menus/x"), ("DELETE", "/menus/sales")):
            self.assertEqual(self.request(method, PREFIX + path, {"greeting": "aa/welcome"}, token=user),
                             (403, {"error": "administrators only"}))

    def test_create_applies_to_next_call(self) -> None:
        """PUT creates a menu (201) that the next call can reach; GET shows it from the API."""
        status, body = self.request("PUT", f"{PREFIX}/menus/support",
                                    {"greeting": ["aa/operator"], "options": {"1": {"menu": "main"}}}, token=self.token)
        self.assertEqual((status, body["source"], body["name"]), (201, "api", "support"))
        self.assertEqual(body["options"], {"1": {"menu": "main"}})
        channel = self.call_attendant(args={"menu": "support"})
        self.assertEqual(channel.heard()[0], "aa/operator")
        kinds = [e.kind for e in self.store.audit]
        self.assertIn("attendant.menu.put", kinds)

    def test_replace_config_menu_overrides_it_across_restarts(self) -> None:
        """PUT over a config menu answers 200; the API version wins the next call and a restart; DELETE reverts."""
        status, body = self.request("PUT", f"{PREFIX}/menus/main",
                                    {"greeting": "aa/closed", "options": {"*": {"hangup": True}}}, token=self.token)
        self.assertEqual((status, body["source"]), (200, "api"))
        self.assertEqual(self.call_attendant("*").heard(), ["aa/closed", "general/goodbye"])
        self.start()
        self.assertEqual(self.call_attendant("*").heard(), ["aa/closed", "general/goodbye"])
        self.assertEqual(self.request("DELETE", f"{PREFIX}/menus/main", token=self.token), (200, {"reverted": "main"}))
        self.assertEqual(self.request("GET", f"{PREFIX}/menus/main", token=self.token)[1]["source"], "config")
        self.assertEqual(self.call_attendant("*").heard(), ["aa/welcome", "general/goodbye"])

    def test_round_trip(self) -> None:
        """What GET returns can be PUT back unchanged."""
        _, body = self.request("GET", f"{PREFIX}/menus/main", token=self.token)
        status, again = self.request("PUT", f"{PREFIX}/menus/main", body, token=self.token)
        self.assertEqual((status, {**again, "source": "config"}), (200, body))

    def test_validation_names_the_field(self) -> None:
        """A bad body is a 400 naming the field, relative to the body."""
        cases = [
            ({"greeting": "aa/welcome", "options": {"7": {"extension": 1001}}}, "options.7.extension"),
            ({"greeting": "aa/welcome", "options": {"2": {"menu": "nope"}}}, "options.2.menu"),
            ({"greeting": "aa/welcome", "on_fail": {"menu": "nope"}}, "on_fail.menu"),
            ({"options": {}}, "greeting"),
            ({"greeting": "aa/welcome", "name": "other"}, "name"),
            ({"greeting": "aa/welcome", "bogus": 1}, "bogus"),
            ({"greeting": "/tmp/a\nb.wav"}, "greeting"),
            ({"greeting": ["aa/welcome", "x" * 2000 + ".wav"]}, "greeting[1]"),
        ]
        for body, field in cases:
            status, answer = self.request("PUT", f"{PREFIX}/menus/new", body, token=self.token)
            self.assertEqual((status, answer["field"]), (400, field), answer)
            self.assertTrue(answer["error"].startswith(f"{field}: "), answer)
        status, answer = self.request("PUT", f"{PREFIX}/menus/bad%20name", {"greeting": "aa/welcome"}, token=self.token)
        self.assertEqual((status, answer["field"]), (400, "name"))
        status, _ = self.request("PUT", f"{PREFIX}/menus/new", raw=b"greeting", token=self.token)
        self.assertEqual(status, 415)
        self.assertNotIn((MENU, "", "new"), self.store.items)

    def test_delete(self) -> None:
        """DELETE removes an API menu; a config menu, a menu in use and an unknown one are refused."""
        self.request("PUT", f"{PREFIX}/menus/a", {"greeting": "aa/welcome"}, token=self.token)
        self.request("PUT", f"{PREFIX}/menus/b", {"greeting": "aa/welcome", "options": {"1": {"menu": "a"}}},
                     token=self.token)
        self.assertEqual(self.request("DELETE", f"{PREFIX}/menus/a", token=self.token),
                         (409, {"error": "menu 'a' is used by menus.b.options.1.menu"}))
        self.assertEqual(self.request("DELETE", f"{PREFIX}/menus/sales", token=self.token),
                         (409, {"error": "menu 'sales' is defined in the config file; remove it there"}))
        self.assertEqual(self.request("DELETE", f"{PREFIX}/menus/b", token=self.token), (200, {"deleted": "b"}))
        self.assertEqual(self.request("DELETE", f"{PREFIX}/menus/a", token=self.token), (200, {"deleted": "a"}))
        self.assertEqual(self.request("DELETE", f"{PREFIX}/menus/a", token=self.token),
                         (404, {"error": "no menu 'a'"}))
        self.assertIn("attendant.menu.delete", [e.kind for e in self.store.audit])


class ScheduleAPITests(FeatureTestCase):
    """/api/v1/attendant/schedules."""

    def setUp(self) -> None:
        super().setUp()
        self.token = self.login()

    def test_crud(self) -> None:
        """Schedules are listed, created, validated, and deleted unless a route uses them."""
        status, body = self.request("GET", f"{PREFIX}/schedules", token=self.token)
        self.assertEqual((status, [s["name"] for s in body["schedules"]]), (200, ["office"]))
        late = {"timezone": "Europe/Berlin", "hours": [{"days": "mon-fri", "from": "17:00", "to": "22:00"}],
                "holidays": ["2026-12-24"], "open": "sales", "closed": "closed"}
        status, body = self.request("PUT", f"{PREFIX}/schedules/late", late, token=self.token)
        self.assertEqual((status, body["hours"], body["source"]), (201, late["hours"], "api"))
        bad = {**late, "hours": [{"days": "mon", "from": "17:00", "to": "16:00"}]}
        status, body = self.request("PUT", f"{PREFIX}/schedules/late", bad, token=self.token)
        self.assertEqual((status, body["field"]), (400, "hours[0].to"))
        status, body = self.request("PUT", f"{PREFIX}/schedules/late", {**late, "open": "nope"}, token=self.token)
        self.assertEqual((status, body), (400, {"error": "open: no menu 'nope'", "field": "open"}))
        self.assertEqual(self.request("DELETE", f"{PREFIX}/schedules/late", token=self.token),
                         (409, {"error": "schedule 'late' is used by dialplan[1].args"}))
        self.request("PUT", f"{PREFIX}/schedules/spare", late, token=self.token)
        self.assertEqual(self.request("DELETE", f"{PREFIX}/schedules/spare", token=self.token),
                         (200, {"deleted": "spare"}))

    def test_menu_used_by_schedule(self) -> None:
        """A menu a schedule names cannot be deleted."""
        self.request("PUT", f"{PREFIX}/menus/evening", {"greeting": "aa/closed"}, token=self.token)
        self.request("PUT", f"{PREFIX}/schedules/eve", {"open": "main", "closed": "evening"}, token=self.token)
        self.assertEqual(self.request("DELETE", f"{PREFIX}/menus/evening", token=self.token),
                         (409, {"error": "menu 'evening' is used by schedules.eve.closed"}))


class ShippedConfigTests(SynchronousTestCase):
    """The example in etc/pbx.yml."""

    def test_example_is_valid(self) -> None:
        """etc/pbx.yml enables the attendant with a valid menu main and routes *50 to it."""
        path = ROOT / "etc" / "pbx.yml"
        config = parse_config(path.read_text(), str(path), {})
        options = attendant.parse_options({k: v for k, v in config.features["attendant"].items() if k != "enabled"})
        self.assertIn("main", options.menus)
        action = config.dialplan.resolve("*50", authenticated=True)
        self.assertEqual((getattr(action, "name", None), dict(getattr(action, "args", {}))),
                         ("attendant", {"menu": "main"}))
