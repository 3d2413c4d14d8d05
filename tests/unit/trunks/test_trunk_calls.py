"""
Calls through trunks, in memory: phones on pbx and scripted carriers at
192.0.2.50 (``carrier``, challenges with digest) and 192.0.2.51 (``backup``).
"""

from __future__ import annotations

import attrs
import numpy as np
from tests.support.phones import (
    CALLEE_SDP,
    CALLER_SDP,
    PBX,
    CallTestCase,
    Leg,
    Phone,
    hold_sdp,
)

from twisted.logger import globalLogPublisher

from pbx.calls.dialplan import parse_dialplan
from pbx.calls.events import CallEvent
from pbx.emergency.options import parse_emergency
from pbx.media.codecs import PCMA, PCMU
from pbx.media.music import MusicClass
from pbx.media.playout import HoldMusic
from pbx.permissions.guard import Guard
from pbx.permissions.options import parse_permissions
from pbx.records import CallRecord
from pbx.sip.auth import DigestAuthenticator, Verdict, compute_ha1, parse_credentials
from pbx.sip.message import Request, Response
from pbx.trunks.config import parse_trunks
from pbx.trunks.hooks import (
    InboundContext,
    InboundVerdict,
    OutboundChange,
    OutboundContext,
)
from pbx.trunks.joins import ask_guard
from pbx.trunks.registry import Trunks

DIALLED = "95552345678"
SENT = "+15552345678"


class TrunkCallTestCase(CallTestCase):
    """CallTestCase with two trunks and a ``9`` route out through them."""

    trunks_config = {
        "carrier": {"uri": "sip:192.0.2.50", "username": "acct-1", "password": "pw-1", "caller_id": "+15551230000",
                    "allow_from": ["192.0.2.50/32"],
                    "dids": {"+15551230000": {"extension": "1002"}, "+15551230009": {"app": "nothing"}}},
        "backup": {"uri": "sip:192.0.2.51", "allow_from": ["192.0.2.51/32"], "caller_id": "+15559990000"},
    }
    rates: dict[str, dict[str, float]] | None = None
    route = {"match": "_9NXXNXXXXXX", "trunk": ["carrier", "backup"], "strip": 1, "prepend": "+1"}

    def setUp(self) -> None:
        """pbx with the trunks; the carriers' phones, not registered."""
        super().setUp()
        self.config = attrs.evolve(self.config, trunks=parse_trunks(self.trunks_config, self.rates),
                                   dialplan=parse_dialplan([self.route]))
        self.controller.config = self.config
        self.controller.trunks = Trunks(self.config.trunks, self.controller.services, self.controller.local_address)
        self.carrier = self.far_end("1003", "192.0.2.50")
        self.backup = self.far_end("1004", "192.0.2.51")
        self.digest = DigestAuthenticator(realm="carrier.example", clock=self.clock, secret=b"c" * 32,
                                          algorithms=("MD5",))

    def far_end(self, user: str, host: str) -> Phone:
        """A carrier's SIP endpoint at ``host`` (not registered with pbx)."""
        phone = Phone(self, user, host)
        self.phones[phone.address] = phone
        return phone

    def dial_out(self, number: str = DIALLED) -> tuple[Request, Leg]:
        """1001 dials ``number``; pbx takes it (100 Trying)."""
        invite, leg = self.caller.invite(number)
        self.caller.expect(100)
        return invite, leg

    def challenge(self, phone: Phone, invite: Request) -> Request:
        """``phone`` answers ``invite`` 407; pbx ACKs and sends the INVITE again with credentials."""
        response = phone.respond(invite, 407, extra=[("Proxy-Authenticate", v) for v in self.digest.challenge()])
        ack, again = phone.expect("ACK", "INVITE")
        self.assertEqual(ack.cseq.number, invite.cseq.number)
        self.assertEqual(response.status, 407)
        return again

    def verify(self, invite: Request) -> Verdict:
        """The carrier's check of the credentials on ``invite``."""
        credentials = parse_credentials(invite.headers.get("Proxy-Authorization") or "")
        return self.digest.verify(
            credentials, "INVITE",
            lambda user, algorithm: compute_ha1(user, "carrier.example", "pw-1", algorithm) if user == "acct-1"
            else None,
            uri=str(invite.uri),
        )

    def connect(self, phone: Phone, invite: Request, leg: Leg, caller_invite: Request) -> Leg:
        """``phone`` rings and answers; the caller gets 180 and 200 and ACKs; returns the far end's leg."""
        phone.respond(invite, 180)
        phone.respond(invite, 200, body=CALLEE_SDP)
        phone.expect("ACK")
        ringing, ok = self.caller.expect(180, 200)
        assert isinstance(ok, Response)
        self.caller.confirm(caller_invite, leg, ok)
        return phone.answer_leg(invite)

    def finish(self, leg: Leg, phone: Phone) -> None:
        """The caller hangs up; ``phone`` answers the BYE."""
        self.caller.in_dialog(leg, "BYE")
        self.caller.expect(200)
        bye = phone.expect_one("BYE")
        phone.respond(bye, 200)

    def record(self) -> CallRecord:
        """The record of the caller's leg."""
        return self.records()["a"]


