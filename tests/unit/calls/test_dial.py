"""
Tests for :meth:`pbx.calls.controller.CallController.dial`: an application
answers a caller, dials an extension and bridges the two, in memory.

The PBX is the one of :mod:`support.app_calls`; a fake application, the
dialler, dials the number its route names and hangs up when the dial is
over.  RTP is put straight into the fake sockets of pbx's two endpoints
(the caller's and the one pbx opened towards the callee), and what they
write is read back.
"""

from __future__ import annotations

from typing import Any

import attrs
import numpy as np

from zope.interface import implementer

from twisted.internet.defer import Deferred

from pbx.calls.dialplan import Dialplan, Route, ToApplication, compile_pattern
from pbx.calls.outbound import OutboundCall
from pbx.interfaces import IDialplanApplication
from pbx.media.channel import Channel, HungUp
from pbx.media.codecs import PCMA, PCMU
from pbx.media.rtp import RTPPacket, parse_rtp
from pbx.sip import timers
from pbx.sip.message import Request
from pbx.testing import FakeUDPPort

from support.app_calls import TICK, AppCallTestCase
from support.divert import Diverter
from support.phones import CALLEE_SDP, Leg, Phone, audio, hold_sdp

CALLER_RTP = ("192.0.2.11", 4000)
CALLEE_RTP = ("192.0.2.12", 5000)


@implementer(IDialplanApplication)
class Dialler:
    """Dials ``args["number"]`` for its caller, notes the outcome, then hangs up."""

    name = "dialler"

    def __init__(self, controller: Any) -> None:
        self.controller = controller
        self.outcomes: list[str] = []
        self.channels: list[Channel] = []

    async def run(self, channel: Channel, args: Any) -> None:
        """Dial, note what came of it, hang up."""
        self.channels.append(channel)
        try:
            outcome = await self.controller.dial(
                channel, args["number"], caller=args.get("caller"), timeout=args.get("timeout"))
        except HungUp:
            self.outcomes.append("hung up")
            raise
        self.outcomes.append(outcome)
        await channel.hangup("dial over")


@implementer(IDialplanApplication)
class Mailbox:
    """A diverted caller's application: notes its channel and args, plays a beep, returns."""

    name = "mailbox"

    def __init__(self) -> None:
        self.runs: list[tuple[Channel, Any]] = []

    async def run(self, channel: Channel, args: Any) -> None:
        """Beep and return."""
        self.runs.append((channel, dict(args)))
        await channel.play(["general/beep"])


