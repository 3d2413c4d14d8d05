"""
Tests for :mod:`pbx.stir.passport` against a PASSporT signer and verifier
written here from PyJWT and ``cryptography`` alone (ATIS-1000074 §5.2).
"""

from __future__ import annotations

import base64
import json
import uuid

import jwt
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import (
    decode_dss_signature,
    encode_dss_signature,
)

from twisted.trial.unittest import SynchronousTestCase

from pbx.stir.passport import Passport, PassportError, read_header, sign, verify
from pbx.stir.verdict import Reason

X5U = "https://certs.example.com/shaken.pem"


def independent_verify(token: str, key: ec.EllipticCurvePublicKey) -> tuple[dict, dict]:
    """Verify a PASSporT as a third party would: split the JWS, check ES256 by hand with cryptography."""
    head, body, signature = token.split(".")
    raw = base64.urlsafe_b64decode(signature + "=" * (-len(signature) % 4))
    assert len(raw) == 64, "ES256 signatures are r || s, 32 bytes each (RFC 7518 §3.4)"
    der = encode_dss_signature(
        int.from_bytes(raw[:32], "big"), int.from_bytes(raw[32:], "big")
    )
    key.verify(der, f"{head}.{body}".encode("ascii"), ec.ECDSA(hashes.SHA256()))

    def part(text: str) -> dict:
        return json.loads(base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)))

    return part(head), part(body)


def independent_sign(
    key: ec.EllipticCurvePrivateKey, claims: dict, header: dict | None = None
) -> str:
    """Sign a SHAKEN PASSporT as another vendor would, with PyJWT directly."""
    headers = (
        {"ppt": "shaken", "typ": "passport", "x5u": X5U} if header is None else header
    )
    return jwt.encode(claims, key, algorithm="ES256", headers=headers)


class SigningTests(SynchronousTestCase):
    """PASSporTs pbx signs are what an independent verifier expects."""

    def setUp(self) -> None:
        self.key = ec.generate_private_key(ec.SECP256R1())

    def test_independent_verifier_accepts(self) -> None:
        """The signature checks with cryptography alone; header and claims are SHAKEN's, numbers canonical."""
        passport = Passport.new(
            attest="A",
            orig="+1 (555) 123-0000",
            dest="+15557654321",
            iat=1_800_000_000,
            x5u=X5U,
        )
        header, claims = independent_verify(
            sign(passport, self.key), self.key.public_key()
        )
        self.assertEqual(
            header, {"alg": "ES256", "ppt": "shaken", "typ": "passport", "x5u": X5U}
        )
        self.assertEqual(
            claims,
            {
                "attest": "A",
                "dest": {"tn": ["15557654321"]},
                "iat": 1_800_000_000,
                "orig": {"tn": "15551230000"},
                "origid": passport.origid,
            },
        )
        self.assertEqual(str(uuid.UUID(passport.origid)), passport.origid)

    def test_pyjwt_accepts(self) -> None:
        """PyJWT's own ES256 verification accepts it too."""
        token = sign(
            Passport.new(
                attest="B", orig="15551230000", dest="15557654321", iat=5, x5u=X5U
            ),
            self.key,
        )
        claims = jwt.decode(
            token,
            self.key.public_key(),
            algorithms=["ES256"],
            options={"verify_iat": False},
        )
        self.assertEqual(claims["attest"], "B")

    def test_claims_sorted(self) -> None:
        """Header and claim keys are serialised in lexicographic order, without white space (RFC 8225 §9)."""
        passport = Passport.new(
            attest="C", orig="1555", dest=("1666", "1777"), iat=7, x5u=X5U, origid="o-1"
        )
        head, body, _ = sign(passport, self.key).split(".")
        text = base64.urlsafe_b64decode(body + "==").decode()
        expected = '{"attest":"C","dest":{"tn":["1666","1777"]},"iat":7,"orig":{"tn":"1555"},"origid":"o-1"}'
        self.assertEqual(text, expected)
        header = base64.urlsafe_b64decode(head + "==").decode()
        self.assertEqual(list(json.loads(header)), ["alg", "ppt", "typ", "x5u"])

    def test_each_call_a_new_origid(self) -> None:
        """Without an origid given, each PASSporT gets a new UUID; a given one is kept."""
        a = Passport.new(attest="A", orig="1", dest="2", iat=0, x5u=X5U)
        b = Passport.new(attest="A", orig="1", dest="2", iat=0, x5u=X5U)
        self.assertNotEqual(a.origid, b.origid)
        c = Passport.new(attest="A", orig="1", dest="2", iat=0, x5u=X5U, origid="fixed")
        self.assertEqual(c.origid, "fixed")

    def test_bad_input(self) -> None:
        """An unknown attestation, a number that is not one, or no destination is refused."""
        with self.assertRaises(ValueError):
            Passport.new(attest="D", orig="1", dest="2", iat=0, x5u=X5U)
        with self.assertRaises(ValueError):
            Passport.new(attest="A", orig="alice", dest="2", iat=0, x5u=X5U)
        with self.assertRaises(ValueError):
            Passport.new(attest="A", orig="1", dest=(), iat=0, x5u=X5U)

    def test_signature_is_fixed_length(self) -> None:
        """The signature is the 64-byte raw r || s form, not DER (RFC 7518 §3.4)."""
        token = sign(
            Passport.new(attest="A", orig="1", dest="2", iat=0, x5u=X5U), self.key
        )
        raw = base64.urlsafe_b64decode(token.split(".")[2] + "==")
        self.assertEqual(len(raw), 64)
        with self.assertRaises(ValueError):
            decode_dss_signature(raw)