class OutboundTests(TrunkCallTestCase):
    """A phone calls out: the INVITE to the carrier, its digest challenge, the record."""

    rates = {"carrier": {"1": 0.6}, "backup": {"1": 0.9}}

    def test_out_with_digest(self) -> None:
        """The carrier's 407 is answered with the trunk's credentials; the call connects and is recorded with its cost."""
        caller_invite, leg = self.dial_out()
        invite = self.carrier.expect_one("INVITE")
        self.assertEqual(str(invite.uri), f"sip:{SENT}@192.0.2.50")
        self.assertEqual(invite.headers.get("To"), f"<sip:{SENT}@192.0.2.50>")
        self.assertEqual(invite.from_.uri.user, "+15551230000")
        self.assertEqual(invite.headers.get("P-Asserted-Identity").split("<")[1], "sip:+15551230000@192.0.2.50>")
        again = self.challenge(self.carrier, invite)
        self.assertEqual((again.call_id, again.cseq.number), (invite.call_id, invite.cseq.number + 1))
        self.assertEqual(self.verify(again), Verdict.OK)
        far = self.connect(self.carrier, again, leg, caller_invite)
        [call] = self.controller.calls.values()
        self.assertEqual(self.controller.trunks.get("carrier").in_use, 1)
        self.assertEqual(call.summary()["trunk"], "carrier")
        self.advance(30)
        self.finish(leg, self.carrier)
        self.assertEqual(far.call_id, again.call_id)
        record = self.record()
        self.assertEqual((record.disposition, record.trunk, record.dialled, record.sent, record.cost),
                         ("ANSWERED", "carrier", DIALLED, SENT, 0.3))
        self.assertEqual(self.controller.trunks.get("carrier").in_use, 0)

    def test_wrong_credentials_are_not_retried_again(self) -> None:
        """
        A second challenge to the retried INVITE ends the attempt (one retry
        per challenge) and the call goes to the next trunk; with none left the
        caller hears 503, never the carrier's 407.
        """
        caller_invite, leg = self.dial_out()
        invite = self.carrier.expect_one("INVITE")
        again = self.challenge(self.carrier, invite)
        self.carrier.respond(again, 407, extra=[("Proxy-Authenticate", v) for v in self.digest.challenge()])
        self.carrier.expect("ACK")
        second = self.backup.expect_one("INVITE")
        self.backup.respond(second, 401, extra=[("WWW-Authenticate", v) for v in self.digest.challenge()])
        self.backup.expect("ACK")  # the backup has no password: nothing to answer with
        failed = self.caller.expect_one(503)
        self.caller.ack_failure(caller_invite, failed)
        self.assertEqual((self.record().trunk, self.record().hangup_cause), ("backup", "503 No Trunk Available"))

    def test_unauthenticated_callers_do_not_go_out(self) -> None:
        """A public trunk route still refuses callers pbx did not authenticate."""
        self.config = attrs.evolve(self.config, dialplan=parse_dialplan([{**self.route, "public": True}]))
        self.controller.config = self.config
        invite, leg = self.caller.invite(DIALLED, authenticate=False)
        refused = self.caller.expect_one(403)
        self.caller.ack_failure(invite, refused)
        self.quiet(self.carrier, self.backup)


