"""
Tests for :mod:`pbx.service`: the PBX's service tree, its startup and its
shutdown, on a fake reactor and an in-memory store.
"""

from __future__ import annotations

from typing import Any

from attrs import define

from zope.interface import implementer

from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.error import CannotListenError
from twisted.internet.interfaces import IStreamServerEndpoint
from twisted.logger import Logger, LogPublisher
from twisted.trial.unittest import SynchronousTestCase

from pbx import service as service_module
from pbx.config import parse_config
from pbx.errors import StartupError
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

    def start(self, reactor: FakeUDPReactor, log_level: str = "info") -> PBXService:
        """Start a PBX with two SIP listeners and the API on ``reactor``, its log on ``self.logged``."""
        self.store = MemoryStore()
        self.logged: list[dict[str, Any]] = []
        self.publisher = LogPublisher(self.logged.append)
        self.exits: list[int] = []
        self.events: list[dict[str, Any]] = []
        self.patch(service_module, "open_store", lambda url, reactor: self.store)
        self.patch(service_module, "tune_garbage_collector", lambda: None)
        self.patch(PBXService, "log", Logger(observer=self.events.append))
        config = parse_config(
            f"state_dir: {self.mktemp()}\n"
            "sip: {listen: [udp:5060:interface=127.0.0.1, tcp:5070:interface=127.0.0.1]}\n"
            f"log: {{level: {log_level}}}\n"
        )
        pbx = PBXService(config, reactor, codecs={}, exit=self.exits.append, log_publisher=self.publisher)
        pbx.startService()
        return pbx

    def test_listeners_are_named_children(self) -> None:
        """Every listener is a named child, SIP in config order then the API, all in the ready line."""
        pbx = self.start(FakeUDPReactor())
        self.successResultOf(pbx.ready)
        self.assertEqual([child.name for child in pbx], ["sip.listen[0]", "sip.listen[1]", "api.listen"])
        self.assertEqual(pbx.listeners, ["sip:udp:127.0.0.1:5060", "sip:tcp:0.0.0.0:5070", "http:0.0.0.0:8080"])
        [ready] = [e for e in self.events if e["log_format"].startswith("pbx ready")]
        self.assertEqual(ready["listeners"], "sip:udp:127.0.0.1:5060 sip:tcp:0.0.0.0:5070 http:0.0.0.0:8080")
        self.assertEqual(self.exits, [])

    def test_listen_failure_is_one_line(self) -> None:
        """A SIP port that cannot open ends startup with one line naming it, and exit status 1."""
        pbx = self.start(BusyUDPReactor())
        self.assertEqual(self.exits, [1])
        [critical] = [e for e in self.events if e["log_level"].name == "critical"]
        self.assertTrue(critical["problem"].startswith("sip.listen udp:5060:interface=127.0.0.1: "))
        self.assertNotIn("api.listen", [child.name for child in pbx])

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
        pbx = self.start(FakeUDPReactor(), "warn")
        log = Logger(namespace="pbx.test", observer=self.publisher)
        log.info("quiet")
        log.warn("loud")
        self.successResultOf(pbx.stopService())
        log.info("after")
        self.assertEqual([e["log_format"] for e in self.logged], ["loud", "after"])
