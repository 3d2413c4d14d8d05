"""
Which phones to ring for a ring group's member or a follow-me number.

Inside a group or a follow-me, an extension's own forwards do not apply;
its do-not-disturb (the flag or its ``dnd_schedule``) does, and a member
already on a call is not rung again.  A follow-me number goes through the
dialplan as if dialled: a number that reaches an extension rings it; one
the dialplan sends elsewhere (an application, an outside line) has no
phones here (an outside line's number is called out through its trunk:
:mod:`pbx.trunks.follow_me`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from attrs import define

from twisted.internet.defer import Deferred
from twisted.logger import Logger

from pbx.calls.dialplan import ToExtension, ToTrunks
from pbx.records import Binding, ExtensionRecord


@define(eq=False)
class Reach:
    """
    :ivar lookup: an extension's record by number.
    :ivar contacts: an extension's registered phones.
    :ivar scheduled_dnd: whether an extension is outside its working hours now.
    :ivar busy_numbers: the extensions on a call now (answered calls' parties).
    :ivar resolve: the dialplan's action for a number an extension dials (None: that extension).
    """

    lookup: Callable[[str], Deferred[ExtensionRecord | None]]
    contacts: Callable[[str], list[Binding]]
    scheduled_dnd: Callable[[str], bool]
    busy_numbers: Callable[[], Iterable[str]]
    resolve: Callable[[str], object]
    log = Logger()

    async def member(self, number: str) -> list[Binding]:
        """A group member's phones; none when it is disabled, in DND, on a call or not registered."""
        if number in set(self.busy_numbers()):
            return []
        return await self._extension(number)

    async def follow_me(self, number: str) -> list[Binding]:
        """The phones a follow-me number reaches through the dialplan."""
        action = self.resolve(number)
        if action is None:
            return await self._extension(number)
        if isinstance(action, ToExtension):
            return await self._extension(action.number)
        if isinstance(action, ToTrunks):
            return []  # called out through its trunk, not rung as a phone
        self.log.info(
            "follow-me number {number} is routed to {action!r}, which follow-me cannot ring yet",
            number=number,
            action=action,
        )
        return []

    async def _extension(self, number: str) -> list[Binding]:
        record = await self.lookup(number)
        if (
            record is None
            or not record.enabled
            or record.dnd
            or self.scheduled_dnd(number)
        ):
            return []
        return self.contacts(number)