class CallerPolicyTests(TrunkCallTestCase):
    """A call out keeps to the SRTP policy of the calling extension."""

    def test_required_caller_offering_plain_refused(self) -> None:
        """An extension that requires SRTP gets 488 for a plain offer out, as on a call to a phone; no trunk is rung."""
        self.store.extensions["1001"] = attrs.evolve(self.store.extensions["1001"], srtp="required")
        invite, leg = self.caller.invite(DIALLED)
        _, refused = self.caller.expect(100, 488)
        self.caller.ack_failure(invite, refused)
        self.quiet(self.carrier, self.backup)
        self.assertEqual(self.record().disposition, "FAILED")


class FailoverTests(TrunkCallTestCase):
    """Which answers make a call try the next trunk."""

    def test_503_fails_over(self) -> None:
        """503 from the carrier: the call goes out on the backup, with the backup's caller ID."""
        caller_invite, leg = self.dial_out()
        invite = self.carrier.expect_one("INVITE")
        self.carrier.respond(invite, 503)
        self.carrier.expect("ACK")
        second = self.backup.expect_one("INVITE")
        self.assertEqual((str(second.uri), second.from_.uri.user), (f"sip:{SENT}@192.0.2.51", "+15559990000"))
        self.connect(self.backup, second, leg, caller_invite)
        self.finish(leg, self.backup)
        self.assertEqual(self.record().trunk, "backup")

    def test_no_failover_on_callee_answers(self) -> None:
        """404, 486 and 603 are the callee's answers: the caller hears them, the backup is not tried."""
        for status in (404, 486, 603):
            caller_invite, leg = self.dial_out()
            invite = self.carrier.expect_one("INVITE")
            self.carrier.respond(invite, status)
            self.carrier.expect("ACK")
            failed = self.caller.expect_one(status)
            self.caller.ack_failure(caller_invite, failed)
            self.quiet(self.backup)

    def test_all_trunks_fail(self) -> None:
        """500 then 503: the caller gets 503 and the record names the last trunk tried."""
        caller_invite, leg = self.dial_out()
        self.carrier.respond(self.carrier.expect_one("INVITE"), 500)
        self.carrier.expect("ACK")
        self.backup.respond(self.backup.expect_one("INVITE"), 503)
        self.backup.expect("ACK")
        failed = self.caller.expect_one(503)
        self.caller.ack_failure(caller_invite, failed)
        self.assertEqual((self.record().disposition, self.record().trunk), ("FAILED", "backup"))

    def test_silent_carrier_fails_over(self) -> None:
        """A carrier that neither rings nor answers in setup_timeout (8 s) is given up for the backup."""
        caller_invite, leg = self.dial_out()
        self.carrier.expect_one("INVITE")
        self.advance(7.5)
        self.carrier.received()  # retransmissions
        self.quiet(self.backup)
        self.advance(0.5)
        second = self.backup.expect_one("INVITE")
        self.connect(self.backup, second, leg, caller_invite)
        self.finish(leg, self.backup)
        self.carrier.received()

    def test_down_and_full_trunks_are_skipped(self) -> None:
        """A trunk OPTIONS marked down is skipped; with every trunk full the caller gets 503."""
        self.controller.trunks.get("carrier").keepalive.state = "down"
        caller_invite, leg = self.dial_out()
        second = self.backup.expect_one("INVITE")
        self.quiet(self.carrier)
        self.connect(self.backup, second, leg, caller_invite)
        self.finish(leg, self.backup)
        backup = self.controller.trunks.get("backup")
        backup.config = attrs.evolve(backup.config, max_calls=1)
        backup.take()
        caller_invite, leg = self.caller.invite(DIALLED)
        failed = self.caller.expect(100, 503)[1]
        self.caller.ack_failure(caller_invite, failed)
        self.assertEqual(failed.reason, "No Trunk Available")
        backup.release()


class LeastCostTests(TrunkCallTestCase):
    """The rate table orders the route's trunks."""

    rates = {"carrier": {"1": 0.02, "1555": 0.05}, "backup": {"1": 0.03}}

    def test_cheapest_first(self) -> None:
        """For +1555... the backup (0.03) is cheaper than the carrier's longer prefix (0.05): it goes first."""
        caller_invite, leg = self.dial_out()
        first = self.backup.expect_one("INVITE")
        self.quiet(self.carrier)
        self.backup.respond(first, 503)
        self.backup.expect("ACK")
        self.carrier.respond(self.carrier.expect_one("INVITE"), 486)
        self.carrier.expect("ACK")
        failed = self.caller.expect_one(486)
        self.caller.ack_failure(caller_invite, failed)


