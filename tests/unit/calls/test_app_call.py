"""
Tests for :mod:`pbx.calls.app_call` and the echo feature: calls pbx answers
itself and hands to a dialplan application, in memory.

The PBX is the one of :mod:`support.phones` (a real core, registrar,
authenticator and :class:`CallController` on a :class:`FakeUDPReactor`, with
scripted phones); here it also has media services (PCMU and PCMA, the
shipped prompts, a loader that reads WAVs at once) and the applications the
``echo`` feature registers.  RTP is put straight into the fake socket of
pbx's endpoint, and what the endpoint writes is read back from it.
"""

from __future__ import annotations

import numpy as np

from zope.interface.verify import verifyObject

from twisted.trial.unittest import SynchronousTestCase

from pbx.calls.controller import MEDIA_CHECK_INTERVAL
from pbx.calls.dialplan import (
    Dialplan,
    Route,
    ToExtension,
    compile_pattern,
)
from pbx.config import (
    APIConfig,
    CallsConfig,
    Config,
    ConfigError,
    RTPConfig,
    SecurityConfig,
    SIPConfig,
)
from pbx.interfaces import IDialplanApplication, IFeature
from pbx.media.codecs import PCMU
from pbx.media.rtp import parse_rtp
from pbx.plugins.echo import echo
from pbx.service import PBXService, StartupError
from pbx.sip import timers
from pbx.testing import FakeUDPReactor

from support.app_calls import TICK, AppCallTestCase, FakePBX, frames, offer, route
from support.phones import RTP_MAX, RTP_MIN, audio


class AnswerTests(AppCallTestCase):
    """Answering: authentication, the SDP answer, the 2xx until the ACK."""

    def test_answer(self) -> None:
        """*43 gets 407, then 200 whose SDP offers the caller's first shared codec and telephone-event at a bound RTP port."""
        invite, leg = self.caller.invite("*43", authenticate=False)
        self.caller.expect(100, 407)
        invite, leg, ok = self.dial("*43")
        self.assertEqual(ok.headers.get("Content-Type"), "application/sdp")
        self.assertTrue(ok.to.tag)
        self.assertEqual(str(ok.contacts[0].uri), "sip:pbx@127.0.0.1:5060")
        host, port, formats, direction = audio(ok.body)
        self.assertEqual(
            (host, formats, direction), ("127.0.0.1", ["0", "101"], "sendrecv")
        )
        self.assertTrue(RTP_MIN <= port <= RTP_MAX)
        self.assertTrue(self.clock.udpPorts[port].listening)
        self.assertTrue(self.clock.udpPorts[port + 1].listening)
        self.assertEqual(self.allocator.in_use, 1)
        self.caller.confirm(invite, leg, ok)
        self.bye(leg)

    def test_callers_order(self) -> None:
        """The caller's first codec that pbx has is chosen: PCMA for an offer of G.729, PCMA, PCMU."""
        body = offer(
            "18 8 0 101",
            "18 G729/8000",
            "8 PCMA/8000",
            "0 PCMU/8000",
            "101 telephone-event/8000",
        )
        invite, leg, ok = self.dial("*43", body)
        self.assertEqual(audio(ok.body)[2], ["8", "101"])
        self.caller.confirm(invite, leg, ok)
        self.bye(leg)
        self.assertEqual(self.store.calls[0].codecs, "PCMA")

    def test_no_telephone_event(self) -> None:
        """An offer without telephone-event is answered with the codec alone; keys come by INFO or in-band."""
        invite, leg, ok = self.dial("*43", offer("0", "0 PCMU/8000"))
        self.assertEqual(audio(ok.body)[2], ["0"])
        [call] = self.controller.calls.values()
        self.assertEqual(call.channel.digits.preference, ("info", "inband"))
        self.caller.confirm(invite, leg, ok)
        self.bye(leg)

    def test_telephone_event_no_inband(self) -> None:
        """With telephone-event negotiated, keys come by RFC 4733 or INFO; the audio is not searched for tones."""
        invite, leg, ok = self.dial("*43")
        self.assertIn("101", audio(ok.body)[2])
        [call] = self.controller.calls.values()
        self.assertEqual(call.channel.digits.preference, ("rfc4733", "info"))
        self.caller.confirm(invite, leg, ok)
        self.bye(leg)

    def test_ok_retransmitted_until_ack(self) -> None:
        """The 200 is resent after T1, 2T1, 4T1... until the ACK, then never again."""
        invite, leg, ok = self.dial("*43")
        start = self.clock.seconds()
        times = []
        for _ in range(int(4 / 0.25)):
            self.advance(0.25)
            for message in self.caller.received():
                self.assertEqual((message.status, message.body), (200, ok.body))
                times.append(self.clock.seconds() - start)
        self.assertEqual(times, [0.5, 1.5, 3.5])
        self.caller.confirm(invite, leg, ok)
        self.advance(10)
        self.quiet(self.caller)
        self.bye(leg)

    def test_no_ack(self) -> None:
        """A caller that never ACKs gets BYE after 64*T1 (RFC 3261 §13.3.1.4); the record says "no ACK"."""
        invite, leg, ok = self.dial("*43")
        self.advance(timers.TIMER_H - 0.25)
        self.assertEqual({m.status for m in self.caller.received()}, {200})
        self.advance(0.25)
        bye = self.caller.expect_one("BYE")
        self.assertEqual((bye.call_id, bye.from_.tag), (invite.call_id, ok.to.tag))
        self.caller.respond(bye, 200)
        [record] = self.store.calls
        self.assertEqual((record.hangup_side, record.hangup_cause), ("a", "no ACK"))
        self.assertEqual(self.allocator.in_use, 0)


