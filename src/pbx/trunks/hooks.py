"""
Where other parts of pbx take part in calls through trunks.

``TrunkHooks.outbound``: callables asked, in order, just before an INVITE
goes to a trunk, with an :class:`OutboundContext`; each may return an
:class:`OutboundChange` (headers to add, body parts to attach beside the
SDP, or a refusal), None, or a Deferred/coroutine of either.
``TrunkHooks.inbound``: callables asked, in order, when an INVITE comes in
from a trunk, with an :class:`InboundContext`; each may return an
:class:`InboundVerdict` (notes to keep with the call, or a refusal).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from typing import Any

from attrs import define, field, frozen

from pbx.sip.message import Request
from pbx.trunks.config import TrunkConfig

__all__ = ["Part", "InboundContext", "InboundVerdict", "OutboundChange", "OutboundContext", "TrunkHooks"]


@frozen
class OutboundContext:
    """
    A call about to go out through a trunk.

    :ivar caller: the calling extension (or the number a call relayed from
        another trunk came from).
    :ivar authenticated: whether pbx authenticated the caller.
    :ivar trunk: the trunk tried now.
    :ivar dialled: the number as the caller dialled it.
    :ivar sent: the number sent to the trunk (after strip/prepend).
    :ivar caller_id: the number presented (From, P-Asserted-Identity).
    :ivar call_id: the caller's Call-ID.
    """

    caller: str
    authenticated: bool
    trunk: TrunkConfig
    dialled: str
    sent: str
    caller_id: str
    call_id: str = ""


Part = tuple[str, bytes] | tuple[str, bytes, tuple[tuple[str, str], ...]]


@frozen
class OutboundChange:
    """
    What an outbound hook does to the INVITE.

    :ivar headers: ``(name, value)`` lines to add (e.g. ``Identity``, ``Geolocation``).
    :ivar parts: ``(content type, body)`` or ``(content type, body,
        ((header, value), ...))`` parts sent beside the SDP in a
        ``multipart/mixed`` body (e.g. a PIDF-LO with its ``Content-ID``,
        RFC 6442).
    :ivar refuse: a SIP status to refuse the call with (0: go on), and its reason.
    :ivar announcement: the prompt the refused caller hears first, as early media ("" for none).
    """

    headers: tuple[tuple[str, str], ...] = ()
    parts: tuple[Part, ...] = ()
    refuse: int = 0
    reason: str = ""
    announcement: str = ""


@frozen
class InboundContext:
    """
    An INVITE from a trunk.

    :ivar trunk: the trunk it came from.
    :ivar request: the INVITE.
    :ivar did: the E.164 number called, if it is one of the trunk's DIDs.
    :ivar caller: the caller's number (From user).
    """

    trunk: TrunkConfig
    request: Request
    did: str
    caller: str


@frozen
class InboundVerdict:
    """
    What an inbound verifier says of a call.

    :ivar notes: facts kept with the call (e.g. ``verstat``), logged with it.
    :ivar refuse: a SIP status to refuse the call with (0: go on), and its reason.
    :ivar extension: ring this extension's phones instead of the DID's
        target, past its DND, forwards and voicemail (a PSAP calling back).
    """

    notes: Mapping[str, str] = field(factory=dict)
    refuse: int = 0
    reason: str = ""
    extension: str = ""


Outbound = Callable[[OutboundContext], Any]
Inbound = Callable[[InboundContext], Any]


async def _result(value: Any) -> Any:
    return (await value) if inspect.isawaitable(value) else value


@define(eq=False)
class TrunkHooks:
    """The registered hooks, asked in the order they were added."""

    outbound: list[Outbound] = field(factory=list)
    inbound: list[Inbound] = field(factory=list)

    async def decorate(self, context: OutboundContext) -> OutboundChange:
        """Ask every outbound hook; their headers and parts together, or the first refusal."""
        headers: list[tuple[str, str]] = []
        parts: list[Part] = []
        for hook in self.outbound:
            change = await _result(hook(context))
            if change is None:
                continue
            if change.refuse:
                return change
            headers += change.headers
            parts += change.parts
        return OutboundChange(tuple(headers), tuple(parts))

    async def verify(self, context: InboundContext) -> InboundVerdict:
        """
        Ask every inbound verifier; their notes together, or the first
        refusal.  A call an earlier verifier sent to an extension (a PSAP's
        callback, Kari's Law) is refused by no later one: their notes stay.
        """
        notes: dict[str, str] = {}
        extension = ""
        for hook in self.inbound:
            verdict = await _result(hook(context))
            if verdict is None:
                continue
            if verdict.refuse and not extension:
                return verdict
            notes.update(verdict.notes)
            extension = extension or verdict.extension
        return InboundVerdict(notes, extension=extension)