class InboundTests(TrunkCallTestCase):
    """Calls from trunks to DIDs."""

    def carrier_invite(self, number: str, to: str | None = None, phone: Phone | None = None) -> tuple[Request, Leg]:
        """The carrier calls ``number`` at pbx."""
        phone = phone or self.carrier
        uri = f"sip:{number}@{PBX[0]}"
        leg = Leg(f"in-{number}@{phone.host}", f'"Caller" <sip:+13125550100@{phone.host}>;tag=ctag',
                  f"<sip:{to or number}@{PBX[0]}>", uri, 0)
        invite = phone.request_to("INVITE", uri, leg, body=CALLER_SDP)
        phone.send(invite)
        return invite, leg

    def test_did_rings_its_extension(self) -> None:
        """A call to a DID is not challenged and rings the DID's extension, from the caller's number."""
        invite, leg = self.carrier_invite("15551230000")
        self.carrier.expect(100)
        forked = self.callee.expect_one("INVITE")
        self.assertEqual(forked.from_.uri.user, "+13125550100")
        self.callee.respond(forked, 200, body=CALLEE_SDP)
        self.callee.expect("ACK")
        ok = self.carrier.expect_one(200)
        self.carrier.confirm(invite, leg, ok)
        carrier = self.controller.trunks.get("carrier")
        self.assertEqual(carrier.in_use, 1)
        [call] = self.controller.calls.values()
        self.assertEqual((call.summary()["direction"], call.summary()["trunk"]), ("in", "carrier"))
        self.carrier.in_dialog(leg, "BYE")
        self.carrier.expect(200)
        self.callee.respond(self.callee.expect_one("BYE"), 200)
        self.assertEqual(carrier.in_use, 0)
        record = self.record()
        self.assertEqual((record.caller, record.callee, record.trunk, record.dialled, record.disposition),
                         ("+13125550100", "1002", "carrier", "+15551230000", "ANSWERED"))

    def test_full_trunk_refuses(self) -> None:
        """A call from a trunk that carries max_calls already gets 503; the extension does not ring."""
        carrier = self.controller.trunks.get("carrier")
        carrier.config = attrs.evolve(carrier.config, max_calls=1)
        carrier.take()
        invite, leg = self.carrier_invite("15551230000")
        refused = self.carrier.expect_one(503)
        self.carrier.ack_failure(invite, refused)
        self.quiet(self.callee)
        carrier.release()

    def test_unknown_did(self) -> None:
        """A call from a trunk to a number that is none of its DIDs gets 404 and a log line."""
        logged: list[dict[str, object]] = []
        globalLogPublisher.addObserver(logged.append)
        self.addCleanup(globalLogPublisher.removeObserver, logged.append)
        invite, leg = self.carrier_invite("15550000000")
        refused = self.carrier.expect_one(404)
        self.carrier.ack_failure(invite, refused)
        [event] = [e for e in logged if "unknown DID" in str(e.get("log_format", ""))]
        self.assertEqual((event["trunk"], event["caller"], event["number"]), ("carrier", "+13125550100", "15550000000"))
        self.quiet(self.callee)

    def test_did_in_to_header(self) -> None:
        """A carrier that sends to our Contact with the DID in To reaches the DID's extension."""
        invite, leg = self.carrier_invite("acct-1", to="+15551230000")
        self.carrier.expect(100)
        forked = self.callee.expect_one("INVITE")
        self.callee.respond(forked, 486)
        self.callee.expect("ACK")
        busy = self.carrier.expect_one(486)
        self.carrier.ack_failure(invite, busy)

    def test_other_sources_stay_public(self) -> None:
        """A stranger calling a DID is challenged as any unknown caller is."""
        stranger = self.far_end("1004", "192.0.2.99")
        invite, leg = self.carrier_invite("15551230000", phone=stranger)
        challenge = stranger.expect_one(407)
        stranger.ack_failure(invite, challenge)


