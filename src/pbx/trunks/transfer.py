"""
Blind transfer to outside numbers: where a transfer target a trunk route
sends out rings (:class:`pbx.calls.transfer.OutsideTarget`).

The route's trunks are taken in the route's order (cheapest first with a
rate table); the first that is up and has room is used.  The outbound
hooks are asked as for a call the transferor dialled: the calling
permissions guard checks the transferor's class, and its refusal (403
``Call Not Permitted``) goes back to the transferor in the final NOTIFY.
The INVITE presents the route's caller ID, offers only the trunk's codecs
and answers the carrier's digest challenges (RFC 3261 §22.2); the trunk
counts the call from the INVITE until the attempt or the call is over.

:func:`outside_party`: whether a seat of a call holds a party that came over
a trunk (the caller of an inbound trunk call, the callee of an outbound one).
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable

from attrs import evolve

from twisted.internet.defer import Deferred

from pbx.calls.call import Call
from pbx.calls.dialplan import ToTrunks
from pbx.calls.transfer import OutsideRoute, OutsideTarget
from pbx.records import ExtensionRecord
from pbx.trunks.call import TrunkCall, TrunkInboundCall, multipart, only_codecs
from pbx.trunks.hooks import OutboundContext, Part
from pbx.trunks.registry import Trunks
from pbx.trunks.routes import plan

__all__ = ["outside_party", "outside_route"]


def outside_party(call: Call, leg: str) -> bool:
    """Whether the party in ``leg``'s seat of ``call`` is on an outside line."""
    return (isinstance(call, TrunkInboundCall) and leg == "a") or (isinstance(call, TrunkCall) and leg == "b")


def _body(codecs: tuple[str, ...], parts: tuple[Part, ...], offer: bytes) -> tuple[bytes, str]:
    """The INVITE's body for ``offer``: the trunk's codecs only, with the hooks' parts."""
    return multipart(only_codecs(offer, codecs), parts)


def outside_route(trunks: Trunks, lookup: Callable[[str], Deferred[ExtensionRecord | None]]) -> OutsideRoute:
    """What :class:`~pbx.calls.transfer.Transfers` asks for the trunk a transfer target rings through."""

    async def target(transferor: str, number: str, action: ToTrunks) -> OutsideTarget | tuple[int, str]:
        record = await lookup(transferor)
        attempts = plan(action, number, trunks.trunks, trunks.rates,
                        extension_caller_id=record.caller_id if record is not None else "")
        for attempt in attempts:
            trunk = attempt.trunk
            if not trunk.up or trunk.full:
                continue
            context = OutboundContext(transferor, record is not None, trunk.config, attempt.dialled,
                                      attempt.sent, attempt.caller_id)
            change = await trunks.hooks.decorate(context)
            if change.refuse:
                return change.refuse, change.reason
            config = trunk.config
            trunk.take()
            domain = config.from_domain or config.host
            return OutsideTarget(
                services=trunk.services,
                binding=evolve(trunk.binding(attempt.sent), aor=attempt.sent),
                to=f"<sip:{attempt.sent}@{config.host}>",
                from_=f"<sip:{attempt.caller_id or 'anonymous'}@{domain}>",
                headers=tuple(change.headers),
                body=functools.partial(_body, config.codecs, change.parts),
                on_challenge=trunk.answer_challenge,
                release=trunk.release,
            )
        return 503, "No Trunk Available"

    result: Callable[[str, str, ToTrunks], Awaitable[OutsideTarget | tuple[int, str]]] = target
    return result
