"""
An application dials an extension for the caller on its channel
(:meth:`pbx.interfaces.IPBX.dial`).

The attempt goes as a direct call would: unconditional forwarding and
do-not-disturb, then the extension's phones ring (an
:class:`~pbx.calls.outbound.OutboundCall`) while the caller hears ringback;
busy and no-answer forwards are followed; when nobody answers, the
diverters may name an application (voicemail), which then runs on the
caller's own channel.  An answered call is bridged to the caller until one
side hangs up.  A ring group's number rings the group as a call to it
would (:mod:`pbx.calls.ringers`), then its final destination.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from attrs import define, field, frozen

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from pbx.calls.forks import Outcome, Rung
from pbx.calls.groups import RingGroup
from pbx.calls.outbound import OutboundCall
from pbx.calls.ringers import GroupRinger
from pbx.calls.routing import Routing
from pbx.media.channel import Channel, HungUp
from pbx.records import Binding, ExtensionRecord

#: How long one round of ringback lasts: a whole cadence (2 s on, 4 s off).
RINGBACK_ROUND = 6.0

Target = tuple[str, ExtensionRecord, int]


@frozen
class GroupDialling:
    """
    What dialling a ring group's number takes.

    :ivar find: the group dialled as this number and its members to ring, or None.
    :ivar member_phones: a member's phones to ring (none when in DND, on a call...).
    :ivar place: rings phones for so many seconds (``place(callee, bindings, on_ringing, timeout)``).
    """

    find: Callable[[str], tuple[RingGroup, list[str]] | None]
    member_phones: Callable[[str], Awaitable[list[Binding]]]
    place: Callable[[str, list[Binding], Callable[[], None], float], OutboundCall]
    clock: IReactorTime


@define(eq=False)
class Dial:
    """
    One dial attempt for the caller on ``channel``.

    :ivar routing: extensions, forwards, phones, diverters and applications.
    :ivar place: places a call to one extension's phones
        (``place(callee, bindings, on_ringing)``), already ringing.
    :ivar caller: who the callee sees calling (From, P-Asserted-Identity).
    :ivar timeout: seconds each extension rings before the no-answer rules apply.
    """

    routing: Routing
    place: Callable[[str, list[Binding], Callable[[], None]], OutboundCall]
    channel: Channel
    caller: str
    caller_name: str
    timeout: float
    seen: set[str] = field(factory=set)
    leg: OutboundCall | None = None
    groups: GroupDialling | None = None
    _ringback: bool = False
    _done: bool = False
    log = Logger()

    async def run(self, number: str) -> str:
        """
        Connect the caller to ``number``.

        :returns: ``"answered"`` once the bridged call ended, ``"diverted"``
            once the application a diverter named returned, or ``"busy"``,
            ``"no_answer"``, ``"unavailable"``, ``"not_found"``.
        :raises HungUp: the caller hung up before anyone answered.
        """
        self._check()
        self.channel.wait_for_hangup().addCallback(self._caller_gone)
        try:
            return await self._route(number)
        finally:
            self._done = True
            self._stop_ringback()

    def _caller_gone(self, _: object) -> None:
        if not self._done and self.leg is not None:
            self.leg.hang_up("a", "caller hung up")

    def _check(self) -> None:
        if self.channel.hung_up:
            raise HungUp("the caller hung up")

    async def _route(self, number: str) -> str:
        if self.groups is not None and (found := self.groups.find(number)) is not None:
            return await self._group(*found)
        routing = self.routing
        target, record, refuse = await routing.resolve_target(number, self.seen)
        self._check()
        if record is None:
            return "not_found" if refuse == 404 else "unavailable"  # 482: a forwarding loop
        while True:
            if refuse == 486:
                return await self._give_up(target, "dnd", "busy")
            bindings = routing.contacts(target)
            if not bindings:
                forwarded = await self._forward(record.forward_no_answer)
                if forwarded is None:
                    return await self._give_up(target, "unavailable", "unavailable")
                target, record, refuse = forwarded
                continue
            self.log.info("dial {caller} -> {callee} ({n} phone(s))", caller=self.caller, callee=target,
                          n=len(bindings))
            leg = self.place(target, bindings, self._ringing)
            self.leg = leg
            rung = await leg.outcome
            self._check()
            if rung.outcome is Outcome.ANSWERED:
                return await self._bridged(leg)
            if rung.outcome is Outcome.BUSY:
                reason, forward = "busy", record.forward_busy
            elif rung.outcome is Outcome.NO_ANSWER:
                reason, forward = "no_answer", record.forward_no_answer
            else:
                reason, forward = "unavailable", ""
            forwarded = await self._forward(forward)
            if forwarded is None:
                return await self._give_up(target, reason, reason)
            target, record, refuse = forwarded

    async def _group(self, group: RingGroup, members: list[str]) -> str:
        """Ring a group's members by its strategy; unanswered, its final destination."""
        assert self.groups is not None
        if group.number in self.seen:
            return "unavailable"  # a group whose final destination leads back to it
        self.seen.add(group.number)
        place = self.groups.place

        def ring(bindings: list[Binding], timeout: float) -> Deferred[Rung]:
            self.leg = place(group.number, bindings, self._ringing, timeout)
            return self.leg.outcome

        self.log.info("dial {caller} -> group {group}", caller=self.caller, group=group.name)
        ringer = GroupRinger(group, members, self.groups.member_phones, ring, lambda: not self.channel.hung_up,
                             self.groups.clock)
        ended = await ringer.run()
        self._check()
        outcome = ended.rung.outcome
        if outcome is Outcome.ANSWERED and self.leg is not None:
            return await self._bridged(self.leg)
        reason = {Outcome.BUSY: "busy", Outcome.NO_ANSWER: "no_answer"}.get(outcome, "unavailable")
        final = group.final_application
        if final is not None and final.name in self.routing.applications:
            self._stop_ringback()
            self.log.info("dial {caller} -> group {group} ({reason}): application {name}", caller=self.caller,
                          group=group.name, reason=reason, name=final.name)
            await self.routing.applications[final.name].run(self.channel, final.args)
            return "diverted"
        if group.final_extension:
            return await self._route(group.final_extension)
        return reason

    async def _forward(self, number: str) -> Target | None:
        """Follow a busy or no-answer forward to an extension that exists; None if there is none to follow."""
        if not self.routing.may_forward(number, self.seen):
            return None
        target, record, refuse = await self.routing.resolve_target(number, self.seen)
        self._check()
        if record is None:
            return None
        self.log.info("dial {caller}: forwarded to {target}", caller=self.caller, target=target)
        return target, record, refuse

    async def _give_up(self, callee: str, reason: str, outcome: str) -> str:
        """Nobody answers at ``callee``: run the application a diverter names, or return ``outcome``."""
        action = self.routing.divert(callee, reason)
        if action is None:
            return outcome
        application = self.routing.applications[action.name]
        self._stop_ringback()
        self.log.info("dial {caller} -> {callee} ({reason}): application {name}", caller=self.caller,
                      callee=callee, reason=reason, name=action.name)
        await application.run(self.channel, action.args)
        return "diverted"

    async def _bridged(self, leg: OutboundCall) -> str:
        """Connect the caller and the callee until one of them hangs up."""
        self._stop_ringback()
        assert leg.channel is not None
        self.channel.bridge(leg.channel)
        try:
            await leg.ended
        finally:
            self.channel.unbridge()
        return "answered"

    # -- ringback ---------------------------------------------------------------

    def _ringing(self) -> None:
        """A phone rings (180/183): let the caller hear it."""
        if not self._ringback and not self._done and not self.channel.hung_up:
            self._ringback = True
            Deferred.fromCoroutine(self._ring_tone())

    async def _ring_tone(self) -> None:
        while self._ringback:
            try:
                await self.channel.tone("ringback", RINGBACK_ROUND)
            except (HungUp, RuntimeError):
                # The call ended, or the application plays something itself.
                self._ringback = False

    def _stop_ringback(self) -> None:
        if self._ringback:
            self._ringback = False
            self.channel.stop_playing()
