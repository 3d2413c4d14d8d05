"""
Tests for :mod:`pbx.switch`: the switch wired from a configuration.
"""

from __future__ import annotations

import os
from typing import Any

import attrs

from twisted.internet.address import IPv4Address
from twisted.internet.defer import Deferred, succeed
from twisted.internet.testing import StringTransport
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase

from pbx import switch as switch_module
from pbx.config import RTPConfig, parse_config
from pbx.errors import StartupError
from pbx.media.codecs import PCMU
from pbx.records import Binding
from pbx.security.log_file import NoSecurityLog
from pbx.sip import sockets
from pbx.sip.transport import SIPStreamFactory
from pbx.switch import Switch, build_switch, media_address, sip_listeners
from pbx.testing import FakeUDPReactor, MemoryStore

CONFIG = """
sip:
  domain: pbx.test
  listen: ["udp:5060:interface=127.0.0.1", "tcp:5070:interface=127.0.0.1"]
"""


class BuildSwitchTests(SynchronousTestCase):
    """:func:`build_switch` wires every part of the switch to the others."""

    def setUp(self) -> None:
        """A fake reactor, an in-memory store and a two-listener configuration."""
        self.reactor = FakeUDPReactor()
        self.store = MemoryStore()
        self.config = parse_config(CONFIG)

    def build(self, codecs: dict[str, Any] | None = None) -> Switch:
        """The switch for this test's configuration."""
        return build_switch(self.config, self.store, self.reactor, b"s" * 32, {}, codecs or {})

    def test_core_handlers(self) -> None:
        """REGISTER goes to the registrar, SUBSCRIBE to the event server; stream peers can be connected."""
        switch = self.build()
        self.assertIs(switch.core.handlers["REGISTER"], switch.registrar)
        self.assertIs(switch.core.handlers["SUBSCRIBE"], switch.events)
        self.assertIsNotNone(switch.core.transports.connect)

    def test_codecs_reach_calls(self) -> None:
        """The codecs handed in are the ones terminated calls use."""
        pcmu = PCMU()
        switch = self.build({"pcmu": pcmu})
        assert switch.calls.media is not None
        self.assertEqual(switch.calls.media.codecs, {"pcmu": pcmu})

    def test_music_on_hold(self) -> None:
        """Music on hold is on by default: calls get the shipped class, the codecs and the calls' media clock."""
        pcmu = PCMU()
        switch = self.build({"pcmu": pcmu})
        music = switch.calls.music
        assert music is not None
        self.assertEqual(list(music.classes), ["default"])
        self.assertEqual(dict(music.codecs), {"pcmu": pcmu})
        self.assertIs(music.clock, switch.calls.media_clock)

    def test_music_on_hold_disabled(self) -> None:
        """``moh.enabled: false``: calls pass holds on to the other phone."""
        self.config = parse_config(CONFIG + "moh: {enabled: false}\n")
        self.assertIsNone(self.build().calls.music)

    def test_defence(self) -> None:
        """The core and the authenticator share one source defence, whose bans reach the audit trail."""
        switch = self.build()
        self.assertIs(switch.core.defence, switch.defence)
        self.assertIs(switch.authn.defence, switch.defence)
        switch.defence.offence("192.0.2.7", "scanner")
        [event] = self.store.audit
        self.assertEqual((event.kind, event.source, event.detail), ("sip.ban", "192.0.2.7", "scanner; 60s (ban 1)"))

    def test_ban_closes_connections(self) -> None:
        """A ban closes the source's open SIP streams, and its new connections are refused."""
        switch = self.build()
        transports = switch.core.transports
        factory = SIPStreamFactory(transports, "tcp")
        address = IPv4Address("TCP", "192.0.2.7", 40000)
        protocol = factory.buildProtocol(address)
        assert protocol is not None
        stream = StringTransport(peerAddress=address)
        protocol.makeConnection(stream)
        switch.defence.offence("192.0.2.7", "scanner")
        self.assertTrue(stream.disconnecting)
        self.assertIsNone(factory.buildProtocol(IPv4Address("TCP", "192.0.2.7", 40001)))
        self.assertIsNotNone(factory.buildProtocol(IPv4Address("TCP", "192.0.2.8", 40000)))
        protocol.connectionLost(Failure(ConnectionError("closed")))
        self.assertEqual(transports.connections, 0)

    def test_no_security_log_by_default(self) -> None:
        """Without security.log nothing is written, and starting opens no file."""
        switch = self.build()
        self.assertIsInstance(switch.security_log, NoSecurityLog)
        self.assertIsInstance(switch.authn.security_log, NoSecurityLog)

    def test_security_log(self) -> None:
        """With security.log, failed logins and bans are written there, in the reactor's thread pool."""
        path = os.path.abspath(self.mktemp())
        self.config = attrs.evolve(self.config, security=attrs.evolve(self.config.security, log=path))
        switch = self.build()
        self.assertIs(switch.authn.security_log, switch.security_log)
        pool = object()
        self.reactor.getThreadPool = lambda: pool  # type: ignore[attr-defined]
        ran: list[object] = []

        def in_place(reactor: Any, threads: object, f: Any, *args: Any) -> Deferred[Any]:
            ran.append(threads)
            return succeed(f(*args))

        self.patch(switch_module, "deferToThreadPool", in_place)
        self.successResultOf(Deferred.fromCoroutine(switch.start()))
        switch.defence.offence("192.0.2.7", "scanner")
        self.successResultOf(Deferred.fromCoroutine(switch.stop()))
        self.successResultOf(Deferred.fromCoroutine(switch.flush()))
        self.assertEqual(ran, [pool])
        with open(path, encoding="utf-8") as f:
            [line] = f.read().splitlines()
        self.assertIn('SecurityEvent="FailedACL"', line)
        self.assertIn('RemoteAddress="IPV4/ANY/192.0.2.7/0"', line)

    def test_security_log_cannot_open(self) -> None:
        """A security log that cannot be opened stops the start, naming the key and the path."""
        path = os.path.join(os.path.abspath(self.mktemp()), "missing", "security.log")
        self.config = attrs.evolve(self.config, security=attrs.evolve(self.config.security, log=path))
        switch = self.build()
        failure = self.failureResultOf(Deferred.fromCoroutine(switch.start()), StartupError)
        self.assertEqual(str(failure.value), f"security.log {path}: No such file or directory")

    def test_start_and_stop(self) -> None:
        """Starting restores registrations and takes calls; stopping leaves no timer behind."""
        self.store.put_binding(Binding("1001", "sip:1001@192.0.2.1", 3600.0))
        switch = self.build()
        self.successResultOf(Deferred.fromCoroutine(switch.start()))
        self.assertEqual(list(switch.registrar.bindings), ["1001"])
        self.assertIn("INVITE", switch.core.handlers)
        self.successResultOf(Deferred.fromCoroutine(switch.stop()))
        self.successResultOf(Deferred.fromCoroutine(switch.flush()))
        self.assertEqual(self.reactor.getDelayedCalls(), [])

    def test_group_logins_restored(self) -> None:
        """Starting takes the group logouts kept in the store: a logged-out member stays out."""
        self.config = parse_config(CONFIG + 'groups: {sales: {number: "600", members: ["1001", "1002"]}}\n')
        self.store.put_item("groups.member", "sales", "1001", {"logged_in": False})
        switch = self.build()
        self.successResultOf(Deferred.fromCoroutine(switch.start()))
        directory = switch.calls.groups
        assert directory is not None
        self.assertEqual(directory.logged_in(directory.groups["sales"]), ["1002"])
        self.successResultOf(Deferred.fromCoroutine(switch.stop()))
        self.successResultOf(Deferred.fromCoroutine(switch.flush()))

    def test_one_listener_per_entry(self) -> None:
        """sip_listeners makes one listener per sip.listen entry, in order, feeding the core and naming us."""
        self.patch(sockets, "host_address", lambda: "192.0.2.7")
        switch = self.build()
        listeners = sip_listeners(self.config, self.reactor, switch)
        for listener in listeners:
            listener.startService()
        self.assertEqual(
            [listener.address for listener in listeners], ["sip:udp:127.0.0.1:5060", "sip:tcp:0.0.0.0:5070"]
        )
        self.assertIs(switch.core.transports.udp, self.reactor.udpPorts[5060])
        self.assertEqual(switch.addresses.local_address("udp").hostport, "127.0.0.1:5060")
        self.assertEqual(switch.addresses.local_address("tcp").hostport, "192.0.2.7:5070")


class MediaAddressTests(SynchronousTestCase):
    """The address put in SDP for RTP."""

    def test_order(self) -> None:
        """rtp.advertise wins, then a specific interface, then this host's address."""
        self.patch(switch_module, "host_address", lambda: "192.0.2.7")
        self.assertEqual(media_address(RTPConfig(interface="10.0.0.1", advertise="203.0.113.1")), "203.0.113.1")
        self.assertEqual(media_address(RTPConfig(interface="10.0.0.1")), "10.0.0.1")
        self.assertEqual(media_address(RTPConfig()), "192.0.2.7")
