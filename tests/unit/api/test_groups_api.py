"""Tests for :mod:`pbx.api.groups`, mounted on the real API in memory with StubTreq."""

from __future__ import annotations

import json
from typing import Any

from treq.testing import StubTreq
from twisted.internet.defer import Deferred, succeed
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from pbx.api.app import PBXApi
from pbx.api.groups import GroupsAPI, openapi_paths
from pbx.api.http import make_site
from pbx.calls.groups import MEMBERSHIP_KIND, GroupDirectory, parse_groups
from pbx.config import parse_config
from pbx.records import AdminRecord, ExtensionRecord
from pbx.security.passwords import hash_password, verify_password
from pbx.testing import FakePBX, MemoryStore

ADMIN_PW = "Adm1n-secret-pass"
PREFIX = "/api/v1/groups"


def check(secret: str, encoded: str) -> Deferred[bool]:
    """Synchronous password verification."""
    return succeed(verify_password(secret, encoded))


def fast_hash(secret: str) -> Deferred[str]:
    """PBKDF2 with few iterations."""
    return succeed(hash_password(secret, iterations=1000))


class GroupsAPITests(SynchronousTestCase):
    """Listing groups and logging members in and out over the API."""

    def setUp(self) -> None:
        """The API with one group, sales (600: 1001, 1002), and users 1001 and 1002."""
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
        self.directory = GroupDirectory(
            parse_groups(
                {
                    "sales": {
                        "number": "600",
                        "members": ["1001", "1002"],
                        "strategy": "hunt",
                    }
                }
            )
        )
        groups = GroupsAPI(
            self.directory, self.api.authenticate, self.store, self.clock
        )
        self.api.mount("groups", groups.resource(), openapi_paths())
        self.treq = StubTreq(make_site(self.api.resource(), 65536).resource)

    def request(
        self, method: str, path: str, token: str | None = None
    ) -> tuple[int, Any]:
        """One request; (status, decoded JSON body)."""
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        d = self.treq.request(method, "http://127.0.0.1" + path, headers=headers)
        self.treq.flush()
        response = self.successResultOf(d)
        content = self.successResultOf(response.content())
        return response.code, json.loads(content) if content else None

    def login(self, username: str = "admin", password: str = ADMIN_PW) -> str:
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

    def test_listed(self) -> None:
        """An administrator sees every group with its settings and who is logged in."""
        status, body = self.request("GET", f"{PREFIX}/", self.login())
        self.assertEqual(status, 200)
        self.assertEqual(
            body,
            {
                "groups": [
                    {
                        "name": "sales",
                        "number": "600",
                        "members": ["1001", "1002"],
                        "strategy": "hunt",
                        "member_timeout": 15,
                        "timeout": 60,
                        "final": {},
                        "logged_in": ["1001", "1002"],
                    }
                ]
            },
        )
        self.assertEqual(
            self.request("GET", f"{PREFIX}/sales", self.login())[1]["name"], "sales"
        )
        self.assertEqual(
            self.request("GET", f"{PREFIX}/nosuch", self.login()),
            (404, {"error": "no group 'nosuch'"}),
        )

    def test_admin_logs_member_out_and_in(self) -> None:
        """DELETE logs a member out (stored, audited, no longer rung); POST logs it back in."""
        token = self.login()
        status, body = self.request("DELETE", f"{PREFIX}/sales/members/1002", token)
        self.assertEqual((status, body["logged_in"]), (200, ["1001"]))
        self.assertEqual(
            self.directory.logged_in(self.directory.groups["sales"]), ["1001"]
        )
        self.assertEqual(
            self.successResultOf(self.store.get_item(MEMBERSHIP_KIND, "sales", "1002")),
            {"logged_in": False},
        )
        self.assertEqual(
            (self.store.audit[-1].kind, self.store.audit[-1].subject),
            ("groups.logout", "sales/1002"),
        )
        status, body = self.request("POST", f"{PREFIX}/sales/members/1002", token)
        self.assertEqual((status, body["logged_in"]), (200, ["1001", "1002"]))
        self.assertEqual(self.store.audit[-1].kind, "groups.login")

    def test_user_changes_own_membership_only(self) -> None:
        """A user logs itself out; another member's login is 403; listing is for administrators."""
        user = self.login("1001", "482913")
        self.assertEqual(
            self.request("DELETE", f"{PREFIX}/sales/members/1001", user)[0], 200
        )
        self.assertEqual(
            self.request("DELETE", f"{PREFIX}/sales/members/1002", user)[0], 403
        )
        self.assertEqual(self.request("GET", f"{PREFIX}/", user)[0], 403)
        self.assertEqual(self.request("GET", f"{PREFIX}/")[0], 401)

    def test_not_a_member(self) -> None:
        """A number that is not a member, or a group that does not exist, is 404 and changes nothing."""
        token = self.login()
        self.assertEqual(
            self.request("POST", f"{PREFIX}/sales/members/1003", token),
            (404, {"error": "'1003' is not a member of group 'sales'"}),
        )
        self.assertEqual(
            self.request("POST", f"{PREFIX}/nosuch/members/1001", token)[0], 404
        )
        self.assertEqual([e.kind for e in self.store.audit], ["api.login"])
