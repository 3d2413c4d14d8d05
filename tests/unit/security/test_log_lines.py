"""Tests for :mod:`pbx.security.log_lines`: the security log's lines and what they let through."""

from __future__ import annotations

import re
import time

from twisted.trial.unittest import SynchronousTestCase

from pbx.security.log_lines import MAX_VALUE, Remote, ban_line, clean, failed_login_line

WHEN = 1_736_935_425.5
PID = 4242
PHONE = Remote("udp", "192.0.2.7", 5062)

# The stock fail2ban ``asterisk`` filter (Debian fail2ban 1.0.2,
# filter.d/asterisk.conf): its prefregex after the date, and the failregex
# for security events, with <HOST> narrowed to what an address field holds.
PREFIX = re.compile(
    r"^\[[^\]]+\] (?:NOTICE|SECURITY|WARNING)(?:\s*\[\d+\]):?(?:\[C-[\da-f]*\])?:? [^:]+:\d*"
    r"(?:(?: in)? [^:]+:)? (?P<content>.+)$"
)
FAILREGEX = re.compile(
    r'^SecurityEvent="(?:FailedACL|InvalidAccountID|ChallengeResponseFailed|InvalidPassword)"'
    r'(?:(?:,(?!RemoteAddress=)\w+="[^"]*")*|.*?),RemoteAddress="IPV[46]/[^/"]+/(?P<host>[^/"]+)/\d+"'
    r'(?:,(?!RemoteAddress=)\w+="[^"]*")*$'
)

#: User names crafted to end the line, or to put another address where fail2ban looks.
CRAFTED = [
    "1001\r\n[2025-01-15 10:23:45] SECURITY[1] pbx: SecurityEvent=\"InvalidPassword\","
    "RemoteAddress=\"IPV4/UDP/203.0.113.9/5060\"",
    '1001",RemoteAddress="IPV4/UDP/203.0.113.9/5060",X="',
    "1001' failed for '203.0.113.9:5060' - Wrong password",
    '1001\\",RemoteAddress=\\"IPV4/UDP/203.0.113.9/5060',
    "1001\u2028RemoteAddress=\"IPV4/UDP/203.0.113.9/5060\"",
    "a: b: RemoteAddress=\"IPV4/UDP/203.0.113.9/5060\"",
]


def host_seen(line: str) -> str | None:
    """The address the stock filter finds in ``line``, or None."""
    prefix = PREFIX.match(line)
    if prefix is None:
        return None
    found = FAILREGEX.match(prefix["content"])
    return None if found is None else found["host"]


class LineTests(SynchronousTestCase):
    """Each kind of line, in the shape the stock filter reads."""

    def test_wrong_password(self) -> None:
        """A wrong password is InvalidPassword, with the local date, pid, account, address and method."""
        line = failed_login_line(WHEN, PID, "SIP", "1001", PHONE, True, "REGISTER")
        date = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(WHEN))
        self.assertTrue(line.startswith(f"[{date}] SECURITY[4242] pbx: SecurityEvent=\"InvalidPassword\",EventTV=\""))
        self.assertTrue(line.endswith(
            ',Severity="Error",Service="SIP",EventVersion="1",AccountID="1001",'
            'RemoteAddress="IPV4/UDP/192.0.2.7/5062",Method="REGISTER"'
        ))
        self.assertEqual(host_seen(line), "192.0.2.7")

    def test_unknown_user(self) -> None:
        """An account that does not exist is InvalidAccountID; an API login has no method."""
        line = failed_login_line(WHEN, PID, "API", "nobody", Remote("TCP", "192.0.2.8", 40000), False)
        self.assertIn('SecurityEvent="InvalidAccountID"', line)
        self.assertIn('Service="API"', line)
        self.assertNotIn("Method=", line)
        self.assertEqual(host_seen(line), "192.0.2.8")

    def test_ipv6(self) -> None:
        """An IPv6 source is written as IPV6 without brackets."""
        line = failed_login_line(WHEN, PID, "SIP", "1001", Remote("tls", "2001:db8::7", 5061), True)
        self.assertIn('RemoteAddress="IPV6/TLS/2001:db8::7/5061"', line)
        self.assertEqual(host_seen(line), "2001:db8::7")

    def test_ban(self) -> None:
        """A ban is a FailedACL event naming the reason, its length and the how-many-th ban."""
        line = ban_line(WHEN, PID, "192.0.2.9", "unknown user", 120.0, 2)
        self.assertIn('SecurityEvent="FailedACL"', line)
        self.assertTrue(line.endswith(
            'RemoteAddress="IPV4/ANY/192.0.2.9/0",ACLName="ban",Reason="unknown user",Duration="120",Strikes="2"'
        ))
        self.assertEqual(host_seen(line), "192.0.2.9")


class CleanTests(SynchronousTestCase):
    """Values from the network cannot forge a line."""

    def test_escapes(self) -> None:
        """Quotes, backslash, percent, controls and non-ASCII are percent-escaped; the rest is kept."""
        self.assertEqual(clean("1001"), "1001")
        self.assertEqual(clean("a\"b'c\\d%e"), "a%22b%27c%5Cd%25e")
        self.assertEqual(clean("a\r\nb\x00\x7f"), "a%0D%0Ab%00%7F")
        self.assertEqual(clean("é\u2028\x85"), "%C3%A9%E2%80%A8%C2%85")
        self.assertEqual(clean("x@y.z_1-2 ok"), "x@y.z_1-2 ok")

    def test_length_capped(self) -> None:
        """Only the first MAX_VALUE characters are kept."""
        self.assertEqual(clean("9" * 1000), "9" * MAX_VALUE)

    def test_crafted_user_names(self) -> None:
        """Each crafted name gives one line, its quotes balanced, and fail2ban finds the real source."""
        for account in CRAFTED:
            for known in (True, False):
                line = failed_login_line(WHEN, PID, "SIP", account, PHONE, known, "REGISTER")
                self.assertEqual(line.splitlines(), [line], account)
                self.assertNotIn("'", line)
                self.assertEqual(host_seen(line), "192.0.2.7", account)

    def test_crafted_method(self) -> None:
        """A method is cleaned like a user name."""
        line = failed_login_line(WHEN, PID, "SIP", "1001", PHONE, True, 'X",RemoteAddress="IPV4/UDP/203.0.113.9/1')
        self.assertEqual(host_seen(line), "192.0.2.7")
