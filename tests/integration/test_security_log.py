"""
Integration tests: the security log (``security.log``) read by fail2ban's
stock ``asterisk`` filter, and a ban closing the banned source's SIP
connections.

The daemon runs on loopback with the security log on; sipsak fails digest
authentication (a wrong password, an unknown user), the API gets a failed
login with a user name crafted to forge a line, and a SIP scanner's request
gets 127.0.0.1 banned.  ``fail2ban-regex`` (Debian package fail2ban) then
reads the file with ``/etc/fail2ban/filter.d/asterisk.conf`` and must match
every line, each for 127.0.0.1.
"""

from __future__ import annotations

import os
import re
import secrets
import socket
import subprocess

import pytest

from twisted.trial.unittest import SynchronousTestCase

from support.daemon import (
    Daemon,
    admin_password,
    free_port,
    http,
    loopback_config,
    require_binary,
    strong_password,
    wait_until,
)

pytestmark = pytest.mark.integration

EXTENSION = "1001"
FILTER = "/etc/fail2ban/filter.d/asterisk.conf"
#: Upper bound for lines to reach the file (they are written in a worker thread).
LIMIT = 10.0
#: An API user name that would name another address if it were written as sent.  (The API
#: refuses control characters such as a line end before it looks at a login.)
CRAFTED = 'x",RemoteAddress="IPV4/TCP/203.0.113.9/1",A="'

SUMMARY = re.compile(r"Lines: (\d+) lines, (\d+) ignored, (\d+) matched, (\d+) missed")


def fail2ban_regex() -> str:
    """fail2ban-regex's path, and its stock asterisk filter (skip, or fail in CI, without them)."""
    path = require_binary("fail2ban-regex", "fail2ban")
    if not os.path.exists(FILTER):
        raise AssertionError(f"{FILTER} is missing though fail2ban-regex is installed")
    return path


