"""
Tests for :mod:`pbx.service`: the PBX's service tree, its startup and its
shutdown, on a fake reactor and an in-memory store.
"""

from __future__ import annotations

import os
from typing import Any

from attrs import define

from zope.interface import implementer
from zope.interface.verify import verifyObject

from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.error import CannotListenError
from twisted.internet.interfaces import IStreamServerEndpoint
from twisted.logger import Logger, LogPublisher
from twisted.trial.unittest import SynchronousTestCase

from pbx import service as service_module
from pbx.api.limits import LimitedFactory
from pbx.config import parse_config
from pbx.errors import StartupError
from pbx.interfaces import IStartupReport
from pbx.security.passwords import hash_password, verify_password
from pbx.service import APIListener, PBXService
from pbx.testing import FakeUDPPort, FakeUDPReactor, MemoryStore


class BusyUDPReactor(FakeUDPReactor):
    """A reactor whose UDP ports are all taken."""

    def listenUDP(self, port: int, protocol: Any, interface: str = "", maxPacketSize: int = 8192) -> Any:  # type: ignore[override]  # noqa: N802, N803
        """Fail as a busy port does."""
        raise CannotListenError(interface, port, OSError("Address already in use"))


@define
class StubPort:
    """A listening port that records being stopped."""

    stopped: bool = False

    def getHost(self) -> Any:  # noqa: N802 - twisted API
        """Where it listens."""
        from twisted.internet.address import IPv4Address

        return IPv4Address("TCP", "127.0.0.1", 8080)

    def stopListening(self) -> Deferred[None]:  # noqa: N802 - twisted API
        """Stop."""
        self.stopped = True
        return succeed(None)


@implementer(IStreamServerEndpoint)
@define
class StubEndpoint:
    """An endpoint that listens at once on a :class:`StubPort`, or fails."""

    port: StubPort
    error: Exception | None = None

    def listen(self, factory: Any) -> Deferred[StubPort]:
        """Listen, or fail with ``error``."""
        return fail(self.error) if self.error is not None else succeed(self.port)


@implementer(IStartupReport)
@define
class RecordingReport:
    """An IStartupReport that records what it is told."""

    told: list[str] = []

    def starting(self) -> None:
        """Record."""
        self.told.append("starting")

    def started(self) -> None:
        """Record."""
        self.told.append("started")

    def failed(self, problem: str) -> None:
        """Record the problem."""
        self.told.append(f"failed: {problem}")


CREDENTIALS = (
    "api: {admins: [{username: admin}]}\n"
    "extensions: {'1001': {name: One}}\n"
)


class APIListenerTests(SynchronousTestCase):
    """The HTTP API's port as a service."""

    def test_listen_and_stop(self) -> None:
        """Starting listens and names the listener; stopping closes the port."""
        port = StubPort()
        listener = APIListener(StubEndpoint(port), None, "tcp:8080")  # type: ignore[arg-type]
        listener.startService()
        self.assertEqual(self.successResultOf(listener.listening()), "http:127.0.0.1:8080")
        self.successResultOf(listener.stopService())
        self.assertTrue(port.stopped)

    def test_failure_names_the_setting(self) -> None:
        """A port that cannot open fails with a StartupError naming api.listen."""
        error = CannotListenError("", 8080, OSError("Address already in use"))
        listener = APIListener(StubEndpoint(StubPort(), error), None, "tcp:8080")  # type: ignore[arg-type]
        listener.startService()
        failure = self.failureResultOf(listener.listening(), StartupError)
        self.assertTrue(str(failure.value).startswith("api.listen tcp:8080: "), str(failure.value))
        self.successResultOf(listener.stopService())


