"""
An application dials an extension for the caller on its channel
(:meth:`pbx.interfaces.IPBX.dial`).

The attempt goes as a direct call would: unconditional forwarding and
do-not-disturb, then the extension's phones ring (an
:class:`~pbx.calls.outbound.OutboundCall`) while the caller hears ringback;
busy and no-answer forwards are followed; when nobody answers, the
diverters may name an application (voicemail), which then runs on the
caller's own channel.  An answered call is bridged to the caller until one
side hangs up.
"""

from __future__ import annotations

from collections.abc import Callable

from attrs import define, field

from twisted.internet.defer import Deferred
from twisted.logger import Logger

from pbx.calls.forks import Outcome
from pbx.calls.outbound import OutboundCall
from pbx.calls.routing import Routing
from pbx.media.channel import Channel, HungUp
from pbx.records import Binding, ExtensionRecord

#: How long one round of ringback lasts: a whole cadence (2 s on, 4 s off).
RINGBACK_ROUND = 6.0

Target = tuple[str, ExtensionRecord, int]


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