class HookTests(TrunkCallTestCase):
    """Outbound decorators and inbound verifiers."""

    def test_outbound_hook_adds_and_refuses(self) -> None:
        """A hook sees the context, adds a header and a body part; another refuses the next call."""
        seen: list[OutboundContext] = []

        def sign(context: OutboundContext) -> OutboundChange:
            seen.append(context)
            return OutboundChange(headers=(("Identity", "token;info=<https://x>"),),
                                  parts=(("application/pidf+xml", b"<presence/>"),))

        self.controller.trunks.hooks.outbound.append(sign)
        caller_invite, leg = self.dial_out()
        invite = self.carrier.expect_one("INVITE")
        [context] = seen
        self.assertEqual((context.caller, context.authenticated, context.trunk.name, context.dialled, context.sent,
                          context.caller_id), ("1001", True, "carrier", DIALLED, SENT, "+15551230000"))
        self.assertEqual(invite.headers.get("Identity"), "token;info=<https://x>")
        self.assertTrue(invite.headers.get("Content-Type").startswith("multipart/mixed;boundary="))
        self.assertIn(b"application/sdp", invite.body)
        self.assertIn(b"<presence/>", invite.body)
        self.carrier.respond(invite, 404)
        self.carrier.expect("ACK")
        self.caller.ack_failure(caller_invite, self.caller.expect_one(404))
        self.controller.trunks.hooks.outbound.insert(0, lambda c: OutboundChange(refuse=403, reason="Not Allowed"))
        caller_invite, leg = self.caller.invite(DIALLED)
        refused = self.caller.expect(100, 403)[1]
        self.assertEqual(refused.reason, "Not Allowed")
        self.caller.ack_failure(caller_invite, refused)
        self.quiet(self.carrier, self.backup)

    def test_hook_identity_replaces_ours(self) -> None:
        """A hook that asserts an identity (E911's callback number) is the INVITE's only P-Asserted-Identity."""
        self.controller.trunks.hooks.outbound.append(
            lambda c: OutboundChange(headers=(("P-Asserted-Identity", "<sip:5551230000@pbx;user=phone>"),)))
        caller_invite, leg = self.dial_out()
        invite = self.carrier.expect_one("INVITE")
        self.assertEqual(invite.headers.get_all("P-Asserted-Identity"), ["<sip:5551230000@pbx;user=phone>"])
        self.carrier.respond(invite, 404)
        self.carrier.expect("ACK")
        self.caller.ack_failure(caller_invite, self.caller.expect_one(404))
        self.quiet(self.carrier, self.backup)

    def test_our_identity_without_a_hook(self) -> None:
        """Without a hook asserting one, the INVITE asserts the caller ID the route chose."""
        caller_invite, leg = self.dial_out()
        invite = self.carrier.expect_one("INVITE")
        [identity] = invite.headers.get_all("P-Asserted-Identity")
        self.assertIn("+15551230000", identity)
        self.carrier.respond(invite, 404)
        self.carrier.expect("ACK")
        self.caller.ack_failure(caller_invite, self.caller.expect_one(404))
        self.quiet(self.carrier, self.backup)

    def test_inbound_verifier_rings_an_extension_directly(self) -> None:
        """A verifier naming an extension (a PSAP's callback) rings its phones past DND, even to an unknown DID."""
        self.store.extensions["1002"] = attrs.evolve(self.store.extensions["1002"], dnd=True)
        self.controller.trunks.hooks.inbound.append(lambda context: InboundVerdict(extension="1002"))
        uri = f"sip:+15557770000@{PBX[0]}"
        leg = Leg("in-psap@192.0.2.50", "<sip:911@192.0.2.50>;tag=p", f"<{uri}>", uri, 0)
        invite = self.carrier.request_to("INVITE", uri, leg, body=CALLER_SDP)
        self.carrier.send(invite)
        self.carrier.expect(100)
        forked = self.callee.expect_one("INVITE")
        self.callee.respond(forked, 486)
        self.callee.expect("ACK")
        busy = self.carrier.expect_one(486)
        self.carrier.ack_failure(invite, busy)
        self.assertEqual(self.record().trunk, "carrier")

    def test_inbound_verifier_refuses(self) -> None:
        """An inbound verifier gets the trunk, DID and caller and may refuse the call."""
        seen: list[InboundContext] = []

        def verify(context: InboundContext) -> InboundVerdict:
            seen.append(context)
            return InboundVerdict(refuse=438, reason="Invalid Identity Header")

        self.controller.trunks.hooks.inbound.append(verify)
        uri = f"sip:+15551230000@{PBX[0]}"
        leg = Leg("in-x@192.0.2.50", "<sip:+13125550100@192.0.2.50>;tag=c", f"<{uri}>", uri, 0)
        invite = self.carrier.request_to("INVITE", uri, leg, body=CALLER_SDP)
        self.carrier.send(invite)
        refused = self.carrier.expect_one(438)
        self.carrier.ack_failure(invite, refused)
        [context] = seen
        self.assertEqual((context.trunk.name, context.did, context.caller), ("carrier", "+15551230000", "+13125550100"))
        self.quiet(self.callee)

    def test_permissions_guard_refuses(self) -> None:
        """Joined by ask_guard, the permissions guard refuses a number above the caller's class; nothing goes out."""
        guard = Guard(parse_permissions({"default": "national"}), self.clock, self.store)
        self.controller.trunks.hooks.outbound.append(ask_guard(guard))
        caller_invite, leg = self.caller.invite("99005551234")  # +1 900: premium
        refused = self.caller.expect(100, 403)[1]
        self.assertEqual(refused.reason, "Call Not Permitted")
        self.caller.ack_failure(caller_invite, refused)
        self.quiet(self.carrier, self.backup)


