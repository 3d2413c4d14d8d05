"""Tests for the REST API, in memory with StubTreq."""

from __future__ import annotations

import json
from typing import Any

from zope.interface.verify import verifyObject

from klein import Klein
from treq.testing import StubTreq
from twisted.internet.defer import Deferred, succeed
from twisted.internet.task import Clock
from twisted.logger import Logger, formatEvent
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.resource import Resource

from pbx.api.app import PBXApi
from pbx.api.http import APIError, error_body, json_body, make_site
from pbx.api.openapi import openapi_document
from pbx.config import parse_config
from pbx.interfaces import IPBX
from pbx.records import AdminRecord, Binding, CallRecord, ExtensionRecord
from pbx.security.lockout import Lockout
from pbx.security.passwords import hash_password, verify_password
from pbx.sip.auth import compute_ha1
from pbx.testing import FakePBX, MemoryStore, RecordingSecurityLog

CONFIG = """
sip: {domain: pbx.test}
security: {lockout_failures: 3, lockout_window: 60, lockout_delay: 30}
api: {token_lifetime: 600, max_body: 2048}
"""
ADMIN_PW = "Adm1n-secret-pass"


def fast_hash(secret: str) -> Deferred[str]:
    """PBKDF2 with few iterations, so tests stay quick."""
    return succeed(hash_password(secret, iterations=1000))


def check(secret: str, encoded: str) -> Deferred[bool]:
    """Synchronous verification."""
    return succeed(verify_password(secret, encoded))


class APITestCase(SynchronousTestCase):
    """Common set-up: an API over a MemoryStore with one admin."""

    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(1_700_000_000)
        self.store = MemoryStore()
        self.store.admins["admin"] = AdminRecord("admin", hash_password(ADMIN_PW, iterations=1000))
        self.pbx = FakePBX(config=parse_config(CONFIG, "t.yml", {}), store=self.store, clock=self.clock,
                           started_at=self.clock.seconds(), listeners=["http:127.0.0.1:8080"])
        self.api = PBXApi(self.pbx, check, fast_hash)
        self.pbx.api = self.api
        self.treq = StubTreq(make_site(self.api.resource(), 2048).resource)

    def call(self, method: str, path: str, body: Any = None, token: str | None = None,
             headers: dict[str, str] | None = None, raw: bytes | None = None) -> tuple[int, Any, Any]:
        """Make one request; return (status, decoded body, response)."""
        h = dict(headers or {})
        data = raw
        if body is not None:
            h.setdefault("Content-Type", "application/json")
            data = json.dumps(body).encode()
        if token:
            h["Authorization"] = f"Bearer {token}"
        d = self.treq.request(method, "http://127.0.0.1" + path, data=data, headers=h)
        self.treq.flush()
        response = self.successResultOf(d)
        content = self.successResultOf(response.content())
        ctype = response.headers.getRawHeaders("content-type", [""])[0]
        decoded = json.loads(content) if ctype.startswith("application/json") and content else content
        return response.code, decoded, response

    def login(self) -> str:
        """Log in as admin and return the token."""
        status, body, _ = self.call("POST", "/api/v1/auth/login", {"username": "admin", "password": ADMIN_PW})
        self.assertEqual(status, 200)
        return str(body["token"])


