"""Tests for setting an extension's class and limits through :mod:`pbx.permissions.api`."""

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
from pbx.permissions.guard import SETTING_KEY, SETTING_KIND, Guard
from pbx.permissions.options import parse_permissions
from pbx.records import AdminRecord, ExtensionRecord
from pbx.security.passwords import hash_password, verify_password
from pbx.testing import FakePBX, MemoryStore

ADMIN_PW = "Adm1n-secret-pass"
PREFIX = "/api/v1/permissions"
SECTION = {
    "area_codes": ["408"],
    "default": "national",
    "extensions": {"1003": {"class": "local", "limits": {"concurrent_outside": 1}}},
    "limits": {"concurrent_outside": 2, "international_per_hour": 10},
}
LONDON = "+442071234567"


def check(secret: str, encoded: str) -> Deferred[bool]:
    """Synchronous password verification."""
    return succeed(verify_password(secret, encoded))


def fast_hash(secret: str) -> Deferred[str]:
    """PBKDF2 with few iterations."""
    return succeed(hash_password(secret, iterations=1000))


class ExtensionSettingsTests(SynchronousTestCase):
    """PUT and DELETE /api/v1/permissions/extensions/<n>."""

    def setUp(self) -> None:
        """The permissions API over SECTION's guard."""
        self.clock = Clock()
        self.clock.advance(1796659200.0)
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

    def changes(self) -> list[Any]:
        """The audit events of permission changes (not of log-ins)."""
        return [e for e in self.store.audit if e.kind.startswith("permissions.")]

    def test_class_effective_on_the_next_call(self) -> None:
        """1002 (national by default) may not call London; set international, the next call may; stored and audited."""
        self.assertFalse(self.guard.check("1002", LONDON).allowed)
        status, body = self.request(
            "PUT", f"{PREFIX}/extensions/1002", {"class": "international"}, self.login()
        )
        self.assertEqual(
            (status, body["class"], body["source"], body["set_by_api"]),
            (
                200,
                "international",
                "extension",
                {"class": "international", "limits": None},
            ),
        )
        self.assertTrue(self.guard.check("1002", LONDON).allowed)
        self.assertEqual(
            json.loads(self.store.items[(SETTING_KIND, "1002", SETTING_KEY)]),
            {"class": "international"},
        )
        [event] = self.changes()
        self.assertEqual(
            (event.kind, event.subject, event.detail),
            (
                "permissions.extension.set",
                "1002",
                'by admin: {"class": "international"}',
            ),
        )

    def test_limits_start_from_the_section(self) -> None:
        """Limits left out keep the section's; the new ones apply to the next call."""
        token = self.login()
        status, body = self.request(
            "PUT",
            f"{PREFIX}/extensions/1002",
            {"limits": {"concurrent_outside": 1}},
            token,
        )
        self.assertEqual(
            (status, body["limits"]),
            (
                200,
                {"concurrent_outside": 1, "international_per_hour": 10, "hold": False},
            ),
        )
        self.assertEqual(body["class"], "national")
        self.assertTrue(self.guard.check("1002", "+14085550000", call_id="a").allowed)
        self.assertFalse(self.guard.check("1002", "+14085550001", call_id="b").allowed)

    def test_delete_brings_back_the_file(self) -> None:
        """DELETE drops what the API set: 1003 is local with its own limit again; a second DELETE is 404."""
        token = self.login()
        self.request(
            "PUT",
            f"{PREFIX}/extensions/1003",
            {"class": "premium", "limits": {"concurrent_outside": 5}},
            token,
        )
        self.assertEqual(self.guard.config.class_of("1003")[0].label, "premium")
        self.assertEqual(
            self.request("DELETE", f"{PREFIX}/extensions/1003", token=token),
            (204, None),
        )
        self.assertEqual(
            (
                self.guard.config.class_of("1003")[0].label,
                self.guard.config.limits_of("1003").concurrent_outside,
            ),
            ("local", 1),
        )
        self.assertEqual(
            self.request("DELETE", f"{PREFIX}/extensions/1003", token=token)[0], 404
        )
        self.assertEqual(
            [e.kind for e in self.changes()],
            ["permissions.extension.set", "permissions.extension.clear"],
        )

    def test_bad_input_names_the_field(self) -> None:
        """A bad class, limit or key is 400 naming it; nothing is stored or applied."""
        token = self.login()
        for body, field in [
            ({"class": "galactic"}, "class: "),
            ({"limits": {"concurrent_outside": 0}}, "limits.concurrent_outside: "),
            ({"limits": {"hold": "yes"}}, "limits.hold: "),
            ({"colour": "blue"}, "colour: unknown key"),
            ({}, "class or limits"),
        ]:
            status, answer = self.request(
                "PUT", f"{PREFIX}/extensions/1002", body, token
            )
            self.assertEqual(status, 400, body)
            self.assertTrue(answer["error"].startswith(field), (answer, field))
        self.assertEqual(
            self.request("PUT", f"{PREFIX}/extensions/x1", {"class": "local"}, token)[
                0
            ],
            404,
        )
        self.assertEqual((self.store.items, self.changes()), ({}, []))
        self.assertEqual(self.guard.config.class_of("1002")[0].label, "national")

    def test_administrators_only(self) -> None:
        """Without a token 401; a user (even for their own extension) 403."""
        user = self.login("1001", "482913")
        self.assertEqual(
            self.request("PUT", f"{PREFIX}/extensions/1001", {"class": "premium"})[0],
            401,
        )
        self.assertEqual(
            self.request(
                "PUT", f"{PREFIX}/extensions/1001", {"class": "premium"}, user
            )[0],
            403,
        )
        self.assertEqual(
            self.request("DELETE", f"{PREFIX}/extensions/1001", token=user)[0], 403
        )
        self.assertEqual(self.store.items, {})

    def test_stored_settings_load_at_start(self) -> None:
        """A guard started over a store holding settings applies them over the file's."""
        self.store.put_item(
            SETTING_KIND,
            "1002",
            SETTING_KEY,
            {"class": "premium", "limits": {"hold": True}},
        )
        self.store.put_item(SETTING_KIND, "1004", SETTING_KEY, {"class": "nonsense"})
        guard = Guard(parse_permissions(SECTION), self.clock, self.store)
        self.successResultOf(Deferred.fromCoroutine(guard.load()))
        self.assertEqual(
            guard.config.class_of("1002"),
            (guard.config.extensions["1002"], "extension"),
        )
        self.assertEqual(guard.config.extensions["1002"].label, "premium")
        self.assertEqual(
            guard.config.limits_of("1002").as_dict(),
            {"concurrent_outside": 2, "international_per_hour": 10, "hold": True},
        )
        self.assertEqual(guard.config.class_of("1004")[1], "default")
