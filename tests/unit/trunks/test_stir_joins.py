"""
STIR/SHAKEN joined to the trunks (:func:`pbx.trunks.joins.sign_calls`,
:func:`pbx.trunks.joins.verify_calls`), in memory: the INVITE to a carrier
carries an Identity header a verifier of its own (PyJWT) accepts with the
right attestation; an INVITE from a carrier is verified, the callee's phone
sees ``verstat`` on the caller's number and the call record keeps it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import attrs
import jwt
from tests.support.phones import CALLEE_SDP, CALLER_SDP, PBX, CallTestCase, Leg, Phone
from tests.support.stir import NOW, make_pki

from treq.testing import RequestTraversalAgent
from twisted.internet.defer import ensureDeferred
from twisted.internet.task import Clock
from twisted.web.resource import Resource
from twisted.web.static import Data

from pbx.calls.dialplan import parse_dialplan
from pbx.records import CallRecord
from pbx.sip.message import Request
from pbx.stir.identity import parse_identity
from pbx.stir.options import parse_options
from pbx.stir.passport import Passport, sign
from pbx.stir.service import StirShaken, build_stir_shaken
from pbx.trunks.config import parse_trunks
from pbx.trunks.hooks import (
    InboundContext,
    InboundVerdict,
    OutboundChange,
    OutboundContext,
)
from pbx.trunks.joins import sign_calls, verify_calls
from pbx.trunks.registry import Trunks

X5U = "https://certs.example.com/shaken.pem"
DIALLED = "95552345678"
SENT = "+15552345678"
CALLER = "+13125550100"


class StirTrunkTestCase(CallTestCase):
    """A carrier trunk (192.0.2.50) with DIDs, a ``9`` route, and STIR/SHAKEN signing and verifying."""

    trunks_config = {
        "carrier": {
            "uri": "sip:192.0.2.50",
            "caller_id": "+15551230000",
            "allow_from": ["192.0.2.50/32"],
            "dids": {"+15551230000": {"extension": "1002"}},
        },
        "backup": {
            "uri": "sip:192.0.2.51",
            "allow_from": ["192.0.2.51/32"],
            "caller_id": "+15559990000",
        },
    }
    reject_failed = False

    def setUp(self) -> None:
        """pbx with the trunks; a test PKI, its certificate served at X5U in memory."""
        super().setUp()
        self.config = attrs.evolve(
            self.config,
            trunks=parse_trunks(self.trunks_config),
            dialplan=parse_dialplan(
                [
                    {
                        "match": "_9NXXNXXXXXX",
                        "trunk": ["carrier"],
                        "strip": 1,
                        "prepend": "+1",
                    }
                ]
            ),
        )
        self.controller.config = self.config
        self.controller.trunks = Trunks(
            self.config.trunks, self.controller.services, self.controller.local_address
        )
        self.carrier = Phone(self, "1003", "192.0.2.50")
        self.phones[self.carrier.address] = self.carrier
        self.pki = make_pki()
        folder = Path(self.mktemp())
        folder.mkdir()
        (folder / "shaken.pem").write_bytes(self.pki.chain_pem())
        (folder / "shaken.key").write_bytes(self.pki.signer_key_pem())
        (folder / "ca.pem").write_bytes(self.pki.root_pem())
        root = Resource()
        root.putChild(
            b"shaken.pem",
            Data(self.pki.chain_pem(), "application/pem-certificate-chain"),
        )
        self.agent = RequestTraversalAgent(root)
        # The PKI is valid around NOW; the switch's own clock stays where the phones registered.
        self.stir_clock = Clock()
        self.stir_clock.advance(NOW)
        options = parse_options(
            {
                "certificate": "shaken.pem",
                "key": "shaken.key",
                "x5u": X5U,
                "trust": ["ca.pem"],
                "reject_failed": self.reject_failed,
            },
            folder,
        )
        assert options is not None
        self.stir: StirShaken = build_stir_shaken(options, self.stir_clock, self.agent)
        hooks = self.controller.trunks.hooks
        hooks.outbound.append(sign_calls(self.stir))
        hooks.inbound.append(verify_calls(self.stir, self.stir_clock))

    def claims(self, identity: str) -> dict[str, Any]:
        """The PASSporT in ``identity``, checked by PyJWT with the signer's public key (not pbx's verifier)."""
        token = identity.split(";", 1)[0]
        header = jwt.get_unverified_header(token)
        self.assertEqual(
            (header["alg"], header["ppt"], header["typ"], header["x5u"]),
            ("ES256", "shaken", "passport", X5U),
        )
        return jwt.decode(
            token,
            self.pki.signer_key.public_key(),
            algorithms=["ES256"],
            options={"verify_iat": False},
        )

    def identity(self, orig: str, dest: str, key: Any = None) -> str:
        """An Identity header value a carrier's signer would send, signed with ``key`` (the PKI's signer's)."""
        passport = Passport.new(attest="A", orig=orig, dest=dest, iat=int(NOW), x5u=X5U)
        token = sign(passport, key or self.pki.signer_key)
        return f"{token};info=<{X5U}>;alg=ES256;ppt=shaken"

    def carrier_invite(self, extra: list[tuple[str, str]]) -> tuple[Request, Leg]:
        """The carrier calls the DID +15551230000 from CALLER with ``extra`` headers; the x5u fetch answered."""
        uri = f"sip:+15551230000@{PBX[0]}"
        leg = Leg(
            "in-stir@192.0.2.50",
            f"<sip:{CALLER}@192.0.2.50;user=phone>;tag=c",
            f"<{uri}>",
            uri,
            0,
        )
        invite = self.carrier.request_to(
            "INVITE",
            uri,
            leg,
            body=CALLER_SDP,
            extra=[("P-Asserted-Identity", f"<sip:{CALLER}@192.0.2.50>"), *extra],
        )
        self.carrier.send(invite)
        self.agent.flush()
        self.deliver()
        return invite, leg

    def record(self) -> CallRecord:
        """The record of the caller's leg."""
        return self.records()["a"]