class AuthTests(APITestCase):
    """Logging in, tokens and lockout."""

    def test_fake_provides_ipbx(self) -> None:
        """The fake PBX used here provides IPBX."""
        self.assertTrue(verifyObject(IPBX, self.pbx))

    def test_login_and_status(self) -> None:
        """A good login yields a token that opens /status."""
        token = self.login()
        status, body, _ = self.call("GET", "/api/v1/status", token=token)
        self.assertEqual(status, 200)
        self.assertEqual(body["listeners"], ["http:127.0.0.1:8080"])
        self.assertEqual(body["counts"], {"extensions": 0, "registrations": 0, "calls": 0})
        self.assertIn(("api.login", "admin"), [(e.kind, e.subject) for e in self.store.audit])

    def test_no_token(self) -> None:
        """Without a token every protected route answers 401 JSON."""
        for path in ("/api/v1/status", "/api/v1/extensions", "/api/v1/registrations", "/api/v1/calls", "/api/v1/cdr"):
            status, body, response = self.call("GET", path)
            self.assertEqual((status, body), (401, {"error": "log in first"}), path)
            self.assertTrue(response.headers.hasHeader("www-authenticate"))

    def test_bad_token(self) -> None:
        """An unknown token answers 401."""
        status, body, _ = self.call("GET", "/api/v1/status", token="nope")
        self.assertEqual((status, body["error"]), (401, "token expired or invalid"))

    def test_token_expires(self) -> None:
        """A token stops working after its lifetime."""
        token = self.login()
        self.clock.advance(601)
        status, _, _ = self.call("GET", "/api/v1/status", token=token)
        self.assertEqual(status, 401)

    def test_logout(self) -> None:
        """After logout the token is dead."""
        token = self.login()
        self.assertEqual(self.call("POST", "/api/v1/auth/logout", token=token)[0], 200)
        self.assertEqual(self.call("GET", "/api/v1/status", token=token)[0], 401)

    def test_wrong_password_and_unknown_user_look_alike(self) -> None:
        """A wrong password and an unknown user get the same answer."""
        a = self.call("POST", "/api/v1/auth/login", {"username": "admin", "password": "wrong-password1"})
        b = self.call("POST", "/api/v1/auth/login", {"username": "nobody", "password": "wrong-password1"})
        self.assertEqual(a[:2], b[:2])
        self.assertEqual(a[0], 401)

    def test_lockout(self) -> None:
        """Three failures lock the user out, even with the right password, until the delay passes."""
        for _ in range(3):
            self.call("POST", "/api/v1/auth/login", {"username": "admin", "password": "wrong-password1"})
        status, body, response = self.call("POST", "/api/v1/auth/login", {"username": "admin", "password": ADMIN_PW})
        self.assertEqual(status, 429)
        self.assertTrue(response.headers.hasHeader("retry-after"))
        self.assertIn("api.lockout", [e.kind for e in self.store.audit])
        self.clock.advance(31)
        self.assertEqual(self.call("POST", "/api/v1/auth/login", {"username": "admin", "password": ADMIN_PW})[0], 200)

    def test_lockout_logged(self) -> None:
        """An API login lockout is one warning naming the user, the client address and the delay."""
        events: list[dict[str, Any]] = []
        self.patch(Lockout, "log", Logger(observer=events.append))
        for _ in range(4):
            self.call("POST", "/api/v1/auth/login", {"username": "admin", "password": "wrong-password1"})
        self.assertEqual(
            [(e["log_level"].name, formatEvent(e)) for e in events],
            [("warn", "API login lockout: 'admin' from 127.0.0.1 locked out for 30 s"
                      " (too many failures by user)")],
        )

    def test_login_bad_input(self) -> None:
        """Malformed login bodies get 4xx JSON errors."""
        self.assertEqual(self.call("POST", "/api/v1/auth/login", raw=b"{", headers={"Content-Type": "application/json"})[:2],
                         (400, {"error": "the body is not valid JSON"}))
        self.assertEqual(self.call("POST", "/api/v1/auth/login", raw=b"[]", headers={"Content-Type": "application/json"})[0], 400)
        self.assertEqual(self.call("POST", "/api/v1/auth/login", raw=b"x=1", headers={"Content-Type": "text/plain"})[0], 415)
        self.assertEqual(self.call("POST", "/api/v1/auth/login", {"username": 1, "password": None})[0], 400)


class SecurityLogTests(APITestCase):
    """Failed logins are written to the security log (for fail2ban)."""

    def setUp(self) -> None:
        super().setUp()
        self.security_log = RecordingSecurityLog()
        self.api = PBXApi(self.pbx, check, fast_hash, security_log=self.security_log)
        self.pbx.api = self.api
        self.treq = StubTreq(make_site(self.api.resource(), 2048).resource)

    def test_failed_logins_written(self) -> None:
        """A wrong password and an unknown user are each one entry from the client's address; a good login none."""
        self.call("POST", "/api/v1/auth/login", {"username": "admin", "password": "wrong"})
        self.call("POST", "/api/v1/auth/login", {"username": "nobody", "password": "wrong"})
        self.login()
        entries = [(service, account, remote.host, known, method)
                   for service, account, remote, known, method in self.security_log.failures]
        self.assertEqual(entries, [("API", "admin", "127.0.0.1", True, ""), ("API", "nobody", "127.0.0.1", False, "")])
        self.assertEqual({remote.transport for _, _, remote, _, _ in self.security_log.failures}, {"TCP"})


