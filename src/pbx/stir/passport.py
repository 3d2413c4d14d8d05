"""
SHAKEN PASSporTs: signed JSON Web Tokens naming the caller and the callee.

RFC 8225 defines the PASSporT (a JWS with ``typ: passport``), RFC 8588 and
ATIS-1000074 §5.2 its SHAKEN extension: the header
``{alg: ES256, ppt: shaken, typ: passport, x5u}`` and the claims ``attest``,
``dest: {tn: [...]}``, ``iat``, ``orig: {tn}`` and ``origid``.  SIP carries
the full form (RFC 8225 §7: all three JWS parts), so the claims travel
with the call.

Signing and checking signatures is PyJWT's, over ``cryptography``'s keys:
nothing here does cryptography of its own.  Pure: no Twisted, no I/O.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping
from typing import Any

import jwt
from attrs import frozen
from cryptography.hazmat.primitives.asymmetric import ec

from pbx.stir.tn import canonical_tn, tn_problem
from pbx.stir.verdict import Reason, VerificationFailure

__all__ = [
    "ALGORITHM",
    "SHAKEN",
    "Passport",
    "PassportError",
    "read_header",
    "sign",
    "verify",
]

#: The one signature algorithm SHAKEN allows (ATIS-1000074 §5.2.1).
ALGORITHM = "ES256"
#: The PASSporT extension this package signs and verifies (RFC 8588).
SHAKEN = "shaken"
#: Longest token accepted: a SHAKEN PASSporT with a few destinations is
#: about 500 characters.
MAX_TOKEN_LENGTH = 4096
_ATTESTATIONS = frozenset({"A", "B", "C"})
_MAX_ORIGID_LENGTH = 256
_JWS = jwt.PyJWS(algorithms=[ALGORITHM])


class PassportError(VerificationFailure):
    """A PASSporT that cannot be used; :attr:`reason` says which way."""


@frozen
class Passport:
    """The header and claims of one SHAKEN PASSporT, numbers canonical."""

    attest: str
    """``A``, ``B`` or ``C`` (:mod:`pbx.stir.attestation`)."""
    orig_tn: str
    dest_tns: tuple[str, ...]
    iat: int
    """When it was signed, in seconds since the epoch."""
    origid: str
    """A UUID naming where the call entered the network (ATIS-1000074 §5.2.3)."""
    x5u: str
    """Where the signer's certificate is fetched from."""

    @classmethod
    def new(
        cls,
        *,
        attest: str,
        orig: str,
        dest: str | tuple[str, ...],
        iat: int,
        x5u: str,
        origid: str | None = None,
    ) -> Passport:
        """
        Make a PASSporT's contents from numbers as they come.

        :param attest: the attestation level.
        :param orig: the calling number, in any form :func:`canonical_tn` takes.
        :param dest: the called number or numbers.
        :param iat: the signing time, seconds since the epoch.
        :param x5u: the certificate's URL.
        :param origid: the origination identifier; a new random UUID by default.
        :returns: the PASSporT.
        :raises ValueError: on a number that is not one, or an unknown attestation.
        """
        if attest not in _ATTESTATIONS:
            raise ValueError(f"attestation {attest!r} is not A, B or C")
        dests = (dest,) if isinstance(dest, str) else dest
        if not dests:
            raise ValueError("a PASSporT needs a destination number")
        return cls(
            attest=attest,
            orig_tn=canonical_tn(orig),
            dest_tns=tuple(canonical_tn(d) for d in dests),
            iat=iat,
            origid=origid if origid is not None else str(uuid.uuid4()),
            x5u=x5u,
        )

    def header(self) -> dict[str, str]:
        """The JWS protected header (ATIS-1000074 §5.2.1)."""
        return {"alg": ALGORITHM, "ppt": SHAKEN, "typ": "passport", "x5u": self.x5u}

    def claims(self) -> dict[str, Any]:
        """The claims, keys in lexicographic order as RFC 8225 §9 serialises them."""
        return {
            "attest": self.attest,
            "dest": {"tn": list(self.dest_tns)},
            "iat": self.iat,
            "orig": {"tn": self.orig_tn},
            "origid": self.origid,
        }


def sign(passport: Passport, key: ec.EllipticCurvePrivateKey) -> str:
    """
    Sign a PASSporT.

    :param passport: what to sign.
    :param key: the P-256 private key matching the certificate at ``x5u``.
    :returns: the JWS compact serialisation ``header.claims.signature``.
    """
    return jwt.encode(
        passport.claims(), key, algorithm=ALGORITHM, headers=passport.header()
    )


