"""
Calls pbx answers itself and hands to a dialplan application, in memory.

:class:`AppCallTestCase` is the PBX of :class:`support.phones.CallTestCase`
(a real core, registrar, authenticator and :class:`CallController` on a
:class:`FakeUDPReactor`, with scripted phones) with media services (PCMU and
PCMA, the shipped prompts, a loader that reads WAVs at once), the
applications the ``echo`` feature registers and a few test applications.
RTP is put straight into the fake socket of pbx's endpoint, and what the
endpoint writes is read back from it.
"""

from __future__ import annotations

import math
from typing import Any

import attrs

from zope.interface import implementer

from twisted.internet.defer import Deferred, succeed

from pbx.calls.dialplan import Dialplan, Route, ToApplication, compile_pattern
from pbx.calls.endpoint_media import MediaServices
from pbx.interfaces import IDialplanApplication
from pbx.media.channel import Channel
from pbx.media.codecs import PCMA, PCMU
from pbx.media.dtmf import RFC4733Sender
from pbx.media.prompts import PromptLibrary
from pbx.media.rtp import RTPPacket, parse_rtp
from pbx.media.wav import load_wav
from pbx.plugins.echo import echo
from pbx.sip.message import Request, Response
from pbx.testing import FakePBX, FakeUDPPort

from support.phones import CALLER_SDP, CallTestCase, Leg, audio

CALLER_RTP = ("192.0.2.11", 4000)
TE_PT = 101
TICK = 0.02
PROMPTS = PromptLibrary()


def load(path: str) -> Deferred[Any]:
    """The media services' loader, synchronous: the WAV is read before this returns."""
    return succeed(load_wav(path))


def frames(*prompt_ids: str) -> int:
    """How many 20 ms frames at 8 kHz ``prompt_ids`` take when played in one play()."""
    return sum(
        math.ceil(len(load_wav(PROMPTS.path(p, 8000)).samples) / 160)
        for p in prompt_ids
    )


def offer(
    formats: str,
    *rtpmaps: str,
    port: int = 4000,
    proto: str = "RTP/AVP",
    version: int = 1,
) -> bytes:
    """A caller's SDP offer from 192.0.2.11 with the given formats and rtpmap lines."""
    lines = [
        "v=0",
        f"o=alice 100 {version} IN IP4 192.0.2.11",
        "s=-",
        "c=IN IP4 192.0.2.11",
        "t=0 0",
        f"m=audio {port} {proto} {formats}",
        *(f"a=rtpmap:{r}" for r in rtpmaps),
        "a=sendrecv",
    ]
    return ("\r\n".join(lines) + "\r\n").encode()


@implementer(IDialplanApplication)
class Beeper:
    """Plays a beep, then ends the call by returning (or with hangup())."""

    def __init__(self, name: str, hang_up: bool) -> None:
        self.name = name
        self.hang_up = hang_up

    async def run(self, channel: Channel, args: Any) -> None:
        """Beep, then finish."""
        await channel.play(["general/beep"])
        if self.hang_up:
            await channel.hangup("done")


@implementer(IDialplanApplication)
class Broken:
    """Fails after answering."""

    name = "broken"

    async def run(self, channel: Channel, args: Any) -> None:
        """Raise."""
        await channel.answer()
        raise RuntimeError("application bug")


def route(number: str, app: str) -> Route:
    """A dialplan route sending ``number`` to application ``app``."""
    return Route(number, compile_pattern(number), ToApplication(app, {}))