class HTTPTests(APITestCase):
    """Errors, headers and limits every route shares."""

    def test_security_headers(self) -> None:
        """Every answer carries the security headers."""
        for path in ("/api/v1/openapi.json", "/api/v1/status", "/nowhere"):
            _, _, response = self.call("GET", path)
            h = response.headers
            self.assertEqual(h.getRawHeaders("x-content-type-options"), ["nosniff"])
            self.assertEqual(h.getRawHeaders("x-frame-options"), ["DENY"])
            self.assertEqual(h.getRawHeaders("referrer-policy"), ["no-referrer"])
            self.assertTrue(h.hasHeader("content-security-policy"))

    def test_not_found_json(self) -> None:
        """Unknown paths answer 404 JSON."""
        self.assertEqual(self.call("GET", "/api/v1/nothing")[:2], (404, {"error": "no such resource"}))

    def test_method_not_allowed(self) -> None:
        """A known path with the wrong method answers 405 JSON with Allow."""
        status, body, response = self.call("PUT", "/api/v1/status")
        self.assertEqual((status, body), (405, {"error": "method not allowed"}))
        self.assertIn("GET", response.headers.getRawHeaders("allow")[0])

    def test_body_cap(self) -> None:
        """A body over the configured cap is refused before it is read."""
        status, body, _ = self.call("POST", "/api/v1/auth/login", raw=b"x" * 5000,
                                    headers={"Content-Type": "application/json"})
        self.assertEqual(status, 413)

    def test_internal_errors_are_json(self) -> None:
        """An unexpected exception becomes a 500 JSON answer with no traceback."""
        token = self.login()

        def broken() -> Any:
            raise RuntimeError("secret internals")

        self.store.list_extensions = broken  # type: ignore[method-assign]
        status, body, _ = self.call("GET", "/api/v1/extensions", token=token)
        self.assertEqual((status, body), (500, {"error": "internal error"}))
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)

    def test_openapi_matches_routes(self) -> None:
        """The OpenAPI document lists exactly the routes the app serves."""
        status, doc, _ = self.call("GET", "/api/v1/openapi.json")
        self.assertEqual(status, 200)
        self.assertEqual(doc, json.loads(json.dumps(openapi_document(doc["info"]["version"]))))
        documented = {(p, m.upper()) for p, ops in doc["paths"].items() for m in ops if m != "parameters"}
        served = set()
        for rule in PBXApi.app.url_map.iter_rules():
            if rule.rule.startswith("/api/v1/<feature:name>/") or rule.rule.endswith("/<feature:name>"):
                continue  # where features mount their own APIs (see MountTests)
            if not rule.rule.startswith("/api/v1/"):
                continue  # pages for a browser, not the API (see test_pages.py)
            path = rule.rule.replace("<", "{").replace(">", "}")
            served |= {(path, m) for m in rule.methods - {"HEAD", "OPTIONS"}}
        self.assertEqual(documented, served)


