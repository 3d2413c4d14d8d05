"""
Ringing several parties for one call: a ring group's members, an
extension's follow-me numbers.

A ring group rings every member at once, or one after another.

*ringall* rings every registered phone of every available member in one
:class:`~pbx.calls.forks.Forks` for the group's timeout.  *hunt* rings the
members in turn, each for ``member_timeout`` seconds, round after round
until the group's timeout is spent; a member with no phone, in
do-not-disturb or already on a call is skipped, and one whose phones are
busy is passed over at once.  Members' own forwards do not apply inside a
group (their do-not-disturb does).

Follow-me rings the extension alone for ``after`` seconds, then its other
numbers too (``also``) or instead (``only``).

Ringing returns an outcome, as :meth:`pbx.calls.call.Call.ring` does; what
follows it (the group's final destination, the extension's forwards and
diverters) is the controller's policy.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from attrs import define, frozen

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from pbx.calls.confirm import Screen
from pbx.calls.follow_me import FollowMe
from pbx.calls.forks import Outcome, Rung
from pbx.calls.groups import RingGroup
from pbx.records import Binding

#: Outcomes after which nobody else rings: someone answered, the caller left, or the call broke.
_SETTLED = (Outcome.ANSWERED, Outcome.CANCELLED, Outcome.FAILED)


@frozen
class GroupRung:
    """
    How ringing a group ended.

    :ivar member: the member who answered, if one did.
    """

    rung: Rung
    member: str = ""


@define(eq=False)
class GroupRinger:
    """
    Rings one group for one call.

    :ivar members: the members logged in, in order.
    :ivar available: a member's phones to ring, or none (no phone, DND, busy).
    :ivar ring: rings phones for so many seconds (the call's
        :meth:`~pbx.calls.call.Call.ring`).
    :ivar waiting: whether the caller still waits (has not cancelled).
    """

    group: RingGroup
    members: list[str]
    available: Callable[[str], Awaitable[list[Binding]]]
    ring: Callable[[list[Binding], float], Deferred[Rung]]
    waiting: Callable[[], bool]
    clock: IReactorTime
    log = Logger()

    async def run(self) -> GroupRung:
        """Ring the group by its strategy; fires with how it ended."""
        if self.group.strategy == "hunt":
            return await self._hunt()
        return await self._ring_all()

    async def _ring_all(self) -> GroupRung:
        bindings: list[Binding] = []
        for member in self.members:
            bindings.extend(await self.available(member))
        if not self.waiting():
            return GroupRung(Rung(Outcome.CANCELLED, 487))
        if not bindings:
            return GroupRung(Rung(Outcome.UNAVAILABLE, 480))
        rung = await self.ring(bindings, self.group.timeout)
        return GroupRung(rung, _member(rung))

    async def _hunt(self) -> GroupRung:
        deadline = self.clock.seconds() + self.group.timeout
        last = Rung(Outcome.UNAVAILABLE, 480)
        while True:
            rang = False
            for member in self.members:
                remaining = deadline - self.clock.seconds()
                if remaining <= 0:
                    return GroupRung(Rung(Outcome.NO_ANSWER, 480))
                bindings = await self.available(member)
                if not self.waiting():
                    return GroupRung(Rung(Outcome.CANCELLED, 487))
                if not bindings:
                    continue
                self.log.info(
                    "group {group}: ringing {member}",
                    group=self.group.name,
                    member=member,
                )
                last = await self.ring(
                    bindings, min(self.group.member_timeout, remaining)
                )
                if last.outcome in _SETTLED:
                    return GroupRung(last, _member(last))
                rang = rang or last.outcome is Outcome.NO_ANSWER
            if not rang:
                # A whole round in which no phone rang out its time (none to
                # ring, or every one busy): another round changes nothing.
                return GroupRung(last)


@define(eq=False)
class FollowMeRinger:
    """
    Rings one call to an extension with follow-me.

    :ivar own: the extension's registered phones.
    :ivar reach: the phones to ring for one follow-me number (none when it
        reaches no extension, or one in do-not-disturb).
    :ivar ring: rings phones for so many seconds (:meth:`pbx.calls.call.Call.ring`).
    :ivar ring_more: adds phones to the ringing (:meth:`pbx.calls.call.Call.ring_more`).
    :ivar waiting: whether the caller still waits.
    :ivar ring_timeout: how long the other numbers ring when ``timeout`` is not set.
    :ivar screen: with ``confirm``, places the other numbers' legs that must press 1
        (:mod:`pbx.calls.confirm`) instead of ringing them in the call; it
        also places the legs to :attr:`outside` numbers, confirmed or not.
    :ivar outside: the follow-me numbers the dialplan sends to a trunk.
    """

    plan: FollowMe
    own: list[Binding]
    reach: Callable[[str], Awaitable[list[Binding]]]
    ring: Callable[[list[Binding], float], Deferred[Rung]]
    ring_more: Callable[[list[Binding]], None]
    waiting: Callable[[], bool]
    clock: IReactorTime
    ring_timeout: float
    screen: Screen | None = None
    outside: tuple[str, ...] = ()
    log = Logger()

    @property
    def _others_ring(self) -> float:
        return self.plan.timeout or self.ring_timeout

    async def run(self) -> Rung:
        """Ring the extension, then the other numbers; fires with how ringing ended."""
        try:
            return await self._ring()
        finally:
            if self.screen is not None:
                self.screen.stop()

    async def _ring(self) -> Rung:
        if not self.own:
            # No phone of the extension registered: the other numbers at once.
            return await self._ring_others(Rung(Outcome.UNAVAILABLE, 480))
        if self.plan.mode == "only":
            rung = await self.ring(self.own, self.plan.after)
            if rung.outcome is not Outcome.NO_ANSWER or not self.waiting():
                return rung
            return await self._ring_others(rung)
        ringing = self.ring(self.own, self.plan.after + self._others_ring)
        joining = self.clock.callLater(self.plan.after, self._join)
        try:
            return await ringing
        finally:
            if joining.active():
                joining.cancel()

    async def _ring_others(self, otherwise: Rung) -> Rung:
        """Ring the other numbers alone; ``otherwise`` when there is none to ring."""
        others = await self._others()
        outside = self.outside if self.screen is not None else ()
        if (not others and not outside) or not self.waiting():
            return otherwise
        if self.screen is None or not (self.plan.confirm or outside):
            return await self.ring(others, self._others_ring)
        # The caller waits, with no phone of its own call ringing, until a leg accepts.
        waiting = self.ring([] if self.plan.confirm else others, self._others_ring)
        if self.plan.confirm:
            self.screen.start(others)
        if outside:
            self.screen.start_outside(list(outside))
        return await waiting

    def _join(self) -> None:
        async def join() -> None:
            others = await self._others()
            if others and self.waiting():
                self.log.info(
                    "follow-me of {number}: ringing {n} more phone(s)",
                    number=self.plan.number,
                    n=len(others),
                )
                if self.screen is not None and self.plan.confirm:
                    self.screen.start(others)
                else:
                    self.ring_more(others)
            if self.outside and self.screen is not None and self.waiting():
                self.log.info(
                    "follow-me of {number}: calling {numbers} out",
                    number=self.plan.number,
                    numbers=",".join(self.outside),
                )
                self.screen.start_outside(list(self.outside))

        Deferred.fromCoroutine(join()).addErrback(
            lambda f: self.log.failure(
                "follow-me of {number} failed", f, number=self.plan.number
            )
        )

    async def _others(self) -> list[Binding]:
        found: list[Binding] = []
        for number in self.plan.numbers:
            found.extend(await self.reach(number))
        return found


def _member(rung: Rung) -> str:
    """The extension whose phone answered."""
    return (
        rung.fork.binding.aor
        if rung.outcome is Outcome.ANSWERED and rung.fork is not None
        else ""
    )