class AppCallTestCase(CallTestCase):
    """The PBX of support.phones with media services and the echo feature's applications."""

    def setUp(self) -> None:
        """Route *43/*44 to echo/readback and a few test applications; start the echo feature."""
        super().setUp()
        self.controller.config = attrs.evolve(
            self.config,
            dialplan=Dialplan(
                (
                    route("*43", "echo"),
                    route("*44", "readback"),
                    route("*45", "beep-return"),
                    route("*46", "beep-hangup"),
                    route("*47", "broken"),
                    route("*48", "nosuch"),
                )
            ),
        )
        self.controller.media = MediaServices(
            {"pcmu": PCMU(), "pcma": PCMA()}, PROMPTS, load
        )
        self.feature = echo.make_service(
            FakePBX(applications=self.controller.applications), echo.parse_options({})
        )
        self.feature.startService()
        for application in (
            Beeper("beep-return", False),
            Beeper("beep-hangup", True),
            Broken(),
        ):
            self.controller.applications[application.name] = application
        self.sequence = 0

    def tearDown(self) -> None:
        """Stop the feature service, then the checks of CallTestCase."""
        self.feature.stopService()
        super().tearDown()

    # -- signalling -------------------------------------------------------------

    def dial(
        self, number: str, body: bytes = CALLER_SDP
    ) -> tuple[Request, Leg, Response]:
        """The caller calls ``number`` (through the 407) and gets 100 and 200."""
        invite, leg = self.caller.invite(number, body=body)
        trying, ok = self.caller.expect(100, 200)
        return invite, leg, ok

    def connect(self, number: str, body: bytes = CALLER_SDP) -> tuple[Leg, FakeUDPPort]:
        """A confirmed call to ``number``: its leg and pbx's RTP socket."""
        invite, leg, ok = self.dial(number, body)
        self.caller.confirm(invite, leg, ok)
        self.assertEqual(
            [c.state for c in self.controller.calls.values()], ["confirmed"]
        )
        # Half a frame: from now on each TICK of media() holds exactly one playout tick.
        self.clock.advance(TICK / 2)
        return leg, self.clock.udpPorts[audio(ok.body)[1]]

    def bye(self, leg: Leg) -> None:
        """The caller hangs up; pbx answers 200."""
        self.caller.in_dialog(leg, "BYE")
        self.caller.expect(200)

    def refused(self, number: str, status: int, body: bytes = CALLER_SDP) -> Response:
        """The caller's INVITE to ``number`` is refused with ``status`` (ACKed)."""
        invite, leg = self.caller.invite(number, body=body)
        trying, response = self.caller.expect(100, status)
        self.caller.ack_failure(invite, response)
        self.assertEqual(self.controller.calls, {})
        self.assertEqual(self.allocator.in_use, 0)
        return response

    # -- media --------------------------------------------------------------------

    def media(self, seconds: float) -> None:
        """Let ``seconds`` pass 20 ms at a time, as the playout timer runs."""
        for _ in range(round(seconds / TICK)):
            self.clock.advance(TICK)
        self.deliver()

    def rtp(
        self,
        port: FakeUDPPort,
        payload: bytes,
        pt: int = 0,
        timestamp: int | None = None,
        marker: bool = False,
    ) -> None:
        """The caller's phone sends one RTP packet to pbx's ``port``."""
        self.sequence += 1
        if timestamp is None:
            timestamp = 160 * self.sequence
        packet = RTPPacket(pt, self.sequence, timestamp, 0xCA11, payload, marker)
        port.protocol.datagramReceived(packet.to_bytes(), CALLER_RTP)

    def press(self, port: FakeUDPPort, digit: str) -> None:
        """One RFC 4733 key press (start, updates, three end packets), then 100 ms."""
        start = 160 * (self.sequence + 100)
        for packet in RFC4733Sender(interval_ms=20).packets(digit, 60):
            self.rtp(
                port,
                packet.payload,
                TE_PT,
                start + packet.timestamp_offset,
                packet.marker,
            )
        self.media(0.1)

    def sent(self, port: FakeUDPPort) -> list[RTPPacket]:
        """The RTP packets pbx sent from ``port`` since the last look; all to the caller."""
        written, port.written = port.written, []
        self.assertEqual({addr for _, addr in written} - {CALLER_RTP}, set())
        return [parse_rtp(data) for data, _ in written]
