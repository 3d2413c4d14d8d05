"""
Ring groups and follow-me: who of a group is rung and in what order, where
an unanswered group call goes, and an extension's follow-me numbers rung
beside its phones (a screened leg taking the caller when its answerer
presses 1), outside numbers among them called through their trunk route.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine, Iterable, Sequence
from typing import Any

from attrs import define

from twisted.internet.defer import Deferred
from twisted.logger import Logger
from twisted.python.failure import Failure

from pbx.calls.call import Call
from pbx.calls.confirm import APPLICATION, Connect, Screen
from pbx.calls.dialplan import ToApplication, ToGroup, ToTrunks
from pbx.calls.endpoint_media import EndpointMedia, MediaServices
from pbx.calls.events import CallEvents
from pbx.calls.forks import BUSY, Outcome, Rung
from pbx.calls.groups import GroupDirectory, RingGroup
from pbx.calls.outbound import OutboundCall, unquote_display
from pbx.calls.reach import Reach
from pbx.calls.ringers import FollowMeRinger, GroupRinger, GroupRung
from pbx.config import Config
from pbx.records import Binding, ExtensionRecord
from pbx.sip.transaction import ServerTransaction
from pbx.trunks.follow_me import OutsideLegs
from pbx.trunks.registry import Trunks


@define(eq=False)
class GroupPolicy:
    """
    Rings ring groups and follow-me numbers, and settles their outcomes.

    :ivar applications: the running dialplan applications by name.
    :ivar media: media services; None when nobody could press 1 on a screened leg.
    :ivar lookup: an extension's record by number.
    :ivar contacts: an extension's registered phones.
    :ivar scheduled_dnd: whether an extension is in DND by its schedule now.
    :ivar calls: the calls in progress.
    :ivar open_call: a relayed call for an INVITE, or None once refused.
    :ivar ring: rings a call's callee, the policy taking the outcome.
    :ivar rung: settles a call's ringing outcome (forward, divert or fail).
    :ivar forward: follows a forward; the new callee's phones, or None when settled.
    :ivar hand_over: ends a ringing call and answers its caller with an application.
    :ivar policy_failed: fails a call whose routing raised.
    :ivar place: places a call to phones for the call layer (a follow-me leg).
    :ivar trunks: the trunks follow-me legs to outside numbers go out through; None without trunks.
    :ivar emergency_route: an emergency number's route (never a follow-me number's).
    :ivar endpoint_media: makes a terminated call's media (caller, caller name, callee).
    :ivar track: lists a call in progress.
    :ivar call_ended: told when a call is over.
    """

    config: Config
    groups: GroupDirectory
    applications: dict[str, Any]
    media: MediaServices | None
    clock: Any
    lookup: Callable[[str], Deferred[ExtensionRecord | None]]
    contacts: Callable[[str], list[Binding]]
    scheduled_dnd: Callable[[str], bool]
    calls: Callable[[], Iterable[Any]]
    open_call: Callable[..., Call | None]
    ring: Callable[[Call, list[Binding]], None]
    rung: Callable[[Rung, Call], None]
    forward: Callable[[Call, str, int, str], Coroutine[Any, Any, list[Binding] | None]]
    hand_over: Callable[..., None]
    policy_failed: Callable[[Failure, Call], None]
    place: Callable[[str, str, str, list[Binding], float], OutboundCall]
    trunks: Trunks | None
    emergency_route: Callable[[str], ToTrunks | None]
    endpoint_media: Callable[[str, str, str], Callable[[Callable[[str], None]], EndpointMedia]]
    events: CallEvents
    track: Callable[[Any], None]
    call_ended: Callable[[Any], None]
    log = Logger()

    def reach(self) -> Reach:
        """Who of a group or a follow-me can be rung now (registered, not in DND, not on a call)."""
        return Reach(lambda number: self.lookup(number), self.contacts, self.scheduled_dnd,
                     self._busy_numbers, lambda number: self.config.dialplan.resolve(number, authenticated=True))

    def _busy_numbers(self) -> Iterable[str]:
        """The extensions on an answered call now."""
        for call in self.calls():
            if call.state in ("answered", "confirmed"):
                yield from (call.caller, call.callee)
                if isinstance(call, Call) and call.b is not None:
                    yield call.b.binding.aor

    def group_action(self, number: str) -> ToGroup | None:
        """A number no route matched that is a ring group's number."""
        assert self.groups is not None
        group = self.groups.by_number(number)
        return None if group is None else ToGroup(group.name)

    async def ring_group(self, transaction: ServerTransaction, caller: str, display: str, name: str,
                         expires: int) -> None:
        """Ring a group's members by its strategy; the policy then takes the outcome (:meth:`_group_rung`)."""
        assert self.groups is not None
        group = self.groups.groups[name]
        call = self.open_call(transaction, caller, display, group.number, expires)
        if call is None:
            return
        self.log.info("call {caller} -> group {group} ({strategy})", caller=caller, group=name,
                      strategy=group.strategy)
        members = [m for m in self.groups.logged_in(group) if m != caller]  # a member calling its group
        ringer = GroupRinger(group, members, self.reach().member, call.ring,
                             lambda: call.state in ("routing", "ringing"), self.clock)
        Deferred.fromCoroutine(ringer.run()).addCallback(self._group_rung, call, group).addErrback(
            self.policy_failed, call)

    def _group_rung(self, ended: GroupRung, call: Call, group: RingGroup) -> None:
        """Nobody in the group answered: the group's final destination, else the caller hears the failure."""
        rung = ended.rung
        if rung.outcome in (Outcome.ANSWERED, Outcome.CANCELLED) or call.state == "ended":
            return
        if rung.outcome is Outcome.FAILED:
            call.fail(rung.status)
            return
        reason = {Outcome.BUSY: "busy", Outcome.NO_ANSWER: "no_answer"}.get(rung.outcome, "unavailable")
        status = rung.status if rung.status in BUSY else 480
        final = group.final_application
        if final is not None and final.name not in self.applications:
            self.log.warn("group {group}: final application {name!r} is not running", group=group.name,
                          name=final.name)
        if final is not None and final.name in self.applications:
            self.hand_over(call, group.number, final, reason)
        elif group.final_extension:
            self.log.info("group {group}: unanswered, to {number}", group=group.name, number=group.final_extension)
            forwarded = Deferred.fromCoroutine(self.forward(call, group.final_extension, status, reason))
            forwarded.addCallback(lambda bindings: self.ring(call, bindings) if bindings else None)
            forwarded.addErrback(self.policy_failed, call)
        else:
            call.fail(status, "No Answer" if rung.outcome is Outcome.NO_ANSWER else None)

    def ring_callee(self, call: Call, bindings: list[Binding]) -> None:
        """Ring an extension's phones, and its follow-me numbers when it has a follow-me."""
        plan = self.config.follow_me.get(call.callee)
        if plan is None or (plan.confirm and self.media is None):
            # Without media services nobody could press 1: the other numbers stay silent.
            self.ring(call, bindings)
            return

        def waiting() -> bool:
            return call.state in ("routing", "ringing")

        timeout = plan.timeout or self.config.calls.ring_timeout
        screen = None
        outside = self._outside_numbers(plan.numbers)
        if plan.confirm or outside:
            screen = Screen(
                lambda number, phones: self.place(call.caller, unquote_display(call.caller_display), number,
                                                  phones, timeout),
                lambda leg: self._take_screened(call, leg), waiting,
                place_outside=lambda number: Deferred.fromCoroutine(self._place_outside(call, plan.number, number,
                                                                                        timeout)),
                confirm=plan.confirm)
        ringer = FollowMeRinger(plan, bindings, self.reach().follow_me, call.ring, call.ring_more, waiting,
                                self.clock, self.config.calls.ring_timeout, screen, outside)
        Deferred.fromCoroutine(ringer.run()).addCallback(self.rung, call).addErrback(self.policy_failed, call)

    def _outside_numbers(self, numbers: Iterable[str]) -> tuple[str, ...]:
        """The follow-me numbers the dialplan sends out through a trunk (none without trunks or media)."""
        if self.trunks is None or self.media is None:
            return ()
        return tuple(n for n in numbers if self.emergency_route(n) is None
                     and isinstance(self.config.dialplan.resolve(n, authenticated=True), ToTrunks))

    async def _place_outside(self, call: Call, extension: str, number: str, timeout: float) -> OutboundCall | None:
        """A follow-me leg of ``extension``'s call to outside ``number``, through its trunk route."""
        assert self.trunks is not None
        action = self.config.dialplan.resolve(number, authenticated=True)
        record = await self.lookup(extension)
        if not isinstance(action, ToTrunks) or record is None or call.state not in ("routing", "ringing"):
            return None
        caller, name = call.caller, unquote_display(call.caller_display)

        def make(*, services: Any, callee: str, identity: tuple[str, str], on_challenge: Any,
                 headers: Sequence[tuple[str, str]]) -> OutboundCall:
            return OutboundCall(services, caller=caller, callee=callee, caller_name=name,
                                media=self.endpoint_media(caller, name, callee), events=self.events,
                                on_end=self.call_ended, headers=headers, identity=identity,
                                on_challenge=on_challenge)

        leg = await OutsideLegs(self.trunks, make).place(extension, record.caller_id, number, action, timeout)
        if leg is not None and leg.state != "ended":
            self.track(leg)
        return leg

    def _take_screened(self, call: Call, leg: OutboundCall) -> bool:
        """A follow-me leg pressed 1: the caller is answered and bridged to it (see :mod:`pbx.calls.confirm`)."""
        if call.state not in ("routing", "ringing"):
            return False
        self.hand_over(call, call.callee, ToApplication(APPLICATION, {}), "follow_me", application=Connect(leg))
        return True

    def group_to_dial(self, number: str, caller: str) -> tuple[RingGroup, list[str]] | None:
        """The group an application dials as ``number``, with its members to ring (not the caller)."""
        assert self.groups is not None
        group = self.groups.by_number(number)
        if group is None:
            return None
        return group, [m for m in self.groups.logged_in(group) if m != caller]
