"""
Tests for the echo feature (:mod:`pbx.features.echo`, :mod:`pbx.plugins.echo`):
the echo test (``*43``) and the digit read-back (``*44``) on calls in
memory, through the PBX of :class:`support.app_calls.AppCallTestCase`, and
the feature plugin itself.
"""

from __future__ import annotations

import numpy as np

from zope.interface.verify import verifyObject

from twisted.trial.unittest import SynchronousTestCase

from pbx.calls.media_watchdog import MEDIA_CHECK_INTERVAL
from pbx.config import ConfigError
from pbx.interfaces import IDialplanApplication, IFeature
from pbx.media.codecs import PCMU
from pbx.media.rtp import parse_rtp
from pbx.plugins.echo import echo
from pbx.testing import FakePBX

from support.app_calls import TICK, AppCallTestCase, frames, offer
from support.phones import audio


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
        pbx = FakePBX()
        service = echo.make_service(pbx, None)
        self.assertEqual(pbx.applications, {})
        service.startService()
        self.assertEqual(sorted(pbx.applications), ["echo", "readback"])
        for name, application in pbx.applications.items():
            self.assertTrue(verifyObject(IDialplanApplication, application))
            self.assertEqual(application.name, name)
        service.stopService()