class SigningTests(StirTrunkTestCase):
    """Outbound INVITEs to trunks carry a SHAKEN PASSporT."""

    def test_invite_to_carrier_is_signed_a(self) -> None:
        """An extension presenting the trunk's DID: Identity with attest A, orig the DID, dest the number sent."""
        caller_invite, leg = self.caller.invite(DIALLED)
        self.caller.expect(100)
        invite = self.carrier.expect_one("INVITE")
        identity = invite.headers.get("Identity")
        self.assertIsNotNone(identity)
        self.assertEqual(parse_identity(identity).info, X5U)
        claims = self.claims(identity)
        self.assertEqual(
            (claims["attest"], claims["orig"], claims["dest"], claims["iat"]),
            ("A", {"tn": "15551230000"}, {"tn": ["15552345678"]}, int(NOW)),
        )
        self.carrier.respond(invite, 404)
        self.carrier.expect("ACK")
        self.caller.ack_failure(caller_invite, self.caller.expect_one(404))

    def hook(self, **context: Any) -> OutboundChange:
        """What sign_calls adds for an outbound context through ``carrier`` (defaults changed by ``context``)."""
        values: dict[str, Any] = {
            "caller": "1001",
            "authenticated": True,
            "trunk": self.config.trunks.get("carrier"),
            "dialled": DIALLED,
            "sent": SENT,
            "caller_id": "+15551230000",
            "call_id": "c1",
        }
        values.update(context)
        change = sign_calls(self.stir)(OutboundContext(**values))
        assert isinstance(change, OutboundChange)
        return change

    def test_attestation_levels(self) -> None:
        """A: authenticated with one of the trunk's DIDs; B: authenticated, another number; C: only relayed."""
        levels = [
            self.claims(dict(self.hook(**changes).headers)["Identity"])["attest"]
            for changes in (
                {},
                {"caller_id": "+15559990000"},
                {"caller": CALLER, "authenticated": False, "caller_id": CALLER},
            )
        ]
        self.assertEqual(levels, ["A", "B", "C"])

    def test_b_on_a_trunk_whose_dids_are_others(self) -> None:
        """The same number is A on the trunk that owns it and B on a trunk that does not."""
        change = self.hook(trunk=self.config.trunks.get("backup"))
        self.assertEqual(self.claims(dict(change.headers)["Identity"])["attest"], "B")

    def test_anonymous_caller_is_not_signed(self) -> None:
        """A caller ID that is no telephone number gets no Identity header (nothing to sign)."""
        self.assertIsNone(
            sign_calls(self.stir)(
                OutboundContext(
                    "1001",
                    True,
                    self.config.trunks.get("carrier"),
                    DIALLED,
                    SENT,
                    "anonymous",
                )
            )
        )