class SecurityLogTests(SynchronousTestCase):
    """Failed logins and bans reach the security log in a shape fail2ban's stock filter reads."""

    def setUp(self) -> None:
        self.fail2ban_regex = fail2ban_regex()
        self.sipsak = require_binary("sipsak", "sipsak")
        self.api_port = free_port()
        self.sip_port = free_port()
        self.password = strong_password(EXTENSION)
        workdir = os.path.abspath(self.mktemp())
        self.log_path = os.path.join(workdir, "security.log")
        self.daemon = Daemon(
            workdir,
            loopback_config(
                api_port=self.api_port, sip_port=self.sip_port, admin_password=admin_password(),
                extensions={EXTENSION: self.password}, digest_algorithms=["MD5", "SHA-256"],
                security={"log": "security.log"},  # beside the config file
            ),
        )
        self.addCleanup(self.daemon.stop)
        self.daemon.start()

    def lines(self) -> list[str]:
        """The security log's lines so far."""
        with open(self.log_path, encoding="utf-8") as f:
            return f.read().splitlines()

    def wait_lines(self, count: int) -> list[str]:
        """Wait until the log holds ``count`` lines; they must not pass it."""
        def enough() -> list[str] | None:
            lines = self.lines()
            return lines if len(lines) >= count else None

        lines = wait_until(enough, LIMIT, f"{count} lines in the log")
        self.assertEqual(len(lines), count, lines)
        return lines

    def register(self, user: str, password: str) -> subprocess.CompletedProcess[str]:
        """One sipsak REGISTER over UDP as ``user`` with ``password`` (it answers the 401 once)."""
        return subprocess.run(
            [self.sipsak, "-vv", "-H", "127.0.0.1", "-E", "udp", "-U", "-C",
             f"sip:{user}@127.0.0.1:{free_port()}", "-u", user, "-x", "120", "-a", password,
             "-s", f"sip:{user}@127.0.0.1:{self.sip_port}", "-i"],
            capture_output=True, text=True, errors="replace", timeout=60, stdin=subprocess.DEVNULL,
        )

    def fail2ban(self, *options: str) -> str:
        """fail2ban-regex's output for the log and the stock filter."""
        result = subprocess.run(
            [self.fail2ban_regex, *options, self.log_path, FILTER],
            capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL,
        )
        self.assertEqual(result.returncode, 0, result.stdout + result.stderr)
        return result.stdout

    def assert_fail2ban_matches(self, count: int) -> None:
        """fail2ban-regex matches all ``count`` lines, each for 127.0.0.1, and misses none."""
        summary = SUMMARY.search(self.fail2ban())
        assert summary is not None
        self.assertEqual(tuple(int(n) for n in summary.groups()), (count, 0, count, 0))
        self.assertEqual(self.fail2ban("--out", "ip").split(), ["127.0.0.1"] * count)

    def test_failed_logins_match_the_stock_filter(self) -> None:
        """A wrong password, an unknown user and a crafted API login give three lines fail2ban reads as 127.0.0.1."""
        wrong = self.register(EXTENSION, self.password + "x")
        self.assertIn("401 Unauthorized", wrong.stdout + wrong.stderr)
        self.wait_lines(1)
        unknown = self.register("1999", strong_password("1999"))
        self.assertIn("401 Unauthorized", unknown.stdout + unknown.stderr)
        self.wait_lines(2)
        status, _ = http("POST", f"http://127.0.0.1:{self.api_port}/api/v1/auth/login",
                         {"username": CRAFTED, "password": secrets.token_hex(8)})
        self.assertEqual(status, 401)
        first, second, third = self.wait_lines(3)
        self.assertIn('SecurityEvent="InvalidPassword"', first)
        self.assertIn('Service="SIP",EventVersion="1",AccountID="1001",RemoteAddress="IPV4/UDP/127.0.0.1/', first)
        self.assertIn('SecurityEvent="InvalidAccountID"', second)
        self.assertIn('AccountID="1999"', second)
        self.assertIn('SecurityEvent="InvalidAccountID"', third)
        self.assertIn('Service="API"', third)
        self.assertIn('AccountID="x%22,RemoteAddress=%22IPV4/TCP/203.0.113.9/1%22,A=%22"', third)
        self.assert_fail2ban_matches(3)

    def test_ban_closes_connections_and_is_logged(self) -> None:
        """A ban closes the source's open TCP connection, refuses its new ones, and is a line fail2ban reads."""
        with socket.create_connection(("127.0.0.1", self.sip_port), timeout=LIMIT) as stream:
            port = stream.getsockname()[1]
            stream.sendall(options("tcp", port, self.sip_port))
            self.assertIn(b"SIP/2.0 200 OK", stream.recv(65536))
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
                udp.bind(("127.0.0.1", 0))
                udp.sendto(options("udp", udp.getsockname()[1], self.sip_port, agent="friendly-scanner"),
                           ("127.0.0.1", self.sip_port))
            self.daemon.wait_for(re.compile(r"closed 1 SIP connection\(s\) of banned 127\.0\.0\.1"), LIMIT)
            self.assertEqual(read_to_end(stream), b"")
        with socket.create_connection(("127.0.0.1", self.sip_port), timeout=LIMIT) as refused:
            self.assertEqual(read_to_end(refused), b"")
        [line] = self.wait_lines(1)
        self.assertIn('SecurityEvent="FailedACL"', line)
        self.assertIn('RemoteAddress="IPV4/ANY/127.0.0.1/0",ACLName="ban",Reason="scanner"', line)
        self.assert_fail2ban_matches(1)


def options(transport: str, port: int, sip_port: int, agent: str = "probe") -> bytes:
    """An OPTIONS request from 127.0.0.1:``port`` over ``transport``, with User-Agent ``agent``."""
    tag = secrets.token_hex(6)
    return (
        f"OPTIONS sip:pbx@127.0.0.1:{sip_port} SIP/2.0\r\n"
        f"Via: SIP/2.0/{transport.upper()} 127.0.0.1:{port};branch=z9hG4bK-{tag}\r\n"
        f"From: <sip:probe@127.0.0.1>;tag={tag}\r\nTo: <sip:pbx@127.0.0.1>\r\n"
        f"Call-ID: {tag}@127.0.0.1\r\nCSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\n"
        f"User-Agent: {agent}\r\nContent-Length: 0\r\n\r\n"
    ).encode()


def read_to_end(stream: socket.socket) -> bytes:
    """What the server still sends before it closes the connection (an abort reads as the end)."""
    received = b""
    try:
        while chunk := stream.recv(65536):
            received += chunk
    except ConnectionResetError:
        pass
    return received