class ExtensionTests(APITestCase):
    """CRUD on /api/v1/extensions."""

    def test_create_get_list(self) -> None:
        """A created extension can be read back, without any secret."""
        token = self.login()
        status, body, response = self.call("POST", "/api/v1/extensions", {
            "number": "2001", "name": "Carol", "password": "Str0ng-enough-pw", "voicemail_pin": "2468",
        }, token=token)
        self.assertEqual(status, 201)
        self.assertEqual(response.headers.getRawHeaders("location"), ["/api/v1/extensions/2001"])
        self.assertEqual(body["has_password"], True)
        self.assertEqual(body["has_voicemail_pin"], True)
        status, body, _ = self.call("GET", "/api/v1/extensions/2001", token=token)
        self.assertEqual((status, body["name"]), (200, "Carol"))
        text = json.dumps(self.call("GET", "/api/v1/extensions", token=token)[1])
        self.assertNotIn("Str0ng-enough-pw", text)
        self.assertNotIn("ha1", text)
        stored = self.store.extensions["2001"]
        self.assertEqual(stored.ha1_md5, compute_ha1("2001", "pbx.test", "Str0ng-enough-pw", "MD5"))
        self.assertTrue(verify_password("2468", stored.pin_hash))

    def test_pin_under_its_core_name(self) -> None:
        """``pin`` sets the same credential as its older name ``voicemail_pin``; both flags report it."""
        token = self.login()
        status, body, _ = self.call("POST", "/api/v1/extensions", {
            "number": "2003", "password": "Str0ng-enough-pw", "pin": "9753",
        }, token=token)
        self.assertEqual((status, body["has_pin"], body["has_voicemail_pin"]), (201, True, True))
        self.assertTrue(verify_password("9753", self.store.extensions["2003"].pin_hash))

    def test_create_conflict_and_invalid(self) -> None:
        """Duplicates get 409; bad fields get 422 naming the field."""
        token = self.login()
        ext = {"number": "2001", "password": "Str0ng-enough-pw"}
        self.assertEqual(self.call("POST", "/api/v1/extensions", ext, token=token)[0], 201)
        self.assertEqual(self.call("POST", "/api/v1/extensions", ext, token=token)[0], 409)
        cases = [
            ({"number": "x1", "password": "Str0ng-enough-pw"}, "number"),
            ({"number": "2002"}, "password"),
            ({"number": "2002", "password": "short"}, "password too weak"),
            ({"number": "2002", "password": "Str0ng-enough-pw", "pin_code": "1234"}, "unknown field: pin_code"),
            ({"number": "2002", "password": "Str0ng-enough-pw", "pin": "1"}, "pin must be 4-12 digits"),
            ({"number": "2002", "password": "Str0ng-enough-pw", "pin": "1234", "voicemail_pin": "1234"},
             "not both"),
            ({"number": "2002", "password": "Str0ng-enough-pw", "voicemail_pin": "1"}, "voicemail_pin"),
            ({"number": "2002", "password": "Str0ng-enough-pw", "enabled": "yes"}, "enabled"),
            ({"number": "2002", "password": "Str0ng-enough-pw", "email": "nope"}, "email"),
        ]
        for body, word in cases:
            status, answer, _ = self.call("POST", "/api/v1/extensions", body, token=token)
            self.assertEqual(status, 422, body)
            self.assertIn(word, answer["error"])
        self.assertNotIn("2002", self.store.extensions)

    def test_patch_and_delete(self) -> None:
        """PATCH changes fields and keeps the secret; DELETE removes the extension and its bindings."""
        token = self.login()
        self.call("POST", "/api/v1/extensions", {"number": "2001", "password": "Str0ng-enough-pw"}, token=token)
        before = self.store.extensions["2001"].ha1_sha256
        status, body, _ = self.call("PATCH", "/api/v1/extensions/2001", {"name": "New", "enabled": False}, token=token)
        self.assertEqual((status, body["name"], body["enabled"]), (200, "New", False))
        status, body, _ = self.call("PATCH", "/api/v1/extensions/2001",
                                    {"dnd": True, "forward_busy": "2002", "caller_id": "Sales"}, token=token)
        self.assertEqual((status, body["dnd"], body["forward_busy"], body["caller_id"]), (200, True, "2002", "Sales"))
        status, body, _ = self.call("PATCH", "/api/v1/extensions/2001", {"name": "Newer"}, token=token)
        self.assertEqual((body["dnd"], body["forward_busy"], body["enabled"]), (True, "2002", False))
        self.assertEqual(self.call("PATCH", "/api/v1/extensions/2001", {"forward_always": "2001"}, token=token)[0], 422)
        self.assertEqual(self.call("PATCH", "/api/v1/extensions/2001", {"dnd": "yes"}, token=token)[0], 422)
        self.assertEqual(self.store.extensions["2001"].ha1_sha256, before)
        self.assertEqual(self.pbx.changed, ["2001", "2001", "2001", "2001"])
        self.store.bindings[("2001", "sip:a@127.0.0.1")] = Binding("2001", "sip:a@127.0.0.1", 1e12)
        status, _, _ = self.call("DELETE", "/api/v1/extensions/2001", token=token)
        self.assertEqual(status, 204)
        self.assertEqual((self.store.extensions, self.store.bindings), ({}, {}))
        self.assertEqual(self.pbx.deleted, ["2001"])
        self.assertEqual(self.call("GET", "/api/v1/extensions/2001", token=token)[0], 404)
        self.assertEqual(self.call("DELETE", "/api/v1/extensions/2001", token=token)[0], 404)


