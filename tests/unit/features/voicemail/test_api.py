"""Tests for the voicemail REST API, mounted on the real API in memory with StubTreq."""

from __future__ import annotations

import io
import json
import os
import wave
from typing import Any

from treq.testing import StubTreq
from twisted.internet.defer import Deferred, succeed
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from pbx.api.app import PBXApi
from pbx.api.http import make_site
from pbx.config import parse_config
from pbx.features.voicemail.api import OPENAPI_PATHS, VoicemailAPI
from pbx.features.voicemail.mailbox import Message, Voicemail
from pbx.records import AdminRecord, ExtensionRecord
from pbx.security.lockout import Lockout
from pbx.security.passwords import hash_password, verify_password
from pbx.testing import FakePBX, MemoryStore

CONFIG = """
sip: {domain: pbx.test}
security: {lockout_failures: 3, lockout_window: 60, lockout_delay: 30}
api: {token_lifetime: 600, max_body: 65536}
"""
ADMIN_PW = "Adm1n-secret-pass"
NOW = 1_700_000_000.0


def fast_hash(secret: str) -> Deferred[str]:
    """PBKDF2 with few iterations, so tests stay quick."""
    return succeed(hash_password(secret, iterations=1000))


def check(secret: str, encoded: str) -> Deferred[bool]:
    """Synchronous verification."""
    return succeed(verify_password(secret, encoded))


def wav_bytes(
    seconds: float = 0.5, rate: int = 8000, channels: int = 1, width: int = 2
) -> bytes:
    """A WAV file of silence, in memory."""
    out = io.BytesIO()
    with wave.open(out, "wb") as w:
        w.setnchannels(channels)
        w.setsampwidth(width)
        w.setframerate(rate)
        w.writeframes(bytes(int(seconds * rate) * channels * width))
    return out.getvalue()


class VoicemailAPITestCase(SynchronousTestCase):
    """The core API with the voicemail API mounted; mailboxes 1001 and 1002."""

    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(NOW)
        self.store = MemoryStore()
        self.store.admins["admin"] = AdminRecord(
            "admin", hash_password(ADMIN_PW, iterations=1000)
        )
        for number, pin in (("1001", "482913"), ("1002", "739164")):
            self.store.extensions[number] = ExtensionRecord(
                number, pin_hash=hash_password(pin, iterations=1000)
            )
        self.changed: list[str] = []
        self.pbx = FakePBX(config=parse_config(CONFIG, "t.yml", {}), store=self.store, clock=self.clock,
                           features=["voicemail"])
        self.vm = Voicemail(
            self.store,
            os.path.abspath(self.mktemp()),
            self.clock,
            in_thread=self.pbx.run_in_thread,
            lockout=Lockout(self.clock),
            hasher=fast_hash,
            verifier=check,
            on_change=self.changed.append,
        )
        self.api = PBXApi(self.pbx, check, fast_hash)
        self.pbx.api = self.api
        self.api.mount(
            "voicemail",
            VoicemailAPI(self.vm, self.api.authenticate).resource(),
            OPENAPI_PATHS,
        )
        self.treq = StubTreq(make_site(self.api.resource(), 65536).resource)
        self.admin = self.login("admin", ADMIN_PW)
        self.alice = self.login("1001", "482913")

    def call(
        self,
        method: str,
        path: str,
        body: Any = None,
        token: str | None = None,
        headers: dict[str, str] | None = None,
        raw: bytes | None = None,
    ) -> tuple[int, Any, Any]:
        """Make one request; return (status, decoded body, response)."""
        h = dict(headers or {})
        data = raw
        if body is not None:
            h.setdefault("Content-Type", "application/json")
            data = json.dumps(body).encode()
        if token:
            h["Authorization"] = f"Bearer {token}"
        d = self.treq.request(method, "http://127.0.0.1" + path, data=data, headers=h)  # type: ignore[attr-defined]
        self.treq.flush()
        response = self.successResultOf(d)
        content = self.successResultOf(response.content())
        ctype = response.headers.getRawHeaders("content-type", [""])[0]
        decoded = (
            json.loads(content)
            if ctype.startswith("application/json") and content
            else content
        )
        return response.code, decoded, response

    def login(self, username: str, password: str) -> str:
        """A bearer token for the user or admin."""
        status, body, _ = self.call(
            "POST", "/api/v1/auth/login", {"username": username, "password": password}
        )
        self.assertEqual(status, 200)
        return str(body["token"])

    def leave(
        self, mailbox: str = "1001", caller: str = "2001", name: str = "Carol"
    ) -> Message:
        """Deliver a half-second message."""
        path = self.vm.recording_path(mailbox)
        with open(path, "wb") as f:
            f.write(wav_bytes())
        message = self.successResultOf(
            Deferred.fromCoroutine(
                self.vm.deliver(
                    mailbox, path, caller=caller, caller_name=name, duration=0.5
                )
            )
        )
        self.clock.advance(1)
        return message


