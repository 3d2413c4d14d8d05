"""
The other parts of pbx that take part in calls through trunks, joined to
the trunks' hooks (:mod:`pbx.trunks.hooks`) by the switch.

- :func:`ask_guard`: the calling-permissions guard (:mod:`pbx.permissions`)
  is asked before each INVITE to a trunk; a call it refuses gets its status
  and reason (403 ``Call Not Permitted`` ...) and nothing goes out.  A
  failover asks again with the same Call-ID: the guard counts a call once.
"""

from __future__ import annotations

from pbx.permissions.guard import Guard
from pbx.trunks.hooks import Outbound, OutboundChange, OutboundContext

__all__ = ["ask_guard"]


def ask_guard(guard: Guard) -> Outbound:
    """An outbound hook that refuses what ``guard`` does not allow."""

    def check(context: OutboundContext) -> OutboundChange | None:
        decision = guard.check(context.caller, context.sent, dialled=context.dialled, call_id=context.call_id)
        if decision.allowed:
            return None
        return OutboundChange(refuse=decision.status or 403, reason=decision.reason)

    return check
