"""
Tests for :mod:`pbx.features.paging.multicast`: the pager's audio as RTP
to a multicast group, from a page's mix, on a :class:`task.Clock`.
"""

from __future__ import annotations

import socket

import numpy as np

from twisted.internet import task
from twisted.trial.unittest import SynchronousTestCase

from pbx.features.paging.multicast import MulticastSender, multicast_socket
from pbx.media.codecs import G722, PCMA, PCMU
from pbx.media.mix import Mix
from pbx.media.rtp import parse_rtp

from support.conference import level
from support.paging import FakeSocket, PageRig

GROUP = ("239.1.1.1", 5000)


def tone(frequency: float, n: int, start: int) -> np.ndarray:
    """``n`` samples of a 6000-amplitude tone at 8 kHz, from sample ``start``."""
    t = (start + np.arange(n)) / 8000
    return (np.sin(2 * np.pi * frequency * t) * 6000).astype(np.int16)


class MulticastSenderTests(SynchronousTestCase):
    """One sender in a mix with one talker."""

    def setUp(self) -> None:
        """A mix, a talker in it, and a sender to :data:`GROUP` in PCMU."""
        self.clock = task.Clock()
        self.mix = Mix()
        self.talker = self.mix.add("pager", 8000)
        self.sock = FakeSocket()
        self.sender = MulticastSender(self.clock, GROUP, PCMU(), self.sock)
        self.sender.start(self.mix)
        # The talker's ticks fall between the sender's (as the media clock's do).
        self.clock.advance(0.005)

    def tick(self, n: int) -> None:
        """Let ``n`` 20 ms ticks pass, one at a time."""
        for _ in range(n):
            self.clock.advance(0.02)

    def talk(self, frames: int, frequency: float = 600.0) -> None:
        """The talker says ``frames`` frames of a tone, one per 20 ms tick (and hears the mix)."""
        for i in range(frames):
            self.clock.advance(0.02)
            self.talker.put(tone(frequency, 160, i * 160))
            self.talker.take()

    def test_packets(self) -> None:
        """One PCMU packet per 20 ms to the group: sequence +1, timestamp +160, the same SSRC."""
        self.talk(50)
        packets = [parse_rtp(data) for data, _ in self.sock.sent]
        self.assertEqual(len(packets), 50)
        self.assertEqual({address for _, address in self.sock.sent}, {GROUP})
        self.assertEqual({p.payload_type for p in packets}, {0})
        self.assertEqual({len(p.payload) for p in packets}, {160})
        self.assertEqual({p.ssrc for p in packets}, {packets[0].ssrc})
        for a, b in zip(packets, packets[1:], strict=False):
            self.assertEqual((b.sequence - a.sequence) & 0xFFFF, 1)
            self.assertEqual((b.timestamp - a.timestamp) & 0xFFFFFFFF, 160)
        self.assertTrue(packets[0].marker)
        self.assertFalse(any(p.marker for p in packets[1:]))

    def test_audio_is_the_talker(self) -> None:
        """The packets carry the talker's tone (one tick late), decodable by a listener."""
        self.talk(50)
        decoder = PCMU().new_decoder()
        audio = np.concatenate(
            [
                np.asarray(decoder.decode(parse_rtp(d).payload))
                for d, _ in self.sock.sent
            ]
        )
        self.assertGreater(level(audio[800:], 600.0, 8000), 5000)
        self.assertLess(level(audio[800:], 900.0, 8000), 50)

    def test_silence_when_nobody_talks(self) -> None:
        """With nothing said the stream goes on, carrying silence."""
        self.tick(10)
        decoder = PCMU().new_decoder()
        self.assertEqual(len(self.sock.sent), 10)
        for data, _ in self.sock.sent:
            self.assertEqual(
                np.abs(np.asarray(decoder.decode(parse_rtp(data).payload))).max(), 0
            )

    def test_sender_is_not_heard(self) -> None:
        """The sender is muted in the mix: the talker hears nothing from it."""
        self.talk(5)
        self.assertTrue(self.mix.is_muted(self.sender))

    def test_late_reactor(self) -> None:
        """A late tick sends one packet whose timestamp skips the time missed, as a new talkspurt."""
        self.talk(2)
        self.clock.advance(0.06)
        first, last = (parse_rtp(d) for d, _ in self.sock.sent[-2:])
        self.assertEqual((last.timestamp - first.timestamp) & 0xFFFFFFFF, 3 * 160)
        self.assertTrue(last.marker)

    def test_refused_send(self) -> None:
        """A datagram the socket refuses is counted as dropped; the stream carries on."""
        self.sock.refuse = OSError("ENOBUFS")
        self.tick(2)
        self.sock.refuse = None
        self.tick(1)
        self.assertEqual(
            (self.sender.packets_dropped, self.sender.packets_sent), (2, 1)
        )

    def test_stop(self) -> None:
        """Stopping leaves the mix, closes the socket and leaves no timer behind."""
        self.sender.stop()
        self.assertNotIn(self.sender, self.mix)
        self.assertTrue(self.sock.closed)
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_pcma(self) -> None:
        """A PCMA group sends payload type 8."""
        sock = FakeSocket()
        MulticastSender(self.clock, GROUP, PCMA(), sock).start(Mix())
        self.clock.advance(0.02)
        self.assertEqual(parse_rtp(sock.sent[0][0]).payload_type, 8)


