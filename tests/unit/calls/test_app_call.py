"""
Tests for :mod:`pbx.calls.app_call`: calls pbx answers itself and hands to a
dialplan application, in memory.

The PBX is :class:`support.app_calls.AppCallTestCase`: the one of
:mod:`support.phones` (a real core, registrar, authenticator and
:class:`CallController` on a :class:`FakeUDPReactor`, with scripted phones)
with media services (PCMU and PCMA, the shipped prompts, a loader that reads
WAVs at once) and the applications the ``echo`` feature registers.  RTP is
put straight into the fake socket of pbx's endpoint, and what the endpoint
writes is read back from it.  The echo and read-back applications
themselves are tested in ``unit/features/echo/test_echo.py``.
"""

from __future__ import annotations

import attrs

from twisted.trial.unittest import SynchronousTestCase

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
    RTPConfig,
    SecurityConfig,
    SIPConfig,
)
from pbx.media.sdp import parse_sdp
from pbx.media.srtp import new_crypto
from pbx.plugins.echo import echo
from pbx.service import PBXService, StartupError
from pbx.sip import timers
from pbx.testing import FakeUDPReactor

from support.app_calls import TICK, AppCallTestCase, frames, offer, route
from support.phones import RTP_MAX, RTP_MIN, audio


class AnswerTests(AppCallTestCase):
    """Answering: authentication, the SDP answer, the 2xx until the ACK."""

    def test_answer(self) -> None:
        """*43 gets 407, then 200 whose SDP offers the caller's first shared codec and telephone-event at a bound RTP port."""
        invite, leg = self.caller.invite("*43", authenticate=False)
        self.caller.expect(407)
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
        self.assertEqual(
            (record.callee, record.disposition, record.application),
            ("*43", "FAILED", "echo"),
        )

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
            (
                record.disposition,
                record.hangup_side,
                record.hangup_cause,
                record.application,
            ),
            ("ANSWERED", "pbx", "done", "beep-hangup"),
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
        service = PBXService(config(*routes), FakeUDPReactor(), codecs={})
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


class CallerPolicyTests(AppCallTestCase):
    """A call pbx answers keeps to the SRTP policy of the caller's extension (RFC 4568; ``srtp:``)."""

    def policy(self, number: str, srtp: str) -> None:
        """Give extension ``number`` the SRTP policy ``srtp``."""
        self.store.extensions[number] = attrs.evolve(self.store.extensions[number], srtp=srtp)

    def test_required_caller_offering_plain_refused(self) -> None:
        """A caller whose extension requires SRTP gets 488 for a plain offer, as on a call to a phone."""
        self.policy("1001", "required")
        self.refused("*43", 488)
        [record] = self.store.calls
        self.assertEqual((record.caller, record.disposition), ("1001", "FAILED"))

    def test_off_caller_offering_srtp_refused(self) -> None:
        """Over TLS, a caller whose extension has SRTP off gets 488 for an SRTP offer."""
        phone = self.phone("1003", "192.0.2.13", transport="tls")
        self.policy("1003", "off")
        invite, _ = phone.invite("*43", body=secure_offer())
        _, refused = phone.expect(100, 488)
        phone.ack_failure(invite, refused)
        self.assertEqual(self.allocator.in_use, 0)
        phone.disconnect()

    def test_offered_caller_gets_srtp_over_tls(self) -> None:
        """With the default policy, an SRTP offer over TLS is answered with pbx's own key."""
        phone = self.phone("1003", "192.0.2.13", transport="tls")
        invite, leg = phone.invite("*43", body=secure_offer())
        _, ok = phone.expect(100, 200)
        answer = parse_sdp(ok.body).media[0]
        self.assertEqual(answer.proto, "RTP/SAVP")
        [crypto] = answer.attribute_values("crypto")
        self.assertNotIn(CALLER_KEY.to_value().split()[-1], crypto)
        phone.confirm(invite, leg, ok)
        phone.in_dialog(leg, "BYE")
        phone.expect(200)
        phone.disconnect()


CALLER_KEY = new_crypto("AES_CM_128_HMAC_SHA1_80", 1)


def secure_offer() -> bytes:
    """A PCMU offer of SRTP only, with one SDES key (RFC 4568 §9.1)."""
    return offer("0", "0 PCMU/8000", proto="RTP/SAVP").replace(
        b"a=sendrecv\r\n", b"a=crypto:" + CALLER_KEY.to_value().encode() + b"\r\na=sendrecv\r\n"
    )