class EmergencyLockoutTests(TrunkCallTestCase):
    """Kari's Law: a lockout never stops 911."""

    def setUp(self) -> None:
        """The carrier is the emergency trunk; 1001's credentials are locked out."""
        super().setUp()
        self.config = attrs.evolve(self.config, emergency=parse_emergency({"trunk": ["carrier"]}))
        self.controller.config = self.config
        lockout = self.authn.lockout
        while not lockout.is_locked(("sip-user", "1001")):
            lockout.record_failure(("sip-user", "1001"))

    def test_locked_out_phone_reaches_the_emergency_trunk(self) -> None:
        """A phone whose credentials are locked out still gets 911 out, with its right credentials."""
        caller_invite, leg = self.dial_out("911")
        invite = self.carrier.expect_one("INVITE")
        self.assertEqual(invite.uri.user, "911")
        self.carrier.respond(invite, 404)
        self.carrier.expect("ACK")
        self.caller.ack_failure(caller_invite, self.caller.expect_one(404))
        self.quiet(self.carrier, self.backup)

    def test_locked_out_phone_refused_other_numbers(self) -> None:
        """The same phone dialling anything else is refused while locked out."""
        invite, _ = self.caller.invite(DIALLED)
        refused = self.caller.expect(100, 403)[1]
        self.caller.ack_failure(invite, refused)
        self.quiet(self.carrier, self.backup)



class InboundVerifierOrderTests(TrunkCallTestCase):
    """What several inbound verifiers decide together."""

    def test_psap_callback_is_not_refused(self) -> None:
        """A later verifier's refusal (a failed Identity) does not stop a call an earlier one sent to an extension."""
        hooks = self.controller.trunks.hooks
        hooks.inbound.append(lambda c: InboundVerdict({"psap_callback": "1002"}, extension="1002"))
        hooks.inbound.append(lambda c: InboundVerdict({"verstat": "TN-Validation-Failed"}, refuse=438,
                                                      reason="Invalid Identity Header"))
        uri = f"sip:+15557770000@{PBX[0]}"
        leg = Leg("in-psap2@192.0.2.50", "<sip:911@192.0.2.50>;tag=p", f"<{uri}>", uri, 0)
        invite = self.carrier.request_to("INVITE", uri, leg, body=CALLER_SDP)
        self.carrier.send(invite)
        self.carrier.expect(100)
        forked = self.callee.expect_one("INVITE")
        self.callee.respond(forked, 486)
        self.callee.expect("ACK")
        busy = self.carrier.expect_one(486)
        self.carrier.ack_failure(invite, busy)

    def test_refusal_before_a_callback_stands(self) -> None:
        """A refusal from a verifier before any that names an extension stands."""
        hooks = self.controller.trunks.hooks
        hooks.inbound.append(lambda c: InboundVerdict(refuse=438, reason="Invalid Identity Header"))
        hooks.inbound.append(lambda c: InboundVerdict(extension="1002"))
        uri = f"sip:+15551230000@{PBX[0]}"
        leg = Leg("in-y@192.0.2.50", "<sip:+13125550100@192.0.2.50>;tag=c", f"<{uri}>", uri, 0)
        invite = self.carrier.request_to("INVITE", uri, leg, body=CALLER_SDP)
        self.carrier.send(invite)
        refused = self.carrier.expect_one(438)
        self.carrier.ack_failure(invite, refused)


