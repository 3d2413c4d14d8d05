"""
STIR/SHAKEN as a trunk uses it: one :class:`StirShaken` built from the
``stir_shaken:`` options, with the two calls a trunk makes.

Outbound::

    value = stir.sign_outbound(OutboundCall(calling="+15551230000", called="+15557654321",
                                            authenticated=True, trunk_dids=trunk.canonical_dids))
    if value is not None:
        invite.headers.add("Identity", value)

Inbound::

    verdict = await stir.verify_inbound(
        invite.headers.get_all("Identity"),
        (number_of(pai.uri), number_of(from_.uri)),      # pbx.stir.tn.number_of
        (number_of(to.uri), number_of(invite.uri)),
        clock.seconds(),
    )
    refusal = stir.rejection(verdict)      # (438, "Invalid Identity Header") or None
    caller_uri = with_verstat(caller_uri, verdict)   # what the callee's phone shows
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from attrs import define

from zope.interface import implementer

from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.web.iweb import IAgent

from pbx.stir.interfaces import IStirShaken
from pbx.stir.options import Credentials, StirShakenOptions, load_credentials
from pbx.stir.signer import OutboundCall, Signer
from pbx.stir.verdict import Reason, Status, Verdict
from pbx.stir.verifier import Verifier
from pbx.stir.x5u import SignerCache

__all__ = ["StirShaken", "build_stir_shaken"]


@implementer(IStirShaken)
@define(eq=False)
class StirShaken:
    """Signs outbound and verifies inbound calls; either half may be off."""

    log = Logger()

    signer: Signer | None
    verifier: Verifier | None
    reject_failed: bool = False
    """Refuse calls whose verification failed (RFC 8224 §6.2.2)."""

    @classmethod
    def off(cls) -> StirShaken:
        """
        STIR/SHAKEN switched off (no ``stir_shaken:`` section): nothing is
        signed, every call is No-TN-Validation.
        """
        return cls(signer=None, verifier=None)

    def sign_outbound(self, call: OutboundCall) -> str | None:
        """
        The Identity header value for an outbound INVITE.

        :param call: the numbers and how the caller was authenticated.
        :returns: the value; None when not signing or nothing can be signed.
        """
        if self.signer is None:
            return None
        return self.signer.identity(call)

    async def verify_inbound(
        self,
        identity_values: Sequence[str],
        from_tn: str | Iterable[str | None] | None,
        to_tn: str | Iterable[str | None] | None,
        now: float,
    ) -> Verdict:
        """
        Verify an inbound INVITE's Identity headers.

        :param identity_values: its Identity header values.
        :param from_tn: the calling number(s), From and P-Asserted-Identity.
        :param to_tn: the called number(s), To and Request-URI.
        :param now: the current time, seconds since the epoch.
        :returns: the verdict (No-TN-Validation when verifying is off).
        """
        if self.verifier is None:
            return Verdict.unverified(
                Reason.NOT_CONFIGURED, "no trust anchors configured"
            )
        verdict = await self.verifier.verify(identity_values, from_tn, to_tn, now)
        if verdict.status is Status.FAILED:
            self.log.info(
                "STIR/SHAKEN: verification failed: {reason}: {detail}",
                reason=verdict.reason.value,
                detail=verdict.detail,
            )
        return verdict

    def rejection(self, verdict: Verdict) -> tuple[int, str] | None:
        """
        The response that refuses a failed call, when the policy says so.

        :param verdict: from :meth:`verify_inbound`.
        :returns: status code and reason phrase, or None to let the call through.
        """
        return verdict.response if self.reject_failed else None


def build_stir_shaken(
    options: StirShakenOptions,
    clock: IReactorTime,
    agent: IAgent,
    credentials: Credentials | None = None,
) -> StirShaken:
    """
    Build the signer and the verifier the options ask for.

    :param options: the validated ``stir_shaken:`` section.
    :param clock: for signing times, fetch timeouts and the certificate cache.
    :param agent: fetches ``x5u`` certificates (``twisted.web.client.Agent(reactor)``).
    :param credentials: the files' contents; read from the options' paths by default.
    :returns: the service.
    :raises pbx.errors.ConfigError: when a file is missing or unfit.
    """
    if credentials is None:
        credentials = load_credentials(options)
    signer = None
    if options.signs and credentials.key is not None:
        signer = Signer(key=credentials.key, x5u=options.x5u, clock=clock)
    verifier = None
    if options.verifies:
        cache = SignerCache(
            agent=agent,
            clock=clock,
            trust=credentials.trust,
            allowed=options.allowed_x5u,
            timeout=options.x5u_timeout,
            max_bytes=options.x5u_max_bytes,
            ttl=float(options.x5u_cache_ttl),
        )
        verifier = Verifier(signers=cache, max_age=options.max_age)
    return StirShaken(
        signer=signer, verifier=verifier, reject_failed=options.reject_failed
    )
