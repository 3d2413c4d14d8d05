"""
Signing outbound calls: the Identity header a trunk adds to an INVITE.

Pure: the signing time comes from the injected clock (an ``IReactorTime``).
"""

from __future__ import annotations

from collections.abc import Collection
from typing import TYPE_CHECKING

from attrs import define, field, frozen
from cryptography.hazmat.primitives.asymmetric import ec

from pbx.stir.attestation import Attestation, attestation
from pbx.stir.identity import build_identity
from pbx.stir.passport import Passport, sign
from pbx.stir.tn import canonical_tn, tn_problem

if TYPE_CHECKING:
    from twisted.internet.interfaces import IReactorTime

__all__ = ["OutboundCall", "Signer"]


@frozen
class OutboundCall:
    """What the signer needs to know of a call leaving through a trunk."""

    calling: str
    """The calling number sent (From or P-Asserted-Identity user part), any form."""
    called: str
    """The number sent in the Request-URI, any form."""
    authenticated: bool
    """Whether pbx authenticated the caller (a phone that answered a digest challenge)."""
    trunk_dids: Collection[str] = field(factory=frozenset)
    """The trunk's DIDs, canonical (:func:`pbx.stir.tn.canonical_tn`), best a frozenset."""
    relayed: bool = False
    """pbx only relays this call (it came from another trunk): attestation C."""
    origid: str | None = None
    """The origination identifier (a UUID); a new one per call by default."""


@define(eq=False)
class Signer:
    """Signs PASSporTs with the site's key."""

    key: ec.EllipticCurvePrivateKey
    x5u: str
    """Where verifiers fetch the certificate (and its chain) from."""
    clock: IReactorTime

    def attestation(self, call: OutboundCall) -> Attestation | None:
        """
        The attestation level ``call`` gets.

        :param call: the outbound call.
        :returns: ``A``, ``B`` or ``C``; None when the calling number is not a number.
        """
        if tn_problem(call.calling) is not None:
            return None
        return attestation(
            canonical_tn(call.calling),
            authenticated=call.authenticated,
            trunk_dids=call.trunk_dids,
            relayed=call.relayed,
        )

    def identity(self, call: OutboundCall) -> str | None:
        """
        The Identity header value for ``call``.

        :param call: the outbound call.
        :returns: the value; None when the calling or called number is not a
            telephone number (an anonymous call, a SIP URI): nothing to sign.
        """
        level = self.attestation(call)
        if level is None or tn_problem(call.called) is not None:
            return None
        passport = Passport.new(
            attest=level,
            orig=call.calling,
            dest=call.called,
            iat=int(self.clock.seconds()),
            x5u=self.x5u,
            origid=call.origid,
        )
        return build_identity(sign(passport, self.key), self.x5u)