class HostileInputTests(APITestCase):
    """Input built to hurt gets a 4xx JSON answer naming the problem, never a 500."""

    def post_raw(self, path: str, raw: bytes, token: str | None = None) -> tuple[int, Any]:
        status, body, _ = self.call("POST", path, raw=raw, token=token,
                                    headers={"Content-Type": "application/json"})
        return status, body

    def test_nested_json(self) -> None:
        """Deeply nested JSON is 400, on the login (no token needed) as on any route."""
        deep = b'{"username": ' + b"[" * 500 + b"]" * 500 + b"}"
        self.assertEqual(self.post_raw("/api/v1/auth/login", deep),
                         (400, {"error": "the body is nested deeper than 16 levels"}))
        very_deep = b"[" * 2040  # beyond Python's recursion limit
        self.assertEqual(self.post_raw("/api/v1/auth/login", very_deep),
                         (400, {"error": "the body is nested deeper than 16 levels"}))
        token = self.login()
        self.assertEqual(self.post_raw("/api/v1/extensions", deep, token)[0], 400)

    def test_lone_surrogate(self) -> None:
        """A lone surrogate escape in a name or a login is 400."""
        token = self.login()
        raw = b'{"number": "2001", "password": "Str0ng-enough-pw", "name": "\\ud800"}'
        self.assertEqual(self.post_raw("/api/v1/extensions", raw, token),
                         (400, {"error": "the body holds a lone surrogate (not valid Unicode text)"}))
        self.assertEqual(self.post_raw("/api/v1/auth/login", b'{"username": "\\udc00", "password": "x"}')[0], 400)
        self.assertNotIn("2001", self.store.extensions)

    def test_srtp_policy(self) -> None:
        """An extension's SRTP policy is "offered" by default, changed by PATCH, and only to a known policy."""
        token = self.login()
        status, body, _ = self.call("POST", "/api/v1/extensions", {"number": "2001", "password": "Str0ng-enough-pw"},
                                    token=token)
        self.assertEqual(body["srtp"], "offered")
        status, body, _ = self.call("PATCH", "/api/v1/extensions/2001", {"srtp": "required"}, token=token)
        self.assertEqual((status, body["srtp"]), (200, "required"))
        self.assertEqual(self.store.extensions["2001"].srtp, "required")
        status, body, _ = self.call("PATCH", "/api/v1/extensions/2001", {"name": "Kept"}, token=token)
        self.assertEqual(body["srtp"], "required")
        status, body, _ = self.call("PATCH", "/api/v1/extensions/2001", {"srtp": "sometimes"}, token=token)
        self.assertEqual(status, 422)
        self.assertIn("srtp must be one of", body["error"])

    def test_line_break_in_name_or_caller_id(self) -> None:
        """A CR/LF in a name or caller ID is 422 naming the field, on create and on change."""
        token = self.login()
        body = {"number": "2001", "password": "Str0ng-enough-pw", "name": "Eve\r\nX-Evil: 1"}
        self.assertEqual(self.call("POST", "/api/v1/extensions", body, token=token)[:2],
                         (422, {"error": "name holds a line break"}))
        self.call("POST", "/api/v1/extensions", {"number": "2001", "password": "Str0ng-enough-pw"}, token=token)
        self.assertEqual(self.call("PATCH", "/api/v1/extensions/2001", {"caller_id": "a\nb"}, token=token)[:2],
                         (422, {"error": "caller_id holds a line break"}))
        self.assertEqual(self.call("PATCH", "/api/v1/extensions/2001", {"name": "\u202eevil"}, token=token)[:2],
                         (422, {"error": "name holds the direction control U+202E"}))
        self.assertEqual(self.store.extensions["2001"].name, "")

    def test_long_email(self) -> None:
        """An e-mail address is at most 254 characters (RFC 5321), not 900 KB."""
        token = self.login()
        email = "a" * 900 + "@example.com"
        self.assertEqual(self.call("POST", "/api/v1/extensions",
                                   {"number": "2001", "password": "Str0ng-enough-pw", "email": email},
                                   token=token)[:2],
                         (422, {"error": "email is longer than 254 characters"}))


