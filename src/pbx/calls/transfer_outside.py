"""
What a blind transfer to an outside number needs from the trunks
(:mod:`pbx.trunks.transfer` makes it): the trunk the target rings through,
and the route that finds it with the transferor's permissions.  The
transfer itself is :mod:`pbx.calls.transfer`'s.

A target the dialplan sends to a trunk route rings out through the route's
first trunk that is up and has room (:attr:`Transfers.outside
<pbx.calls.transfer.Transfers.outside>`, :mod:`pbx.trunks.transfer`), with
the transferor's calling permissions: a target the transferor may not call
is reported in the final NOTIFY (403) and the transferor keeps the call.  A
party that came in over a trunk may not send the call out again by keys
(``##``) or a REFER of its own unless ``transfer.outside_keyed`` says so:
one outside caller must not reach another outside number at pbx's cost
(toll fraud).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from attrs import frozen

from twisted.logger import Logger

from pbx.calls.dialplan import ToTrunks
from pbx.calls.forks import Fork
from pbx.calls.refer import ReferProgress
from pbx.calls.signalling import LegServices
from pbx.records import Binding
from pbx.sip.message import Request, Response

log = Logger()


@frozen
class OutsideTarget:
    """
    Where a blind transfer to an outside number rings: one trunk.

    :ivar services: the trunk's leg services (its next hop).
    :ivar binding: the INVITE's target (``aor``: the number sent).
    :ivar to: the To header; :ivar from_: From and P-Asserted-Identity.
    :ivar headers: what the outbound hooks add.
    :ivar body: the INVITE's body and Content-Type for an SDP offer.
    :ivar on_challenge: answers the carrier's 401/407.
    :ivar release: the trunk has room again (the attempt or the call is over).
    """

    services: LegServices
    binding: Binding
    to: str
    from_: str
    headers: tuple[tuple[str, str], ...]
    body: Callable[[bytes], tuple[bytes, str]]
    on_challenge: Callable[[Fork, Response], Request | None]
    release: Callable[[], None]


#: The outside target of (transferor, number, route), or the refusal's (status, reason).
OutsideRoute = Callable[[str, str, ToTrunks], Awaitable["OutsideTarget | tuple[int, str]"]]


async def outside_target(
    route: OutsideRoute | None, barred: bool, call_id: str, transferor: str, number: str, action: ToTrunks,
    progress: ReferProgress, keyed: bool,
) -> OutsideTarget | None:
    """
    The trunk a blind transfer of ``call_id`` to outside ``number`` rings
    through; None once the refusal is reported in ``progress``.

    :param route: finds the trunk (None: no trunks, 404).
    :param barred: the transferor is on an outside line and may not go out again.
    :param keyed: the transfer was keyed rather than REFERred (for the log).
    """
    if route is None:
        progress.report(404)
        return None
    if barred:
        # Toll fraud: an outside caller must not reach outside numbers through pbx.
        log.warn(
            "call {call_id}: outside party {who} may not transfer to outside number {number}{how}",
            call_id=call_id, who=transferor, number=number, how=" (keyed)" if keyed else "",
        )
        progress.report(403, "Outside Transfer Not Permitted")
        return None
    target = await route(transferor, number, action)
    if isinstance(target, tuple):
        status, reason = target
        log.info("call {call_id}: transfer to {number} refused: {status} {reason}",
                 call_id=call_id, number=number, status=status, reason=reason)
        progress.report(status, reason or None)
        return None
    return target