class RefusedTests(AppCallTestCase):
    """Calls to applications that cannot be answered."""

    def test_no_common_codec(self) -> None:
        """An offer with no codec pbx has gets 488, opens no port, and leaves a FAILED record."""
        self.refused("*43", 488, offer("18", "18 G729/8000"))
        [record] = self.store.calls
        self.assertEqual((record.callee, record.disposition), ("*43", "FAILED"))

    def test_unparsable_offer(self) -> None:
        """An INVITE whose SDP does not parse gets 488."""
        self.refused("*43", 488, b"v=0\r\nthis is not sdp\r\n")

    def test_secure_only_offer(self) -> None:
        """An offer of SRTP only (RTP/SAVP) gets 488, and the endpoint opened for it is closed."""
        self.refused("*43", 488, offer("0", "0 PCMU/8000", proto="RTP/SAVP"))
        self.assertEqual(
            [p for p in self.clock.udpPorts.values() if p.listening and p.port != 5060],
            [],
        )

    def test_unknown_application(self) -> None:
        """A route to an application no feature registered gets 404."""
        response = self.refused("*48", 404)
        self.assertIn("nosuch", response.reason)

    def test_no_media_services(self) -> None:
        """Without media services application routes get 404."""
        self.controller.media = None
        self.refused("*43", 404)


