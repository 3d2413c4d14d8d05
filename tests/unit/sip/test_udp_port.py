"""Tests for :mod:`pbx.sip.udp_port`: each datagram with its wait in the receive queue (socket(7) SO_TIMESTAMPNS)."""

from __future__ import annotations

import errno
import socket
import struct
from typing import Any

from twisted.internet.protocol import DatagramProtocol
from twisted.internet.testing import MemoryReactor
from twisted.trial.unittest import SynchronousTestCase

from pbx.sip.udp_port import SO_TIMESTAMPNS, TimedPort, listen_timed
from pbx.testing import FakeUDPReactor


def stamp(seconds: float) -> list[tuple[int, int, bytes]]:
    """The control message the kernel adds: a struct timespec of CLOCK_REALTIME."""
    whole = int(seconds)
    return [(socket.SOL_SOCKET, SO_TIMESTAMPNS, struct.pack("@qq", whole, round((seconds - whole) * 1e9)))]


class FakeSocket:
    """Hands out queued datagrams through ``recvmsg``, then EAGAIN."""

    def __init__(self, queued: list[tuple[bytes, list[tuple[int, int, bytes]], tuple[str, int]]]) -> None:
        self.queued = queued
        self.asked: list[tuple[int, int]] = []

    def recvmsg(self, size: int, space: int) -> tuple[bytes, list[tuple[int, int, bytes]], int, tuple[str, int]]:
        self.asked.append((size, space))
        if not self.queued:
            raise BlockingIOError(errno.EAGAIN, "nothing queued")
        data, ancillary, addr = self.queued.pop(0)
        return data, ancillary, 0, addr


class Recorder(DatagramProtocol):
    """A protocol that keeps what it was handed."""

    def __init__(self) -> None:
        self.got: list[tuple[bytes, Any, float | None]] = []

    def datagram_waited(self, data: bytes, addr: Any, waited: float | None) -> None:
        self.got.append((data, addr, waited))


def port(queued: list[tuple[bytes, list[tuple[int, int, bytes]], tuple[str, int]]], stamped: bool = True) -> tuple[TimedPort, Recorder, FakeSocket]:
    recorder = Recorder()
    p = TimedPort(0, recorder, reactor=MemoryReactor())  # type: ignore[arg-type]
    p.protocol = recorder  # type: ignore[assignment]
    fake = FakeSocket(queued)
    p.socket = fake
    p.stamped = stamped
    p.now = lambda: 1_000_000.75  # type: ignore[method-assign]
    return p, recorder, fake


class TimedPortTests(SynchronousTestCase):
    """The read loop hands each datagram up with the seconds since the kernel stamped it."""

    def test_wait_from_the_stamp(self) -> None:
        """A datagram stamped 250 ms before it is read waited 0.25 s; every queued one is read in one turn."""
        p, recorder, fake = port([
            (b"REGISTER a", stamp(1_000_000.5), ("127.0.0.1", 5062)),
            (b"REGISTER b", stamp(1_000_000.75), ("127.0.0.1", 5063)),
        ])
        p.doRead()
        [(first, addr, waited), (second, _, at_once)] = recorder.got
        self.assertEqual((first, addr, second), (b"REGISTER a", ("127.0.0.1", 5062), b"REGISTER b"))
        self.assertAlmostEqual(waited, 0.25, places=6)  # type: ignore[arg-type]
        self.assertAlmostEqual(at_once, 0.0, places=6)  # type: ignore[arg-type]
        self.assertEqual(fake.asked[0], (p.maxPacketSize, socket.CMSG_SPACE(16)))

    def test_no_stamp(self) -> None:
        """Without a stamp (not asked for, or not given) the wait is unknown: None."""
        p, recorder, fake = port([(b"OPTIONS", [], ("127.0.0.1", 5062))], stamped=False)
        p.doRead()
        self.assertEqual(recorder.got, [(b"OPTIONS", ("127.0.0.1", 5062), None)])
        self.assertEqual(fake.asked[0][1], 0)

    def test_clock_behind_the_stamp(self) -> None:
        """A stamp after the time read (the clock stepped back) is no wait, never a negative one."""
        p, recorder, _ = port([(b"BYE", stamp(1_000_001.0), ("127.0.0.1", 5062))])
        p.doRead()
        self.assertEqual(recorder.got[0][2], 0.0)

    def test_turn_bounded(self) -> None:
        """One turn reads at most maxThroughput octets; the rest waits for the next turn."""
        datagram = b"x" * 1000
        p, recorder, fake = port([(datagram, stamp(1_000_000.7), ("127.0.0.1", 5062)) for _ in range(10)])
        p.maxThroughput = 3000
        p.doRead()
        self.assertEqual((len(recorder.got), len(fake.queued)), (3, 7))

    def test_refused_ignored(self) -> None:
        """ECONNREFUSED (an ICMP error for something sent earlier) ends the turn quietly."""
        p, recorder, fake = port([])

        def refused(size: int, space: int) -> None:
            raise ConnectionRefusedError(errno.ECONNREFUSED, "refused")

        fake.recvmsg = refused  # type: ignore[method-assign,assignment]
        p.doRead()
        self.assertEqual(recorder.got, [])

    def test_protocol_failure_logged(self) -> None:
        """A protocol that raises loses that datagram only: the next is still read."""
        p, recorder, _ = port([(b"one", [], ("127.0.0.1", 1)), (b"two", [], ("127.0.0.1", 2))])
        calls: list[bytes] = []

        def failing(data: bytes, addr: Any, waited: float | None) -> None:
            calls.append(data)
            if data == b"one":
                raise ValueError("boom")

        recorder.datagram_waited = failing  # type: ignore[method-assign]
        p.doRead()
        self.assertEqual(calls, [b"one", b"two"])
        self.assertEqual(len(self.flushLoggedErrors(ValueError)), 1)


class ListenTimedTests(SynchronousTestCase):
    """Where the reactor has no real sockets, its own listenUDP is used."""

    def test_fake_reactor(self) -> None:
        """A test reactor's listenUDP gets the port, protocol and interface."""
        reactor = FakeUDPReactor()
        recorder = Recorder()
        port = listen_timed(reactor, 5060, recorder, "127.0.0.1")  # type: ignore[arg-type]
        self.assertIs(reactor.udpPorts[5060], port)
        self.assertEqual((port.protocol, port.interface), (recorder, "127.0.0.1"))