class ListingTests(APITestCase):
    """Registrations, calls and CDR."""

    def test_registrations(self) -> None:
        """Live bindings are listed with their remaining lifetime; expired ones are not."""
        token = self.login()
        now = self.clock.seconds()
        self.store.bindings[("1001", "sip:1001@127.0.0.1:5070")] = Binding(
            "1001", "sip:1001@127.0.0.1:5070", now + 120, "tcp", "127.0.0.1:5070", "baresip")
        self.store.bindings[("1002", "sip:1002@127.0.0.1:5071")] = Binding("1002", "sip:1002@127.0.0.1:5071", now - 1)
        status, body, _ = self.call("GET", "/api/v1/registrations", token=token)
        self.assertEqual(status, 200)
        self.assertEqual(body["registrations"], [{
            "extension": "1001", "contact": "sip:1001@127.0.0.1:5070", "transport": "tcp",
            "source": "127.0.0.1:5070", "user_agent": "baresip", "expires_in": 120,
        }])

    def test_calls(self) -> None:
        """Live calls come from the PBX."""
        token = self.login()
        self.pbx.calls.append({"call_id": "abc"})
        self.assertEqual(self.call("GET", "/api/v1/calls", token=token)[1], {"calls": [{"call_id": "abc"}]})

    def test_cdr_paging_filter_csv(self) -> None:
        """CDR pages newest first, filters by caller, and exports CSV."""
        token = self.login()
        for i in range(5):
            self.successResultOf(self.store.add_call_record(CallRecord(
                f"c{i}", "1001" if i % 2 else "1002", "1003", 100.0 + i, 200.0 + i, answer=110.0 + i)))
        status, body, _ = self.call("GET", "/api/v1/cdr?limit=2&offset=1", token=token)
        self.assertEqual((status, body["total"]), (200, 5))
        self.assertEqual([r["call_id"] for r in body["records"]], ["c3", "c2"])
        self.assertEqual(body["records"][0]["billable"], 90.0)
        body = self.call("GET", "/api/v1/cdr?caller=1001", token=token)[1]
        self.assertEqual([r["call_id"] for r in body["records"]], ["c3", "c1"])
        status, text, response = self.call("GET", "/api/v1/cdr?format=csv&since=103", token=token)
        self.assertEqual(status, 200)
        lines = text.decode().splitlines()
        self.assertTrue(lines[0].startswith("id,call_id,leg,caller"))
        self.assertEqual(len(lines), 3)

    def test_cdr_application(self) -> None:
        """A call that went to voicemail is listed VOICEMAIL with its application, in JSON, CSV and the schema."""
        token = self.login()
        self.successResultOf(self.store.add_call_record(CallRecord(
            "vm", "1001", "1002", 100.0, 130.0, answer=100.5, disposition="VOICEMAIL",
            application="voicemail")))
        [row] = self.call("GET", "/api/v1/cdr", token=token)[1]["records"]
        self.assertEqual((row["disposition"], row["application"]), ("VOICEMAIL", "voicemail"))
        text = self.call("GET", "/api/v1/cdr?format=csv", token=token)[1].decode()
        header, line = text.splitlines()
        self.assertEqual(dict(zip(header.split(","), line.split(","), strict=True))["application"],
                         "voicemail")
        schema = self.call("GET", "/api/v1/openapi.json")[1]["components"]["schemas"]["CallRecord"]
        self.assertEqual(set(schema["properties"]), set(row))
        self.assertIn("VOICEMAIL", schema["properties"]["disposition"]["enum"])

    def test_cdr_interrupted(self) -> None:
        """A call a crash interrupted is listed INTERRUPTED, a disposition the schema documents."""
        token = self.login()
        self.successResultOf(self.store.add_call_record(CallRecord(
            "cut", "1001", "1002", 100.0, 160.0, answer=101.0, disposition="INTERRUPTED",
            hangup_side="pbx", hangup_cause="interrupted")))
        [row] = self.call("GET", "/api/v1/cdr", token=token)[1]["records"]
        self.assertEqual((row["disposition"], row["billable"]), ("INTERRUPTED", 59.0))
        schema = self.call("GET", "/api/v1/openapi.json")[1]["components"]["schemas"]["CallRecord"]
        disposition = schema["properties"]["disposition"]
        self.assertIn("INTERRUPTED", disposition["enum"])
        self.assertIn("INTERRUPTED", disposition["description"])

    def test_cdr_linked_id(self) -> None:
        """``?linked_id=`` lists every leg of one transferred conversation; CSV and the schema name the column."""
        token = self.login()
        for record in (
            CallRecord("x1", "1001", "1002", 100.0, 110.0, answer=101.0, hangup_cause="transferred to 1003"),
            CallRecord("x1", "1001", "1003", 100.0, 150.0, answer=101.0),
            CallRecord("x3", "1001", "1003", 109.0, 150.0, answer=112.0, leg="b", linked_id="x1"),
            CallRecord("y1", "1004", "1005", 120.0, 130.0, answer=121.0),
        ):
            self.successResultOf(self.store.add_call_record(record))
        body = self.call("GET", "/api/v1/cdr?linked_id=x1", token=token)[1]
        self.assertEqual(body["total"], 3)
        self.assertEqual({(r["call_id"], r["callee"], r["linked_id"]) for r in body["records"]},
                         {("x1", "1002", "x1"), ("x1", "1003", "x1"), ("x3", "1003", "x1")})
        text = self.call("GET", "/api/v1/cdr?format=csv&linked_id=y1", token=token)[1].decode()
        header, line = text.splitlines()
        self.assertEqual(dict(zip(header.split(","), line.split(","), strict=True))["linked_id"], "y1")
        doc = self.call("GET", "/api/v1/openapi.json")[1]
        self.assertIn("linked_id", doc["components"]["schemas"]["CallRecord"]["properties"])
        self.assertIn("linked_id", {p["name"] for p in doc["paths"]["/api/v1/cdr"]["get"]["parameters"]})

    def test_cdr_bad_query(self) -> None:
        """Bad CDR query parameters get 400."""
        token = self.login()
        for q in ("limit=0", "limit=x", "since=abc", "format=xml", "colour=red", "since=nan"):
            self.assertEqual(self.call("GET", "/api/v1/cdr?" + q, token=token)[0], 400, q)


