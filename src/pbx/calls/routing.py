"""
The facts the call controller's policy works from: an extension's record
and forwards, its registered phones, the diverters and the applications.
Shared by calls from phones and by calls applications place.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from attrs import define, field

from twisted.internet.defer import Deferred
from twisted.logger import Logger

from pbx.calls.dialplan import ToApplication
from pbx.calls.divert import Diverter, ask_diverters
from pbx.records import Binding, ExtensionRecord

#: RFC 3261 §8.2.2.2-style guard: how many forwards one call may follow.
MAX_FORWARDS_FOLLOWED = 5


@define(eq=False)
class Routing:
    """
    Where calls to extensions go.

    :ivar lookup: an extension's record by number.
    :ivar contacts: an extension's registered phones.
    :ivar applications: registered dialplan applications by name.
    :ivar diverters: asked, in order, where a call nobody will answer goes.
    :ivar scheduled_dnd: whether an extension is outside its working hours
        now (its ``dnd_schedule``), and so in do-not-disturb.
    """

    lookup: Callable[[str], Deferred[ExtensionRecord | None]]
    contacts: Callable[[str], list[Binding]]
    applications: dict[str, Any] = field(factory=dict)
    diverters: list[Diverter] = field(factory=list)
    scheduled_dnd: Callable[[str], bool] = lambda number: False
    log = Logger()

    async def resolve_target(self, target: str, seen: set[str]) -> tuple[str, ExtensionRecord | None, int]:
        """
        Follow unconditional forwarding from ``target``.

        :returns: (final number, its record or None, a status to refuse
            with, or 0): 404 unknown, 482 forwarding loop, 486 DND.
        """
        record = await self.lookup(target)
        seen.add(target)
        while record is not None and record.enabled and record.forward_always:
            nxt = record.forward_always
            if nxt in seen or len(seen) > MAX_FORWARDS_FOLLOWED:
                return target, record, 482
            seen.add(nxt)
            target, record = nxt, await self.lookup(nxt)
        if record is None or not record.enabled:
            return target, None, 404
        if record.dnd or self.scheduled_dnd(target):
            return target, record, 486
        return target, record, 0

    def may_forward(self, number: str, seen: set[str]) -> bool:
        """Whether a busy or no-answer forward to ``number`` may be followed."""
        return bool(number) and number not in seen and len(seen) <= MAX_FORWARDS_FOLLOWED

    def divert(self, callee: str, reason: str) -> ToApplication | None:
        """Where a call to ``callee`` that fails for ``reason`` goes instead, by the diverters; or None."""
        action = ask_diverters(self.diverters, callee, reason)
        if action is not None and action.name not in self.applications:
            self.log.warn("diverter named application {name!r}, which is not running", name=action.name)
            return None
        return action
