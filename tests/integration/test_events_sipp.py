"""
Integration tests: SIP event subscriptions (RFC 6665) for message waiting
(RFC 3842) against the real daemon.

The daemon loads a small feature from a site plugin directory written by
the test (``plugin_dirs:``): it serves ``message-summary`` with 2 new and 1
old messages, adds a new message shortly after each subscription starts, and
every half second reports a change for the extensions its ``ping`` option
names.

- SIPp (``tests/sipp/uac_subscribe_mwi.xml``) subscribes with digest
  authentication, checks the immediate NOTIFY and the one after the change,
  and unsubscribes; SIPp exits 0 only when every step happened in order.
- A phone made of one UDP socket registers and, without subscribing, gets
  unsolicited NOTIFY for its mailbox.

Everything is bounded: SIPp runs with ``-timeout``, the socket reads with a
deadline, and the log is waited on, never slept on.
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import textwrap
import time
from pathlib import Path

import pytest

from twisted.trial.unittest import SynchronousTestCase

from pbx.sip.auth import compute_ha1, compute_response
from pbx.sip.ids import new_branch
from pbx.sip.message import Request, Response, make_response, parse_message
from pbx.sip.message_summary import parse_message_summary

from support.daemon import (
    Daemon,
    admin_password,
    free_port,
    loopback_config,
    require_binary,
    strong_password,
)
from support.paths import SCENARIOS

pytestmark = pytest.mark.integration

SCENARIO = SCENARIOS / "uac_subscribe_mwi.xml"
DOMAIN = "pbx.test"

MAILBOX_PLUGIN = '''
from zope.interface import implementer

from twisted.application.service import Service
from twisted.internet.defer import succeed
from twisted.internet.task import LoopingCall
from twisted.plugin import IPlugin

from pbx.interfaces import IEventPackage, IFeature
from pbx.sip.message_summary import message_summary_body


@implementer(IEventPackage)
class FixedMailboxes:
    event = "message-summary"
    content_type = "application/simple-message-summary"
    unsolicited = True

    def __init__(self, pbx):
        self.pbx = pbx
        self.counts = {}

    def authorize(self, subscriber, resource):
        if subscriber != resource:
            return False
        # A new message shortly after each subscription starts.
        self.pbx.clock.callLater(0.3, self.deliver, resource)
        return True

    def deliver(self, resource):
        new, old = self.counts.get(resource, (2, 1))
        self.counts[resource] = (new + 1, old)
        self.pbx.notify(self.event, resource)

    def state(self, resource):
        new, old = self.counts.get(resource, (2, 1))
        return succeed(message_summary_body(new > 0, new, old, "sip:*97@pbx.test"))


class MailboxService(Service):
    def __init__(self, pbx, ping):
        self.pbx = pbx
        self.ping = ping
        self.package = FixedMailboxes(pbx)
        self.loop = None

    def startService(self):
        super().startService()
        self.pbx.register_event_package(self.package)
        if self.ping:
            self.loop = LoopingCall(self.tick)
            self.loop.clock = self.pbx.clock
            self.loop.start(0.5, now=False)

    def tick(self):
        for resource in self.ping:
            self.pbx.notify(self.package.event, resource)

    def stopService(self):
        if self.loop is not None and self.loop.running:
            self.loop.stop()
        return super().stopService()


@implementer(IPlugin, IFeature)
class MailboxFixture:
    name = "mailbox_fixture"
    description = "Fixed message-summary state; a test feature."

    def parse_options(self, options):
        return [str(r) for r in options.get("ping", [])]

    def make_service(self, pbx, options):
        return MailboxService(pbx, options)


mailbox_fixture = MailboxFixture()
'''


class EventsIntegrationTests(SynchronousTestCase):
    """Subscriptions and unsolicited NOTIFY through the real daemon."""

    def setUp(self) -> None:
        self.workdir = os.path.abspath(self.mktemp())
        plugins = os.path.join(self.workdir, "plugins")
        os.makedirs(plugins)
        Path(plugins, "mailbox_fixture.py").write_text(textwrap.dedent(MAILBOX_PLUGIN))
        self.sip_port = free_port()
        self.passwords = {n: strong_password(n) for n in ("1001", "1002")}
        config = json.loads(loopback_config(
            api_port=free_port(), sip_port=self.sip_port, admin_password=admin_password(),
            extensions=self.passwords, digest_algorithms=["MD5"], domain=DOMAIN,
        ))
        config["plugin_dirs"] = [plugins]
        config["features"] = {"mailbox_fixture": {"ping": ["1002"]}}
        self.daemon = Daemon(self.workdir, json.dumps(config, indent=1))
        self.addCleanup(self.daemon.stop)
        self.daemon.start()

    def test_subscribe_notify_unsubscribe(self) -> None:
        """SIPp subscribes (401, then 200), gets the state and its change, and unsubscribes."""
        sipp = require_binary("sipp", "sip-tester")
        users = os.path.join(self.workdir, "users.csv")
        Path(users).write_text(
            f"SEQUENTIAL\n1001;[authentication username=1001 password={self.passwords['1001']}]\n"
        )
        command = [
            sipp, "-sf", str(SCENARIO), "-inf", users, "-m", "1", "-i", "127.0.0.1",
            "-p", str(free_port(socket.SOCK_DGRAM)), "-t", "u1", "-nostdin", "-nd",
            "-timeout", "30", "-timeout_error", "-trace_err", "-trace_msg",
            f"127.0.0.1:{self.sip_port}",
        ]
        result = subprocess.run(command, cwd=self.workdir, capture_output=True, text=True,
                                errors="replace", timeout=60, stdin=subprocess.DEVNULL)
        if result.returncode != 0:
            reports = sorted(Path(self.workdir).glob("uac_subscribe_mwi_*"))
            detail = "\n".join(f"--- {p.name}\n{p.read_text(errors='replace')[-4000:]}" for p in reports)
            self.fail(f"sipp exited {result.returncode}\n{result.stdout[-2000:]}\n{result.stderr[-2000:]}\n{detail}")
        self.daemon.wait_for(re.compile(r"SUBSCRIBE message-summary to 1001 from 1001 for 600s"), 10)
        self.assertEqual(self.daemon.tracebacks, [])

    def test_unsolicited_notify(self) -> None:
        """A registered phone that did not subscribe gets out-of-dialog NOTIFY with its mailbox."""
        phone = UDPPhone("1002", self.passwords["1002"], self.sip_port)
        self.addCleanup(phone.close)
        self.assertEqual(phone.register().status, 200)
        notify = phone.wait_for_request("NOTIFY", limit=10)
        self.assertEqual(str(notify.uri), phone.contact_uri)
        self.assertEqual(notify.headers.get("Event"), "message-summary")
        self.assertEqual(notify.headers.get("Subscription-State"), "active")
        self.assertEqual(notify.headers.get("Content-Type"), "application/simple-message-summary")
        self.assertIsNone(notify.to.tag)
        self.assertTrue(notify.from_.tag)
        summary = parse_message_summary(notify.body)
        self.assertEqual((summary.waiting, summary.voice, summary.account), (True, (2, 1), "sip:*97@pbx.test"))
        phone.respond(notify, 200)
        self.assertEqual(self.daemon.tracebacks, [])


class UDPPhone:
    """A minimal SIP phone on one UDP socket: REGISTER with digest, read requests, answer them."""

    def __init__(self, user: str, password: str, server_port: int) -> None:
        self.user = user
        self.password = password
        self.server = ("127.0.0.1", server_port)
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.contact_uri = f"sip:{user}@127.0.0.1:{self.port}"
        self.cseq = 0
        self.backlog: list[Request] = []

    def close(self) -> None:
        """Close the socket."""
        self.sock.close()

    def _register(self, authorization: str | None) -> Response:
        self.cseq += 1
        lines = [
            f"REGISTER sip:{DOMAIN} SIP/2.0",
            f"Via: SIP/2.0/UDP 127.0.0.1:{self.port};branch={new_branch()};rport",
            "Max-Forwards: 70",
            f"From: <sip:{self.user}@{DOMAIN}>;tag=udp-phone",
            f"To: <sip:{self.user}@{DOMAIN}>",
            f"Call-ID: reg-{self.port}@127.0.0.1",
            f"CSeq: {self.cseq} REGISTER",
            f"Contact: <{self.contact_uri}>",
            "Expires: 600",
            *([f"Authorization: {authorization}"] if authorization else []),
            "Content-Length: 0",
            "",
            "",
        ]
        self.sock.sendto("\r\n".join(lines).encode(), self.server)
        while True:
            message = self._read(5)
            if isinstance(message, Response) and message.cseq.number == self.cseq:
                return message
            if isinstance(message, Request):
                self.backlog.append(message)

    def register(self) -> Response:
        """REGISTER, answer the 401's challenge, return the final response."""
        challenge = self._register(None)
        assert challenge.status == 401, challenge.status
        match = re.search(r'nonce="([^"]+)"', challenge.headers.get("WWW-Authenticate") or "")
        assert match is not None
        uri = f"sip:{DOMAIN}"
        ha1 = compute_ha1(self.user, DOMAIN, self.password, "MD5")
        digest = compute_response(ha1, nonce=match.group(1), method="REGISTER", uri=uri, algorithm="MD5",
                                  qop="auth", nc="00000001", cnonce="1234abcd")
        return self._register(
            f'Digest username="{self.user}", realm="{DOMAIN}", nonce="{match.group(1)}", uri="{uri}", '
            f'response="{digest}", algorithm=MD5, qop=auth, nc=00000001, cnonce="1234abcd"'
        )

    def _read(self, limit: float) -> Request | Response:
        self.sock.settimeout(limit)
        data, _ = self.sock.recvfrom(65536)
        return parse_message(data)

    def wait_for_request(self, method: str, limit: float) -> Request:
        """The first ``method`` request to arrive within ``limit`` seconds."""
        deadline = time.monotonic() + limit
        while True:
            for request in self.backlog:
                if request.method == method:
                    self.backlog.remove(request)
                    return request
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"no {method} within {limit}s")
            try:
                message = self._read(remaining)
            except TimeoutError:
                continue
            if isinstance(message, Request):
                self.backlog.append(message)

    def respond(self, request: Request, status: int) -> None:
        """Answer ``request`` to where it came from (the server)."""
        self.sock.sendto(make_response(request, status).to_bytes(), self.server)