class AccessTests(VoicemailAPITestCase):
    """Who reaches which mailbox."""

    def test_user_reaches_own_mailbox_only(self) -> None:
        """A user lists their own messages; another mailbox is 403; admins reach both."""
        self.leave("1001")
        self.leave("1002")
        status, body, _ = self.call(
            "GET", "/api/v1/voicemail/1001/messages", token=self.alice
        )
        self.assertEqual((status, len(body["messages"])), (200, 1))
        self.assertEqual(
            self.call("GET", "/api/v1/voicemail/1002/messages", token=self.alice)[:2],
            (403, {"error": "not your mailbox"}),
        )
        for mailbox in ("1001", "1002"):
            self.assertEqual(
                self.call(
                    "GET", f"/api/v1/voicemail/{mailbox}/messages", token=self.admin
                )[0],
                200,
            )

    def test_login_required(self) -> None:
        """Without a token every route is 401 JSON."""
        status, body, _ = self.call("GET", "/api/v1/voicemail/1001/messages")
        self.assertEqual((status, body), (401, {"error": "log in first"}))
        self.assertEqual(self.call("GET", "/api/v1/voicemail/search?q=x")[0], 401)

    def test_unknown_mailbox_and_route(self) -> None:
        """A mailbox that does not exist, or a route that does not, is 404 JSON."""
        self.assertEqual(
            self.call("GET", "/api/v1/voicemail/1999/messages", token=self.admin)[:2],
            (404, {"error": "no mailbox 1999"}),
        )
        self.assertEqual(
            self.call("GET", "/api/v1/voicemail/1001/nothing", token=self.admin)[:2],
            (404, {"error": "no such resource"}),
        )
        status, _, response = self.call(
            "POST", "/api/v1/voicemail/1001/messages", token=self.admin
        )
        self.assertEqual(status, 405)
        self.assertIn("GET", response.headers.getRawHeaders("allow")[0])

    def test_summary(self) -> None:
        """The mailbox resource gives counts and which greetings exist."""
        self.leave()
        status, body, _ = self.call("GET", "/api/v1/voicemail/1001", token=self.alice)
        self.assertEqual((status, body["new"], body["old"]), (200, 1, 0))
        self.assertEqual(
            body["greetings"], {"unavailable": False, "busy": False, "name": False}
        )

    def test_openapi_lists_the_routes(self) -> None:
        """The OpenAPI document holds exactly the voicemail routes the app serves."""
        status, doc, _ = self.call("GET", "/api/v1/openapi.json")
        self.assertEqual(status, 200)
        documented = {
            (p, m.upper())
            for p, ops in doc["paths"].items()
            if p.startswith("/api/v1/voicemail/")
            for m in ops
            if m != "parameters"
        }
        served = set()
        for rule in VoicemailAPI.app.url_map.iter_rules():
            path = "/api/v1/voicemail" + rule.rule.replace("<", "{").replace(">", "}")
            served |= {(path, m) for m in (rule.methods or set()) - {"HEAD", "OPTIONS"}}
        self.assertEqual(documented, served)