def tone(frequency: float, frames: int, rate: int = 8000) -> np.ndarray:
    """``frames`` 20 ms frames of a sine at ``frequency``."""
    t = np.arange(frames * rate // 50) / rate
    return (np.sin(2 * np.pi * frequency * t) * 8000).astype(np.int16)


def correlation(received: np.ndarray, sent: np.ndarray, max_lag: int = 10) -> float:
    """The best normalised correlation of ``received`` with ``sent`` started 0 to ``max_lag`` frames later."""
    best = 0.0
    for lag in range(max_lag + 1):
        part = sent[lag * 160: lag * 160 + len(received)]
        n = min(len(part), len(received))
        if n < 1600:
            break
        a, b = received[:n].astype(float), part[:n].astype(float)
        best = max(best, float(np.dot(a, b) / (np.linalg.norm(a) * np.linalg.norm(b) + 1e-9)))
    return best


class DialTestCase(AppCallTestCase):
    """The PBX of support.app_calls with the dialler on *50 (1002), *51 (1003), *52 (1999) and *53 (1002, 5 s)."""

    def setUp(self) -> None:
        """Route the dial numbers and register the dialler."""
        super().setUp()
        routes = {
            "*50": {"number": "1002"},
            "*51": {"number": "1003"},
            "*52": {"number": "1999"},
            "*53": {"number": "1002", "timeout": 5},
            "*54": {"number": "1002", "caller": "0800"},
        }
        self.controller.config = attrs.evolve(
            self.controller.config,
            dialplan=Dialplan(self.controller.config.dialplan.routes + tuple(
                Route(n, compile_pattern(n), ToApplication("dialler", args)) for n, args in routes.items())),
        )
        self.dialler = Dialler(self.controller)
        self.controller.applications["dialler"] = self.dialler
        self.rtp_sequence = {CALLER_RTP: 0, CALLEE_RTP: 0}

    # -- signalling ----------------------------------------------------------

    def call_dialler(self, number: str = "*50", *callees: Phone) -> tuple[Request, Leg, FakeUDPPort, list[Request]]:
        """
        The caller calls ``number``: pbx answers at once and the dialler's
        INVITE reaches each of ``callees``.  Returns the caller's INVITE and
        leg, pbx's RTP socket towards the caller, and the INVITEs.
        """
        invite, leg = self.caller.invite(number)
        ok = self.caller.expect(100, 200)[1]
        self.caller.confirm(invite, leg, ok)
        self.clock.advance(TICK / 2)
        forked = [phone.expect_one("INVITE") for phone in callees]
        return invite, leg, self.clock.udpPorts[audio(ok.body)[1]], forked

    def outbound(self) -> OutboundCall:
        """The one call pbx placed."""
        [leg] = [c for c in self.controller.calls.values() if isinstance(c, OutboundCall)]
        return leg

    def answer(self, forked: Request, body: bytes = CALLEE_SDP) -> tuple[Leg, FakeUDPPort]:
        """The callee rings and answers; pbx ACKs.  Returns the callee's leg and pbx's socket towards it."""
        self.callee.respond(forked, 180)
        self.callee.respond(forked, 200, body=body)
        ack = self.callee.expect_one("ACK")
        self.assertEqual((ack.call_id, str(ack.cseq)), (forked.call_id, f"{forked.cseq.number} ACK"))
        return self.callee.answer_leg(forked), self.clock.udpPorts[audio(forked.body)[1]]

    def caller_bye_answered(self, within: float = 0.0) -> None:
        """pbx sends the caller BYE (the dialler hung up) now or ``within`` seconds of media; the caller answers 200."""
        for _ in range(round(within / TICK)):
            self.deliver()
            if self.caller.inbox:
                break
            self.media(TICK)
        bye = self.caller.expect_one("BYE")
        self.caller.respond(bye, 200)

    # -- media --------------------------------------------------------------------

    def send(self, port: FakeUDPPort, source: tuple[str, int], payload: bytes, pt: int) -> None:
        """One RTP packet from ``source`` to pbx's ``port``."""
        self.rtp_sequence[source] += 1
        n = self.rtp_sequence[source]
        packet = RTPPacket(pt, n, 160 * n, hash(source) & 0xFFFFFFFF, payload)
        port.protocol.datagramReceived(packet.to_bytes(), source)

    def written(self, port: FakeUDPPort, dest: tuple[str, int]) -> list[RTPPacket]:
        """What pbx sent from ``port`` since the last look; all of it to ``dest``."""
        data, port.written = port.written, []
        self.assertEqual({addr for _, addr in data} - {dest}, set())
        return [parse_rtp(d) for d, _ in data]


class DialTests(DialTestCase):
    """Answered dials: the INVITE, ringback, the bridge, and who hangs up."""

    def test_invite(self) -> None:
        """
        The callee's INVITE comes from the caller (name, P-Asserted-Identity)
        and offers PCMU, PCMA and telephone-event at an RTP port of pbx.
        """
        invite, leg, port, [forked] = self.call_dialler("*50", self.callee)
        self.assertEqual(str(forked.uri), self.callee.contact)
        self.assertEqual(forked.from_.uri.user, "1001")
        self.assertEqual(forked.from_.display_name, "User 1001")
        self.assertEqual(forked.to.uri.user, "1002")
        self.assertIn("<sip:1001@pbx.test>", forked.headers.get("P-Asserted-Identity") or "")
        self.assertNotEqual(forked.call_id, invite.call_id)
        self.assertNotIn("timer", forked.headers.get_all("Supported"))
        host, media_port, formats, direction = audio(forked.body)
        self.assertEqual((host, formats, direction), ("127.0.0.1", ["0", "8", "101"], "sendrecv"))
        self.assertTrue(self.clock.udpPorts[media_port].listening)
        self.assertEqual(self.allocator.in_use, 2)
        self.callee.respond(forked, 486)
        self.callee.expect("ACK")
        self.caller_bye_answered()
        self.assertEqual(self.dialler.outcomes, ["busy"])

    def test_caller_given(self) -> None:
        """``caller=`` replaces the channel's caller in From."""
        invite, leg, port, [forked] = self.call_dialler("*54", self.callee)
        self.assertEqual(forked.from_.uri.user, "0800")
        self.callee.respond(forked, 486)
        self.callee.expect("ACK")
        self.caller_bye_answered()

    def test_ringback(self) -> None:
        """The caller hears nothing until the callee rings, ringback while it rings, and none once answered."""
        invite, leg, port, [forked] = self.call_dialler("*50", self.callee)
        self.callee.respond(forked, 100)
        self.media(0.5)
        self.assertEqual(self.written(port, CALLER_RTP), [])
        self.callee.respond(forked, 180)
        self.media(1)
        ringing = self.written(port, CALLER_RTP)
        self.assertEqual(len(ringing), 50)
        decoded = np.concatenate([PCMU().new_decoder().decode(p.payload) for p in ringing])
        self.assertGreater(float(np.sqrt(np.mean(decoded.astype(float) ** 2))), 1000)
        self.callee.respond(forked, 200, body=CALLEE_SDP)
        self.callee.expect("ACK")
        self.media(1)
        self.assertEqual(self.written(port, CALLER_RTP), [])
        self.callee.in_dialog(self.callee.answer_leg(forked), "BYE")
        self.callee.expect(200)
        self.caller_bye_answered()
        self.assertEqual(self.dialler.outcomes, ["answered"])

    def test_media_both_ways(self) -> None:
        """Once answered, audio from the callee (PCMA) reaches the caller (PCMU) and the caller's reaches the callee."""
        invite, leg, caller_port, [forked] = self.call_dialler("*50", self.callee)
        callee_leg, callee_port = self.answer(forked)
        self.media(0.1)
        self.written(caller_port, CALLER_RTP)
        self.written(callee_port, CALLEE_RTP)
        from_callee, from_caller = tone(440, 50), tone(1000, 50)
        alaw, ulaw = PCMA().new_encoder(), PCMU().new_encoder()
        for i in range(50):
            frame = slice(i * 160, (i + 1) * 160)
            self.send(callee_port, CALLEE_RTP, alaw.encode(from_callee[frame]), 8)
            self.send(caller_port, CALLER_RTP, ulaw.encode(from_caller[frame]), 0)
            self.media(TICK)
        self.media(0.2)
        to_caller = self.written(caller_port, CALLER_RTP)
        to_callee = self.written(callee_port, CALLEE_RTP)
        self.assertEqual({p.payload_type for p in to_caller}, {0})
        self.assertEqual({p.payload_type for p in to_callee}, {8})
        self.assertGreaterEqual(len(to_caller), 45)
        self.assertGreaterEqual(len(to_callee), 45)
        heard_by_caller = np.concatenate([PCMU().new_decoder().decode(p.payload) for p in to_caller[:45]])
        heard_by_callee = np.concatenate([PCMA().new_decoder().decode(p.payload) for p in to_callee[:45]])
        self.assertGreater(correlation(heard_by_caller, from_callee), 0.99)
        self.assertGreater(correlation(heard_by_callee, from_caller), 0.99)
        self.callee.in_dialog(callee_leg, "BYE")
        self.callee.expect(200)
        self.caller_bye_answered()

    def test_callee_hangs_up(self) -> None:
        """The callee's BYE ends the bridge: dial() gives "answered", and the leg's record says who hung up."""
        invite, leg, port, [forked] = self.call_dialler("*50", self.callee)
        callee_leg, _ = self.answer(forked)
        self.advance(5)
        self.callee.in_dialog(callee_leg, "BYE")
        self.callee.expect(200)
        self.caller_bye_answered()
        self.assertEqual(self.dialler.outcomes, ["answered"])
        records = {r.leg: r for r in self.store.calls}
        self.assertEqual(sorted(records), ["a", "b"])
        b = records["b"]
        self.assertEqual(
            (b.call_id, b.caller, b.callee, b.disposition, b.hangup_side, b.hangup_cause, b.codecs),
            (forked.call_id, "1001", "1002", "ANSWERED", "b", "BYE", "PCMA"),
        )
        self.assertAlmostEqual(b.billable, 5, places=1)
        self.assertEqual((records["a"].callee, records["a"].disposition), ("*50", "ANSWERED"))

    def test_caller_hangs_up(self) -> None:
        """The caller's BYE while bridged sends BYE to the callee; dial() gives "answered"."""
        invite, leg, port, [forked] = self.call_dialler("*50", self.callee)
        callee_leg, _ = self.answer(forked)
        self.bye(leg)
        bye = self.callee.expect_one("BYE")
        self.assertEqual((bye.call_id, bye.to.tag, str(bye.cseq)), (forked.call_id, self.callee.tag, "2 BYE"))
        self.callee.respond(bye, 200)
        self.assertEqual(self.dialler.outcomes, ["answered"])
        b = {r.leg: r for r in self.store.calls}["b"]
        self.assertEqual((b.hangup_side, b.disposition), ("a", "ANSWERED"))

    def test_forked(self) -> None:
        """With two phones registered, the first to answer wins and the other is cancelled."""
        mobile = self.phone("1002", "192.0.2.13")
        invite, leg, port, [desk, cell] = self.call_dialler("*50", self.callee, mobile)
        mobile.respond(cell, 180)
        callee_leg, _ = self.answer(desk)
        cancel = mobile.expect_one("CANCEL")
        self.assertEqual(cancel.top_via.branch, cell.top_via.branch)
        mobile.respond(cancel, 200)
        mobile.respond(cell, 487)
        mobile.expect("ACK")
        self.callee.in_dialog(callee_leg, "BYE")
        self.callee.expect(200)
        self.caller_bye_answered()
        self.assertEqual(self.dialler.outcomes, ["answered"])

    def test_2xx_retransmission(self) -> None:
        """A retransmitted 200 from the callee is ACKed again."""
        invite, leg, port, [forked] = self.call_dialler("*50", self.callee)
        callee_leg, _ = self.answer(forked)
        self.callee.respond(forked, 200, body=CALLEE_SDP)
        self.callee.expect("ACK")
        self.callee.in_dialog(callee_leg, "BYE")
        self.callee.expect(200)
        self.caller_bye_answered()

    def test_callee_reinvite(self) -> None:
        """
        The callee's re-INVITE (hold) is answered 200 with pbx's port and the
        codec in use, resent until the ACK; RTP then goes to the new address.
        """
        invite, leg, port, [forked] = self.call_dialler("*50", self.callee)
        callee_leg, callee_port = self.answer(forked)
        moved = CALLEE_SDP.replace(b"m=audio 5000", b"m=audio 5002")
        self.callee.in_dialog(callee_leg, "INVITE", body=hold_sdp(moved, "sendonly"))
        ok = self.callee.expect(100, 200)[1]
        host, media_port, formats, direction = audio(ok.body)
        self.assertEqual((host, media_port, formats, direction),
                         ("127.0.0.1", callee_port.port, ["8", "101"], "recvonly"))
        self.advance(0.5)
        self.assertEqual([m.status for m in self.callee.received()], [200])
        self.callee.ack_reinvite(callee_leg)
        self.advance(4)
        self.quiet(self.callee)
        callee_port.written = []
        self.send(port, CALLER_RTP, b"\x55" * 160, 0)
        self.media(0.1)
        self.assertEqual({addr for _, addr in callee_port.written}, {("192.0.2.12", 5002)})
        self.callee.in_dialog(callee_leg, "BYE")
        self.callee.expect(200)
        self.caller_bye_answered()

    def test_info(self) -> None:
        """A DTMF INFO from the callee gets 200."""
        invite, leg, port, [forked] = self.call_dialler("*50", self.callee)
        callee_leg, _ = self.answer(forked)
        request = self.callee.request_to("INFO", callee_leg.target, callee_leg, body=b"Signal=5\r\nDuration=160\r\n")
        request.headers.set("Content-Type", "application/dtmf-relay")
        self.callee.send(request)
        self.callee.expect(200)
        self.callee.in_dialog(callee_leg, "BYE")
        self.callee.expect(200)
        self.caller_bye_answered()

    def test_media_timeout(self) -> None:
        """A bridged callee that sends no RTP for media_timeout seconds is sent BYE; so is the caller."""
        invite, leg, port, [forked] = self.call_dialler("*50", self.callee)
        self.answer(forked)
        waited = 0
        while not self.callee.inbox and waited < 2 * self.calls_config.media_timeout:
            self.send(port, CALLER_RTP, b"\xff" * 160, 0)
            self.advance(1)
            waited += 1
        self.assertGreaterEqual(waited, self.calls_config.media_timeout)
        bye = self.callee.expect_one("BYE")
        self.callee.respond(bye, 200)
        self.caller_bye_answered()
        b = {r.leg: r for r in self.store.calls}["b"]
        self.assertEqual((b.hangup_side, b.hangup_cause), ("pbx", "media timeout"))


class UnansweredTests(DialTestCase):
    """Dials nobody answers: the outcome, forwards, diverters, and a caller who gives up."""

    def test_busy(self) -> None:
        """A busy callee: dial() gives "busy"; the leg's record says BUSY."""
        invite, leg, port, [forked] = self.call_dialler("*50", self.callee)
        self.callee.respond(forked, 486)
        self.callee.expect("ACK")
        self.caller_bye_answered()
        self.assertEqual(self.dialler.outcomes, ["busy"])
        b = {r.leg: r for r in self.store.calls}["b"]
        self.assertEqual((b.disposition, b.answer, b.callee), ("BUSY", None, "1002"))

    def test_no_answer(self) -> None:
        """After the given timeout (5 s) the callee gets CANCEL and dial() gives "no_answer"."""
        invite, leg, port, [forked] = self.call_dialler("*53", self.callee)
        self.callee.respond(forked, 180)
        self.advance(4.75)
        self.quiet(self.callee)
        self.advance(0.25)
        cancel = self.callee.expect_one("CANCEL")
        self.callee.respond(cancel, 200)
        self.callee.respond(forked, 487)
        self.callee.expect("ACK")
        self.caller_bye_answered()
        self.assertEqual(self.dialler.outcomes, ["no_answer"])
        b = {r.leg: r for r in self.store.calls}["b"]
        self.assertEqual((b.disposition, b.hangup_cause), ("NO ANSWER", "ring timeout"))

    def test_default_timeout(self) -> None:
        """Without a timeout the ring timeout of the configuration (30 s) applies."""
        invite, leg, port, [forked] = self.call_dialler("*50", self.callee)
        self.callee.respond(forked, 180)
        self.advance(29.75)
        self.quiet(self.callee)
        self.advance(0.25)
        cancel = self.callee.expect_one("CANCEL")
        self.callee.respond(cancel, 200)
        self.callee.respond(forked, 487)
        self.callee.expect("ACK")
        self.caller_bye_answered()
        self.assertEqual(self.dialler.outcomes, ["no_answer"])

    def test_unavailable(self) -> None:
        """An extension with no registered phone: "unavailable", and nothing rings."""
        self.call_dialler("*51")
        self.caller_bye_answered()
        self.assertEqual(self.dialler.outcomes, ["unavailable"])

    def test_not_found(self) -> None:
        """A number that is no extension: "not_found"."""
        self.call_dialler("*52")
        self.caller_bye_answered()
        self.assertEqual(self.dialler.outcomes, ["not_found"])

    def test_dnd(self) -> None:
        """An extension in do-not-disturb: "busy", and nothing rings."""
        self.store.extensions["1002"] = attrs.evolve(self.store.extensions["1002"], dnd=True)
        self.call_dialler("*50")
        self.quiet(self.callee)
        self.caller_bye_answered()
        self.assertEqual(self.dialler.outcomes, ["busy"])

    def test_forward_busy(self) -> None:
        """A busy callee with forward_busy: the target rings and can answer."""
        self.store.extensions["1002"] = attrs.evolve(self.store.extensions["1002"], forward_busy="1003")
        other = self.phone("1003", "192.0.2.14")
        invite, leg, port, [forked] = self.call_dialler("*50", self.callee)
        self.callee.respond(forked, 486)
        self.callee.expect("ACK")
        forwarded = other.expect_one("INVITE")
        self.assertEqual(forwarded.from_.uri.user, "1001")
        other.respond(forwarded, 200, body=CALLEE_SDP)
        other.expect("ACK")
        other.in_dialog(other.answer_leg(forwarded), "BYE")
        other.expect(200)
        self.caller_bye_answered()
        self.assertEqual(self.dialler.outcomes, ["answered"])

    def test_diverted(self) -> None:
        """
        A busy callee whose diverter names an application: it runs on the
        caller's own channel with the diverter's args, and dial() gives
        "diverted" once it returns.
        """
        mailbox = Mailbox()
        self.controller.applications["mailbox"] = mailbox
        diverter = Diverter("mailbox")
        self.controller.diverters.append(diverter)
        invite, leg, port, [forked] = self.call_dialler("*50", self.callee)
        self.callee.respond(forked, 486)
        self.callee.expect("ACK")
        self.assertEqual(diverter.asked, [("1002", "busy")])
        [(channel, args)] = mailbox.runs
        self.assertIs(channel, self.dialler.channels[0])
        self.assertEqual(args, {"mailbox": "1002", "reason": "busy"})
        self.caller_bye_answered(within=1)
        self.assertGreater(len(self.written(port, CALLER_RTP)), 0)
        self.assertEqual(self.dialler.outcomes, ["diverted"])

    def test_diverted_no_answer(self) -> None:
        """Nobody answering in time is offered to the diverters as no_answer."""
        mailbox = Mailbox()
        self.controller.applications["mailbox"] = mailbox
        self.controller.diverters.append(Diverter("mailbox"))
        invite, leg, port, [forked] = self.call_dialler("*53", self.callee)
        self.callee.respond(forked, 180)
        self.advance(5)
        cancel = self.callee.expect_one("CANCEL")
        self.callee.respond(cancel, 200)
        self.callee.respond(forked, 487)
        self.callee.expect("ACK")
        self.assertEqual([args for _, args in mailbox.runs], [{"mailbox": "1002", "reason": "no_answer"}])
        self.caller_bye_answered(within=1)
        self.assertEqual(self.dialler.outcomes, ["diverted"])

    def test_caller_hangs_up_while_ringing(self) -> None:
        """The caller's BYE while the callee rings cancels the callee's INVITE; dial() fails with HungUp."""
        invite, leg, port, [forked] = self.call_dialler("*50", self.callee)
        self.callee.respond(forked, 180)
        self.bye(leg)
        cancel = self.callee.expect_one("CANCEL")
        self.assertEqual(cancel.top_via.branch, forked.top_via.branch)
        self.callee.respond(cancel, 200)
        self.callee.respond(forked, 487)
        self.callee.expect("ACK")
        self.assertEqual(self.dialler.outcomes, ["hung up"])
        b = {r.leg: r for r in self.store.calls}["b"]
        self.assertEqual((b.disposition, b.hangup_side), ("CANCELLED", "a"))

    def test_caller_hangs_up_before_provisional(self) -> None:
        """A caller hanging up before the callee's first response: the CANCEL waits for it (RFC 3261 §9.1)."""
        invite, leg, port, [forked] = self.call_dialler("*50", self.callee)
        self.bye(leg)
        self.quiet(self.callee)
        self.callee.respond(forked, 180)
        cancel = self.callee.expect_one("CANCEL")
        self.callee.respond(cancel, 200)
        self.callee.respond(forked, 487)
        self.callee.expect("ACK")
        self.assertEqual(self.dialler.outcomes, ["hung up"])

    def test_answer_after_caller_left(self) -> None:
        """A callee answering after the caller hung up is ACKed and sent BYE."""
        invite, leg, port, [forked] = self.call_dialler("*50", self.callee)
        self.callee.respond(forked, 180)
        self.bye(leg)
        self.callee.expect("CANCEL")
        self.callee.respond(forked, 200, body=CALLEE_SDP)
        ack, bye = self.callee.expect("ACK", "BYE")
        self.callee.respond(bye, 200)

    def test_dial_after_hangup(self) -> None:
        """dial() on a channel whose caller already hung up fails with HungUp at once."""
        invite, leg, port, [forked] = self.call_dialler("*50", self.callee)
        channel = self.dialler.channels[0]
        self.callee.respond(forked, 486)
        self.callee.expect("ACK")
        self.caller_bye_answered()
        d: Deferred[str] = self.controller.dial(channel, "1002")
        self.failureResultOf(d, HungUp)

    def test_shutdown_while_ringing(self) -> None:
        """Stopping the controller cancels the ringing callee and hangs up the caller."""
        invite, leg, port, [forked] = self.call_dialler("*50", self.callee)
        self.callee.respond(forked, 180)
        self.controller.stop()
        cancel = self.callee.expect_one("CANCEL")
        self.callee.respond(cancel, 200)
        self.callee.respond(forked, 487)
        self.callee.expect("ACK")
        self.caller_bye_answered()
        self.assertEqual(self.controller.calls, {})
        self.advance(timers.TIMER_H)
