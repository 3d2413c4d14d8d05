"""
What STIR/SHAKEN offers the rest of pbx: one object a trunk signs and
verifies with (:class:`IStirShaken`), and the narrow source of signers'
keys the verifier needs (:class:`ISignerSource`), so tests can give it a fake.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING

from zope.interface import Interface

if TYPE_CHECKING:
    from pbx.stir.certificates import VerifiedSigner
    from pbx.stir.signer import OutboundCall
    from pbx.stir.verdict import Verdict

__all__ = ["ISignerSource", "IStirShaken"]


class ISignerSource(Interface):
    """Verified signers' keys, by ``x5u`` URL."""

    async def signer(url: str, now: float) -> VerifiedSigner:
        """
        The key that signs PASSporTs whose ``x5u`` is ``url``.

        :param url: the PASSporT's ``x5u``.
        :param now: the time the certificate chain must be valid at.
        :returns: the signer, its chain checked against the trust anchors.
        :raises pbx.stir.x5u.X5UError: naming the reason (not allowed, not
            available, not trusted).
        """


class IStirShaken(Interface):
    """Signing outbound and verifying inbound calls, as a trunk does them."""

    def sign_outbound(call: OutboundCall) -> str | None:
        """
        The Identity header value for an outbound INVITE.

        :param call: the calling and called numbers and how the caller was authenticated.
        :returns: the value; None when signing is not configured or the call
            has no telephone numbers to sign.
        """

    async def verify_inbound(
        identity_values: Sequence[str],
        from_tn: str | Iterable[str | None] | None,
        to_tn: str | Iterable[str | None] | None,
        now: float,
    ) -> Verdict:
        """
        Verify an inbound INVITE's Identity headers.

        :param identity_values: the values of its Identity headers (maybe none).
        :param from_tn: the calling number(s): From and P-Asserted-Identity user parts.
        :param to_tn: the called number(s): To and Request-URI user parts.
        :param now: the current time, seconds since the epoch.
        :returns: the verdict; its ``verstat`` goes on the caller's URI
            (:func:`pbx.stir.verdict.with_verstat`).
        """

    def rejection(verdict: Verdict) -> tuple[int, str] | None:
        """
        The response to refuse the call with, if the policy refuses it.

        :param verdict: from :meth:`verify_inbound`.
        :returns: status code and reason phrase (RFC 8224 §6.2.2), or None
            to let the call through.
        """
