"""Tests for the pages a browser opens on the API port, in memory with StubTreq."""

from __future__ import annotations

import json
import re
from html.parser import HTMLParser
from typing import Any

from treq.testing import StubTreq
from twisted.internet.defer import Deferred, succeed
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.resource import Resource

from pbx import __version__
from pbx.api.app import PBXApi
from pbx.api.http import make_site
from pbx.api.openapi import openapi_document
from pbx.api.pages import PAGE_POLICY, load_static
from pbx.config import parse_config
from pbx.testing import FakePBX

CONFIG = "sip: {domain: pbx.test}\n"


def never_verified(secret: str, encoded: str) -> Deferred[bool]:
    """No password is right: these pages need no login."""
    return succeed(False)


def no_hash(secret: str) -> Deferred[str]:
    """Hashing is not used by these pages."""
    return succeed("")


class _Tags(HTMLParser):
    """Collects every start tag with its attributes, and the text inside scripts."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.script_text = ""
        self._in_script = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))
        self._in_script = tag == "script"

    def handle_endtag(self, tag: str) -> None:
        self._in_script = False

    def handle_data(self, data: str) -> None:
        if self._in_script:
            self.script_text += data.strip()


def tags_of(body: bytes) -> _Tags:
    """Parse an HTML page."""
    parser = _Tags()
    parser.feed(body.decode("utf-8"))
    return parser


class PagesTests(SynchronousTestCase):
    """``/``, ``/admin``, ``/api/v1/docs`` and ``/static/...``."""

    def setUp(self) -> None:
        self.api = PBXApi(FakePBX(config=parse_config(CONFIG, "t.yml", {})), never_verified, no_hash)
        self.treq = StubTreq(make_site(self.api.resource(), 2048).resource)

    def get(self, path: str, method: str = "GET") -> tuple[int, bytes, Any]:
        """One request; returns (status, body, response)."""
        d = self.treq.request(method, "http://127.0.0.1" + path, allow_redirects=False)
        self.treq.flush()
        response = self.successResultOf(d)
        return response.code, self.successResultOf(response.content()), response

    def header(self, response: Any, name: str) -> str:
        """The one value of a response header."""
        [value] = response.headers.getRawHeaders(name)
        return str(value)

    def test_home_page(self) -> None:
        """``/`` says what this is and its version, links the docs and holds a login form."""
        status, body, response = self.get("/")
        self.assertEqual(status, 200)
        self.assertEqual(self.header(response, "content-type"), "text/html; charset=utf-8")
        text = body.decode()
        self.assertIn(f"version {__version__}", text)
        tags = tags_of(body)
        links = {a.get("href") for tag, a in tags.tags if tag == "a"}
        self.assertLessEqual({"/api/v1/docs", "/api/v1/openapi.json"}, links)
        self.assertIn(("form", {"id": "login-form", "method": "post"}), tags.tags)
        self.assertIn(("script", {"src": "/static/home.js", "defer": None}), tags.tags)

    def test_pages_have_strict_policy(self) -> None:
        """The HTML pages allow scripts and styles from this origin only, never inline."""
        for path in ("/", "/api/v1/docs"):
            _, _, response = self.get(path)
            policy = self.header(response, "content-security-policy")
            self.assertEqual(policy, PAGE_POLICY.decode(), path)
            self.assertIn("script-src 'self';", policy)
            self.assertNotIn("unsafe", policy)
            self.assertEqual(self.header(response, "x-content-type-options"), "nosniff")
            self.assertEqual(self.header(response, "x-frame-options"), "DENY")

    def test_no_inline_script_or_style(self) -> None:
        """No packaged page has inline script, event handler attributes or style attributes."""
        for name, found in load_static(__version__).items():
            if not name.endswith(".html"):
                continue
            tags = tags_of(found.body)
            self.assertEqual(tags.script_text, "", name)
            for tag, attrs in tags.tags:
                self.assertFalse([a for a in attrs if a.startswith("on") or a == "style"], (name, tag))
                self.assertNotEqual(tag, "style", name)

    def test_admin_redirects_home(self) -> None:
        """``/admin`` redirects to ``/`` until the admin panel exists."""
        status, _, response = self.get("/admin")
        self.assertEqual(status, 302)
        self.assertEqual(self.header(response, "location"), "/")

    def test_docs_page(self) -> None:
        """``/api/v1/docs`` needs no login and loads the renderer from the package."""
        status, body, response = self.get("/api/v1/docs")
        self.assertEqual(status, 200)
        self.assertEqual(self.header(response, "content-type"), "text/html; charset=utf-8")
        self.assertIn(("script", {"src": "/static/docs.js", "defer": None}), tags_of(body).tags)

    def test_referenced_files_are_served(self) -> None:
        """Every script and style sheet the pages name is served, typed, with nosniff."""
        wanted = {"js": "text/javascript; charset=utf-8", "css": "text/css; charset=utf-8",
                  "svg": "image/svg+xml"}
        seen = set()
        for path in ("/", "/api/v1/docs"):
            for tag, attrs in tags_of(self.get(path)[1]).tags:
                url = attrs.get("src") if tag == "script" else attrs.get("href") if tag == "link" else None
                if url is None:
                    continue
                status, body, response = self.get(url)
                self.assertEqual(status, 200, url)
                self.assertEqual(self.header(response, "content-type"), wanted[url.rpartition(".")[2]])
                self.assertEqual(self.header(response, "x-content-type-options"), "nosniff")
                self.assertTrue(body)
                seen.add(url)
        self.assertEqual(seen, {"/static/home.js", "/static/docs.js", "/static/pbx.css", "/static/pbx.svg"})

    def test_scripts_call_documented_paths(self) -> None:
        """Every API path the scripts call is in the OpenAPI document."""
        documented = set(openapi_document(__version__)["paths"])
        files = load_static(__version__)
        called = set()
        for name in ("home.js", "docs.js"):
            called |= set(re.findall(r'"(/api/v1/[^"]+)"', files[name].body.decode()))
        self.assertEqual(called - documented, set())
        self.assertIn("/api/v1/auth/login", called)

    def test_unknown_files_are_json_404(self) -> None:
        """Other names under ``/static/``, the pages themselves and paths out of it are 404 JSON."""
        for path in ("/static/nothing.js", "/static/index.html", "/static/../pages.py", "/static/",
                     "/static/%2e%2e%2fpages.py"):
            status, body, _ = self.get(path)
            self.assertEqual((status, json.loads(body)), (404, {"error": "no such resource"}), path)

    def test_wrong_method_is_json_405(self) -> None:
        """A POST to a page answers 405 JSON naming GET."""
        status, body, response = self.get("/", method="POST")
        self.assertEqual((status, json.loads(body)), (405, {"error": "method not allowed"}))
        self.assertIn("GET", self.header(response, "allow"))

    def test_docs_is_not_a_feature_mount(self) -> None:
        """A feature cannot mount its API over the docs page."""
        with self.assertRaises(ValueError):
            self.api.mount("docs", Resource(), {})

    def test_version_is_escaped(self) -> None:
        """The version goes into the HTML escaped."""
        files = load_static("1<b>&")
        self.assertIn(b"version 1&lt;b&gt;&amp;", files["index.html"].body)
        self.assertEqual(set(files), {"index.html", "docs.html", "home.js", "docs.js", "pbx.css", "pbx.svg"})