def read_header(token: str) -> dict[str, Any]:
    """
    Read and check a PASSporT's header before anything is fetched for it.

    :param token: the JWS from an Identity header.
    :returns: the header; ``x5u`` is a string, ``alg``, ``typ`` and ``ppt`` as SHAKEN wants.
    :raises PassportError: ``MALFORMED``, ``UNSUPPORTED_ALGORITHM`` or ``NOT_SHAKEN``.
    """
    if len(token) > MAX_TOKEN_LENGTH:
        raise PassportError(
            Reason.MALFORMED, f"PASSporT longer than {MAX_TOKEN_LENGTH} characters"
        )
    try:
        header = jwt.get_unverified_header(token)
    except jwt.PyJWTError as e:
        raise PassportError(Reason.MALFORMED, f"not a JWS: {e}") from None
    if header.get("alg") != ALGORITHM:
        raise PassportError(
            Reason.UNSUPPORTED_ALGORITHM,
            f"alg {header.get('alg')!r} is not {ALGORITHM}",
        )
    if header.get("typ") != "passport":
        raise PassportError(
            Reason.MALFORMED, f"typ {header.get('typ')!r} is not passport"
        )
    if header.get("ppt") != SHAKEN:
        raise PassportError(
            Reason.NOT_SHAKEN, f"ppt {header.get('ppt')!r} is not {SHAKEN}"
        )
    x5u = header.get("x5u")
    if not isinstance(x5u, str) or not x5u:
        raise PassportError(Reason.MALFORMED, "the header has no x5u")
    if token.split(".")[1] == "":
        # RFC 8225 §7: the compact form leaves the claims out; SHAKEN's
        # attest and origid cannot be rebuilt from the SIP request.
        raise PassportError(
            Reason.MALFORMED, "compact form: a SHAKEN PASSporT must carry its claims"
        )
    return header


def verify(token: str, key: ec.EllipticCurvePublicKey) -> Passport:
    """
    Check a PASSporT's signature and read its claims.

    :param token: the JWS, whose header :func:`read_header` accepted.
    :param key: the public key of the certificate at its ``x5u``.
    :returns: the PASSporT, numbers canonical.
    :raises PassportError: ``BAD_SIGNATURE`` or ``MALFORMED``.
    """
    try:
        decoded = _JWS.decode_complete(token, key, algorithms=[ALGORITHM])
    except jwt.InvalidSignatureError:
        raise PassportError(
            Reason.BAD_SIGNATURE, "the signature does not verify"
        ) from None
    except jwt.PyJWTError as e:
        raise PassportError(Reason.MALFORMED, f"not a JWS: {e}") from None
    try:
        claims = json.loads(decoded["payload"])
    except ValueError:
        raise PassportError(Reason.MALFORMED, "the claims are not JSON") from None
    return _passport(claims, decoded["header"]["x5u"])


def _passport(claims: Any, x5u: str) -> Passport:
    if not isinstance(claims, Mapping):
        raise PassportError(Reason.MALFORMED, "the claims are not a JSON object")
    attest = claims.get("attest")
    if attest not in _ATTESTATIONS:
        raise PassportError(Reason.MALFORMED, f"attest {attest!r} is not A, B or C")
    iat = claims.get("iat")
    if isinstance(iat, bool) or not isinstance(iat, int):
        raise PassportError(Reason.MALFORMED, "iat is not a whole number")
    orig = claims.get("orig")
    orig_tn = orig.get("tn") if isinstance(orig, Mapping) else None
    if tn_problem(orig_tn) is not None:
        raise PassportError(Reason.MALFORMED, "orig.tn is not a telephone number")
    dest = claims.get("dest")
    dest_tns = dest.get("tn") if isinstance(dest, Mapping) else None
    if (
        not isinstance(dest_tns, list)
        or not dest_tns
        or any(tn_problem(tn) is not None for tn in dest_tns)
    ):
        raise PassportError(
            Reason.MALFORMED, "dest.tn is not a list of telephone numbers"
        )
    origid = claims.get("origid")
    if not isinstance(origid, str) or not 0 < len(origid) <= _MAX_ORIGID_LENGTH:
        raise PassportError(Reason.MALFORMED, "origid is missing")
    assert isinstance(orig_tn, str)
    return Passport(
        attest=attest,
        orig_tn=canonical_tn(orig_tn),
        dest_tns=tuple(canonical_tn(tn) for tn in dest_tns),
        iat=iat,
        origid=origid,
        x5u=x5u,
    )