class VerifyingTests(SynchronousTestCase):
    """pbx verifies PASSporTs from an independent signer and refuses altered ones."""

    def setUp(self) -> None:
        self.key = ec.generate_private_key(ec.SECP256R1())
        self.claims = {
            "attest": "A",
            "dest": {"tn": ["15557654321"]},
            "iat": 1_800_000_000,
            "orig": {"tn": "15551230000"},
            "origid": "123e4567-e89b-12d3-a456-426655440000",
        }

    def test_independent_signer(self) -> None:
        """A PASSporT signed with PyJWT alone reads back as the same claims."""
        token = independent_sign(self.key, self.claims)
        self.assertEqual(read_header(token)["x5u"], X5U)
        passport = verify(token, self.key.public_key())
        self.assertEqual(
            passport,
            Passport(
                attest="A",
                orig_tn="15551230000",
                dest_tns=("15557654321",),
                iat=1_800_000_000,
                origid="123e4567-e89b-12d3-a456-426655440000",
                x5u=X5U,
            ),
        )

    def test_plus_in_claims(self) -> None:
        """A signer that left the + on its numbers is read canonically."""
        self.claims["orig"] = {"tn": "+15551230000"}
        passport = verify(
            independent_sign(self.key, self.claims), self.key.public_key()
        )
        self.assertEqual(passport.orig_tn, "15551230000")

    def assertReason(
        self, reason: Reason, token: str, key: ec.EllipticCurvePublicKey | None = None
    ) -> None:
        """Reading or verifying ``token`` fails with ``reason``."""
        with self.assertRaises(PassportError) as caught:
            read_header(token)
            verify(token, key or self.key.public_key())
        self.assertIs(caught.exception.reason, reason, str(caught.exception))

    def test_tampered_payload(self) -> None:
        """Claims changed after signing (another orig) fail the signature."""
        head, _, signature = independent_sign(self.key, self.claims).split(".")
        forged = dict(self.claims, orig={"tn": "15559999999"})
        body = (
            base64.urlsafe_b64encode(json.dumps(forged).encode()).rstrip(b"=").decode()
        )
        self.assertReason(Reason.BAD_SIGNATURE, f"{head}.{body}.{signature}")

    def test_tampered_signature(self) -> None:
        """A signature with one byte changed fails."""
        head, body, signature = independent_sign(self.key, self.claims).split(".")
        raw = bytearray(base64.urlsafe_b64decode(signature + "=="))
        raw[10] ^= 0x01
        changed = base64.urlsafe_b64encode(bytes(raw)).rstrip(b"=").decode()
        self.assertReason(Reason.BAD_SIGNATURE, f"{head}.{body}.{changed}")

    def test_tampered_header(self) -> None:
        """A header whose x5u was changed after signing fails the signature."""
        _, body, signature = independent_sign(self.key, self.claims).split(".")
        header = {
            "alg": "ES256",
            "ppt": "shaken",
            "typ": "passport",
            "x5u": "https://evil.example.com/c.pem",
        }
        head = (
            base64.urlsafe_b64encode(json.dumps(header).encode()).rstrip(b"=").decode()
        )
        self.assertReason(Reason.BAD_SIGNATURE, f"{head}.{body}.{signature}")

    def test_other_key(self) -> None:
        """A PASSporT signed with another key than the certificate's fails."""
        other = ec.generate_private_key(ec.SECP256R1())
        self.assertReason(Reason.BAD_SIGNATURE, independent_sign(other, self.claims))

    def test_header_checks(self) -> None:
        """Another alg, typ or ppt, or no x5u, is refused before any certificate is fetched."""
        base = {"ppt": "shaken", "typ": "passport", "x5u": X5U}
        self.assertReason(
            Reason.UNSUPPORTED_ALGORITHM,
            jwt.encode(self.claims, "k" * 32, algorithm="HS256", headers=base),
        )
        self.assertReason(
            Reason.MALFORMED,
            independent_sign(self.key, self.claims, dict(base, typ="JWT")),
        )
        self.assertReason(
            Reason.NOT_SHAKEN,
            independent_sign(self.key, self.claims, dict(base, ppt="div")),
        )
        self.assertReason(
            Reason.MALFORMED,
            independent_sign(
                self.key, self.claims, {"ppt": "shaken", "typ": "passport"}
            ),
        )

    def test_alg_none(self) -> None:
        """An unsigned token (``alg: none``) is an unsupported algorithm."""
        token = jwt.encode(
            self.claims,
            None,
            algorithm="none",
            headers={"ppt": "shaken", "typ": "passport", "x5u": X5U},
        )
        self.assertReason(Reason.UNSUPPORTED_ALGORITHM, token + "AAAA")

    def test_compact_form(self) -> None:
        """The compact form (no claims) cannot be a SHAKEN PASSporT."""
        head, _, signature = independent_sign(self.key, self.claims).split(".")
        self.assertReason(Reason.MALFORMED, f"{head}..{signature}")

    def test_garbage(self) -> None:
        """Text that is not a JWS is malformed."""
        for token in ("a.b.c", "!!!", "eyJhbGciOiJFUzI1NiJ9.e30", "x" * 5000):
            self.assertReason(Reason.MALFORMED, token)

    def test_malformed_claims(self) -> None:
        """Claims of the wrong shape are malformed, even correctly signed."""
        bad = [
            dict(self.claims, attest="Z"),
            dict(self.claims, iat="1800000000"),
            dict(self.claims, iat=True),
            dict(self.claims, orig={"uri": "sip:alice@example.com"}),
            dict(self.claims, dest={"tn": []}),
            dict(self.claims, dest={"tn": "15557654321"}),
            {k: v for k, v in self.claims.items() if k != "origid"},
        ]
        for claims in bad:
            self.assertReason(Reason.MALFORMED, independent_sign(self.key, claims))
        token = jwt.api_jws.encode(
            b"[1, 2]",
            self.key,
            algorithm="ES256",
            headers={"ppt": "shaken", "typ": "passport", "x5u": X5U},
        )
        self.assertReason(Reason.MALFORMED, token)