class EchoTests(AppCallTestCase):
    """*43: the introduction, then the caller's audio straight back."""

    def test_intro_then_echo(self) -> None:
        """The intro prompt is sent, then RTP from the caller comes back to the caller's address."""
        leg, port = self.connect("*43")
        intro = frames("echo/intro")
        self.media(intro * TICK + 0.1)
        packets = self.sent(port)
        self.assertEqual(len(packets), intro)
        self.assertEqual({p.payload_type for p in packets}, {0})
        t = np.arange(50 * 160) / 8000
        speech = (np.sin(2 * np.pi * 330 * t) * 8000).astype(np.int16)
        payloads = [
            PCMU().new_encoder().encode(speech[i : i + 160])
            for i in range(0, len(speech), 160)
        ]
        for payload in payloads:
            self.rtp(port, payload)
            self.media(TICK)
        self.media(0.4)
        echoed = self.sent(port)
        decoder = PCMU().new_decoder()
        self.assertEqual(
            [decoder.decode(p.payload).tolist() for p in echoed[:50]],
            [decoder.decode(p).tolist() for p in payloads],
        )
        # Then a few frames of concealment (the last frame fading), nothing after.
        self.assertLessEqual(len(echoed), 50 + 10)
        self.assertFalse(decoder.decode(echoed[-1].payload).any())
        self.bye(leg)

    def test_bye_ends(self) -> None:
        """A BYE from the caller ends the call: ports released, endpoint closed, record with callee *43."""
        leg, port = self.connect("*43")
        self.media(1)
        self.bye(leg)
        self.assertEqual(self.controller.calls, {})
        self.assertEqual(self.allocator.in_use, 0)
        self.assertFalse(port.listening)
        [record] = self.store.calls
        self.assertEqual(
            (
                record.caller,
                record.callee,
                record.disposition,
                record.hangup_side,
                record.hangup_cause,
                record.codecs,
                record.leg,
            ),
            ("1001", "*43", "ANSWERED", "a", "BYE", "PCMU", "a"),
        )
        self.assertAlmostEqual(record.end - record.answer, 1 + TICK / 2, places=3)

    def test_no_media_after_bye(self) -> None:
        """After the BYE nothing more is sent from the endpoint's socket."""
        leg, port = self.connect("*43")
        self.media(0.5)
        self.bye(leg)
        self.sent(port)
        self.media(1)
        self.assertEqual(self.sent(port), [])

    def test_media_timeout(self) -> None:
        """An echo call whose caller sends no RTP for media_timeout seconds gets BYE ("media timeout")."""
        leg, port = self.connect("*43")
        self.advance(self.calls_config.media_timeout - MEDIA_CHECK_INTERVAL)
        self.quiet(self.caller)
        self.advance(MEDIA_CHECK_INTERVAL)
        bye = self.caller.expect_one("BYE")
        self.caller.respond(bye, 200)
        [record] = self.store.calls
        self.assertEqual(
            (record.hangup_side, record.hangup_cause), ("pbx", "media timeout")
        )
        self.assertEqual(self.allocator.in_use, 0)

    def test_media_keeps_call(self) -> None:
        """An echo call whose caller keeps sending RTP is not ended by the watchdog."""
        leg, port = self.connect("*43")
        for _ in range(20):
            self.advance(5)
            self.rtp(port, b"\xff" * 160)
        self.quiet(self.caller)
        self.assertEqual(len(self.controller.calls), 1)
        self.bye(leg)

    def test_reinvite(self) -> None:
        """A re-INVITE offering PCMA first is answered 200 keeping PCMU, and RTP goes to the new port."""
        leg, port = self.connect("*43")
        body = offer(
            "8 0 101",
            "8 PCMA/8000",
            "0 PCMU/8000",
            "101 telephone-event/8000",
            port=4002,
            version=2,
        )
        self.caller.in_dialog(leg, "INVITE", body=body)
        ok = self.caller.expect(100, 200)[1]
        host, new_port, formats, _ = audio(ok.body)
        self.assertEqual(
            (host, new_port, formats), ("127.0.0.1", port.port, ["0", "101"])
        )
        self.caller.ack_reinvite(leg)
        self.sent(port)
        self.media(0.1)
        written, port.written = port.written, []
        self.assertEqual({addr for _, addr in written}, {("192.0.2.11", 4002)})
        self.assertEqual({parse_rtp(data).payload_type for data, _ in written}, {0})
        self.bye(leg)

    def test_reinvite_without_our_codec(self) -> None:
        """A re-INVITE that drops the call's codec gets 488 and the call goes on."""
        leg, port = self.connect("*43")
        self.caller.in_dialog(leg, "INVITE", body=offer("8", "8 PCMA/8000", version=2))
        self.caller.expect(100, 488)
        self.assertEqual(
            [c.state for c in self.controller.calls.values()], ["confirmed"]
        )
        self.bye(leg)


