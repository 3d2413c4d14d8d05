"""
Tests for :mod:`pbx.stir.service`: the two calls a trunk makes, built from
options and files, signing on one side and verifying on the other.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jwt

from zope.interface.verify import verifyObject

from treq.testing import RequestTraversalAgent
from twisted.internet.defer import ensureDeferred
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.resource import Resource
from twisted.web.static import Data

from pbx.sip.uri import parse_uri
from pbx.stir.identity import parse_identity
from pbx.stir.interfaces import IStirShaken
from pbx.stir.options import parse_options
from pbx.stir.service import StirShaken, build_stir_shaken
from pbx.stir.signer import OutboundCall
from pbx.stir.verdict import Reason, Status, Verdict, with_verstat

from support.stir import NOW, make_pki

X5U = "https://certs.example.com/shaken.pem"
DIDS = frozenset({"15551230000", "15551230001"})


class ServiceTests(SynchronousTestCase):
    """One pbx signs, another (the same object here) verifies."""

    def setUp(self) -> None:
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
        self.clock = Clock()
        self.clock.advance(NOW)
        self.raw: dict[str, Any] = {
            "certificate": "shaken.pem",
            "key": "shaken.key",
            "x5u": X5U,
            "trust": ["ca.pem"],
        }
        self.folder = folder

    def build(self, **changes: Any) -> StirShaken:
        """The service from ``self.raw`` plus ``changes``."""
        options = parse_options(dict(self.raw, **changes), self.folder)
        assert options is not None
        return build_stir_shaken(options, self.clock, self.agent)

    def verify(
        self, stir: StirShaken, values: list[str], from_tn: Any, to_tn: Any
    ) -> Verdict:
        """verify_inbound, the in-memory HTTP pumped."""
        d = ensureDeferred(
            stir.verify_inbound(values, from_tn, to_tn, self.clock.seconds())
        )
        self.agent.flush()
        results: list[Any] = []
        d.addBoth(results.append)
        self.assertIsInstance(results[0], Verdict)
        return results[0]

    def test_interface(self) -> None:
        """The service provides IStirShaken."""
        self.assertTrue(verifyObject(IStirShaken, self.build()))

    def test_round_trip(self) -> None:
        """An outbound call signed with attestation A verifies as passed at the far end."""
        stir = self.build()
        value = stir.sign_outbound(
            OutboundCall(
                calling="+15551230000",
                called="+1 555 765 4321",
                authenticated=True,
                trunk_dids=DIDS,
            )
        )
        assert value is not None
        header = parse_identity(value)
        self.assertEqual(
            (header.info, header.alg, header.ppt), (X5U, "ES256", "shaken")
        )
        claims = jwt.decode(
            header.token,
            self.pki.signer_key.public_key(),
            algorithms=["ES256"],
            options={"verify_iat": False},
        )
        self.assertEqual((claims["attest"], claims["iat"]), ("A", int(NOW)))
        self.assertEqual(
            (claims["orig"], claims["dest"]),
            ({"tn": "15551230000"}, {"tn": ["15557654321"]}),
        )
        self.clock.advance(2)
        verdict = self.verify(stir, [value], "+15551230000", "15557654321")
        self.assertEqual((verdict.status, verdict.attest), (Status.PASSED, "A"))
        caller = with_verstat(
            parse_uri("sip:+15551230000@carrier.example.com;user=phone"), verdict
        )
        self.assertEqual(caller.user, "+15551230000;verstat=TN-Validation-Passed")

    def test_attestation_levels(self) -> None:
        """B for an authenticated caller with a foreign number, C for a relayed call."""
        stir = self.build()
        for call, level in (
            (
                OutboundCall(
                    "+15559990000", "15557654321", authenticated=True, trunk_dids=DIDS
                ),
                "B",
            ),
            (
                OutboundCall(
                    "+15551230000",
                    "15557654321",
                    authenticated=True,
                    trunk_dids=DIDS,
                    relayed=True,
                ),
                "C",
            ),
            (
                OutboundCall(
                    "+15551230000", "15557654321", authenticated=False, trunk_dids=DIDS
                ),
                "C",
            ),
        ):
            value = stir.sign_outbound(call)
            assert value is not None
            self.assertEqual(
                jwt.decode(
                    parse_identity(value).token, options={"verify_signature": False}
                )["attest"],
                level,
            )

    def test_nothing_to_sign(self) -> None:
        """An anonymous caller or a callee that is no number gets no Identity header."""
        stir = self.build()
        self.assertIsNone(
            stir.sign_outbound(
                OutboundCall("anonymous", "15557654321", authenticated=True)
            )
        )
        self.assertIsNone(
            stir.sign_outbound(OutboundCall("15551230000", "sales", authenticated=True))
        )

    def test_halves(self) -> None:
        """Without signing options nothing is signed; without trust nothing is verified."""
        verify_only = self.build(certificate=None, key=None, x5u=None)
        self.assertIsNone(
            verify_only.sign_outbound(
                OutboundCall("15551230000", "15557654321", authenticated=True)
            )
        )
        sign_only = self.build(trust=None)
        value = sign_only.sign_outbound(
            OutboundCall("15551230000", "15557654321", authenticated=True)
        )
        assert value is not None
        verdict = self.verify(sign_only, [value], "15551230000", "15557654321")
        self.assertEqual(
            (verdict.status, verdict.reason),
            (Status.NO_VALIDATION, Reason.NOT_CONFIGURED),
        )

    def test_off(self) -> None:
        """Switched off, nothing is signed, nothing verified, nothing refused."""
        stir = StirShaken.off()
        self.assertTrue(verifyObject(IStirShaken, stir))
        call = OutboundCall("15551230000", "15557654321", authenticated=True)
        self.assertIsNone(stir.sign_outbound(call))
        value = self.build().sign_outbound(call)
        assert value is not None
        verdict = self.verify(stir, [value], "15551230000", "15557654321")
        self.assertEqual(verdict.status, Status.NO_VALIDATION)
        self.assertIsNone(stir.rejection(verdict))

    def test_reject_policy(self) -> None:
        """Failed calls are refused only when reject_failed is set, with RFC 8224's response."""
        value = self.build().sign_outbound(
            OutboundCall("15551230000", "15557654321", authenticated=True)
        )
        assert value is not None
        self.clock.advance(120)
        lenient, strict = self.build(), self.build(reject_failed=True)
        verdict = self.verify(strict, [value], "15551230000", "15557654321")
        self.assertEqual(verdict.reason, Reason.STALE)
        self.assertIsNone(lenient.rejection(verdict))
        self.assertEqual(strict.rejection(verdict), (403, "Stale Date"))
        fresh = strict.sign_outbound(
            OutboundCall("15551230000", "15557654321", authenticated=True)
        )
        assert fresh is not None
        forged = self.verify(strict, [fresh], "15550000000", "15557654321")
        self.assertEqual(forged.reason, Reason.ORIG_MISMATCH)
        self.assertEqual(strict.rejection(forged), (438, "Invalid Identity Header"))
        self.assertIsNone(
            strict.rejection(self.verify(strict, [], "15551230000", "15557654321"))
        )