class MessageTests(VoicemailAPITestCase):
    """Listing, reading, marking and deleting messages."""

    def test_list_fields_filters(self) -> None:
        """Messages carry their fields; folder and q filter them."""
        first, second = self.leave(), self.leave(caller="2002", name="Dave")
        self.successResultOf(
            Deferred.fromCoroutine(self.vm.mark("1001", first.id, "old"))
        )
        self.successResultOf(
            Deferred.fromCoroutine(
                self.vm.set_transcript("1001", second.id, "please call back", 0.9)
            )
        )
        status, body, _ = self.call(
            "GET", "/api/v1/voicemail/1001/messages", token=self.alice
        )
        self.assertEqual(status, 200)
        self.assertEqual([m["id"] for m in body["messages"]], [second.id, first.id])
        self.assertEqual(
            body["messages"][0],
            {
                "id": second.id,
                "mailbox": "1001",
                "folder": "new",
                "caller": "2002",
                "caller_name": "Dave",
                "received": NOW + 1,
                "duration": 0.5,
                "transcript": "please call back",
                "confidence": 0.9,
                "emailed": False,
                "forwarded_by": "",
            },
        )
        self.assertNotIn("path", body["messages"][0])
        old = self.call(
            "GET", "/api/v1/voicemail/1001/messages?folder=old", token=self.alice
        )[1]
        self.assertEqual([m["id"] for m in old["messages"]], [first.id])
        found = self.call(
            "GET", "/api/v1/voicemail/1001/messages?q=CALL", token=self.alice
        )[1]
        self.assertEqual([m["id"] for m in found["messages"]], [second.id])
        found = self.call(
            "GET",
            "/api/v1/voicemail/1001/messages?q=carol&folder=new",
            token=self.alice,
        )[1]
        self.assertEqual(found["messages"], [])

    def test_bad_queries(self) -> None:
        """Unknown parameters and folders are 400."""
        for query in ("folder=saved", "page=2"):
            status, body, _ = self.call(
                "GET", f"/api/v1/voicemail/1001/messages?{query}", token=self.alice
            )
            self.assertEqual(status, 400, query)
            self.assertIn("error", body)

    def test_get_and_audio(self) -> None:
        """One message reads back, and its audio is the WAV file."""
        message = self.leave()
        status, body, _ = self.call(
            "GET", f"/api/v1/voicemail/1001/messages/{message.id}", token=self.alice
        )
        self.assertEqual((status, body["caller"]), (200, "2001"))
        status, data, response = self.call(
            "GET",
            f"/api/v1/voicemail/1001/messages/{message.id}/audio",
            token=self.alice,
        )
        self.assertEqual(status, 200)
        self.assertEqual(response.headers.getRawHeaders("content-type"), ["audio/wav"])
        with open(message.path, "rb") as f:
            self.assertEqual(data, f.read())
        for path in (
            "0000000000000-abcdef",
            "0000000000000-abcdef/audio",
            "..%2F..%2Fx",
        ):
            self.assertEqual(
                self.call(
                    "GET", f"/api/v1/voicemail/1001/messages/{path}", token=self.alice
                )[0],
                404,
            )
        self.assertEqual(
            self.call(
                "GET",
                f"/api/v1/voicemail/1002/messages/{message.id}/audio",
                token=self.alice,
            )[0],
            403,
        )

    def test_mark_heard(self) -> None:
        """PATCH folder moves a message and announces the new counts."""
        message = self.leave()
        self.changed.clear()
        url = f"/api/v1/voicemail/1001/messages/{message.id}"
        status, body, _ = self.call("PATCH", url, {"folder": "old"}, token=self.alice)
        self.assertEqual((status, body["folder"]), (200, "old"))
        self.assertEqual(self.changed, ["1001"])
        self.assertEqual(
            self.successResultOf(Deferred.fromCoroutine(self.vm.counts("1001"))), (0, 1)
        )
        self.assertEqual(
            self.call("PATCH", url, {"folder": "trash"}, token=self.alice)[0], 422
        )
        self.assertEqual(
            self.call("PATCH", url, {"folder": "new", "x": 1}, token=self.alice)[0], 422
        )
        self.assertEqual(
            self.call("PATCH", url, raw=b"folder=old", token=self.alice)[0], 415
        )

    def test_delete(self) -> None:
        """DELETE removes the message and its file, and announces it."""
        message = self.leave()
        self.changed.clear()
        url = f"/api/v1/voicemail/1001/messages/{message.id}"
        self.assertEqual(self.call("DELETE", url, token=self.alice)[:2], (204, b""))
        self.assertFalse(os.path.exists(message.path))
        self.assertEqual(self.changed, ["1001"])
        self.assertEqual(self.call("DELETE", url, token=self.alice)[0], 404)

    def test_search(self) -> None:
        """Admins search every mailbox; users only their own; q is required."""
        mine, theirs = (
            self.leave("1001", name="Erin Smith"),
            self.leave("1002", name="Frank Smith"),
        )
        found = self.call("GET", "/api/v1/voicemail/search?q=smith", token=self.admin)[
            1
        ]
        self.assertEqual([m["id"] for m in found["messages"]], [theirs.id, mine.id])
        found = self.call("GET", "/api/v1/voicemail/search?q=smith", token=self.alice)[
            1
        ]
        self.assertEqual([m["id"] for m in found["messages"]], [mine.id])
        self.assertEqual(
            self.call("GET", "/api/v1/voicemail/search", token=self.alice)[:2],
            (400, {"error": "q is required"}),
        )


