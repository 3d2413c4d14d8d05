"""
Integration tests: the daemon with a 1,024 open files limit against
thousands of TCP connections that stay idle or send half a message.

Before the limits, 3,000 idle connections took every descriptor: the API
reset its connections, new SIP clients were dropped and thousands of error
lines were logged; 2,000 connections each holding 60 KB of an unfinished
message added 120 MB.  Now the connections beyond ``sip.connections``'s caps
are closed as they are accepted, or make room by closing the oldest ones
that never sent a message; what unfinished messages may hold is budgeted.

The connections come from many loopback addresses (all of 127/8 is
loopback) so that the per-address cap is not what stops them.  The test
process raises its own open files limit to hold them.
"""

from __future__ import annotations

import json
import re
import resource
import socket
import subprocess

import pytest

from twisted.trial.unittest import SynchronousTestCase

from support.connections import (
    SOURCES,
    accept_queue,
    closed_by_server,
    descriptors,
    open_connections,
)
from support.daemon import (
    API,
    Daemon,
    admin_password,
    free_port,
    loopback_config,
    options_ping,
    require_binary,
    strong_password,
    wait_until,
)

pytestmark = pytest.mark.integration

NOFILE = 1024
IDLE_CONNECTIONS = 3000
HALF_SENT_CONNECTIONS = 2000
HALF_SENT = 60 * 1024
#: The daemon's first-message timeout here, shorter than the default.
FIRST_MESSAGE_TIMEOUT = 5
EXTENSION = "1001"
#: How the daemon states its limits at start.
BUDGET = re.compile(
    r"open files limit (\d+) .*SIP connections (\d+) \((\d+) per address\), API connections (\d+)"
)
#: Lines the daemon writes about refused or closed connections (throttled).
ABOUT_CONNECTIONS = re.compile(r"SIP connections|Could not accept|Too many open files|EMFILE")
#: Connections opened at once before waiting for the daemon to accept them.
BATCH = 250
#: What a peer that never reads may try to send; without backpressure all of
#: it is read and answered into an ever-growing write buffer.
NEVER_READ = 64 * 1024 * 1024
#: Peak RSS growth allowed for it.
NEVER_READ_GROWTH_LIMIT_KIB = 20 * 1024
#: Peak RSS growth allowed for 2,000 connections of 60 KB each (118 MB unbounded).
RSS_GROWTH_LIMIT_KIB = 40 * 1024


