"""
The other parts of pbx that take part in calls through trunks, joined to
the trunks' hooks (:mod:`pbx.trunks.hooks`) by the switch.

- :func:`ask_guard`: the calling-permissions guard (:mod:`pbx.permissions`)
  is asked before each INVITE to a trunk; a call it refuses gets its status
  and reason (403 ``Call Not Permitted`` ...) and nothing goes out.  A
  failover asks again with the same Call-ID: the guard counts a call once.
- :func:`tell_desk`: the emergency desk (:mod:`pbx.emergency`) sees each
  INVITE to a trunk; an emergency call gets the caller's location as a
  PIDF-LO by value beside the SDP, ``Geolocation`` naming it, and the
  callback number in ``P-Asserted-Identity`` (RFC 6442, RFC 3325), and the
  PSAP callback window opens; :func:`psap_callback`: a call from an
  emergency trunk to a number an emergency call presented, within the
  window, rings the caller's extension past DND, forwards and voicemail.
- :func:`sign_calls`: STIR/SHAKEN (:mod:`pbx.stir`) signs each INVITE to a
  trunk: an ``Identity`` header whose PASSporT attests ``A`` (a caller pbx
  authenticated presenting one of the trunk's DIDs), ``B`` (authenticated,
  another number) or ``C`` (a call pbx only relays); :func:`verify_calls`:
  an INVITE from a trunk is verified, the outcome noted as ``verstat``
  (for the callee's phone and the call record) and, when ``reject_failed``
  says so, a failed one refused (RFC 8224 §6.2.2).
"""

from __future__ import annotations

from collections.abc import Mapping

from twisted.internet.interfaces import IReactorTime

from pbx.emergency.desk import EmergencyDesk
from pbx.emergency.pidf import CONTENT_TYPE as PIDF
from pbx.permissions.guard import Guard
from pbx.sip.headers import parse_name_addr
from pbx.stir.interfaces import IStirShaken
from pbx.stir.signer import OutboundCall
from pbx.stir.tn import canonical_tn, number_of, tn_problem
from pbx.trunks.hooks import (
    Inbound,
    InboundContext,
    InboundVerdict,
    Outbound,
    OutboundChange,
    OutboundContext,
    Part,
)

__all__ = ["ask_guard", "psap_callback", "sign_calls", "tell_desk", "verify_calls"]


def ask_guard(guard: Guard) -> Outbound:
    """An outbound hook that refuses what ``guard`` does not allow."""

    def check(context: OutboundContext) -> OutboundChange | None:
        decision = guard.check(context.caller, context.sent, dialled=context.dialled, call_id=context.call_id)
        if decision.allowed:
            return None
        return OutboundChange(refuse=decision.status or 403, reason=decision.reason,
                              announcement=decision.announcement)

    return check


def tell_desk(desk: EmergencyDesk, domain: str) -> Outbound:
    """An outbound hook that adds what the emergency desk gives an emergency call (nothing to others)."""

    async def locate(context: OutboundContext) -> OutboundChange | None:
        change = await desk.trunk_change(context.caller, context.dialled, context.caller_id, domain,
                                         call_id=context.call_id)
        if change is None:
            return None
        parts: tuple[Part, ...] = ()
        if change.location:
            parts = ((PIDF, change.location, (("Content-ID", f"<{change.content_id}>"),)),)
        return OutboundChange(headers=change.headers, parts=parts)

    return locate


def psap_callback(desk: EmergencyDesk, trunks: tuple[str, ...]) -> Inbound:
    """An inbound verifier that sends a PSAP's callback over one of ``trunks`` to the extension that dialled 911."""

    def route(context: InboundContext) -> InboundVerdict | None:
        if context.trunk.name not in trunks or not context.did:
            return None
        extension = desk.callback_target(context.did)
        if extension is None:
            return None
        return InboundVerdict({"psap_callback": extension}, extension=extension)

    return route


def _canonical_dids(dids: Mapping[str, object]) -> frozenset[str]:
    return frozenset(canonical_tn(number) for number in dids if tn_problem(number) is None)


def sign_calls(stir: IStirShaken) -> Outbound:
    """An outbound hook that adds the ``Identity`` header ``stir`` signs (nothing when it signs nothing)."""
    dids: dict[str, frozenset[str]] = {}

    def sign(context: OutboundContext) -> OutboundChange | None:
        trunk = context.trunk
        own = dids.get(trunk.name)
        if own is None:
            own = dids[trunk.name] = _canonical_dids(trunk.dids)
        # ATIS-1000074 §5.2.3: a call pbx did not authenticate is one it only relays (C).
        value = stir.sign_outbound(OutboundCall(
            calling=context.caller_id, called=context.sent, authenticated=context.authenticated,
            trunk_dids=own, relayed=not context.authenticated,
        ))
        if value is None:
            return None
        return OutboundChange(headers=(("Identity", value),))

    return sign


def verify_calls(stir: IStirShaken, clock: IReactorTime) -> Inbound:
    """
    An inbound verifier: the call's ``verstat`` (and why) as notes; a
    refusal when ``stir``'s policy rejects the failure.
    """

    async def verify(context: InboundContext) -> InboundVerdict:
        request = context.request
        pai = request.headers.get("P-Asserted-Identity")
        callers = [number_of(request.from_.uri)]
        if pai:
            try:
                callers.insert(0, number_of(parse_name_addr(pai).uri))
            except ValueError:  # SIPParseError
                pass  # an unparsable P-Asserted-Identity vouches for nothing: From alone
        verdict = await stir.verify_inbound(
            request.headers.get_all("Identity"), callers,
            (number_of(request.to.uri), number_of(request.uri)), clock.seconds(),
        )
        notes = {"verstat": verdict.verstat, "stir": verdict.reason.value}
        refusal = stir.rejection(verdict)
        if refusal is not None:
            return InboundVerdict(notes, refuse=refusal[0], reason=refusal[1])
        return InboundVerdict(notes)

    return verify