class VerifyingTests(StirTrunkTestCase):
    """Inbound INVITEs from trunks are verified; the callee's phone and the record see the outcome."""

    def ring_and_hang_up(self, invite: Request, leg: Leg) -> Request:
        """The DID's extension rings and answers, the carrier hangs up; the INVITE the phone got."""
        self.carrier.expect(100)
        forked = self.callee.expect_one("INVITE")
        self.callee.respond(forked, 200, body=CALLEE_SDP)
        self.callee.expect("ACK")
        self.carrier.confirm(invite, leg, self.carrier.expect_one(200))
        self.carrier.in_dialog(leg, "BYE")
        self.carrier.expect(200)
        self.callee.respond(self.callee.expect_one("BYE"), 200)
        return forked

    def test_passed(self) -> None:
        """A good Identity: From and P-Asserted-Identity to the phone say TN-Validation-Passed; so does the record."""
        invite, leg = self.carrier_invite(
            [("Identity", self.identity(CALLER, "+15551230000"))]
        )
        forked = self.ring_and_hang_up(invite, leg)
        self.assertEqual(
            forked.from_.uri.user, f"{CALLER};verstat=TN-Validation-Passed"
        )
        self.assertIn(
            f"<sip:{CALLER};verstat=TN-Validation-Passed@",
            forked.headers.get("P-Asserted-Identity"),
        )
        self.assertEqual(
            (self.record().trunk, self.record().verstat),
            ("carrier", "TN-Validation-Passed"),
        )

    def test_no_identity(self) -> None:
        """No Identity header: No-TN-Validation, to the phone and in the record."""
        invite, leg = self.carrier_invite([])
        forked = self.ring_and_hang_up(invite, leg)
        self.assertEqual(forked.from_.uri.user, f"{CALLER};verstat=No-TN-Validation")
        self.assertEqual(self.record().verstat, "No-TN-Validation")

    def test_tampered_is_marked_failed(self) -> None:
        """A PASSporT for another caller (orig mismatch) is TN-Validation-Failed; the call still rings."""
        invite, leg = self.carrier_invite(
            [("Identity", self.identity("+13125550199", "+15551230000"))]
        )
        forked = self.ring_and_hang_up(invite, leg)
        self.assertEqual(
            forked.from_.uri.user, f"{CALLER};verstat=TN-Validation-Failed"
        )
        self.assertEqual(self.record().verstat, "TN-Validation-Failed")

    def test_verstat_from_the_carrier_is_replaced(self) -> None:
        """A verstat the carrier put on the caller's number is not passed on as it was."""
        uri = f"sip:+15551230000@{PBX[0]}"
        leg = Leg(
            "in-forged@192.0.2.50",
            f"<sip:{CALLER};verstat=TN-Validation-Passed@192.0.2.50>;tag=c",
            f"<{uri}>",
            uri,
            0,
        )
        self.carrier.send(self.carrier.request_to("INVITE", uri, leg, body=CALLER_SDP))
        self.carrier.expect(100)
        forked = self.callee.expect_one("INVITE")
        self.assertEqual(forked.from_.uri.user.count("verstat="), 1)
        self.assertTrue(forked.from_.uri.user.endswith(";verstat=No-TN-Validation"))
        self.callee.respond(forked, 486)
        self.callee.expect("ACK")
        self.carrier.expect_one(486)

    def test_verifier_notes(self) -> None:
        """The verifier's notes name the verstat and why (logged with the call)."""
        context_invite = self.carrier.request_to(
            "INVITE",
            f"sip:+15551230000@{PBX[0]}",
            Leg(
                "n@192.0.2.50",
                f"<sip:{CALLER}@192.0.2.50>;tag=c",
                "<sip:+15551230000@pbx>",
                f"sip:+15551230000@{PBX[0]}",
                0,
            ),
            extra=[
                (
                    "Identity",
                    self.identity(CALLER, "+15551230000", key=make_pki().signer_key),
                )
            ],
        )
        d = ensureDeferred(
            verify_calls(self.stir, self.stir_clock)(
                InboundContext(
                    self.config.trunks.get("carrier"),
                    context_invite,
                    "+15551230000",
                    CALLER,
                )
            )
        )
        self.agent.flush()
        verdict = self.successResultOf(d)
        self.assertIsInstance(verdict, InboundVerdict)
        self.assertEqual(
            (dict(verdict.notes), verdict.refuse),
            ({"verstat": "TN-Validation-Failed", "stir": "bad-signature"}, 0),
        )


class RejectingTests(StirTrunkTestCase):
    """``reject_failed: true`` refuses a failed call with RFC 8224's status."""

    reject_failed = True

    def test_tampered_is_refused(self) -> None:
        """A PASSporT signed by another key gets 438 Invalid Identity Header; the phone never rings."""
        forged = self.identity(CALLER, "+15551230000", key=make_pki().signer_key)
        invite, leg = self.carrier_invite([("Identity", forged)])
        refused = self.carrier.expect_one(438)
        self.assertEqual(refused.reason, "Invalid Identity Header")
        self.carrier.ack_failure(invite, refused)
        self.quiet(self.callee)

    def test_no_identity_is_not_refused(self) -> None:
        """A call with no Identity header is no failure: it rings, marked No-TN-Validation."""
        invite, leg = self.carrier_invite([])
        self.carrier.expect(100)
        forked = self.callee.expect_one("INVITE")
        self.assertEqual(forked.from_.uri.user, f"{CALLER};verstat=No-TN-Validation")
        self.callee.respond(forked, 486)
        self.callee.expect("ACK")
        self.carrier.ack_failure(invite, self.carrier.expect_one(486))