class ChannelCapTests(SynchronousTestCase):
    """The body cap holds on a real HTTP channel, before the body is buffered."""

    def test_declared_length_refused(self) -> None:
        """A Content-Length over the cap gets 413 and the connection closes."""
        from twisted.internet.testing import StringTransport

        site = make_site(PBXApi(FakePBX(config=parse_config(CONFIG, "t.yml", {})),
                                check, fast_hash).resource(), 2048)
        site.timeOut = None  # no idle timer on the global reactor
        channel = site.buildProtocol(None)
        transport = StringTransport()
        channel.makeConnection(transport)
        channel.dataReceived(b"POST /api/v1/auth/login HTTP/1.1\r\nHost: x\r\n"
                             b"Content-Type: application/json\r\nContent-Length: 999999\r\n\r\n" + b"{" * 100)
        out = transport.value()
        self.assertTrue(out.startswith(b"HTTP/1.1 413 "), out[:80])
        self.assertIn(b"X-Frame-Options: DENY", out)
        self.assertTrue(transport.disconnecting)


class _Feature:
    """A feature API as a plugin would write one: routes relative to its mount."""

    app = Klein()

    def __init__(self, api: PBXApi) -> None:
        self.api = api

    @app.route("/<number>/things", methods=["GET"])
    def things(self, request: Any, number: str) -> bytes:
        session = self.api.authenticate(request)
        if session.role != "admin" and session.extension != number:
            raise APIError(403, "not your extension")
        return json_body(request, 200, {"number": number, "role": session.role})

    @app.handle_errors(APIError)
    def _error(self, request: Any, failure: Any) -> bytes:
        return error_body(request, failure.value)


