"""
Integration tests: the real ``twistd pbx`` on loopback against hostile input
(configuration files, API bodies), with sessions that end and lockout per
credential, through the real HTTP API.
"""

from __future__ import annotations

import re
import subprocess
import time
import urllib.request

import pytest

from twisted.trial.unittest import SynchronousTestCase

from support.daemon import API, Daemon, admin_password, free_port, http

pytestmark = pytest.mark.integration

PIN = "582914"


def config(api_port: int, sip_port: int, password: str, extra: str = "") -> str:
    """A loopback configuration: an admin, 1001 with a PIN (hashed after ready), 1002 without."""
    return f"""
sip:
  domain: pbx.test
  listen: ["udp:{sip_port}:interface=127.0.0.1"]
api:
  listen: "tcp:{api_port}:interface=127.0.0.1"
  admins: [{{username: admin, password: "{password}"}}]
extensions:
  "1001": {{name: Alice, password: "F1rst-demo-secret", pin: "{PIN}"}}
  "1002": {{name: Bob, password: "Sec0nd-demo-secret"}}
{extra}
"""


def post_raw(url: str, raw: bytes) -> tuple[int, bytes]:
    """POST raw bytes as application/json; (status, body)."""
    request = urllib.request.Request(url, data=raw, method="POST", headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


class HostileConfigTests(SynchronousTestCase):
    """Each hostile file is one line on stderr and status 1, within seconds, from --check-config."""

    def check(self, text: str) -> tuple[str, float]:
        """Run --check-config on ``text``; return its one output line and the seconds it took."""
        daemon = Daemon(self.mktemp(), text)
        began = time.monotonic()
        result = subprocess.run(daemon.command("--check-config"), cwd=daemon.workdir, env=daemon.env,
                                capture_output=True, timeout=120)
        took = time.monotonic() - began
        out = (result.stdout + result.stderr).decode()
        self.assertEqual(result.returncode, 1, out)
        self.assertNotIn("Traceback", out)
        [line] = out.strip().splitlines()
        self.assertTrue(line.startswith(f"pbx: {daemon.config_path}: "), line)
        return line[len(f"pbx: {daemon.config_path}: "):], took

    def test_empty_file(self) -> None:
        """An empty file does not start a PBX on the defaults."""
        line, _ = self.check("")
        self.assertEqual(line, "(file): is empty: it needs at least one section (see etc/pbx.yml)")

    def test_line_break_in_name(self) -> None:
        """A CR/LF in an extension's name names the key."""
        line, _ = self.check('extensions:\n  "1001": {name: "Eve\\r\\nX-Evil: 1"}\n')
        self.assertEqual(line, "extensions.1001.name: holds a line break")

    def test_alias_bomb(self) -> None:
        """A 9-level alias bomb (under 300 bytes) is refused in seconds, not after minutes of CPU."""
        lines = ['a: &a ["x", "x", "x", "x", "x", "x", "x", "x", "x"]']
        for prev, name in zip("abcdefgh", "bcdefghi", strict=True):
            lines.append(f"{name}: &{name} [{','.join(['*' + prev] * 9)}]")
        line, took = self.check("\n".join(lines) + "\n")
        self.assertRegex(line, r"^line \d+: describes more than 100000 values with its aliases expanded$")
        self.assertLess(took, 30)

    def test_nested_brackets(self) -> None:
        """200 KB of nested brackets is one line, not thousands of lines of traceback."""
        line, _ = self.check("a: " + "[" * 100_000 + "]" * 100_000 + "\n")
        self.assertEqual(line, "(file): nested deeper than 16 levels")


class EdgeAPITests(SynchronousTestCase):
    """The running daemon's API against hostile bodies, logouts, revocation and lockout."""

    def setUp(self) -> None:
        self.api_port = free_port()
        self.password = admin_password()
        self.daemon = Daemon(self.mktemp(), config(self.api_port, free_port(), self.password))
        self.addCleanup(self.daemon.stop)
        self.daemon.start()
        self.base = f"http://127.0.0.1:{self.api_port}/api/v1"
        self.api = API(self.api_port, self.password)

    def tearDown(self) -> None:
        self.assertFalse(self.daemon.tracebacks, "\n".join(self.daemon.tracebacks))

    def login(self, username: str, password: str) -> tuple[int, dict[str, str]]:
        """POST /auth/login."""
        status, body = http("POST", f"{self.base}/auth/login", {"username": username, "password": password})
        return status, body

    def test_hostile_bodies(self) -> None:
        """Nested JSON, lone surrogates and CR/LF in names get 4xx JSON naming the problem, never a 500."""
        status, raw = post_raw(f"{self.base}/auth/login", b'{"username": ' + b"[" * 5000 + b"]" * 5000 + b"}")
        self.assertEqual((status, raw), (400, b'{"error":"the body is nested deeper than 16 levels"}'))
        status, raw = post_raw(f"{self.base}/auth/login", b'{"username": "\\ud800", "password": "x"}')
        self.assertEqual(status, 400, raw)
        status, token = self.login("admin", self.password)
        token = token["token"]
        status, body = http("POST", f"{self.base}/extensions",
                            {"number": "1003", "password": "Th1rd-demo-secret", "name": "Eve\r\nX-Evil: 1"}, token)
        self.assertEqual((status, body), (422, {"error": "name holds a line break"}))
        status, body = http("PATCH", f"{self.base}/extensions/1002", {"email": "a" * 900_000 + "@x.example"}, token)
        self.assertEqual((status, body), (422, {"error": "email is longer than 254 characters"}))

    def test_pin_works_at_once_and_sessions_end(self) -> None:
        """The configured PIN logs in right after ready; the user logs out; a PIN change ends its other tokens."""
        status, body = self.login("1001", PIN)
        self.assertEqual((status, body["role"]), (200, "user"))
        first = body["token"]
        self.assertEqual(http("POST", f"{self.base}/auth/logout", token=first)[0], 200)
        self.assertEqual(http("POST", f"{self.base}/auth/logout", token=first)[0], 401)
        second = self.login("1001", PIN)[1]["token"]
        admin = self.login("admin", self.password)[1]["token"]
        self.assertEqual(http("PATCH", f"{self.base}/extensions/1001", {"pin": "739146"}, admin)[0], 200)
        self.assertEqual(http("POST", f"{self.base}/auth/logout", token=second)[0], 401)
        self.assertEqual(self.login("1001", PIN)[0], 401)
        self.assertEqual(self.login("1001", "739146")[0], 200)
        self.assertEqual(http("DELETE", f"{self.base}/extensions/1002", token=admin)[0], 204)
        self.assertEqual(self.api.get("/status")["counts"]["extensions"], 1)

    def test_user_pins_do_not_lock_the_admin(self) -> None:
        """Five wrong PINs for 1001 from 127.0.0.1 lock 1001, one warning line; the admin still logs in from there."""
        for _ in range(5):
            self.assertEqual(self.login("1001", "000000")[0], 401)
        self.assertEqual(self.login("1001", PIN)[0], 429)
        self.daemon.wait_for(re.compile(r"API login lockout: '1001' from 127\.0\.0\.1 locked out for 30 s"
                                        r" \(too many failures by user\)"), 10)
        self.assertEqual(self.login("admin", self.password)[0], 200)
