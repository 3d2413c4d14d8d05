"""
Ring groups as blind transfer targets: which group a transfer's number
names, its members rung by the group's strategy, and where the transfer
goes when none of them answers.

A blind transfer to a group (a ``group:`` route, or the group's own
number) rings its logged-in members as a call to the group does
(:class:`~pbx.calls.ringers.GroupRinger`: all at once for the group's
``timeout``, or one after another for ``member_timeout`` each), from the
transferee's number; neither the transferee nor the transferor is rung.
The first phone to ring releases the transferor and the transferee hears
ringback; the member who answers takes the seat, as a single target does
(:mod:`pbx.calls.transfer`).  Nobody answering, or nobody to ring, sends
the transfer to the group's final destination: an extension (its phones
ring for ``transfer.recall_after`` seconds, its unconditional forward and
DND apply) or an application (:mod:`pbx.calls.transfer_app`, seated by
the transfer); then, or without one, the transferor is recalled as for
any unanswered target (when nothing rang at all, the transferor keeps the
call and hears why in the final NOTIFY).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Collection

from attrs import define

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime

from pbx.calls.dialplan import Action, ToGroup
from pbx.calls.forks import Outcome, Rung
from pbx.calls.groups import GroupDirectory, RingGroup
from pbx.calls.ringers import GroupRinger
from pbx.calls.routing import Routing
from pbx.records import Binding

#: Ringing that ended so: nothing more rings (answered, the transfer stopped, or broken).
_SETTLED = (Outcome.ANSWERED, Outcome.CANCELLED, Outcome.FAILED)


@define(eq=False)
class TransferGroups:
    """
    The ring groups a blind transfer may ring.

    :ivar directory: the groups and who of their members is logged in.
    :ivar member: a member's phones to ring now (none: no phone, DND, on a call).
    :ivar routing: the final extension's forwarding, DND and phones.
    :ivar recall_after: seconds the final extension rings.
    """

    directory: GroupDirectory
    member: Callable[[str], Awaitable[list[Binding]]]
    routing: Routing
    clock: IReactorTime
    recall_after: float = 30.0

    def find(self, number: str, action: Action | None) -> RingGroup | None:
        """The group a transfer to ``number`` (the dialplan's ``action``) rings, if any."""
        if isinstance(action, ToGroup):
            return self.directory.groups.get(action.name)
        return self.directory.by_number(number) if action is None else None

    def ring(
        self,
        group: RingGroup,
        skip: Collection[str],
        ring: Callable[[list[Binding], float], Deferred[Rung]],
        waiting: Callable[[], bool],
    ) -> Deferred[Rung]:
        """
        Ring ``group``'s logged-in members but ``skip`` with ``ring``, then
        its final extension if it has one; fires with how ringing ended.
        """
        return Deferred.fromCoroutine(self._ring(group, skip, ring, waiting))

    async def _ring(
        self,
        group: RingGroup,
        skip: Collection[str],
        ring: Callable[[list[Binding], float], Deferred[Rung]],
        waiting: Callable[[], bool],
    ) -> Rung:
        members = [m for m in self.directory.logged_in(group) if m not in skip]
        rung = (await GroupRinger(group, members, self.member, ring, waiting, self.clock).run()).rung
        if rung.outcome in _SETTLED or not group.final_extension or not waiting():
            return rung
        number, record, refuse = await self.routing.resolve_target(group.final_extension, set(skip))
        bindings = self.routing.contacts(number) if record is not None and not refuse else []
        if not bindings or not waiting():
            return rung
        return await ring(bindings, self.recall_after)