class MountTests(APITestCase):
    """Feature APIs mounted under /api/v1/<name>/, and user sessions."""

    PATHS = {"/api/v1/things/{number}/things": {"get": {"summary": "things", "responses": {}}}}

    def setUp(self) -> None:
        super().setUp()
        self.pbx.mount_api("things", _Feature(self.api).app.resource(), self.PATHS)
        self.store.extensions["1001"] = ExtensionRecord(
            "1001", pin_hash=hash_password("482913", iterations=1000))

    def user_login(self, number: str = "1001", pin: str = "482913") -> tuple[int, Any]:
        status, body, _ = self.call("POST", "/api/v1/auth/login", {"username": number, "password": pin})
        return status, body

    def test_admin_reaches_mounted_routes(self) -> None:
        """An admin reaches any extension's resources through the mount."""
        token = self.login()
        status, body, _ = self.call("GET", "/api/v1/things/1002/things", token=token)
        self.assertEqual((status, body), (200, {"number": "1002", "role": "admin"}))

    def test_user_logs_in_with_pin_and_reaches_only_own(self) -> None:
        """An extension logs in with its voicemail PIN; it reaches its own resources only."""
        status, body = self.user_login()
        self.assertEqual((status, body["role"]), (200, "user"))
        token = body["token"]
        self.assertEqual(self.call("GET", "/api/v1/things/1001/things", token=token)[:2],
                         (200, {"number": "1001", "role": "user"}))
        self.assertEqual(self.call("GET", "/api/v1/things/1002/things", token=token)[:2],
                         (403, {"error": "not your extension"}))
        # Core administration is for administrators only.
        for path in ("/api/v1/extensions", "/api/v1/status", "/api/v1/cdr"):
            self.assertEqual(self.call("GET", path, token=token)[:2], (403, {"error": "administrators only"}))

    def test_user_wrong_pin_disabled_and_unknown_look_alike(self) -> None:
        """A wrong PIN, a disabled extension and an unknown number all get the same 401."""
        self.store.extensions["1003"] = ExtensionRecord(
            "1003", enabled=False, pin_hash=hash_password("482913", iterations=1000))
        self.store.extensions["1004"] = ExtensionRecord("1004")  # no PIN at all
        for number, pin in (("1001", "111111"), ("1003", "482913"), ("1004", ""), ("1999", "482913")):
            self.assertEqual(self.user_login(number, pin), (401, {"error": "wrong username or password"}))
            self.clock.advance(61)  # past the lockout window: each try is judged alone

    def test_user_lockout(self) -> None:
        """PIN guesses lock the extension out like password guesses."""
        for _ in range(3):
            self.assertEqual(self.user_login(pin="000000")[0], 401)
        self.assertEqual(self.user_login()[0], 429)

    def test_user_logs_out(self) -> None:
        """A user may log out its own token; it then opens nothing."""
        token = self.user_login()[1]["token"]
        self.assertEqual(self.call("POST", "/api/v1/auth/logout", token=token)[:2], (200, {"logged_out": True}))
        self.assertEqual(self.call("GET", "/api/v1/things/1001/things", token=token)[0], 401)

    def test_sessions_end_when_secret_changes_or_extension_goes(self) -> None:
        """A user's tokens die when the admin changes its PIN or password, disables or deletes it; the admin's live on."""
        admin = self.login()
        changes: list[tuple[str, dict[str, Any] | None]] = [
            ("PATCH", {"pin": "739146"}),
            ("PATCH", {"password": "An0ther-long-secret"}),
            ("PATCH", {"enabled": False}),
            ("DELETE", None),
        ]
        for method, body in changes:
            self.store.extensions["1001"] = ExtensionRecord("1001", pin_hash=hash_password("482913", iterations=1000))
            user = self.user_login()[1]["token"]
            other = self.user_login()[1]["token"]
            self.assertEqual(self.call(method, "/api/v1/extensions/1001", body, token=admin)[0] // 100, 2)
            for token in (user, other):
                self.assertEqual(self.call("GET", "/api/v1/things/1001/things", token=token)[0], 401, body)
        self.assertEqual(self.call("GET", "/api/v1/status", token=admin)[0], 200)

    def test_other_changes_keep_sessions(self) -> None:
        """A change that touches no secret (a name, do-not-disturb) keeps the user's session."""
        admin = self.login()
        user = self.user_login()[1]["token"]
        self.call("PATCH", "/api/v1/extensions/1001", {"name": "Alice", "dnd": True}, token=admin)
        self.assertEqual(self.call("GET", "/api/v1/things/1001/things", token=user)[0], 200)

    def test_credentials_changed_ends_sessions(self) -> None:
        """IPBX.credentials_changed (a feature changed a PIN) ends that user's sessions only."""
        user = self.user_login()[1]["token"]
        admin = self.login()
        self.pbx.credentials_changed("1001")
        self.assertEqual(self.call("GET", "/api/v1/things/1001/things", token=user)[0], 401)
        self.assertEqual(self.call("GET", "/api/v1/status", token=admin)[0], 200)

    def test_user_pins_do_not_lock_the_admin(self) -> None:
        """Five wrong PINs for a user from 127.0.0.1 lock that user only: the admin and other users still log in."""
        self.store.extensions["1002"] = ExtensionRecord("1002", pin_hash=hash_password("560391", iterations=1000))
        for _ in range(5):
            self.user_login(pin="000000")
        self.assertEqual(self.user_login()[0], 429)
        self.assertEqual(self.user_login("1002", "560391")[0], 200)
        self.login()

    def test_address_threshold(self) -> None:
        """An address guessing many users' PINs is locked out of PIN logins at its own, higher threshold; never the admin."""
        for i in range(50):
            self.assertEqual(self.user_login(f"{2000 + i}", "000000")[0], 401)
        self.assertEqual(self.user_login()[0], 429)
        self.login()
        self.clock.advance(31)
        self.assertEqual(self.user_login()[0], 200)

    def test_admin_failures_lock_the_admin(self) -> None:
        """An administrator's own wrong passwords lock it, not the users at the same address."""
        for _ in range(3):
            self.call("POST", "/api/v1/auth/login", {"username": "admin", "password": "wrong-password1"})
        self.assertEqual(self.call("POST", "/api/v1/auth/login", {"username": "admin", "password": ADMIN_PW})[0], 429)
        self.assertEqual(self.user_login()[0], 200)

    def test_login_with_pin_not_hashed_yet(self) -> None:
        """A PIN still waiting for its hash (fresh start) logs in at once; a wrong one does not."""
        self.api = PBXApi(self.pbx, self.pbx.verify_secret, fast_hash)
        self.pbx.api = self.api
        self.treq = StubTreq(make_site(self.api.resource(), 2048).resource)
        self.store.extensions["1005"] = ExtensionRecord("1005", pin_hash=self.pbx.hold_pin("571946"))
        self.assertEqual(self.user_login("1005", "000000")[0], 401)
        self.assertEqual(self.user_login("1005", "571946")[0], 200)

    def test_unknown_feature_and_bare_name_are_404(self) -> None:
        """Nothing is mounted at other names; the name alone is no resource."""
        token = self.login()
        self.assertEqual(self.call("GET", "/api/v1/nothing/x", token=token)[:2], (404, {"error": "no such resource"}))
        self.assertEqual(self.call("GET", "/api/v1/things", token=token)[:2], (404, {"error": "no such resource"}))

    def test_mount_refuses_core_and_taken_names(self) -> None:
        """A feature cannot shadow the core's routes or another feature."""
        for name in ("extensions", "auth", "things", "Bad Name", ""):
            with self.assertRaises(ValueError):
                self.api.mount(name, Resource(), {})

    def test_openapi_includes_mounted_paths(self) -> None:
        """The OpenAPI document lists what features mounted."""
        status, doc, _ = self.call("GET", "/api/v1/openapi.json")
        self.assertEqual(doc["paths"]["/api/v1/things/{number}/things"], self.PATHS["/api/v1/things/{number}/things"])
        self.assertIn("/api/v1/extensions", doc["paths"])