class ReadbackTests(AppCallTestCase):
    """*44: digits in by RFC 4733 or INFO, read back as prompts."""

    def test_rfc4733(self) -> None:
        """RFC 4733 presses 4, 7, 1, # after the intro get "you entered" and the three digits played."""
        leg, port = self.connect("*44")
        self.media(frames("echo/digits") * TICK + 0.1)
        self.assertEqual(len(self.sent(port)), frames("echo/digits"))
        for digit in "471#":
            self.press(port, digit)
        self.media(5)
        expected = frames("general/you-entered", "digits/4", "digits/7", "digits/1")
        self.assertEqual(
            len([p for p in self.sent(port) if p.payload_type == 0]), expected
        )
        self.bye(leg)

    def test_barge_in(self) -> None:
        """A digit pressed during the intro stops it and is the first digit read back."""
        leg, port = self.connect("*44")
        self.media(1)
        self.assertEqual(len(self.sent(port)), 50)
        for digit in "471#":
            self.press(port, digit)
        self.media(5)
        expected = frames("general/you-entered", "digits/4", "digits/7", "digits/1")
        self.assertEqual(len(self.sent(port)), expected)
        self.bye(leg)

    def test_barge_in_hash(self) -> None:
        """A # during the intro stops it and ends an empty group: nothing is read back until more digits."""
        leg, port = self.connect("*44")
        self.media(1)
        self.sent(port)
        self.press(port, "#")
        self.media(4)
        self.assertEqual(self.sent(port), [])
        for digit in "5#":
            self.press(port, digit)
        self.media(3)
        self.assertEqual(
            len(self.sent(port)), frames("general/you-entered", "digits/5")
        )
        self.bye(leg)

    def test_pause_ends_group(self) -> None:
        """Digits followed by a pause of ``timeout`` (3 s) are read back without #."""
        leg, port = self.connect("*44")
        self.media(frames("echo/digits") * TICK + 0.1)
        self.sent(port)
        self.press(port, "9")
        self.media(2.8)
        self.assertEqual(self.sent(port), [])
        self.media(3)
        self.assertEqual(
            len(self.sent(port)), frames("general/you-entered", "digits/9")
        )
        self.bye(leg)

    def test_letter_keys(self) -> None:
        """Keys without a prompt (A-D) are left out of the read-back instead of ending the call."""
        leg, port = self.connect("*44")
        self.media(frames("echo/digits") * TICK + 0.1)
        self.sent(port)
        for digit in "A5#":
            self.press(port, digit)
        self.media(3)
        self.assertEqual(
            len(self.sent(port)), frames("general/you-entered", "digits/5")
        )
        self.assertEqual(len(self.controller.calls), 1)
        self.bye(leg)

    def test_info(self) -> None:
        """SIP INFO digits are answered 200 and read back."""
        leg, port = self.connect("*44")
        self.media(frames("echo/digits") * TICK + 0.1)
        self.sent(port)
        for signal in ("9", "#"):
            self.caller.in_dialog(
                leg,
                "INFO",
                body=f"Signal={signal}\r\nDuration=160\r\n".encode(),
                extra=[("Content-Type", "application/dtmf-relay")],
            )
            self.assertEqual(str(self.caller.expect_one(200).cseq), f"{leg.cseq} INFO")
        self.media(5)
        self.assertEqual(
            len(self.sent(port)), frames("general/you-entered", "digits/9")
        )
        self.bye(leg)

    def test_info_not_dtmf(self) -> None:
        """An INFO that carries no digit is answered 415."""
        leg, port = self.connect("*44")
        self.caller.in_dialog(
            leg, "INFO", body=b"hello", extra=[("Content-Type", "text/plain")]
        )
        self.caller.expect(415)
        self.bye(leg)


class ApplicationEndTests(AppCallTestCase):
    """Applications that end the call themselves."""

    def test_application_returns(self) -> None:
        """An application that returns gets the caller a BYE once its prompt has played."""
        leg, port = self.connect("*45")
        self.media((frames("general/beep") - 1) * TICK)
        self.quiet(self.caller)
        self.media(TICK)
        self.assertEqual(len(self.sent(port)), frames("general/beep"))
        bye = self.caller.expect_one("BYE")
        self.assertEqual(bye.call_id, leg.call_id)
        self.caller.respond(bye, 200)
        [record] = self.store.calls
        self.assertEqual(
            (record.hangup_side, record.hangup_cause), ("pbx", "application finished")
        )
        self.assertEqual(self.allocator.in_use, 0)

    def test_application_hangs_up(self) -> None:
        """An application calling hangup() gets the caller a BYE with its cause in the record."""
        leg, port = self.connect("*46")
        self.media(frames("general/beep") * TICK)
        bye = self.caller.expect_one("BYE")
        self.caller.respond(bye, 200)
        [record] = self.store.calls
        self.assertEqual(
            (record.disposition, record.hangup_side, record.hangup_cause),
            ("ANSWERED", "pbx", "done"),
        )
        self.assertEqual(self.allocator.in_use, 0)

    def test_application_fails(self) -> None:
        """An application that raises is logged and its call ended with BYE (after the ACK), not left open."""
        invite, leg, ok = self.dial("*47")
        self.caller.confirm(invite, leg, ok)
        bye = self.caller.expect_one("BYE")
        self.caller.respond(bye, 200)
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)
        [record] = self.store.calls
        self.assertEqual(
            (record.hangup_side, record.hangup_cause), ("pbx", "application failed")
        )
        self.assertEqual(self.allocator.in_use, 0)

    def test_no_bye_before_ack(self) -> None:
        """An application done before the caller's ACK gets its BYE sent only once the ACK comes (RFC 3261 §15)."""
        invite, leg, ok = self.dial("*47")
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)
        self.advance(1)
        self.assertEqual([m.status for m in self.caller.received()], [200])
        self.caller.confirm(invite, leg, ok)
        bye = self.caller.expect_one("BYE")
        self.caller.respond(bye, 200)
        self.assertEqual(self.store.calls[0].hangup_cause, "application failed")

    def test_done_and_no_ack(self) -> None:
        """An application done before an ACK that never comes: BYE at Timer H, recorded as "no ACK"."""
        invite, leg, ok = self.dial("*47")
        self.flushLoggedErrors(RuntimeError)
        self.advance(timers.TIMER_H - 0.25)
        self.assertEqual({m.status for m in self.caller.received()}, {200})
        self.advance(0.25)
        bye = self.caller.expect_one("BYE")
        self.caller.respond(bye, 200)
        self.assertEqual(self.store.calls[0].hangup_cause, "no ACK")
        self.assertEqual(self.allocator.in_use, 0)

    def test_shutdown(self) -> None:
        """Stopping the controller hangs up application calls with BYE."""
        leg, port = self.connect("*43")
        self.controller.stop()
        bye = self.caller.expect_one("BYE")
        self.caller.respond(bye, 200)
        self.assertEqual(self.store.calls[0].hangup_cause, "shutdown")


