"""
Integration tests: sipsak against the real daemon on loopback.

sipsak answers only MD5 and reads the first WWW-Authenticate, so the server
is told to offer MD5 first.  sipsak's exit status says what happened
(sipsak(1), RETURN VALUES): 0 a 200 arrived, 1 another final response,
2 a local error (it reports a refused authorisation this way), 3 no answer.

Each test gets its own daemon: failed logins count towards the per-address
lockout, so tests must not share one.
"""

from __future__ import annotations

import subprocess

import pytest

from twisted.trial.unittest import SynchronousTestCase

from support.daemon import (
    API,
    Daemon,
    admin_password,
    free_port,
    loopback_config,
    require_binary,
    strong_password,
    wait_until,
)

pytestmark = pytest.mark.integration

EXTENSION = "1001"
#: Upper bound for a binding to reach the API.
LIMIT = 10.0


class SipsakTests(SynchronousTestCase):
    """sipsak gets OPTIONS answered and registers with digest auth over UDP and TCP."""

    def setUp(self) -> None:
        self.sipsak = require_binary("sipsak", "sipsak")
        self.api_port = free_port()
        self.sip_port = free_port()
        self.password = strong_password(EXTENSION)
        admin = admin_password()
        self.daemon = Daemon(
            self.mktemp(),
            loopback_config(
                api_port=self.api_port,
                sip_port=self.sip_port,
                admin_password=admin,
                extensions={EXTENSION: self.password},
                digest_algorithms=["MD5", "SHA-256"],
            ),
        )
        self.addCleanup(self.daemon.stop)
        self.daemon.start()
        self.api = API(self.api_port, admin)

    def run_sipsak(self, *args: str) -> subprocess.CompletedProcess[str]:
        """Run sipsak with a time limit; its output goes into failure messages."""
        return subprocess.run(
            # -H: name loopback in Via and Contact rather than this host's
            # name, which may not resolve (sipsak then gives up).
            [self.sipsak, "-vv", "-H", "127.0.0.1", *args],
            capture_output=True,
            text=True,
            errors="replace",
            timeout=60,
            stdin=subprocess.DEVNULL,
        )

    def register(
        self, password: str, contact_port: int, transport: str
    ) -> subprocess.CompletedProcess[str]:
        """sipsak usrloc mode: one REGISTER of a contact for 120 s, with digest credentials."""
        return self.run_sipsak(
            "-E",
            transport,
            "-U",
            "-C",
            f"sip:{EXTENSION}@127.0.0.1:{contact_port}",
            "-u",
            EXTENSION,
            "-x",
            "120",
            "-a",
            password,
            "-s",
            f"sip:{EXTENSION}@127.0.0.1:{self.sip_port}",
            "-i",
        )

    def check_options(self, transport: str) -> None:
        """sipsak's OPTIONS over ``transport`` gets 200."""
        result = self.run_sipsak(
            "-E", transport, "-s", f"sip:pbx@127.0.0.1:{self.sip_port}"
        )
        self.assertEqual(result.returncode, 0, result.stdout + result.stderr)
        self.assertIn("SIP/2.0 200 OK", result.stdout)

    def test_options_udp(self) -> None:
        """OPTIONS over UDP is answered 200 without authentication."""
        self.check_options("udp")

    def test_options_tcp(self) -> None:
        """OPTIONS over TCP is answered 200 without authentication."""
        self.check_options("tcp")

    def check_register(self, transport: str) -> None:
        """A good REGISTER over ``transport`` exits 0 and its binding is listed as sent."""
        contact_port = free_port()
        result = self.register(self.password, contact_port, transport)
        self.assertEqual(result.returncode, 0, result.stdout + result.stderr)
        # Bindings reach the store (which the API reads) a moment after the 200.
        [binding] = wait_until(
            self.api.registrations, LIMIT, "the binding in /api/v1/registrations"
        )
        self.assertEqual(binding["extension"], EXTENSION)
        self.assertEqual(
            binding["contact"], f"sip:{EXTENSION}@127.0.0.1:{contact_port}"
        )
        self.assertEqual(binding["transport"], transport)
        self.assertTrue(binding["source"].startswith("127.0.0.1:"), binding)
        self.assertTrue(binding["user_agent"].startswith("sipsak"), binding)
        self.assertTrue(60 < binding["expires_in"] <= 120, binding)

    def test_register_udp(self) -> None:
        """A REGISTER over UDP with the right password gets 200 and the binding is listed."""
        self.check_register("udp")

    def test_register_tcp(self) -> None:
        """A REGISTER over TCP with the right password gets 200 and the binding is listed."""
        self.check_register("tcp")

    def check_wrong_password(self, transport: str) -> None:
        """A REGISTER over ``transport`` with a wrong password fails and binds nothing."""
        result = self.register(self.password + "x", free_port(), transport)
        output = result.stdout + result.stderr
        self.assertNotEqual(result.returncode, 0, output)
        # 3 would mean no answer at all: the server must answer (with a new challenge).
        self.assertNotEqual(result.returncode, 3, output)
        self.assertIn("401 Unauthorized", output)
        self.assertEqual(self.api.registrations(), [])
        # Binding changes reach the store in order, so once a later, good
        # registration is listed, a binding from the bad one would be too.
        good_port = free_port()
        self.assertEqual(
            self.register(self.password, good_port, transport).returncode, 0
        )
        listed = wait_until(self.api.registrations, LIMIT, "the later good binding")
        self.assertEqual(
            [b["contact"] for b in listed], [f"sip:{EXTENSION}@127.0.0.1:{good_port}"]
        )

    def test_wrong_password_udp(self) -> None:
        """A REGISTER over UDP with a wrong password is refused and binds nothing."""
        self.check_wrong_password("udp")

    def test_wrong_password_tcp(self) -> None:
        """A REGISTER over TCP with a wrong password is refused and binds nothing."""
        self.check_wrong_password("tcp")

    def test_md5_client_refused_by_sha256_only(self) -> None:
        """
        Challenged with SHA-256 only (what FIPS mode imposes), sipsak, which
        speaks MD5 alone, is answered but never registered.
        """
        api_port, sip_port = free_port(), free_port()
        admin = admin_password()
        daemon = Daemon(
            self.mktemp(),
            loopback_config(api_port=api_port, sip_port=sip_port, admin_password=admin,
                            extensions={EXTENSION: self.password}, digest_algorithms=["SHA-256"]),
        )
        self.addCleanup(daemon.stop)
        daemon.start()
        self.sip_port = sip_port
        result = self.register(self.password, free_port(), "udp")
        output = result.stdout + result.stderr
        self.assertNotIn(result.returncode, (0, 3), output)
        self.assertIn("algorithm=SHA-256", output)
        self.assertNotIn("algorithm=MD5", output)
        self.assertEqual(API(api_port, admin).registrations(), [])