class ConnectionLimitTests(SynchronousTestCase):
    """The daemon at 1,024 descriptors stays reachable however many connections sit on it."""

    def setUp(self) -> None:
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        need = IDLE_CONNECTIONS + 256
        if hard != resource.RLIM_INFINITY and hard < need:
            self.skipTest(f"this process may open only {hard} files; the test needs {need}")
        if soft != resource.RLIM_INFINITY and soft < need:
            resource.setrlimit(resource.RLIMIT_NOFILE, (need, hard))
            self.addCleanup(resource.setrlimit, resource.RLIMIT_NOFILE, (soft, hard))
        self.sip_port = free_port()
        self.api_port = free_port()
        self.tls_port = free_port()
        self.password = strong_password(EXTENSION)
        admin = admin_password()
        config = json.loads(loopback_config(
            api_port=self.api_port, sip_port=self.sip_port, admin_password=admin,
            extensions={EXTENSION: self.password}, digest_algorithms=["MD5"], tls_port=self.tls_port,
        ))
        config["sip"]["connections"] = {"first_message_timeout": FIRST_MESSAGE_TIMEOUT}
        # Connection caps are under test, not the per-source request limits:
        # the peer that never reads sends far more requests than those allow.
        config["security"] = {"allow": ["127.0.0.1"]}
        self.daemon = Daemon(self.mktemp(), json.dumps(config), nofile=NOFILE)
        self.addCleanup(self.daemon.stop)
        self.daemon.start()
        self.api = API(self.api_port, admin)
        [budget] = [m for line in self.daemon.output if (m := BUDGET.search(line))]
        self.assertEqual(int(budget.group(1)), NOFILE)
        self.max_total, self.per_source = int(budget.group(2)), int(budget.group(3))
        self.api_total = int(budget.group(4))
        # The flood is spread so that the total cap, not the per-address one, binds.
        self.assertLess(IDLE_CONNECTIONS // len(SOURCES), self.per_source)
        self.assertLess(self.max_total, NOFILE * 7 // 10)
        self.ready_lines = len(self.daemon.output)
        self.sockets: list[socket.socket] = []
        self.addCleanup(lambda: [s.close() for s in self.sockets])

    def fds(self) -> int:
        """Descriptors the daemon has open."""
        return descriptors(self.daemon.pid)

    def flood(self, count: int) -> int:
        """
        Open ``count`` idle connections, :data:`BATCH` at a time, each batch
        once the daemon has accepted the last (so that none is lost in a full
        accept queue and all reach it).

        :returns: the most descriptors the daemon held meanwhile.
        """
        peak = self.fds()
        for first in range(0, count, BATCH):
            self.sockets += open_connections(self.sip_port, min(BATCH, count - first), first)
            wait_until(lambda: accept_queue(self.sip_port) == 0, 30, "the daemon to accept a batch")
            peak = max(peak, self.fds())
        return peak

    def new_lines(self) -> list[str]:
        """The daemon's output since it was ready."""
        return list(self.daemon.output)[self.ready_lines:]

    def register_over_tcp(self) -> subprocess.CompletedProcess[str]:
        """sipsak registers 1001 over TCP from 127.0.0.1 (not one of the flood's addresses)."""
        sipsak = require_binary("sipsak", "sipsak")
        contact = f"sip:{EXTENSION}@127.0.0.1:{free_port()}"
        return subprocess.run(
            [sipsak, "-vv", "-H", "127.0.0.1", "-E", "tcp", "-U", "-C", contact, "-u", EXTENSION,
             "-x", "120", "-a", self.password, "-s", f"sip:{EXTENSION}@127.0.0.1:{self.sip_port}", "-i"],
            capture_output=True, text=True, errors="replace", timeout=60, stdin=subprocess.DEVNULL,
        )

    def test_idle_connections(self) -> None:
        """3,000 idle connections: the daemon holds at most its cap, the API answers, a TCP client registers, few lines are logged."""
        baseline = self.fds()
        peak = self.flood(IDLE_CONNECTIONS)
        # Evicted connections' descriptors are freed a moment later; at most max_total // 8 wait.
        self.assertLessEqual(peak - baseline, self.max_total + self.max_total // 8)
        wait_until(lambda: self.fds() - baseline <= self.max_total, 10, f"at most {self.max_total} connections held")
        self.assertGreaterEqual(len(closed_by_server(self.sockets)), IDLE_CONNECTIONS - self.max_total)
        self.assertEqual(self.api.registrations(), [])
        result = self.register_over_tcp()
        self.assertEqual(result.returncode, 0, result.stdout + result.stderr)
        [binding] = wait_until(self.api.registrations, 10, "the binding in /api/v1/registrations")
        self.assertEqual(binding["transport"], "tcp")
        # The idle connections are closed once their first-message time is up.
        wait_until(lambda: len(closed_by_server(self.sockets)) == IDLE_CONNECTIONS,
                   FIRST_MESSAGE_TIMEOUT + 30, "every idle connection closed")
        lines = self.new_lines()
        about = [line for line in lines if ABOUT_CONNECTIONS.search(line)]
        self.assertTrue(any("slots taken" in line for line in about), about)
        self.assertLessEqual(len(about), 6, "\n".join(about))
        self.assertFalse([line for line in about if re.search("accept|Too many|EMFILE", line)], about)
        self.assertLess(len(lines), 60, "\n".join(lines[-60:]))
        self.assertEqual(self.daemon.tracebacks, [])
        print(f"\n{IDLE_CONNECTIONS} idle connections: the daemon held at most {peak - baseline} more descriptors")

    def test_half_sent_messages(self) -> None:
        """2,000 connections each sending 60 KB of an unfinished message grow the peak RSS far less than 120 MB."""
        before = self.daemon.rss_kib()
        head = b"INVITE sip:1001@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/TCP 127.0.0.1;branch=z9hG4bK-h\r\nX-Pad: "
        partial = head + b"a" * (HALF_SENT - len(head))
        for i in range(HALF_SENT_CONNECTIONS):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            self.sockets.append(s)
            s.settimeout(10)
            s.bind((SOURCES[i % len(SOURCES)], 0))
            try:
                s.connect(("127.0.0.1", self.sip_port))
                s.sendall(partial)
            except OSError:
                continue  # closed by the server as it came: counted below like the others
        wait_until(lambda: accept_queue(self.sip_port) == 0, 30, "the daemon to accept every connection")
        options_ping(self.sip_port)
        growth = self.daemon.rss_kib("VmHWM") - before
        self.assertLess(growth, RSS_GROWTH_LIMIT_KIB, f"peak RSS grew by {growth} KiB")
        about = [line for line in self.new_lines() if ABOUT_CONNECTIONS.search(line)]
        self.assertTrue(any("unfinished messages" in line for line in about), about)
        self.assertLessEqual(len(about), 6, "\n".join(about))
        self.assertEqual(self.daemon.tracebacks, [])
        print(f"\npeak RSS growth {growth} KiB for {HALF_SENT_CONNECTIONS} x {HALF_SENT} octets")

    def test_peer_that_never_reads(self) -> None:
        """A peer sending requests but reading no answers is no longer read once our writes wait: little memory grows."""
        before = self.daemon.rss_kib()
        batch = b"".join(
            (f"OPTIONS sip:pbx@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/TCP 127.0.0.1:5099;branch=z9hG4bK-nr{n}\r\n"
             f"From: <sip:x@127.0.0.1>;tag=nr\r\nTo: <sip:pbx@127.0.0.1>\r\nCall-ID: nr-{n}@127.0.0.1\r\n"
             "CSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n").encode()
            for n in range(100)
        )
        s = socket.create_connection(("127.0.0.1", self.sip_port), timeout=10)
        self.sockets.append(s)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        s.settimeout(3)  # the daemon stops reading: sending then blocks
        sent = 0
        try:
            while sent < NEVER_READ:
                s.sendall(batch)
                sent += len(batch)
        except TimeoutError:
            pass
        self.assertLess(sent, NEVER_READ)
        options_ping(self.sip_port)
        growth = self.daemon.rss_kib("VmHWM") - before
        self.assertLess(growth, NEVER_READ_GROWTH_LIMIT_KIB, f"peak RSS grew by {growth} KiB")
        self.assertEqual(self.daemon.tracebacks, [])
        print(f"\nsent {sent} octets before the daemon stopped reading; peak RSS growth {growth} KiB")

    def test_idle_api_connections(self) -> None:
        """1,000 idle API connections: the daemon holds at most its API cap and the administrator still gets in."""
        baseline = self.fds()
        self.sockets = open_connections(self.api_port, 1000)
        wait_until(lambda: accept_queue(self.api_port) == 0, 30, "the daemon to accept every API connection")
        self.assertLessEqual(self.fds() - baseline, self.api_total + self.api_total // 8 + 8)
        self.assertEqual(self.api.registrations(), [])
        lines = [line for line in self.new_lines() if "API connections" in line]
        self.assertTrue(lines)
        self.assertLessEqual(len(lines), 3, "\n".join(lines))
        self.assertEqual(self.daemon.tracebacks, [])

    def test_tls_without_handshake(self) -> None:
        """Connections to the TLS port that never start a handshake are held to the cap, then closed after the first-message timeout."""
        baseline = self.fds()
        count = self.max_total + 200
        self.sockets = open_connections(self.tls_port, count)
        wait_until(lambda: accept_queue(self.tls_port) == 0, 30, "the daemon to accept every TLS connection")
        wait_until(lambda: self.fds() - baseline <= self.max_total, 10, f"at most {self.max_total} connections held")
        wait_until(lambda: len(closed_by_server(self.sockets)) == count,
                   FIRST_MESSAGE_TIMEOUT + 30, "every connection without a handshake closed")
        about = [line for line in self.new_lines() if ABOUT_CONNECTIONS.search(line)]
        self.assertTrue(any("slots taken" in line for line in about), about)
        self.assertTrue(any("first_message_timeout" in line for line in about), about)
        self.assertEqual(self.daemon.tracebacks, [])