class PBXServiceTests(SynchronousTestCase):
    """Startup order, the named listeners, and shutdown."""

    def setUp(self) -> None:
        self.store = MemoryStore()
        self.state_dir = os.path.abspath(self.mktemp())
        # What reaches twistd's log (log.level filters it while the PBX runs).
        self.published: list[dict[str, Any]] = []
        self.publisher = LogPublisher(self.published.append)
        self.events: list[dict[str, Any]] = []
        self.patch(service_module, "open_store", lambda url, reactor: self.store)
        self.patch(service_module, "tune_garbage_collector", lambda: None)
        # The process's own open files limit is left alone.
        self.patch(service_module, "raise_descriptor_limit", lambda: (1024, 2048, 4096))
        self.patch(PBXService, "log", Logger(observer=self.events.append))
        # The PBX hashes in its thread pool; here at once and cheaply.
        self.patch(PBXService, "hash_secret", lambda _, secret: succeed(hash_password(secret, iterations=1000)))

    def make(self, reactor: FakeUDPReactor, extra: str = "") -> PBXService:
        """A PBX with two SIP listeners and the API on ``reactor``, not started."""
        config = parse_config(
            f"state_dir: {self.state_dir}\n"
            "sip: {listen: [udp:5060:interface=127.0.0.1, tcp:5070:interface=127.0.0.1]}\n" + extra
        )
        self.report = RecordingReport([])
        return PBXService(config, reactor, codecs={}, report=self.report, log_publisher=self.publisher)

    def start(self, reactor: FakeUDPReactor, extra: str = "") -> PBXService:
        """Start a PBX made by :meth:`make`."""
        pbx = self.make(reactor, extra)
        pbx.startService()
        return pbx

    def logged(self, text: str) -> list[dict[str, Any]]:
        """The log events whose format holds ``text``."""
        return [e for e in self.events if text in e["log_format"]]

    def test_listeners_are_named_children(self) -> None:
        """Every listener is a named child, SIP in config order then the API, all in the ready line."""
        pbx = self.start(FakeUDPReactor())
        self.successResultOf(pbx.ready)
        self.assertEqual([child.name for child in pbx], ["sip.listen[0]", "sip.listen[1]", "api.listen"])
        self.assertEqual(pbx.listeners, ["sip:udp:127.0.0.1:5060", "sip:tcp:0.0.0.0:5070", "http:0.0.0.0:8080"])
        [ready] = [e for e in self.events if e["log_format"].startswith("pbx ready")]
        self.assertEqual(ready["listeners"], "sip:udp:127.0.0.1:5060 sip:tcp:0.0.0.0:5070 http:0.0.0.0:8080")
        self.assertEqual(self.report.told, ["starting", "started"])
        verifyObject(IStartupReport, self.report)

    def test_trunks_register_once_listening(self) -> None:
        """A registration trunk's REGISTER leaves from the SIP port, naming it; the switch uses the PBX's trunk hooks."""
        reactor = FakeUDPReactor()
        pbx = self.start(reactor, "trunks: {c: {uri: 'sip:192.0.2.50', username: acct-1, password: pw,"
                                  " register: true}}\n")
        self.successResultOf(pbx.ready)
        [(data, address)] = reactor.udpPorts[5060].written
        self.assertEqual(address, ("192.0.2.50", 5060))
        self.assertTrue(data.startswith(b"REGISTER sip:192.0.2.50 SIP/2.0\r\n"))
        self.assertIn(b"Contact: <sip:acct-1@127.0.0.1:5060>", data)
        assert pbx.sip is not None
        self.assertIs(pbx.sip.calls.trunks.hooks, pbx.trunk_hooks)
        self.successResultOf(pbx.stopService())

    def test_state_directory_logged(self) -> None:
        """The start logs where the state lives, and makes that directory."""
        self.successResultOf(self.start(FakeUDPReactor()).ready)
        [event] = self.logged("state directory")
        self.assertEqual(event["state_dir"], self.state_dir)
        self.assertTrue(os.path.isdir(self.state_dir))

    def test_descriptor_limit_shared_out(self) -> None:
        """The start raises the open files limit, logs it and how it is shared, and the listeners get those caps."""
        reactor = FakeUDPReactor()
        pbx = self.start(reactor, "rtp: {ports: 10000-10099}\n")
        self.successResultOf(pbx.ready)
        [event] = self.logged("open files limit")
        self.assertEqual((event["before"], event["now"], event["hard"]), (1024, 2048, 4096))
        self.assertIn("SIP connections 1820 (455 per address), API connections 64 (32 per address)",
                      event["budget"])
        assert pbx.sip is not None
        self.assertEqual(pbx.sip.core.transports.guard.limits.max_total, 1820)
        [(_, api_factory, _, _)] = [server for server in reactor.tcpServers if server[0] == 8080]
        self.assertIsInstance(api_factory, LimitedFactory)
        self.assertEqual((api_factory.caps.max_total, api_factory.caps.max_per_source), (64, 32))
        self.assertEqual(api_factory.wrappedFactory.timeOut, 60)

    def test_unusable_state_directory_is_one_line(self) -> None:
        """A state directory that cannot be made fails the start with one line naming it."""
        open(self.state_dir, "w").close()  # a file where the directory should be
        self.state_dir = os.path.join(self.state_dir, "sub")
        self.start(FakeUDPReactor())
        [told] = self.report.told[1:]
        self.assertTrue(told.startswith(f"failed: state_dir {self.state_dir}: "), told)

    def test_listen_failure_is_one_line(self) -> None:
        """A SIP port that cannot open ends startup with one line naming it, told to the report."""
        pbx = self.start(BusyUDPReactor())
        [critical] = [e for e in self.events if e["log_level"].name == "critical"]
        self.assertTrue(critical["problem"].startswith("sip.listen udp:5060:interface=127.0.0.1: "))
        self.assertEqual(self.report.told, ["starting", f"failed: {critical['problem']}"])
        self.assertNotIn("api.listen", [child.name for child in pbx])

    def test_busy_port_generates_nothing(self) -> None:
        """A start that cannot bind stores no credentials, no server secret, and shows no secret."""
        self.start(BusyUDPReactor(), CREDENTIALS)
        self.assertEqual((self.store.extensions, self.store.admins), ({}, {}))
        self.assertNotIn("server.secret", self.store.settings)
        self.assertEqual(self.logged("generated"), [])

    def test_secrets_shown_once_in_one_block_before_ready(self) -> None:
        """Generated passwords appear once, together, in the event just before pbx ready; a restart shows none."""
        self.start(BusyUDPReactor(), CREDENTIALS)
        pbx = self.start(FakeUDPReactor(), CREDENTIALS)
        self.successResultOf(pbx.ready)
        [block] = self.logged("generated secrets")
        self.assertIs(self.events[self.events.index(block) + 1], self.logged("pbx ready")[0])
        sip, admin = block["secrets"].splitlines()
        self.assertTrue(sip.startswith("SIP password for 1001: "), sip)
        self.assertTrue(admin.startswith("API admin password for admin: "), admin)
        self.assertTrue(verify_password(admin.rsplit(" ", 1)[1], self.store.admins["admin"].password_hash))
        self.assertIn("server.secret", self.store.settings)
        self.successResultOf(pbx.stopService())
        self.events.clear()
        self.successResultOf(self.start(FakeUDPReactor(), CREDENTIALS).ready)
        self.assertEqual(self.logged("generated"), [])

    def test_before_ready_work_runs_after_provisioning(self) -> None:
        """Work given to before_ready sees the configured extensions and its announced secrets join the block."""
        pbx = self.make(FakeUDPReactor(), CREDENTIALS)
        seen: list[object] = []

        async def work() -> None:
            seen.append(await self.store.get_extension("1001"))
            pbx.announce_secret("voicemail PIN", "1001", "482913")

        pbx.before_ready(work)
        pbx.startService()
        self.successResultOf(pbx.ready)
        self.assertEqual([record.number for record in seen], ["1001"])  # type: ignore[attr-defined]
        [block] = self.logged("generated secrets")
        self.assertEqual(block["secrets"].splitlines()[-1], "voicemail PIN for 1001: 482913")

    def test_failure_after_storing_still_shows_secrets(self) -> None:
        """If the start fails once secrets were stored, they are shown before the failure, never lost."""
        pbx = self.make(FakeUDPReactor(), CREDENTIALS)

        def work() -> Deferred[None]:
            return fail(StartupError("voicemail: disk full"))

        pbx.before_ready(work)
        pbx.startService()
        [block] = self.logged("generated secrets")
        self.assertIn("SIP password for 1001: ", block["secrets"])
        self.assertEqual(self.report.told, ["starting", "failed: voicemail: disk full"])
        self.assertLess(self.events.index(block), self.events.index(self.logged("startup failed")[0]))

    def test_stop_closes_everything(self) -> None:
        """Stopping closes every listener and then the store."""
        reactor = FakeUDPReactor()
        pbx = self.start(reactor)
        self.successResultOf(pbx.stopService())
        udp: FakeUDPPort = reactor.udpPorts[5060]
        self.assertFalse(udp.listening)
        self.assertEqual([child.running for child in pbx], [0, 0, 0])
        self.assertTrue(self.store.closed)
        self.assertEqual(reactor.getDelayedCalls(), [])

    def test_log_level_while_running(self) -> None:
        """With ``log.level: warn`` the log gets no info event while the PBX runs, and all of them once it stopped."""
        pbx = self.start(FakeUDPReactor(), "log: {level: warn}\n")
        log = Logger(namespace="pbx.test", observer=self.publisher)
        log.info("quiet")
        log.warn("loud")
        self.successResultOf(pbx.stopService())
        log.info("after")
        self.assertEqual([e["log_format"] for e in self.published], ["loud", "after"])