class GreetingTests(VoicemailAPITestCase):
    """Uploading and removing greetings."""

    URL = "/api/v1/voicemail/1001/greetings/unavailable"

    def put(
        self, data: bytes, ctype: str = "audio/wav", url: str = URL
    ) -> tuple[int, Any, Any]:
        """Upload ``data`` as a greeting."""
        return self.call(
            "PUT", url, raw=data, token=self.alice, headers={"Content-Type": ctype}
        )

    def test_upload_get_delete(self) -> None:
        """A mono 16-bit WAV becomes the greeting; it reads back and is deleted once."""
        data = wav_bytes(1.0, 16000)
        status, body, _ = self.put(data)
        self.assertEqual((status, body["greeting"]), (200, "unavailable"))
        path = self.vm.greeting_path("1001", "unavailable")
        assert path is not None
        with open(path, "rb") as f:
            self.assertEqual(f.read(), data)
        status, got, response = self.call("GET", self.URL, token=self.alice)
        self.assertEqual((status, got), (200, data))
        self.assertEqual(os.listdir(os.path.join(self.vm.spool, "tmp")), [])
        self.assertEqual(self.call("DELETE", self.URL, token=self.alice)[0], 204)
        self.assertIsNone(self.vm.greeting_path("1001", "unavailable"))
        self.assertEqual(self.call("DELETE", self.URL, token=self.alice)[0], 404)
        self.assertEqual(self.call("GET", self.URL, token=self.alice)[0], 404)

    def test_bad_audio_is_400(self) -> None:
        """Stereo, 8-bit, 44.1 kHz, empty and non-WAV bodies are refused with a JSON reason."""
        for data in (
            wav_bytes(channels=2),
            wav_bytes(width=1),
            wav_bytes(rate=44100),
            wav_bytes(0),
            b"RIFF\x00\x00",
            b"hello, world" * 10,
        ):
            status, body, _ = self.put(data)
            self.assertEqual(status, 400, body)
            self.assertTrue(
                body["error"].startswith(
                    ("not a usable greeting", "the body is empty")
                ),
                body,
            )
            self.assertNotIn(self.vm.spool, body["error"])
        self.assertIsNone(self.vm.greeting_path("1001", "unavailable"))
        self.assertEqual(os.listdir(os.path.join(self.vm.spool, "tmp")), [])

    def test_wrong_type_kind_or_mailbox(self) -> None:
        """Another content type is 415; an unknown kind 404; another's mailbox 403."""
        self.assertEqual(self.put(wav_bytes(), "application/octet-stream")[0], 415)
        self.assertEqual(
            self.put(wav_bytes(), url="/api/v1/voicemail/1001/greetings/holiday")[0],
            404,
        )
        self.assertEqual(
            self.put(wav_bytes(), url="/api/v1/voicemail/1002/greetings/busy")[0], 403
        )
        self.assertEqual(self.put(b"")[0], 400)