class WidebandSenderTests(SynchronousTestCase):
    """A G.722 stream from an 8 kHz mix."""

    def test_g722(self) -> None:
        """G.722: payload type 9, 160 octets and 160 RTP clock ticks per 20 ms (RFC 3551 §4.5.2), the talker's tone."""
        clock = task.Clock()
        mix = Mix()
        talker = mix.add("pager", 8000)
        sock = FakeSocket()
        MulticastSender(clock, GROUP, G722(), sock).start(mix)
        clock.advance(0.005)
        for i in range(50):
            clock.advance(0.02)
            talker.put(tone(600.0, 160, i * 160))
            talker.take()
        packets = [parse_rtp(d) for d, _ in sock.sent]
        self.assertEqual(
            {(p.payload_type, len(p.payload)) for p in packets}, {(9, 160)}
        )
        self.assertEqual(
            {
                (b.timestamp - a.timestamp) & 0xFFFFFFFF
                for a, b in zip(packets, packets[1:], strict=False)
            },
            {160},
        )
        decoder = G722().new_decoder()
        audio = np.concatenate(
            [np.asarray(decoder.decode(p.payload)) for p in packets[-25:]]
        )
        self.assertGreater(level(audio, 600.0, 16000), 4000)


class MulticastSocketTests(SynchronousTestCase):
    """The real socket's options (made, not used to send)."""

    def test_options(self) -> None:
        """TTL, loop and the outgoing interface are set as asked; the socket does not block."""
        sock = multicast_socket("127.0.0.1", 1, True)
        assert isinstance(sock, socket.socket)
        self.addCleanup(sock.close)
        self.assertEqual(sock.getsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_TTL), 1)
        self.assertEqual(
            sock.getsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_LOOP), 1
        )
        self.assertEqual(
            socket.inet_ntoa(
                sock.getsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, 4)
            ),
            "127.0.0.1",
        )
        self.assertFalse(sock.getblocking())

    def test_no_loop(self) -> None:
        """Loop off and a TTL of 4 are set too."""
        sock = multicast_socket("", 4, False)
        assert isinstance(sock, socket.socket)
        self.addCleanup(sock.close)
        self.assertEqual(sock.getsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_TTL), 4)
        self.assertEqual(
            sock.getsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_LOOP), 0
        )


class MulticastPageTests(SynchronousTestCase):
    """A page of a group with a multicast address."""

    rig: PageRig

    def tearDown(self) -> None:
        """Every call ends, and with it every application run."""
        self.assertEqual(self.rig.hang_up_all(), [])

    def test_page_streams_pager(self) -> None:
        """The pager's tone goes to the group's address in its codec; the stream stops with the page."""
        rig = self.rig = PageRig("""
multicast_interface: 127.0.0.1
multicast_ttl: 2
groups:
  yard: {number: "702", members: ["1001"], multicast: "239.2.2.2:6000", codec: pcma}
""")
        member = rig.member("1001", 900.0)
        pager, done = rig.dial(rig.paging, "1009", "702", frequency=600.0)
        rig.run(1.0)
        [sock] = rig.sockets
        self.assertEqual((sock.interface, sock.ttl, sock.loop), ("127.0.0.1", 2, True))
        packets = [
            parse_rtp(d) for d, address in sock.sent if address == ("239.2.2.2", 6000)
        ]
        self.assertGreaterEqual(len(packets), 49)
        decoder = PCMA().new_decoder()
        audio = np.concatenate(
            [np.asarray(decoder.decode(p.payload)) for p in packets[-25:]]
        )
        self.assertGreater(level(audio, 600.0, 8000), 5000)
        self.assertLess(level(audio, 900.0, 8000), 50)
        self.assertGreater(member.hears(600.0), 0.8)
        pager.hang_up()
        self.successResultOf(done)
        self.assertTrue(sock.closed)
        sent = len(sock.sent)
        rig.run(0.2)
        self.assertEqual(len(sock.sent), sent)

    def test_multicast_only_group_is_live(self) -> None:
        """A group whose members all fail still pages by multicast: the pager is not hung up."""
        rig = self.rig = PageRig(
            'groups: {yard: {number: "702", members: ["1001"], multicast: "239.2.2.2:6000"}}'
        )
        rig.pbx.outcome = "unavailable"
        pager, _ = rig.dial(rig.paging, "1009", "702")
        rig.run(3.0)
        self.assertEqual(pager.hangups, [])
        self.assertGreater(pager.hears(1000.0, 3.0), 0.01)
        pager.hang_up()

    def test_socket_failure(self) -> None:
        """A multicast socket that cannot be made leaves the page to its phones, logged."""
        rig = self.rig = PageRig(
            'groups: {yard: {number: "702", members: ["1001"], multicast: "239.2.2.2:6000"}}'
        )

        def refuse(interface: str, ttl: int, loop: bool) -> FakeSocket:
            raise OSError("no such device")

        rig.paging.sockets = refuse
        member = rig.member("1001")
        pager, _ = rig.dial(rig.paging, "1009", "702", frequency=600.0)
        rig.run(1.0)
        self.assertGreater(member.hears(600.0), 0.8)
        self.assertEqual(len(self.flushLoggedErrors()), 0)
        pager.hang_up()
