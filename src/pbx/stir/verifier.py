"""
Verifying an inbound call's Identity headers (RFC 8224 §6.2, ATIS-1000074 §5.3).

For each Identity value, in order, until one passes: parse the header, read
the PASSporT's header (``alg``, ``typ``, ``ppt``, ``x5u``; ``info`` must
name the same URL), get the signer's key (fetched from an allowed ``x5u``,
chained to the trust anchors), check the signature, then ``iat`` freshness
and that ``orig`` and ``dest`` are the call's numbers.  The first failure
of the first SHAKEN PASSporT is the verdict's reason when none passes.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from attrs import define

from pbx.stir.identity import IdentityError, parse_identity, split_identities
from pbx.stir.interfaces import ISignerSource
from pbx.stir.passport import ALGORITHM, SHAKEN, read_header, verify
from pbx.stir.tn import canonical_tn, tn_problem
from pbx.stir.verdict import Reason, Status, Verdict, VerificationFailure

__all__ = ["DEFAULT_MAX_AGE", "MAX_IDENTITIES", "Verifier"]

#: RFC 8224 §6.2.1: a PASSporT older than a minute is stale.
DEFAULT_MAX_AGE = 60
#: Most Identity values looked at in one request (the rest are ignored).
MAX_IDENTITIES = 4


def _numbers(value: str | Iterable[str | None] | None) -> set[str]:
    """The canonical forms of every telephone number among ``value``."""
    if value is None:
        return set()
    candidates = [value] if isinstance(value, str) else list(value)
    return {
        canonical_tn(c) for c in candidates if c is not None and tn_problem(c) is None
    }


@define(eq=False)
class Verifier:
    """Checks Identity headers against the call they arrived with."""

    signers: ISignerSource
    """Gives the verified key for an ``x5u`` (:class:`pbx.stir.x5u.SignerCache`)."""
    max_age: int = DEFAULT_MAX_AGE
    """Seconds a PASSporT's ``iat`` may be from now, either way."""

    async def verify(
        self,
        identity_values: Sequence[str],
        from_tn: str | Iterable[str | None] | None,
        to_tn: str | Iterable[str | None] | None,
        now: float,
    ) -> Verdict:
        """
        Verify a request's Identity headers.

        :param identity_values: every Identity header value of the request.
        :param from_tn: the calling number (From, or P-Asserted-Identity), or
            several (any may match ``orig``); a value that is no telephone
            number is ignored.
        :param to_tn: the called number (To or Request-URI), or several.
        :param now: the current time, seconds since the epoch.
        :returns: the verdict.
        """
        values = split_identities(identity_values)
        if not values:
            return Verdict.unverified(Reason.NO_IDENTITY, "no Identity header")
        origs = _numbers(from_tn)
        if not origs:
            return Verdict.unverified(
                Reason.NOT_A_NUMBER, "the caller is not a telephone number"
            )
        dests = _numbers(to_tn)
        first: VerificationFailure | None = None
        first_x5u: str | None = None
        for value in values[:MAX_IDENTITIES]:
            x5u: list[str] = []
            try:
                return await self._one(value, origs, dests, now, x5u)
            except VerificationFailure as failure:
                if first is None and failure.reason is not Reason.NOT_SHAKEN:
                    first, first_x5u = failure, (x5u[0] if x5u else None)
        if first is None:
            return Verdict.unverified(
                Reason.NOT_SHAKEN, "no Identity header carries a SHAKEN PASSporT"
            )
        return Verdict.failed(first.reason, first.detail, x5u=first_x5u)

    async def _one(
        self,
        value: str,
        origs: set[str],
        dests: set[str],
        now: float,
        x5u_out: list[str],
    ) -> Verdict:
        try:
            header = parse_identity(value)
        except IdentityError as e:
            raise VerificationFailure(
                Reason.MALFORMED, f"Identity header {e}"
            ) from None
        if header.ppt is not None and header.ppt != SHAKEN:
            raise VerificationFailure(Reason.NOT_SHAKEN, f"ppt={header.ppt}")
        if header.alg is not None and header.alg != ALGORITHM:
            raise VerificationFailure(Reason.UNSUPPORTED_ALGORITHM, f"alg={header.alg}")
        x5u = read_header(header.token)["x5u"]
        x5u_out.append(x5u)
        if header.info != x5u:
            # ATIS-1000074 §5.3.1: info names the certificate x5u does.
            raise VerificationFailure(
                Reason.INFO_MISMATCH, "info is not the PASSporT's x5u"
            )
        signer = await self.signers.signer(x5u, now)
        passport = verify(header.token, signer.key)
        age = now - passport.iat
        if abs(age) > self.max_age:
            when = f"{int(age)} s old" if age > 0 else f"{int(-age)} s in the future"
            raise VerificationFailure(
                Reason.STALE, f"iat is {when} (at most {self.max_age} s)"
            )
        if passport.orig_tn not in origs:
            raise VerificationFailure(
                Reason.ORIG_MISMATCH,
                f"orig {passport.orig_tn} is not the caller's number",
            )
        if not dests.intersection(passport.dest_tns):
            raise VerificationFailure(
                Reason.DEST_MISMATCH, "dest does not hold the called number"
            )
        return Verdict(
            Status.PASSED,
            Reason.PASSED,
            attest=passport.attest,
            origid=passport.origid,
            x5u=x5u,
        )
