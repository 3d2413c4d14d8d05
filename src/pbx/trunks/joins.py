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
"""

from __future__ import annotations

from pbx.emergency.desk import EmergencyDesk
from pbx.emergency.pidf import CONTENT_TYPE as PIDF
from pbx.permissions.guard import Guard
from pbx.trunks.hooks import (
    Inbound,
    InboundContext,
    InboundVerdict,
    Outbound,
    OutboundChange,
    OutboundContext,
    Part,
)

__all__ = ["ask_guard", "psap_callback", "tell_desk"]


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