class LineMusicTests(TrunkCallTestCase):
    """
    Music on hold in calls over trunks: the outside party hears the line's
    class (a DID's, a route's, else the trunk's), not the holding extension's.
    """

    trunks_config = {
        "carrier": {**TrunkCallTestCase.trunks_config["carrier"], "moh": "trunk",
                    "dids": {"+15551230000": {"extension": "1002", "moh": "sales"},
                             "+15551230001": {"extension": "1002"}}},
        "backup": TrunkCallTestCase.trunks_config["backup"],
    }
    route = {**TrunkCallTestCase.route, "name": "national", "moh": "route"}

    def setUp(self) -> None:
        """Four classes; 1001 and 1002 have their own (``own``), which calls over trunks do not use."""
        super().setUp()
        classes = {name: MusicClass(name, 8000, np.zeros(800)) for name in ("default", "own", "sales", "trunk", "route")}
        self.music = HoldMusic(classes, {"1001": "own", "1002": "own"}, {"pcmu": PCMU(), "pcma": PCMA()},
                               self.controller.media_clock)
        self.controller.music = self.music
        self.events: list[CallEvent] = []
        self.controller.events.subscribe(self.events.append, ("answered",))

    def call_in(self, did: str) -> Leg:
        """The carrier calls ``did`` (1002's); 1002 answers and holds; returns the carrier's leg."""
        uri = f"sip:{did}@{PBX[0]}"
        leg = Leg(f"in-{did}@192.0.2.50", '"Caller" <sip:+13125550100@192.0.2.50>;tag=ctag', f"<{uri}>", uri, 0)
        invite = self.carrier.request_to("INVITE", uri, leg, body=CALLER_SDP)
        self.carrier.send(invite)
        self.carrier.expect(100)
        forked = self.callee.expect_one("INVITE")
        self.callee.respond(forked, 200, body=CALLEE_SDP)
        self.callee.expect("ACK")
        self.carrier.confirm(invite, leg, self.carrier.expect_one(200))
        callee_leg = self.callee.answer_leg(forked)
        self.callee.in_dialog(callee_leg, "INVITE", body=hold_sdp(CALLEE_SDP, "sendonly"))
        self.callee.expect(100, 200)
        self.callee.ack_reinvite(callee_leg)
        return leg

    def hang_up_from_carrier(self, leg: Leg) -> None:
        """The carrier hangs up; 1002 answers pbx's BYE."""
        self.carrier.in_dialog(leg, "BYE")
        self.carrier.expect(200)
        self.callee.respond(self.callee.expect_one("BYE"), 200)

    def test_did_class(self) -> None:
        """A caller to a DID with ``moh:`` hears that class when the extension holds, not the extension's own."""
        leg = self.call_in("15551230000")
        self.assertEqual(self.music.listeners(), {"sales/pcma": 1})
        [answered] = self.events
        self.assertEqual((answered.detail["trunk"], answered.detail["did"]), ("carrier", "+15551230000"))
        self.hang_up_from_carrier(leg)

    def test_trunk_class(self) -> None:
        """A caller to a DID without ``moh:`` hears the trunk's class."""
        leg = self.call_in("15551230001")
        self.assertEqual(self.music.listeners(), {"trunk/pcma": 1})
        self.hang_up_from_carrier(leg)

    def test_route_class(self) -> None:
        """An outside party called by a route with ``moh:`` hears the route's class when the caller holds."""
        caller_invite, leg = self.dial_out()
        invite = self.carrier.expect_one("INVITE")
        self.connect(self.carrier, invite, leg, caller_invite)
        self.caller.in_dialog(leg, "INVITE", body=hold_sdp(CALLER_SDP, "sendonly"))
        self.caller.expect(100, 200)
        self.caller.ack_reinvite(leg)
        self.quiet(self.carrier)
        self.assertEqual(self.music.listeners(), {"route/pcma": 1})
        [answered] = self.events
        self.assertEqual((answered.detail["trunk"], answered.detail["route"]), ("carrier", "national"))
        self.finish(leg, self.carrier)
