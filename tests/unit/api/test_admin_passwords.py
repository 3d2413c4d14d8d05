"""Tests for an administrator's own password: change, policy and rotation, in memory with StubTreq."""

from __future__ import annotations

import json
from typing import Any

from treq.testing import StubTreq
from twisted.internet.defer import Deferred, succeed
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from pbx.api.admin_passwords import changed_key
from pbx.api.app import PBXApi
from pbx.api.http import make_site
from pbx.config import parse_config
from pbx.records import AdminRecord
from pbx.security.passwords import hash_password, verify_password
from pbx.testing import FakePBX, MemoryStore

ADMIN_PW = "Adm1n-secret-pass"
NEW_PW = "Another-g00d-phrase"
DAY = 86400


def fast_hash(secret: str) -> Deferred[str]:
    """PBKDF2 with few iterations, so tests stay quick."""
    return succeed(hash_password(secret, iterations=1000))


def check(secret: str, encoded: str) -> Deferred[bool]:
    """Synchronous verification."""
    return succeed(verify_password(secret, encoded))


class _AdminAPICase(SynchronousTestCase):
    """An API over a MemoryStore with one stored admin and a password policy."""

    security = "{lockout_failures: 3, password_min_length: 14, password_max_age_days: 90}"
    admins = ""

    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(1_700_000_000)
        self.store = MemoryStore()
        self.store.admins["admin"] = AdminRecord("admin", hash_password(ADMIN_PW, iterations=1000))
        config = f"sip: {{domain: pbx.test}}\nsecurity: {self.security}\n{self.admins}"
        self.pbx = FakePBX(config=parse_config(config, "t.yml", {}), store=self.store, clock=self.clock,
                           started_at=self.clock.seconds(), listeners=[])
        self.api = PBXApi(self.pbx, check, fast_hash)
        self.pbx.api = self.api
        self.treq = StubTreq(make_site(self.api.resource(), 4096).resource)

    def call(self, method: str, path: str, body: Any = None, token: str | None = None) -> tuple[int, Any]:
        headers = {"Content-Type": "application/json"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        data = json.dumps(body).encode() if body is not None else None
        d = self.treq.request(method, "http://127.0.0.1" + path, data=data, headers=headers)
        self.treq.flush()
        response = self.successResultOf(d)
        content = self.successResultOf(response.content())
        return response.code, json.loads(content) if content else None

    def login(self, password: str = ADMIN_PW) -> dict[str, Any]:
        status, body = self.call("POST", "/api/v1/auth/login", {"username": "admin", "password": password})
        self.assertEqual(status, 200, body)
        return dict(body)

    def change(self, token: str, current: str, new: str) -> tuple[int, Any]:
        return self.call("POST", "/api/v1/auth/password", {"password": current, "new_password": new}, token)


class AdminPasswordTests(_AdminAPICase):
    """POST /api/v1/auth/password and the maximum age of a password."""

    def test_change_ends_other_sessions(self) -> None:
        """A change gives a new token; the old sessions end; the new password logs in, the old one no longer."""
        first, second = self.login()["token"], self.login()["token"]
        status, body = self.change(first, ADMIN_PW, NEW_PW)
        self.assertEqual(status, 200, body)
        self.assertEqual(self.call("GET", "/api/v1/status", token=body["token"])[0], 200)
        self.assertEqual(self.call("GET", "/api/v1/status", token=second)[0], 401)
        self.assertEqual(self.call("GET", "/api/v1/status", token=first)[0], 401)
        self.login(NEW_PW)
        self.assertEqual(self.call("POST", "/api/v1/auth/login", {"username": "admin", "password": ADMIN_PW})[0], 401)
        self.assertIn(("api.password", "admin"), [(e.kind, e.subject) for e in self.store.audit])

    def test_policy_refuses_weak_or_same(self) -> None:
        """A new password shorter than password_min_length, or the current one again, is a 422 naming why."""
        token = self.login()["token"]
        status, body = self.change(token, ADMIN_PW, "Short-pass-1")
        self.assertEqual(status, 422)
        self.assertIn("shorter than 14 characters", body["error"])
        status, body = self.change(token, ADMIN_PW, ADMIN_PW + "")
        self.assertEqual(status, 422)
        self.assertIn("same as the current", body["error"])
        self.login()  # unchanged

    def test_wrong_current_password_counts_towards_lockout(self) -> None:
        """A wrong current password is a 403; after lockout_failures of them the change is refused with 429."""
        token = self.login()["token"]
        statuses = [self.change(token, "not-it", NEW_PW)[0] for _ in range(3)]
        self.assertEqual(statuses, [403, 403, 403])
        self.assertEqual(self.change(token, ADMIN_PW, NEW_PW)[0], 429)

    def test_expired_password_may_only_be_changed(self) -> None:
        """Past password_max_age_days a login works, but its session gets 403 until the password is changed."""
        self.login()  # first look: the age counts from now
        self.clock.advance(91 * DAY)
        body = self.login()
        self.assertTrue(body["password_expired"])
        status, error = self.call("GET", "/api/v1/status", token=body["token"])
        self.assertEqual(status, 403)
        self.assertIn("password expired", error["error"])
        status, fresh = self.change(body["token"], ADMIN_PW, NEW_PW)
        self.assertEqual(status, 200)
        self.assertNotIn("password_expired", fresh)
        self.assertEqual(self.call("GET", "/api/v1/status", token=fresh["token"])[0], 200)
        self.assertEqual(self.store.settings[changed_key("admin")], repr(self.clock.seconds()))

    def test_young_password_is_not_expired(self) -> None:
        """Within the maximum age the session is a full one."""
        self.store.settings[changed_key("admin")] = repr(self.clock.seconds() - 89 * DAY)
        body = self.login()
        self.assertNotIn("password_expired", body)
        self.assertEqual(self.call("GET", "/api/v1/status", token=body["token"])[0], 200)

    def test_expired_session_may_log_out(self) -> None:
        """Logging out works with an expired password's session."""
        self.store.settings[changed_key("admin")] = repr(self.clock.seconds() - 100 * DAY)
        token = self.login()["token"]
        self.assertEqual(self.call("POST", "/api/v1/auth/logout", token=token)[0], 200)


class ConfiguredAdminPasswordTests(_AdminAPICase):
    """An administrator whose password the config file sets."""

    admins = f"api: {{admins: [{{username: admin, password: {ADMIN_PW}Long}}]}}\n"

    def test_change_refused(self) -> None:
        """The API does not change a password the config file sets (409): the next start would put it back."""
        token = self.login()["token"]
        status, body = self.change(token, ADMIN_PW, NEW_PW)
        self.assertEqual(status, 409)
        self.assertIn("config file", body["error"])

    def test_never_expires_through_the_api(self) -> None:
        """A password from the config file does not expire through the API."""
        self.login()
        self.clock.advance(400 * DAY)
        body = self.login()
        self.assertNotIn("password_expired", body)


class StatusTests(SynchronousTestCase):
    """GET /api/v1/status reports FIPS mode."""

    def test_status_reports_fips(self) -> None:
        """The status says whether security.fips is on and whether each library is in FIPS mode."""
        clock = Clock()
        store = MemoryStore()
        store.admins["admin"] = AdminRecord("admin", hash_password(ADMIN_PW, iterations=1000))
        pbx = FakePBX(config=parse_config("sip: {domain: pbx.test}\n", "t.yml", {}), store=store, clock=clock,
                      started_at=0.0, listeners=[])
        api = PBXApi(pbx, check, fast_hash)
        pbx.api = api
        treq = StubTreq(make_site(api.resource(), 4096).resource)
        d = treq.post("http://127.0.0.1/api/v1/auth/login", json={"username": "admin", "password": ADMIN_PW})
        treq.flush()
        token = json.loads(self.successResultOf(self.successResultOf(d).content()))["token"]
        d = treq.get("http://127.0.0.1/api/v1/status", headers={"Authorization": f"Bearer {token}"})
        treq.flush()
        body = json.loads(self.successResultOf(self.successResultOf(d).content()))
        self.assertIs(body["fips"]["enabled"], False)
        self.assertEqual(set(body["fips"]), {"enabled", "cryptography", "hashlib"})
        self.assertIsInstance(body["fips"]["cryptography"]["fips"], bool)
        self.assertTrue(body["fips"]["hashlib"]["openssl"].startswith("OpenSSL"))