# -- the feature plugin and the startup check -------------------------------------------


class EchoFeatureTests(SynchronousTestCase):
    """The ``echo`` feature plugin."""

    def test_interface(self) -> None:
        """The dropin object provides IFeature and is named "echo"."""
        self.assertTrue(verifyObject(IFeature, echo))
        self.assertEqual(echo.name, "echo")
        self.assertTrue(echo.description)

    def test_no_options(self) -> None:
        """An empty options mapping is accepted."""
        self.assertIsNone(echo.parse_options({}))

    def test_unknown_option(self) -> None:
        """An unknown option is a ConfigError naming it."""
        error = self.assertRaises(
            ConfigError, echo.parse_options, {"volume": 3, "colour": "red"}
        )
        self.assertEqual((error.key, error.problem), ("colour", "unknown key"))

    def test_registers_applications(self) -> None:
        """The feature's service registers "echo" and "readback", which provide IDialplanApplication."""
        pbx = FakePBX({})
        service = echo.make_service(pbx, None)
        self.assertEqual(pbx.applications, {})
        service.startService()
        self.assertEqual(sorted(pbx.applications), ["echo", "readback"])
        for name, application in pbx.applications.items():
            self.assertTrue(verifyObject(IDialplanApplication, application))
            self.assertEqual(application.name, name)
        service.stopService()


def config(*routes: Route) -> Config:
    """A minimal valid configuration with ``routes`` as its dialplan."""
    return Config(
        path="<test>",
        sip=SIPConfig(domain="pbx.test"),
        rtp=RTPConfig(),
        api=APIConfig(),
        security=SecurityConfig(),
        database="sqlite://:memory:",
        state_dir=".",
        extensions=(),
        features={},
        calls=CallsConfig(),
        dialplan=Dialplan(routes),
    )


class ApplicationCheckTests(SynchronousTestCase):
    """PBXService refuses to start with a dialplan naming an application nobody registered."""

    def service(self, *routes: Route) -> PBXService:
        """A PBXService (not started) with the echo feature's applications registered."""
        service = PBXService(config(*routes), FakeUDPReactor())
        echo.make_service(service, None).startService()
        return service

    def test_missing(self) -> None:
        """A route to an unregistered application fails startup naming dialplan[i].app."""
        service = self.service(
            route("*43", "echo"),
            Route("100", compile_pattern("100"), ToExtension("1001")),
            route("*97", "voicemail"),
        )
        error = self.assertRaises(StartupError, service._check_applications)
        self.assertTrue(str(error).startswith("dialplan[2].app: "), str(error))
        self.assertIn("'voicemail'", str(error))

    def test_all_registered(self) -> None:
        """A dialplan whose applications are all registered passes."""
        service = self.service(route("*43", "echo"), route("*44", "readback"))
        self.assertEqual(sorted(service.applications), ["echo", "readback"])
        self.assertIsNone(service._check_applications())
