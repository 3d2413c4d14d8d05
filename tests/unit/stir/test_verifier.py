"""
Tests for :mod:`pbx.stir.verifier`: Identity headers from an independent
signer (PyJWT and ``cryptography`` here), verified end to end with the
certificate served by an in-memory HTTP server, and every way of tampering
marked failed with its reason.
"""

from __future__ import annotations

import base64
import json
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import ec

from treq.testing import RequestTraversalAgent
from twisted.internet.defer import ensureDeferred
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.resource import Resource
from twisted.web.static import Data

from pbx.stir.certificates import TrustAnchors
from pbx.stir.locations import normalise_prefix
from pbx.stir.verdict import Reason, Status, Verdict
from pbx.stir.verifier import Verifier
from pbx.stir.x5u import SignerCache

from support.stir import NOW, make_pki

X5U = "https://certs.example.com/sp.pem"
CALLER = "15551230000"
CALLEE = "15557654321"


def b64(data: bytes) -> str:
    """base64url without padding (RFC 7515 §2)."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


class VerifierTests(SynchronousTestCase):
    """A whole verification, one Identity header at a time."""

    def setUp(self) -> None:
        self.pki = make_pki()
        self.attacker = make_pki("Attacker")
        root = Resource()
        root.putChild(
            b"sp.pem", Data(self.pki.chain_pem(), "application/pem-certificate-chain")
        )
        root.putChild(
            b"copy.pem", Data(self.pki.chain_pem(), "application/pem-certificate-chain")
        )
        root.putChild(
            b"attacker.pem",
            Data(self.attacker.chain_pem(), "application/pem-certificate-chain"),
        )
        self.agent = RequestTraversalAgent(root)
        self.clock = Clock()
        self.clock.advance(NOW)
        self.cache = SignerCache(
            agent=self.agent,
            clock=self.clock,
            trust=TrustAnchors((self.pki.root,)),
            allowed=(normalise_prefix("https://certs.example.com/"),),  # type: ignore[arg-type]
        )
        self.verifier = Verifier(signers=self.cache, max_age=60)
        self.claims: dict[str, Any] = {
            "attest": "A",
            "dest": {"tn": [CALLEE]},
            "iat": int(NOW),
            "orig": {"tn": CALLER},
            "origid": "123e4567-e89b-12d3-a456-426655440000",
        }

    def sign(
        self,
        claims: dict[str, Any] | None = None,
        key: ec.EllipticCurvePrivateKey | None = None,
        x5u: str = X5U,
    ) -> str:
        """A PASSporT signed independently, with PyJWT alone."""
        return jwt.encode(
            claims or self.claims,
            key or self.pki.signer_key,
            algorithm="ES256",
            headers={"ppt": "shaken", "typ": "passport", "x5u": x5u},
        )

    def verify(
        self,
        values: list[str],
        from_tn: Any = "+1-555-123-0000",
        to_tn: Any = CALLEE,
        now: float = NOW,
    ) -> Verdict:
        """Run the verifier, pumping the in-memory HTTP connection."""
        d = ensureDeferred(self.verifier.verify(values, from_tn, to_tn, now))
        self.agent.flush()
        results: list[Any] = []
        d.addBoth(results.append)
        self.assertEqual(len(results), 1)
        self.assertIsInstance(results[0], Verdict)
        return results[0]

    def assertFailed(self, verdict: Verdict, reason: Reason) -> None:
        """The verdict is TN-Validation-Failed for ``reason``."""
        self.assertEqual(
            (verdict.status, verdict.reason), (Status.FAILED, reason), verdict.detail
        )
        self.assertEqual(verdict.verstat, "TN-Validation-Failed")

    def test_independent_signer_passes(self) -> None:
        """A PASSporT from the independent signer, with its certificate at an allowed x5u, passes."""
        verdict = self.verify([f"{self.sign()};info=<{X5U}>;alg=ES256;ppt=shaken"])
        self.assertEqual(verdict.status, Status.PASSED, verdict.detail)
        self.assertEqual(verdict.verstat, "TN-Validation-Passed")
        self.assertEqual(
            (verdict.attest, verdict.origid, verdict.x5u),
            ("A", self.claims["origid"], X5U),
        )

    def test_numbers_from_several_headers(self) -> None:
        """orig may match P-Asserted-Identity while From is anonymous; dest any of To and the Request-URI."""
        value = f"{self.sign()};info=<{X5U}>"
        verdict = self.verify(
            [value], from_tn=[None, "anonymous", "+15551230000"], to_tn=("1001", CALLEE)
        )
        self.assertEqual(verdict.status, Status.PASSED, verdict.detail)

    def test_second_header_passes(self) -> None:
        """When one of several Identity headers passes, the call passes."""
        bad = f"{self.sign(x5u='https://elsewhere.example.org/x.pem')};info=<https://elsewhere.example.org/x.pem>"
        good = f"{self.sign()};info=<{X5U}>"
        self.assertEqual(self.verify([bad, good]).status, Status.PASSED)
        self.assertEqual(self.verify([f"{bad}, {good}"]).status, Status.PASSED)

    def test_tampered_payload(self) -> None:
        """Claims altered after signing: bad signature."""
        head, _, signature = self.sign().split(".")
        body = b64(
            json.dumps(
                dict(self.claims, attest="A", orig={"tn": "15550000000"})
            ).encode()
        )
        verdict = self.verify(
            [f"{head}.{body}.{signature};info=<{X5U}>"], from_tn="15550000000"
        )
        self.assertFailed(verdict, Reason.BAD_SIGNATURE)

    def test_tampered_signature(self) -> None:
        """A signature altered in one byte: bad signature."""
        head, body, signature = self.sign().split(".")
        raw = bytearray(base64.urlsafe_b64decode(signature + "=="))
        raw[-1] ^= 0x80
        self.assertFailed(
            self.verify([f"{head}.{body}.{b64(bytes(raw))};info=<{X5U}>"]),
            Reason.BAD_SIGNATURE,
        )

    def test_tampered_header_x5u(self) -> None:
        """
        x5u changed in the signed header (to a trusted copy of the certificate): bad
        signature; to an untrusted one: untrusted; an info that differs: info mismatch.
        """
        _, body, signature = self.sign().split(".")
        other = "https://certs.example.com/copy.pem"
        head = b64(
            json.dumps(
                {"alg": "ES256", "ppt": "shaken", "typ": "passport", "x5u": other}
            ).encode()
        )
        self.assertFailed(
            self.verify([f"{head}.{body}.{signature};info=<{other}>"]),
            Reason.BAD_SIGNATURE,
        )
        self.assertFailed(
            self.verify([f"{self.sign()};info=<{other}>"]), Reason.INFO_MISMATCH
        )
        attacker = "https://certs.example.com/attacker.pem"
        head = b64(
            json.dumps(
                {"alg": "ES256", "ppt": "shaken", "typ": "passport", "x5u": attacker}
            ).encode()
        )
        self.assertFailed(
            self.verify([f"{head}.{body}.{signature};info=<{attacker}>"]),
            Reason.CERTIFICATE_UNTRUSTED,
        )

    def test_stale(self) -> None:
        """An iat more than max_age old, or ahead, is stale; within it passes."""
        self.claims["iat"] = int(NOW) - 61
        verdict = self.verify([f"{self.sign()};info=<{X5U}>"])
        self.assertFailed(verdict, Reason.STALE)
        self.assertEqual(verdict.response, (403, "Stale Date"))
        self.claims["iat"] = int(NOW) + 61
        self.assertFailed(self.verify([f"{self.sign()};info=<{X5U}>"]), Reason.STALE)
        self.claims["iat"] = int(NOW) - 59
        self.assertEqual(
            self.verify([f"{self.sign()};info=<{X5U}>"]).status, Status.PASSED
        )

    def test_wrong_orig(self) -> None:
        """A PASSporT for another calling number: orig mismatch."""
        self.assertFailed(
            self.verify([f"{self.sign()};info=<{X5U}>"], from_tn="15559999999"),
            Reason.ORIG_MISMATCH,
        )

    def test_wrong_dest(self) -> None:
        """A PASSporT for another called number (a replayed one): dest mismatch."""
        self.assertFailed(
            self.verify([f"{self.sign()};info=<{X5U}>"], to_tn="15550001111"),
            Reason.DEST_MISMATCH,
        )
        self.assertFailed(
            self.verify([f"{self.sign()};info=<{X5U}>"], to_tn="1001"),
            Reason.DEST_MISMATCH,
        )

    def test_untrusted_chain(self) -> None:
        """A PASSporT signed by a certificate from another CA, served at an allowed x5u: untrusted."""
        x5u = "https://certs.example.com/attacker.pem"
        token = self.sign(key=self.attacker.signer_key, x5u=x5u)
        verdict = self.verify([f"{token};info=<{x5u}>"])
        self.assertFailed(verdict, Reason.CERTIFICATE_UNTRUSTED)
        self.assertEqual(verdict.response, (437, "Unsupported Credential"))
        self.assertEqual(verdict.x5u, x5u)

    def test_disallowed_x5u(self) -> None:
        """An x5u outside the allowed prefixes fails with 436 and nothing is fetched."""
        x5u = "https://attacker.example.net/sp.pem"
        verdict = self.verify([f"{self.sign(x5u=x5u)};info=<{x5u}>"])
        self.assertFailed(verdict, Reason.X5U_NOT_ALLOWED)
        self.assertEqual(verdict.response, (436, "Bad Identity Info"))

    def test_header_parameters(self) -> None:
        """A malformed header is 438; alg other than ES256 is 437; another ppt is not SHAKEN's."""
        self.assertFailed(self.verify([f"{self.sign()};info={X5U}"]), Reason.MALFORMED)
        self.assertFailed(
            self.verify([f"{self.sign()};info=<{X5U}>;alg=RS256"]),
            Reason.UNSUPPORTED_ALGORITHM,
        )
        verdict = self.verify([f"{self.sign()};info=<{X5U}>;ppt=div"])
        self.assertEqual(
            (verdict.status, verdict.reason), (Status.NO_VALIDATION, Reason.NOT_SHAKEN)
        )

    def test_nothing_to_verify(self) -> None:
        """No Identity header, or a caller without a number, is No-TN-Validation."""
        verdict = self.verify([])
        self.assertEqual(
            (verdict.status, verdict.reason), (Status.NO_VALIDATION, Reason.NO_IDENTITY)
        )
        self.assertEqual(verdict.verstat, "No-TN-Validation")
        verdict = self.verify([f"{self.sign()};info=<{X5U}>"], from_tn="anonymous")
        self.assertEqual(
            (verdict.status, verdict.reason),
            (Status.NO_VALIDATION, Reason.NOT_A_NUMBER),
        )
        verdict = self.verify([f"{self.sign()};info=<{X5U}>"], from_tn=None)
        self.assertEqual(verdict.reason, Reason.NOT_A_NUMBER)
