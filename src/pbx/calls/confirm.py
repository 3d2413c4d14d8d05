"""
"Press 1 to accept" for follow-me: a mobile's voicemail must never take a
call meant for its user.

The prompt is the attendant's "To be connected, press 1.  To try again,
press star.": star plays it again (up to :data:`ROUNDS` times).

A follow-me number with ``confirm: true`` is not rung as one more fork of
the caller's call.  pbx places a call of its own to it (an
:class:`~pbx.calls.outbound.OutboundCall`, whose media pbx terminates);
when that is answered, pbx plays :data:`PROMPT` and waits for a key.  The
first leg whose person presses :data:`ACCEPT` takes the call: the caller's
ringing stops and the caller is answered by :class:`Connect`, which
bridges the caller's channel to the accepted leg's until one hangs up.  A
leg that presses another key, presses nothing, or answers after the call
was taken or given up is hung up.

A follow-me number routed to a trunk is such a leg too, placed through the
trunk (``place_outside``, :mod:`pbx.trunks.follow_me`): with ``confirm``
its answer is screened the same way; without, the leg that answers takes
the call at once.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from attrs import define, field

from zope.interface import implementer

from twisted.internet.defer import Deferred, DeferredList
from twisted.logger import Logger
from twisted.python.failure import Failure

from pbx.calls.forks import Outcome, Rung
from pbx.calls.outbound import OutboundCall
from pbx.interfaces import IDialplanApplication
from pbx.media.channel import HungUp
from pbx.records import Binding

PROMPT = "aa/connect-or-retry"
ACCEPT = "1"
AGAIN = "*"
#: How many times the prompt plays at most.
ROUNDS = 3
#: Seconds an answered leg has to press a key once the prompt has played.
KEY_TIMEOUT = 8.0
#: The name the caller's application call is recorded under.
APPLICATION = "follow-me"


@implementer(IDialplanApplication)
class Connect:
    """The caller's side of an accepted follow-me leg: bridged to it until either hangs up."""

    name = APPLICATION

    def __init__(self, leg: OutboundCall) -> None:
        self.leg = leg

    async def run(self, channel: Any, args: Any) -> None:
        """Bridge the caller to the accepted leg; when one side hangs up, hang up the other."""
        other = self.leg.channel
        if other is None or self.leg.state == "ended":
            await channel.hangup("follow-me leg gone")
            return
        await channel.answer()
        channel.bridge(other)
        caller_gone = channel.wait_for_hangup()
        await DeferredList(
            [caller_gone, self.leg.ended], fireOnOneCallback=True, consumeErrors=True
        )
        channel.unbridge()
        if self.leg.state != "ended":
            self.leg.hang_up("a", "caller hung up")
        elif not caller_gone.called:
            await channel.hangup("normal")


@define(eq=False)
class Screen:
    """
    The follow-me legs of one call that must accept it with a key.

    :ivar place: rings one extension's phones as pbx's own call (``place(number, bindings)``).
    :ivar take: hands the caller to an accepted leg; False when the caller is no longer there.
    :ivar waiting: whether the caller still waits.
    :ivar place_outside: places the leg to an outside number (None: not placed).
    :ivar confirm: whether an answered leg must press 1; without, it takes the call on answering.
    """

    place: Callable[[str, list[Binding]], OutboundCall]
    take: Callable[[OutboundCall], bool]
    waiting: Callable[[], bool]
    key_timeout: float = KEY_TIMEOUT
    place_outside: Callable[[str], Deferred[OutboundCall | None]] | None = None
    confirm: bool = True
    legs: list[OutboundCall] = field(factory=list)
    accepted: OutboundCall | None = None
    _stopped: bool = False
    log = Logger()

    def start(self, bindings: list[Binding]) -> None:
        """Call each extension among ``bindings`` (its phones together) and ask whoever answers."""
        numbers: dict[str, list[Binding]] = {}
        for binding in bindings:
            numbers.setdefault(binding.aor, []).append(binding)
        for number, phones in numbers.items():
            if self._stopped:
                return
            leg = self.place(number, phones)
            self.legs.append(leg)
            leg.outcome.addCallback(self._rung, leg).addErrback(self._failed, leg)

    def start_outside(self, numbers: list[str]) -> None:
        """Call each of ``numbers`` out through its trunk route (:attr:`place_outside`)."""
        if self.place_outside is None:
            return
        for number in numbers:
            if self._stopped:
                return
            self.place_outside(number).addCallback(self._placed).addErrback(self._not_placed, number)

    def _not_placed(self, failure: Failure, number: str) -> None:
        self.log.failure("follow-me leg to {number} failed", failure, number=number)

    def _placed(self, leg: OutboundCall | None) -> None:
        if leg is None:
            return
        if self._stopped:
            leg.hang_up("a", "cancelled")
            return
        self.legs.append(leg)
        leg.outcome.addCallback(self._rung, leg).addErrback(self._failed, leg)

    def stop(self) -> None:
        """The caller's call is settled: hang up every leg but the accepted one."""
        self._stopped = True
        for leg in self.legs:
            if leg is not self.accepted and leg.state != "ended":
                leg.hang_up("a", "cancelled")

    def _rung(self, rung: Rung, leg: OutboundCall) -> None:
        if rung.outcome is Outcome.ANSWERED and not self.confirm:
            self._accept(leg)
        elif rung.outcome is Outcome.ANSWERED:
            Deferred.fromCoroutine(self._ask(leg)).addErrback(self._failed, leg)

    def _failed(self, failure: Failure, leg: OutboundCall) -> None:
        self.log.failure("follow-me leg to {callee} failed", failure, callee=leg.callee)
        if leg.state != "ended":
            leg.hang_up("pbx", "failed")

    async def _ask(self, leg: OutboundCall) -> None:
        channel = leg.channel
        if self._stopped or channel is None or not self.waiting():
            leg.hang_up("a", "not needed")
            return
        try:
            pressed = await self._key(channel)
        except HungUp:
            return
        if pressed != ACCEPT or self._stopped or not self.waiting():
            self.log.info(
                "follow-me leg {callee} did not accept ({pressed!r})",
                callee=leg.callee,
                pressed=pressed,
            )
            if leg.state != "ended":
                leg.hang_up("a", "not accepted")
            return
        self._accept(leg)

    def _accept(self, leg: OutboundCall) -> None:
        """``leg`` takes the call: the others are hung up, the caller is bridged to it."""
        if self._stopped or not self.waiting() or leg.state == "ended":
            if leg.state != "ended":
                leg.hang_up("a", "not needed")
            return
        self.log.info("follow-me leg {callee} accepted the call", callee=leg.callee)
        self.accepted = leg
        self.stop()
        if not self.take(leg):
            leg.hang_up("a", "caller gone")

    async def _key(self, channel: Any) -> str:
        """The key pressed in answer to the prompt ("" for none), star replaying it."""
        pressed: str | None = ""
        for _ in range(ROUNDS):
            pressed = await channel.play([PROMPT], interrupt="0123456789*#")
            if pressed is None and not self._stopped:
                pressed = await channel.collect_digits(
                    1, timeout=self.key_timeout, terminator=""
                )
            if pressed != AGAIN or self._stopped:
                break
        return pressed or ""
